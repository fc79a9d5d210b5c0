"""The exchange broker through the real ccxt.pro gateway against the simulated exchange:
a stale resting LIMIT is cancelled on the exchange at its expiry, and an order the exchange's
filters refuse comes back as a non-retryable error with Binance's code. (Partial fills against
a thin book: tests/engine/runtime/test_runtime_faults.py.)"""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import SecretStr

from engine.config.sections.exchange import ExchangeSection
from engine.domain import OrderStatus, OrderType
from engine.errors import NonRetryableOrderError
from engine.execution.exchange_broker import ExchangeBroker
from engine.market.ccxt_gateway import CcxtGateway
from tests.kit.domain import make_intent
from tests.kit.sim_exchange import API_KEY, SECRET, running_sim_exchange


async def test_stale_limit_is_cancelled_on_the_exchange_and_filter_failures_are_refused() -> None:
    async with running_sim_exchange(speed=1.0) as sim:
        section = ExchangeSection(
            name="sim", api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET), enable_rate_limit=False
        )
        gateway = CcxtGateway(section, endpoint=sim.base_url)
        try:
            markets = await gateway.load_markets()
            doge = markets["DOGE/USDT"]
            broker = ExchangeBroker(gateway)
            now = sim.venue.clock.now_ms()
            resting = make_intent(
                order_type=OrderType.LIMIT,
                price=doge.round_price(0.15),  # half the market: it rests
                quantity=Decimal(100),
                expires_ms=now + 30_000,
            )
            placed = await broker.submit(resting, now)
            assert placed.order.status is OrderStatus.OPEN
            assert [o.client_order_id for o in await gateway.fetch_open_orders("DOGE/USDT")] == [resting.client_order_id]

            assert await broker.sync(now + 29_999) == []
            (expired,) = await broker.sync(now + 30_000)
            assert expired.order.status is OrderStatus.CANCELED
            assert await gateway.fetch_open_orders("DOGE/USDT") == []
            on_exchange = await gateway.fetch_order("DOGE/USDT", resting.client_order_id)
            assert on_exchange.status is OrderStatus.CANCELED

            # Refused before it is sent: the gateway checks the market's filters itself.
            too_small = make_intent(client_order_id="hc-0123456789abcdef-e2", quantity=Decimal(1))  # 0.3 USDT
            with pytest.raises(NonRetryableOrderError, match="NOTIONAL"):
                await broker.submit(too_small, now + 30_001)
            # Refused by the exchange: 3 M USDT of DOGE on a 10,000 USDT account (-2010).
            too_big = make_intent(client_order_id="hc-0123456789abcdef-e3", quantity=Decimal(10_000_000))
            with pytest.raises(NonRetryableOrderError) as refused:
                await broker.submit(too_big, now + 30_002)
            assert str(refused.value.code) == "-2010"
            assert sim.venue.engine.account(API_KEY).balance("USDT").locked == 0
        finally:
            await gateway.close()
