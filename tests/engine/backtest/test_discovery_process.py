"""Discovery in a forked process: the same decisions and the same journal as one process, and
every way the two can fall apart ends in a clear error with the child stopped."""

from __future__ import annotations

import asyncio
import fcntl
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import types
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from engine.backtest import discovery_process
from engine.backtest.api import run_backtest
from engine.backtest.discovery_process import (
    AheadDiscovery,
    DiscoveryProcess,
    DiscoveryProcessError,
    PipedDiscovery,
)
from engine.backtest.feed import HistoryFeed
from engine.backtest.runner import BacktestResult, BacktestRunner
from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.discovery.listings import ListingEvent
from engine.discovery.pipeline import Discovery, DiscoveryCycle, SettledRun
from engine.discovery.pool import PoolSnapshot
from engine.domain import Market, TickerBatch
from engine.domain.discovery import Candidate, HeatComponents
from engine.journal.events import EventSink, JournalEvent
from engine.journal.sinks import NullSink
from engine.runtime.tap import Tap
from engine.signals.columns import ColumnPool, pool_of
from engine.sim.parquet_source import ParquetMarket
from tests.engine.backtest.conftest import START, T0
from tests.kit.events import RecordingSink

END = T0 + (1440 + 420) * 60_000  # through the outage and the listing's pump


def with_process(config: HotcoinConfig, setting: str) -> HotcoinConfig:
    return config.model_copy(update={"backtest": config.backtest.model_copy(update={"discovery_process": setting})})


def run(config: HotcoinConfig, store: Path, setting: str, sink: EventSink | None = None) -> BacktestResult:
    return asyncio.run(BacktestRunner(with_process(config, setting), store, sink, run_id="split").run(START, END))


