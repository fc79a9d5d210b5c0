"""A scripted pump on the simulated market goes candidate -> signal -> entry -> take-profit
exit under one trace, and `hotcoin replay` renders that trace end to end (paper broker)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from engine.domain import EngineState, OrderIntent, OrderPurpose, TickerBatch
from engine.errors import JournalError, RetryableOrderError
from engine.execution.broker import OrderUpdate
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.ops.notify.events import notification_for
from engine.runtime import engine as engine_module
from engine.runtime.client import Command
from engine.runtime.feed import SimFeed
from engine.runtime.recovery import read_journal
from hotcoin_tui.cli import app
from tests.kit.engine import pump_rig, quiet_config
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
        assert [r.detail for r in engine.state.reasons] == ["healthy cycles 1/3 to tradeable"]
        for command in (Command.PAUSE, Command.RESUME, Command.PAUSE, Command.RESUME, Command.CLOSE_ALL):
            assert (await engine._execute(command, "test")).accepted
            assert engine.state.state is EngineState.DEGRADED
            assert [r.detail for r in engine.state.reasons] == ["healthy cycles 1/3 to tradeable"]
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
        assert progress is not None and progress.errors == (f"{rig.pump_symbol}: still open",)
        await eventually(lambda: (s := engine.hub.latest) is not None and s.close_all is not None and s.close_all.done)
        assert engine.hub.latest.close_all.errors == ()  # type: ignore[union-attr]
        engine.stop()
        await asyncio.wait_for(task, 10)


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
    """The simulated feed, held between batches while `gate` is clear."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()

    async def next_batch(self) -> TickerBatch:
        await self.gate.wait()
        return await super().next_batch()


def spills(folder: Path) -> list[Path]:
    return list(folder.glob("journal.unwritten-*.jsonl"))


def spilled_kinds(folder: Path) -> list[str]:
    (spill,) = spills(folder)
    return [orjson.loads(line)["kind"] for line in spill.read_bytes().splitlines()]


async def test_a_journal_failure_stops_the_engine_saying_why_and_what_is_left_open(tmp_path: Path) -> None:
    """The disk fills just as a position opens: the engine stops (no trading without a trace),
    the stop reason the owner is notified of names the journal error and the open position,
    and every unwritten event, run_stop included, is saved beside the journal."""
    path = tmp_path / "journal.sqlite"
    stops: list[Mapping[str, Any]] = []
    stack = contextlib.AsyncExitStack()
    rig = await stack.enter_async_context(pump_rig(path, feed_type=GatedFeed))
    engine, feed = rig.engine, rig.engine.feed
    assert isinstance(feed, GatedFeed)

    # The disk fills as the position opens: the first write to fail is the opening itself. Set
    # up before the run, not from the observer: a second connection writing from the loop's
    # thread can wait on a transaction the writer cannot finish while that thread is blocked.
    with sqlite3.connect(path, timeout=60) as other:
        other.execute(
            "CREATE TRIGGER full BEFORE INSERT ON events WHEN NEW.kind = 'position_update' "
            "AND json_extract(NEW.payload, '$.action') = 'open' BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
        )

    def wait_once_a_position_opens(kind: str, payload: Mapping[str, Any], symbol: str | None) -> None:
        if kind == "position_update" and payload["action"] == "open":
            feed.gate.clear()  # the engine waits for its next batch until the writer has failed
        elif kind == "run_stop":
            stops.append(payload)

    engine.observe(wait_once_a_position_opens)
    task = asyncio.create_task(engine.run())
    await eventually(lambda: not feed.gate.is_set(), timeout=60)
    with pytest.raises(JournalError, match="disk is full"):
        await rig.journal.flush()
    feed.gate.set()
    with pytest.raises(JournalError):
        await asyncio.wait_for(task, 30)
    with pytest.raises(JournalError, match=r"saved in .*journal\.unwritten-\d+\.jsonl"):
        await stack.aclose()
    (stop,) = stops
    assert stop["reason"].startswith(f"journal error (1 position(s) left open: {rig.pump_symbol}): journal writer stopped")
    told = notification_for("run_stop", stop)
    assert told is not None and told.title == "Engine stopped"
    assert "journal error" in told.text and "disk is full" in told.text
    assert spilled_kinds(tmp_path)[-1] == "run_stop"

    # The disk has room again: the next start takes the saved events back before it recovers,
    # so the position whose opening the full disk kept out is recovered, not forgotten.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER full")
    async with Journal.open(path):
        state = read_journal(path, rig.engine.config.trading.capital.active.capital)
    assert set(state.book.holdings) == {rig.pump_symbol}
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
