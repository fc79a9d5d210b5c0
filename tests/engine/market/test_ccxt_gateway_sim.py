"""The real ccxt.pro client, through CcxtGateway, against the simulated Binance on 127.0.0.1.

Every gateway method, and every fault the sim can inject. Time inside the gateway is a
`ManualClock`, so backoffs of minutes pass in microseconds; only the sim runs in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from engine.config.sections.exchange import ExchangeSection
from engine.domain import OrderStatus, OrderType, Side
from engine.errors import (
    MarketDataError,
    NonRetryableOrderError,
    OrderNotSentError,
    RateLimitedError,
    RetryableOrderError,
    UnknownOrderError,
)
from engine.market.ccxt_client import EndpointBinance, build_client
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.fake import ManualClock
from engine.market.gateway import GatewayNotice, NoticeKind
from engine.sim.server import SimExchangeServer
from tests.kit.domain import make_intent
from tests.kit.sim_exchange import API_KEY, SECRET, FakeMarketSource, running_sim_exchange
from tests.kit.waiting import eventually

GatewayFactory = Callable[..., tuple[CcxtGateway, ManualClock, list[GatewayNotice]]]


class ListingSource(FakeMarketSource):
    """The kit's deterministic market, plus listings that appear while we run."""

    def list_market(self, symbol: str, price: float) -> None:
        self.set_price(symbol, price)
        self._markets[symbol] = self._make_market(symbol, price)


@pytest.fixture
def source() -> FakeMarketSource:
    return ListingSource()


@pytest.fixture
async def sim(source: FakeMarketSource) -> AsyncIterator[SimExchangeServer]:
    async with running_sim_exchange(source) as server:
        yield server


@pytest.fixture
async def make_gateway(sim: SimExchangeServer) -> AsyncIterator[GatewayFactory]:
    made: list[CcxtGateway] = []

    def factory(
        *, auto: bool = True, ccxt_keepalive_ms: int | None = None, **settings: Any
    ) -> tuple[CcxtGateway, ManualClock, list[GatewayNotice]]:
        settings.setdefault("stale_stream_s", 0.0)  # an auto clock would fire the watchdog at once
        section = ExchangeSection(
            endpoint=sim.base_url, api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET), **settings
        )

        def client() -> EndpointBinance:
            ex = build_client(section)
            if ccxt_keepalive_ms is not None:  # below the config's 1 s floor: half-open found fast
                ex.streaming["keepAlive"] = ccxt_keepalive_ms
            return ex

        clock = ManualClock(sim.venue.clock.now_ms(), auto=auto)  # the gateway keeps the exchange's time
        notices: list[GatewayNotice] = []
        gateway = CcxtGateway(section, clock=clock, notify=notices.append, client_factory=client)
        made.append(gateway)
        return gateway, clock, notices

    yield factory
    for gateway in made:
        await gateway.close()


def subscriptions(sim: SimExchangeServer) -> int:
    """User-data subscriptions the sim has confirmed (connected is not yet subscribed)."""
    return sum(len(session.subscriptions) for session in sim.user_api._sessions)


# ---- every method ----------------------------------------------------------------------


async def test_market_data_methods(make_gateway: GatewayFactory) -> None:
    gw, _, _ = make_gateway()
    markets = await gw.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "DOGE/USDT"}
    assert markets["DOGE/USDT"].filters.step_size == Decimal("0.1")
    rest = await gw.fetch_tickers()
    assert dict(zip(rest.symbols, rest.last, strict=True))["DOGE/USDT"] == 0.3
    live = await gw.watch_tickers()
    assert set(live.symbols) == set(markets)
    assert np.all(live.bid < live.ask) and np.all(live.trade_count_24h == 50_000)
    candles = await gw.fetch_candles("DOGE/USDT", "1m", limit=5)
    assert len(candles) == 5 and candles[0].open_ms < candles[-1].open_ms
    assert await gw.fetch_candles("DOGE/USDT", "1m", limit=5) == candles
    assert (gw.candle_cache.hits, gw.candle_cache.misses) == (1, 1)
    watched = await gw.watch_candles("DOGE/USDT", "1m")
    assert watched and watched[-1].symbol == "DOGE/USDT" and watched[-1].timeframe == "1m"
    health = gw.health()
    assert health["tickers"].connected and health["tickers"].last_message_ms > 0
    assert health["candles:DOGE/USDT:1m"].connected


