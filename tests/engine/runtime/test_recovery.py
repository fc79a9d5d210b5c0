"""Restart recovery: holdings, cash, exit legs and sent ids rebuilt from the journal; open orders
settled with the broker (paper: lost with the process; exchange: looked up); all journaled."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.domain import (
    EngineState,
    Fill,
    Order,
    OrderIntent,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Side,
)
from engine.errors import NonRetryableOrderError, RetryableOrderError, UnknownOrderError
from engine.execution.broker import Broker, OrderUpdate
from engine.execution.client_ids import client_order_id
from engine.execution.exchange_broker import LANDED_LATE, NEVER_REACHED, VANISHED, ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.journal.events import JournalEvent
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.market.fake import FakeGateway
from engine.market.gateway import Balance
from engine.portfolio.positions import MISSING_REASON
from engine.portfolio.risk import RiskLevel
from engine.runtime.client import Command
from engine.runtime.recovery import (
    BALANCE_CHECK_MS,
    DID_NOT_LAND,
    LOST_IN_RESTART,
    RESTART_NEVER_REACHED,
    BalanceAudit,
    Recovery,
    read_journal,
    rebuild,
)
from engine.trading import TradingCore
from tests.kit.domain import T0, make_batch, make_intent, make_market
from tests.kit.engine import START_MS, plain_alts, pump_rig, quiet_config
from tests.kit.events import RecordingSink
from tests.kit.waiting import eventually

DOGE, PEPE, WIF = "DOGE/USDT", "PEPE/USDT", "WIF/USDT"
T_DOGE, T_PEPE, T_WIF, T_BONK = "d0d0d0d0d0d0d0d0", "e0e0e0e0e0e0e0e0", "f0f0f0f0f0f0f0f0", "a0a0a0a0a0a0a0a0"
CAPITAL = 1000.0


class _Failing(Broker):
    """A broker whose every submit fails with one error (an unknown outcome, a retryable one)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        raise self.error

    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        raise self.error

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        return []

    async def open_orders(self) -> list[Order]:
        return []


def _intent(trace: str, symbol: str, purpose: OrderPurpose, qty: str, leg: int = 1) -> OrderIntent:
    side = Side.BUY if purpose is OrderPurpose.ENTRY else Side.SELL
    return make_intent(
        symbol, client_order_id=client_order_id(trace, purpose, leg), trace_id=trace, side=side, purpose=purpose,
        quantity=Decimal(qty),
    )


async def _write(sink: RecordingSink, path: Path) -> None:
    """What `sink` recorded, as a journal file at `path` (what a run left behind)."""
    async with Journal.open(path) as journal:
        for e in sink.events:
            journal.emit(e.kind, ts_ms=e.ts_ms, payload=e.payload, trace_id=e.trace_id, symbol=e.symbol, cause=e.cause)


async def _history(sink: RecordingSink) -> TradingCore:
    """A real core, router and paper broker trade: DOGE opened and partly taken profit on (held),
    PEPE opened and stopped out (flat), a WIF entry of unknown outcome (open order), a BONK entry
    refused as retryable (its id is free again). Fees in cash, so the quantities stay round (a
    fee taken in coins: `test_a_buy_whose_fee_was_taken_in_coins_is_rebuilt_as_the_core_held_it`)."""
    core = TradingCore(load_config(env={}).config.trading, {s: make_market(s) for s in (DOGE, PEPE, WIF)}, sink)
    core.cash = CAPITAL
    paper = PaperBroker(FillModel(0.001, 0.001, 0.0, buy_fee_asset="quote"))
    paper.update_book(make_batch({DOGE: 0.3, PEPE: 0.01, WIF: 2.0}))
    router = OrderRouter(paper, sink)
    for intent in (
        _intent(T_DOGE, DOGE, OrderPurpose.ENTRY, "1000"),
        _intent(T_PEPE, PEPE, OrderPurpose.ENTRY, "5000"),
        _intent(T_DOGE, DOGE, OrderPurpose.TAKE_PROFIT, "400", leg=1),
        _intent(T_PEPE, PEPE, OrderPurpose.STOP_LOSS, "5000", leg=1),
    ):
        update = await router.send(intent, T0)
        assert update is not None
        core.on_order_update(update, T0)
    for error, trace, symbol in (
        (UnknownOrderError("timeout"), T_WIF, WIF),
        (RetryableOrderError("no book"), T_BONK, WIF),
    ):
        router.broker = _Failing(error)
        update = await router.send(_intent(trace, symbol, OrderPurpose.ENTRY, "10"), T0)
        assert update is not None
        core.on_order_update(update, T0)
    return core


async def test_rebuild_restores_what_the_core_held() -> None:
    sink = RecordingSink()
    core = await _history(sink)
    state = rebuild(sink.events, CAPITAL)

    assert set(state.book.holdings) == {DOGE} == set(core.book.holdings)
    got, want = state.book.holdings[DOGE].position, core.book.holdings[DOGE].position
    assert (got.quantity, got.trace_id, got.opened_ms) == (want.quantity, want.trace_id, want.opened_ms) == (600.0, T_DOGE, T0)
    assert got.entry_price == pytest.approx(want.entry_price)
    assert got.entry_fees == pytest.approx(want.entry_fees)
    assert got.realised_pnl == pytest.approx(want.realised_pnl)
    assert state.cash == pytest.approx(core.cash)
    held = state.book.holdings[DOGE]
    assert held.exit_legs == 1, "the next DOGE exit must be leg 2, not a reuse of leg 1"
    assert held.initial_qty == 1000.0
    assert got.tp_tiers_hit == (0,) and got.stop_price == pytest.approx(got.entry_price)  # break-even after TP1
    assert held.opened_seq is not None and sink.events[held.opened_seq - 1].kind == "position_update"
    wif_entry = client_order_id(T_WIF, OrderPurpose.ENTRY, 1)
    bonk_entry = client_order_id(T_BONK, OrderPurpose.ENTRY, 1)
    assert wif_entry in state.sent_ids and bonk_entry not in state.sent_ids
    assert set(state.open_orders) == {wif_entry}
    assert state.unbooked == [] and state.anomalies == []


async def test_a_fill_whose_position_update_was_lost_still_counts() -> None:
    sink = RecordingSink()
    await _history(sink)
    last_fill = max(e.seq for e in sink.events if e.kind == "fill" and e.symbol == PEPE)
    cut = [e for e in sink.events if not (e.kind == "position_update" and e.cause == last_fill)]
    state = rebuild(cut, CAPITAL)
    assert set(state.book.holdings) == {DOGE}, "the stop-loss fill closed PEPE even without its update"
    (unbooked,) = state.unbooked
    assert unbooked.fill_seq == last_fill and unbooked.change.action == "close"


def test_a_buy_whose_fee_was_taken_in_coins_is_rebuilt_as_the_core_held_it() -> None:
    """Binance without BNB keeps a buy's fee in the coins bought: the core holds 99.9 of 100 and
    pays no cash fee; a restart rebuilt 100 (every full exit then asked for coins that were
    not there) and took the fee from cash too."""
    from engine.portfolio.positions import as_booked
    from tests.kit.domain import make_fill

    sink = RecordingSink()
    core = TradingCore(load_config(env={}).config.trading, {DOGE: make_market(DOGE)}, sink)
    core.cash = CAPITAL
    buy = make_fill(client_order_id="b", symbol=DOGE, quantity=100.0, price=0.3, fee_quote=0.03, fee_base=0.1, trade_id="x1")
    order = Order("b", "1", DOGE, Side.BUY, OrderType.MARKET, OrderStatus.FILLED, Decimal(100), Decimal(100), average_price=0.3,
                  trace_id=T_DOGE, purpose=OrderPurpose.ENTRY)  # fmt: skip
    core.on_order_update(OrderUpdate(order, (buy,)), T0)
    state = rebuild(sink.events, CAPITAL)
    (got,), (want,) = state.book.holdings.values(), core.book.holdings.values()
    assert got.position.quantity == want.position.quantity == pytest.approx(99.9)
    assert state.cash == core.cash == CAPITAL + as_booked(buy)[1] == pytest.approx(CAPITAL - 30.0)


def _tail_after(events: list[JournalEvent], seq: int) -> list[JournalEvent]:
    return [e for e in events if e.seq > seq]


