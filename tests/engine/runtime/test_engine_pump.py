"""A scripted pump on the simulated market goes candidate -> signal -> entry -> take-profit
exit under one trace, and `hotcoin replay` renders that trace end to end (paper broker)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from engine.domain import EngineState, OrderIntent, OrderPurpose, TickerBatch
from engine.errors import (
    InsufficientBalanceError,
    JournalError,
    NonRetryableOrderError,
    RetryableOrderError,
)
from engine.execution.broker import OrderUpdate
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.market.gateway import Balance
from engine.ops.http import health_document, health_status
from engine.ops.notify.events import notification_for
from engine.runtime import engine as engine_module
from engine.runtime.client import Command
from engine.runtime.engine import Engine
from engine.runtime.feed import SimFeed
from engine.runtime.recovery import read_journal
from engine.runtime.snapshot import EngineSnapshot
from engine.runtime.tap import EventObserver
from hotcoin_tui.cli import app
from tests.kit.engine import EngineRig, pump_rig, quiet_config
from tests.kit.waiting import eventually


async def test_scripted_pump_is_traded_and_explained(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        # Entered, then flat again through take-profit tiers (sim time runs ~1 h per second).
        await eventually(lambda: engine.stats.fills >= 2 and engine.core is not None and not engine.core.book.holdings, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
        await rig.journal.flush()

    with JournalReader(path) as reader:
        entered = reader.traces(outcome="entered", limit=10)
        assert entered, "no trace entered"
        trace_id = entered[-1].trace_id
        events = reader.trace(trace_id)
    kinds = [e.kind for e in events]
    assert {e.symbol for e in events} == {rig.pump_symbol}
    for kind in ("candidate_snapshot", "signal_snapshot", "risk_check", "order_attempt", "order_result", "fill", "position_update"):
        assert kind in kinds, f"{kind} missing from the trace"
    purposes = [e.payload["purpose"] for e in events if e.kind == "order_attempt"]
    assert purposes[0] == "entry"
    assert "take_profit" in purposes
    assert events[-1].kind == "position_update"
    assert events[-1].payload["action"] == "close"
    # The entry chain is a path in the tree: each step caused by the one before it.
    by_seq = {e.seq: e for e in events}
    chain = [events[-1]]
    while chain[-1].cause in by_seq:
        chain.append(by_seq[chain[-1].cause])  # type: ignore[index]
    assert chain[-1].kind == "candidate_snapshot"
    assert all(e.cause is None or e.cause < e.seq for e in events)

    result = CliRunner().invoke(app, ["replay", trace_id[:10], "--journal", str(path)])
    assert result.exit_code == 0, result.output
    assert "entered and closed" in result.output
    assert "take_profit" in result.output
    assert rig.pump_symbol in result.output


async def test_position_upnl_is_net_of_the_entry_fees_its_quantity_carries(tmp_path: Path) -> None:
    """One open position and nothing closed: its uPnL is the day PnL (the entry fee is in both;
    the uPnL used to be gross, the entry fee above the day PnL). After a take-profit
    tier the remainder carries only its share of the entry fee: uPnL + realised is still the day
    PnL, with no fee counted twice."""
    published: list[EngineSnapshot] = []
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        publish = engine.hub.publish

        async def record(snap: EngineSnapshot) -> None:
            published.append(snap)
            await publish(snap)

        engine.hub.publish = record  # type: ignore[method-assign]
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.stats.fills >= 2 and engine.core is not None and not engine.core.book.holdings, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
    held = [s for s in published if len(s.positions) == 1]
    fresh = [s for s in held if s.positions[0].tp_tier == 0 and s.positions[0].realised_pnl == 0.0]
    partly = [s for s in held if s.positions[0].realised_pnl != 0.0]
    assert fresh and partly, "the pump did not hold a position before and after a take-profit tier"
    for snap in fresh + partly:
        pos = snap.positions[0]
        gross = (pos.mark - pos.entry_price) * pos.quantity
        assert pos.unrealised_pnl < gross  # the entry fee is out of it
        assert pos.unrealised_pnl + pos.realised_pnl == pytest.approx(snap.totals.day_pnl, abs=1e-9)


async def test_pause_blocks_entries_and_resume_allows_them(tmp_path: Path) -> None:
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        result = await engine.command(Command.PAUSE, "test")
        assert result.accepted
        await eventually(lambda: engine.stats.cycles > 400, timeout=60)  # well past the pump's start
        assert engine.stats.fills == 0
        snap = engine.hub.latest
        assert snap is not None
        assert snap.status.paused
        await engine.command(Command.RESUME, "test")
        await engine.command(Command.SHUTDOWN, "test")
        await asyncio.wait_for(task, 10)
    with JournalReader(tmp_path / "j.sqlite") as reader:
        commands = [e.payload["command"] for e in reader.events(kinds=["command"])]
        rejected = [e for e in reader.events(kinds=["risk_check"]) if not e.payload["approved"]]
    assert commands == ["pause", "resume", "shutdown"]
    assert rejected, "paused entries were not journaled as refused"


async def test_commands_do_not_count_as_healthy_cycles(tmp_path: Path) -> None:
    """Pause, resume and close-all between two market batches tell the core the state and the
    pause; they do not step the state machine: only market batches count towards recovery."""
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        await engine.cycle.warmup()
        first = await engine.feed.next_batch()
        engine._now = first.ts_ms
        await engine.cycle.begin(first, "sim")
        # Three order errors that leave the 5-minute window before the next batch (5 s later).
        for _ in range(engine.config.state.order_errors_degraded):
            engine.state.errors.record(first.ts_ms - 300_000 + 1_000)
        await engine._cycle(first)
        assert engine.state.state is EngineState.DEGRADED
        await engine._cycle(await engine.feed.next_batch())
        assert [r.detail for r in engine.state.reasons if r.code == "recovering"] == ["healthy cycles 1/3 to tradeable"]
        for command in (Command.PAUSE, Command.RESUME, Command.PAUSE, Command.RESUME, Command.CLOSE_ALL):
            assert (await engine._execute(command, "test")).accepted
            assert engine.state.state is EngineState.DEGRADED
            assert [r.detail for r in engine.state.reasons if r.code == "recovering"] == ["healthy cycles 1/3 to tradeable"]
        assert engine.core is not None and engine.core.paused  # the close-all's pause reached the core
        for _ in range(engine.config.state.recover_cycles_degraded - 1):
            await engine._cycle(await engine.feed.next_batch())
        assert engine.state.state is EngineState.TRADEABLE


async def test_close_all_flattens_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "CLOSE_ALL_SHOWN_S", 0.5)
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.hub.latest is not None and bool(engine.hub.latest.positions), timeout=60)
        held = engine.hub.latest.positions  # type: ignore[union-attr]
        assert all(row.stop_price is not None and row.stop_price > 0 for row in held)  # the stop in force, not "none"
        first, second = await asyncio.gather(
            engine.command(Command.CLOSE_ALL, "test"), engine.command(Command.CLOSE_ALL, "test")
        )
        assert first.accepted, first.message
        assert second.accepted, second.message
        assert engine.core is not None
        assert not engine.core.book.holdings
        snap = engine.hub.latest
        assert snap is not None
        assert snap.close_all is not None
        assert snap.close_all.done
        # The panic button pauses entries too: nothing is bought again until a resume; the FLAT
        # badge goes once the close-all has been flat for a while.
        assert "paused" in first.message and snap.status.paused
        fills = engine.stats.fills
        await eventually(lambda: (s := engine.hub.latest) is not None and s.close_all is None, timeout=30)
        assert engine.stats.fills == fills and not engine.core.book.holdings
        engine.stop()
        await asyncio.wait_for(task, 10)
    with JournalReader(tmp_path / "j.sqlite") as reader:
        exits = [e for e in reader.events(kinds=["order_attempt"]) if e.payload["purpose"] == "close_all"]
        commands = [(e.payload["command"], e.payload["origin"]) for e in reader.events(kinds=["command"])]
    assert len(exits) == 1, "close-all pressed twice must sell once"
    assert ("pause", "test (close-all)") in commands


async def test_close_all_fills_reach_the_chart_the_fill_count_and_the_metrics(tmp_path: Path) -> None:
    """Close-all booked its sells straight into the core: the chart had no sell mark
    (`fills(symbol)` held only the buy), and the run summary and /metrics counted one order
    and one fill where the journal had two (the summary's order count left close-all out)."""
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.hub.latest is not None and bool(engine.hub.latest.positions), timeout=60)
        symbol = engine.hub.latest.positions[0].symbol  # type: ignore[union-attr]
        assert (await engine.command(Command.CLOSE_ALL, "test")).accepted
        assert engine.core is not None and not engine.core.book.holdings
        sides = [f.side.value for f in await engine.fills(symbol)]
        fills = engine.stats.fills
        sent = engine.router.sent
        metrics = engine.metrics.render().decode()
        engine.stop()
        await asyncio.wait_for(task, 10)
        await rig.journal.flush()
    with JournalReader(tmp_path / "j.sqlite") as reader:
        journaled = list(reader.events(kinds=["fill"]))
        filled = [e for e in reader.events(kinds=["order_result"]) if e.payload["status"] == "filled"]
        purposes = [e.payload["purpose"] for e in reader.events(kinds=["order_attempt"])]
    assert sides[-1] == "sell" and "buy" in sides
    assert fills == len(journaled) >= 2
    assert "close_all" in purposes and sent == len(purposes)  # the run summary's "orders sent"
    assert f'hotcoin_orders_total{{result="filled"}} {float(len(filled))}' in metrics