async def test_order_methods_with_exact_decimals_and_client_ids(make_gateway: GatewayFactory) -> None:
    gw, _, _ = make_gateway()
    market = await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-m1", quantity=Decimal("100.77")))
    assert market.status is OrderStatus.FILLED
    assert market.quantity == Decimal("100.7")  # floored to stepSize 0.1, sent as "100.7"
    assert market.trace_id == "0123456789abcdef" and market.average_price is not None
    limit = await gw.create_order(
        make_intent("DOGE/USDT", client_order_id="hc-l1", order_type=OrderType.LIMIT,
                    price=Decimal("0.2000004"), quantity=Decimal(50))
    )
    assert limit.status is OrderStatus.OPEN and limit.price == Decimal("0.2")  # buy price rounded down
    assert [o.client_order_id for o in await gw.fetch_open_orders()] == ["hc-l1"]
    assert [o.client_order_id for o in await gw.fetch_open_orders("DOGE/USDT")] == ["hc-l1"]
    assert (await gw.fetch_order("DOGE/USDT", "hc-l1")).status is OrderStatus.OPEN
    cancelled = await gw.cancel_order("DOGE/USDT", "hc-l1")
    assert cancelled.status is OrderStatus.CANCELED and cancelled.client_order_id == "hc-l1"
    fills = await gw.fetch_my_trades("DOGE/USDT")
    assert [f.client_order_id for f in fills] == ["hc-m1"]
    assert fills[0].trace_id == "0123456789abcdef" and fills[0].side is Side.BUY
    balance = await gw.fetch_balance()
    assert balance["DOGE"].free == Decimal("100.7") * Decimal("0.999")  # the sim's fee is 0.1% of the base
    assert balance["USDT"].total < Decimal(10_000)


async def test_a_fresh_gateway_maps_trades_of_orders_it_never_saw(make_gateway: GatewayFactory) -> None:
    first, _, _ = make_gateway()
    await first.create_order(make_intent("DOGE/USDT", client_order_id="hc-old", quantity=Decimal(30)))
    restarted, _, _ = make_gateway()
    fills = await restarted.fetch_my_trades("DOGE/USDT")
    assert [f.client_order_id for f in fills] == ["hc-old"]


async def test_user_streams_deliver_live_events(make_gateway: GatewayFactory, sim: SimExchangeServer) -> None:
    gw, _, _ = make_gateway()
    await gw.load_markets()
    orders = asyncio.ensure_future(gw.watch_orders())
    balance = asyncio.ensure_future(gw.watch_balance())
    await eventually(lambda: subscriptions(sim) == 2)
    await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-w1", quantity=Decimal(20)))
    seen = await orders
    assert seen[0].client_order_id == "hc-w1" and seen[0].trace_id == "0123456789abcdef"
    assert "DOGE" in await balance


