"""The engine against the simulated exchange with faults injected: each fault drives the
expected engine_state changes, the engine recovers when it clears, and nothing is lost or
sent twice.

Thresholds are in exchange seconds and the exchange runs at x100 (x200 where a pump is traded), so `stale_degraded_s=30`
is 0.3 s of wall time and every test takes a few seconds. Market data arrives every 5
exchange seconds; without a pump the engine still calls REST all the time (the regime
symbol's candles every bar, the broker's reconcile every 15 s), so REST faults are met at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import HotcoinConfig
from engine.domain import EngineState, OrderIntent, OrderPurpose
from engine.execution.broker import OrderUpdate
from engine.execution.exchange_broker import LANDED_LATE, NEVER_REACHED, ExchangeBroker
from engine.journal.reader import JournalReader
from engine.market.errors import AUTH_FIX
from engine.ops.http import health_document, health_status
from engine.sim.server import FaultController, FaultPlan
from engine.sim.server.faults import LostReply
from tests.kit.exchange_rig import ExchangeRig, exchange_config, exchange_rig
from tests.kit.waiting import eventually

SPEED = 100.0
T, D, B = EngineState.TRADEABLE, EngineState.DEGRADED, EngineState.BLOCKED


def fault_config(request_timeout_ms: int = 500) -> HotcoinConfig:
    """500 ms requests: an injected 0.7 s hang times out."""
    return exchange_config(
        **{
            "state.stale_degraded_s": 30,
            "state.stale_blocked_s": 90,
            "state.ws_down_degraded_s": 20,
            "state.order_error_window_s": 300,
            "state.order_errors_degraded": 3,
            "state.order_errors_blocked": 50,
            "exchange.stale_stream_s": 20,
            "exchange.request_timeout_ms": request_timeout_ms,
        }
    )


@asynccontextmanager
async def running(
    tmp_path: Path, *, pump: bool = False, speed: float = SPEED, request_timeout_ms: int = 500
) -> AsyncIterator[ExchangeRig]:
    """A started engine (trading, tradeable) on the sim exchange; stopped and flushed on exit."""
    async with exchange_rig(
        tmp_path / "journal.sqlite",
        fault_config(request_timeout_ms),
        speed=speed,
        pump_after_ms=6 * 60_000 if pump else None,
        idle_s=0.1,
        exchange_fee_rate=Decimal(0),  # quantities then compare exactly between journal and exchange
    ) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: task.done() or engine.stats.cycles > 10, timeout=20)
            assert not task.done(), task.exception()
            yield rig
            assert not task.done(), f"the engine died: {task.exception()!r}"
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)
            await rig.journal.flush()


def transitions(rig: ExchangeRig) -> list[tuple[str, str, list[str]]]:
    with JournalReader(rig.journal.path) as reader:
        return [(e.payload["from"], e.payload["to"], e.payload["reasons"]) for e in reader.events(kinds=["state_change"])]


def reason_codes(rig: ExchangeRig) -> set[str]:
    return {r.code for r in rig.engine.state.reasons}


async def test_silent_websocket_degrades_then_blocks_and_recovers(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        engine = rig.engine
        assert engine.state.state is T
        rig.server.faults.update({"ws_half_open": True})  # connections stay open, nothing arrives
        # Stale data blocks first; the stream's watchdog (2 s of wall time at least) then
        # finds the silent socket and redials, and the stream shows as down.
        await eventually(lambda: engine.state.state is B and {"data_stale", "ws_down"} <= reason_codes(rig), timeout=15)
        await eventually(lambda: engine.hub.latest is not None and engine.hub.latest.status.state == "blocked")
        snap = engine.hub.latest
        assert snap is not None
        tickers = next(s for s in snap.status.streams if s.name == "tickers")
        assert tickers.status in ("down", "stale")
        cycles = engine.stats.cycles
        await eventually(lambda: engine.stats.cycles > cycles + 3)  # heartbeats keep the loop going
        rig.server.faults.reset()
        await eventually(lambda: engine.state.state is T, timeout=15)
        assert rig.gateway.health()["tickers"].reconnects >= 1
    changes = transitions(rig)
    assert [(a, b) for a, b, _ in changes[:2]] == [("tradeable", "degraded"), ("degraded", "blocked")]
    assert changes[-1][1] == "tradeable"
    assert set(changes[0][2]) <= {"ws_down", "data_stale"} and changes[0][2]  # whichever threshold came first
    assert "data_stale" in changes[1][2]


async def test_repeated_abrupt_drops_are_reconnected_without_leaving_tradeable(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        engine = rig.engine
        rig.server.faults.update({"drop_ws_every_s": 0.3, "drop_ws_abrupt": True})
        await eventually(lambda: rig.gateway.health()["tickers"].reconnects >= 3, timeout=15)
        rig.server.faults.reset()
        batches = rig.feed.batches
        await eventually(lambda: rig.feed.batches > batches + 10)
        assert engine.state.state is T
    assert not [t for t in transitions(rig) if t[1] == "blocked"], "a short reconnect must not block trading"


RestFault = Callable[[FaultController], None]


@pytest.mark.parametrize(
    ("inject", "kind"),
    [
        pytest.param(lambda f: f.rate_limit(2), "rate_limited", id="429-storm"),
        pytest.param(lambda f: f.ban(1.0), "banned", id="418-ban"),
    ],
)
async def test_rate_limits_silence_the_gateway_then_it_recovers(tmp_path: Path, inject: RestFault, kind: str) -> None:
    """429/418: the gateway sends nothing (REST and streams) until the silence ends; market data
    stops meanwhile, so the engine goes stale and blocks, then trades again."""
    async with running(tmp_path) as rig:
        engine = rig.engine
        inject(rig.server.faults)
        await eventually(lambda: rig.gateway.health()["rest"].rate_limited_until_ms > 0, timeout=10)
        await eventually(lambda: engine.state.state is not T, timeout=10)
        snap = engine.hub.latest
        assert snap is not None
        rest = next(s for s in snap.status.streams if s.name == "rest")
        assert rest.status == "error" and "rate limited" in rest.detail
        await eventually(lambda: engine.state.state is T, timeout=20)
        assert rig.server.faults.injected[kind] >= 1
    assert "data_stale" in {r for t in transitions(rig) for r in t[2]}


@pytest.mark.parametrize(
    ("inject", "kind"),
    [
        pytest.param(lambda f: f.fail_with_5xx(10_000), "server_error", id="5xx"),
        pytest.param(lambda f: f.hang(10_000, 0.7), "hang", id="timeouts"),
    ],
)
async def test_failing_rest_calls_degrade_through_order_errors_and_recover(
    tmp_path: Path, inject: RestFault, kind: str
) -> None:
    """5xx and timeouts: failed reconciles count as order errors (>= 3 in the window degrades);
    candle fetches that fail are retried on the next bar; the errors age out and trading resumes.
    The fault lasts until the engine degrades and a candle fetch has failed, then ends: how
    many of a fixed number of failing calls reach the broker rather than the candle fetches
    depends on the machine's speed (a fixed 8 was flaky under load)."""
    async with running(tmp_path) as rig:
        engine = rig.engine
        inject(rig.server.faults)
        # Degraded for the order errors; blocked too where the candle fetches, each waiting out
        # its timeout, made a cycle long enough for the data to go stale (a slow machine's case).
        await eventually(
            lambda: engine.state.state in (D, B) and "order_errors" in reason_codes(rig) and rig.feed.last_error is not None,
            timeout=20,
        )
        rig.server.faults.reset()
        await eventually(lambda: engine.state.state is T, timeout=20)
        assert rig.server.faults.injected[kind] >= 1