class _BusyOnFirstCloseAll(PaperBroker):
    """The first close-all sell is refused with a 429 (the router frees its id); the core sends
    it again at the next price update, and that one fills."""

    def __init__(self, model: FillModel) -> None:
        super().__init__(model)
        self.refused = False

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if intent.purpose is OrderPurpose.CLOSE_ALL and not self.refused:
            self.refused = True
            raise RetryableOrderError("429 too many requests")
        return await super().submit(intent, now_ms)


async def test_a_close_all_that_ends_flat_on_a_later_cycle_reports_no_error(tmp_path: Path) -> None:
    """The first sell hit a 429: the reply said the close-all had failed (the console dropped
    its progress dialog) and, once the engine closed the position a cycle later, the dialog
    still showed "still open" in red under CLOSE-ALL DONE."""
    ex = quiet_config().trading.execution
    async with pump_rig(tmp_path / "j.sqlite", broker=_BusyOnFirstCloseAll(FillModel(ex.fee_rate, ex.maker_fee_rate, 0.0))) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.hub.latest is not None and bool(engine.hub.latest.positions), timeout=60)
        result = await engine.command(Command.CLOSE_ALL, "test")
        assert result.accepted, result.message
        assert "still closing" in result.message and rig.pump_symbol in result.message
        progress = engine.hub.latest.close_all  # type: ignore[union-attr]
        why = f"{rig.pump_symbol}: exit failed: 429 too many requests, retrying at the next price update"
        assert progress is not None and progress.errors == (why,) and why in result.message
        await eventually(lambda: (s := engine.hub.latest) is not None and s.close_all is not None and s.close_all.done)
        assert engine.hub.latest.close_all.errors == ()  # type: ignore[union-attr]
        engine.stop()
        await asyncio.wait_for(task, 10)


