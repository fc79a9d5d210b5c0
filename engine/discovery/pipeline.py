"""Discovery, one call per ticker batch: windows -> anomalies -> heat -> filters -> pool -> events.

Market info, announcements and social posts arrive on their own schedules (`on_markets`,
`on_announcements`, `on_posts`) and change per-symbol inputs; `on_batch` does the per-second
work for all symbols at once and returns a `DiscoveryCycle`.

Journal. A candidate's *decision chain* is one symbol in one bar (`pool.bar_ms`, the bar heat's
rank acceleration is measured over too): its `trace_id` is derived from (run id, symbol, bar
start), so every event that follows from the candidate in that bar (signal, risk, orders)
shares it, and a backtest replayed twice journals the same ids. A `candidate_snapshot` is
emitted at most once per symbol per bar:
- for a symbol entering the pool (at once, mid-bar or not);
- for every pool member at the first batch of each new bar (re-evaluated on the new bar);
- for a symbol a filter rejects while its heat is >= `pool.min_heat`, so "why not?" has an answer.
With 1 s batches and 60 s bars that is at most pool size + rejected hot symbols per minute,
never thousands per second. A warm-up batch (`on_batch(batch, journal=False)`) journals
nothing: nothing is decided before trading starts, and a restart's warm-up replays minutes an
earlier run already decided (each snapshot opened a trace of the new run that nothing would
ever decide). The first batch journaled then counts as a new bar's first: the pool it inherits
from the warm-up is journaled there, so a trace begun in the warm-up and decided at the first
trading batch still starts with its snapshot.

Each `ListingEvent` (market info or an announcement dated a coin) is journaled as a `listing`
event (`listed_ms`, `reason`) at the next journaled batch, before its snapshots: discovery
journals only while settling a batch (a backtest's discovery process re-emits events batch by
batch), and a batch with listings to journal is settled alone, never in a block, so the live
engine and the backtest journal them at the same place. Restart recovery reads them back
(`restore_listings`): a coin's listing time is otherwise the one observation a restart loses.

Bad input never raises: rejected batches, bad prices and volumes, malformed, duplicate or
unknown symbols are counted (`counters`) and skipped.
"""

from __future__ import annotations

import functools
import math
import types
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from engine.config.sections.discovery import DiscoverySection
from engine.discovery.anomaly import AnomalyDetector, AnomalyScores
from engine.discovery.filters import CandidateFilters, CodeArray, FilterCode
from engine.discovery.heat import HeatFrame, HeatRanker
from engine.discovery.listings import Announcement, ListingEvent, ListingMonitor
from engine.discovery.pool import CandidatePool, KeptRun, PoolSnapshot
from engine.discovery.social.source import QUOTE_ASSETS, Refusal, SocialPost, resolve_base
from engine.discovery.social.velocity import MentionVelocity
from engine.discovery.windows import NO_TIME, RETURN_KEYS, RingBlock, TickerWindows, WindowUpdate
from engine.domain.discovery import Candidate, HeatComponents
from engine.domain.market import Market
from engine.domain.slots_init import direct_init
from engine.domain.ticker import FloatArray, IntArray, MinuteVolumes, TickerBatch, TickerRun
from engine.journal.events import EventSink, TraceIds, make_trace_id

DAY_MS = 86_400_000
BLOCK_BATCHES = 480  # batches `push` settles in one pass: a replay's pipe chunk; 120 cost the child ~6% more instructions


@direct_init
@dataclass(frozen=True, slots=True)
class DiscoveryCycle:
    """The outcome of one batch."""

    ts_ms: int
    accepted: bool  # False: the batch was out of order or a duplicate (counted)
    snapshot: PoolSnapshot
    entered: tuple[str, ...] = ()
    left: tuple[tuple[str, str], ...] = ()
    events: int = 0


@dataclass(frozen=True, slots=True)
class _Detail:
    """What a journal payload and `last_frame` read of one batch: the windows' figures after it
    and its heat and scores (built only when read, for a batch settled with its block)."""

    last_price: FloatArray
    quote_volume_24h: FloatArray
    high_24h: FloatArray
    low_24h: FloatArray
    trade_count_24h: IntArray
    listing_ms: FloatArray
    frame: HeatFrame
    scores: AnomalyScores


# The figures a `Candidate` carries, one column each of a batch's [row, figure] table
# (`_tabulate`): a candidate reads its row in one `tolist` instead of a dozen numpy scalars.
_PARTS: tuple[str, ...] = HeatComponents.__slots__  # heat's components, in `HeatComponents` order
_QV, _LISTED = 1 + len(_PARTS) + 1, 1 + len(_PARTS) + 2  # heat, the parts, price, 24 h volume, listing
# A candidate's `sources` by (ticker, listing, social) as bits 0-2: `HeatFrame.sources` without
# building a tuple per candidate (`test_pipeline.py` holds the two equal).
_SOURCES: tuple[tuple[str, ...], ...] = tuple(
    tuple(name for bit, name in enumerate(("ticker", "listing", "social")) if k >> bit & 1) for k in range(8)
)


class FigureTable:
    """A [batch, row, figure] table (`_tabulate`) kept as its figures' [batch, row] columns: a
    cell, or cells gathered at once (`table[batches, rows]`), is taken from each column and
    stacked as the stacked table would give it, bit for bit, and the whole table is never
    made. A block's table is read for its members' cells alone (a few hundred), where stacking
    its every column (some 20 of [120, 34] for each of ~200 blocks) cost ~0.05 s of a replayed
    month's discovery. The columns must not change while it is read: a block's are its own
    arrays, and a batch's live ones are copied (`_tabulate`'s `copy`)."""

    __slots__ = ("columns",)

    def __init__(self, columns: tuple[FloatArray, ...]) -> None:
        self.columns = columns

    def __getitem__(self, cells: tuple[Any, Any]) -> FloatArray:
        at = (np.asarray(cells[0], np.intp), np.asarray(cells[1], np.intp))  # lists made indices once, not per column
        out: FloatArray = np.stack([column[at] for column in self.columns], axis=-1)
        return out


def _tabulate(
    heat: FloatArray, parts: Mapping[str, FloatArray], last_price: FloatArray, quote_volume_24h: FloatArray,
    listing_ms: FloatArray, returns: Iterable[FloatArray], volume_surge: FloatArray, *, copy: bool = False,
) -> FigureTable:  # fmt: skip
    """The [batch, row, figure] table of a block (or a batch's, [1, row, figure], from its [row]
    figures): heat, its `_PARTS`, price, 24 h volume, listing time, the returns in
    `RETURN_KEYS` order, volume surge; each column copied where `copy` (arrays that change)."""
    columns = (heat, *(parts[name] for name in _PARTS), last_price, quote_volume_24h, listing_ms, *returns, volume_surge)
    return FigureTable(tuple(np.array(c, ndmin=2) if copy else np.atleast_2d(c) for c in columns))


_NO_TABLE = FigureTable((np.empty((1, 0)),) * (_LISTED + 1 + len(RETURN_KEYS) + 1))  # an empty pool's figure table


