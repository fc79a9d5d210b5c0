"""Rolling per-symbol state for the whole market, as a struct of numpy arrays.

Every full-market `TickerBatch` (~2,000 symbols a second) updates all symbols with a handful
of vector operations. A dict of deques per symbol would cost 2,000 Python calls per batch;
here a symbol is a *row* of fixed-capacity arrays, found through a `symbol -> row` index, and
its history is a ring of *slots* (one price / volume sample per `slot_ms`), so memory is
`capacity x history_slots` floats whatever the market does.

Volume. Exchanges report a 24 h quote volume, not per-interval volume. Between two updates
`dt` apart, a rolling 24 h figure changes by (volume traded in dt) - (volume that left the
window, traded 24 h earlier), so the interval volume is `diff + departing`. The departing
volume is read from our own estimates of 24 h ago, kept in a day ring of `volume_bucket_ms`
buckets (rate of that bucket x dt); until a symbol has a day of history (or where that bucket
is unknown) it is assumed traded at the window's average rate, `V_prev x dt / 24h`; a feed
that holds the day's candles (a backtest's replay) fills the ring from them right after its
first batch (`seed_day`), so a replay reads real departures from its first minute and scores a
minute the same whatever time it started from. Reading the real departure matters: a day
after a burst (a listing, a crash) the burst leaves the window, and the average-rate guess
would read a day of zeros, then every ordinary minute as a surge. Some feeds reset the
figure daily (it falls to near zero at midnight): a fall below (1 - `volume_reset_drop`) x
(V_prev - departing) is such a reset, and that interval's volume is *unknown* (NaN in its
slot), never a spike or a negative. A symbol silent for several
slots gets no volume for the update that ends the silence (the diff spans too long to place).

A ticker whose event time is not past that of the symbol's last volume sample did not change:
nothing traded since (a replayed pair without a candle, an exchange not renewing a pair's
ticker, ccxt repeating the one it holds). It is no sample: it adds no volume, and the next new
ticker's diff starts from the last sample. Its 24 h figure still falls by what leaves the
window, and estimating that departure (the bucket's average rate, not the minute that left)
made volume of nothing: through an outage, about half the silent minutes came out positive,
and the hour after it was scored against made-up volume.

An estimate below zero (or below `VOLUME_NOISE` of the average rate: rounding, not trade) adds
nothing to its slot, and a slot that ends with no positive volume
is unknown too, not a sample of 0 (`log_volume`, which the baselines read): with the guessed
departures of a first day, most minutes after a busy day estimate below zero, and an outage
(the market silent, the figure draining) fills the ring with zeros. As samples, those zeros
made the baseline's median log volume 0 and every ordinary minute a huge volume z-score; as
unknowns they leave a baseline of the slots that did show volume, and none until enough do.

Time is the batch's `ts_ms`; a batch not newer than the last one accepted is rejected and
counted. Symbols not seen for `stale_after_ms` are swept every `cleanup_interval_ms`, their
rows returned to a free-list for reuse. Rows allocated in a batch are reported in
`WindowUpdate.new_rows` so per-row state kept elsewhere (baselines, cool-downs, filters) is
reset when a row changes owner.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from engine.config.sections.discovery import WindowsSection
from engine.discovery import rolling_robust
from engine.domain.ticker import FloatArray, IntArray, MinuteVolumes, TickerBatch, TickerRun

BoolArray = npt.NDArray[np.bool_]

DAY_MS = 86_400_000
MINUTE_MS = 60_000
RETURN_HORIZONS_MIN: tuple[int, ...] = (1, 5, 15, 60)
RETURN_KEYS: tuple[str, ...] = tuple(f"{m}m" for m in RETURN_HORIZONS_MIN)  # '1m', '5m', ...: the returns' names
NO_TIME = np.iinfo(np.int64).min
# An interval's volume estimate below this share of the 24 h figure's average rate adds nothing
# to its slot: it is the rounding of two 24 h figures (float32 sums in a replay: up to ~4e-4 of a
# minute's average), not trade, and a slot made of such remainders must read as empty (unknown).
VOLUME_NOISE = 0.01


def log_volume(volume: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """log1p of slot volumes, NaN where a slot holds no positive volume (see the module
    docstring: an estimate clipped to zero, a silent or outage slot is unknown, not a zero)."""
    with np.errstate(invalid="ignore"):
        logs: FloatArray = np.log1p(volume, out=out)
        logs[logs <= 0.0] = np.nan  # log1p(v) > 0 exactly where v > 0 (NaN compares false: stays)
    return logs


def sliding_fmin(x: FloatArray, w: int) -> FloatArray:
    """[row, i] the lowest of x[row, i : i + w], NaN-skipping (NaN where all are NaN), for every
    full window of the rows of `x`.

    By doubling: the minimum over spans of 1, 2, 4, ... columns, then two overlapping spans
    cover w: a handful of passes over `x` instead of w per window (a minimum is exact in any
    order, so it equals `np.fmin.reduce` over each window)."""
    out, span = x, 1
    while 2 * span <= w:
        out = np.fmin(out[:, :-span], out[:, span:])
        span *= 2
    if span < w:
        out = np.fmin(out[:, : span - w], out[:, w - span :])
    return out


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """What one accepted batch changed: rows it updated (valid price) and rows it allocated."""

    ts_ms: int
    rows: IntArray
    new_rows: IntArray
    new_slot: bool


_Line = TypeVar("_Line", FloatArray, BoolArray)


@dataclass(frozen=True, slots=True)
class RingState:
    """What scoring reads from the windows, at K batches (axis 0) over rows [0, E) (axis 1).

    One batch is views of the live arrays (`TickerWindows.state`, K = 1); a block of batches is
    what `RingBlock` kept as each batch was folded in: copies, or windows of a timeline of
    slots (views). Scores are element-wise over these arrays (and row-wise over the ring
    axis), so a block of minutes scores exactly as the same minutes would one at a time, at a
    fraction of the per-call cost.
    """

    slot: IntArray  # (K,) absolute slot of the ring's head
    active: BoolArray  # (K, E)
    last_price: FloatArray  # (K, E)
    low_done: FloatArray  # (K, E) lowest slot price of the last hour's completed slots
    price_ring: FloatArray  # (K, E, R)
    volume_ring: FloatArray  # (K, E, R)
    # log(price_ring) and log_volume(volume_ring), where the rings' owner kept them (`RingBlock`):
    # the baselines read them, and a block's rings repeat all but a slot or two per batch.
    log_price_ring: FloatArray | None = None
    log1p_volume_ring: FloatArray | None = None
    # (K, E, R) whether a fresh ticker (a trade) reached each slot: the return baseline counts
    # only the returns into such slots (`TickerWindows.traded_ring`).
    traded_ring: BoolArray | None = None
    # (K,) the slot each batch's ring column 0 is counted from: slot s sits in column
    # (s - origin) % R. None: 0, the live ring's own layout (column s % R); a timeline's window
    # holds its oldest slot in column 0 (`RingBlock.state`).
    origin: IntArray | None = None
    # (K, E, R) the log return into each slot from the one before it, NaN where no fresh ticker
    # reached the slot (log_price_ring's differences, masked by traded_ring), where the rings'
    # owner kept them (a `RingBlock`'s timeline: once per slot, not once per batch and slot).
    # The oldest slot's column holds no return of the window: readers leave it out.
    log_return_ring: FloatArray | None = None
    # (E, R + K) the timelines log_return_ring and log1p_volume_ring are windows of (batch j's:
    # columns j + 1 .. j + R), where the rings are (`RingBlock.state`): a window's known values
    # are counted from one cumulative sum along them, not window by window.
    log_return_line: FloatArray | None = None
    log1p_volume_line: FloatArray | None = None
    # The ring column every batch's current slot is in, where the owner knows them all the same
    # (a timeline's windows: R - 1, `RingBlock.state`): `head` answers it without working the
    # heads out (three numpy calls, ~10 us, for each of a block's three reads of the rings).
    line_head: int | None = None

    def heads(self) -> IntArray:
        """(K,) ring column of each batch's current slot."""
        r = self.price_ring.shape[2]
        heads: IntArray = (self.slot if self.origin is None else self.slot - self.origin) % r
        return heads

    def head(self) -> int | None:
        """The ring column of every batch's current slot, where it is the same for all (a
        timeline's windows: `RingBlock.state`); None where it is not. Where it is, a column of
        the rings is a [batch, row] view, read without a gather."""
        if self.line_head is not None:
            return self.line_head
        heads = self.heads()
        h = int(heads[0]) if len(heads) else None
        return h if (heads == h).all() else None

    def _columns(self, ring: _Line, back: Sequence[int]) -> list[_Line]:
        """[batch, row] ring columns `back[i]` slots before each batch's current one: views where
        the batches share a head column (`head`), else one gather each."""
        k, r = len(self.slot), ring.shape[2]
        h = self.head()
        if h is not None:
            return [ring[:, :, (h - b) % r] for b in back]
        batches, heads = np.arange(k), self.heads()
        return [ring[batches, :, (heads - b) % r] for b in back]

    def returns(self, slots_back: Sequence[int]) -> FloatArray:
        """[batch, horizon, row] simple returns over `slots_back` slots each, NaN where unknown:
        one division for every horizon and batch."""
        k, e = self.last_price.shape
        base = np.empty((k, len(slots_back), e))
        for i, column in enumerate(self._columns(self.price_ring, slots_back)):
            base[:, i] = column
        with np.errstate(invalid="ignore", divide="ignore"):
            out: FloatArray = np.divide(self.last_price[:, None, :], base, out=base)
        out -= 1.0
        return out

    def recent_volume(self, slots: int) -> FloatArray:
        """[batch, row] quote volume of the last `slots` slots, the current one included (NaN
        where a slot's volume is unknown), summed newest first."""
        columns = self._columns(self.volume_ring, range(slots))
        vol: FloatArray = columns[0].copy()
        for column in columns[1:]:
            vol += column
        return vol

    def traded_within(self, slots: int) -> BoolArray:
        """[batch, row] whether a fresh ticker reached any of the last `slots` slots, the current
        one included."""
        if self.traded_ring is None:
            raise ValueError("this RingState holds no traded ring")
        columns = self._columns(self.traded_ring, range(slots))
        out: BoolArray = columns[0].copy()
        for column in columns[1:]:
            out |= column
        return out

    def run_up(self) -> FloatArray:
        """[batch, row] last / lowest price of the last 60 min - 1 (0 at the low, NaN unknown)."""
        out: FloatArray = self.last_price / np.fmin(self.low_done, self.last_price)
        out -= 1.0
        return out