async def test_paper_restart_restores_positions_seeds_the_guard_and_cancels_lost_orders(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.core is not None and bool(engine.core.book.holdings), timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        core = engine.core
        assert core is not None
        (symbol, held), = core.book.holdings.items()
        # An entry handed to the broker when the process died: attempted, never answered.
        lost = client_order_id("1234567890abcdef", OrderPurpose.ENTRY, 1)
        rig.journal.emit(
            "order_attempt",
            ts_ms=engine._now,
            payload={"client_order_id": lost, "side": "buy", "order_type": "limit", "purpose": "entry", "quantity": "5", "price": "1.0"},
            trace_id="1234567890abcdef",
            symbol=symbol,
        )
        await rig.journal.flush()
        before = rig.journal.next_seq - 1

    state = read_journal(path, core.settings.capital.active.capital)
    async with pump_rig(path) as rig2:
        engine2 = rig2.engine
        engine2.core = TradingCore(engine2.config.trading, core.markets, engine2.tap, run_id="after")
        await Recovery(state).apply(engine2, engine._now + 5_000)
        restored = engine2.core.book.holdings[symbol]
        assert restored.position.quantity == held.position.quantity
        assert restored.position.entry_price == pytest.approx(held.position.entry_price)
        assert restored.position.trace_id == held.position.trace_id
        assert restored.exit_legs == held.exit_legs
        assert engine2.core.cash == pytest.approx(core.cash)
        # Re-deciding the first entry (same trace, same id) never reaches the broker again.
        entry_id = client_order_id(held.position.trace_id, OrderPurpose.ENTRY, 1)
        again = make_intent(symbol, client_order_id=entry_id, trace_id=held.position.trace_id)
        assert await engine2.router.send(again, engine2._now) is None
        assert engine2.router.suppressed == 1

    with JournalReader(path) as reader:
        events = _tail_after(list(reader.events()), before)
    results = [e for e in events if e.kind == "order_result" and e.payload["client_order_id"] == lost]
    assert [r.payload["status"] for r in results] == [OrderStatus.CANCELED.value]
    assert results[0].payload["reason"] == LOST_IN_RESTART
    (recovered,) = [e for e in events if e.kind == "risk_event" and e.payload["code"] == "recovered"]
    assert [p["symbol"] for p in recovered.payload["positions"]] == [symbol]
    assert recovered.payload["orders"] == [{"client_order_id": lost, "symbol": symbol, "outcome": LOST_IN_RESTART}]
    assert recovered.payload["cash"] == pytest.approx(core.cash)
    attempts = [e.payload["client_order_id"] for e in events if e.kind == "order_attempt"]
    assert entry_id not in attempts


async def test_a_restart_keeps_each_coins_re_entry_cool_down(tmp_path: Path) -> None:
    """With a 6 h cool-down, a coin sold before a restart was bought again right after it: only
    the coins still held got their last action back. Now every coin's last entry or exit is
    rebuilt exactly as the core kept it."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.stats.fills >= 2 and engine.core is not None and not engine.core.book.holdings, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        core = engine.core
        assert core is not None
        await rig.journal.flush()
    assert rig.pump_symbol in core.last_action_ms and rig.pump_symbol not in core.book.holdings

    state = read_journal(path, CAPITAL)
    assert state.last_action_ms == core.last_action_ms
    async with pump_rig(path) as rig2:
        engine2 = rig2.engine
        engine2.core = TradingCore(engine2.config.trading, core.markets, engine2.tap, run_id="after")
        await Recovery(state).apply(engine2, engine._now + 5_000)
        assert engine2.core.last_action_ms == core.last_action_ms


def _order(sink: RecordingSink, cid: str, trace: str, symbol: str, side: str, purpose: str, ts_ms: int) -> None:
    sink.emit("order_attempt", ts_ms=ts_ms, trace_id=trace, symbol=symbol,
              payload={"client_order_id": cid, "side": side, "order_type": "market", "purpose": purpose, "quantity": "1000",
                       "price": None})  # fmt: skip


def _answer(sink: RecordingSink, cid: str, trace: str, symbol: str, status: str, ts_ms: int) -> None:
    sink.emit("order_result", ts_ms=ts_ms, trace_id=trace, symbol=symbol,
              payload={"client_order_id": cid, "status": status, "error_class": None})  # fmt: skip


def _filled(sink: RecordingSink, cid: str, trace: str, symbol: str, side: str, qty: float, ts_ms: int) -> None:
    sink.emit("fill", ts_ms=ts_ms, trace_id=trace, symbol=symbol,
              payload={"client_order_id": cid, "side": side, "price": 0.3, "quantity": qty, "fee_quote": 0.0,
                       "trade_id": f"{cid}:{ts_ms}"})  # fmt: skip


def test_rebuild_times_each_coins_last_action_as_the_core_does() -> None:
    """The core's cool-down clock: set when it decides an entry or exit (the attempt's time) and
    when it books a close (the time of the order_result that brought the fill, later than the
    exchange's trade time when a sync found it) or writes dust off."""
    sink = RecordingSink()
    buy, sell = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1), client_order_id(T_DOGE, OrderPurpose.STOP_LOSS, 1)
    _order(sink, buy, T_DOGE, DOGE, "buy", "entry", T0)
    _answer(sink, buy, T_DOGE, DOGE, "filled", T0)
    _filled(sink, buy, T_DOGE, DOGE, "buy", 1000.0, T0)
    _order(sink, sell, T_DOGE, DOGE, "sell", "stop_loss", T0 + 10_000)
    _answer(sink, sell, T_DOGE, DOGE, "unknown", T0 + 10_000)
    _answer(sink, sell, T_DOGE, DOGE, "filled", T0 + 70_000)  # the sync that found it filled
    _filled(sink, sell, T_DOGE, DOGE, "sell", 1000.0, T0 + 11_000)  # the exchange's trade time
    buy, sell = client_order_id(T_PEPE, OrderPurpose.ENTRY, 1), client_order_id(T_PEPE, OrderPurpose.STOP_LOSS, 1)
    _order(sink, buy, T_PEPE, PEPE, "buy", "entry", T0)
    _answer(sink, buy, T_PEPE, PEPE, "filled", T0)
    _filled(sink, buy, T_PEPE, PEPE, "buy", 1000.0, T0)
    _order(sink, sell, T_PEPE, PEPE, "sell", "stop_loss", T0 + 20_000)
    _answer(sink, sell, T_PEPE, PEPE, "filled", T0 + 20_000)
    _filled(sink, sell, T_PEPE, PEPE, "sell", 999.9, T0 + 20_000)
    sink.emit("position_update", ts_ms=T0 + 90_000, trace_id=T_PEPE, symbol=PEPE,
              payload={"action": "close", "quantity": 0.0, "entry_price": 0.3, "realised_pnl": 0.0, "reason": "dust",
                       "position_trace_id": T_PEPE})  # fmt: skip
    refused = client_order_id(T_WIF, OrderPurpose.ENTRY, 1)
    _order(sink, refused, T_WIF, WIF, "buy", "entry", T0 + 5_000)
    _answer(sink, refused, T_WIF, WIF, "rejected", T0 + 5_000)

    state = rebuild(sink.events, CAPITAL)
    assert state.book.holdings == {} and state.anomalies == []
    assert state.last_action_ms == {DOGE: T0 + 70_000, PEPE: T0 + 90_000, WIF: T0 + 5_000}


async def test_a_restart_keeps_the_days_loss_limit_and_the_l5_block(tmp_path: Path) -> None:
    """A crash after an L5 day (the service restarts it) used to lift the daily loss limit and
    the 24 h block: the new run re-marked its start-of-day equity at the reduced equity."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.core is not None and engine.stats.cycles > 5, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        core = engine.core
        assert core is not None
        now = engine._now
        for event in core.risk.update(now, core.risk.start_equity * 0.9):  # a 10 % drawdown: L5 and the loss limit
            rig.journal.emit("risk_event", ts_ms=now, payload=event.payload())
        await rig.journal.flush()

    state = read_journal(path, core.settings.capital.active.capital)
    async with pump_rig(path) as rig2:
        engine2 = rig2.engine
        engine2.core = TradingCore(engine2.config.trading, core.markets, engine2.tap, run_id="after")
        later = now + 3_600_000
        await Recovery(state).apply(engine2, later)
        risk = engine2.core.risk
        assert (risk.level, risk.paused, risk.start_equity) == (RiskLevel.L5, True, core.risk.start_equity)
        assert engine2.state.l5_until_ms == now + int(engine2.config.state.l5_cooldown_s * 1000)



@pytest.mark.parametrize(("before", "after"), [("growth", "starter"), ("starter", "growth")])
async def test_a_restart_under_another_capital_profile_is_a_deposit_not_a_days_pnl(tmp_path: Path, before: str, after: str) -> None:
    """Switching the profile mid-day (growth 300 <-> starter 100) and restarting: cash came from
    the new capital, the day's start from the old, so 300 -> 100 read as a 200 loss (L5, blocked,
    health 503) and 100 -> 300 as a 200 gain with the loss limit 3 % of 100. The day's start now
    moves with the capital, journaled as a `capital_change`."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path, quiet_config(**{"trading.capital.profile": before})) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.core is not None and engine.stats.cycles > 5, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        await rig.journal.flush()
        seq = rig.journal.next_seq
    config = quiet_config(**{"trading.capital.profile": after})
    old, new = (quiet_config(**{"trading.capital.profile": p}).trading.capital.active.capital for p in (before, after))
    async with pump_rig(path, config, start_ms=engine._now + 60_000) as rig2:  # the same UTC day
        engine2 = rig2.engine
        engine2.recovery = Recovery(read_journal(path, new))
        task = asyncio.create_task(engine2.run())
        await eventually(lambda: engine2.hub.latest is not None and engine2.stats.cycles > 5, timeout=60)
        engine2.stop()
        await asyncio.wait_for(task, 10)
        snap = engine2.hub.latest
        assert snap is not None
        assert (snap.totals.equity, snap.totals.day_pnl) == (new, 0.0)  # no trades: no PnL either way
        assert snap.totals.daily_loss_limit == pytest.approx(-new * config.trading.risk.daily_loss_limit)
        assert (snap.status.state, engine2.core.risk.level) == (EngineState.TRADEABLE.value, RiskLevel.L1)
    with JournalReader(path) as reader:
        events = [e for e in reader.events(kinds=["run_start", "risk_event"]) if e.seq >= seq]
    assert events[0].payload["capital"] == new  # the run says what its cash started from
    (moved,) = [e.payload for e in events if e.payload.get("code") == "capital_change"]
    assert (moved["value"], moved["capital"]) == (new, new)
    assert f"capital {old:.2f} -> {new:.2f}" in moved["detail"]
    assert not [e for e in events if e.payload.get("code") in ("risk_level", "daily_loss_limit")]

