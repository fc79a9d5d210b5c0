"""Commissions of a resting LIMIT filled in parts, through the real ccxt.pro user stream against
the simulated exchange: each trade's commission is booked once, exactly, also when the orders
stream was reconnected between two parts (a fresh ccxt instance starts its fee sums over, so the
first report after a reconnect carries only its own trade's commission)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr

from engine.config.sections.exchange import ExchangeSection
from engine.domain import Fill, OrderStatus, OrderType
from engine.execution.exchange_broker import ExchangeBroker
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.gateway import GatewayNotice, NoticeKind
from engine.sim.server import SimExchangeServer
from tests.kit.domain import make_intent
from tests.kit.sim_exchange import API_KEY, SECRET, FakeMarketSource, running_sim_exchange
from tests.kit.waiting import eventually

LIMIT = Decimal("0.29")
PART = 25.0  # the displayed quantity: a resting order of 100 fills in four parts


@pytest.fixture
async def sim_and_source() -> AsyncIterator[tuple[SimExchangeServer, FakeMarketSource]]:
    source = FakeMarketSource(book_qty=PART)
    async with running_sim_exchange(source, speed=1.0) as sim:
        yield sim, source


def _fill_one_part(sim: SimExchangeServer, source: FakeMarketSource) -> None:
    """The market dips through the limit for exactly one book update, then recovers: one trade."""
    source.set_price("DOGE/USDT", 0.28)
    sim.publish_user_events(sim.venue.sync())
    source.set_price("DOGE/USDT", 0.30)


@pytest.mark.parametrize("drop_after", [None, 1, 2], ids=["no-drop", "drop-after-1", "drop-after-2"])
async def test_each_partial_fills_commission_is_booked_once_across_a_user_stream_reconnect(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource], drop_after: int | None
) -> None:
    sim, source = sim_and_source
    section = ExchangeSection(name="sim", api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET), enable_rate_limit=False)
    notices: list[GatewayNotice] = []
    gateway = CcxtGateway(
        section, endpoint=sim.base_url, reconnect_base_s=0.01, reconnect_cap_s=0.05, notify=notices.append
    )
    broker = ExchangeBroker(gateway)

    def resyncs() -> int:
        return sum(n.kind is NoticeKind.RESYNC for n in notices)

    fills: list[Fill] = []
    seen: list[OrderStatus] = []
    anomalies: list[str] = []

    async def consume() -> None:
        while True:
            for order in await gateway.watch_orders():
                seen.append(order.status)
                update = await broker.on_order(order, sim.venue.clock.now_ms())
                if update is not None:
                    fills.extend(update.fills)
                    anomalies.extend(update.anomalies)

    task = asyncio.create_task(consume())
    try:
        await gateway.load_markets()
        await eventually(lambda: sim.user_api.subscriptions == 1)
        intent = make_intent(order_type=OrderType.LIMIT, price=LIMIT, quantity=Decimal(100))
        assert (await broker.submit(intent, sim.venue.clock.now_ms())).order.status is OrderStatus.OPEN
        await eventually(lambda: len(seen) >= 1)  # the stream's NEW: the stream is live
        for part in range(1, 5):
            _fill_one_part(sim, source)
            await eventually(lambda part=part: sum(f.quantity for f in fills) >= PART * part)  # type: ignore[misc]
            if part == drop_after:
                before = resyncs()
                await sim.drop_websockets()
                await eventually(lambda: sim.user_api.subscriptions == 0)
                await eventually(lambda: sim.user_api.subscriptions == 1)
                # The reconnect's REST re-check, done: a fill made while it is still running shows
                # up in its snapshot (REST orders carry no commission) and would be booked at an
                # estimated fee before the stream's own report of it, a race of the test's making.
                await eventually(lambda before=before: resyncs() > before)  # type: ignore[misc]
        trades = sim.venue.engine.account(API_KEY).trades
        assert len(trades) == 4 and len(fills) == 4
        assert [Decimal(repr(f.fee_base)) for f in fills] == [t.commission for t in trades]
        assert Decimal(repr(sum(f.fee_base for f in fills))) == sum(t.commission for t in trades) == Decimal("0.1")
        assert anomalies == [] and broker.take_anomalies() == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gateway.close()