@dataclass(slots=True)
class _Minute:
    """One batch as settling reads it: its rows, heat and filter codes, the rows at the pool's
    heat bar that pass the filters (`eligible`) and that a filter rejects (`refused`), both in
    row order; the candidates' figures (`figures`) and the journal's `detail` are built on
    first read, from the live arrays for a batch settled at once (`on_batch`, read before the
    next batch), from the block's copies for a batch settled with its block (`push`)."""

    now: int
    extent: int
    symbols: Sequence[str | None]  # by row
    index: Mapping[str, int]  # symbol -> row
    heat: FloatArray
    codes: CodeArray
    eligible: list[int]
    refused: list[int]
    tabulate: Callable[[], FigureTable]  # [batch, row, figure] (`_tabulate`): this batch's at `batch`
    batch: int
    describe: Callable[[], _Detail]
    _table: FigureTable | None = None
    _detail: _Detail | None = None

    def figures(self, row: int) -> list[float]:
        """Row `row` of the batch's figure table (`_tabulate`), as floats."""
        out: list[float] = self.table()[self.batch, row].tolist()
        return out

    def table(self) -> FigureTable:
        """The figure table the batch is `batch` of: its own (`on_batch`, copied from the live
        arrays), or its block's (made once the block's first candidate reads it)."""
        if self._table is None:
            self._table = self.tabulate()
        return self._table

    def detail(self) -> _Detail:
        if self._detail is None:
            self._detail = self.describe()
        return self._detail


@direct_init
@dataclass(frozen=True, slots=True)
class Members:
    """A settled batch's pool members, hottest first, as `_settle` leaves them: their symbols,
    trace ids and rows of the batch's figure table (`_Minute.table`), `Candidate`s only once
    read (`PoolSnapshot.of`). The backtest's discovery process sends these columns as they
    are, the figures of a chunk's members taken in one gather per table they share (a block's:
    `engine.backtest.discovery_process._member_columns`), and the trading process builds the
    candidates from them (`candidates`): none is built twice, nor taken apart in between."""

    ts_ms: int
    symbols: list[str]
    trace_ids: list[str]
    table: FigureTable  # [batch, row, figure] (`_tabulate`)
    batch: int
    rows: list[int]  # the members' rows of the table's batch `batch`

    @property
    def figures(self) -> FloatArray:
        """[member, figure]: the members' rows of the figure table."""
        out: FloatArray = self.table[self.batch, self.rows]
        return out

    def build(self) -> tuple[Candidate, ...]:
        n = len(self.symbols)
        return tuple(candidates(self.trace_ids, self.symbols, [self.ts_ms] * n, range(1, n + 1), self.figures))


