"""A simulated run restarted on its journal goes on from where the last one's clock stopped:
its sim clock ran `speed` times faster than the wall, so starting at wall time again would
put the restart's events before the ones it recovered. And it goes on in the same market: the
demo's is saved beside the journal and resumed, so recovered positions are marked at prices
that market really prints."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.config.sections.sim import SimSection
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.events import JournalEvent
from engine.journal.reader import JournalReader
from engine.journal.trace import summarise
from engine.journal.writer import Journal
from engine.runtime.engine import Engine
from engine.runtime.feed import SimFeed
from engine.runtime.recovery import read_journal
from engine.runtime.session import (
    DEMO_PUMP_AFTER_MS,
    RESUME_MAX_GAP_MS,
    WARMUP_MS,
    RunOptions,
    exchange_feed,
    open_session,
    script_demo_pump,
    sim_start_ms,
)
from engine.sim.market import SimMarket
from engine.sim.saved import saved_market_path, saved_time
from tests.engine.sim.test_market import assert_same_batch
from tests.kit.domain import T0, make_batch, make_intent
from tests.kit.engine import START_MS, pump_rig, quiet_config
from tests.kit.exchange_rig import exchange_config
from tests.kit.sim_exchange import running_sim_exchange
from tests.kit.waiting import eventually

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
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


# -- the demo's market goes on across restarts ------------------------------------------------


def _options(start_ms: int) -> RunOptions:
    return RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000, start_ms=start_ms)


def _demo_config(tmp_path: Path) -> HotcoinConfig:
    return quiet_config(**{"journal.path": str(tmp_path / "journal.sqlite"), "paths.data_dir": str(tmp_path / "data")})


def _first_market(config: HotcoinConfig, start_ms: int) -> SimMarket:
    """The market a demo first started at `start_ms` trades, built and scripted as the session does."""
    market = SimMarket(config.sim_market, start_ms - WARMUP_MS)
    script_demo_pump(market, start_ms + DEMO_PUMP_AFTER_MS)
    return market


async def _demo(config: HotcoinConfig, start_ms: int, until: Callable[[Engine], bool]) -> tuple[Engine, SimMarket]:
    """One `hotcoin run --demo` in lockstep from `start_ms`, stopped once `until(engine)`."""
    async with open_session(config, _options(start_ms)) as session:
        engine = session.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: until(engine), timeout=60)
        engine.stop()
        await asyncio.wait_for(task, 10)
    assert isinstance(engine.feed, SimFeed) and isinstance(engine.feed.market, SimMarket)
    return engine, engine.feed.market


def _holding(engine: Engine) -> bool:
    return engine.core is not None and bool(engine.core.book.holdings) and engine.stats.cycles > 130


async def test_a_restarted_demo_marks_its_positions_in_the_market_it_left(tmp_path: Path) -> None:
    """Each start built the demo's market afresh from its own start time, so every coin's price
    jumped at a restart: JWUY marked 0.028375 at quit stood at 0.025599 on the restart's first
    cycle, 40 s later, and its stop-loss fired at a price that never traded. Now the market is
    saved at quit and resumed: 40 s on, every coin is where the uninterrupted market has it,
    and the position bought in the pump is still held."""
    config = _demo_config(tmp_path)
    first, market = await _demo(config, START_MS, _holding)
    assert first.core is not None
    held = set(first.core.book.holdings)
    assert held, "run 1 must quit with a position open"
    second, market = await _demo(config, market.now_ms + 40_000, lambda e: e.stats.cycles >= 3)
    with JournalReader(config.journal_path) as reader:
        restart = max(e.seq for e in reader.events(kinds=["run_start"]))
        stops = [e.symbol for e in reader.events(kinds=["order_attempt"]) if e.seq > restart and e.payload["purpose"] == "stop_loss"]
    assert stops == []
    assert second.core is not None and held <= set(second.core.book.holdings)
    uninterrupted = _first_market(config, START_MS)
    uninterrupted.advance_to(market.now_ms)
    assert_same_batch(market.tickers(), uninterrupted.tickers())


async def test_a_demo_restarted_later_steps_its_saved_market_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Stopped longer ago than the warm-up, the saved market is stepped on to the warm-up's start."""
    config = _demo_config(tmp_path)
    async with open_session(config, _options(START_MS)):
        pass
    later = START_MS + 45 * MINUTE_MS  # the saved market stopped at START_MS - WARMUP_MS: 110 minutes before
    with caplog.at_level(logging.INFO, logger="hotcoin.session"):
        async with open_session(config, _options(later)) as session:
            feed = session.engine.feed
            assert isinstance(feed, SimFeed)
            assert feed.market.now_ms == later - WARMUP_MS
            uninterrupted = _first_market(config, START_MS)
            uninterrupted.advance_to(later - WARMUP_MS)
            assert_same_batch(feed.market.tickers(), uninterrupted.tickers())
    assert any(r.getMessage().startswith("demo market: resumed from") for r in caplog.records)