async def test_a_restart_keeps_the_engine_blocked_and_its_order_errors(tmp_path: Path) -> None:
    """Ten exchange rejections block the engine; a restart (the service restarts a crashed
    engine) used to come back tradeable at once, with an empty error window."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.core is not None and engine.stats.cycles > 5, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        core = engine.core
        assert core is not None
        now = engine._now
        for k in range(engine.config.state.order_errors_blocked):  # journaled and counted as the router's are
            trace = f"{k:016x}"
            engine.tap.emit(
                "order_result", ts_ms=now - 60_000 + k,
                payload={"client_order_id": f"hc-{trace}-e1", "status": "rejected", "error_class": "non_retryable"},
                trace_id=trace, symbol=rig.pump_symbol,
            )
        await engine.cycle.step_state(now)  # journals the state_change to blocked
        assert engine.state.state is EngineState.BLOCKED
        await rig.journal.flush()

    state = read_journal(path, core.settings.capital.active.capital)
    async with pump_rig(path) as rig2:
        engine2 = rig2.engine
        engine2.core = TradingCore(engine2.config.trading, core.markets, engine2.tap, run_id="after")
        later = now + 5_000
        payload = await Recovery(state).apply(engine2, later)
        assert engine2.core.engine_state is EngineState.BLOCKED  # before the first cycle plans anything
        assert (payload["engine_state"], payload["order_errors"]) == ("blocked", engine2.config.state.order_errors_blocked)
        await engine2.cycle.step_state(later)
        assert engine2.state.state is EngineState.BLOCKED
        assert [r.code for r in engine2.state.reasons] == ["order_errors"]
        # Once the errors leave the window, six healthy cycles lead out, as before the restart.
        out = now + int(engine2.config.state.order_error_window_s * 1000)
        for i in range(engine2.config.state.recover_cycles_blocked):
            assert engine2.state.state is EngineState.BLOCKED
            await engine2.cycle.step_state(out + i * 5_000)
        assert engine2.state.state is EngineState.TRADEABLE


async def test_exchange_fills_made_while_down_are_booked_once(tmp_path: Path) -> None:
    """An entry of 100 was 40 filled when we died; the exchange filled the rest meanwhile."""
    cid = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1)
    sink = _entry_partly_filled(cid)
    fill = sink.emit("fill", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
                     payload={"client_order_id": cid, "side": "buy", "price": 0.3, "quantity": 40.0, "fee_quote": 0.012, "trade_id": f"{cid}:40"})
    sink.emit("position_update", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE, cause=fill,
              payload={"action": "open", "quantity": 40.0, "entry_price": 0.3, "realised_pnl": 0.0, "position_trace_id": T_DOGE})
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)
    assert state.open_orders[cid].filled_qty == 40.0

    gw = FakeGateway({DOGE: make_market()})
    gw.orders[cid] = dataclasses.replace(
        state.open_orders[cid].as_order(OrderStatus.FILLED, T0 + 60_000),
        exchange_order_id="9", filled_qty=Decimal(100), average_price=0.3, fee_quote=0.03,
    )
    async with pump_rig(path, broker=ExchangeBroker(gw)) as rig:
        engine = rig.engine
        engine.core = TradingCore(engine.config.trading, {DOGE: make_market()}, engine.tap)
        payload = await Recovery(state).apply(engine, T0 + 60_000)
        assert engine.core.book.holdings[DOGE].position.quantity == pytest.approx(100.0)
        assert engine.core.cash == pytest.approx(CAPITAL - 30.0 - 0.03)
        assert payload["orders"] == [{"client_order_id": cid, "symbol": DOGE, "outcome": "filled"}]
        await rig.journal.flush()
    with JournalReader(path) as reader:
        fills = [e.payload["quantity"] for e in reader.events(kinds=["fill"])]
    assert fills == [40.0, pytest.approx(60.0)], "only what the exchange did while we were down is new"


async def _replied_unbooked(sink: RecordingSink, broker: Broker, side: Side) -> tuple[float, OrderUpdate]:
    """A real core buys 1000 DOGE at 0.3 through `broker` (booked; skipped for `side` buy) and
    sends `side`'s order: the close-all sell of it at 0.32, or the buy itself. The broker fills it,
    the router journals its reply (filled) and the engine dies before booking it, as a kill during
    a close-all left it when another exit's reply hung: no fill in the journal. Returns the
    core's cash before the reply and the reply."""
    core = TradingCore(load_config(env={}).config.trading, {DOGE: make_market()}, sink)
    core.cash = CAPITAL
    router = OrderRouter(broker, sink)
    entry = _intent(T_DOGE, DOGE, OrderPurpose.ENTRY, "1000")
    if side is Side.BUY:
        reply = await router.send(entry, T0)
        assert reply is not None and reply.order.status is OrderStatus.FILLED
        return core.cash, reply
    bought = await router.send(entry, T0)
    assert bought is not None
    core.on_order_update(bought, T0)
    now = T0 + 60_000
    if isinstance(broker, ExchangeBroker):
        broker.gateway.push_tickers(make_batch({DOGE: 0.32}, now))  # type: ignore[attr-defined]
    else:
        assert isinstance(broker, PaperBroker)
        broker.update_book(make_batch({DOGE: 0.32}, now))
    core.begin_close_all(now)
    (sell,) = core.close_all_intents(now)
    (reply,) = await router.send_all([sell], now, core.causes)
    assert reply.order.status is OrderStatus.FILLED and reply.fills, "the broker sold it; the core never booked it"
    return core.cash, reply


def test_an_order_is_settled_once_the_fills_its_reply_reported_are_journaled() -> None:
    """The router journals a reply before the core journals its fills: the order stays one to
    settle until they cover what the reply reported. A reply journaled by a restart carries no
    quantity, so the largest reported stands."""
    cid = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1)
    sink = RecordingSink()
    attempt = sink.emit(
        "order_attempt", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
        payload={"client_order_id": cid, "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "100", "price": None},
    )  # fmt: skip
    sink.emit("order_result", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE, cause=attempt,
              payload={"client_order_id": cid, "status": "filled", "error_class": None, "filled_qty": "100.00000000", "average_price": 0.3})  # fmt: skip
    assert rebuild(sink.events, CAPITAL).open_orders[cid].reply_qty == 100.0
    _filled(sink, cid, T_DOGE, DOGE, "buy", 40.0, T0)
    sink.emit("order_result", ts_ms=T0 + 1, trace_id=T_DOGE, symbol=DOGE, cause=attempt,
              payload={"client_order_id": cid, "status": "filled", "error_class": None, "detail": "reconciled after restart"})  # fmt: skip
    short = rebuild(sink.events, CAPITAL).open_orders[cid]
    assert (short.filled_qty, short.reply_qty, short.reply_price) == (40.0, 100.0, 0.3)
    _filled(sink, cid, T_DOGE, DOGE, "buy", 60.0, T0 + 1)
    state = rebuild(sink.events, CAPITAL)
    assert state.open_orders == {} and state.book.holdings[DOGE].position.quantity == 100.0


@pytest.mark.parametrize("side", [Side.SELL, Side.BUY], ids=["close-all-sell", "entry"])
@pytest.mark.parametrize("venue", ["exchange", "exchange-forgot", "paper"])
async def test_an_order_replied_filled_whose_fill_died_with_the_process_is_booked_once(
    tmp_path: Path, venue: str, side: Side
) -> None:
    """Audit: a kill -9 during close-all left a sell's reply (filled) in the journal and its fill
    nowhere. Recovery took the reply as settled and the coins as held: the restart sold them
    again, the exchange refused, the coins were written down as missing (-100 USDT, the daily
    loss limit, blocked for a day). Short of its reply, the order is settled at the restart: by
    the exchange's lookup, or from the reply where the broker died with the process (paper) or
    the exchange no longer knows the order (its fee estimated at the taker rate); an entry
    likewise leaves no bought coin untracked."""
    sink = RecordingSink()
    sink.emit("run_start", ts_ms=T0, payload={"run_id": "before", "config_hash": "x", "mode": "live"})
    gw = FakeGateway({DOGE: make_market()})
    gw.push_tickers(make_batch({DOGE: 0.3}))
    paper = PaperBroker(FillModel(0.001, 0.001, 0.0, buy_fee_asset="quote"), id_prefix="before")
    paper.update_book(make_batch({DOGE: 0.3}))
    cash, reply = await _replied_unbooked(sink, paper if venue == "paper" else ExchangeBroker(gw), side)
    order, price = reply.order, reply.order.average_price
    assert price is not None
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)
    assert list(state.open_orders) == [order.client_order_id], "an order to settle, not one settled"

    if venue == "exchange-forgot":
        del gw.orders[order.client_order_id]
    restart = T0 + 3_600_000
    config = quiet_config(**{"trading.execution.slippage_bps": 0.0})
    async with pump_rig(path, config, broker=None if venue == "paper" else ExchangeBroker(gw)) as rig:
        engine = rig.engine
        core = engine.core = TradingCore(engine.config.trading, {DOGE: make_market()}, engine.tap)
        payload = await Recovery(state).apply(engine, restart)
        fee = 0.0 if venue == "exchange" else 0.001  # the fake exchange charges none; paper's and the estimate's rate
        if side is Side.SELL:
            assert DOGE not in core.book.holdings
            assert core.cash == pytest.approx(cash + 1000.0 * price * (1 - fee))
            assert core.on_tickers(make_batch({DOGE: 0.32}, restart + 60_000), restart + 60_000) == []
        else:
            held = core.book.holdings[DOGE].position
            assert held.quantity == pytest.approx(1000.0 * (1 - fee)), "the fee taken in coins, as this paper broker takes it"
            assert core.cash == pytest.approx(cash - 1000.0 * price)
        assert payload["orders"] == [{"client_order_id": order.client_order_id, "symbol": DOGE, "outcome": "filled"}]
        await rig.journal.flush()
    with JournalReader(path) as reader:
        events = _tail_after(list(reader.events()), len(sink.events))
    fills = [e for e in events if e.kind == "fill"]
    assert [(f.payload["client_order_id"], f.payload["quantity"]) for f in fills] == [(order.client_order_id, 1000.0)]
    assert not [e for e in events if e.kind == "order_attempt"], "nothing is sent again"
    assert not [e for e in events if e.payload.get("reason") == MISSING_REASON]
    if venue != "paper":
        assert [i.purpose for i in gw.created] == [OrderPurpose.ENTRY] + ([OrderPurpose.CLOSE_ALL] if side is Side.SELL else [])


async def _take_profit_in_flight(sink: RecordingSink, *bids: float) -> tuple[TradingCore, OrderIntent]:
    """A real core buys 1000 DOGE at 0.3 (paper) and takes profit at each of `bids`: every
    take-profit but the last fills, leaving 0.01 % unsold (`_Crumbs`: a fee kept in coins);
    the last one's outcome is unknown when the engine dies (in flight, as `kill -9` leaves it)."""
    core = TradingCore(load_config(env={}).config.trading, {DOGE: make_market()}, sink)
    core.cash = CAPITAL
    paper = _Crumbs(FillModel(0.001, 0.001, 0.0, buy_fee_asset="quote"))  # the crumbs are its only coins fee
    paper.update_book(make_batch({DOGE: 0.3}))
    router = OrderRouter(paper, sink)
    update = await router.send(_intent(T_DOGE, DOGE, OrderPurpose.ENTRY, "1000"), T0)
    assert update is not None
    core.on_order_update(update, T0)
    for i, bid in enumerate(bids, start=1):
        now = T0 + i * 60_000
        paper.update_book(make_batch({DOGE: bid}, now))
        if i == len(bids):
            router.broker = _Failing(UnknownOrderError("timeout"))
        (intent,) = core.on_tickers(make_batch({DOGE: bid}, now), now)
        assert intent.purpose is OrderPurpose.TAKE_PROFIT
        update = await router.send(intent, now)
        assert update is not None
        core.on_order_update(update, now)
    return core, intent


async def _restart_with_exit_filled(
    tmp_path: Path, sink: RecordingSink, intent: OrderIntent
) -> tuple[TradingCore, dict[str, Any], list[JournalEvent]]:
    """Restart on `sink`'s journal with an exchange that filled `intent` while the engine was
    down: the restarted core, the `recovered` payload and the events the restart journaled."""
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)
    restart = T0 + 3_600_000
    gw = FakeGateway({DOGE: make_market()})
    gw.orders[intent.client_order_id] = dataclasses.replace(
        state.open_orders[intent.client_order_id].as_order(OrderStatus.FILLED, restart),
        exchange_order_id="9", filled_qty=intent.quantity, average_price=float(intent.reference_price), fee_quote=0.1,
    )
    async with pump_rig(path, broker=ExchangeBroker(gw)) as rig:
        engine = rig.engine
        core = engine.core = TradingCore(engine.config.trading, {DOGE: make_market()}, engine.tap)
        payload = await Recovery(state).apply(engine, restart)
        await rig.journal.flush()
    with JournalReader(path) as reader:
        return core, payload, _tail_after(list(reader.events()), len(sink.events))