class SteppedFeed(SimFeed):
    """The simulated feed; once `stepping`, each `step()` lets exactly one batch through,
    whenever the engine asks for it (an event set and cleared at once misses a request that
    has not started waiting yet)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stepping = False
        self._steps = asyncio.Semaphore(0)

    def step(self) -> None:
        self._steps.release()

    async def next_batch(self) -> TickerBatch:
        if self.stepping:
            await self._steps.acquire()
        return await super().next_batch()


@contextlib.asynccontextmanager
async def _held_then_stepped(tmp_path: Path, broker: PaperBroker) -> AsyncIterator[tuple[EngineRig, Engine, SteppedFeed]]:
    """The pump rig's engine run until it holds the pumped coin, then fed one batch per
    `step()`; let go and stopped at the end."""
    async with pump_rig(tmp_path / "j.sqlite", broker=broker, feed_type=SteppedFeed) as rig:
        engine, feed = rig.engine, rig.engine.feed
        assert isinstance(feed, SteppedFeed)
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.hub.latest is not None and bool(engine.hub.latest.positions), timeout=60)
        feed.stepping = True
        try:
            yield rig, engine, feed
        finally:
            feed.stepping = False
            feed.step()
            engine.stop()
            await asyncio.wait_for(task, 10)


class _HaltedForCloseAll(PaperBroker):
    """Refuses every close-all sell as Binance does for a coin in a trading halt, or once it
    is delisted after `delisted` is set; sells again once `halted` is cleared."""

    def __init__(self, model: FillModel) -> None:
        super().__init__(model)
        self.halted = True
        self.delisted = False

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if intent.purpose is OrderPurpose.CLOSE_ALL and self.halted:
            if self.delisted:
                raise NonRetryableOrderError('create_order: BadSymbol: binance {"code":-1121}', code=-1121, reason="Invalid symbol.")
            raise NonRetryableOrderError("create_order: MarketClosed: binance Market is closed.", code=-1013, reason="Market is closed.")
        return await super().submit(intent, now_ms)


async def test_close_all_progress_says_why_a_position_is_still_open(tmp_path: Path) -> None:
    """The exchange refused the close-all sell (-1013 "Market is closed."): the journal said
    so, but the progress, the command's answer (and so the console's dialog, banner and
    notice) said only "still open". They say the refusal and when the sell is tried again,
    counting down each cycle, and follow a later refusal that differs."""
    ex = quiet_config().trading.execution
    broker = _HaltedForCloseAll(FillModel(ex.fee_rate, ex.maker_fee_rate, 0.0))
    async with pump_rig(tmp_path / "j.sqlite", broker=broker, feed_type=SteppedFeed) as rig:
        engine, feed = rig.engine, rig.engine.feed
        assert isinstance(feed, SteppedFeed)
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.hub.latest is not None and bool(engine.hub.latest.positions), timeout=60)
        feed.stepping = True  # one batch per `step()` from here
        result = await engine.command(Command.CLOSE_ALL, "test")
        halted = f"{rig.pump_symbol}: exit refused: Market is closed. (-1013)"
        assert f"still open ({halted}, retrying in 30 s)" in result.message

        def shown() -> tuple[str, ...]:
            progress = engine.hub.latest.close_all  # type: ignore[union-attr]
            assert progress is not None and not progress.done
            return progress.errors

        seen = [shown()]
        broker.delisted = True
        while "Invalid symbol" not in seen[-1][0]:
            ts = engine.hub.latest.ts_ms  # type: ignore[union-attr]
            feed.step()
            await eventually(lambda ts=ts: engine.hub.latest.ts_ms > ts)  # type: ignore[misc, union-attr]
            seen.append(shown())
        counted = [int(e.removeprefix(f"{halted}, retrying in ").removesuffix(" s")) for (e,) in seen[:-1]]
        assert counted == sorted(counted, reverse=True) and len(set(counted)) == len(counted) > 1
        assert seen[-1] == (f"{rig.pump_symbol}: exit refused: Invalid symbol. (-1121), retrying in 60 s",)
        broker.halted = False
        feed.stepping = False
        feed.step()
        await eventually(lambda: (s := engine.hub.latest) is not None and s.close_all is not None and s.close_all.done, timeout=30)
        assert engine.hub.latest.close_all.errors == ()  # type: ignore[union-attr]
        engine.stop()
        await asyncio.wait_for(task, 10)


async def test_a_resume_during_close_all_says_which_coins_it_still_sells(tmp_path: Path) -> None:
    """Audit: after close-all, resume answered "entries resumed" and the snapshot said not
    paused, while every entry was refused for as long as the halted coin was held. Entries do
    resume; the close-all goes on, and the answer says what it still sells and why."""
    ex = quiet_config().trading.execution
    broker = _HaltedForCloseAll(FillModel(ex.fee_rate, ex.maker_fee_rate, 0.0))
    async with _held_then_stepped(tmp_path, broker) as (rig, engine, _):
        assert "still closing" in (await engine.command(Command.CLOSE_ALL, "test")).message
        # No batch between the two: the second command is taken while the loop still waits
        # on the batch it asked for before the first (it waited for that batch once).
        result = await asyncio.wait_for(engine.command(Command.RESUME, "test"), 10)
        halted = f"{rig.pump_symbol} (exit refused: Market is closed. (-1013), retrying in "
        assert result.accepted and result.message.startswith(f"entries resumed; close-all still selling {halted}")
        assert result.message.endswith(" s)")
        snap = engine.hub.latest
        assert snap is not None and not snap.status.paused
        assert snap.close_all is not None and snap.close_all.remaining == 1
        assert engine.core is not None and not engine.core.paused
        for command in (Command.PAUSE, Command.RESUME):  # and more, still with no batch between them
            assert (await asyncio.wait_for(engine.command(command, "test"), 10)).accepted


class _Short(PaperBroker):
    """The exchange holds only `real` coins of what the book holds (some sold in the Binance
    app): a sell of more is refused for insufficient balance (-2010), and the balance says so."""

    def __init__(self, model: FillModel) -> None:
        super().__init__(model)
        self.real: float | None = None

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if intent.purpose.is_exit and self.real is not None and float(intent.quantity) > self.real + 1e-9:
            raise InsufficientBalanceError(
                "create_order: InsufficientFunds: binance Account has insufficient balance for requested action.",
                code=-2010, reason="Account has insufficient balance for requested action.",
            )  # fmt: skip
        return await super().submit(intent, now_ms)

    async def coin_balance(self, asset: str) -> Balance | None:
        return None if self.real is None else Balance(Decimal(str(self.real)), Decimal(0))


async def test_a_close_all_sell_refused_for_want_of_coins_sells_what_is_there_at_the_next_price(tmp_path: Path) -> None:
    """Audit: close-all's own pass never asked the exchange's balance after an "insufficient
    balance" refusal (the cycle's exits do): it waited out a 30 s backoff and a second refusal
    before the difference was written down. The press asks at once, and the coins that are
    there are sold at the next price update."""
    ex = quiet_config().trading.execution
    broker = _Short(FillModel(ex.fee_rate, ex.maker_fee_rate, 0.0))
    async with _held_then_stepped(tmp_path, broker) as (rig, engine, feed):
        core = engine.core
        assert core is not None
        held = core.book.holdings[rig.pump_symbol].position.quantity
        broker.real = round(held * 0.8, 1)
        await engine.command(Command.CLOSE_ALL, "test")
        pressed = engine._now
        assert core.book.holdings[rig.pump_symbol].position.quantity == pytest.approx(broker.real)  # written down at the press
        feed.step()
        await eventually(lambda: engine.hub.latest.ts_ms > pressed)  # type: ignore[union-attr]
        assert not core.book.holdings, "what the exchange holds is sold at the next price update"
    with JournalReader(tmp_path / "j.sqlite") as reader:
        sells = [e.payload["quantity"] for e in reader.events(kinds=["order_attempt"]) if e.payload["purpose"] == "close_all"]
        codes = [e.payload["code"] for e in reader.events(kinds=["risk_event"])]
    assert len(sells) == 2 and float(sells[1]) == pytest.approx(broker.real)  # the refused sell, then what is there
    assert "balance_mismatch" in codes


async def test_metrics_count_signals_and_orders(tmp_path: Path) -> None:
    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.stats.fills >= 2, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
    text = engine.metrics.render().decode()
    assert 'hotcoin_signals_total{decision="enter"}' in text
    assert 'hotcoin_signals_total{decision="skip"}' in text
    assert 'hotcoin_orders_total{result="filled"}' in text


class GatedFeed(SimFeed):
    """The simulated feed, held between batches while `gate` is clear; with `crash` set
    (symbol, factor, from_ms), that symbol's quotes are cut by `factor` from `from_ms` on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.crash: tuple[str, float, int] | None = None

    async def next_batch(self) -> TickerBatch:
        await self.gate.wait()
        batch = await super().next_batch()
        if self.crash is None or batch.ts_ms < self.crash[2]:
            return batch
        i = batch.symbols.index(self.crash[0])
        last, bid, ask = batch.last.copy(), batch.bid.copy(), batch.ask.copy()
        for prices in (last, bid, ask):
            prices[i] *= self.crash[1]
        return dataclasses.replace(batch, last=last, bid=bid, ask=ask)