def _windows(line: _Line, count: int, r: int) -> _Line:
    """[batch, row, slot] views of the `count` windows of `r` slots of a [row, slot] timeline
    (C-contiguous) whose first `r` columns are the ring before the first batch: batch j's,
    columns j + 1 .. j + r."""
    rows, slots = line.strides
    # An ndarray over the line's buffer: `as_strided` builds the same view through an
    # `__array_interface__` round trip: ~10 us a call against ~1 us (six calls a block).
    out: _Line = np.ndarray((count, len(line), r), line.dtype, line, slots, (slots, rows, slots))
    out.flags.writeable = False
    return out


class RingBlock:
    """The `RingState` of up to `size` batches, kept as each is folded in (see `RingState`); with
    the rings' logs, which the baselines read (60 copies of nearly the same ring need the logs
    of a slot or two each, not of the whole ring).

    Batches folded in at once (`TickerWindows.update_many` / `update_run`) each open the slot
    after the one before, so the block keeps them as a timeline per row: the ring before the
    block, oldest slot first, then one new slot per batch (`extend`); batch j's ring is the
    window of the R slots up to its own, read as a view (`state`). Copying 60 rings of R slots
    (five rings: some 4 MB a block) cost more than all that scoring reads of them. A batch folded in on
    its own (`take`) is copied, and turns the timeline's batches into copies first (a block of
    both kinds is rare: a new symbol or a bad price closes or interrupts a run).

    The block's rows are the windows' extent when it opens. The windows allocate no row while
    a block is open (a caller that sees new symbols coming closes the block first), and rows a
    sweep frees are all NaN and inactive, so copying the same rows every batch is exact."""

    def __init__(self, windows: TickerWindows, size: int) -> None:
        e, r = windows.extent, windows.history_slots
        self.extent = e
        self.count = 0
        self._windows = windows
        self._slot = np.empty(size, np.int64)
        self._origin = np.empty(size, np.int64)
        self._active = np.empty((size, e), np.bool_)
        self._last_price = np.empty((size, e))
        self._low_done = np.empty((size, e))
        # The batches' rings: copies (`take`)...
        self._price_ring = np.empty((size, e, r))
        self._volume_ring = np.empty((size, e, r))
        self._log_price_ring = np.empty((size, e, r))
        self._log1p_volume_ring = np.empty((size, e, r))
        self._traded_ring = np.empty((size, e, r), np.bool_)
        # ...or windows of the timelines of price, volume, traded and their logs (`extend`),
        # while every batch of the block came that way.
        self._lines: tuple[FloatArray, FloatArray, BoolArray, FloatArray, FloatArray] = (
            np.empty((e, r + size)), np.empty((e, r + size)), np.empty((e, r + size), np.bool_),
            np.empty((e, r + size)), np.empty((e, r + size)),
        )  # fmt: skip
        self._returns_line = np.empty((e, r + size))  # `RingState.log_return_ring`'s timeline
        self._on_lines = False

    def _rings(self) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray, FloatArray]:
        return self._price_ring, self._volume_ring, self._traded_ring, self._log_price_ring, self._log1p_volume_ring

    def _windows_of(self, count: int) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray, FloatArray]:
        """The timelines' windows of batches [0, count): batch j's, columns j + 1 .. j + R,
        as [batch, row, slot] views."""
        r = self._windows.history_slots
        price, volume, traded, log_price, log1p_volume = self._lines
        return (
            _windows(price, count, r), _windows(volume, count, r), _windows(traded, count, r),
            _windows(log_price, count, r), _windows(log1p_volume, count, r),
        )  # fmt: skip

    def _copy_lines(self) -> None:
        """Turn the timeline's batches into copies, before a batch that is copied joins them."""
        if self._on_lines:
            k = self.count
            for ring, window in zip(self._rings(), self._windows_of(k), strict=True):
                ring[:k] = window
            self._on_lines = False

    def take(self) -> None:
        """Copy the windows' state after the batch just folded in."""
        self._copy_lines()
        w, k, e = self._windows, self.count, self.extent
        self._slot[k] = w.slot
        self._origin[k] = 0
        self._active[k] = w.active[:e]
        self._last_price[k] = w.last_price[:e]
        self._low_done[k] = w._low_done[:e]
        self._price_ring[k] = w.price_ring[:e]
        self._volume_ring[k] = w.volume_ring[:e]
        self._traded_ring[k] = w.traded_ring[:e]
        with np.errstate(invalid="ignore", divide="ignore"):
            np.log(self._price_ring[k], out=self._log_price_ring[k])
        log_volume(self._volume_ring[k], out=self._log1p_volume_ring[k])
        self.count = k + 1

    def lines(self, k_n: int) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Where a steady fold of `k_n` batches writes its [row, slot] timelines of price, volume
        and traded (the ring before the fold, oldest slot first, then each batch's new slot),
        for `extend` to keep: the block's own timelines from its last window on, where its
        batches are all windows of them (nothing is copied into them then), else new arrays."""
        c, r = self.count, self._windows.history_slots
        if c == 0 or self._on_lines:
            cols = slice(c, c + r + k_n)
            price, volume, traded = self._lines[:3]
            return price[:, cols], volume[:, cols], traded[:, cols]
        e = self.extent
        return np.empty((e, r + k_n)), np.empty((e, r + k_n)), np.empty((e, r + k_n), np.bool_)

    def extend(self, lines: tuple[FloatArray, FloatArray, BoolArray], slots: IntArray) -> None:
        """Keep the batches of a steady fold: `slots` [batch], one slot after the other, and the
        fold's timelines, as `lines` gave them and the fold filled them. The slots, activity,
        prices and lows are the caller's to write."""
        r, k_n, c = self._windows.history_slots, len(slots), self.count
        if c == 0 or self._on_lines:
            # The lines are the block's own: their logs where they are new (at the first fold,
            # the ring's too; at a later one, its ring is the last window's, logged already).
            price, volume, traded, log_price, log1p_volume = self._lines
            new = slice(r + c if c else 0, r + c + k_n)
            with np.errstate(invalid="ignore", divide="ignore"):
                np.log(price[:, new], out=log_price[:, new])
            log_volume(volume[:, new], out=log1p_volume[:, new])
            # The log return into each slot (from the one before it on the timeline), NaN where no
            # trade reached it: what the return baseline reads of every window, taken once here.
            # Column 0 has no slot before it; no window reads it (batch j's starts at j + 1).
            new = slice(max(new.start, 1), new.stop)
            returns = self._returns_line
            np.subtract(log_price[:, new], log_price[:, new.start - 1 : new.stop - 1], out=returns[:, new])
            returns[:, new][~traded[:, new]] = np.nan
            self._on_lines = True
        else:  # after copied batches: copies too, of the fold's own windows
            with np.errstate(invalid="ignore", divide="ignore"):
                logs = np.log(lines[0]), log_volume(lines[1])
            for ring, line in zip(self._rings(), (*lines, *logs), strict=True):
                ring[c : c + k_n] = _windows(line, k_n, r)
        self._origin[c : c + k_n] = slots - (r - 1)

    def state(self) -> RingState:
        k, r = self.count, self._windows.history_slots
        if not self._on_lines:
            p, v, t = self._price_ring[:k], self._volume_ring[:k], self._traded_ring[:k]
            lp, lv = self._log_price_ring[:k], self._log1p_volume_ring[:k]
            return RingState(
                self._slot[:k], self._active[:k], self._last_price[:k], self._low_done[:k], p, v, lp, lv, t,
                self._origin[:k],
            )  # fmt: skip
        price, volume, traded, log_price, log_volume_ = self._windows_of(k)
        return RingState(
            self._slot[:k], self._active[:k], self._last_price[:k], self._low_done[:k], price, volume, log_price,
            log_volume_, traded, self._origin[:k], _windows(self._returns_line, k, r), self._returns_line[:, : r + k],
            self._lines[4][:, : r + k], r - 1 if k else None,
        )  # fmt: skip


class TickerWindows:
    """Rolling windows of every symbol: prices and volumes by slot, 24 h figures, trades; read
    through `state()` (`RingState`)."""

    def __init__(self, cfg: WindowsSection) -> None:
        self.cfg = cfg
        c, r = cfg.capacity, cfg.history_slots
        self.capacity = c
        self.history_slots = r
        self.slot_ms = cfg.slot_ms
        self.counters: Counter[str] = Counter()
        self.symbols: list[str | None] = [None] * c
        self.index: dict[str, int] = {}
        self._free: list[int] = list(range(c - 1, -1, -1))  # kept descending: pop() gives the lowest row
        self.active = np.zeros(c, dtype=bool)
        self.last_price = np.full(c, np.nan)
        self.quote_volume_24h = np.full(c, np.nan)
        self.open_24h = np.full(c, np.nan)
        self.high_24h = np.full(c, np.nan)
        self.low_24h = np.full(c, np.nan)
        self.trade_count_24h = np.full(c, -1, dtype=np.int64)
        self.last_seen_ms = np.full(c, NO_TIME, dtype=np.int64)
        self.first_seen_ms = np.full(c, NO_TIME, dtype=np.int64)
        self._volume_ms = np.zeros(c, dtype=np.int64)  # 0: "long ago", so a first diff is a gap
        # The last volume sample of each row: its ticker's event time and 24 h figure, which the
        # next sample's diff starts from (a repeated ticker is no sample: see the module doc).
        self._sample_event_ms = np.full(c, NO_TIME, dtype=np.int64)
        self._sample_qv = np.full(c, np.nan)
        self.price_ring = np.full((c, r), np.nan)
        self.volume_ring = np.full((c, r), np.nan)
        # Whether a fresh ticker reached the slot. A slot without one holds the price carried
        # forward (`_advance`) or a repeated ticker's: a return of exactly 0 that is no
        # observation, and an outage's worth of them collapsed every return baseline to its floor.
        self.traded_ring = np.zeros((c, r), dtype=bool)
        self._low_done = np.full(c, np.nan)  # lowest slot price over the last hour's completed slots
        self._bucket_ms = cfg.volume_bucket_ms
        self.day_ring = np.full((c, DAY_MS // cfg.volume_bucket_ms), np.nan, dtype=np.float32)
        self._departing = np.full(c, np.nan)  # the current bucket's content of 24 h ago
        self._bucket = -1
        self._volume_since_ms = np.full(c, NO_TIME, dtype=np.int64)  # first volume sample of the row
        self.slot = -1  # absolute slot number (ts // slot_ms) of the ring's head
        self.last_ts_ms: int | None = None
        self._last_cleanup_ms: int | None = None
        self._cached_symbols: tuple[str, ...] | None = None
        self._cached_pos: IntArray = np.zeros(0, dtype=np.int64)
        self._cached_rows: IntArray = np.zeros(0, dtype=np.int64)
        # The same two as slices when the batch maps onto consecutive rows in order (a replay's
        # batches do): slicing a column costs a fraction of a gather, and a batch a minute does
        # some twenty of them.
        self._cached_keys: tuple[IntArray | slice, IntArray | slice] = (self._cached_pos, self._cached_rows)
        self._cached_all = False  # the cached mapping is row i <- position i for every row in use
        self._active_rows: IntArray | None = None
        self._extent = 0  # valid while _active_rows is
        self._gap_ms = cfg.volume_gap_slots * cfg.slot_ms
        self._keep_after_reset = 1.0 - cfg.volume_reset_drop
        self.generation = 0  # counts row (de)allocations: the symbol <-> row mapping changed

    # ----------------------------------------------------------------------------- rows
    @property
    def head(self) -> int:
        """Ring column of the current slot."""
        return self.slot % self.history_slots

    @property
    def active_rows(self) -> IntArray:
        return self._refresh_rows() if self._active_rows is None else self._active_rows

    @property
    def extent(self) -> int:
        """One past the highest row in use: rows are handed out lowest first, so vector work runs
        on the views `[:extent]` instead of the whole capacity (or a gathered copy)."""
        if self._active_rows is None:
            self._refresh_rows()
        return self._extent

    def _refresh_rows(self) -> IntArray:
        """The rows in use and their extent, computed once per (de)allocation, not per read."""
        rows = self._active_rows = np.flatnonzero(self.active)
        self._extent = int(rows[-1]) + 1 if len(rows) else 0
        return rows

    def __len__(self) -> int:
        return len(self.index)

    def row_of(self, symbol: str) -> int | None:
        return self.index.get(symbol)

    def invalidate_mapping(self) -> None:
        """Forget the cached batch-symbol mapping (call when admission rules change)."""
        self._cached_symbols = None

    def _allocate(self, symbol: str, ts_ms: int) -> int:
        if not self._free:
            self.counters["capacity_full"] += 1
            return -1
        row = self._free.pop()
        self.index[symbol] = row
        self.symbols[row] = symbol
        self.active[row] = True
        self.first_seen_ms[row] = ts_ms
        self.last_seen_ms[row] = ts_ms
        self._active_rows = None
        self.generation += 1
        return row

    def _release(self, rows: IntArray) -> None:
        for row in rows.tolist():
            symbol = self.symbols[row]
            if symbol is not None:
                del self.index[symbol]
            self.symbols[row] = None
        self._free.extend(rows.tolist())
        self._free.sort(reverse=True)
        self.active[rows] = False
        for arr in (self.last_price, self.quote_volume_24h, self.open_24h, self.high_24h, self.low_24h):
            arr[rows] = np.nan
        self.trade_count_24h[rows] = -1
        self.last_seen_ms[rows] = NO_TIME
        self.first_seen_ms[rows] = NO_TIME
        self._volume_ms[rows] = 0
        self._sample_event_ms[rows] = NO_TIME
        self._sample_qv[rows] = np.nan
        self.price_ring[rows] = np.nan
        self.volume_ring[rows] = np.nan
        self.traded_ring[rows] = False
        self.day_ring[rows] = np.nan
        self._departing[rows] = np.nan
        self._low_done[rows] = np.nan
        self._volume_since_ms[rows] = NO_TIME
        self._active_rows = None
        self._cached_symbols = None
        self.generation += 1

    def maps_known(self, batch: TickerBatch | TickerRun) -> bool:
        """Whether `batch` names exactly the symbols of the last mapped batch, so folding it in
        allocates no row (the mapping cache answers it)."""
        cached = self._cached_symbols
        return cached is not None and (batch.symbols is cached or batch.symbols == cached)

    def _map(self, batch: TickerBatch, admit: Callable[[str], bool] | None) -> tuple[IntArray, IntArray, IntArray]:
        """(batch positions, their rows, rows allocated now). Cached while the symbol tuple repeats."""
        symbols = batch.symbols
        if self._cached_symbols is not None and (symbols is self._cached_symbols or symbols == self._cached_symbols):
            return self._cached_pos, self._cached_rows, np.zeros(0, dtype=np.int64)
        n = len(symbols)
        # Known symbols in one C-level pass (a !ticker@arr batch holds only the symbols that
        # changed, so the tuple differs from batch to batch); Python only for the rare rest.
        rows = np.fromiter(map(self.index.get, symbols, repeat(-1, n)), dtype=np.int64, count=n)
        if len(set(symbols)) != n:
            first: set[str] = set()
            for i, symbol in enumerate(symbols):
                if symbol in first:
                    rows[i] = -2  # a repeat: the first occurrence counts
                    self.counters["duplicate_symbol"] += 1
                first.add(symbol)
        new: list[int] = []
        for i in np.flatnonzero(rows == -1).tolist():
            symbol = symbols[i]
            if not isinstance(symbol, str) or symbol.count("/") != 1 or symbol.startswith("/") or symbol.endswith("/"):
                self.counters["malformed_symbol"] += 1
                continue
            if admit is not None and not admit(symbol):
                self.counters["unknown_symbol"] += 1
                continue
            row = self._allocate(symbol, batch.ts_ms)
            if row >= 0:
                new.append(row)
                rows[i] = row
        new_rows = np.asarray(new, dtype=np.int64)
        if len(new_rows):
            self.price_ring[new_rows] = np.nan
            self.volume_ring[new_rows] = np.nan
            self.traded_ring[new_rows] = False
            self.day_ring[new_rows] = np.nan
            self._departing[new_rows] = np.nan
            self._low_done[new_rows] = np.nan
        pos = np.flatnonzero(rows >= 0)
        self._cached_symbols = symbols
        self._cached_pos = pos
        self._cached_rows = rows = rows[pos]
        m = len(rows)
        in_order = m == n and m > 0 and int(rows[-1]) - int(rows[0]) == m - 1 and bool((np.diff(rows) == 1).all())
        self._cached_keys = (slice(0, m), slice(int(rows[0]), int(rows[0]) + m)) if in_order else (pos, rows)
        self._cached_all = in_order and int(rows[0]) == 0 and m == self.extent and bool(self.active[:m].all())
        return pos, rows, new_rows

    # ----------------------------------------------------------------------------- update
    def update(self, batch: TickerBatch, admit: Callable[[str], bool] | None = None) -> WindowUpdate | None:
        """Fold one batch in; None (and a counted reason) when the batch is out of order or a duplicate.

        `admit(symbol)` decides whether a symbol never seen before gets a row (e.g. only symbols
        known from market info); refused ones are counted as `unknown_symbol`.
        """
        ts = batch.ts_ms
        if self.last_ts_ms is not None and ts <= self.last_ts_ms:
            self.counters["duplicate_batch" if ts == self.last_ts_ms else "out_of_order_batch"] += 1
            return None
        self.last_ts_ms = ts
        self.counters["batches"] += 1
        pos, rows, new_rows = self._map(batch, admit)
        at, into = self._cached_keys  # batch positions and rows, as slices where they can be
        slot = ts // self.slot_ms
        new_slot = slot != self.slot
        if new_slot:
            self._advance(slot)
        head = self.head

        price = batch.last[at]
        ok = price > 0.0
        ok &= price < np.inf
        n_ok = int(np.count_nonzero(ok))
        if n_ok != len(pos):
            self._count_bad_prices(price[~ok])
            pos, rows = pos[ok], rows[ok]
            at, into = pos, rows
            price = price[ok]
        self.last_price[into] = price
        self.price_ring[into, head] = price
        self.last_seen_ms[into] = ts
        self._update_volume(batch, at, into, rows, ts, head)
        self.open_24h[into] = batch.open_24h[at]
        self.high_24h[into] = batch.high_24h[at]
        self.low_24h[into] = batch.low_24h[at]
        self.trade_count_24h[into] = batch.trade_count_24h[at]
        self._sweep(ts)  # after the update: a market-wide outage does not make everyone stale
        return WindowUpdate(ts_ms=ts, rows=rows, new_rows=new_rows, new_slot=new_slot)

    def steady(self, batch: TickerBatch, last_ts_ms: int | None) -> bool:
        """Whether `batch`, following one at `last_ts_ms`, could go through `update_many`: it
        names every row in use, in row order (the mapping cache says so), and opens the slot
        right after the last one."""
        return (
            self._cached_all
            and self.maps_known(batch)
            and last_ts_ms is not None
            and batch.ts_ms > last_ts_ms
            and batch.ts_ms // self.slot_ms == last_ts_ms // self.slot_ms + 1
        )

    def update_many(self, batches: Sequence[TickerBatch], block: RingBlock) -> bool:
        """Fold in `batches`, each `steady` after the one before it (the first after the last
        batch folded in), with valid prices and volumes throughout, as `update` would one at a
        time, writing the state after each into `block` (as `RingBlock.take` would). False, with
        nothing changed, when they are not such batches (the caller then folds them one by one).

        Why: a replay's minutes are nearly all of this kind, and `update` spends its time on
        per-call costs (some fifty numpy calls on a few dozen rows). Here the element-wise
        formulas run once over [batch, row] arrays, and only what is sequential (the day
        ring's float32 sums, the bucket turns) steps minute by minute. The results are the
        same bit for bit (`tests/engine/discovery/test_windows.py` compares every array)."""
        e = self.extent
        if not self._fits(len(batches), block):
            return False
        last = self.last_ts_ms
        for b in batches:
            if not self.steady(b, last):
                return False
            last = b.ts_ms
        final = batches[-1]
        return self._fold_steady(
            np.array([b.ts_ms for b in batches], np.int64), np.stack([b.last[:e] for b in batches]),
            np.stack([b.quote_volume_24h[:e] for b in batches]), np.stack([b.event_ms[:e] for b in batches]),
            (final.open_24h[:e], final.high_24h[:e], final.low_24h[:e], final.trade_count_24h[:e]), block,
        )  # fmt: skip

    def update_run(self, run: TickerRun, block: RingBlock) -> bool:
        """`update_many` of the run's batches, read from its [batch, row] arrays (the replay
        tape's own: nothing is stacked); False, with nothing changed, where `update_many`
        would refuse them."""
        e = self.extent
        if not self._fits(len(run), block):
            return False
        ts = run.ts_ms
        last = self.last_ts_ms
        slots = ts // self.slot_ms
        if not (
            self._cached_all
            and self.maps_known(run)
            and last is not None
            and int(ts[0]) > last
            and int(slots[0]) == last // self.slot_ms + 1
            and bool((np.diff(slots) == 1).all())  # each the slot after the one before: `steady`, batch by batch
        ):
            return False
        return self._fold_steady(
            ts, run.last[:, :e], run.quote_volume_24h[:, :e], run.event_ms[:, :e],
            (run.open_24h[-1, :e], run.high_24h[-1, :e], run.low_24h[-1, :e], run.trade_count_24h[-1, :e]), block,
        )  # fmt: skip

    def _fits(self, k_n: int, block: RingBlock) -> bool:
        """Whether `k_n` batches can be folded into `block` at once. More than a ring of slots
        may be: each batch's ring is a window of the fold's timeline, however long it is."""
        return (
            k_n > 0
            and k_n * self.slot_ms < DAY_MS - self._bucket_ms  # each bucket its own day-ring column
            and block.extent == self.extent
            and block.count + k_n <= len(block._slot)
        )

    def _fold_steady(
        self, ts: IntArray, price: FloatArray, qv: FloatArray, event: IntArray,
        final: tuple[FloatArray, FloatArray, FloatArray, IntArray], block: RingBlock,
    ) -> bool:  # fmt: skip
        """The fold of `update_many` once the batches are known steady: `ts` [batch], `price`,
        `qv` and `event` [batch, row] (read only), `final` the last batch's open, high, low and
        trade count by row."""
        k_n, e, r = len(ts), self.extent, self.history_slots
        if not (price.min() > 0.0 and price.max() < np.inf and qv.min() >= 0.0 and qv.max() < np.inf):
            return False  # NaN fails both comparisons too: `update` counts what is wrong
        slots = ts // self.slot_ms
        est, fresh, seen, sample = self._fold_volume(ts, qv, event)
        # Prices: the ring before the block, oldest slot first, then one new slot per batch: a
        # timeline of slots, of which batch j's ring is the window of the r slots up to its own
        # (`RingBlock.extend` keeps it; no ring is copied per batch). Written straight into the
        # block's own timelines where it keeps them (`RingBlock.lines`).
        c = block.count
        h = (self.slot + 1) % r  # the ring's oldest slot: its column, first on the timeline
        lines = block.lines(k_n)
        price_line, volume_line, traded_line = lines
        for line, ring in zip(lines, (self.price_ring, self.volume_ring, self.traded_ring), strict=True):
            line[:, : r - h] = ring[:e, h:]
            line[:, r - h : r] = ring[:e, :h]
        price_line[:, r:] = price.T
        np.add(est.T, 0.0, out=volume_line[:, r:])  # the slot's volume: opened at 0 (every row is active), then the batch's
        traded_line[:, r:] = fresh.T
        block.extend(lines, slots)
        # The hour's low before each slot, over the timeline of slots the rings held: slot k of
        # the block is column r + k; its completed hour, the w columns just before it.
        w = self.slots_for(60)
        low = block._low_done[c : c + k_n]
        low[:] = sliding_fmin(price_line[:, r - w : r + k_n - 1], w).T
        block._slot[c : c + k_n] = slots
        block._active[c : c + k_n] = True
        block._last_price[c : c + k_n] = price
        block.count = c + k_n
        # The windows as the last batch left them: its window of the timelines, each slot back
        # in its own column (slot % r).
        head = int(slots[-1] + 1) % r  # the column of the window's oldest slot
        for ring, line in zip((self.price_ring, self.volume_ring, self.traded_ring), lines, strict=True):
            ring[:e, head:] = line[:, k_n : k_n + r - head]
            ring[:e, :head] = line[:, k_n + r - head :]
        self._low_done[:e] = low[-1]
        self.last_price[:e] = price[-1]
        self.quote_volume_24h[:e] = qv[-1]
        self._sample_qv[:e], self._volume_ms[:e] = sample  # each row's last sample, of the block or before it
        self._sample_event_ms[:e] = seen
        first = self._volume_since_ms[:e] == NO_TIME  # a row's first volume sample: this fold's first batch
        self._volume_since_ms[:e][first] = ts[0]
        self.last_seen_ms[:e] = ts[-1]
        self.open_24h[:e], self.high_24h[:e], self.low_24h[:e], self.trade_count_24h[:e] = final
        self.slot = int(slots[-1])
        self.last_ts_ms = int(ts[-1])
        self.counters["batches"] += k_n
        self._mark_sweeps(ts)
        return True

    def _fold_volume(
        self, ts: IntArray, qv: FloatArray, event: IntArray
    ) -> tuple[FloatArray, BoolArray, IntArray, tuple[FloatArray, IntArray]]:
        """Each batch's volume estimate (see `_update_volume`), every batch of a fold at once, added
        to the day ring: (estimates, fresh tickers [batch, row], the last event time and the
        (24 h figure, time) of the last sample by row). Row by row through the batches in
        compiled code where it was built (`rolling_robust.fold_volume`), else in numpy
        (`_fold_estimates`): the same figures."""
        e = self.extent
        buckets = (ts - 1) // self._bucket_ms
        departing = self._fold_departing(buckets)
        sample = (self._sample_event_ms[:e], self._sample_qv[:e], self._volume_ms[:e])
        kernel = rolling_robust.load()
        if kernel is not None:
            limits = (self._bucket_ms, self._gap_ms, self._keep_after_reset, VOLUME_NOISE)
            est, fresh, (seen, last_qv, last_ms), n_reset = kernel.fold_volume(
                ts, qv, event, departing, sample, self._volume_since_ms[:e], limits
            )
        else:
            est, fresh, (seen, last_qv, last_ms), n_reset = self._fold_estimates(ts, qv, event, departing, sample)
        if n_reset:
            self.counters["volume_reset"] += n_reset
        self._fold_day_ring(buckets, est)
        return est, fresh, seen, (last_qv, last_ms)

    def _fold_estimates(
        self, ts: IntArray, qv: FloatArray, event: IntArray, departing: FloatArray,
        sample: tuple[IntArray, FloatArray, IntArray],
    ) -> tuple[FloatArray, BoolArray, tuple[IntArray, FloatArray, IntArray], int]:  # fmt: skip
        """`_fold_volume`'s estimates in numpy, `departing` each batch's day-old bucket volume
        (`_fold_departing`, scaled here) and `sample` each row's last sample before the fold
        (event time, 24 h figure, time): (estimates, fresh, the last sample after the fold,
        resets counted).

        A row's sample is a batch whose ticker is new (its event time past every earlier one);
        each batch's diff starts from the row's last sample before it: the batch before, unless
        that ticker repeated. Samples are counted on the batches with the state before the
        fold as batch 0 (`ext`), so one gather from [before; batches] arrays reads a diff's
        start wherever it lies."""
        k_n, e = len(ts), self.extent
        seen = np.empty((k_n + 1, e), np.int64)  # the latest event time up to each batch
        seen[0] = sample[0]
        seen[1:] = event
        np.maximum.accumulate(seen, axis=0, out=seen)
        fresh = event > seen[:-1]
        last = np.zeros((k_n + 1, e), np.intp)  # [k]: the row's last sample before batch k (0: before the fold)
        np.multiply(fresh, np.arange(1, k_n + 1)[:, None], out=last[1:])
        np.maximum.accumulate(last, axis=0, out=last)
        at = last * e  # `last` as positions in the flattened [before; batches] arrays
        at += np.arange(e)
        qv_ext = np.empty((k_n + 1, e))
        qv_ext[0] = sample[1]
        qv_ext[1:] = qv
        ms_ext = np.empty((k_n + 1, e), np.int64)
        ms_ext[0] = sample[2]
        ms_ext[1:] = ts[:, None]
        prev = qv_ext.take(at[:-1])
        dt = ts[:, None] - ms_ext.take(at[:-1])
        since = self._volume_since_ms[:e]
        day_old = np.where(since == NO_TIME, ts[0], since) <= (ts - DAY_MS)[:, None]  # a first sample's time: the fold's first
        day_old[0] = since <= ts[0] - DAY_MS
        departing *= np.minimum(dt / self._bucket_ms, 1.0)
        guess = ~day_old | np.isnan(departing)
        average = prev * (dt / DAY_MS)
        departing[guess] = average[guess]
        est = qv - prev + departing
        reset = qv < (prev - departing) * self._keep_after_reset
        reset &= fresh
        unknown = reset | (dt > self._gap_ms)
        est[unknown] = np.nan
        est[est < VOLUME_NOISE * average] = 0.0  # NaN compares false: stays unknown
        est[~fresh] = 0.0  # a repeated ticker adds nothing (`update` leaves its slot as opened)
        return est, fresh, (seen[-1], qv_ext.take(at[-1]), ms_ext.take(at[-1])), int(np.count_nonzero(reset))

    def _fold_departing(self, buckets: IntArray) -> FloatArray:
        """[batch, row] the departing volume as each batch's bucket (ascending) opens
        (`_open_bucket`): the bucket's day-old content, which no batch of the fold has written
        (a fold is far shorter than a day), or the open bucket's for the batches still in it.
        One gather of the buckets' columns, then one row per batch, not a step per batch."""
        e, b_n = self.extent, self.day_ring.shape[1]
        prior = np.empty(len(buckets), np.int64)  # the bucket open before each batch
        prior[0] = self._bucket
        prior[1:] = buckets[:-1]
        turn = buckets != prior
        opened = buckets[turn]
        table = np.empty((len(opened) + 1, e))  # row 0: the open bucket's; row i: the i-th opened's
        table[0] = self._departing[:e]
        table[1:] = self.day_ring[:e, opened % b_n].T
        table[1:][opened - prior[turn] >= b_n] = np.nan  # a day or more after the bucket before: nothing known
        departing: FloatArray = table[np.cumsum(turn)]
        return departing

    def _fold_day_ring(self, buckets: IntArray, est: FloatArray) -> None:
        """Add the fold's estimates to the day ring's float32 sums, in batch order: the buckets
        opened first, then batch by batch in compiled code where it was built
        (`rolling_robust.fold_day_ring`), else all buckets a step at once (`_fold_day_ring_padded`)."""
        kernel = rolling_robust.load()
        if kernel is None:
            self._fold_day_ring_padded(buckets, est)
            return
        self._open_buckets(buckets.tolist())  # each once, in order
        kernel.fold_day_ring(self.day_ring, buckets % self.day_ring.shape[1], est)

    def _fold_day_ring_padded(self, buckets: IntArray, est: FloatArray) -> None:
        """`_fold_day_ring` in numpy.

        Each bucket has a column of its own (the fold spans less than a day: `_fits`), so the
        buckets open first, then the i-th batch of every bucket adds in one step, i = 0, 1,
        ...: each column sums the same figures in the same order. The estimates are laid out
        [bucket, i, row], a bucket with fewer batches padded with -0.0, which adds nothing to
        any float (x + -0.0 is x, +0.0 and NaN included), so every step is one add over all
        the buckets' sums."""
        e, b_n = self.extent, self.day_ring.shape[1]
        starts = np.flatnonzero(buckets[1:] != buckets[:-1]) + 1  # each bucket's first batch but the first's
        group = np.zeros(len(buckets), np.intp)
        group[starts] = 1
        np.cumsum(group, out=group)  # the batch's bucket, counted from the first batch's
        first = np.concatenate([[0], starts])
        nth = np.arange(len(buckets)) - first[group]  # the batch's place in its bucket
        cols = buckets[first] % b_n
        self._open_buckets(buckets[first].tolist())
        pad = np.full((len(first), int(nth.max()) + 1, e), -0.0)
        pad[group, nth] = est
        sums = self.day_ring[:e, cols].T  # float32, a copy
        for i in range(pad.shape[1]):
            sums += pad[:, i]  # in float64, rounded to float32: as `day_ring[...] += est` rounds
        self.day_ring[:e, cols] = sums.T

    def _mark_sweeps(self, ts: IntArray) -> None:
        """What `_sweep` does at each of `ts` where every row was just seen: nothing to free, only
        the time of the last sweep to mark. Where every batch is a sweep's interval after the
        one before (a replay's minutes), the last one's; else batch by batch."""
        interval, mark = self.cfg.cleanup_interval_ms, self._last_cleanup_ms
        if (mark is None or int(ts[0]) - mark >= interval) and (len(ts) == 1 or int(np.diff(ts).min()) >= interval):
            self._last_cleanup_ms = int(ts[-1])
            return
        for t in ts.tolist():
            if self._last_cleanup_ms is None or t - self._last_cleanup_ms >= interval:
                self._last_cleanup_ms = t

    def _count_bad_prices(self, bad: FloatArray) -> None:
        nan = int(np.count_nonzero(np.isnan(bad)))
        inf = int(np.count_nonzero(np.isinf(bad)))
        self.counters["missing_price"] += nan
        self.counters["nonfinite_price"] += inf
        self.counters["nonpositive_price"] += len(bad) - nan - inf

    def _update_volume(
        self, batch: TickerBatch, at: IntArray | slice, into: IntArray | slice, rows: IntArray, ts: int, head: int
    ) -> None:
        """`at`/`into`: the batch positions and their rows as `update` indexes them (slices or
        arrays; reads through a slice are views, so every read here comes before its write)."""
        qv = batch.quote_volume_24h[at]
        event = batch.event_ms[at]
        vok = qv >= 0.0
        vok &= qv < np.inf
        if not vok.all():
            self.counters["bad_volume"] += int(len(qv) - np.count_nonzero(vok))
            rows, qv, event = rows[vok], qv[vok], event[vok]
            into = rows
        self.quote_volume_24h[into] = qv  # the market's figure, a repeated ticker's too
        fresh = event > self._sample_event_ms[into]
        if not fresh.all():  # repeated tickers: nothing traded since their last sample, no sample
            rows, qv, event = rows[fresh], qv[fresh], event[fresh]
            into = rows
        bucket = (ts - 1) // self._bucket_ms  # the bucket of the volume traded up to ts
        if bucket != self._bucket:
            self._open_bucket(bucket)
        col = bucket % self.day_ring.shape[1]
        prev = self._sample_qv[into]
        dt = ts - self._volume_ms[into]
        departing = self._departing[into] * np.minimum(dt / self._bucket_ms, 1.0)
        day_old = self._volume_since_ms[into] <= ts - DAY_MS
        guess = ~day_old | np.isnan(departing)
        average = prev * (dt / DAY_MS)
        departing[guess] = average[guess]
        est = qv - prev + departing
        reset = qv < (prev - departing) * self._keep_after_reset
        unknown = reset | (dt > self._gap_ms)  # first sample: prev is NaN, so est is NaN already
        n_reset = int(np.count_nonzero(reset))
        if n_reset:
            self.counters["volume_reset"] += n_reset
        est[unknown] = np.nan
        est[est < VOLUME_NOISE * average] = 0.0  # below zero or rounding: nothing (NaN stays unknown)
        self.volume_ring[into, head] += est
        self.traded_ring[into, head] = True
        self.day_ring[into, col] += est
        self._sample_qv[into] = qv
        self._sample_event_ms[into] = event
        self._volume_ms[into] = ts
        first = self._volume_since_ms[into] == NO_TIME
        if first.any():
            self._volume_since_ms[rows[first]] = ts

    def seed_day(self, volumes: MinuteVolumes) -> int:
        """Fill the day ring from the real minute volumes of the day before the batch just
        folded in (`volumes.end_ms`, that batch's time); the rows seeded.

        Until a row has a day of its own estimates, the volume leaving the 24 h figure is
        otherwise guessed at the figure's average rate (see the module doc), and a replay's
        first day then scored its minutes against made-up volume: the same minute's volume z
        came out 5.9 or 3.7 as the backtest started an hour or a day before it. A replay's
        market holds that day's candles, so it says what traded in each bucket: the departures
        are read from them, as from our own estimates a day on. Symbols without a row, and
        buckets finer than a minute, are left to the guess."""
        b_n, bms = self.day_ring.shape[1], self._bucket_ms
        cur = self._bucket
        if cur < 0 or bms % MINUTE_MS or not len(volumes.symbols):
            return 0
        end = volumes.end_ms
        if (end - 1) // bms != cur:
            raise ValueError(f"minute volumes to {end} do not end in the open bucket ({cur}): seed right after that batch")
        rows = np.fromiter(map(self.index.get, volumes.symbols, repeat(-1, len(volumes.symbols))), np.int64)
        cols = np.flatnonzero(rows >= 0)
        if not len(cols):
            return 0
        rows = rows[cols]
        minutes = len(volumes.quote_volume)
        opens = volumes.start_ms + np.arange(minutes, dtype=np.int64) * MINUTE_MS
        age = cur - opens // bms  # 0: the open bucket, b_n: the bucket leaving the window now
        keep = age <= b_n
        age, qv = age[keep], volumes.quote_volume[keep][:, cols]
        sums = np.zeros((b_n + 1, len(rows)))
        np.add.at(sums, age, qv)
        known = np.bincount(age, minlength=b_n + 1)
        self.day_ring[rows[:, None], (cur - np.arange(b_n)) % b_n] = np.where(known[:b_n, None] > 0, sums[:b_n], np.nan).T
        # The bucket leaving now, of which the minutes may be known only from end - 24 h on: its
        # rate, over the whole bucket (a departure is read as the bucket's rate x dt).
        self._departing[rows] = sums[b_n] * (bms // MINUTE_MS) / known[b_n] if known[b_n] else np.nan
        since = self._volume_since_ms[rows]
        self._volume_since_ms[rows] = np.where((since == NO_TIME) | (since > volumes.start_ms), volumes.start_ms, since)
        return len(rows)

    def _open_buckets(self, buckets: Sequence[int]) -> None:
        """`_open_bucket` of each of `buckets` (ascending) not open yet, in turn. Where they follow
        the open one without a gap (a fold's: a dozen a block), in one step: only the last one's
        departing volume outlives the others' (a fold reads theirs from the day ring before),
        and each clears a column of its own."""
        new = [bk for bk in dict.fromkeys(buckets) if bk != self._bucket]
        if not new:
            return
        if self._bucket < 0 or new[0] != self._bucket + 1 or new[-1] - new[0] != len(new) - 1:
            for bk in new:
                self._open_bucket(bk)
            return
        e = self.extent
        cols = np.arange(new[0], new[-1] + 1) % self.day_ring.shape[1]
        self._departing[:e] = self.day_ring[:e, cols[-1]]
        self.day_ring[:e, cols] = np.where(self.active[:e], 0.0, np.nan)[:, None]
        self._bucket = new[-1]

    def _open_bucket(self, bucket: int) -> None:
        """Start a day-ring bucket: keep what it held 24 h ago (the volume now leaving the exchange's
        window), then clear it for today's volume (NaN for rows not trading, and skipped buckets).

        Only rows [0, extent) are touched: every row above them is free, and a free row's ring
        and departing volume are NaN already (`_release`), so writing NaN there changes nothing
        but costs a strided pass over the whole capacity."""
        b = self.day_ring.shape[1]
        e = self.extent
        steps = bucket - self._bucket if self._bucket >= 0 else b
        skipped = [k % b for k in range(max(self._bucket + 1, bucket - b + 1), bucket)]
        if skipped:
            self.day_ring[:e, skipped] = np.nan
        col = bucket % b
        self._departing[:e] = self.day_ring[:e, col] if steps < b or self._bucket < 0 else np.nan
        self.day_ring[:e, col] = np.where(self.active[:e], 0.0, np.nan)
        self._bucket = bucket

    def _advance(self, slot: int) -> None:
        """Open slot `slot`: carry each price forward, start the slot's volume at 0 (NaN for skipped
        slots), no slot traded yet (the skipped ones never). Rows from `extent` up are free and all-NaN (`_release`): they are left alone."""
        r = self.history_slots
        e = self.extent
        steps = slot - self.slot if self.slot >= 0 else r
        if steps >= r:
            self.price_ring[:] = np.nan
            self.volume_ring[:] = np.nan
            self.traded_ring[:] = False
            steps = 1
        elif steps > 1:
            skipped = [s % r for s in range(self.slot + 1, slot)]
            self.price_ring[:e, skipped] = self.last_price[:e, None]
            self.volume_ring[:e, skipped] = np.nan
            self.traded_ring[:e, skipped] = False
        self.slot = slot
        head = slot % r
        self._update_low(slot)
        self.price_ring[:e, head] = self.last_price[:e]
        self.volume_ring[:e, head] = np.where(self.active[:e], 0.0, np.nan)
        self.traded_ring[:e, head] = False  # until a fresh ticker comes (`_update_volume`)
        if steps > 1:
            self.counters["skipped_slots"] += steps - 1

    def _update_low(self, slot: int) -> None:
        """Lowest price of the completed slots of the last hour (before `slot`), once per slot:
        at most two contiguous views of the ring, reduced with fmin (NaN-skipping, no copy)."""
        r = self.history_slots
        k = self.slots_for(60)
        lo, hi = (slot - k) % r, slot % r  # columns lo .. hi-1, circularly
        e = self.extent
        ring = self.price_ring[:e]
        if lo < hi:
            low = np.fmin.reduce(ring[:, lo:hi], axis=1)
        else:
            low = np.fmin.reduce(ring[:, lo:], axis=1)
            if hi:
                np.fmin(low, np.fmin.reduce(ring[:, :hi], axis=1), out=low)
        self._low_done[:e] = low

    def state(self, extent: int | None = None) -> RingState:
        """The current batch's `RingState` over rows [0, extent): views, nothing copied."""
        e = self.capacity if extent is None else extent
        return RingState(
            np.array([self.slot], np.int64), self.active[None, :e], self.last_price[None, :e], self._low_done[None, :e],
            self.price_ring[None, :e], self.volume_ring[None, :e], traded_ring=self.traded_ring[None, :e],
        )  # fmt: skip

    def _sweep(self, ts: int) -> None:
        if self._last_cleanup_ms is not None and ts - self._last_cleanup_ms < self.cfg.cleanup_interval_ms:
            return
        self._last_cleanup_ms = ts
        e = self.extent  # every active row is below it
        stale = (self.active[:e] & (self.last_seen_ms[:e] < ts - self.cfg.stale_after_ms)).nonzero()[0]
        if len(stale):
            self.counters["expired_symbols"] += len(stale)
            self._release(stale)

    # ----------------------------------------------------------------------------- reads
    def slots_for(self, minutes: int) -> int:
        return minutes * 60_000 // self.slot_ms

    def memory_bytes(self) -> int:
        """Bytes of the per-row state (fixed at construction; the per-batch caches are not counted)."""
        arrays = [v for k, v in vars(self).items() if isinstance(v, np.ndarray) and not k.startswith(("_cached", "_active"))]
        return int(sum(a.nbytes for a in arrays))