def candidates(
    trace_ids: Iterable[str], symbols: Iterable[str], times: Iterable[int], ranks: Iterable[int], figures: FloatArray
) -> list[Candidate]:
    """The `Candidate` of each member from its trace id, symbol, time, rank and figure-table row
    (`_tabulate`'s [member, figure]): the one way candidates are made from what settling found,
    in discovery (a batch's members) and on the far side of the backtest's pipe (a chunk's at
    once). The figures are read as columns (one `tolist`), never as a list per candidate: that
    was the largest allocation on the trading side of the pipe, and its collector's work."""
    make, parts, proxy, sources = Candidate, HeatComponents, types.MappingProxyType, _SOURCES
    return [
        make(
            trace, symbol, now, heat, parts(momentum, surge, listing, social, sentiment, acceleration), rank, price,
            qv if qv - qv == 0.0 else 0.0,  # `_finite`, inline: NaN and inf give NaN
            sources[(momentum > 0 or surge > 0) + 2 * (listing > 0) + 4 * (social > 0)],
            None if listed != listed else max(0.0, (now - listed) / DAY_MS),
            # the returns in `RETURN_KEYS` order (NaN: unknown); a literal, not dict(zip()): a third of its cost
            proxy({"1m": r1, "5m": r5, "15m": r15, "60m": r60}),
            vs if vs - vs == 0.0 else 0.0,
        )
        for (
            trace, symbol, now, rank, heat, momentum, surge, listing, social, sentiment, acceleration, price, qv, listed,
            r1, r5, r15, r60, vs,
        ) in zip(trace_ids, symbols, times, ranks, *figures.T.tolist(), strict=True)
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class SettledRun:
    """Consecutive batches of a block settled in one pass (`Discovery.flush`), as columns: the
    calm minutes of an empty pool (`quiet`), or a run in which the pool keeps its members
    (`Discovery._settle_kept`). What each batch's `DiscoveryCycle` would hold, without the
    cycle, snapshot and `Members` of each (`cycles` builds them): a `RunTaker` (the backtest's
    discovery process) sends the columns as they are. Symbols enter (at a bar's first batch)
    and leave as they expire (`entered`, `left`, by batch); its candidate snapshots (`events`, by batch) are
    journaled by whoever takes it (`RunTaker`, `Discovery._hand_over`)."""

    times: list[int]  # each batch's time
    indices: list[int]  # its batch of `table`
    sizes: list[int]  # its pool's members
    events: list[int]  # its candidate snapshots
    entered: dict[int, tuple[str, ...]]  # the entrants of each batch that has any, by its place
    left: dict[int, tuple[tuple[str, str], ...]]  # the leavers (expired) of each batch that has any, by its place
    last: PoolSnapshot  # the last batch's snapshot: the pool's after the run
    symbols: list[str]  # the members of each batch in turn, hottest first
    trace_ids: list[str]
    rows: list[int]  # their rows of their batch of `table`
    table: FigureTable  # [batch, row, figure] (`_tabulate`): the block's
    quiet: bool = False  # an empty pool's batches: snapshots of nobody, built, not deferred

    def cycles(self) -> list[DiscoveryCycle]:
        """The run's results as `settled` takes them batch by batch (`Discovery.flush`)."""
        out, at, last = [], 0, len(self.times) - 1
        for t, (ts, size, count) in enumerate(zip(self.times, self.sizes, self.events, strict=True)):
            if t == last:
                snapshot = self.last
            elif self.quiet:
                snapshot = PoolSnapshot(ts)
            else:
                stop = at + size
                members = Members(ts, self.symbols[at:stop], self.trace_ids[at:stop], self.table, self.indices[t],
                                  self.rows[at:stop])  # fmt: skip
                snapshot = PoolSnapshot.of(ts, members)
            at += size
            out.append(DiscoveryCycle(ts, True, snapshot, self.entered.get(t, ()), self.left.get(t, ()), count))
        return out


@runtime_checkable
class RunTaker(Protocol):
    """A `settled` (`Discovery.push`, `push_run`, `flush`) that takes a `SettledRun` as it is
    (`run`) rather than its batches' cycles one by one. Where discovery's sink keeps no
    payloads (it only counts events), a run's candidate snapshots are not emitted into it
    but counted in the run (`SettledRun.events`), for the taker to journal with their batches
    (the backtest's discovery process, whose parent only counts them then)."""

    def __call__(self, cycle: DiscoveryCycle) -> object: ...

    def run(self, run: SettledRun) -> object: ...


class _Block:
    """Batches pushed but not yet scored or settled (`Discovery.push`): the windows' rings after
    each (`RingBlock`), the per-row inputs heat, the filters and the journal read, and where
    the block's results go (`settled`). Steady batches (`TickerWindows.steady`: every row, the
    next slot) wait in `pending` and are folded into the windows together (`fold`)."""

    def __init__(self, discovery: Discovery, size: int, settled: Callable[[DiscoveryCycle], object]) -> None:
        w = discovery.windows
        self.rings = RingBlock(w, size)
        self.settled = settled
        e = self.rings.extent
        self.batches: list[tuple[int, int]] = []  # (batch time, index in the rings; -1: a rejected batch)
        self.extents: list[int] = []
        self.mappings: list[tuple[list[str | None], dict[str, int]]] = []
        self.quote_volume_24h = np.empty((size, e))
        self.high_24h = np.empty((size, e))
        self.low_24h = np.empty((size, e))
        self.trade_count_24h = np.empty((size, e), np.int64)
        self.listing_ms = np.empty((size, e))
        self.social_velocity = np.empty((size, e))
        self.social_sentiment = np.empty((size, e))
        self._generation = -1
        self.pending: list[TickerBatch] = []  # steady batches not folded in yet (`TickerWindows.update_many`)

    def __len__(self) -> int:
        """Batches pushed into the block, pending ones included."""
        return len(self.batches) + len(self.pending)

    @property
    def full(self) -> bool:
        return len(self) == len(self.quote_volume_24h)

    def last_ts_ms(self, windows: TickerWindows) -> int | None:
        """The time of the last batch pushed: a pending one, or the windows' last."""
        return self.pending[-1].ts_ms if self.pending else windows.last_ts_ms

    def reject(self, ts_ms: int) -> None:
        self.batches.append((ts_ms, -1))

    def fold(self, discovery: Discovery) -> None:
        """Fold the pending batches into the windows: all at once where they allow it, else one
        by one as `push` would have."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        k = self.rings.count
        if discovery.windows.update_many(pending, self.rings):
            for j, batch in enumerate(pending):
                discovery._apply_social(batch.ts_ms)
                self._record(discovery, batch.ts_ms, k + j, batch.quote_volume_24h, batch.high_24h, batch.low_24h,
                             batch.trade_count_24h)  # fmt: skip
            return
        for batch in pending:
            if discovery._take(batch) is None:
                self.reject(batch.ts_ms)
            else:
                self.take(discovery, batch.ts_ms)

    def take_run(self, discovery: Discovery, run: TickerRun) -> bool:
        """Fold `run` into the windows at once and record it, as `fold` records steady batches
        one by one (the pending batches are folded in first either way); False, with the run
        not taken, where the windows refuse it (`TickerWindows.update_run`)."""
        self.fold(discovery)
        k = self.rings.count
        if not discovery.windows.update_run(run, self.rings):
            return False
        n, w, r, e = len(run), discovery.windows, discovery.ranker, self.rings.extent
        times = run.ts_ms.tolist()
        discovery._mark_social(times)  # idle (`Discovery.push_run`): `_apply_social` only marks the time
        self.batches.extend(zip(times, range(k, k + n), strict=True))
        self.extents.extend([w.extent] * n)
        if w.generation != self._generation or not self.mappings:  # rows changed owner: copy the mapping
            self._generation = w.generation
            self.mappings.append((w.symbols[:e], dict(w.index)))
            self.mappings.extend([self.mappings[-1]] * (n - 1))
        else:
            self.mappings.extend([self.mappings[-1]] * n)
        rows = slice(k, k + n)
        self.quote_volume_24h[rows] = run.quote_volume_24h[:, :e]
        self.high_24h[rows] = run.high_24h[:, :e]
        self.low_24h[rows] = run.low_24h[:, :e]
        self.trade_count_24h[rows] = run.trade_count_24h[:, :e]
        self.listing_ms[rows] = r.listing_ms[:e]
        self.social_velocity[rows] = r.social_velocity[:e]
        self.social_sentiment[rows] = r.social_sentiment[:e]
        return True

    def take(self, discovery: Discovery, ts_ms: int) -> None:
        w, k = discovery.windows, self.rings.count
        self.rings.take()
        self._record(discovery, ts_ms, k, w.quote_volume_24h, w.high_24h, w.low_24h, w.trade_count_24h)

    def _record(
        self, discovery: Discovery, ts_ms: int, k: int, quote_volume_24h: FloatArray, high_24h: FloatArray,
        low_24h: FloatArray, trade_count_24h: IntArray,
    ) -> None:  # fmt: skip
        """The row inputs of batch `k` of the rings: the windows' figures after it (or the
        batch's own, where it updated every row), the ranker's listing and social arrays."""
        w, r, e = discovery.windows, discovery.ranker, self.rings.extent
        self.batches.append((ts_ms, k))
        self.extents.append(w.extent)
        if w.generation != self._generation or not self.mappings:  # rows changed owner: copy the mapping
            self._generation = w.generation
            self.mappings.append((w.symbols[:e], dict(w.index)))
        else:
            self.mappings.append(self.mappings[-1])
        self.quote_volume_24h[k] = quote_volume_24h[:e]
        self.high_24h[k] = high_24h[:e]
        self.low_24h[k] = low_24h[:e]
        self.trade_count_24h[k] = trade_count_24h[:e]
        self.listing_ms[k] = r.listing_ms[:e]
        self.social_velocity[k] = r.social_velocity[:e]
        self.social_sentiment[k] = r.social_sentiment[:e]


class _Kept:
    """What `Discovery._settle_kept` reads of a block being settled: its batches' heat and rows
    at the heat bar (`hot`), [batch, row] arrays a run's members are cut from at once, their
    filter codes (as lists by batch then row, made once the first kept batch reads them: one
    `tolist`, where reading numpy scalars one by one cost more), eligible and refused rows,
    figure table, details and minutes (`flush`'s)."""

    def __init__(
        self, block: _Block, heat: FloatArray, hot: npt.NDArray[np.bool_], codes: CodeArray, eligible: list[list[int]],
        refused: list[list[int]], table: Callable[[], FigureTable], describe: Callable[[int, int], _Detail],
        minute: Callable[[int, int], _Minute],
    ) -> None:  # fmt: skip
        self.block, self.heat, self.hot, self.eligible, self.refused, self.table = block, heat, hot, eligible, refused, table
        self.finite = not np.isnan(heat).any()  # no NaN heat to rank (`Discovery._settle_kept`)
        self.describe, self.minute = describe, minute
        self._codes = codes
        self._lists: list[list[int]] | None = None

    def codes(self) -> list[list[int]]:
        if self._lists is None:
            self._lists = self._codes.tolist()
        return self._lists


class Discovery:
    """The discovery core: feed it batches, market info, announcements and posts; read the pool.

    `on_batch` settles each batch at once (live). `push` settles batches a block at a time, for
    a replay that needs no batch's result before the block's end (the backtester's discovery
    process): the windows take every batch as it comes, then the block's batches are scored
    and ranked in one vector pass (`AnomalyDetector.score_block`, `HeatRanker.rank_block`) and
    settled into the pool in order; a run of steady batches (every row, one slot after the
    other: nearly every minute of a replay) is even folded into the windows at once
    (`TickerWindows.update_many`), and `push_run` takes such batches as one `TickerRun` of
    [batch, symbol] arrays (`TickerWindows.update_run`). The results are the same, batch for batch
    (`tests/engine/discovery/test_block.py`); a batch that could not be ranked in a block
    (a new symbol, a bar spanning batches) closes the block and is settled alone, and so do
    market info, announcements and posts (rare: a block then settles before they apply).
    """

    def __init__(
        self,
        cfg: DiscoverySection | None = None,
        sink: EventSink | None = None,
        *,
        quote_asset: str = "USDT",
        run_id: str = "run",
    ) -> None:
        self.cfg = cfg = cfg or DiscoverySection()
        self.sink = sink
        self.quote_asset = quote_asset
        self.run_id = run_id
        self.windows = TickerWindows(cfg.windows)
        self.anomaly = AnomalyDetector(cfg.anomaly, self.windows)
        self.ranker = HeatRanker(cfg.heat, cfg.windows.capacity, cfg.pool.bar_ms)
        self.filters = CandidateFilters(cfg.filters, quote_asset, cfg.windows.capacity)
        self.pool = CandidatePool(cfg.pool)
        self.listings = ListingMonitor(cfg.listings)
        self.social = MentionVelocity(cfg.social, resolve=self._social_base)
        self._quotes = tuple(dict.fromkeys((quote_asset.upper(), *QUOTE_ASSETS)))
        self.counters: Counter[str] = Counter()
        self._social_rows: IntArray = np.zeros(0, dtype=np.int64)
        self._social_dirty = False
        self._social_next_ms = 0
        self._bar = -1
        self._emitted: set[str] = set()  # symbols journaled in the current bar
        self._trace_bar = -1
        self._traces: dict[str, str] = {}  # symbol -> trace id in the current bar
        self._trace_ids = TraceIds(run_id)
        self._last: tuple[HeatFrame, AnomalyScores] | None = None  # the batch settled last
        self._last_pending: Callable[[], _Detail] | None = None  # ...or how to build it (`_settled_last`)
        self._block: _Block | None = None
        self._unjournaled: list[ListingEvent] = []  # listings for the next journaled batch
        self._banded: set[str] = set()  # pool members the last batch kept by the liquidity exit band

    # ------------------------------------------------------------------ slow inputs
    def restore_listings(self, listed: Mapping[str, int]) -> None:
        """Listing times (symbol -> epoch ms) an earlier run journaled, from restart recovery:
        given before the first market load, they keep a coin listed before the restart as old
        as it is (`ListingMonitor.restore`)."""
        for symbol in self.listings.restore(listed):
            self._set_listing(symbol)

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> list[ListingEvent]:
        """A full market-info load: listings, known bases (leveraged tokens), symbol admission."""
        self._settle_block()
        markets = list(markets)
        events = self.listings.update(markets, now_ms)
        self.filters.note_bases(m.symbol for m in markets)
        self.filters.note_markets(markets, self.windows.index)
        self.windows.invalidate_mapping()  # symbols refused as unknown may be known now
        self._listed(events)
        return events

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> list[ListingEvent]:
        self._settle_block()
        events = self.listings.note_announcements(announcements, now_ms, self.quote_asset, self._first_ticker_ms)
        self._listed(events)
        return events

    def _listed(self, events: list[ListingEvent]) -> None:
        for ev in events:
            self._set_listing(ev.symbol)
        if self.sink is not None:
            self._unjournaled.extend(events)

    def _first_ticker_ms(self, symbol: str) -> int | None:
        """When the windows took `symbol`'s first ticker (None: none held). A warm-up rebuilds
        its minutes from 1m candles, which a coin has only from its first trade on."""
        row = self.windows.row_of(symbol)
        if row is None:
            return None
        first = int(self.windows.first_seen_ms[row])
        return None if first == NO_TIME else first

    def _social_base(self, tag: str) -> str | None:
        """The base asset a post's tag names among those the exchange lists (markets and rows seen)."""
        return resolve_base(tag, self.filters.known_bases, self._quotes)

    def screen_post(self, post: SocialPost, now_ms: int) -> tuple[str, ...] | Refusal:
        """What `on_posts` would do with `post` at `now_ms`: the coins it counts for, or why none
        (a push source answers this to its sender; it changes nothing)."""
        return self.social.screen(post, now_ms)

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> int:
        self._settle_block()
        added = self.social.add(posts, now_ms)
        if added:
            self._social_dirty = True
        return added

    def _settle_block(self) -> None:
        """Settle pushed batches before a slow input changes what they would be settled with
        (a filter's explanation reads the known bases as they are when it runs)."""
        if self._block is not None:
            self.flush(self._block.settled)

    def _set_listing(self, symbol: str) -> None:
        row = self.windows.row_of(symbol)
        if row is not None:
            listed = self.listings.listing_ms(symbol)
            self.ranker.listing_ms[row] = np.nan if listed is None else float(listed)

    def _admit(self, symbol: str) -> bool:
        return symbol in self.listings

    def seed_day(self, volumes: MinuteVolumes) -> int:
        """The windows' day ring from the real minute volumes of the day before the batch just
        settled (`TickerWindows.seed_day`: a replay's departures read, not guessed); the rows
        seeded."""
        if self._block is not None:
            raise RuntimeError("discovery holds pushed batches not yet settled: seed right after on_batch()")
        return self.windows.seed_day(volumes)

    # ------------------------------------------------------------------ the batch
    def on_batch(self, batch: TickerBatch, *, journal: bool = True) -> DiscoveryCycle:
        """Settle one batch; `journal=False` for a warm-up batch (module docstring)."""
        if self._block is not None:
            raise RuntimeError("discovery holds pushed batches not yet settled: flush() them before on_batch()")
        now = batch.ts_ms
        if self._take(batch) is None:
            return DiscoveryCycle(ts_ms=now, accepted=False, snapshot=self.pool.snapshot())
        w = self.windows
        scores = self.anomaly.step()
        e = scores.extent
        frame = self.ranker.rank(scores, w.active, now)
        listing_ms = self.ranker.listing_ms
        codes = self.filters.evaluate(w.quote_volume_24h[:e], (now - listing_ms[:e]) / DAY_MS)
        hot = frame.heat >= self.cfg.pool.min_heat
        detail = _Detail(
            w.last_price, w.quote_volume_24h, w.high_24h, w.low_24h, w.trade_count_24h, listing_ms, frame, scores
        )
        return self._settle(_Minute(
            now, e, w.symbols, w.index, frame.heat, codes, (hot & (codes == 0)).nonzero()[0].tolist(),
            (hot & (codes != 0)).nonzero()[0].tolist(),
            lambda: _tabulate(frame.heat, frame.parts, w.last_price[:e], w.quote_volume_24h[:e], listing_ms[:e],
                              scores.returns.values(), scores.volume_surge, copy=True),
            0, lambda: detail, _detail=detail,
        ), journal)  # fmt: skip

    def push(self, batch: TickerBatch, settled: Callable[[DiscoveryCycle], object], block: int = BLOCK_BATCHES) -> None:
        """`on_batch` for a replay, `block` batches at a time: each batch's result goes to
        `settled` once its block is settled, in batch order; `flush` settles the rest."""
        if not self._blockable(batch):
            self.flush(settled)
            settled(self.on_batch(batch))
            return
        if self._block is None:
            self._block = _Block(self, block, settled)
        open_block = self._block
        if self.windows.steady(batch, open_block.last_ts_ms(self.windows)):
            open_block.pending.append(batch)  # folded in with the others like it (`_Block.fold`)
        else:
            open_block.fold(self)
            if self._take(batch) is None:
                open_block.reject(batch.ts_ms)
            else:
                open_block.take(self, batch.ts_ms)
        if open_block.full:
            self.flush(settled)

    def push_run(self, run: TickerRun, settled: Callable[[DiscoveryCycle], object], block: int = BLOCK_BATCHES) -> None:
        """`push` of each batch of `run` in turn, with the same results: where the batches can be
        blocked and follow the block's last one slot after slot (nearly all of a replay), a
        block's room of them at a time is folded into the windows at once (`_Block.take_run`),
        read straight from the run's arrays; a batch that cannot be goes through `push` alone,
        and so does every batch while social scores are live (they may change batch by batch)."""
        if self.cfg.anomaly.baseline_refresh_batches != 1 or len(self._social_rows) or not self.social.idle:
            for i in range(len(run)):
                self.push(run.batch(i), settled, block)
            return
        j, n = 0, len(run)
        while j < n:
            open_block = self._block
            room = self.room(block)
            part = run if j == 0 and room >= n else run.part(j, min(n, j + room))
            if self._run_blockable(part):
                if open_block is None:
                    open_block = self._block = _Block(self, block, settled)
                if open_block.take_run(self, part):
                    j += len(part)
                    if open_block.full:
                        self.flush(settled)
                    continue
            self.push(run.batch(j), settled, block)  # this one alone (a new symbol, a bad price...)
            j += 1

    def room(self, block: int = BLOCK_BATCHES) -> int:
        """Batches the open block (or a new one) still takes: a run this long is folded in one
        piece, where a longer one is cut at the block's end (a reader handing over runs of its
        own choosing asks first)."""
        return block - (len(self._block) if self._block is not None else 0)

    def _run_blockable(self, run: TickerRun) -> bool:
        """`_blockable` for each batch of `run` in turn."""
        w = self.windows
        last = w.last_ts_ms if self._block is None else self._block.last_ts_ms(w)
        return not self._unjournaled and w.maps_known(run) and self.ranker.blockable_run(w.extent, run.ts_ms, last)

    def flush(self, settled: Callable[[DiscoveryCycle], object]) -> None:
        """Score, rank and settle the pushed batches, handing each result to `settled` in order."""
        block, self._block = self._block, None
        if block is None:
            return
        block.fold(self)
        k = block.rings.count
        state = block.rings.state()
        scores = self.anomaly.score_block(state)
        now = np.array([ts for ts, i in block.batches if i >= 0], np.int64)
        extents = np.array(block.extents, np.int64)
        heat, parts = self.ranker.rank_block(
            scores, state.active, block.listing_ms[:k], block.social_velocity[:k], block.social_sentiment[:k], now, extents
        )
        codes = self.filters.evaluate(block.quote_volume_24h[:k], (now[:, None] - block.listing_ms[:k]) / DAY_MS)
        # The rows at the pool's heat bar, passing the filters or not, for every batch at once.
        # Batches with none (most minutes of a replay) are settled by `_settle_quiet` while the
        # pool is empty, with no minute built for them.
        e = block.rings.extent
        hot = (heat >= self.cfg.pool.min_heat) & (np.arange(heat.shape[1]) < extents[:, None])
        warm: list[bool] = np.any(hot, axis=1).tolist()
        passing = hot & (codes == 0)
        eligible, refused = _by_batch(passing), _by_batch(hot & ~passing)

        @functools.cache
        def table() -> FigureTable:  # the block's [batch, row, figure] table, once a candidate reads it
            return _tabulate(
                heat, parts, state.last_price[:, :e], block.quote_volume_24h[:k], block.listing_ms[:k],
                (scores.returns[:, h] for h in range(len(RETURN_KEYS))), scores.volume_surge,
            )

        def describe(i: int, ts: int) -> _Detail:
            n = block.extents[i]
            frame = HeatFrame(ts_ms=ts, heat=heat[i, :n], parts={name: v[i, :n] for name, v in parts.items()})
            return _Detail(
                state.last_price[i], block.quote_volume_24h[i], block.high_24h[i], block.low_24h[i],
                block.trade_count_24h[i], block.listing_ms[i], frame, scores.at(i, n),
            )  # fmt: skip

        def minute(i: int, ts: int) -> _Minute:
            n = block.extents[i]
            symbols, index = block.mappings[i]
            return _Minute(
                ts, n, symbols, index, heat[i, :n], codes[i, :n], eligible[i], refused[i], table, i,
                functools.partial(describe, i, ts),
            )  # fmt: skip

        kept = _Kept(block, heat, hot, codes, eligible, refused, table, describe, minute)
        payloads = self.sink is not None and self.sink.keeps_payloads
        take = settled.run if isinstance(settled, RunTaker) and not payloads else None
        batches, j = block.batches, 0
        while j < len(batches):
            ts, i = batches[j]
            if i < 0:
                settled(DiscoveryCycle(ts_ms=ts, accepted=False, snapshot=self.pool.snapshot()))
            elif not warm[i] and not len(self.pool):
                j += self._hand_over(self._settle_quiet(kept, j, warm), kept, settled, take)
                continue
            elif len(self.pool) and (run := self._settle_kept(kept, j)) is not None:
                j += self._hand_over(run, kept, settled, take)
                continue
            else:
                settled(self._settle(minute(i, ts)))
            j += 1

    def _hand_over(
        self, run: SettledRun, kept: _Kept, settled: Callable[[DiscoveryCycle], object],
        take: Callable[[SettledRun], object] | None,
    ) -> int:  # fmt: skip
        """`run` to its taker as it is (`RunTaker`), else to `settled` batch by batch, each with
        its candidate snapshots journaled before it and `last_frame` its own while `settled`
        has it; how many batches it settled."""
        if take is not None:
            take(run)
            return len(run.times)
        for t, cycle in enumerate(run.cycles()):
            self._last_pending = functools.partial(kept.describe, run.indices[t], cycle.ts_ms)
            if run.events[t]:  # a bar's first batch: every member journaled (none was in this bar yet)
                assert self.sink is not None and isinstance(cycle.snapshot.deferred, Members)
                m = kept.minute(run.indices[t], cycle.ts_ms) if self.sink.keeps_payloads else None
                self._emit_members(m, cycle.snapshot.deferred, set())
            settled(cycle)
        return len(run.times)

    def _blockable(self, batch: TickerBatch) -> bool:
        """Whether `batch` can be settled with a block: baselines refreshed every batch, no new
        symbol, and a bar opened."""
        w = self.windows
        last = w.last_ts_ms if self._block is None else self._block.last_ts_ms(w)
        return (
            self.cfg.anomaly.baseline_refresh_batches == 1
            and not self._unjournaled  # settled alone, where `on_batch` journals them (module doc)
            and w.maps_known(batch)
            and self.ranker.blockable(w.extent, batch.ts_ms, last)
        )

    def _take(self, batch: TickerBatch) -> WindowUpdate | None:
        """Fold a batch into the windows (new rows reset, social scores applied); None if rejected."""
        upd = self.windows.update(batch, self._admit if self.listings.loaded else None)
        if upd is None:
            return None
        if len(upd.new_rows):
            self._on_new_rows(upd.new_rows)
        self._apply_social(batch.ts_ms)
        return upd

    def _settle(self, m: _Minute, journal: bool = True) -> DiscoveryCycle:
        """Filters, pool and journal (unless `journal` is False: a warm-up) for one scored batch."""
        now, e, heat, codes = m.now, m.extent, m.heat, m.codes
        pool = self.cfg.pool
        eligible = m.eligible
        if len(eligible) > pool.size:
            at_bar = np.array(eligible, np.int64)
            eligible = at_bar[np.argpartition(-heat[at_bar], pool.size - 1)[: pool.size]].tolist()
        symbols, index = m.symbols, m.index
        qualifying = {s for s in (symbols[r] for r in eligible) if s is not None}
        rows: dict[str, int] = {s: index[s] for s in qualifying}
        rejected: dict[str, str] = {}
        banded: set[str] = set()  # members kept by the liquidity rule's exit band
        for symbol in self.pool.members:
            row = index.get(symbol)
            if row is None or row >= e:
                continue
            if codes[row]:  # fails a filter: out, unless the liquidity rule's exit band keeps it
                code = FilterCode(int(codes[row]))
                figures = m.figures(row)
                if not self.filters.keeps(code, figures[_QV], _age_days(now, figures[_LISTED])):
                    rejected[symbol] = f"filtered: {code.check_name}"
                    continue
                banded.add(symbol)
                if heat[row] >= pool.min_heat:
                    qualifying.add(symbol)  # hot and inside the band: it stays as a passing member would
            rows[symbol] = row
        self._banded = banded
        bar = now // pool.bar_ms
        bar_start = bar * pool.bar_ms
        if bar != self._trace_bar:
            self._trace_bar, self._traces = bar, {}
        heats = {s: float(heat[r]) for s, r in rows.items()}
        change = self.pool.update(now, heats, qualifying, rejected, lambda ranked: self._members(m, ranked, rows, bar_start))
        self._last_pending = m.detail  # `last_frame` builds it if read
        if journal and self._unjournaled:
            self._journal_listings(now)
        members = change.snapshot.deferred
        assert isinstance(members, Members)
        emitted = self._journal(m, bar, bar_start, members, change.entered) if journal else 0
        return DiscoveryCycle(now, True, change.snapshot, change.entered, change.left, emitted)

    def _settle_quiet(self, kept: _Kept, j: int, warm: list[bool]) -> SettledRun:
        """`_settle` of the block's batches from its `j`-th on with no row at the heat bar while
        the pool is empty (most minutes of a replay): nothing qualifies, nothing is rejected or
        journaled, the pool stays empty, and only the last batch's state is left
        (`test_block.py` holds the two to the same cycles, journal, counters and state)."""
        times, indices = [], []
        for ts, i in islice(kept.block.batches, j, None):
            if i < 0 or warm[i]:
                break
            times.append(ts)
            indices.append(i)
        now = times[-1]
        bar = now // self.cfg.pool.bar_ms
        if bar != self._trace_bar:
            self._trace_bar, self._traces = bar, {}
        change = self.pool.idle(now)
        if self.sink is not None and bar != self._bar:  # as `_journal` leaves them
            self._bar, self._emitted = bar, set()
        self._last_pending = functools.partial(kept.describe, indices[-1], now)  # built if `last_frame` is read
        n = len(times)
        return SettledRun(times, indices, [0] * n, [0] * n, {}, {}, change.snapshot, [], [], [], _NO_TABLE, quiet=True)

    def _settle_kept(self, kept: _Kept, j: int) -> SettledRun | None:
        """`_settle` of the block's batches from its `j`-th on while the pool changes only by
        entries and expiries: every member in the market (the same rows) and passing the
        filters, nobody refused, and where somebody enters (at a bar's first batch only, where
        every member is journaled anyway) nobody displaced (most busy minutes of a replay: a
        few hot coins coming and going for an hour). Such a batch rejects and bands nobody, so
        it needs neither its `_Minute` (unless the journal keeps payloads) nor the general
        sorting-out: the run is settled as columns (`CandidatePool.keep_run`, symbol by
        symbol; one sort of the block's heats, each member's trace ids in one call) up to a
        batch that is not such; None where the `j`-th is not such (or a heat is NaN, which
        ranks as only `sorted` ranks it). `test_block.py` holds this to `_settle` batch by batch."""
        block = kept.block
        i = block.batches[j][1]
        if i < 0 or self._unjournaled:
            return None
        mapping, e = block.mappings[i], block.extents[i]
        rows = [mapping[1].get(symbol, e) for symbol in self.pool]
        if max(rows) >= e:  # a member left the market
            return None
        times, indices = self._kept_batches(kept, j, mapping, e, rows)  # `rows` gains the entrants'
        if not times:
            return None
        by_row = mapping[0]
        named = sorted(zip(cast(list[str], [by_row[r] for r in rows]), rows, strict=True))  # by symbol: a tie in heat ranks by symbol
        names, rows = [name for name, _ in named], [row for _, row in named]
        cut = kept.heat[indices[0] : indices[-1] + 1, rows]  # [batch, symbol]: the run's batches are consecutive
        if not kept.finite and np.isnan(cut).any():
            return None
        eligible = kept.eligible

        def arrivals(t: int) -> set[str]:  # `_settle`'s qualifying set, built as it builds it
            return {s for s in (by_row[r] for r in eligible[indices[t]]) if s is not None}

        at = dict(zip(names, rows, strict=True))
        run = self.pool.keep_run(
            times, dict(zip(names, cut.T.tolist(), strict=True)),
            dict(zip(names, kept.hot[indices[0] : indices[-1] + 1, rows].T.tolist(), strict=True)), arrivals,
            lambda t, ranked: self._last_members(kept, times[t], indices[t], ranked, at),
        )  # fmt: skip
        if run is None:
            return None
        n = run.count
        del times[n:], indices[n:]
        order: list[list[int]] = (
            np.argsort(-cut[: n - 1], axis=1, kind="stable").tolist() if len(rows) > 1 else [[0]] * (n - 1)
        )  # each batch's ranking but the last's (`run.snapshot`'s)
        spans = [run.spans[name] for name in names]
        present = None if all(span == [(0, n)] for span in spans) else [_inside(span, n - 1) for span in spans]
        if present is not None:  # some come and go: each batch ranks those in
            order = [[k for k in ranks if present[k][t]] for t, ranks in enumerate(order)]
        return self._kept_run(kept, times, indices, names, rows, order, present, run)

    def _kept_batches(
        self, kept: _Kept, j: int, mapping: tuple[list[str | None], dict[str, int]], e: int, rows: list[int]
    ) -> tuple[list[int], list[int]]:
        """The times and indices of the block's batches from its `j`-th on that `_settle_kept`
        settles with its members at `rows`: the same rows, all passing, nobody refused, and
        where a row that is not in `rows` passes at the heat bar (it enters), a bar's first
        batch with no more such rows than the pool holds; `rows` takes those rows in turn,
        each held to passing the filters from then on (while a member still, and after: which
        only ends a run sooner than it could). They end at the latest where the last member
        has surely expired (`horizon`: the latest expiry, nobody at the bar), as
        `CandidatePool.keep_run` ends a run that leaves the pool empty, rather than go on
        through the calm minutes that follow."""
        block, codes, eligible, refused = kept.block, kept.codes(), kept.eligible, kept.refused
        bar_ms, size, ttl, by_row = self.cfg.pool.bar_ms, self.cfg.pool.size, self.cfg.pool.ttl_ms, mapping[0]
        member_rows = set(rows)
        bar, horizon = self._bar, max(map(self.pool.expires_ms, self.pool))
        times: list[int] = []
        indices: list[int] = []
        for ts, i in islice(block.batches, j, None):
            if (
                i < 0 or refused[i] or block.mappings[i] is not mapping or block.extents[i] != e
                or (indices and i != indices[-1] + 1)
            ):  # fmt: skip
                break
            if not member_rows.issuperset(eligible[i]):  # somebody enters
                new = [r for r in eligible[i] if r not in member_rows]
                if ts // bar_ms == bar or len(eligible[i]) > size or any(by_row[r] is None for r in new):
                    break
                member_rows.update(new)
                rows += new
            if any(map(codes[i].__getitem__, rows)):
                break
            times.append(ts)
            indices.append(i)
            if eligible[i]:
                horizon = ts + ttl
            elif ts >= horizon:  # every member expires here and nobody enters: the pool is left empty
                break
            bar = ts // bar_ms
        return times, indices

    def _last_members(self, kept: _Kept, now: int, batch: int, ranked: list[str], rows: Mapping[str, int]) -> Members:
        """The members of a kept run's last batch (`CandidatePool.keep_run`'s `rank`), their trace
        ids those of its bar (`_kept_run` takes them from here)."""
        start = now - now % self.cfg.pool.bar_ms
        trace_ids = [self._trace_ids.of(symbol, start) for symbol in ranked]
        if not ranked:  # no table to make for an empty pool
            return Members(now, ranked, trace_ids, _NO_TABLE, 0, [])
        return Members(now, ranked, trace_ids, kept.table(), batch, [rows[s] for s in ranked])

    def _kept_run(
        self, kept: _Kept, times: list[int], indices: list[int], names: list[str], rows: list[int],
        order: list[list[int]], present: list[list[bool]] | None, run: KeptRun,
    ) -> SettledRun:  # fmt: skip
        """The `SettledRun` of `_settle_kept`'s batches, each but the last ranked by `order`
        (numbers of `names`; `present`: whether each is a member at each, None: all at all),
        the last as `run.snapshot` holds it; the journal's state and counters left as batch by
        batch."""
        bar_ms, n = self.cfg.pool.bar_ms, len(times)
        starts = [ts - ts % bar_ms for ts in times]
        last = run.snapshot.deferred
        assert isinstance(last, Members)
        of_each = self._trace_ids.of_each
        if present is None:
            ids = [of_each(name, starts[:-1]) for name in names]
        else:
            ids = [_placed(of_each(name, list(compress(starts, inside))), inside) for name, inside in zip(names, present, strict=True)]
        sizes = [*map(len, order), len(last.symbols)]
        flat = list(chain.from_iterable(order))
        at = chain.from_iterable(map(repeat, range(n - 1), sizes))  # each member's batch in `flat`
        symbols = [names[k] for k in flat] + last.symbols
        trace_ids = [ids[k][t] for k, t in zip(flat, at, strict=True)] + last.trace_ids
        self._banded = set()
        bar = starts[-1] // bar_ms
        if bar != self._trace_bar:
            self._trace_bar, self._traces = bar, {}
        first = n - 1
        while first and starts[first - 1] == starts[-1]:  # the run's batches in its last bar
            first -= 1
        skip = sum(sizes[:first])
        self._traces.update(zip(symbols[skip:], trace_ids[skip:], strict=True))
        events = [0] * n
        if self.sink is not None:
            self._journal_run(starts, sizes, events, symbols[skip : skip + sizes[first]])
        self._last_pending = functools.partial(kept.describe, indices[-1], times[-1])  # `last_frame` builds it if read
        return SettledRun(times, indices, sizes, events, run.entered, run.left, run.snapshot, symbols, trace_ids,
                          [rows[k] for k in flat] + last.rows, kept.table())  # fmt: skip

    def _journal_run(self, starts: list[int], sizes: list[int], events: list[int], opening: list[str]) -> None:
        """A kept run's candidate snapshots (`events`, by batch: every member at a bar's first
        batch, none in this bar yet), counted, with the journal's bar state left as batch by
        batch leaves it (`opening`: the members at the first batch of the run's last bar)."""
        bar_ms, bar = self.cfg.pool.bar_ms, self._bar
        for t, start in enumerate(starts):
            if start // bar_ms != bar:
                bar, events[t] = start // bar_ms, sizes[t]
        if bar != self._bar:
            self._bar, self._emitted = bar, set(opening)
        self.counters["candidate_snapshots"] += sum(events)

    def _on_new_rows(self, rows: IntArray) -> None:
        self.anomaly.reset_rows(rows)
        self.ranker.reset_rows(rows)
        symbols = self.windows.symbols
        self.filters.note_bases(s for s in (symbols[r] for r in rows.tolist()) if s is not None)
        self.filters.on_new_rows(rows, symbols)
        for row in rows.tolist():
            symbol = symbols[row]
            listed = self.listings.listing_ms(symbol) if symbol is not None else None
            if listed is not None:
                self.ranker.listing_ms[row] = float(listed)
        self._social_dirty = True

    def _apply_social(self, now_ms: int) -> None:
        """Copy social scores into the ranker's arrays when posts arrived or once per window step."""
        if not self._social_dirty and now_ms < self._social_next_ms:
            return
        self._social_dirty = False
        self._social_next_ms = now_ms + max(1000, self.cfg.social.window_ms // 30)
        if not len(self._social_rows) and self.social.idle:
            return  # no score to clear, none to copy (a replay without posts: every minute)
        r = self.ranker
        r.social_velocity[self._social_rows] = 0.0
        r.social_sentiment[self._social_rows] = 0.0
        rows = []
        for base, score in self.social.scores(now_ms).items():
            row = self.windows.row_of(f"{base}/{self.quote_asset}")
            if row is None:
                continue
            r.social_velocity[row] = score.velocity
            r.social_sentiment[row] = score.sentiment
            rows.append(row)
        self._social_rows = np.asarray(rows, dtype=np.int64)

    def _mark_social(self, times: Iterable[int]) -> None:
        """`_apply_social` at each of `times` in turn while social scores are idle (none held and
        none copied: `push_run`'s condition), where it only moves its clock: one loop over a
        run's minutes rather than a call a minute (40,000 a replayed month; `test_block.py`
        holds the two to the same state)."""
        step = max(1000, self.cfg.social.window_ms // 30)
        dirty, due = self._social_dirty, self._social_next_ms
        for now in times:
            if dirty or now >= due:
                dirty, due = False, now + step
        self._social_dirty, self._social_next_ms = dirty, due

    def trace_id(self, symbol: str, bar_start: int) -> str:
        """The decision-chain id of `symbol` in the bar starting at `bar_start` (cached for the bar)."""
        if bar_start // self.cfg.pool.bar_ms != self._trace_bar:
            return make_trace_id(self.run_id, symbol, bar_start)
        trace = self._traces.get(symbol)
        if trace is None:
            trace = self._traces[symbol] = self._trace_ids.of(symbol, bar_start)
        return trace

    def _members(self, m: _Minute, ranked: list[str], rows: Mapping[str, int], bar_start: int) -> Members:
        """The pool's members after `_settle`, which opened the bar's trace cache (`trace_id`)."""
        return self._members_at(m.now, m.table, m.batch, rows, bar_start, ranked)

    def _members_at(
        self, now: int, table: Callable[[], FigureTable], batch: int, rows: Mapping[str, int], bar_start: int,
        ranked: list[str],
    ) -> Members:  # fmt: skip
        """`_members` of the batch at `now`, `batch` of the figure table `table()` (`ranked` last:
        `_settle_kept` binds the rest, and a partial called with positional arguments alone is
        the cheaper)."""
        traces, of = self._traces, self._trace_ids.of
        ids = []
        for symbol in ranked:
            trace = traces.get(symbol)
            if trace is None:
                trace = traces[symbol] = of(symbol, bar_start)
            ids.append(trace)
        if not ranked:  # no table to make for an empty pool
            return Members(now, ranked, ids, _NO_TABLE, 0, [])
        return Members(now, ranked, ids, table(), batch, [rows[s] for s in ranked])

    # ------------------------------------------------------------------ journal
    def _journal(self, m: _Minute, bar: int, bar_start: int, members: Members, entered: tuple[str, ...]) -> int:
        if self.sink is None:
            return 0
        new_bar = bar != self._bar
        if new_bar:
            self._bar = bar
            self._emitted = set()
        emitted = 0
        if new_bar or entered:
            emitted = self._emit_members(m, members, self._emitted)
        if m.refused:
            symbols = m.symbols
            rejected_hot = [(row, s) for row in m.refused if (s := symbols[row]) is not None and s not in self._emitted]
            heat = m.heat
            for row, symbol in rejected_hot:
                market_rank = 1 + int(np.count_nonzero(heat > heat[row]))
                trace = self.trace_id(symbol, bar_start)
                self._emit_candidate(m, symbol, row, trace, market_rank, False)
                emitted += 1
        self.counters["candidate_snapshots"] += emitted
        return emitted

    def _emit_members(self, m: _Minute | None, members: Members, done: set[str]) -> int:
        """`_emit_candidate` of each pool member not journaled in this bar yet (not in `done`,
        which takes them), accepted, inline: every minute of a replay opens a bar, so this runs
        for some 45,000 members a month. The minute `m` is read only for payloads: without them
        (a kept run's, `_hand_over`) none is built."""
        assert self.sink is not None
        emit, keeps, now = self.sink.emit, self.sink.keeps_payloads, members.ts_ms
        emitted = 0
        for rank, (symbol, trace) in enumerate(zip(members.symbols, members.trace_ids, strict=True), start=1):
            if symbol in done:
                continue
            if keeps:
                assert m is not None
                payload = self._payload(m, symbol, m.index[symbol], rank, True)
            else:
                payload = {}
            emit("candidate_snapshot", ts_ms=now, payload=payload, trace_id=trace, symbol=symbol)
            done.add(symbol)
            emitted += 1
        return emitted

    def _journal_listings(self, now: int) -> None:
        """The listings found since the last journaled batch, as `listing` events (module doc)."""
        assert self.sink is not None
        for ev in self._unjournaled:
            detail = f"listing dated {ev.reason}, {max(0.0, (now - ev.ts_ms) / 60_000):.0f} min ago"
            payload = {"listed_ms": ev.ts_ms, "reason": ev.reason, "detail": detail}
            self.sink.emit("listing", ts_ms=now, payload=payload, symbol=ev.symbol)
        self.counters["listing_events"] += len(self._unjournaled)
        self._unjournaled = []

    def _emit_candidate(self, m: _Minute, symbol: str, row: int, trace: str, rank: int, accepted: bool) -> None:
        assert self.sink is not None
        payload = self._payload(m, symbol, row, rank, accepted) if self.sink.keeps_payloads else {}
        self.sink.emit("candidate_snapshot", ts_ms=m.now, payload=payload, trace_id=trace, symbol=symbol)
        self._emitted.add(symbol)

    def _payload(self, m: _Minute, symbol: str, row: int, rank: int, accepted: bool) -> dict[str, Any]:
        """A `candidate_snapshot` payload: everything "why (not) this coin?" needs afterwards."""
        d, now = m.detail(), m.now
        frame, scores = d.frame, d.scores
        age = _age_days(now, float(d.listing_ms[row]))
        qv = float(d.quote_volume_24h[row])
        high, low = float(d.high_24h[row]), float(d.low_24h[row])
        payload: dict[str, Any] = {
            "heat": round(float(frame.heat[row]), 4),
            "components": {k: round(float(v[row]), 6) for k, v in frame.parts.items()},
            "rank": rank,
            "price": float(d.last_price[row]),
            "filters": self.filters.explain(symbol, qv, age, member=symbol in self._banded),
            "accepted": accepted,
            "returns": {k: _known(v[row], 6) for k, v in scores.returns.items()},
            "price_z": round(float(scores.price_z[row]), 4),
            "volume_z": round(float(scores.volume_z[row]), 4),
            "volume_surge": round(_finite(scores.volume_surge[row]), 4),
            "coin_age_days": None if age is None else round(age, 4),
            "sources": list(frame.sources(row)),
            "quote_volume_24h": qv if qv == qv else None,
            "run_up_60m": _known(scores.run_up[row], 6),
            "range_24h": _known(high / low - 1.0 if low > 0.0 else math.nan, 6),
            "trade_count_24h": int(d.trade_count_24h[row]),
        }
        return payload

    # ------------------------------------------------------------------ reads
    def snapshot(self) -> PoolSnapshot:
        return self.pool.snapshot()

    @property
    def last_frame(self) -> HeatFrame | None:
        """The heat of the batch settled last (None before the first)."""
        last = self._settled_last()
        return None if last is None else last[0]

    @property
    def last_scores(self) -> AnomalyScores | None:
        """The anomaly scores of the batch settled last (None before the first)."""
        last = self._settled_last()
        return None if last is None else last[1]

    def _settled_last(self) -> tuple[HeatFrame, AnomalyScores] | None:
        if self._last_pending is not None:  # built now (from the block's arrays, for a batch settled with it)
            d, self._last_pending = self._last_pending(), None
            self._last = d.frame, d.scores
        return self._last

    def all_counters(self) -> dict[str, int]:
        """Every counted reason, prefixed by the part that counted it."""
        out: dict[str, int] = {}
        parts: Mapping[str, Counter[str]] = {
            "windows": self.windows.counters,
            "listings": self.listings.counters,
            "social": self.social.counters,
            "discovery": self.counters,
        }
        for prefix, counter in parts.items():
            for key, value in counter.items():
                out[f"{prefix}.{key}"] = value
        return out


def _by_batch(mask: npt.NDArray[np.bool_]) -> list[list[int]]:
    """The columns set in each row of a [batch, row] mask, in order: one `nonzero` for a block."""
    columns: list[int] = mask.nonzero()[1].tolist()
    ends: list[int] = np.cumsum(np.count_nonzero(mask, axis=1)).tolist()
    return [columns[start:end] for start, end in zip([0, *ends], ends, strict=False)]


def _inside(span: list[tuple[int, int]], n: int) -> list[bool]:
    """Whether a symbol is a member at each of a run's first `n` batches, from its `KeptRun.spans`."""
    out = [False] * n
    for a, b in span:
        a, b = min(a, n), min(b, n)
        out[a:b] = [True] * (b - a)
    return out


def _placed(ids: list[str], inside: list[bool]) -> list[str]:
    """`ids`, one for each batch `inside` marks, at their batches (an empty string elsewhere)."""
    taken = iter(ids)
    return [next(taken) if flag else "" for flag in inside]


def _age_days(now_ms: int, listing_ms: float) -> float | None:
    """Days since a listing time (NaN: unknown, None)."""
    return None if listing_ms != listing_ms else max(0.0, (now_ms - listing_ms) / DAY_MS)


def _finite(x: float | np.floating[Any]) -> float:
    v = float(x)
    return v if math.isfinite(v) else 0.0


def _known(x: float | np.floating[Any], digits: int) -> float | None:
    """`x` rounded for the journal, or None (null) where it is unknown: a return or run-up
    without the history behind it is no return of 0, and a reader must be able to tell."""
    v = float(x)
    return round(v, digits) if math.isfinite(v) else None



