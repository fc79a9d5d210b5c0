"""A simulated run restarted on its journal goes on from where the last one's clock stopped:
its sim clock ran `speed` times faster than the wall, so starting at wall time again would
put the restart's events before the ones it recovered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine.execution.paper import PaperBroker
from engine.journal.events import JournalEvent
from engine.journal.reader import JournalReader
from engine.journal.trace import summarise
from engine.journal.writer import Journal
from engine.runtime.recovery import read_journal
from engine.runtime.session import RunOptions, open_session, sim_start_ms
from tests.kit.domain import T0, make_batch, make_intent
from tests.kit.engine import START_MS, pump_rig, quiet_config
from tests.kit.waiting import eventually

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
FILL = {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03}


async def journal_ending_at(path: Path, ts_ms: int) -> None:
    async with Journal.open(path) as journal:
        journal.emit("run_start", ts_ms=ts_ms - HOUR_MS, payload={"run_id": "r", "config_hash": "x", "mode": "SIM"})
        journal.emit("fill", ts_ms=ts_ms, payload=FILL, symbol="DOGE/USDT")


async def test_the_sim_clock_starts_after_the_journals_newest_event(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    now = time.time_ns() // 1_000_000
    assert sim_start_ms(now, path) == now  # no journal yet
    await journal_ending_at(path, now + 10 * HOUR_MS)  # a run at x60 for 10 minutes
    assert sim_start_ms(now, path) == now + 10 * HOUR_MS + 1
    assert sim_start_ms(now + 20 * HOUR_MS, path) == now + 20 * HOUR_MS  # a journal behind the clock


async def test_a_zero_byte_journal_is_a_new_one(tmp_path: Path) -> None:
    """`sqlite3 j.sqlite "select 1"` before the first run leaves 0 bytes: `hotcoin run` refused
    it as "no such table: events; is it a hotcoin journal?"."""
    path = tmp_path / "journal.sqlite"
    path.touch()
    now = time.time_ns() // 1_000_000
    assert sim_start_ms(now, path) == now
    config = quiet_config(**{"journal.path": str(path), "paths.data_dir": str(tmp_path / "data")})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    async with open_session(config, options):
        pass
    with JournalReader(path) as reader:  # now a journal, with its tables
        assert reader.traces() == []


async def test_a_restarted_demo_stamps_its_events_after_the_recovered_ones(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    ahead = time.time_ns() // 1_000_000 + 10 * HOUR_MS
    await journal_ending_at(path, ahead)
    config = quiet_config(**{"journal.path": str(path), "paths.data_dir": str(tmp_path / "data")})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    async with open_session(config, options) as session:
        first = await session.engine.feed.next_batch()
    assert first.ts_ms > ahead


async def test_a_session_checkpoints_recovery_before_each_rotation(tmp_path: Path) -> None:
    """`hotcoin run` gives its journal the checkpointer: a rotation journals recovery's state
    first, so the archives it writes can later go without losing the fill they hold."""
    path = tmp_path / "journal.sqlite"
    ahead = time.time_ns() // 1_000_000 + 10 * HOUR_MS
    await journal_ending_at(path, ahead)
    config = quiet_config(**{
        "journal.path": str(path), "paths.data_dir": str(tmp_path / "data"), "journal.rotate_max_age_days": 0.01,
    })  # fmt: skip
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    async with open_session(config, options) as session:
        journal = session.engine.journal
        assert isinstance(journal, Journal)
        assert await journal.rotate(now_ms=ahead + 2 * HOUR_MS)
    with JournalReader(path) as reader:
        [(_, cp)] = list(reader.newest_first("checkpoint"))
    assert isinstance(cp, JournalEvent) and cp.payload["state"]["fills"] == 1
    assert read_journal(path, config.trading.capital.active.capital).fills == 1


async def test_paper_order_and_trade_ids_do_not_repeat_across_restarts(tmp_path: Path) -> None:
    """Each run's paper broker counted from paper-1 / paper-t1 again: one journal held
    different orders and fills under the same ids."""
    path = tmp_path / "journal.sqlite"
    config = quiet_config(**{"journal.path": str(path), "paths.data_dir": str(tmp_path / "data")})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    seen = []
    for _ in range(2):
        async with open_session(config, options) as session:
            broker = session.engine.broker
            assert isinstance(broker, PaperBroker)
            broker.update_book(make_batch({"DOGE/USDT": 0.3}))
            update = await broker.submit(make_intent(), T0)
            seen.append((update.order.exchange_order_id, update.fills[0].trade_id))
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]


async def _run_rig(path: Path, start_ms: int, run_id: str, cycles: int) -> None:
    """One engine run on the rig's market, its pump 5 minutes after `START_MS` whatever the
    start: a later run's warm-up replays the minutes an earlier one traded through."""
    async with pump_rig(path, start_ms=start_ms, run_id=run_id, pump_ms=START_MS + 5 * MINUTE_MS) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.stats.cycles >= cycles, timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)


async def test_a_restarts_warm_up_journals_no_trace_of_minutes_already_decided(tmp_path: Path) -> None:
    """Run 1 trades the pump (from 00:05) to about 00:12; run 2 starts at 00:20 after a warm-up
    over the 65 minutes before, pump included. That warm-up journaled a candidate snapshot a
    minute under run 2's trace ids, stamped before run 1's end: `hotcoin traces` listed them as
    "open" (nothing decides a warm-up) between run 1's traces, out of time order. Now nothing
    comes between run 1's run_stop and run 2's run_start; the pool run 2 inherits from its
    warm-up is journaled at its first batch, so that batch's decisions still read whole."""
    path = tmp_path / "journal.sqlite"
    await _run_rig(path, START_MS, "run-1", 150)
    await _run_rig(path, START_MS + 20 * MINUTE_MS, "run-2", 12)
    with JournalReader(path) as reader:
        events = list(reader.events())
        traces = reader.traces(limit=1000)
        starts = [e for e in events if e.kind == "run_start"]
        stop = next(e for e in events if e.kind == "run_stop")
        assert stop.ts_ms < starts[1].ts_ms  # run 1 ended before run 2 began
        assert starts[1].seq == stop.seq + 1, [(e.seq, e.kind, e.ts_ms) for e in events if stop.seq < e.seq < starts[1].seq]
        assert [t.ts_ms for t in traces] == sorted((t.ts_ms for t in traces), reverse=True)  # newest first, by time
        assert all(t.outcome != "open" for t in traces)
        # Run 2's first batch: the pump coin, in the pool since the warm-up, decided under one
        # trace that starts with its candidate snapshot (the signal's cause).
        first = [e for e in events if e.seq > starts[1].seq and e.ts_ms == starts[1].ts_ms]
        signals = [e for e in first if e.kind == "signal_snapshot"]
        assert signals
        for signal in signals:
            cause = next(e for e in first if e.seq == signal.cause)
            assert cause.kind == "candidate_snapshot" and cause.trace_id == signal.trace_id
            summary = summarise(signal.trace_id or "", reader.trace(signal.trace_id or ""))
            assert summary.discovery is not None and summary.discovery.seq == cause.seq
            assert summary.signal is not None and summary.verdict.outcome != "open"