async def test_malformed_and_nan_ticks_are_survived(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        engine = rig.engine
        symbols = list(await rig.feed.markets())
        rig.server.faults.update({"ticker_nan_rate": 0.3, "ticker_malformed_rate": 0.05})
        # NaN bid/ask reach the feed as NaN (no quote for paper fills), never as a crash.
        await eventually(lambda: any(math.isnan(rig.feed.book(s)[0]) for s in symbols), timeout=15)
        cycles = engine.stats.cycles
        await eventually(lambda: engine.stats.cycles > cycles + 20, timeout=15)
        rig.server.faults.reset()
        batches = rig.feed.batches
        await eventually(lambda: rig.feed.batches > batches + 10 and engine.state.state is T, timeout=15)
        assert all(not math.isnan(rig.feed.book(s)[0]) for s in symbols)


async def test_order_timeouts_and_5xx_lose_nothing_and_send_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first exit orders of a traded pump meet a fault armed just before they are sent: a
    timeout (outcome unknown until the reconcile asks the exchange), then a 5xx. The core sends
    the exit again under a new client id; every execution on the exchange is booked once, the
    position ends flat on both sides, no client order id reached the exchange twice, and the
    unknown outcome is journaled as such."""
    async with running(tmp_path, pump=True, speed=200.0) as rig:
        engine = rig.engine
        faults = rig.server.faults
        arm = [lambda: faults.hang(1, 0.7), lambda: faults.fail_with_5xx(1)]
        broker = engine.broker
        assert isinstance(broker, ExchangeBroker)
        submit = broker.submit

        async def faulty_submit(intent: OrderIntent, now_ms: int) -> OrderUpdate:
            if arm and intent.purpose is not OrderPurpose.ENTRY:
                arm.pop(0)()  # consumed by the very next REST call: this order's POST
            return await submit(intent, now_ms)

        monkeypatch.setattr(broker, "submit", faulty_submit)
        await eventually(lambda: engine.stats.fills >= 2 and engine.core is not None and not engine.core.book.holdings, timeout=60)
        account = rig.account()
        assert not arm, "fewer than two exit orders were sent"
        assert faults.injected["hang"] == 1 and faults.injected["server_error"] == 1
    sent = Counter(o.client_order_id for o in account.orders.values())
    assert sent and max(sent.values()) == 1, f"an order was sent twice: {sent.most_common(3)}"
    with JournalReader(rig.journal.path) as reader:
        fills = list(reader.events(kinds=["fill"]))
    for side in ("BUY", "SELL"):
        on_exchange = sum((t.qty for t in account.trades if t.side.value == side), Decimal(0))
        booked = sum(Decimal(str(e.payload["quantity"])) for e in fills if e.payload["side"] == side.lower())
        assert booked == on_exchange, f"{side}: booked {booked}, executed {on_exchange}"
    assert rig.pump_symbol is not None
    assert account.free(rig.pump_symbol.split("/")[0]) == 0
    with JournalReader(rig.journal.path) as reader:
        statuses = Counter(e.payload["status"] for e in reader.events(kinds=["order_result"]))
    assert statuses["unknown"] >= 1, statuses


async def test_partial_fills_on_a_thin_book_are_booked_as_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pump coin's book shows 5 coins a level (5 levels): a market order bigger than that
    fills in part and the rest expires, as on Binance. The engine books exactly what executed,
    sells no more than it holds, and ends flat on the exchange too. No hang is injected here, so
    requests get a generous timeout: at 500 ms, a candle request slowed by a loaded CI box
    timed out once, and the engine (most likely for that) missed the only pump (CI, 2026-12-04)."""
    async with running(tmp_path, pump=True, speed=200.0, request_timeout_ms=10_000) as rig:
        engine = rig.engine
        real_book = rig.market.book

        def thin_book(symbol: str) -> tuple[float, float, float, float]:
            bid, bid_qty, ask, ask_qty = real_book(symbol)
            return (bid, min(bid_qty, 5.0), ask, min(ask_qty, 5.0)) if symbol == rig.pump_symbol else (bid, bid_qty, ask, ask_qty)

        monkeypatch.setattr(rig.market, "book", thin_book)
        await eventually(lambda: engine.stats.fills >= 2 and engine.core is not None and not engine.core.book.holdings, timeout=60)
        account = rig.account()
    assert rig.pump_symbol is not None
    market_id = rig.pump_symbol.replace("/", "")
    partial = [o for o in account.orders.values() if o.symbol == market_id and 0 < o.executed_qty < o.orig_qty]
    assert partial, "no order filled in part"
    with JournalReader(rig.journal.path) as reader:
        fills = list(reader.events(kinds=["fill"]))
        failed = [e for e in reader.events(kinds=["order_result"]) if e.payload.get("error_class")]
    assert not failed, failed[0].payload["error"]
    for side in ("BUY", "SELL"):
        on_exchange = sum((t.qty for t in account.trades if t.side.value == side), Decimal(0))
        booked = sum(Decimal(str(e.payload["quantity"])) for e in fills if e.payload["side"] == side.lower())
        assert booked == on_exchange, f"{side}: booked {booked}, executed {on_exchange}"
    assert account.free(rig.pump_symbol.split("/")[0]) == 0


async def test_an_entry_that_lands_after_it_was_taken_as_never_reached_is_booked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pump's first entry gets no reply (the client gives up after 0.5 s, 100 exchange
    seconds at x200), the exchange does not know it then, and the sync after the grace journals
    it rejected; the exchange executes it 300 exchange seconds after it arrived (Binance's
    backend queue). The broker's watch or the user stream finds it: journaled unknown, rejected,
    then filled (open first, when pushed as placed), its fill booked once, and the position,
    its exits and the cash end exactly as the account does."""
    async with running(tmp_path, pump=True, speed=200.0) as rig:
        engine = rig.engine
        assert engine.core is not None
        start_cash = engine.core.cash
        faults = rig.server.faults
        faults.update({"hang_s": 0.7})  # wall seconds: past the client's 0.5 s
        broker = engine.broker
        assert isinstance(broker, ExchangeBroker)
        submit = broker.submit
        late: list[str] = []

        async def faulty_submit(intent: OrderIntent, now_ms: int) -> OrderUpdate:
            if not late and intent.purpose is OrderPurpose.ENTRY:
                late.append(intent.client_order_id)
                faults.land_orders_late(1, after_s=300, as_=LostReply.TIMEOUT)  # this order's POST
            return await submit(intent, now_ms)

        monkeypatch.setattr(broker, "submit", faulty_submit)

        def settled() -> bool:
            core = engine.core
            landed = bool(late) and late[0] in rig.account().by_client_id
            return landed and core is not None and not core.book.holdings and late[0] not in broker.watching_late()

        await eventually(settled, timeout=60)
        account = rig.account()
        core = engine.core
        assert core is not None and faults.injected["late_order"] == 1
        cash = core.cash
    cid = late[0]
    with JournalReader(rig.journal.path) as reader:
        results = [e.payload for e in reader.events(kinds=["order_result"]) if e.payload["client_order_id"] == cid]
        fills = list(reader.events(kinds=["fill"]))
    assert [(r["status"], r.get("detail")) for r in results[:2]] == [("unknown", None), ("rejected", NEVER_REACHED)]
    # Then the broker's watch finds it filled, or the user stream pushes it as the exchange
    # places it (NEW) and then fills it: landed late either way, its fill booked once.
    assert results[2].get("detail") == LANDED_LATE
    assert [r["status"] for r in results[2:]] in (["filled"], ["open", "filled"])
    (late_fill,) = [e for e in fills if e.payload["client_order_id"] == cid]
    assert Decimal(str(late_fill.payload["quantity"])) == account.orders[account.by_client_id[cid]].executed_qty
    for side in ("BUY", "SELL"):
        on_exchange = sum((t.qty for t in account.trades if t.side.value == side), Decimal(0))
        booked = sum(Decimal(str(e.payload["quantity"])) for e in fills if e.payload["side"] == side.lower())
        assert booked == on_exchange, f"{side}: booked {booked}, executed {on_exchange}"
    assert rig.pump_symbol is not None and account.free(rig.pump_symbol.split("/")[0]) == 0
    spent = Decimal(10_000) - account.free("USDT")  # the sim's start balance; no fees here
    assert cash - start_cash == pytest.approx(-float(spent), abs=1e-6)


async def test_a_key_that_cannot_trade_blocks_with_what_to_fix_and_reads_go_on(tmp_path: Path) -> None:
    """Orders refused with -2015 (a key without trading permission; ccxt raises it as
    DDoSProtection once a private call worked): no rate-limit silence, so reads go on; the engine
    blocks at once under `exchange_auth`, whose words say what to fix, in the state, the streams
    and /health, and journals that once, not as a count of order errors."""
    async with running(tmp_path, pump=True, speed=200.0) as rig:
        engine = rig.engine
        rig.server.faults.update({"key_cannot_trade": True})
        await eventually(lambda: "exchange_auth" in reason_codes(rig), timeout=30)
        await eventually(lambda: engine.hub.latest is not None and engine.hub.latest.status.state == "blocked")
        cycles = engine.stats.cycles
        await eventually(lambda: engine.stats.cycles > cycles + 5)
        assert rig.gateway.health()["rest"].rate_limited_until_ms == 0
        assert engine.state.errors.count(rig.feed.now_ms()) == 0
        snap = engine.hub.latest
        assert snap is not None
        rest = next(s for s in snap.status.streams if s.name == "rest")
        assert rest.status == "error" and AUTH_FIX in rest.detail
        doc = health_document(snap, {}, rig.feed.now_ms())
        reasons = doc["reasons"]
        assert isinstance(reasons, list) and any(AUTH_FIX in r for r in reasons)
        assert health_status(doc, 30.0) == 503
    assert [t for t in transitions(rig) if t[1] == "blocked"] == [("tradeable", "blocked", ["exchange_auth"])]
    with JournalReader(rig.journal.path) as reader:
        refused = [e.payload for e in reader.events(kinds=["order_result"]) if e.payload.get("code") == "-2015"]
    assert refused and all(p["error_class"] == "non_retryable" and p["counted"] is False for p in refused)


async def test_a_clock_skew_present_at_start_is_measured_and_the_engine_trades(tmp_path: Path) -> None:
    """An exchange clock 120 s ahead of ours before the engine starts (`hotcoin run` against a
    sim-exchange given `clock_skew_ms` first, as a box whose clock runs slow meets Binance). The
    engine's clock is read from the exchange's time, skew included, as market time must be; the
    first signed call is refused (-1021) and the resync measures the skew against the clock ccxt
    signs with, the wall's. Measured against the exchange's own clock it read +1 ms, so every
    signed call stayed refused and the engine blocked for good on `clock_skew` ("its clock reads
    +1 ms from ours"); and the sim stamped its market data on a clock without the skew, so the
    data looked 120 s stale too. The exchange at x1 keeps the wall's time, as
    `hotcoin sim-exchange` does."""
    skew_ms = 120_000
    async with exchange_rig(
        tmp_path / "journal.sqlite",
        fault_config(request_timeout_ms=5_000),
        speed=1.0,
        pump_after_ms=None,
        idle_s=0.1,
        start_ms=time.time_ns() // 1_000_000,
        faults=FaultPlan(clock_skew_ms=skew_ms),
    ) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: task.done() or rig.gateway.health()["rest"].clock_offset_ms is not None, timeout=30)
            assert not task.done(), task.exception()
            await rig.gateway.fetch_balance()  # signed: accepted on the measured offset
            await eventually(lambda: engine.stats.cycles > 10, timeout=30)
            offset = rig.gateway.health()["rest"].clock_offset_ms
            assert offset is not None and abs(offset - skew_ms) < 1_000
            assert rig.gateway.health()["rest"].fault is None
            now = rig.feed.now_ms()
            age = rig.feed.data_age_s(now)
            assert age is not None and age < 15, f"market data {age} s old on the exchange's clock"
            assert engine.state.state is T, engine.state.reasons
            assert not task.done(), task.exception()
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)
            await rig.journal.flush()
    assert not [t for t in transitions(rig) if t[1] == "blocked"]