def spills(folder: Path) -> list[Path]:
    return list(folder.glob("journal.*.unwritten-*.jsonl"))


def fail_position_openings(path: Path) -> None:
    """The disk fills as a position opens: the first write to fail is the opening itself. Set
    up before the run, not from an observer: a second connection writing from the loop's
    thread can wait on a transaction the writer cannot finish while that thread is blocked."""
    with sqlite3.connect(path, timeout=60) as other:
        other.execute(
            "CREATE TRIGGER full BEFORE INSERT ON events WHEN NEW.kind = 'position_update' "
            "AND json_extract(NEW.payload, '$.action') = 'open' BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
        )


def hold_once_a_position_opens(feed: GatedFeed, stops: list[Mapping[str, Any]]) -> EventObserver:
    """An observer that holds the feed once a position opened (the engine waits for its next
    batch until the writer has failed), and keeps the run_stop payloads."""

    def observe(kind: str, payload: Mapping[str, Any], symbol: str | None) -> None:
        if kind == "position_update" and payload["action"] == "open":
            feed.gate.clear()
        elif kind == "run_stop":
            stops.append(payload)

    return observe


async def test_a_journal_failure_leaves_the_engine_closing_its_positions_exits_only(tmp_path: Path) -> None:
    """The disk fills just as a position opens. Stopping would leave the position with no stop
    at all; instead the engine blocks (reason `journal`), keeps watching it, sells it when the
    price falls through the stop, and only then stops, every step saved beside the journal.
    The next start takes them back: the journal shows the position closed."""
    path = tmp_path / "journal.sqlite"
    stops: list[Mapping[str, Any]] = []
    stack = contextlib.AsyncExitStack()
    rig = await stack.enter_async_context(pump_rig(path, feed_type=GatedFeed))
    engine, feed = rig.engine, rig.engine.feed
    assert isinstance(feed, GatedFeed)
    fail_position_openings(path)
    engine.observe(hold_once_a_position_opens(feed, stops))
    closing: list[EngineSnapshot | None] = []  # what the console showed as the first exit went out

    def first_exit(kind: str, payload: Mapping[str, Any], symbol: str | None) -> None:
        if kind == "order_attempt" and payload["purpose"] != "entry" and not closing:
            closing.append(engine.hub.latest)

    engine.observe(first_exit)
    task = asyncio.create_task(engine.run())
    await eventually(lambda: not feed.gate.is_set(), timeout=60)
    await eventually(lambda: rig.journal.failure is not None, timeout=30)
    assert engine.core is not None and set(engine.core.book.holdings) == {rig.pump_symbol}
    feed.crash = (rig.pump_symbol, 0.5, engine._now + 30_000)  # the coin halves, half a minute on
    feed.gate.set()
    with pytest.raises(JournalError, match=r"journal write failed: .*disk is full; events saved to"):
        await asyncio.wait_for(task, 60)
    with pytest.raises(JournalError, match=r"saved in .*journal\.[0-9a-f]{12}\.unwritten-\d+\.jsonl"):
        await stack.aclose()

    (stop,) = stops
    assert stop["reason"].startswith("journal error (no position open): journal write failed: ")
    assert engine.core is not None and not engine.core.book.holdings
    (spill,) = spills(tmp_path)
    events = [orjson.loads(line) for line in spill.read_bytes().splitlines()]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "spilled events out of order or with gaps"
    kinds = [e["kind"] for e in events]
    (state,) = [e for e in events if e["kind"] == "state_change"]
    assert state["payload"]["to"] == "blocked" and state["payload"]["reasons"] == ["journal"]
    told = notification_for("state_change", state["payload"])
    assert told is not None and told.title.endswith("→ blocked") and "journal write failed" in told.text
    after = events[kinds.index("state_change"):]
    purposes = [e["payload"]["purpose"] for e in after if e["kind"] == "order_attempt"]
    assert "entry" not in purposes and {"stop_loss", "trailing_stop"} & set(purposes), purposes  # exits only
    assert any(e["kind"] == "fill" and e["payload"]["side"] == "sell" for e in after)
    assert [e["payload"]["action"] for e in after if e["kind"] == "position_update"][-1] == "close"
    assert kinds[-1] == "run_stop"
    # While it was still closing: the console and /health saw why.
    (snap,) = closing
    assert snap is not None and snap.positions and snap.status.state == "blocked"
    assert any(r.startswith("journal: journal write failed: ") for r in snap.status.reasons), snap.status.reasons
    assert health_status(health_document(snap, {}, snap.ts_ms), 30.0) == 503

    # The disk has room again: the next start takes the saved events back, and the position
    # the full disk kept out of the journal is there, opened and closed.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER full")
    async with Journal.open(path):
        state_after = read_journal(path, rig.engine.config.trading.capital.active.capital)
    assert not state_after.book.holdings
    assert not spills(tmp_path)
    with JournalReader(path) as reader:
        closes = [e for e in reader.events(kinds=["position_update"]) if e.symbol == rig.pump_symbol]
    assert closes[0].payload["action"] == "open" and closes[-1].payload["action"] == "close"


