"""MARKET_LOT_SIZE and PERCENT_PRICE_BY_SIDE end to end: the simulated exchange publishes them in
exchangeInfo and enforces them, the real ccxt.pro client maps its refusals as on Binance (-1013
-> InvalidOrder), and the engine, reading them from the loaded markets, sells a position bigger
than one market order allows in several orders and refuses a limit entry outside the band. A
MARKET sell valued at an off-tick reference (close-all with no quote) is not refused for
PRICE_FILTER: it carries no price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt
import orjson
import pytest
from pydantic import SecretStr

from engine.config import load_config
from engine.config.sections.exchange import ExchangeSection
from engine.domain import OrderPurpose, OrderType, Side
from engine.execution.close_all import close_all
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.precheck import OrderRequest, precheck
from engine.execution.router import OrderRouter
from engine.market.ccxt_gateway import CcxtGateway
from engine.trading import TradingCore
from tests.kit.domain import make_batch, make_intent
from tests.kit.events import RecordingSink
from tests.kit.sim_exchange import (
    API_KEY,
    SECRET,
    FakeMarketSource,
    make_binance_client,
    running_sim_exchange,
)

# DOGE/USDT at 0.3 (step 0.1): at most 1,000 DOGE per MARKET order; a buy priced at most 0.5 %
# over the average price, a sell at most 0.5 % under it.
FILTERS: dict[str, Any] = {
    "market_max_qty": Decimal(1000),
    "bid_multiplier_up": Decimal("1.005"),
    "bid_multiplier_down": Decimal("0.2"),
    "ask_multiplier_up": Decimal(5),
    "ask_multiplier_down": Decimal("0.995"),
    "avg_price_mins": 5,
}


def gateway_for(base_url: str) -> CcxtGateway:
    section = ExchangeSection(name="sim", api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET), enable_rate_limit=False)
    return CcxtGateway(section, endpoint=base_url)


async def test_a_market_exit_over_market_lot_size_sells_the_whole_position() -> None:
    async with running_sim_exchange(FakeMarketSource(filters=FILTERS), speed=1.0) as sim:
        gateway = gateway_for(sim.base_url)
        try:
            markets = await gateway.load_markets()
            doge = markets["DOGE/USDT"]
            assert (doge.filters.market_max_qty, doge.filters.bid_multiplier_up) == (Decimal(1000), Decimal("1.005"))
            sink = RecordingSink()
            router = OrderRouter(ExchangeBroker(gateway), sink)
            core = TradingCore(load_config(env={}).config.trading, markets, sink)
            now = sim.venue.clock.now_ms()
            # A marketable LIMIT buy (not held to MARKET_LOT_SIZE) fills 2,500 DOGE at once.
            entry = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.301"), quantity=Decimal(2500))
            bought = await router.send(entry, now)
            assert bought is not None and bought.fills
            core.on_order_update(bought, now)
            held = core.book.get("DOGE/USDT")
            assert held is not None
            qty = Decimal(repr(held.position.quantity))  # 2497.5: the commission was taken in DOGE
            assert qty > 2 * doge.filters.market_max_qty

            report = await close_all(core, router, now)
            assert (report.exits_filled, report.still_open) == (1, ("DOGE/USDT",))  # one order's worth sold
            for k in range(1, 5):  # the runtime's next cycles sell the rest
                if not core.book.holdings:
                    break
                t = now + 1000 * k
                for update in await router.send_all(core.on_tickers(make_batch({"DOGE/USDT": 0.3}, t), t), t, core.causes):
                    core.on_order_update(update, t)
            assert not core.book.holdings

            sold = [Decimal(e.payload["quantity"]) for e in sink.events if e.kind == "order_attempt" and e.payload["purpose"] == "close_all"]
            assert sold == [Decimal(1000), Decimal(1000), qty - 2000]
            assert not [e.payload for e in sink.events if e.kind == "order_result" and e.payload.get("error_class")]
            account = sim.venue.engine.account(API_KEY)
            assert account.free("DOGE") < doge.filters.step_size, "DOGE left on the exchange"
            assert not any(t.side.value == "SELL" and t.qty > 1000 for t in account.trades)
        finally:
            await gateway.close()


async def test_close_all_without_a_quote_sells_at_an_off_tick_average_entry_price() -> None:
    """Before any ticker reaches the core (just after a restart) close-all values its sell at the
    position's entry price, an average off the tick grid when the entry walked a thin book. The
    sell carries no price, so the gateway must not refuse it for PRICE_FILTER: it goes out."""
    async with running_sim_exchange(FakeMarketSource(book_qty=50.0), speed=1.0) as sim:
        gateway = gateway_for(sim.base_url)
        try:
            markets = await gateway.load_markets()
            doge = markets["DOGE/USDT"]
            sink = RecordingSink()
            router = OrderRouter(ExchangeBroker(gateway), sink)
            core = TradingCore(load_config(env={}).config.trading, markets, sink)
            now = sim.venue.clock.now_ms()
            bought = await router.send(make_intent(quantity=Decimal(200), reference_price=0.30015), now)
            assert bought is not None and bought.fills  # 200 against 50 displayed: walked several levels
            core.on_order_update(bought, now)
            held = core.book.get("DOGE/USDT")
            assert held is not None
            entry = Decimal(repr(held.position.entry_price))
            assert "PRICE_FILTER" in (doge.check_order(Decimal(100), entry) or "")  # off the tick grid

            report = await close_all(core, router, now + 1)
            assert (report.exits_sent, report.exits_filled, report.still_open) == (1, 1, ())
            (attempt,) = [e.payload for e in sink.events if e.kind == "order_attempt" and e.payload["purpose"] == "close_all"]
            assert attempt["reference_price"] == held.position.entry_price  # no quote: the entry price stood in
            assert not [e.payload for e in sink.events if e.kind == "order_result" and e.payload.get("error_class")]
            assert sim.venue.engine.account(API_KEY).free("DOGE") < doge.filters.step_size, "DOGE left on the exchange"
        finally:
            await gateway.close()


async def test_a_limit_entry_outside_the_price_band_is_refused_by_the_precheck_and_by_the_exchange() -> None:
    async with running_sim_exchange(FakeMarketSource(filters=FILTERS), speed=1.0) as sim:
        gateway = gateway_for(sim.base_url)
        client = make_binance_client(sim.base_url)
        try:
            doge = (await gateway.load_markets())["DOGE/USDT"]
            _, _, ask, _ = sim.venue.source.book("DOGE/USDT")
            request = OrderRequest(
                "hc-0123456789abcdef-e1", "0123456789abcdef", "DOGE/USDT", Side.BUY, OrderType.LIMIT,
                OrderPurpose.ENTRY, 100.0, ask, limit_price=ask * 1.01,
            )  # fmt: skip
            result = precheck(request, doge, quote_free=1e4, base_free=0.0, buy_cost_rate=0.001, max_order_quote=1e4)
            assert result.failed == ["percent_price_by_side"] and result.intent is None
            (band,) = [c for c in result.checks if c["name"] == "percent_price_by_side"]
            assert Decimal(band["value"]) == Decimal("0.303151")  # 1 % over the ask, on the tick
            assert band["threshold"] == "[0.06003, 0.30165075] = avg 0.30015 x bid multipliers"

            # Sent raw, the exchange refuses it with Binance's code and text; ccxt maps both filters
            # to InvalidOrder (the notes, section 4), so the engine counts them as it would live.
            await client.load_markets()
            with pytest.raises(ccxt.InvalidOrder, match="Filter failure: PERCENT_PRICE_BY_SIDE"):
                await client.create_order("DOGE/USDT", "limit", "buy", 100, float(band["value"]))
            assert orjson.loads(client.last_http_response) == {"code": -1013, "msg": "Filter failure: PERCENT_PRICE_BY_SIDE"}
            with pytest.raises(ccxt.InvalidOrder, match="Filter failure: MARKET_LOT_SIZE"):
                await client.create_order("DOGE/USDT", "market", "buy", 1500)
            assert orjson.loads(client.last_http_response) == {"code": -1013, "msg": "Filter failure: MARKET_LOT_SIZE"}
            assert sim.venue.engine.account(API_KEY).balance("USDT").free == Decimal(10_000)  # nothing moved
        finally:
            await client.close()
            await gateway.close()