async def test_a_cancel_is_filed_under_the_order_it_cancelled_on_rest_and_the_user_stream(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    """Binance names a cancel by its own made-up id (REST `clientOrderId`, WS `c`), the order's
    beside it (`origClientOrderId`, `C`): both paths must report the order under its own id."""
    gw, _, _ = make_gateway()
    await gw.load_markets()
    intent = make_intent("DOGE/USDT", client_order_id="hc-c1", order_type=OrderType.LIMIT, price=Decimal("0.2"))
    await gw.create_order(intent)
    orders = asyncio.ensure_future(gw.watch_orders())
    await eventually(lambda: subscriptions(sim) == 1)
    cancelled = await gw.cancel_order("DOGE/USDT", "hc-c1")
    assert (cancelled.client_order_id, cancelled.status, cancelled.trace_id) == ("hc-c1", OrderStatus.CANCELED, "0123456789abcdef")
    seen = await asyncio.wait_for(orders, 5)
    assert [(o.client_order_id, o.status) for o in seen] == [("hc-c1", OrderStatus.CANCELED)]


@pytest.mark.parametrize(
    ("intent", "code"),
    [
        ({"quantity": Decimal(10_000_000)}, -2010),
        ({"symbol": "NOPE/USDT"}, None),
        ({"quantity": Decimal(1)}, None),  # 0.3 USDT < minNotional 5: refused before sending
    ],
    ids=["insufficient-funds", "unknown-symbol", "min-notional"],
)
async def test_orders_that_cannot_succeed_are_non_retryable(
    make_gateway: GatewayFactory, intent: dict[str, Any], code: int | None
) -> None:
    gw, _, _ = make_gateway()
    with pytest.raises(NonRetryableOrderError) as caught:
        await gw.create_order(make_intent(**{"symbol": "DOGE/USDT", **intent}))
    assert caught.value.code == code


async def test_a_market_order_with_an_off_tick_reference_price_goes_out(make_gateway: GatewayFactory) -> None:
    """A MARKET order carries no price, so its reference (an average entry price, say) may lie
    off the tick grid (DOGE's tick is 0.000001): it values the notional, rounded to the grid."""
    gw, _, _ = make_gateway()
    bought = await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-o1", reference_price=0.3000004))
    sold = await gw.create_order(
        make_intent("DOGE/USDT", client_order_id="hc-o2", side=Side.SELL, quantity=Decimal(50), reference_price=0.2998537)
    )
    assert (bought.status, sold.status) == (OrderStatus.FILLED, OrderStatus.FILLED)
    with pytest.raises(NonRetryableOrderError, match=r"NOTIONAL: 4\.980* < minNotional"):  # 16.6 x 0.300000
        await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-o3", quantity=Decimal("16.6"), reference_price=0.3000004))


async def test_an_unknown_order_is_non_retryable_with_its_code(make_gateway: GatewayFactory) -> None:
    gw, _, _ = make_gateway()
    with pytest.raises(NonRetryableOrderError) as caught:
        await gw.fetch_order("DOGE/USDT", "hc-never")
    assert caught.value.code == -2013


async def test_an_order_ccxt_refuses_before_sending_it_is_not_sent_not_an_unknown_outcome(
    make_gateway: GatewayFactory, source: FakeMarketSource, sim: SimExchangeServer
) -> None:
    """A market served with tickSize "0.00000000" (the sim did so for every coin under 1e-4):
    ccxt asserts on its precision before any request leaves. Not a ccxt exception, it was an
    unknown outcome: journaled "unknown", looked up, later "rejected: never reached"."""
    assert isinstance(source, ListingSource)
    source.list_market("TINY/USDT", 0.00001)  # the kit's tick for it, 1e-10, is written "0.00000000"
    gw, _, _ = make_gateway()
    await gw.load_markets()
    intent = make_intent("TINY/USDT", order_type=OrderType.LIMIT, price=Decimal("0.00001"), quantity=Decimal(1_000_000))
    with pytest.raises(OrderNotSentError, match=r"not sent.*precision") as caught:
        await gw.create_order(intent)
    assert isinstance(caught.value.__cause__, UnknownOrderError)
    assert not sim.venue.engine.account(API_KEY).orders  # the exchange never saw it


# ---- stream faults ---------------------------------------------------------------------


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-1001", "tcp-abort"])
@pytest.mark.parametrize("decoder", ["ccxt", "fast"])
async def test_a_dropped_ticker_stream_reconnects_and_data_resumes(
    make_gateway: GatewayFactory, sim: SimExchangeServer, abrupt: bool, decoder: str
) -> None:
    gw, clock, notices = make_gateway(ticker_decoder=decoder)
    first = await gw.watch_tickers()
    waiting = asyncio.ensure_future(gw.watch_tickers())
    await eventually(lambda: sim.streams.connections == 1)
    await sim.drop_websockets(abrupt=abrupt)
    after = await waiting
    assert after.symbols == first.symbols
    health = gw.health()["tickers"]
    assert health.reconnects >= 1 and health.connected
    assert health.last_error is not None
    assert notices[0].kind is NoticeKind.RECONNECT
    assert notices[0].delay_s is not None and 0.25 <= notices[0].delay_s <= 0.5
    assert notices[0].delay_s in clock.sleeps  # the backoff went through the injected clock


@pytest.mark.parametrize(
    "fault",
    [{"ws_duplicate_rate": 1.0}, {"ws_reorder_rate": 0.5}, {"latency_ms": 150}],
    ids=["duplicates", "reordered", "latency"],
)
@pytest.mark.parametrize("decoder", ["ccxt", "fast"])
async def test_noisy_streams_still_deliver_whole_batches(
    make_gateway: GatewayFactory, sim: SimExchangeServer, fault: dict[str, Any], decoder: str
) -> None:
    gw, _, _ = make_gateway(ticker_decoder=decoder)
    sim.faults.update(fault)
    for _ in range(3):
        assert len(await asyncio.wait_for(gw.watch_tickers(), 10)) == 3
    assert gw.health()["tickers"].reconnects == 0


@pytest.mark.parametrize("duplicates", [0.0, 1.0], ids=["clean", "duplicated"])
async def test_back_to_back_user_events_all_arrive_and_converge(
    make_gateway: GatewayFactory, sim: SimExchangeServer, duplicates: float
) -> None:
    # NEW and TRADE of a market order arrive together; ccxt announces only the first unless
    # a watch is re-armed at once (the connection's pump), so FILLED must not wait for a
    # later, unrelated event.
    gw, _, _ = make_gateway()
    await gw.load_markets()
    sim.faults.update({"ws_duplicate_rate": duplicates})
    watching = asyncio.ensure_future(gw.watch_orders())
    await eventually(lambda: subscriptions(sim) == 1)
    await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-dup", quantity=Decimal(20)))
    latest: dict[str, Any] = {}
    updates = await asyncio.wait_for(watching, 10)
    while True:
        latest.update({o.client_order_id: o for o in updates})
        if latest["hc-dup"].status is OrderStatus.FILLED:
            break
        updates = await asyncio.wait_for(gw.watch_orders(), 10)
    assert latest["hc-dup"].filled_qty == Decimal(20)


async def test_fast_path_matches_the_ccxt_path(make_gateway: GatewayFactory) -> None:
    slow, _, _ = make_gateway()
    fast, _, _ = make_gateway(ticker_decoder="fast")
    a, b = await slow.watch_tickers(), await fast.watch_tickers()
    assert a.symbols == b.symbols
    np.testing.assert_allclose(a.last, b.last)
    np.testing.assert_allclose(a.quote_volume_24h, b.quote_volume_24h)


async def test_fast_path_surfaces_malformed_rows_as_counted_not_fatal(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    gw, _, _ = make_gateway(ticker_decoder="fast")
    await gw.watch_tickers()
    sim.faults.update({"ticker_malformed_rate": 1.0})
    batch = await gw.watch_tickers()
    assert len(batch) == 0
    sim.faults.reset()
    assert len(await gw.watch_tickers()) == 3


@pytest.mark.parametrize("decoder", ["ccxt", "fast"])
async def test_a_half_open_socket_is_detected_by_keepalive(
    make_gateway: GatewayFactory, sim: SimExchangeServer, decoder: str
) -> None:
    gw, _, _ = make_gateway(ccxt_keepalive_ms=200, keepalive_ms=1000, ticker_decoder=decoder)
    await gw.watch_tickers()
    sim.faults.update({"ws_half_open": True})
    waiting = asyncio.ensure_future(gw.watch_tickers())
    await eventually(lambda: gw.health()["tickers"].reconnects >= 1, timeout=10)
    sim.faults.update({"ws_half_open": False})
    assert len(await asyncio.wait_for(waiting, 10)) == 3
    assert gw.health()["tickers"].connected


async def test_planned_rotation_has_no_gap_and_is_not_a_reconnect(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    gw, clock, notices = make_gateway(auto=False, max_connection_age_s=1.0)
    await gw.watch_tickers()
    clock.advance(2)
    for _ in range(20):
        await gw.watch_tickers()
        if gw.health()["tickers"].rotations:
            break
    health = gw.health()["tickers"]
    assert health.rotations == 1 and health.reconnects == 0
    assert [n.kind for n in notices] == [NoticeKind.ROTATED]
    await eventually(lambda: sim.streams.connections == 1)
    assert len(await gw.watch_tickers()) == 3


async def test_user_stream_rotation_keeps_delivering_events(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    gw, clock, notices = make_gateway(auto=False, max_connection_age_s=1.0)
    await gw.load_markets()
    first = asyncio.ensure_future(gw.watch_orders())
    await eventually(lambda: subscriptions(sim) == 1)
    await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-r1", quantity=Decimal(20)))
    assert (await first)[0].client_order_id == "hc-r1"
    clock.advance(2)
    seen: list[str] = []

    async def consume() -> None:
        while True:
            seen.extend(o.client_order_id for o in await gw.watch_orders())

    consumer = asyncio.ensure_future(consume())
    try:
        await eventually(lambda: gw.health()["orders"].rotations == 1)
        await eventually(lambda: subscriptions(sim) == 1)  # the old subscription is gone
        await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-r2", quantity=Decimal(20)))
        await eventually(lambda: "hc-r2" in seen)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert gw.health()["orders"].reconnects == 0
    assert [n.kind for n in notices] == [NoticeKind.ROTATED]


async def test_an_idle_user_stream_rotates_too(make_gateway: GatewayFactory, sim: SimExchangeServer) -> None:
    gw, clock, notices = make_gateway(auto=False, max_connection_age_s=1.0)
    await gw.load_markets()
    watching = asyncio.ensure_future(gw.watch_orders())
    await eventually(lambda: subscriptions(sim) == 1)
    await eventually(lambda: gw.health()["orders"].connected)  # subscribed counts as live, no event needed
    clock.advance(2)  # no event at all: the rotation timer alone starts the replacement
    await eventually(lambda: gw.health()["orders"].rotations == 1)
    await eventually(lambda: subscriptions(sim) == 1)
    assert [n.kind for n in notices] == [NoticeKind.ROTATED]
    await gw.create_order(make_intent("DOGE/USDT", client_order_id="hc-idle", quantity=Decimal(20)))
    assert (await asyncio.wait_for(watching, 10))[0].client_order_id == "hc-idle"


async def test_an_order_filled_while_the_user_stream_was_down_is_surfaced(
    make_gateway: GatewayFactory, sim: SimExchangeServer, source: FakeMarketSource
) -> None:
    gw, clock, notices = make_gateway(auto=False)
    limit = await gw.create_order(
        make_intent("DOGE/USDT", client_order_id="hc-gap", order_type=OrderType.LIMIT,
                    price=Decimal("0.29"), quantity=Decimal(100))
    )
    assert limit.status is OrderStatus.OPEN
    await gw.fetch_balance()
    watching = asyncio.ensure_future(gw.watch_orders())
    await eventually(lambda: sim.user_api.connections == 1)
    await sim.drop_websockets()
    await eventually(lambda: clock.sleepers == 1)  # the stream is down, waiting out its backoff

    source.set_price("DOGE/USDT", 0.28)  # the limit fills now, and nobody is listening
    account = sim.venue.engine.account(API_KEY)

    def filled() -> bool:
        return account.orders[account.by_client_id["hc-gap"]].status.value == "FILLED"

    await eventually(filled)
    clock.advance(60)
    surfaced = await asyncio.wait_for(watching, 10)
    assert [(o.client_order_id, o.status) for o in surfaced] == [("hc-gap", OrderStatus.FILLED)]
    assert surfaced[0].trace_id == "0123456789abcdef"
    resync = next(n for n in notices if n.kind is NoticeKind.RESYNC).resync
    assert resync is not None and resync.gap_ms >= 0
    assert resync.balances["DOGE"].free > 0
    assert gw.health()["orders"].reconnects == 1


async def test_balance_stream_after_a_gap_returns_the_rest_balance(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    gw, clock, _ = make_gateway(auto=False)
    await gw.fetch_balance()
    watching = asyncio.ensure_future(gw.watch_balance())
    await eventually(lambda: sim.user_api.connections == 1)
    await sim.drop_websockets()
    await eventually(lambda: clock.sleepers == 1)
    other, _, _ = make_gateway()
    await other.create_order(make_intent("DOGE/USDT", client_order_id="hc-b1", quantity=Decimal(50)))
    clock.advance(60)
    balance = await asyncio.wait_for(watching, 10)
    assert balance["DOGE"].free == Decimal(50) * Decimal("0.999")


# ---- REST faults -----------------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "silence_s"), [(1, 60), (100, 100)], ids=["schedule", "retry-after"])
async def test_429_starts_a_silence_honouring_retry_after(
    make_gateway: GatewayFactory, sim: SimExchangeServer, retry_after: int, silence_s: int
) -> None:
    gw, clock, notices = make_gateway()
    sim.faults.update({"retry_after_s": retry_after, "rate_limit_burst": 2})
    start = clock.now_ms()
    with pytest.raises(RateLimitedError) as caught:
        await gw.fetch_balance()
    assert caught.value.until_ms == start + silence_s * 1000
    assert caught.value.retry_after_s == retry_after and caught.value.code == -1003 and caught.value.sent
    with pytest.raises(RateLimitedError, match="nothing sent") as refused:
        await gw.fetch_balance()
    assert refused.value.sent is False  # a caller counting requests or retries leaves it out
    assert sim.faults.plan.rate_limit_burst == 1  # the refused call never reached the server
    assert gw.health()["rest"].rate_limited_until_ms == start + silence_s * 1000
    assert notices[0].kind is NoticeKind.RATE_LIMITED and notices[0].until_ms == caught.value.until_ms
    clock.advance(silence_s)
    with pytest.raises(RateLimitedError) as again:
        await gw.fetch_balance()
    assert again.value.until_ms == clock.now_ms() + max(120, retry_after) * 1000  # the schedule climbs
    clock.advance(max(120, retry_after))
    assert "USDT" in await gw.fetch_balance()
    assert gw.health()["rest"].rate_limited_until_ms == 0


@pytest.mark.parametrize(("ban_s", "silence_s"), [(30, 60), (300, 300)], ids=["short-ban", "long-ban"])
async def test_418_ban_is_a_silence_at_least_as_long_as_the_ban(
    make_gateway: GatewayFactory, sim: SimExchangeServer, ban_s: int, silence_s: int
) -> None:
    gw, clock, _ = make_gateway()
    sim.faults.ban(ban_s)
    with pytest.raises(RateLimitedError) as caught:
        await gw.fetch_tickers()
    assert caught.value.until_ms == pytest.approx(clock.now_ms() + silence_s * 1000, abs=1000)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable_for_reads_and_unknown_for_orders(
    make_gateway: GatewayFactory, sim: SimExchangeServer, status: int
) -> None:
    gw, _, _ = make_gateway()
    await gw.load_markets()
    sim.faults.fail_with_5xx(2, [status])
    with pytest.raises(RetryableOrderError):
        await gw.fetch_balance()
    with pytest.raises(UnknownOrderError):
        await gw.create_order(make_intent("DOGE/USDT", quantity=Decimal(20)))


async def test_a_timeout_on_create_order_is_unknown_and_is_reconciled_by_client_id(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    gw, _, _ = make_gateway(request_timeout_ms=500)
    await gw.load_markets()
    sim.faults.hang(1, seconds=0.8)
    with pytest.raises(RetryableOrderError, match="RequestTimeout"):
        await gw.fetch_balance()  # a read: just ask again
    sim.faults.hang(1, seconds=0.8)
    intent = make_intent("DOGE/USDT", client_order_id="hc-slow", quantity=Decimal(20))
    with pytest.raises(UnknownOrderError, match="RequestTimeout"):
        await gw.create_order(intent)
    # The contract: look the order up by its client id before any retry.
    await asyncio.sleep(0.5)  # let the hung request finish (or not) on the server
    try:
        order = await gw.fetch_order("DOGE/USDT", "hc-slow")
    except NonRetryableOrderError as exc:
        if exc.code != -2013:
            raise
        order = await gw.create_order(intent)  # it never reached the book: resending is safe
    assert order.status is OrderStatus.FILLED
    account = sim.venue.engine.account(API_KEY)
    assert sum(o.client_order_id == "hc-slow" for o in account.orders.values()) == 1


async def test_a_failed_market_refresh_keeps_the_last_copy_and_retries_in_5_minutes(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    gw, clock, notices = make_gateway(auto=False, markets_refresh_s=3600)
    markets = await gw.load_markets()

    def kinds() -> list[NoticeKind]:
        return [n.kind for n in notices]

    clock.advance(3599)
    await gw.fetch_tickers()
    assert kinds() == []
    sim.faults.fail_with_5xx(2)  # the call that starts the refresh, and the refresh itself
    clock.advance(1)
    with pytest.raises(RetryableOrderError):
        await gw.fetch_tickers()  # use starts the due refresh, in the background
    await eventually(lambda: kinds() == [NoticeKind.MARKETS_REFRESH_FAILED])
    assert gw.markets == markets
    assert notices[0].delay_s == 300
    clock.advance(299)
    await gw.fetch_tickers()
    await asyncio.sleep(0.05)
    assert kinds() == [NoticeKind.MARKETS_REFRESH_FAILED]
    clock.advance(1)
    await gw.fetch_tickers()
    await eventually(lambda: kinds()[-1] is NoticeKind.MARKETS_REFRESHED)
    assert gw.markets == markets


async def test_fast_path_passes_nan_tickers_through_as_nan(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    gw, _, _ = make_gateway(ticker_decoder="fast")
    await gw.watch_tickers()
    sim.faults.update({"ticker_nan_rate": 1.0})
    batch = await gw.watch_tickers()
    while not np.isnan(batch.bid).all():  # a batch queued before the fault may come first
        batch = await gw.watch_tickers()
    assert len(batch) == 3 and np.isfinite(batch.quote_volume_24h).all()


async def test_a_silent_stream_is_redialled_by_the_watchdog(
    make_gateway: GatewayFactory, sim: SimExchangeServer
) -> None:
    # ccxt raises inside its receive callback on some bad fields, which ends its receive
    # loop without an error reaching the waiting watch; the same silence comes from a
    # server that stops pushing. The watchdog turns either into a reconnect.
    gw, clock, notices = make_gateway(auto=False, stale_stream_s=30)
    await gw.watch_tickers()
    sim.faults.update({"ws_half_open": True})  # silent, but still a connected socket
    waiting = asyncio.ensure_future(gw.watch_tickers())
    await eventually(lambda: clock.sleepers == 2)  # the watchdog, and the (distant) rotation timer
    clock.advance(30)
    await eventually(lambda: gw.health()["tickers"].reconnects == 1)
    assert "no message for 30 s" in (gw.health()["tickers"].last_error or "")
    sim.faults.reset()
    await eventually(lambda: clock.sleepers >= 1)
    clock.advance(1)
    assert len(await asyncio.wait_for(waiting, 10)) == 3
    assert notices[0].kind is NoticeKind.RECONNECT


@pytest.mark.parametrize("decoder", ["ccxt", "fast"])
async def test_a_new_listing_streams_once_market_info_is_refreshed(
    make_gateway: GatewayFactory, source: FakeMarketSource, decoder: str
) -> None:
    assert isinstance(source, ListingSource)
    gw, _, _ = make_gateway(ticker_decoder=decoder)
    assert len(await gw.watch_tickers()) == 3
    source.list_market("NEW/USDT", 1.5)
    batch = await gw.watch_tickers()
    while len(batch) == 3 and gw.unknown_ticker_symbols == 0 and not _fast_unknown(gw):
        batch = await gw.watch_tickers()
    assert "NEW/USDT" not in batch.symbols and "NEWUSDT" not in batch.symbols  # skipped, counted
    await gw.load_markets(reload=True)
    batch = await gw.watch_tickers()
    while "NEW/USDT" not in batch.symbols:
        batch = await gw.watch_tickers()
    assert len(batch) == 4


def _fast_unknown(gw: CcxtGateway) -> int:
    conns = gw._streams["tickers"].connections()
    return sum(getattr(getattr(c, "decoder", None), "unknown_ids", 0) for c in conns)


async def test_close_releases_every_connection(make_gateway: GatewayFactory, sim: SimExchangeServer) -> None:
    gw, _, _ = make_gateway()
    await gw.watch_tickers()
    await gw.watch_candles("BTC/USDT", "1m")
    assert sim.streams.connections == 2
    await gw.close()
    await gw.close()
    await eventually(lambda: sim.streams.connections == 0)
    with pytest.raises(RuntimeError, match="closed"):
        await gw.watch_candles("ETH/USDT", "1m")


def test_market_data_error_is_part_of_the_contract() -> None:
    assert issubclass(MarketDataError, Exception)