@pytest.mark.parametrize(
    ("bids", "journaled", "derived"), [((0.32,), 0, 0), ((0.32, 0.34), None, 1)], ids=["tier-1", "last-tier-sells-all"]
)
async def test_rebuild_restores_the_tier_a_take_profit_in_flight_sells(
    bids: tuple[float, ...], journaled: int | None, derived: int
) -> None:
    """The tier its attempt journaled (none for the last, which sells all). An attempt journaled
    before hotcoin did has none: its tier is then the take-profits of its trace that sold
    something, as the core sells the tiers in order."""
    sink = RecordingSink()
    await _take_profit_in_flight(sink, *bids)
    assert rebuild(sink.events, CAPITAL).book.holdings[DOGE].pending_tier == journaled
    older = [dataclasses.replace(e, payload={k: v for k, v in e.payload.items() if k != "tier"}) for e in sink.events]
    assert rebuild(older, CAPITAL).book.holdings[DOGE].pending_tier == derived


async def test_a_take_profit_filled_across_a_restart_marks_its_tier_hit(tmp_path: Path) -> None:
    """Tier 1 (half of 1000 DOGE at +5 %) was in flight at the kill and filled while the engine
    was down. Recovery restored the exit but not its tier: the fill left tier 1 unhit and the
    stop under entry, so the engine sold tier 1 a second time. The attempt journals its tier."""
    sink = RecordingSink()
    core, tp = await _take_profit_in_flight(sink, 0.32)
    assert core.book.holdings[DOGE].pending_tier == 0
    assert [e.payload["tier"] for e in sink.events if e.kind == "order_attempt"] == [None, 0]

    restarted, payload, _ = await _restart_with_exit_filled(tmp_path, sink, tp)
    (recovered,) = payload["positions"]
    assert (recovered["quantity"], recovered["tp_tiers_hit"]) == (500.0, [0])
    pos = restarted.book.holdings[DOGE].position
    assert pos.tp_tiers_hit == (0,) and pos.stop_price == pytest.approx(pos.entry_price)  # break-even after TP1
    assert restarted.on_tickers(make_batch({DOGE: 0.32}, T0 + 3_660_000), T0 + 3_660_000) == [], "tier 1 is sold once"


async def test_the_last_take_profit_filled_across_a_restart_writes_its_crumbs_off(tmp_path: Path) -> None:
    """The last tier sells the whole position (500.05 DOGE after tier 1, 500 on the step grid):
    the core sends it as no tier, so its fill writes the 0.05 left off as dust. Taken for a
    tier at the restart, the crumbs stayed held, a position slot taken until the next exit."""
    sink = RecordingSink()
    core, last = await _take_profit_in_flight(sink, 0.32, 0.34)
    held = core.book.holdings[DOGE]
    assert (held.position.quantity, last.quantity, held.pending_tier) == (pytest.approx(500.05), 500, None)

    restarted, _, events = await _restart_with_exit_filled(tmp_path, sink, last)
    assert DOGE not in restarted.book.holdings and restarted.book.written_off == {DOGE: pytest.approx(0.05)}
    assert [e.payload["reason"] for e in events if e.kind == "position_update"] == ["take_profit", "dust"]


async def test_a_fill_reconciled_after_a_restart_is_caused_by_its_order_result(tmp_path: Path) -> None:
    """The fills the exchange made while the engine was down hang off the `order_result` that
    reconciled them, as every fill hangs off its order's result: they had no cause at all."""
    sink = RecordingSink()
    _, tp = await _take_profit_in_flight(sink, 0.32)
    _, _, events = await _restart_with_exit_filled(tmp_path, sink, tp)
    (result,) = [e for e in events if e.kind == "order_result"]
    (fill,) = [e for e in events if e.kind == "fill"]
    assert result.payload["detail"] == "reconciled after restart" and fill.cause == result.seq


def test_an_open_order_carries_the_fees_in_coins_its_journaled_fills_paid() -> None:
    """Else the broker, comparing the exchange's cumulative fee in coins with 0, books the coins
    of the fills before the restart a second time on the next fill."""
    cid = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1)
    sink = RecordingSink()
    sink.emit("order_attempt", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
              payload={"client_order_id": cid, "side": "buy", "order_type": "limit", "purpose": "entry", "quantity": "100", "price": "0.3"})  # fmt: skip
    sink.emit("fill", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
              payload={"client_order_id": cid, "side": "buy", "price": 0.3, "quantity": 40.0, "fee_quote": 0.012,
                       "fee_base": 0.04, "trade_id": "t1"})  # fmt: skip
    order = rebuild(sink.events, CAPITAL).open_orders[cid].as_order(OrderStatus.PARTIALLY_FILLED, T0)
    assert (order.filled_qty, order.fee_quote, order.fee_base) == (Decimal(40), 0.012, 0.04)


async def test_a_restart_books_an_open_orders_next_fees_once_after_fees_paid_in_bnb(tmp_path: Path) -> None:
    """A limit buy of 100 DOGE was 30 filled in two trades whose commissions BNB paid when the
    engine stopped; it fills the rest after the restart. The recovered order used to carry no
    BNB fee, so its next fill booked the earlier trades' BNB again, and a quote fee holding the
    value the core gave that BNB, which swallowed the next fill's fee in quote (or in coins).
    The journal now holds the exchange's fees, each once."""
    cid = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1)
    bnb, rate = "BNB", 600.0
    sink = _entry_partly_filled(cid)
    held = 0.0
    for qty, bnb_fee in ((10.0, 0.0001), (20.0, 0.0002)):  # as the core journals them: BNB valued into fee_quote
        held += qty
        fill = sink.emit(
            "fill", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
            payload={"client_order_id": cid, "side": "buy", "price": 0.3, "quantity": qty, "fee_quote": bnb_fee * rate,
                     "trade_id": f"{cid}:{held:g}", "is_maker": True, "fee_base": 0.0, "fee_asset": bnb,
                     "fee_other": bnb_fee, "fee_rate": rate},
        )  # fmt: skip
        sink.emit("position_update", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE, cause=fill,
                  payload={"action": "open" if held == qty else "add", "quantity": held, "entry_price": 0.3,
                           "realised_pnl": 0.0, "position_trace_id": T_DOGE})  # fmt: skip
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)

    gw = FakeGateway({DOGE: make_market()})
    restart = T0 + 60_000

    def exchange_has(filled: int, *trades: Fill) -> None:  # a GET /order snapshot: no fees in it
        status = OrderStatus.FILLED if filled == 100 else OrderStatus.PARTIALLY_FILLED
        gw.orders[cid] = dataclasses.replace(
            state.open_orders[cid].as_order(status, restart), exchange_order_id="9", filled_qty=Decimal(filled),
            average_price=0.3, fee_quote=0.0, fee_other=0.0, fee_asset="", fees_reported=False,
        )
        gw.fills.extend(trades)

    def trade(n: int, qty: float, **fee: Any) -> Fill:
        return Fill(f"t{n}", cid, DOGE, Side.BUY, 0.3, qty, fee.pop("fee_quote", 0.0), restart, trace_id=T_DOGE, **fee)

    exchange_has(30, trade(1, 10.0, fee_other=0.0001, fee_asset=bnb), trade(2, 20.0, fee_other=0.0002, fee_asset=bnb))
    async with pump_rig(path, broker=ExchangeBroker(gw)) as rig:
        engine = rig.engine
        engine.core = TradingCore(engine.config.trading, {DOGE: make_market()}, engine.tap)
        payload = await Recovery(state).apply(engine, restart)
        assert payload["orders"] == [{"client_order_id": cid, "symbol": DOGE, "outcome": "partially_filled"}]
        engine.core.on_tickers(make_batch({DOGE: 0.3, "BNB/USDT": rate}, restart), restart)
        # The rest fills in two trades: BNB pays one; the other's commission is taken in coins,
        # as BNB ran out (0.02 DOGE, worth 0.006).
        exchange_has(100, trade(3, 50.0, fee_other=0.0005, fee_asset=bnb), trade(4, 20.0, fee_base=0.02, fee_quote=0.006))
        (update,) = await engine.router.sync(restart + 60_000)  # a reconcile: GET /order, then the order's trades
        engine.core.on_order_update(update, restart + 60_000)
        assert engine.core.book.holdings[DOGE].position.quantity == pytest.approx(100.0 - 0.02)
        await rig.journal.flush()
    with JournalReader(path) as reader:
        fills = [e.payload for e in reader.events(kinds=["fill"])]
    assert [f["quantity"] for f in fills] == [10.0, 20.0, pytest.approx(70.0)]
    assert [f["fee_other"] for f in fills] == [0.0001, 0.0002, pytest.approx(0.0005, abs=1e-12)]
    assert [f["fee_base"] for f in fills] == [0.0, 0.0, pytest.approx(0.02, abs=1e-12)]
    assert [f["fee_quote"] for f in fills] == pytest.approx([0.0001 * rate, 0.0002 * rate, 0.0005 * rate + 0.006])