async def test_a_demo_restarted_past_the_catch_up_limit_starts_a_new_market_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _demo_config(tmp_path)
    async with open_session(config, _options(START_MS)):
        pass
    later = START_MS - WARMUP_MS + 150 * MINUTE_MS  # the saved market stopped at START_MS - WARMUP_MS
    assert later - (START_MS - WARMUP_MS) > RESUME_MAX_GAP_MS
    with caplog.at_level(logging.WARNING, logger="hotcoin.session"):
        async with open_session(config, _options(later)) as session:
            feed = session.engine.feed
            assert isinstance(feed, SimFeed)
            assert_same_batch(feed.market.tickers(), _first_market(config, later).tickers())
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "not resuming" in warning and "2.5 h of market time ago, longer than the 2 h a start catches up" in warning
    assert "positions recovered from the journal are marked, and their stops and targets checked, at the new market's prices" in warning
    assert saved_time(saved_market_path(config.journal_path), config.sim_market) == later - WARMUP_MS  # the new one is kept


async def test_a_resumed_markets_warm_up_covers_discoverys_whole_window() -> None:
    """A market resumed 40 s after it stopped has only 40 s to step through before the clock's
    start; the hour before comes from its own 1m candles, so discovery starts on a full window."""
    market = SimMarket(SimSection(symbols=20, history_minutes=120), START_MS)
    market.advance_to(START_MS + 30 * MINUTE_MS + 7_000)
    stopped = market.now_ms
    clock = SimClock(stopped + 40_000)
    batches = [b async for b in SimFeed(market, clock, warmup_ms=WARMUP_MS).warmup(15_000)]
    times = [b.ts_ms for b in batches]
    assert times == sorted(set(times)) and times[-1] <= clock.start_ms
    assert clock.start_ms - WARMUP_MS - MINUTE_MS < times[0] <= clock.start_ms - WARMUP_MS + 15_000
    assert max(b - a for a, b in itertools.pairwise(times)) <= MINUTE_MS + 15_000
    replayed = [b for b in batches if b.ts_ms < stopped]
    closes = market.klines(market.symbols[-1], "1m", start_ms=replayed[0].ts_ms - MINUTE_MS, end_ms=stopped - MINUTE_MS)
    assert [b.last[-1] for b in replayed if b.ts_ms % MINUTE_MS == 0] == [c.close for c in closes]


async def test_an_engine_on_a_sim_exchange_behind_its_journal_goes_on_after_it(tmp_path: Path) -> None:
    """The sim-exchange restarted under an earlier run (its times then shown a day later), and
    the engine restarts too: its clock starts after the journal's newest event, not a day back."""
    path = tmp_path / "journal.sqlite"
    async with running_sim_exchange() as server:
        exchange_now = server.venue.clock.now_ms()
        await journal_ending_at(path, exchange_now + DAY_MS + HOUR_MS)
        config = exchange_config(**{"exchange.endpoint": server.base_url, "journal.path": str(path)})
        feed, _ = await exchange_feed(config, RunOptions(demo=False, speed=60.0), PaperBroker(FillModel()))
        try:
            batch = await feed.next_batch()
            assert batch.ts_ms > exchange_now + DAY_MS + HOUR_MS
        finally:
            await feed.close()
