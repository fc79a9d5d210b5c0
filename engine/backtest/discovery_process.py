"""Discovery in a second process: a long backtest uses both cores, and decides exactly as on one.

Discovery reads the market and nothing else (data flows one way: market -> discovery -> core),
so the backtester can run it ahead of the trading core. A forked child builds its own copy of
the replay market (the same `HistoryFeed` over the same files) and drives a real `Discovery`
through `DiscoveryDriver`, the object `TradingCycle` drives it through: the same warm-up, the
same market-info schedule, the same batches. It sends each batch's `DiscoveryCycle`, with the
journal events discovery emitted for it, down a pipe in chunks of `CHUNK_BATCHES`. The parent
runs the trading core on its own market as before; its discovery stage (`PipedDiscovery`)
takes the child's results in order, checks each is for the batch in hand, and re-emits the
recorded events through the parent's tap, so journal seqs, causes and counts are those of one
process. `tests/engine/backtest/test_discovery_process.py` compares both ways event for event.
Both markets replay the same days: the child's computes each day of minutes as it reaches it
and puts it in memory shared across the fork, and the parent's copies it out
(`engine.sim.parquet_source.SharedDays`): the parent, the critical path, is spared that work
(~0.2 s of CPU over the month). While it waits on a day, the parent checks the child still
runs (`DiscoveryProcess.running`).

Nobody in the child waits on one batch's result, so it takes the replay market a run of
minutes at a time (`HistoryFeed.next_run`: [minute, pair] views of the tape's day tables) and
pushes each run into discovery (`Discovery.push_run`): folded into the windows a block at a
time straight from those arrays where the minutes are steady (`TickerWindows.update_run`),
scored and ranked in one vector pass, settled in order, with the same results as batch by
batch. Each minute's market refresh is still made on its schedule before the run is pushed;
where a refresh could find a listing discovery has not heard of, the run goes minute by minute.
The child is still the floor of the split, by about a fifth (bench/RESULTS.md). The pipe
carries ~0.17 KB a minute with the journal off (a few KB with payloads), each chunk's cycles
as columns (the few unusual ones apart) and its pools as their members' (`_columns`): the child never
builds a `Candidate`, and the parent builds a minute's only once something reads them: the
core reads a pool of cold candidates (most minutes with one) as its columns alone
(`engine.signals.columns`).

On one process (a short window, `off`, one CPU) the same loop runs in the trading process
(`AheadDiscovery`): a chunk of batches ahead whenever the core has taken what it made, over
its own replay market, so one process settles its minutes in blocks and runs too (the real
month: 32 s batch by batch, 13.6 s ahead). Below `AHEAD_MIN_MINUTES` the second market costs
more than it saves, and the cycle takes discovery batch by batch, as the live engine does.

Fork, not spawn: the child starts in a few milliseconds with the store index already built and
never touches what the parent was doing (its journal thread, its event loop). It forks before
the trading side is imported (the core, execution, portfolio, `TradingCycle`, the tap: this
module and `engine.runtime.discovery_driver` import none of it), which the trading process
then imports while the child already replays (`BacktestRunner.run`). Where fork is not
available, or the window is short enough that starting a process costs more than it saves,
the backtest runs on one process (`backtest.discovery_process`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import fcntl
import io
import multiprocessing as mp
import os
import pickle
import signal
import traceback
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, chain, groupby, repeat
from multiprocessing.connection import Connection
from typing import Any, Literal, Protocol, cast

import numpy as np

from engine.backtest.feed import HistoryFeed
from engine.discovery.listings import Announcement
from engine.discovery.pipeline import Discovery, DiscoveryCycle, Members, SettledRun, candidates
from engine.discovery.pool import PoolSnapshot
from engine.discovery.social.source import SocialPost
from engine.domain import Market, MinuteVolumes, TickerBatch, TickerRun
from engine.domain.discovery import Candidate
from engine.domain.ticker import FloatArray
from engine.journal.encoded import encode
from engine.journal.events import EventSink
from engine.runtime.discovery_driver import DiscoveryDriver
from engine.signals.columns import ColumnPool, MemberColumns, by_rank, pool_of

MINUTE_MS = 60_000
CHUNK_BATCHES = 480  # batches per message (a block, `BLOCK_BATCHES`): ~80 KB journal off, far less than a day
# "auto" forks only for replays at least this long. The fork pays from a few hours on (8 h:
# 1.42 -> 1.24 s, bench/RESULTS.md); 12 h keeps short runs, most tests among them, on one process.
AUTO_MIN_MINUTES = 720
# On one process, discovery runs ahead of the core (`AheadDiscovery`) for replays at least this
# long: its own replay market costs ~0.13 s to build, which blocks and runs repay after a few
# hours (bench/RESULTS.md); shorter ones take discovery batch by batch, as the live engine does.
AHEAD_MIN_MINUTES = 360

Event = tuple[str, int, Mapping[str, Any], str | None, str | None]  # kind, ts_ms, payload, trace_id, symbol
# A batch's events: each as it was emitted, or only their kinds where the journal keeps no payloads
# (`_RecordingSink`: the trading side's tap then only counts them, `Tap.tally`).
Events = tuple[Event, ...] | tuple[str, ...]
Result = tuple[int, DiscoveryCycle, Events]  # batch time, discovery's result, its events
# What the child queues: a batch's result, or a run of them as discovery settled it (`SettledRun`)
Queued = Result | SettledRun


class DiscoveryProcessError(RuntimeError):
    """The discovery process failed or went out of step with the trading process."""


def wanted(setting: Literal["auto", "on", "off"], minutes: int) -> bool:
    """Whether a backtest replaying `minutes` should fork its discovery (`backtest.discovery_process`)."""
    if setting == "off" or "fork" not in mp.get_all_start_methods():
        return False
    if setting == "on":
        return True
    return minutes >= AUTO_MIN_MINUTES and len(os.sched_getaffinity(0)) >= 2


def ahead(minutes: int) -> bool:
    """Whether a one-process replay of `minutes` should run discovery ahead of the core."""
    return minutes >= AHEAD_MIN_MINUTES


# A chunk of results crosses the pipe as columns (`_columns`, `_Received`): its minutes' times, events,
# event counts and pools, and only the few minutes whose cycle is not the usual accepted one
# with nobody entering or leaving (`_odd`); the pools' members (discovery's `Members`: what
# settling found, no `Candidate` built) as their symbols, trace ids and one [member, figure]
# array, the events as they were. Each member's time and rank are its minute's and its place
# in the pool (1 first), which the parent knows: they do not cross. The trading process makes
# each minute's pool of those columns (`_Members`), its candidates built on first read
# (`candidates`, the builder discovery itself uses), where the child once built each, took it
# apart into columns and the parent built it again; the core reads most pools as columns and
# never builds them (`engine.signals.columns`: 3,300 of a month's 22,500 are built). A pool
# given as built candidates (not discovery's) crosses as it is.

Columns = tuple[Any, ...]  # `_columns`' chunk, `_Received`'s input
# A minute's cycle where it is not (accepted, its own time, nobody entered, nobody left): its
# place in the chunk and those four (`_odd`)
Odd = tuple[int, bool, int, tuple[str, ...], tuple[tuple[str, str], ...]]


def _columns(queued: Sequence[Queued]) -> Columns:
    """`queued` as columns (module comment above), rebuilt by `_Received`: a run's (`SettledRun`)
    straight from its columns, with no cycle, snapshot or `Members` made of its batches, and
    no figure of a minute that every minute but a few shares."""
    if not queued:
        return ()
    times: list[int] = []
    events: list[Events] = []
    counts: list[int] = []  # per minute: `DiscoveryCycle.events`
    pools: list[int | tuple[Candidate, ...]] = []  # per minute: its count of members, or its built candidates
    odd: list[Odd] = []
    members: list[Members | SettledRun] = []
    for item in queued:
        if isinstance(item, SettledRun):
            start = len(times)
            times += item.times
            events += map(_kinds, item.events)
            counts += item.events
            if item.quiet:
                pools += repeat((), len(item.times))
            else:
                pools += item.sizes
                members.append(item)
            for t in sorted(item.entered.keys() | item.left.keys()):  # a batch with entrants or leavers (expired)
                odd.append((start + t, True, times[start + t], item.entered.get(t, ()), item.left.get(t, ())))
            continue
        time, cycle, cycle_events = item
        times.append(time)
        events.append(cycle_events)
        counts.append(cycle.events)
        snapshot = cycle.snapshot
        if not cycle.accepted or snapshot.ts_ms != time or cycle.entered or cycle.left:
            odd.append(_odd(len(times) - 1, cycle))
        deferred = snapshot.deferred
        if isinstance(deferred, Members):
            members.append(deferred)
            pools.append(len(deferred.symbols))
        else:
            pools.append(snapshot.candidates)
    return times, events, counts, pools, odd, _member_columns(members)


def _odd(at: int, cycle: DiscoveryCycle) -> Odd:
    return at, cycle.accepted, cycle.snapshot.ts_ms, cycle.entered, cycle.left


_SNAPSHOTS: list[tuple[str, ...]] = [()]  # `_kinds(n)`, shared: a run's batches have a few sizes


def _kinds(count: int) -> tuple[str, ...]:
    """The events of a run's batch as `_RecordingSink` keeps them without payloads: its count of
    candidate snapshots (`SettledRun.events`), as kinds."""
    while len(_SNAPSHOTS) <= count:
        _SNAPSHOTS.append(("candidate_snapshot",) * len(_SNAPSHOTS))
    return _SNAPSHOTS[count]


def _member_columns(members: list[Members | SettledRun]) -> Columns:
    """The members' trace ids and symbols, one column each, then their figure-table rows as one
    [member, figure] array, in order: a batch's (`Members`) or a run's batches'."""
    if not members:
        return ()
    trace_ids = tuple(chain.from_iterable(m.trace_ids for m in members))
    symbols = tuple(chain.from_iterable(m.symbols for m in members))
    return trace_ids, symbols, _figures(members)