@pytest.mark.parametrize(
    ("commission", "booked_coins"),
    [
        pytest.param({"fee_other": 0.00015, "fee_asset": "BNB"}, 0.0, id="paid-in-bnb"),
        pytest.param({"fee_quote": 0.009}, 0.0, id="paid-in-quote-at-half-the-rate"),
        pytest.param({"fee_base": 0.03, "fee_quote": 0.009}, 0.03, id="taken-in-coins-at-half-the-rate"),
    ],
)
async def test_a_fill_made_while_down_books_the_exchanges_commission_once(
    tmp_path: Path, commission: dict[str, Any], booked_coins: float
) -> None:
    """A limit buy of 100 DOGE was 40 filled when the engine died; the exchange filled the other
    60 meanwhile, at a commission of its own (BNB, or half the default rate). GET /order carries
    no fees, so recovery used to book an estimate at the taker rate, taken in coins (0.06 DOGE
    the account never lost, or that BNB paid); it now books the commission of the order's trades,
    and the user stream's and the next reconcile's report of the same order book nothing more."""
    cid = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1)
    bnb_rate, restart = 600.0, T0 + 60_000
    sink = _entry_partly_filled(cid)
    fill = sink.emit("fill", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
                     payload={"client_order_id": cid, "side": "buy", "price": 0.3, "quantity": 40.0, "fee_quote": 0.006,
                              "trade_id": "t1", "is_maker": True})  # fmt: skip
    sink.emit("position_update", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE, cause=fill,
              payload={"action": "open", "quantity": 40.0, "entry_price": 0.3, "realised_pnl": 0.0, "position_trace_id": T_DOGE})  # fmt: skip
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)

    gw = FakeGateway({DOGE: make_market()})
    snapshot = dataclasses.replace(  # GET /order: filled, no fees in it
        state.open_orders[cid].as_order(OrderStatus.FILLED, restart), exchange_order_id="9", filled_qty=Decimal(100),
        average_price=0.3, fee_quote=0.0, fees_reported=False,
    )
    gw.orders[cid] = snapshot
    gw.fills += [
        Fill("t1", cid, DOGE, Side.BUY, 0.3, 40.0, 0.006, T0, trace_id=T_DOGE, is_maker=True),
        Fill("t2", cid, DOGE, Side.BUY, 0.3, 60.0, commission.get("fee_quote", 0.0), restart, trace_id=T_DOGE,
             is_maker=True, **{k: v for k, v in commission.items() if k != "fee_quote"}),
    ]  # fmt: skip
    broker = ExchangeBroker(gw)
    async with pump_rig(path, broker=broker) as rig:
        engine = rig.engine
        engine.core = TradingCore(engine.config.trading, {DOGE: make_market()}, engine.tap)
        engine.core.on_tickers(make_batch({DOGE: 0.3, "BNB/USDT": bnb_rate}, restart), restart)
        payload = await Recovery(state).apply(engine, restart)
        assert payload["orders"] == [{"client_order_id": cid, "symbol": DOGE, "outcome": "filled"}]
        assert engine.core.book.holdings[DOGE].position.quantity == pytest.approx(100.0 - booked_coins)
        # The same order again, fees and all: from the user stream, then from a reconcile.
        assert await broker.on_order(dataclasses.replace(snapshot, fee_quote=0.006 + 0.009, fees_reported=True), restart) is None
        assert await engine.router.sync(restart + 60_000) == []
        await rig.journal.flush()
    with JournalReader(path) as reader:
        fills = [e.payload for e in reader.events(kinds=["fill"])]
        anomalies = [e.payload["detail"] for e in reader.events(kinds=["order_anomaly"])]
    assert not [a for a in anomalies if "fee estimated" in a]
    assert [f["quantity"] for f in fills] == [40.0, pytest.approx(60.0)]
    recovered = fills[1]
    assert recovered["fee_base"] == pytest.approx(booked_coins, abs=1e-12)
    assert recovered.get("fee_other", 0.0) == pytest.approx(commission.get("fee_other", 0.0), abs=1e-12)
    assert recovered.get("fee_asset", "") == commission.get("fee_asset", "")
    value = commission.get("fee_other", 0.0) * bnb_rate + commission.get("fee_quote", 0.0)
    assert recovered["fee_quote"] == pytest.approx(value, abs=1e-12)


def test_an_empty_or_missing_journal_has_nothing_to_recover(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "none.sqlite", CAPITAL).empty
    assert rebuild([], CAPITAL).empty


async def test_journal_written_by_a_real_writer_round_trips(tmp_path: Path) -> None:
    """`read_journal` reads what the writer wrote (events, archives) like `rebuild` reads a sink."""
    sink = RecordingSink()
    await _history(sink)
    await _write(sink, tmp_path / "j.sqlite")
    from_disk = read_journal(tmp_path / "j.sqlite", CAPITAL)
    in_memory = rebuild(sink.events, CAPITAL)
    assert from_disk.positions() == in_memory.positions()
    assert from_disk.sent_ids == in_memory.sent_ids
    assert from_disk.cash == pytest.approx(in_memory.cash)


def _balances(**totals: str) -> dict[str, Balance]:
    return {asset: Balance(free=Decimal(v), locked=Decimal(0)) for asset, v in totals.items()}


@pytest.mark.parametrize(
    ("exchange", "mismatched"),
    [
        (_balances(DOGE="600", USDT="5000"), []),
        (_balances(DOGE="599.999999", USDT="5000", BNB="3"), []),  # within tolerance; BNB is not ours to judge
        (_balances(DOGE="350", USDT="5000"), ["DOGE"]),  # sold or never bought behind our back
        (_balances(USDT="5000"), ["DOGE"]),
        (_balances(DOGE="600", USDT="12"), ["USDT"]),  # less cash than we think we may spend
    ],
    ids=["agree", "tolerance-and-foreign-coins", "coin-short", "coin-missing", "cash-short"],
)
async def test_balance_audit_raises_a_risk_event_on_a_mismatch(exchange: dict[str, Balance], mismatched: list[str]) -> None:
    sink = RecordingSink()
    core = await _history(sink)
    gw = FakeGateway(balances=exchange)
    audit = BalanceAudit(gw, "USDT")
    assert audit.due(T0)
    found = await audit.run(core, sink, T0)
    assert [m["asset"] for m in found] == mismatched
    events = [e for e in sink.events if e.kind == "risk_event" and e.payload["code"] == "balance_mismatch"]
    assert [e.payload["asset"] for e in events] == mismatched
    assert not audit.due(T0 + BALANCE_CHECK_MS - 1) and audit.due(T0 + BALANCE_CHECK_MS)
    assert await audit.run(core, sink, T0 + BALANCE_CHECK_MS) == [], "the same mismatch is journaled once"


async def test_engine_runs_the_balance_audit_every_five_minutes(tmp_path: Path) -> None:
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        gw = FakeGateway(balances=_balances(USDT="0"))
        rig.engine.audit = BalanceAudit(gw, "USDT")
        task = asyncio.create_task(rig.engine.run())
        await eventually(lambda: rig.engine.stats.cycles >= 130, timeout=30)  # 130 x 5 s > 10 min
        rig.engine.stop()
        await asyncio.wait_for(task, 10)
    elapsed = rig.engine._now - START_MS
    assert elapsed >= 2 * BALANCE_CHECK_MS
    assert gw.calls.count("fetch_balance") == elapsed // BALANCE_CHECK_MS + 1  # at 0, 5, 10 ... minutes


def _traded(sink: RecordingSink, trace: str, side: str, qty: float, price: float, ts_ms: int, action: str, held: float) -> int:
    """One fill and its `position_update`, as the core journals them; returns the update's seq."""
    purpose = "entry" if side == "buy" else "stop_loss"
    cid = client_order_id(trace, OrderPurpose(purpose), 1)
    fill = sink.emit("fill", ts_ms=ts_ms, trace_id=trace, symbol=DOGE,
                     payload={"client_order_id": cid, "side": side, "price": price, "quantity": qty, "fee_quote": 0.0,
                              "trade_id": f"{cid}:{qty}"})  # fmt: skip
    return sink.emit("position_update", ts_ms=ts_ms, trace_id=trace, symbol=DOGE, cause=fill,
                     payload={"action": action, "quantity": held, "entry_price": 0.3, "realised_pnl": 0.0,
                              "reason": purpose, "position_trace_id": trace})  # fmt: skip


def test_rebuild_drops_the_dust_the_core_wrote_off() -> None:
    """A stop sold 999.9 of 1000 and the core wrote the 0.1 left off as dust (no fill records
    that); a new DOGE trade came later. A restart brought the 0.1 back as a position, added the
    new buy to it (old trace, old open time), and max-hold sold it at once."""
    sink = RecordingSink()
    _traded(sink, T_DOGE, "buy", 1000.0, 0.3, T0, "open", 1000.0)
    partial = _traded(sink, T_DOGE, "sell", 999.9, 0.25, T0 + 1_000, "partial_close", 0.1)
    sink.emit("position_update", ts_ms=T0 + 1_000, trace_id=T_DOGE, symbol=DOGE, cause=partial,
              payload={"action": "close", "quantity": 0.0, "entry_price": 0.3, "realised_pnl": -0.03,
                       "total_realised_pnl": -50.025, "reason": "dust", "position_trace_id": T_DOGE})  # fmt: skip
    later = T0 + 3_600_000
    _traded(sink, T_PEPE, "buy", 500.0, 0.32, later, "open", 500.0)

    state = rebuild(sink.events, CAPITAL)
    (held,) = state.book.holdings.values()
    pos = held.position
    assert (pos.symbol, pos.trace_id, pos.quantity, pos.opened_ms, pos.entry_price) == (DOGE, T_PEPE, 500.0, later, 0.32)
    assert state.book.written_off == {DOGE: pytest.approx(0.1)}, "the dust is still on the exchange"
    assert state.risk.consecutive_losses == 1 and state.anomalies == []
    assert state.cash == pytest.approx(CAPITAL - 300.0 + 999.9 * 0.25 - 160.0)


def test_a_dust_write_off_of_a_position_the_fills_do_not_hold_is_an_anomaly() -> None:
    sink = RecordingSink()
    _traded(sink, T_DOGE, "buy", 1000.0, 0.3, T0, "open", 1000.0)
    sink.emit("position_update", ts_ms=T0, trace_id=T_PEPE, symbol=DOGE,
              payload={"action": "close", "quantity": 0.0, "entry_price": 0.3, "realised_pnl": -1.0,
                       "reason": "dust", "position_trace_id": T_PEPE})  # fmt: skip
    state = rebuild(sink.events, CAPITAL)
    assert state.book.holdings[DOGE].position.quantity == 1000.0, "another trace's write-off drops nothing"
    assert state.book.written_off == {}
    (anomaly,) = state.anomalies
    assert "dust write-off of DOGE/USDT" in anomaly


class _Crumbs(PaperBroker):
    """Every sell leaves 0.01 % of what was asked unsold (as a fee kept in coins or a step
    rounded down does on an exchange): a full exit ends with a remainder the core writes off."""

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if intent.side is Side.SELL:
            intent = dataclasses.replace(intent, quantity=intent.quantity * Decimal("0.9999"))
        return await super().submit(intent, now_ms)