async def test_a_journal_failure_whose_events_cannot_be_saved_stops_the_engine_at_once(tmp_path: Path) -> None:
    """No folder takes the unwritten events either: nothing could be recorded, so the engine
    stops at once (trading blind must not go on), saying why and what is left open."""
    path = tmp_path / "journal.sqlite"
    stops: list[Mapping[str, Any]] = []
    stack = contextlib.AsyncExitStack()
    rig = await stack.enter_async_context(pump_rig(path, feed_type=GatedFeed))
    engine, feed = rig.engine, rig.engine.feed
    assert isinstance(feed, GatedFeed)
    fail_position_openings(path)
    (tmp_path / "full").write_text("")
    rig.journal.spill_dirs = [tmp_path / "full"]  # a file, not a folder: every spill fails
    engine.observe(hold_once_a_position_opens(feed, stops))
    task = asyncio.create_task(engine.run())
    await eventually(lambda: not feed.gate.is_set(), timeout=60)
    with pytest.raises(JournalError, match="disk is full"):
        await rig.journal.flush()
    feed.gate.set()
    with pytest.raises(JournalError, match="saving them failed too"):
        await asyncio.wait_for(task, 30)
    with pytest.raises(JournalError, match="they are lost"):
        await stack.aclose()
    (stop,) = stops
    assert stop["reason"].startswith(f"journal error (1 position(s) left open: {rig.pump_symbol}): journal writer stopped")
    told = notification_for("run_stop", stop)
    assert told is not None and told.title == "Engine stopped"
    assert "journal error" in told.text and "disk is full" in told.text
    assert engine.state.state is not EngineState.BLOCKED  # it stopped; it did not go on exits-only
    assert not spills(tmp_path)


async def test_a_regime_symbol_that_is_not_listed_is_said_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its btc_* features would be NaN all run long with nothing said."""
    from tests.kit.engine import quiet_config

    config = quiet_config(**{"trading.signals.regime_symbol": "NOPE/USDT"})
    async with pump_rig(tmp_path / "j.sqlite", config) as rig:
        task = asyncio.create_task(rig.engine.run())
        await eventually(lambda: rig.engine.core is not None, timeout=60)
        rig.engine.stop()
        await asyncio.wait_for(task, 10)
    (warning,) = [r.getMessage() for r in caplog.records if "regime symbol" in r.getMessage()]
    assert "NOPE/USDT is not among the" in warning and "trading.signals.regime_symbol" in warning