def _figures(members: list[Members | SettledRun]) -> FloatArray:
    """The [member, figure] rows of `members`, in order: one gather per figure table they share
    (a block's: some 60 minutes'), not one per minute."""
    gathered = []
    for _, group in groupby((m for m in members if m.rows), key=_table_id):
        shared = list(group)
        batches = list(chain.from_iterable(_batches(m) for m in shared))
        gathered.append(shared[0].table[batches, list(chain.from_iterable(m.rows for m in shared))])
    if gathered:
        return np.concatenate(gathered)
    return members[0].table[0, []]  # none: an empty pool's [0, figure]


def _batches(members: Members | SettledRun) -> Iterable[int]:
    """The batch of its figure table of each member of `members`."""
    if isinstance(members, Members):
        return repeat(members.batch, len(members.rows))
    return chain.from_iterable(map(repeat, members.indices, members.sizes))


def _table_id(members: Members | SettledRun) -> int:
    return id(members.table)


class _Received:
    """A chunk as it crossed (`_columns`), its minutes read in order, each as it is needed: the
    result `on_batch` takes (`result`: equal to what was sent, field for field, types
    included; a pool of members `deferred` as `_Members`, its candidates built once read), or,
    for a minute the cycle may step at once, its time and pool alone (`pool`: the columns the
    core reads, no cycle or snapshot built: 36,000 of a replayed month's 40,000 minutes)."""

    __slots__ = ("_chunk", "_unusual", "counts", "events", "pools", "starts", "times")

    def __init__(self, columns: Columns) -> None:
        self.times: list[int]
        self.events: list[Events]
        self.counts: list[int]
        self.pools: list[int | tuple[Candidate, ...]]
        self.times, self.events, self.counts, self.pools, odd, member_columns = columns or ([], [], [], [], (), ())
        self._chunk = _Chunk(*member_columns) if member_columns else None
        self._unusual: dict[int, tuple[bool, int, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
            figures[0]: figures[1:] for figures in odd
        }
        # each minute's first member in the chunk's columns (a pool of members: its count)
        self.starts = list(accumulate((p if p.__class__ is int else 0 for p in self.pools), initial=0))

    def __len__(self) -> int:
        return len(self.times)

    def result(self, k: int) -> Result:
        """Minute k's result, as it was sent."""
        time, pool = self.times[k], self.pools[k]
        figures = self._unusual.get(k)
        snapshot_ts = time if figures is None else figures[1]
        if pool.__class__ is not int:
            snapshot = PoolSnapshot(snapshot_ts, cast(tuple[Candidate, ...], pool))
        elif pool:
            snapshot = PoolSnapshot.of(snapshot_ts, self._members(k, snapshot_ts))
        else:
            snapshot = PoolSnapshot(snapshot_ts, ())
        if figures is None:
            return time, DiscoveryCycle(time, True, snapshot, (), (), self.counts[k]), self.events[k]
        accepted, _, entered, left = figures
        return time, DiscoveryCycle(time, accepted, snapshot, entered, left, self.counts[k]), self.events[k]

    def pool(self, k: int) -> MemberColumns | Sequence[Candidate]:
        """Minute k's pool as the core reads it first (`pool_of` its result's snapshot): a pool
        of members as their columns (hottest first, ranked 1 on), no candidate built; a pool
        given as built candidates as it is."""
        pool = self.pools[k]
        if pool.__class__ is not int:
            return cast(tuple[Candidate, ...], pool)
        if not pool:
            return ()
        assert self._chunk is not None
        return self._chunk.columns(self.starts[k], self.starts[k + 1])

    def _members(self, k: int, ts_ms: int) -> _Members:
        assert self._chunk is not None
        return _Members(self._chunk, self.starts[k], self.starts[k + 1], ts_ms)


_HEAT = 0  # heat's column in a member's figures (`engine.discovery.pipeline._tabulate`: heat first)


class _Chunk:
    """A chunk's member columns (`_member_columns`), its minutes' pools in order."""

    __slots__ = ("figures", "heats", "symbols", "trace_ids")

    def __init__(self, trace_ids: tuple[str, ...], symbols: tuple[str, ...], figures: FloatArray) -> None:
        self.trace_ids, self.symbols, self.figures = trace_ids, symbols, figures
        self.heats: list[float] = figures[:, _HEAT].tolist()

    def columns(self, start: int, stop: int) -> MemberColumns:
        """Members `start` to `stop`, a minute's pool, as columns: a pool's ranks are 1..n, a
        range, which `by_rank` knows in order."""
        return MemberColumns(
            self.symbols[start:stop], self.trace_ids[start:stop], range(1, stop - start + 1), self.heats[start:stop]
        )


class _Members:
    """One minute's pool: members `start` to `stop` of its chunk, at `ts_ms`, as the columns the
    core reads first (`columns`) and, once read, the candidates `candidates` builds of them
    (`Ranked`)."""

    __slots__ = ("_chunk", "_start", "_stop", "_ts_ms", "columns", "symbols")

    def __init__(self, chunk: _Chunk, start: int, stop: int, ts_ms: int) -> None:
        self._chunk, self._start, self._stop, self._ts_ms = chunk, start, stop, ts_ms
        self.columns = chunk.columns(start, stop)
        self.symbols = self.columns.symbols

    def build(self) -> tuple[Candidate, ...]:
        c, n = self._chunk, self._stop - self._start
        return tuple(candidates(self.columns.trace_ids, self.symbols, [self._ts_ms] * n, range(1, n + 1),
                                c.figures[self._start : self._stop]))  # fmt: skip


def _mapping(items: dict[str, Any]) -> types.MappingProxyType[str, Any]:
    return types.MappingProxyType(items)


_DISPATCH: dict[type, Callable[[Any], Any]] = {
    **copyreg.dispatch_table,
    types.MappingProxyType: lambda m: (_mapping, (dict(m),)),  # in an event's payload, or returns of another shape
}


def _dumps(obj: object) -> bytes:
    """Pickle, with read-only mapping proxies as the dicts they wrap (discovery's results cross
    as `_columns`; an event's payload, or built candidates' returns, may hold one)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return buf.getvalue()


class _RecordingSink:
    """Discovery's sink in the child: keeps each event for the parent's tap to emit. A payload
    someone keeps is validated and serialised here (`encoded`): what crosses the pipe is its
    JSON text, which the parent's journal writes as is, rather than nested dicts pickled on
    one side and unpickled and serialised again on the trading side, the slower one. Where
    nobody keeps payloads (the journal off), the parent's tap only counts and numbers the
    events (`EventSink.keeps_payloads`), so only their kinds are kept and cross (`Tap.tally`):
    ~50,000 candidate snapshots a month, once 5-tuples pickled, rebuilt and emitted one by one."""

    def __init__(self, keeps_payloads: bool) -> None:
        self._keeps = keeps_payloads
        self.events: list[Event] = []  # where payloads are kept
        self.kinds: list[str] = []  # ...or where they are not

    @property
    def keeps_payloads(self) -> bool:
        return self._keeps

    def emit(
        self,
        kind: str,
        *,
        ts_ms: int,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
        symbol: str | None = None,
        cause: int | None = None,
    ) -> int:
        if self._keeps:
            self.events.append((kind, ts_ms, encode(kind, ts_ms, payload), trace_id, symbol))
        else:
            self.kinds.append(kind)
        return len(self.events) + len(self.kinds)  # discovery never reads it; the parent's tap assigns the seq

    def take(self) -> Events:
        if self._keeps:
            events, self.events = tuple(self.events), []
            return events
        kinds, self.kinds = tuple(self.kinds), []
        return kinds

    def first_kind(self) -> str | None:
        """The kind of the first event kept and not taken yet (None: none)."""
        return self.events[0][0] if self.events else self.kinds[0] if self.kinds else None


class _Queue:
    """Where discovery's results go in the child (`RunTaker`): each batch's with the events
    discovery journaled while settling it, a run as it is (`SettledRun`: its candidate
    snapshots, which the parent only counts, counted in it); `count` batches in all."""

    def __init__(self, sink: _RecordingSink) -> None:
        self._sink = sink
        self.out: list[Queued] = []
        self.count = 0

    def __call__(self, cycle: DiscoveryCycle) -> None:
        self.out.append((cycle.ts_ms, cycle, self._sink.take()))
        self.count += 1

    def run(self, run: SettledRun) -> None:
        self.out.append(run)
        self.count += len(run.times)

    def take(self) -> list[Queued]:
        out, self.out, self.count = self.out, [], 0
        return out


def _results(queued: Iterable[Queued]) -> list[Result]:
    """`queued` batch by batch: a run's batches' cycles, their events as `_RecordingSink`
    keeps them without payloads (`_kinds`)."""
    out: list[Result] = []
    for item in queued:
        if isinstance(item, SettledRun):
            out += zip(item.times, item.cycles(), map(_kinds, item.events), strict=True)
        else:
            out.append(item)
    return out


class _Sending:
    """A `Discovery` whose every batch result (and its events) is queued for the parent."""

    def __init__(self, discovery: Discovery, sink: _RecordingSink, queue: _Queue) -> None:
        self._discovery = discovery
        self._sink = sink
        self._settled = queue

    def on_batch(self, batch: TickerBatch, *, journal: bool = True) -> DiscoveryCycle:
        cycle = self._discovery.on_batch(batch, journal=journal)
        self._settled(cycle)
        return cycle

    def push(self, batch: TickerBatch) -> None:
        """The batch into discovery's current block: results are queued as the block settles."""
        self._discovery.push(batch, self._settled)

    def push_run(self, run: TickerRun) -> None:
        self._discovery.push_run(run, self._settled)

    def seed_day(self, volumes: MinuteVolumes) -> object:
        return self._discovery.seed_day(volumes)

    def room(self) -> int:
        return self._discovery.room()

    def flush(self) -> None:
        self._discovery.flush(self._settled)

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> object:
        return self._quiet(self._discovery.on_markets(markets, now_ms))

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> object:
        return self._quiet(self._discovery.on_posts(posts, now_ms))

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> object:
        return self._quiet(self._discovery.on_announcements(announcements, now_ms))

    def _quiet(self, result: object) -> object:
        """The parent re-emits events batch by batch; one journaled between batches would land
        at the wrong place in its journal, so it stops the run instead (discovery journals only
        in `on_batch` today)."""
        if (kind := self._sink.first_kind()) is not None:
            raise DiscoveryProcessError(
                f"discovery journaled {kind} outside a batch; it runs ahead of the trading "
                "core, which replays its events batch by batch, so it may journal only while settling a batch"
            )
        return result


class _Producer:
    """Discovery's half of the runner's loop, run ahead of the trading core: the warm-up, the
    first batch, then runs of minutes to `end_ms`, each batch's result (with its events)
    queued in `queue` as discovery settles it. Nothing else may run on the loop it runs on
    (its feed does not yield)."""

    def __init__(self, feed: HistoryFeed, build: Callable[[EventSink], Discovery], slot_ms: int, end_ms: int,
                 keeps_payloads: bool) -> None:  # fmt: skip
        sink = _RecordingSink(keeps_payloads)
        self.queue = _Queue(sink)
        self.feed = feed
        feed.yields = False
        self.stage = _Sending(build(sink), sink, self.queue)
        self.driver = DiscoveryDriver(self.stage, feed, slot_ms)
        self.end_ms = end_ms
        self.now: int | None = None  # the last batch pushed; None before the first
        self.done = False  # every batch to `end_ms` settled and queued

    async def fill(self, count: int) -> None:
        """Run until at least `count` batches' results wait in `queue`, or to the window's end."""
        feed, driver, stage = self.feed, self.driver, self.stage
        if self.now is None:
            await driver.warmup()
            batch = await feed.next_batch()
            await driver.open(batch)
            await driver.prepare(batch.ts_ms)
            stage.push(batch)  # nobody waits on one batch's result here: discovery settles them a block at a time
            self.now = batch.ts_ms
        while self.queue.count < count and not self.done:
            now = self.now
            if now >= self.end_ms:
                stage.flush()
                self.done = True
                return
            # as many minutes as discovery's open block still takes: each run folded in one piece
            run = await feed.next_run(min(stage.room(), -(-(self.end_ms - now) // MINUTE_MS)))
            if run is None:  # the tape is not on yet: a batch
                batch = await feed.next_batch()
                await driver.prepare(batch.ts_ms)
                stage.push(batch)
                self.now = batch.ts_ms
                continue
            times = run.ts_ms.tolist()
            if len(feed.market.symbols) == len(driver.markets) and await feed.markets() == driver.markets:
                # No refresh inside the run can change discovery's markets (a run starts where
                # they change, at a listing or a halt): each minute's refresh first, then the run
                # at once.
                await driver.prepare_run(times)
                stage.push_run(run)
            else:
                # A listing or a halt discovery has yet to hear of: minute by minute, as ever,
                # so the refresh that tells it comes between the right two batches (a market's
                # status is a filter: a halt heard before the batches ahead of it were settled
                # filtered them early).
                for i, t in enumerate(times):
                    await driver.prepare(t)
                    stage.push(run.batch(i))
            self.now = times[-1]


async def _produce(conn: Connection, feed: HistoryFeed, build: Callable[[EventSink], Discovery], slot_ms: int,
                   end_ms: int, keeps_payloads: bool) -> None:  # fmt: skip
    """The child's loop: the producer's results down the pipe, `CHUNK_BATCHES` at a time."""
    producer = _Producer(feed, build, slot_ms, end_ms, keeps_payloads)
    while not producer.done:
        await producer.fill(CHUNK_BATCHES)
        conn.send_bytes(_dumps(("results", _columns(producer.queue.take()))))
    conn.send_bytes(_dumps(("end", None)))


def _child(conn: Connection, feed: Callable[[], HistoryFeed], build: Callable[[EventSink], Discovery], slot_ms: int,
           end_ms: int, keeps_payloads: bool) -> None:  # fmt: skip
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ctrl-c is the parent's to handle: it stops this process
    try:
        asyncio.run(_produce(conn, feed(), build, slot_ms, end_ms, keeps_payloads))
    except BaseException:  # everything goes to the parent, which raises it
        conn.send_bytes(_dumps(("error", traceback.format_exc())))
    finally:
        conn.close()


PIPE_BYTES = 1 << 20  # Linux's default cap for an unprivileged pipe (/proc/sys/fs/pipe-max-size)


def _widen(conn: Connection) -> None:
    """Let the child run up to `PIPE_BYTES` ahead of the parent, not one chunk: at the
    kernel's default 64 KiB a pipe holds about one chunk (~50 KB), so the child, the slower
    of the two over a run, stalled in its send whenever the trading core had a slow stretch,
    time it never made up. On the month (a busy box) the child spent 0.87-0.98 s blocked in
    its sends (the longest 66-94 ms); widened, 0.34-0.62 s (13 ms at most), with up to
    ~490 KB waiting in the pipe at times. Best effort: where the kernel refuses (not Linux,
    a lower cap), the default pipe only costs that time again."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class DiscoveryProcess:
    """The forked child and the parent's end of its pipe; a context manager that always stops it.

    `feed()` builds the child's market, `build(sink)` its `Discovery` (journaling into `sink`);
    both run in the child, after the fork."""

    def __init__(self, feed: Callable[[], HistoryFeed], build: Callable[[EventSink], Discovery], *, slot_ms: int,
                 end_ms: int, keeps_payloads: bool) -> None:  # fmt: skip
        ctx = mp.get_context("fork")
        self._conn, child_end = ctx.Pipe(duplex=False)
        _widen(self._conn)
        self._process = ctx.Process(
            target=_child, args=(child_end, feed, build, slot_ms, end_ms, keeps_payloads), name="hotcoin-discovery",
            daemon=True,
        )  # fmt: skip
        self._process.start()
        child_end.close()  # the parent's copy: EOF on our end once the child's copy closes
        self._chunks: deque[_Received] = deque()  # as received; the first read from minute `_at` on
        self._at = 0
        self._ready = 0  # minutes received and not taken
        self._ended = False
        self.keeps_payloads = keeps_payloads

    def __enter__(self) -> DiscoveryProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child (at once if it is still running: the parent stopped early) and reap it.
        A child that sent its end has nothing left but to exit, and is left to (reaped by the
        next process this one starts, or at its exit) rather than waited for: the kernel
        freeing its memory was ~8 ms of the end of a month's backtest."""
        if self._ended:
            self._conn.close()
            return
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def finish(self) -> None:
        """The window replayed, every result taken: read the child's end, which it sends right
        after its last result (one more result is divergence), so that `close` need not wait
        for it to exit."""
        while not self._ended:
            if self._ready:
                raise DiscoveryProcessError("the discovery process sent results past the window's end; the two diverged")
            self._receive()

    def running(self) -> bool:
        """Whether the child still runs: what the trading process's replay tape checks while it
        waits on a day the child computes (`SharedDays`). A child that ended without finishing
        raises here as a wait on its results would (`_receive`: its error, or its exit code)."""
        if self._process.is_alive():
            return True
        while not self._ended and self._conn.poll():
            self._receive()
        return False

    def next_result(self) -> Result:
        """The child's next batch result, waiting for it if the child is behind."""
        while not self._ready:
            self._receive()
        result = self._chunks[0].result(self._at)
        self._advance(1)
        return result

    def ahead(self) -> Iterator[tuple[int, MemberColumns | Sequence[Candidate]]]:
        """The results not taken yet, in order, as their times and pools (`_Received.pool`),
        none built, waiting for each if the child is behind, to the window's end. Read before
        the next `take` or `next_result`, which move the chunks."""
        chunks, c, i = self._chunks, 0, self._at
        while True:
            while c == len(chunks):
                if self._ended:
                    return
                self._receive()
            chunk = chunks[c]
            if i < len(chunk):
                yield chunk.times[i], chunk.pool(i)
                i += 1
            else:
                c, i = c + 1, 0

    def take(self, n: int) -> list[tuple[int, Events]]:
        """The next `n` results taken without building them: the times and events of those with
        events (`ahead` read each)."""
        out: list[tuple[int, Events]] = []
        left = n
        while left:
            chunk, at = self._chunks[0], self._at
            stop = min(len(chunk), at + left)
            out += ((t, e) for t, e in zip(chunk.times[at:stop], chunk.events[at:stop], strict=True) if e)
            left -= stop - at
            self._advance(stop - at)
        return out

    def _advance(self, n: int) -> None:
        """`n` minutes taken, a chunk let go once all of its are."""
        if n > self._ready:
            raise DiscoveryProcessError("the trading process took results the discovery process has not sent")
        self._at += n
        self._ready -= n
        chunks = self._chunks
        while chunks and self._at >= len(chunks[0]):
            self._at -= len(chunks.popleft())

    def _receive(self) -> None:
        if self._ended:
            raise DiscoveryProcessError("the trading process asked for a batch past the window's end; the two diverged")
        try:
            kind, body = pickle.loads(self._conn.recv_bytes())
        except EOFError:
            self._process.join(timeout=5)
            raise DiscoveryProcessError(
                f"the discovery process exited (code {self._process.exitcode}) without finishing; "
                "set backtest.discovery_process = \"off\" to run on one process"
            ) from None
        if kind == "error":
            raise DiscoveryProcessError(f"the discovery process failed:\n{body}")
        if kind == "end":
            self._ended = True
        else:
            received = _Received(body)
            if len(received):
                self._chunks.append(received)
                self._ready += len(received)

    def stage(self, sink: EventSink) -> PipedDiscovery:
        return PipedDiscovery(self, sink)


class ResultSource(Protocol):
    """Where a `PipedDiscovery` takes discovery's results from, in batch order; their events
    as emitted where `keeps_payloads`, else their kinds alone (`_RecordingSink`)."""

    keeps_payloads: bool

    def next_result(self) -> Result: ...

    def ahead(self) -> Iterator[tuple[int, MemberColumns | Sequence[Candidate]]]:
        """The results ready and not taken yet, in order, as their times and pools (as the core
        reads them first: a pool of members as its columns), valid until the next take."""

    def take(self, n: int) -> list[tuple[int, Events]]:
        """The next `n` results taken: the times and events of those with events."""


class PipedDiscovery:
    """The trading side's discovery stage: results discovery computed ahead (in the child, or in
    this process: `AheadDiscovery`), in order, with their events re-emitted into `sink` (the
    trading side's tap). Market info, posts and announcements reach that discovery through its
    own driver; here they are no-ops."""

    def __init__(self, source: ResultSource, sink: EventSink, where: str = "in another process") -> None:
        self._source = source
        self._sink = sink
        self._where = where
        # the trading side's tap, imported by it alone: the discovery process forks without it
        from engine.runtime.tap import Tap

        # events that come as their kinds alone (no payload kept): counted by the tap at once
        self._tally = None if source.keeps_payloads else sink.tally if isinstance(sink, Tap) else self._emit_kinds

    def on_batch(self, batch: TickerBatch, *, journal: bool = True) -> DiscoveryCycle:
        """The next result, its events re-emitted: the discovery that ran ahead was told of a
        warm-up batch by its own driver and journaled none for it (`journal` is its business)."""
        ts, cycle, events = self._source.next_result()
        if ts != batch.ts_ms:
            raise DiscoveryProcessError(
                f"discovery ({self._where}) sent the batch at {ts} for the batch at {batch.ts_ms}; the two diverged"
            )
        if events:
            self._replay(ts, events)
        return cycle

    def ahead(self) -> Iterator[tuple[int, MemberColumns | Sequence[Candidate]]]:
        """The results not taken yet, before they are (`engine.runtime.cycle.ResultsAhead`)."""
        return self._source.ahead()

    def take(self, n: int) -> None:
        """The next `n` results taken, their events re-emitted as `on_batch` does: the minutes
        the cycle stepped at once (`TradingCycle.step_quiet`), each read by `ahead` first."""
        for ts, events in self._source.take(n):
            self._replay(ts, events)

    def _replay(self, ts: int, events: Events) -> None:
        """A result's events into the trading side's sink: counted where they came as their
        kinds alone, else emitted."""
        if self._tally is not None:
            self._tally(ts, cast(tuple[str, ...], events))
            return
        emit = self._sink.emit
        for kind, ts_ms, payload, trace_id, symbol in cast(tuple[Event, ...], events):
            emit(kind, ts_ms=ts_ms, payload=payload, trace_id=trace_id, symbol=symbol)

    def _emit_kinds(self, ts_ms: int, kinds: tuple[str, ...]) -> None:
        """`Tap.tally` for a sink that is no tap: each kind emitted with no payload, as a sink
        keeping none reads it."""
        for kind in kinds:
            self._sink.emit(kind, ts_ms=ts_ms, payload={})

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> object:
        return None  # discovery's own driver refreshed them on the same schedule, from the same files

    def seed_day(self, volumes: MinuteVolumes) -> object:
        return None  # discovery's own driver seeded it from its own market, at the same batch

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> object:
        return self._refuse("social posts")

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> object:
        return self._refuse("announcements")

    def _refuse(self, what: str) -> object:
        """A replay delivers none; one delivered here would never reach the discovery that runs ahead."""
        raise DiscoveryProcessError(
            f"{what} were delivered to a backtest whose discovery runs ahead of the trading core "
            f"({self._where}); a replay has no such source, so whatever delivered them is in error"
        )


class AheadDiscovery:
    """Discovery run ahead of the trading core in this process, where a second one is not used
    (a short window, `backtest.discovery_process = "off"`, one CPU): the child's loop
    (`_Producer`) over its own replay market, a chunk of batches at a time whenever the core
    has taken what it made, so one process also settles its minutes in blocks and runs
    (2.5x the batch-by-batch path on the real month). The runner calls `fill()` before the
    warm-up and before each batch."""

    def __init__(self, feed: HistoryFeed, build: Callable[[EventSink], Discovery], *, slot_ms: int, end_ms: int,
                 keeps_payloads: bool) -> None:  # fmt: skip
        self._producer = _Producer(feed, build, slot_ms, end_ms, keeps_payloads)
        self._results: deque[Result] = deque()
        self.keeps_payloads = keeps_payloads

    async def fill(self) -> None:
        """Have the next batch's result ready: discovery runs a chunk ahead when none is left."""
        if not self._results and not self._producer.done:
            await self._producer.fill(CHUNK_BATCHES)
            self._results.extend(_results(self._producer.queue.take()))

    def ahead(self) -> Iterator[tuple[int, MemberColumns | Sequence[Candidate]]]:
        """The results ready and not taken yet, as their times and pools (`pool_of`): those of
        the chunk filled last (the runner fills more before the next batch's `step`)."""
        for ts, cycle, _ in self._results:
            pool = pool_of(cycle.snapshot)
            yield ts, pool.columns if isinstance(pool, ColumnPool) and by_rank(pool) is pool else pool

    def take(self, n: int) -> list[tuple[int, Events]]:
        """The next `n` results taken: the times and events of those with events."""
        taken = [self._results.popleft() for _ in range(n)]
        return [(ts, events) for ts, _, events in taken if events]

    def next_result(self) -> Result:
        if not self._results:
            raise DiscoveryProcessError(
                "no discovery result is ready: the trading side asked past the window's end, or before fill()"
            )
        return self._results.popleft()

    def stage(self, sink: EventSink) -> PipedDiscovery:
        return PipedDiscovery(self, sink, "in this process")