async def test_a_restart_does_not_bring_back_dust_written_off(tmp_path: Path) -> None:
    """End to end: a run writes a remainder off as dust, the next run on the same journal
    recovers nothing of it and never writes it off again (a fresh losing close at every restart
    fired the losing-streak cool-down)."""
    path = tmp_path / "j.sqlite"
    written_off: list[str] = []

    def dust(kind: str, payload: Mapping[str, Any], symbol: str | None) -> None:
        if kind == "position_update" and payload.get("reason") == "dust" and symbol is not None:
            written_off.append(symbol)

    ex = load_config(env={}).config.trading.execution
    async with pump_rig(path, broker=_Crumbs(FillModel(ex.fee_rate, ex.maker_fee_rate, ex.slippage_bps))) as rig:
        engine = rig.engine
        engine.observe(dust)
        task = asyncio.create_task(engine.run())
        await eventually(lambda: bool(written_off), timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        assert engine.core is not None
        held = {s: h.position.trace_id for s, h in engine.core.book.holdings.items()}
        dust_left = dict(engine.core.book.written_off)
        assert set(dust_left) == set(written_off) and rig.pump_symbol not in held
        await rig.journal.flush()
        before = rig.journal.next_seq - 1

    state = read_journal(path, CAPITAL)
    async with pump_rig(path) as rig2:
        engine2 = rig2.engine
        engine2.recovery = Recovery(state)
        task = asyncio.create_task(engine2.run())
        await eventually(lambda: engine2.stats.cycles > 20, timeout=60)
        core2 = engine2.core
        assert core2 is not None
        assert core2.book.written_off == pytest.approx(dust_left)
        engine2.stop()
        await asyncio.wait_for(task, 10)
    with JournalReader(path) as reader:
        events = _tail_after(list(reader.events()), before)
    (recovered,) = [e for e in events if e.kind == "risk_event" and e.payload["code"] == "recovered"]
    assert {p["symbol"]: p["trace_id"] for p in recovered.payload["positions"]} == held
    assert recovered.payload["anomalies"] == []
    assert not [e for e in events if e.kind == "position_update" and e.payload["reason"] == "dust"]


async def test_balance_audit_counts_the_dust_written_off_as_known_excess() -> None:
    """DOGE dust written off earlier stays on the exchange beside the 600 held now: no mismatch
    for up to that much more; beyond it (once the first check found no more than that), or
    short, is still one, and the detail names the dust."""
    sink = RecordingSink()
    core = await _history(sink)
    core.book.written_off[DOGE] = 0.9
    gw = FakeGateway()
    audit = BalanceAudit(gw, "USDT")
    for i, (exchange, mismatched) in enumerate((
        (_balances(DOGE="600.9", USDT="5000"), []),
        (_balances(DOGE="600.4", USDT="5000"), []),
        (_balances(DOGE="602", USDT="5000"), ["DOGE"]),
        (_balances(DOGE="599", USDT="5000"), ["DOGE"]),
    )):
        gw.balances = exchange
        found = await audit.run(core, sink, T0 + i * BALANCE_CHECK_MS)
        assert [m["asset"] for m in found] == mismatched, exchange
    assert "and 0.9 more was written off as dust" in found[0]["detail"]


async def test_balance_audit_leaves_the_coins_the_account_already_held_to_the_owner() -> None:
    """The account held 1000 DOGE of the owner's beside the 600 the engine bought: the audit
    journaled a `balance_mismatch` ("the exchange holds 1600, our position quantity is 600")
    at every check whose numbers moved. What the first check finds beyond our records is the
    owner's; coins that arrive beyond it later (a fill we did not book) and a shortfall are
    still mismatches."""
    sink = RecordingSink()
    core = await _history(sink)
    gw = FakeGateway()
    audit = BalanceAudit(gw, "USDT")
    for i, (doge, mismatched) in enumerate((
        ("1600", []),
        ("1600", []),
        ("1450", []),  # the owner sold some of theirs: not ours to judge
        ("1600.5", ["DOGE"]),  # 0.5 more than the owner had at the first check
        ("1600", []),
        ("599", ["DOGE"]),  # less than the position itself
    )):
        gw.balances = _balances(DOGE=doge, USDT="5000")
        found = await audit.run(core, sink, T0 + i * BALANCE_CHECK_MS)
        assert [m["asset"] for m in found] == mismatched, doge
        if mismatched:
            assert "1000 were the account's own when the engine started" in found[0]["detail"]
    events = [e.payload for e in sink.events if e.kind == "risk_event" and e.payload["code"] == "balance_mismatch"]
    assert [e["value"] for e in events] == [1600.5, 599.0]


@pytest.mark.parametrize(
    ("commands", "paused"),
    [
        ([], False),
        (["pause"], True),
        (["pause", "resume"], False),
        (["close_all"], True),  # close-all pauses too (it journals no pause when already paused)
        (["pause", "close_all", "resume"], False),
        (["resume", "close_all", "close_all"], True),
        (["pause", "shutdown"], True),
    ],
    ids=["none", "pause", "resumed", "close-all", "close-all-resumed", "close-all-repeat", "shutdown-keeps"],
)
def test_rebuild_keeps_the_operators_pause(commands: list[str], paused: bool) -> None:
    sink = RecordingSink()
    sink.emit("run_start", ts_ms=T0, payload={"run_id": "before", "config_hash": "x", "mode": "live"})
    for i, command in enumerate(commands):
        sink.emit("command", ts_ms=T0 + i, payload={"command": command, "origin": "tui"})
    assert rebuild(sink.events, CAPITAL).paused is paused


async def test_a_restart_after_close_all_keeps_entries_paused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The panic button pauses entries until the operator resumes; a crash (the service restarts
    the engine) lost that and the next hot coin was bought."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.core is not None and bool(engine.core.book.holdings), timeout=60)
        assert (await engine.command(Command.CLOSE_ALL, "test")).accepted
        engine.stop()
        await asyncio.wait_for(task, 10)
        await rig.journal.flush()
        before = rig.journal.next_seq - 1

    state = read_journal(path, CAPITAL)
    assert state.paused
    # Two hours after the first start, past the coin's re-entry cool-down: only the pause keeps
    # it out. A fixed time, not one after the first run's last: the market around the restart's
    # pump, and so whether the coin turns hot enough to reach the risk checks, must not depend on
    # how long that run took.
    assert engine._now + 1_800_000 < START_MS + 7_200_000
    async with pump_rig(path, start_ms=START_MS + 7_200_000) as rig2:
        engine2 = rig2.engine
        engine2.recovery = Recovery(state)
        task = asyncio.create_task(engine2.run())
        await eventually(lambda: engine2.hub.latest is not None and engine2.stats.cycles > 200, timeout=60)
        snap = engine2.hub.latest
        assert snap is not None and snap.status.paused and engine2.paused
        assert "entries paused (restored from the journal): resume with p" in caplog.text
        assert (await engine2.command(Command.RESUME, "test")).accepted
        assert not engine2.paused
        engine2.stop()
        await asyncio.wait_for(task, 10)
    with JournalReader(path) as reader:
        checks = [e.payload for e in _tail_after(list(reader.events(kinds=["risk_check"])), before)]
    # The pump's coin turned hot again after the restart: its entry was refused for the pause.
    assert checks and not any(c["approved"] for c in checks)
    assert any(c["name"] == "operator_pause" and not c["passed"] for c in checks[0]["checks"])


class _HaltedForCloseAll(PaperBroker):
    """Refuses every close-all sell as Binance does for a coin in a trading halt (-1013)."""

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if intent.purpose is OrderPurpose.CLOSE_ALL:
            raise NonRetryableOrderError("create_order: MarketClosed: binance Market is closed.", code=-1013, reason="Market is closed.")
        return await super().submit(intent, now_ms)


def test_rebuild_keeps_a_close_all_until_nothing_it_sells_is_held() -> None:
    """A close-all is the journal's until the coins held at its presses are gone: a resume does
    not end it (it goes on selling them), a press in its trace adds what is held then."""
    sink = RecordingSink()
    core = TradingCore(load_config(env={}).config.trading, {s: make_market(s) for s in (DOGE, PEPE)}, sink)
    for trace, symbol in ((T_DOGE, DOGE), (T_PEPE, PEPE)):
        qty = "100" if symbol == DOGE else "1000"
        buy = _intent(trace, symbol, OrderPurpose.ENTRY, qty)
        order = Order.from_intent(buy, OrderStatus.FILLED, T0, "x")
        fill = Fill(f"{trace}-b", buy.client_order_id, symbol, Side.BUY, 0.3, float(qty), 0.0, T0, trace)
        core.on_order_update(OrderUpdate(dataclasses.replace(order, filled_qty=Decimal(qty), average_price=0.3), (fill,)), T0)
        if symbol == DOGE:
            start = core.begin_close_all(T0 + 1)  # DOGE held at the first press, PEPE bought after a resume
            sink.emit("command", ts_ms=T0 + 2, payload={"command": "resume", "origin": "tui"})
    state = rebuild(sink.events, CAPITAL)
    assert state.close_all is not None and not state.paused
    assert (state.close_all.trace_id, state.close_all.seq, state.close_all.traces) == (start.trace_id, start.seq, {T_DOGE})
    core.begin_close_all(T0 + 3)  # a second press takes PEPE in too
    again = rebuild(sink.events, CAPITAL).close_all
    assert again is not None and again.traces == {T_DOGE, T_PEPE} and again.presses == 2
    sell = core.close_all_intents(T0 + 4)
    for intent in sell:
        order = Order.from_intent(intent, OrderStatus.FILLED, T0 + 4, "y")
        fill = Fill(f"{intent.symbol}-s", intent.client_order_id, intent.symbol, Side.SELL, 0.3, float(intent.quantity), 0.0, T0 + 4, intent.trace_id)
        core.on_order_update(OrderUpdate(dataclasses.replace(order, filled_qty=intent.quantity, average_price=0.3), (fill,)), T0 + 4)
    assert len(sell) == 2 and not core.close_all_active
    assert rebuild(sink.events, CAPITAL).close_all is None


async def test_a_close_all_unfinished_at_a_restart_goes_on_selling_in_its_trace(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Audit: close-all pressed, a coin still held (halted), the engine restarts: recovery
    rebuilt the pause only, and the restarted engine left the coin to its ordinary exits (sold
    as take-profit halves minutes later). The close-all is taken over in its own trace, said in
    the log and the snapshots, and its sell goes out at the first price update."""
    path = tmp_path / "j.sqlite"
    ex = quiet_config().trading.execution
    async with pump_rig(path, broker=_HaltedForCloseAll(FillModel(ex.fee_rate, ex.maker_fee_rate, 0.0))) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.core is not None and bool(engine.core.book.holdings), timeout=60)
        assert "still closing" in (await engine.command(Command.CLOSE_ALL, "test")).message
        engine.stop()
        await asyncio.wait_for(task, 10)
        await rig.journal.flush()
        before = rig.journal.next_seq - 1
        symbol = rig.pump_symbol
        assert engine.core is not None and symbol in engine.core.book.holdings
        last = engine._now

    state = read_journal(path, CAPITAL)
    assert state.close_all is not None and state.paused
    start = (last // 5_000 + 2) * 5_000  # the exchange is healthy again
    async with pump_rig(path, start_ms=start, run_id="after", pump_ms=START_MS + 5 * 60_000) as rig2:
        engine2 = rig2.engine
        engine2.recovery = Recovery(state)
        task = asyncio.create_task(engine2.run())
        await eventually(lambda: engine2.hub.latest is not None, timeout=60)
        first = engine2.hub.latest
        assert first is not None and first.close_all is not None and first.close_all.total == 1
        assert f"close-all still in progress, restored from the journal: selling {symbol}" in caplog.text
        await eventually(lambda: engine2.core is not None and not engine2.core.book.holdings, timeout=60)
        engine2.stop()
        await asyncio.wait_for(task, 10)
    with JournalReader(path) as reader:
        events = _tail_after(list(reader.events()), before)
    (run_start,) = [e for e in events if e.kind == "run_start"]
    attempts = [e for e in events if e.kind == "order_attempt"]
    sell = attempts[0]
    assert sell.payload["purpose"] == "close_all" and sell.ts_ms == run_start.ts_ms  # the first price update
    assert sell.trace_id == state.close_all.trace_id
    assert sell.payload["client_order_id"] not in state.sent_ids  # its legs go on after those sent
    (decided,) = [e for e in events if e.seq == sell.cause]
    assert decided.cause == state.close_all.seq  # in the close-all's tree, under its command
    assert [e.payload["purpose"] for e in attempts] == ["close_all"]
    (recovered,) = [e for e in events if e.kind == "risk_event" and e.payload["code"] == "recovered"]
    assert f"close-all still in progress, restored from the journal: selling {symbol}" in recovered.payload["detail"]


def _entry_partly_filled(cid: str) -> RecordingSink:
    """A journal from a live run that sent a limit buy of 100 DOGE at 0.3 (`cid`), answered
    partially filled; its fills are the caller's."""
    sink = RecordingSink()
    sink.emit("run_start", ts_ms=T0, payload={"run_id": "before", "config_hash": "x", "mode": "live"})
    attempt = sink.emit(
        "order_attempt", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
        payload={"client_order_id": cid, "side": "buy", "order_type": "limit", "purpose": "entry", "quantity": "100", "price": "0.3"},
    )  # fmt: skip
    sink.emit("order_result", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE, cause=attempt,
              payload={"client_order_id": cid, "status": "partially_filled", "error_class": None})  # fmt: skip
    return sink


def _sent(
    sink: RecordingSink, cid: str, trace: str, ts_ms: int, *, never_reached_at: int | None, symbol: str = DOGE
) -> None:
    """A market buy of 100 coins (DOGE unless said) attempted at `ts_ms` whose outcome was
    unknown; journaled rejected as never reached at `never_reached_at` (None: still open when we died)."""
    attempt = sink.emit(
        "order_attempt", ts_ms=ts_ms, trace_id=trace, symbol=symbol,
        payload={"client_order_id": cid, "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "100", "price": None},
    )  # fmt: skip
    sink.emit("order_result", ts_ms=ts_ms, trace_id=trace, symbol=symbol, cause=attempt,
              payload={"client_order_id": cid, "status": "unknown", "error_class": "unknown"})  # fmt: skip
    if never_reached_at is not None:
        sink.emit("order_result", ts_ms=never_reached_at, trace_id=trace, symbol=symbol, cause=attempt,
                  payload={"client_order_id": cid, "action": "sync", "status": "rejected", "error_class": None,
                           "detail": NEVER_REACHED})  # fmt: skip


@pytest.mark.parametrize(
    ("later", "open_again", "maybe_late"),
    [
        ([], False, True),
        ([{"status": "open", "error_class": None, "detail": LANDED_LATE}], True, False),  # it landed and rests on the book
        ([{"status": "filled", "error_class": None, "detail": LANDED_LATE}], False, False),
    ],
    ids=["never-reached", "landed-resting", "landed-filled"],
)
def test_rebuild_keeps_the_orders_rejected_as_never_reached_for_the_late_watch(
    later: list[dict[str, Any]], open_again: bool, maybe_late: bool
) -> None:
    cid = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1)
    refused = client_order_id(T_PEPE, OrderPurpose.ENTRY, 1)
    sink = RecordingSink()
    _sent(sink, cid, T_DOGE, T0, never_reached_at=T0 + 10_000)
    for payload in later:
        sink.emit("order_result", ts_ms=T0 + 40_000, trace_id=T_DOGE, symbol=DOGE, payload={"client_order_id": cid, **payload})
    sink.emit("order_attempt", ts_ms=T0, trace_id=T_PEPE, symbol=PEPE,
              payload={"client_order_id": refused, "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "5"})  # fmt: skip
    sink.emit("order_result", ts_ms=T0, trace_id=T_PEPE, symbol=PEPE,
              payload={"client_order_id": refused, "status": "rejected", "error_class": "non_retryable", "error": "-2010"})  # fmt: skip
    state = rebuild(sink.events, CAPITAL)
    assert (cid in state.open_orders, cid in state.maybe_late) == (open_again, maybe_late)
    assert refused not in state.maybe_late  # the exchange said no: nothing to watch


def _landed(gw: FakeGateway, cid: str, trace: str, symbol: str, at_ms: int) -> None:
    """The exchange placed and filled `cid` (a market buy of 100 at 0.3) at `at_ms`."""
    intent = make_intent(symbol, client_order_id=cid, trace_id=trace, quantity=Decimal(100))
    gw.orders[cid] = dataclasses.replace(
        Order.from_intent(intent, OrderStatus.FILLED, at_ms, exchange_order_id=cid[-8:]),
        filled_qty=Decimal(100), average_price=0.3, fees_reported=False,
    )
    gw.fills.append(Fill(f"t-{cid}", cid, symbol, Side.BUY, 0.3, 100.0, 0.03, at_ms, trace_id=trace, fee_base=0.1))


async def test_a_restart_asks_once_about_every_order_that_may_have_landed_late_whatever_its_age(tmp_path: Path) -> None:
    """A: journaled rejected as never reached 50 s before the restart; the exchange placed it
    meanwhile. B: the same, 11 minutes before (past the broker's 10-minute watch): it was
    dropped unasked and its fill never booked. D: 11 minutes old and still unknown: settled for
    good, so the next restart does not ask again. C: its create was in flight at the kill and
    the exchange does not know it: recovery rejects it and watches it."""
    a, b, c, d = (client_order_id(t, OrderPurpose.ENTRY, 1) for t in (T_DOGE, T_PEPE, T_WIF, T_BONK))
    restart = T0 + 11 * 60_000
    sink = RecordingSink()
    _sent(sink, b, T_PEPE, T0, never_reached_at=T0 + 10_000, symbol=PEPE)
    _sent(sink, d, T_BONK, T0, never_reached_at=T0 + 10_000, symbol=WIF)
    _sent(sink, a, T_DOGE, restart - 60_000, never_reached_at=restart - 50_000)
    _sent(sink, c, T_WIF, restart - 1_000, never_reached_at=None)
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)

    gw = FakeGateway({s: make_market(s) for s in (DOGE, PEPE, WIF)})
    _landed(gw, a, T_DOGE, DOGE, restart - 30_000)
    _landed(gw, b, T_PEPE, PEPE, T0 + 5 * 60_000)  # landed while the engine was down
    async with pump_rig(path, broker=ExchangeBroker(gw)) as rig:
        engine = rig.engine
        engine.core = TradingCore(engine.config.trading, {s: make_market(s) for s in (DOGE, PEPE, WIF)}, engine.tap)
        payload = await Recovery(state).apply(engine, restart)
        assert payload["watching_late"] == [c]
        assert payload["orders"] == [
            {"client_order_id": b, "symbol": PEPE, "outcome": "landed_late"},
            {"client_order_id": d, "symbol": WIF, "outcome": "did_not_land"},
            {"client_order_id": a, "symbol": DOGE, "outcome": "landed_late"},
            {"client_order_id": c, "symbol": DOGE, "outcome": "never_reached"},
        ]
        for symbol in (DOGE, PEPE):  # booked at the restart, before any cycle decides anything
            assert engine.core.book.holdings[symbol].position.quantity == pytest.approx(99.9)  # 0.1 taken in coins
        assert engine.core.cash == pytest.approx(CAPITAL - 60.0)
        assert await engine.router.sync(restart + 60_000) == []  # booked once
        await rig.journal.flush()
    with JournalReader(path) as reader:
        results = {cid: [(e.payload["status"], e.payload.get("detail")) for e in reader.events(kinds=["order_result"])
                         if e.payload["client_order_id"] == cid] for cid in (a, b, d)}  # fmt: skip
        fills = [e.payload for e in reader.events(kinds=["fill"])]
        attempts = {e.payload["client_order_id"]: e.seq for e in reader.events(kinds=["order_attempt"])}
        late = [e for e in reader.events(kinds=["order_result"]) if e.payload.get("detail") == LANDED_LATE]
        noted = list(reader.events(kinds=["order_anomaly"]))
    # Each landing is journaled as the anomaly it is, beside the result recovery wrote for it.
    assert sorted((e.trace_id, e.cause, e.payload["detail"]) for e in noted) == sorted(
        (e.trace_id, e.seq, "landed late: the exchange has it filled") for e in late
    )
    for cid in (a, b):
        assert results[cid] == [("unknown", None), ("rejected", NEVER_REACHED), ("filled", LANDED_LATE)]
    assert results[d] == [("unknown", None), ("rejected", NEVER_REACHED), ("rejected", DID_NOT_LAND)]
    assert sorted((f["client_order_id"], f["quantity"]) for f in fills) == sorted([(a, 100.0), (b, 100.0)])
    assert sorted((e.trace_id, e.cause) for e in late) == sorted([(T_DOGE, attempts[a]), (T_PEPE, attempts[b])])
    again = read_journal(path, CAPITAL)  # the next restart asks only about C
    assert list(again.maybe_late) == [c]


async def test_a_restart_settles_an_order_the_exchange_lost_as_vanished_not_as_never_reached(tmp_path: Path) -> None:
    """A: a LIMIT entry the journal had resting on the exchange (acknowledged, open), which the
    exchange no longer knows (a sim restarted with a fresh account). It was journaled "never
    reached the exchange", watched for a late landing, and replay said the broker had rejected
    it. It is settled as expired (`VANISHED`) and not watched. C: in flight at the kill, never
    acknowledged: still never reached, as before."""
    a, c = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1), client_order_id(T_WIF, OrderPurpose.ENTRY, 1)
    restart = T0 + 60_000
    sink = RecordingSink()
    attempt = sink.emit(
        "order_attempt", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
        payload={"client_order_id": a, "side": "buy", "order_type": "limit", "purpose": "entry", "quantity": "100",
                 "price": "0.25", "expires_ms": T0 + 3_600_000},
    )  # fmt: skip
    sink.emit("order_result", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE, cause=attempt,
              payload={"client_order_id": a, "status": "open", "error_class": None, "exchange_order_id": "42",
                       "filled_qty": "0", "average_price": None})  # fmt: skip
    _sent(sink, c, T_WIF, restart - 1_000, never_reached_at=None)
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)
    assert state.open_orders[a].acknowledged and not state.open_orders[c].acknowledged

    gw = FakeGateway({s: make_market(s) for s in (DOGE, WIF)})  # knows neither order
    async with pump_rig(path, broker=ExchangeBroker(gw)) as rig:
        engine = rig.engine
        engine.core = TradingCore(engine.config.trading, {s: make_market(s) for s in (DOGE, WIF)}, engine.tap)
        payload = await Recovery(state).apply(engine, restart)
        assert payload["orders"] == [
            {"client_order_id": a, "symbol": DOGE, "outcome": "vanished"},
            {"client_order_id": c, "symbol": DOGE, "outcome": "never_reached"},
        ]
        assert payload["watching_late"] == [c]
        await rig.journal.flush()
    with JournalReader(path) as reader:
        results = [(e.payload["status"], e.payload.get("detail")) for e in reader.events(kinds=["order_result"])
                   if e.payload["client_order_id"] == a]  # fmt: skip
    assert results == [("open", None), ("expired", VANISHED)]
    again = read_journal(path, CAPITAL)  # settled for good: neither open nor looked for again
    assert a not in again.open_orders and a not in again.maybe_late and RESTART_NEVER_REACHED not in VANISHED


async def test_a_limit_entry_resting_across_a_restart_still_expires(tmp_path: Path) -> None:
    """Its expiry lived only in the intent the dead process had: the recovered order rested on
    the exchange (GTC) until it filled, hours after its moment. It is cancelled at the expiry
    its attempt journaled, through the router, like any expired order."""
    cid = client_order_id(T_DOGE, OrderPurpose.ENTRY, 1)
    sink = RecordingSink()
    sink.emit("run_start", ts_ms=T0, payload={"run_id": "before", "config_hash": "x", "mode": "live"})
    sink.emit(
        "order_attempt", ts_ms=T0, trace_id=T_DOGE, symbol=DOGE,
        payload={"client_order_id": cid, "side": "buy", "order_type": "limit", "purpose": "entry", "quantity": "100",
                 "price": "0.3", "expires_ms": T0 + 30_000},
    )  # fmt: skip
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    state = read_journal(path, CAPITAL)
    assert state.open_orders[cid].expires_ms == T0 + 30_000

    gw = FakeGateway({DOGE: make_market()})
    gw.orders[cid] = dataclasses.replace(state.open_orders[cid].as_order(OrderStatus.OPEN, T0 + 10_000), exchange_order_id="9")
    broker = ExchangeBroker(gw)
    async with pump_rig(path, broker=broker) as rig:
        engine = rig.engine
        engine.core = TradingCore(engine.config.trading, {DOGE: make_market()}, engine.tap)
        await Recovery(state).apply(engine, T0 + 10_000)
        assert [o.client_order_id for o in broker.expired(T0 + 29_999)] == []
        assert [o.client_order_id for o in broker.expired(T0 + 30_000)] == [cid]
        updates = await engine.router.sync(T0 + 30_000)
        assert [(u.order.client_order_id, u.order.status) for u in updates] == [(cid, OrderStatus.CANCELED)]
        await rig.journal.flush()
    with JournalReader(path) as reader:
        results = [e for e in reader.events(kinds=["order_result"]) if e.payload.get("reason") == "expired"]
        (attempt,) = reader.events(kinds=["order_attempt"])
    assert [(r.payload["client_order_id"], r.payload["status"]) for r in results] == [(cid, "canceled")]
    assert [(r.trace_id, r.cause) for r in results] == [(T_DOGE, attempt.seq)]  # still in its attempt's tree


def _trailed(core: TradingCore | None) -> bool:
    """A position whose trailing stop is armed and is the stop in force, above its stop loss."""
    if core is None:
        return False
    policy = core.exit_policy
    return any(policy.trail_price(h) is not None and policy.stop_in_force(h) > policy.stop_price(h) for h in core.book.holdings.values())


async def test_a_raised_trailing_stop_survives_a_restart(tmp_path: Path) -> None:
    """The audit's quit and restart: a position whose trail had raised its stop above the entry
    (`Entry 0.13878 Stop 0.14045`) came back with its stop loss (`Stop 0.13323`): its peak was
    never journaled. The engine journals it now (the last rise as it stops), and the stop in
    force after the restart is the one before it, listed in the `recovered` event too."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: _trailed(engine.core), timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        core = engine.core
        assert core is not None
        stops = {s: core.exit_policy.stop_in_force(h) for s, h in core.book.holdings.items()}
        peaks = {s: h.position.trailing_high for s, h in core.book.holdings.items()}
        bought = {s: [f.trade_id for f in await engine.fills(s) if f.side is Side.BUY] for s in core.book.holdings}
    (symbol,) = [s for s, h in core.book.holdings.items() if core.exit_policy.trail_price(h) is not None]
    assert stops[symbol] > core.exit_policy.stop_price(core.book.holdings[symbol])

    state = read_journal(path, core.settings.capital.active.capital)
    async with pump_rig(path) as rig2:
        engine2 = rig2.engine
        engine2.core = TradingCore(engine2.config.trading, core.markets, engine2.tap, run_id="after")
        payload = await Recovery(state).apply(engine2, engine._now + 5_000)
        core2 = engine2.core
        assert {s: core2.exit_policy.stop_in_force(h) for s, h in core2.book.holdings.items()} == stops
        assert {s: h.position.trailing_high for s, h in core2.book.holdings.items()} == peaks
        # and the chart's marks of the engine's own run are there again (see the test below)
        assert {s: [f.trade_id for f in await engine2.fills(s) if f.side is Side.BUY] for s in bought} == bought
    listed = {p["symbol"]: p for p in payload["positions"]}
    assert {s: p["stop"] for s, p in listed.items()} == stops
    assert {s: p["trailing_high"] for s, p in listed.items()} == peaks


async def test_a_restart_hands_the_chart_the_fills_of_the_positions_it_recovered(tmp_path: Path) -> None:
    """The chart's buy and sell marks came from the run's memory: after a restart a position
    bought before it showed no buy. Recovery hands the engine the journal's fills: every fill
    of a position still held, and the day's fills of coins sold since."""
    sink = RecordingSink()
    await _history(sink)  # DOGE bought, part sold and held; PEPE bought and stopped out
    path = tmp_path / "j.sqlite"
    await _write(sink, path)
    journaled = {
        s: [(e.payload["trade_id"], e.payload["side"], e.payload["price"]) for e in sink.events if e.kind == "fill" and e.symbol == s]
        for s in (DOGE, PEPE)
    }
    assert [side for _, side, _ in journaled[DOGE]] == ["buy", "sell"] and [side for _, side, _ in journaled[PEPE]] == ["buy", "sell"]

    state = read_journal(path, CAPITAL)
    async with pump_rig(path) as rig:
        engine = rig.engine
        engine.core = TradingCore(engine.config.trading, {s: make_market(s) for s in (DOGE, PEPE, WIF)}, engine.tap)
        await Recovery(state).apply(engine, T0 + 5_000)
        for symbol, fills in journaled.items():
            assert [(f.trade_id, f.side.value, f.price) for f in await engine.fills(symbol)] == fills


async def test_a_restart_keeps_the_listing_times_the_run_before_journaled(tmp_path: Path) -> None:
    """The auditor's restart: every run's first market load is a baseline, so a coin listed 20
    minutes before a restart came back of unknown age (no listing heat, out of the pool, no
    since-listing features). Its journaled `listing` event dates it in the next run, from the
    warm-up's first load on."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.stats.cycles > 3, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        listed = plain_alts(rig.market)[0]
        listed_at = engine._now - 20 * 60_000
        rig.journal.emit("listing", ts_ms=engine._now, symbol=listed, payload={"listed_ms": listed_at, "reason": "new_symbol"})
        await rig.journal.flush()
    state = read_journal(path, 10_000.0)
    assert state.listings == {listed: listed_at}
    async with pump_rig(path, start_ms=engine._now + 60_000, run_id="after") as rig2:
        engine2 = rig2.engine
        engine2.recovery = Recovery(state)
        task = asyncio.create_task(engine2.run())
        await eventually(lambda: engine2.stats.cycles > 3, timeout=60)
        engine2.stop()
        await asyncio.wait_for(task, 10)
        assert engine2.discovery.listings.listing_ms(listed) == listed_at
        frame, row = engine2.discovery.last_frame, engine2.discovery.windows.row_of(listed)
        assert frame is not None and row is not None and frame.parts["listing_freshness"][row] > 0.95


async def test_a_balance_check_failing_through_an_outage_is_logged_at_its_start_and_end(caplog: pytest.LogCaptureFixture) -> None:
    """An outage failed every 5-minute check alike, one warning each; now the first failure and
    the recovery say it, and the checks between count without a line."""
    sink = RecordingSink()
    core = await _history(sink)
    gw = FakeGateway(balances=_balances(DOGE="600", USDT="5000"))
    audit = BalanceAudit(gw, "USDT")
    for _ in range(5):
        gw.fail_next("fetch_balance", RetryableOrderError("fetch_balance: Cannot connect to host 127.0.0.1:9"))
    with caplog.at_level(logging.WARNING, logger="hotcoin"):
        for k in range(6):
            await audit.run(core, sink, T0 + k * BALANCE_CHECK_MS)
    lines = [r.getMessage() for r in caplog.records if "balance check" in r.getMessage()]
    assert lines[0].startswith("balance check failed: fetch_balance: Cannot connect")
    assert lines[1].startswith("balance check works again after") and lines[1].endswith("(5 in all)")
    assert len(lines) == 2, lines