def test_two_processes_decide_and_journal_as_one(config: HotcoinConfig, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery batch by batch in the cycle, run ahead in the same process (`AheadDiscovery`),
    and in a second process: the same decisions, the same journal."""
    one, ahead_sink, two = RecordingSink(), RecordingSink(), RecordingSink()
    fills: list[int] = []
    fill = AheadDiscovery.fill

    async def counted_fill(self: AheadDiscovery) -> None:
        fills.append(1)
        await fill(self)

    monkeypatch.setattr(AheadDiscovery, "fill", counted_fill)
    monkeypatch.setattr(discovery_process, "AHEAD_MIN_MINUTES", 10**9)  # the window is shorter: batch by batch
    single = run(config, store, "off", one)
    assert not fills
    monkeypatch.setattr(discovery_process, "AHEAD_MIN_MINUTES", 0)
    ahead = run(config, store, "off", ahead_sink)
    assert len(fills) == ahead.cycles + 1  # before the warm-up, then before each batch
    served: list[int] = []
    receive = DiscoveryProcess.next_result

    def counted(self: DiscoveryProcess) -> discovery_process.Result:
        result = receive(self)
        served.append(result[0])
        return result

    monkeypatch.setattr(DiscoveryProcess, "next_result", counted)
    forked = run(config, store, "on", two)
    assert len(served) == forked.cycles + 65  # every batch's discovery came from the child (65 warm-up minutes)
    assert (ahead.trades, ahead.fills, ahead.events, ahead.processes) == (single.trades, single.fills, single.events, 1)
    assert np.array_equal(ahead.equity, single.equity)
    assert ahead_sink.events == one.events
    assert single.trades, "the window should trade, or this proves little"
    assert (forked.trades, forked.fills, forked.open_positions, forked.cycles) == (
        single.trades, single.fills, single.open_positions, single.cycles,
    )  # fmt: skip
    assert np.array_equal(forked.equity, single.equity) and np.array_equal(forked.exposure, single.exposure)
    assert forked.events == single.events and forked.stats == single.stats
    assert (single.processes, forked.processes) == (1, 2)
    kinds = {e.kind for e in one.events}
    assert {"candidate_snapshot", "signal_snapshot", "fill"} <= kinds
    # Seqs, causes, trace ids and payloads, event for event; the config hash covers the whole
    # config, this setting included, so it is the one difference.
    assert unhashed(two.events) == unhashed(one.events)
    assert [e.payload["config_hash"] for e in (one.events[0], two.events[0])] == [
        with_process(config, s).config_hash() for s in ("off", "on")
    ]


def unhashed(events: list[JournalEvent]) -> list[JournalEvent]:
    return [replace(e, payload={**e.payload, "config_hash": "-"}) if e.kind == "run_start" else e for e in events]


def test_journal_off_two_processes_decide_as_one(config: HotcoinConfig, store: Path) -> None:
    single, forked = run(config, store, "off"), run(config, store, "on")
    assert (forked.trades, forked.events) == (single.trades, single.events)


def _feed(config: HotcoinConfig, store: Path) -> HistoryFeed:
    from engine.backtest.history import index_history

    index = index_history(store)
    sim = config.sim.model_copy(update={"data_dir": store, "history_minutes": 60})
    return HistoryFeed(ParquetMarket(sim, START - 65 * 60_000), SimClock(START), index)


def _start(
    config: HotcoinConfig, store: Path, build: Callable[[EventSink], Discovery] | None = None, end: int = END
) -> DiscoveryProcess:
    def discovery(sink: EventSink) -> Discovery:
        return Discovery(config.discovery, sink)

    return DiscoveryProcess(
        lambda: _feed(config, store), build or discovery, slot_ms=config.discovery.windows.slot_ms, end_ms=end,
        keeps_payloads=True,
    )  # fmt: skip


def _broken(sink: EventSink) -> Discovery:
    raise ValueError("discovery could not be built: a broken config")


_SNAPSHOT = {"heat": 1.0, "components": {}, "rank": 1, "price": 1.0, "filters": [], "accepted": False}


class _JournalsOnMarkets(Discovery):
    """A discovery that journals between batches, which the parent could not place."""

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> list[ListingEvent]:
        assert self.sink is not None
        self.sink.emit("candidate_snapshot", ts_ms=now_ms, payload=_SNAPSHOT)
        return super().on_markets(markets, now_ms)


class _JournalsMalformed(Discovery):
    """A discovery that journals a payload the contract refuses."""

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> list[ListingEvent]:
        assert self.sink is not None
        self.sink.emit("candidate_snapshot", ts_ms=now_ms, payload={"heat": 1.0})
        return super().on_markets(markets, now_ms)


# What the trading process alone needs: imported once the discovery process runs (`BacktestRunner.run`)
TRADING_SIDE = (
    "engine.trading", "engine.execution", "engine.portfolio", "engine.runtime.cycle", "engine.runtime.tap",
    "engine.runtime.snapshot", "engine.signals.stage", "engine.market", "engine.backtest.benchmark",
)  # fmt: skip


def test_the_discovery_process_forks_before_the_trading_side_is_imported(store: Path) -> None:
    """The child starts with the config, the index and discovery alone, and replays while the
    trading process imports its own side (the core, execution, portfolio, the cycle, its tap):
    nothing of that side is loaded when it forks. Seen from a fresh process, as a backtest starts."""
    code = (
        "import asyncio, os, sys; from pathlib import Path\n"
        "from engine.backtest.runner import BacktestRunner\n"
        "from tests.engine.backtest.conftest import START, minute_config\n"
        f"side = {TRADING_SIDE!r}\n"
        "seen = []\n"
        "os.register_at_fork(before=lambda: seen.append(sorted(m for m in sys.modules if m.startswith(side))))\n"
        "config = minute_config(backtest={'initial_history_minutes': 1440, 'discovery_process': 'on'})\n"
        f"asyncio.run(BacktestRunner(config, Path({str(store)!r}), run_id='fork').run(START, {END}))\n"
        "print(seen[:1], 'engine.trading' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[3])
    assert done.stdout.split("\n")[0] == "[[]] True"


def test_events_journaled_between_batches_stop_the_run(config: HotcoinConfig, store: Path) -> None:
    with (
        _start(config, store, lambda sink: _JournalsOnMarkets(config.discovery, sink)) as process,
        pytest.raises(DiscoveryProcessError, match=r"(?s)journaled candidate_snapshot outside a batch"),
    ):
        process.next_result()


def test_a_malformed_event_is_refused_in_the_child_as_the_journal_refuses_it(config: HotcoinConfig, store: Path) -> None:
    """The child validates and serialises what it sends (`encoded`): an event the parent's
    journal would refuse is refused there, by the same contract, and the run stops."""
    with (
        _start(config, store, lambda sink: _JournalsMalformed(config.discovery, sink)) as process,
        pytest.raises(DiscoveryProcessError, match=r"(?s)EventValidationError: candidate_snapshot: payload lacks required field 'components'"),
    ):
        process.next_result()


def test_a_failure_in_the_child_is_raised_in_the_parent_with_its_traceback(config: HotcoinConfig, store: Path) -> None:
    with (
        _start(config, store, _broken) as process,
        pytest.raises(DiscoveryProcessError, match=r"(?s)discovery process failed.*ValueError: discovery could not be built"),
    ):
        process.next_result()
    assert not process._process.is_alive()


def test_a_child_that_dies_is_a_clear_error_not_a_hang(
    config: HotcoinConfig, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunks of an hour: the child is still sending when it is killed (the window is one
    # chunk of the replay's 480 minutes, which it could send, end and all, before the kill)
    monkeypatch.setattr(discovery_process, "CHUNK_BATCHES", 60)
    with _start(config, store) as process:
        process.next_result()
        os.kill(process._process.pid or 0, signal.SIGKILL)
        with pytest.raises(DiscoveryProcessError, match=r'exited .*code -9.*discovery_process = "off"'):
            drain(process)


def test_stopping_early_stops_the_child(config: HotcoinConfig, store: Path) -> None:
    with _start(config, store) as process:
        ts, cycle, _ = process.next_result()
        assert ts == cycle.ts_ms and cycle.accepted
    assert not process._process.is_alive() and process._process.exitcode is not None


def test_out_of_step_batches_and_posts_are_refused(config: HotcoinConfig, store: Path) -> None:
    sink = RecordingSink()
    with _start(config, store) as process:
        stage = PipedDiscovery(process, sink)
        ts, _, _ = process.next_result()
        wrong = TickerBatch.from_tickers(ts, [])  # the batch just done, again: the child is a batch ahead
        with pytest.raises(DiscoveryProcessError, match="diverged"):
            stage.on_batch(wrong)
        with pytest.raises(DiscoveryProcessError, match=r"social posts were delivered.*runs ahead.*in another process"):
            stage.on_posts([], ts)
        with pytest.raises(DiscoveryProcessError, match="announcements"):
            stage.on_announcements([], ts)


def test_asking_past_the_end_is_divergence(config: HotcoinConfig, store: Path) -> None:
    with _start(config, store, end=START + 5 * 60_000) as process, pytest.raises(DiscoveryProcessError, match="past the window's end"):
        drain(process)


def test_the_end_read_lets_the_child_exit_on_its_own(config: HotcoinConfig, store: Path) -> None:
    """Every result taken, `finish` reads the child's end, and `close` leaves the child to exit
    by itself (nothing left to send); a result left untaken is divergence."""
    end = START + 5 * 60_000
    with _start(config, store, end=end) as process:
        taken = _every_result(process)
        assert taken[-1][0] == end
        process.finish()
        assert process._ended
    process._process.join(timeout=10)
    assert process._process.exitcode == 0
    with _start(config, store, end=end) as process:
        process.next_result()
        with pytest.raises(DiscoveryProcessError, match="results past the window's end"):
            process.finish()


def drain(process: DiscoveryProcess) -> None:
    """Read results until the process raises (far more than the window has)."""
    for _ in range(10_000):
        process.next_result()


def test_when_a_second_process_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = discovery_process.wanted
    assert not wanted("off", 10**6) and wanted("on", 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert wanted("auto", discovery_process.AUTO_MIN_MINUTES) and not wanted("auto", discovery_process.AUTO_MIN_MINUTES - 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not wanted("auto", 10**6)  # one CPU: the two would only take turns


def test_a_journaled_run_forks_beside_the_journal_thread_and_writes_the_same_journal(
    config: HotcoinConfig, store: Path, tmp_path: Path
) -> None:
    """`hotcoin backtest --journal`: the journal's writer thread is running when the child forks."""
    rows = []
    for setting in ("off", "on"):
        path = tmp_path / f"{setting}.sqlite"
        result, _ = asyncio.run(run_backtest(with_process(config, setting), store, START, END, path, run_id="split"))
        with closing(sqlite3.connect(path)) as db:
            events = db.execute("SELECT seq, ts_ms, kind, trace_id, symbol, cause, payload FROM events ORDER BY seq").fetchall()
        assert len(events) == result.events
        rows.append([e for e in events if e[2] != "run_start"])
    assert rows[0] == rows[1] and len(rows[0]) > 500


def test_discovery_ahead_in_this_process_serves_every_batch_then_refuses(config: HotcoinConfig, store: Path) -> None:
    end = START + 30 * 60_000
    ahead = AheadDiscovery(
        _feed(config, store), lambda sink: Discovery(config.discovery, sink), slot_ms=config.discovery.windows.slot_ms,
        end_ms=end, keeps_payloads=False,
    )  # fmt: skip
    stage = ahead.stage(RecordingSink())
    times: list[int] = []

    async def serve() -> None:
        for _ in range(1000):  # far more than the window holds
            await ahead.fill()
            times.append(ahead.next_result()[0])

    with pytest.raises(DiscoveryProcessError, match="past the window's end"):
        asyncio.run(serve())
    # the warm-up's minutes, then every minute to the end, each once, in order
    assert times == list(range(START - 64 * 60_000, end + 1, 60_000))
    with pytest.raises(DiscoveryProcessError, match=r"announcements were delivered.*runs ahead.*in this process"):
        stage.on_announcements([], end)


def crossed(results: list[discovery_process.Result]) -> list[discovery_process.Result]:
    """`results` as the parent reads them: encoded as the child sends them, pickled, rebuilt."""
    kind, columns = pickle.loads(discovery_process._dumps(("results", discovery_process._columns(results))))
    assert kind == "results"
    return received(columns)


def received(columns: discovery_process.Columns) -> list[discovery_process.Result]:
    """Every minute of a crossed chunk as `on_batch` takes it, each pool checked against the
    one the cycle reads before (`_Received.pool`: a pool of members as the same columns)."""
    chunk = discovery_process._Received(columns)
    results = [chunk.result(k) for k in range(len(chunk))]
    for k, (_, cycle, _) in enumerate(results):
        pool, read = chunk.pool(k), pool_of(cycle.snapshot)
        if isinstance(read, ColumnPool):
            assert pool == read.columns
        else:
            assert pool == read
    return results


def same_fields(got: object, sent: object) -> None:
    """`got` is `sent`, field for field and type for type, into candidates, heat and returns."""
    assert type(got) is type(sent)
    if isinstance(sent, PoolSnapshot):  # built (the parent's) or not yet (discovery's `Members`): as read
        same_fields(got.ts_ms, sent.ts_ms)  # type: ignore[attr-defined]
        same_fields(got.candidates, sent.candidates)  # type: ignore[attr-defined]
    elif isinstance(sent, (DiscoveryCycle, Candidate, HeatComponents)):
        for name in sent.__slots__:
            same_fields(getattr(got, name), getattr(sent, name))
    elif isinstance(sent, tuple):
        assert len(got) == len(sent)  # type: ignore[arg-type]
        for g, s in zip(got, sent, strict=True):  # type: ignore[call-overload]
            same_fields(g, s)
    elif isinstance(sent, (dict, types.MappingProxyType)):
        assert list(got.items()) == list(sent.items()) or repr(got) == repr(sent)  # type: ignore[attr-defined]
        for g, s in zip(got.values(), sent.values(), strict=True):  # type: ignore[attr-defined]
            assert type(g) is type(s)
    else:
        assert got == sent or repr(got) == repr(sent)  # NaN != NaN: compared as written


HOT = Candidate(
    "t-abc", "ABC/USDT", 120_000, 71.5, HeatComponents(0.5, 0.25, 0.0, 1.0, -0.5, math.nan), 1, 0.012, 2.5e6,
    ("ticker", "listing"), 3.5, types.MappingProxyType({"1m": 0.01, "5m": math.nan, "15m": -0.02, "60m": 0.3}), 4.0,
)  # fmt: skip
COLD = Candidate(
    "t-xyz", "XYZ/USDT", 120_000, 55.0, HeatComponents(), 2, 1.5, math.nan, ("ticker",), None,
    types.MappingProxyType({"60m": 1.0, "1m": 2.0}), 0.0,
)  # fmt: skip
BARE = Candidate("t-old", "OLD/USDT", 60_000, 3, HeatComponents(1, 0), 3, 2, -0.0)  # ints as figures; a plain {}


@pytest.mark.parametrize(
    "pools",
    [
        [(HOT, COLD), (), (COLD,)],  # discovery's: every returns read-only (sent as their dicts)
        [(HOT, BARE), (BARE,)],  # one plain dict among them: every returns as it is
        [(), ()],  # no candidates in the chunk
        [],  # no results
    ],
)
def test_results_cross_the_pipe_as_they_were_built(pools: list[tuple[Candidate, ...]]) -> None:
    """A chunk crosses as columns (`_columns`, `_rows`): what the parent rebuilds is what the
    child built, field for field and type for type (ints stay ints, NaNs, -0.0, read-only and
    plain returns, their keys' order), with the events as they were."""
    event = ("listing", 120_000, types.MappingProxyType({"listed_ms": 1}), None, "ABC/USDT")
    sent: list[discovery_process.Result] = [
        (60_000 * (i + 1), DiscoveryCycle(60_000 * (i + 1), bool(i % 2), PoolSnapshot(60_000 * i, pool),
         tuple(c.symbol for c in pool[:1]), (("OLD/USDT", "expired"),) * i, len(pool)), (event,) * i)
        for i, pool in enumerate(pools)
    ]  # fmt: skip
    got = crossed(sent)
    same_fields(tuple(cycle for _, cycle, _ in got), tuple(cycle for _, cycle, _ in sent))
    assert [(t, events) for t, _, events in got] == [(t, events) for t, _, events in sent]
    assert all(isinstance(e[2], types.MappingProxyType) for _, _, events in got for e in events)
    assert repr(got) == repr(sent)


def test_discoverys_members_cross_the_pipe_as_the_candidates_it_builds(config: HotcoinConfig, store: Path) -> None:
    """Discovery's pools cross as their members' columns (`_member_columns`) and the parent
    builds a chunk's candidates at once: what it gets is what discovery itself builds minute by
    minute (`Members.build`), field for field and type for type, chunk after chunk."""
    results = _ahead_results(config, store, True)
    chunks = [results[k : k + discovery_process.CHUNK_BATCHES] for k in range(0, len(results), discovery_process.CHUNK_BATCHES)]
    got = [row for chunk in chunks for row in crossed(chunk)]
    sent = [cycle for _, cycle, _ in results]
    assert sum(len(cycle.snapshot) for cycle in sent) > 400  # the pump fills the pool for hours
    assert all(cycle.snapshot.deferred is not None for cycle in sent if len(cycle.snapshot))
    same_fields(tuple(cycle for _, cycle, _ in got), tuple(sent))
    assert [(t, events) for t, _, events in got] == [(t, events) for t, _, events in results]


def test_runs_cross_the_pipe_as_their_batches_one_by_one(config: HotcoinConfig, store: Path) -> None:
    """The child queues the runs discovery settles at once as they are (`SettledRun`) and sends
    them straight from their columns (`_columns`): the parent reads what the runs' batches
    sent one by one would give (`_results`), field for field, with the same events."""
    producer = discovery_process._Producer(
        _feed(config, store), lambda sink: Discovery(config.discovery, sink), config.discovery.windows.slot_ms, END, False
    )  # fmt: skip
    chunks: list[list[discovery_process.Queued]] = []
    while not producer.done:
        asyncio.run(producer.fill(discovery_process.CHUNK_BATCHES))
        chunks.append(producer.queue.take())
    runs = [item for chunk in chunks for item in chunk if isinstance(item, SettledRun)]
    assert sum(not r.quiet for r in runs) >= 3 and sum(r.quiet for r in runs) >= 2
    assert any(r.left for r in runs) and any(r.entered for r in runs) and sum(map(len, (r.times for r in runs))) > 200
    for chunk in chunks:
        plain = discovery_process._results(chunk)
        kind, columns = pickle.loads(discovery_process._dumps(("results", discovery_process._columns(chunk))))
        got = received(columns)
        assert kind == "results"
        same_fields(tuple(cycle for _, cycle, _ in got), tuple(cycle for _, cycle, _ in crossed(plain)))
        assert [(t, events) for t, _, events in got] == [(t, events) for t, _, events in plain]


def test_the_parent_reads_a_pool_as_the_columns_of_the_candidates_it_builds(config: HotcoinConfig, store: Path) -> None:
    """A crossed pool of members reaches the core unbuilt (`pool_of`: a `ColumnPool`), its
    columns what its candidates say (symbol, trace, rank, heat, in order), and building it
    gives the snapshot's own candidates."""
    results = _ahead_results(config, store, True)
    got = crossed(results[: discovery_process.CHUNK_BATCHES])
    pools = [pool_of(cycle.snapshot) for _, cycle, _ in got if len(cycle.snapshot)]
    assert pools and all(isinstance(pool, ColumnPool) and pool._built is None for pool in pools)
    for pool in pools:
        assert isinstance(pool, ColumnPool)
        c = pool.columns
        assert (list(c.symbols), list(c.trace_ids), list(c.ranks), list(c.heats)) == (
            [x.symbol for x in pool], [x.trace_id for x in pool], [x.rank for x in pool], [x.heat for x in pool]
        )  # fmt: skip
    snapshot = next(cycle.snapshot for _, cycle, _ in got if len(cycle.snapshot))
    assert pool_of(snapshot).built() is snapshot.candidates  # type: ignore[attr-defined]


def test_the_child_runs_ahead_of_a_reader_that_lags_by_more_than_a_chunk(config: HotcoinConfig, store: Path) -> None:
    """The pipe holds `PIPE_BYTES` (`_widen`), not the kernel's 64 KiB (about one chunk): the
    child settles the whole window while the parent reads nothing, where it stalled in its
    send before, and what it sent is what a reader that kept up gets."""
    with _start(config, store) as process:
        assert fcntl.fcntl(process._conn.fileno(), fcntl.F_GETPIPE_SZ) == discovery_process.PIPE_BYTES
        process._process.join(timeout=30)
        assert not process._process.is_alive() and process._process.exitcode == 0  # all sent, nothing read
        ahead = _every_result(process)
    with _start(config, store) as process:
        kept_up = [process.next_result() for _ in ahead]
    assert [(ts, cycle.accepted, len(events)) for ts, cycle, events in ahead] == [
        (ts, cycle.accepted, len(events)) for ts, cycle, events in kept_up
    ]
    sent = len(discovery_process._dumps(("results", discovery_process._columns(ahead))))
    assert sent > 1 << 16  # more than the kernel's default pipe: the child would have stalled in it


def _every_result(process: DiscoveryProcess) -> list[discovery_process.Result]:
    """The child's results, to its "end"."""
    out: list[discovery_process.Result] = []
    while True:
        while not process._ready and not process._ended:
            process._receive()
        if not process._ready:
            return out
        out.append(process.next_result())


class _Results:
    """A `ResultSource` over results already made."""

    def __init__(self, results: list[discovery_process.Result], keeps_payloads: bool) -> None:
        self._results = iter(results)
        self.keeps_payloads = keeps_payloads

    def next_result(self) -> discovery_process.Result:
        return next(self._results)

    def upcoming(self, k: int) -> None:
        return None  # none read ahead: each minute is stepped alone

    def take(self, n: int) -> list[tuple[int, discovery_process.Events]]:
        assert n == 0, "nothing was read ahead to take"
        return []


def _ahead_results(config: HotcoinConfig, store: Path, keeps_payloads: bool) -> list[discovery_process.Result]:
    ahead = AheadDiscovery(
        _feed(config, store), lambda sink: Discovery(config.discovery, sink), slot_ms=config.discovery.windows.slot_ms,
        end_ms=END, keeps_payloads=keeps_payloads,
    )  # fmt: skip
    out: list[discovery_process.Result] = []

    async def serve() -> None:
        while True:
            await ahead.fill()
            out.append(ahead.next_result())

    with pytest.raises(DiscoveryProcessError, match="past the window's end"):
        asyncio.run(serve())
    return out


def test_journal_off_events_cross_as_their_kinds_and_the_tap_counts_them_as_emitted(
    config: HotcoinConfig, store: Path
) -> None:
    """With no payload kept, a batch's events cross as their kinds alone (`_RecordingSink`) and
    the trading side's tap tallies them (`Tap.tally`): the same counts, by kind, and the same
    seqs after them as emitting each event as it was recorded."""
    kept, counted = _ahead_results(config, store, True), _ahead_results(config, store, False)
    assert [e[0] for r in kept for e in r[2]] == [k for r in counted for k in r[2]]
    assert sum(len(r[2]) for r in counted) > 100 and all(isinstance(k, str) for r in counted for k in r[2])
    taps = []
    for results, keeps in ((kept, True), (crossed(counted), False)):
        tap = Tap(NullSink(), recent=0)
        stage = PipedDiscovery(_Results(results, keeps), tap)
        cycles = [stage.on_batch(cast(TickerBatch, types.SimpleNamespace(ts_ms=ts))) for ts, _, _ in results]
        assert cycles == [cycle for _, cycle, _ in results]
        taps.append(tap)
    assert taps[0].kinds == taps[1].kinds
    assert taps[0].emit("fill", ts_ms=END, payload={}) == taps[1].emit("fill", ts_ms=END, payload={})
