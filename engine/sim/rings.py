"""1m candles of every symbol in fixed-size rings, and the rolling 24 h stats read from them.

One row per minute, one column per symbol (`(ring_minutes, capacity)` arrays), so a sim
sub-step touches one contiguous row for the whole market and memory stays flat however long
a run lasts. Symbols are columns in listing order: the first `n` are the listed ones.

The 24 h window at minute `m` is minutes `m-1439 .. m` (the current, partial one included),
as Binance's rolling 24 h ticker is, to the minute. Volumes and trade counts of the closed
part are kept as running sums (add the minute that closes, subtract the one that leaves);
the closed part's high and low are recomputed at most once a minute, when first asked for,
from per-hour block extremes (kept as each hour closes) plus the loose minutes at both ends:
~120 rows instead of 1,439. The whole blocks inside the window change once an hour, so their
extremes are reduced then, not every minute (max and min are exact in any order, so the
figures are the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

WINDOW_MINUTES = 1440
MINUTE_MS = 60_000
BLOCK_MINUTES = 60
_BLOCKS = (
    WINDOW_MINUTES // BLOCK_MINUTES + 2
)  # hour blocks kept: a window spans at most 24 whole ones


@dataclass(frozen=True, slots=True)
class RollingStats:
    """Trailing-24 h figures of the first `n` symbols (fresh arrays, the caller may keep them)."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    base_volume: FloatArray
    quote_volume: FloatArray
    trades: IntArray


@dataclass(frozen=True, slots=True)
class CandleArrays:
    """Candles of one symbol, column-wise, oldest first; `closed[i]` is False for the running one."""

    open_ms: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    closed: BoolArray


class MinuteRings:
    """Ring buffers of 1m OHLCV + trades for up to `capacity` symbols (grown in chunks)."""

    def __init__(self, ring_minutes: int, minute: int, capacity: int) -> None:
        if ring_minutes <= WINDOW_MINUTES:
            raise ValueError(
                f"ring_minutes={ring_minutes} must exceed {WINDOW_MINUTES} to hold a 24 h window"
            )
        self.ring_minutes = ring_minutes
        self.minute = minute  # the current (partial) minute, as epoch minutes
        self.n = 0
        self.capacity = 0
        shape = (ring_minutes, 0)
        self.open: FloatArray = np.zeros(shape)
        self.high: FloatArray = np.zeros(shape)
        self.low: FloatArray = np.zeros(shape)
        self.close: FloatArray = np.zeros(shape)
        # Quote volume only feeds the 24 h sums: float32 halves its memory, the sums stay float64.
        self.volume: FloatArray = np.zeros(shape)
        self.quote_volume = np.zeros(shape, np.float32)
        self.trades = np.zeros(shape, np.int32)
        self.valid: BoolArray = np.zeros(shape, np.bool_)
        self.first_minute: IntArray = np.zeros(0, np.int64)
        self._sum_volume: FloatArray = np.zeros(0)
        self._sum_quote: FloatArray = np.zeros(0)
        self._sum_trades: IntArray = np.zeros(0, np.int64)
        self._closed_high: FloatArray = np.zeros(0)
        self._closed_low: FloatArray = np.zeros(0)
        self._extremes_minute = -1  # minute the closed high/low were computed for
        self._block_high: FloatArray = np.zeros((_BLOCKS, 0))  # extremes of whole closed hours
        self._block_low: FloatArray = np.zeros((_BLOCKS, 0))
        # extremes of the whole blocks inside the window, for (first block, end block, n)
        self._inner_key: tuple[int, int, int] | None = None
        self._inner_high: FloatArray = np.zeros(0)
        self._inner_low: FloatArray = np.zeros(0)
        self._grow(capacity)

    @property
    def slot(self) -> int:
        return self.minute % self.ring_minutes

    # -- symbols ---------------------------------------------------------------------------

    def add_symbols(self, prices: FloatArray, first_minute: int) -> int:
        """New columns whose past holds `prices` (no volume, no candles), listed from
        `first_minute`; returns the first new index. Columns past `n` were never used, so
        their volumes and flags are still zero."""
        k = len(prices)
        if self.n + k > self.capacity:
            self._grow(self.n + k + max(64, self.capacity // 8))
        i = self.n
        cols = slice(i, i + k)
        for arr in (self.open, self.high, self.low, self.close, self._block_high, self._block_low):
            arr[:, cols] = prices
        self.first_minute[cols] = first_minute
        self._closed_high[cols] = self._closed_low[cols] = prices
        if first_minute == self.minute:
            self.valid[self.slot, cols] = True
        self.n += k
        return i

    def add_symbol(self, price: float, first_minute: int, *, high: float | None = None) -> int:
        """One new column (see `add_symbols`). If it lists in the current minute, that minute
        is its first candle, opening at `price` and reaching `high` (a listing wick) if given."""
        i = self.add_symbols(np.array([price]), first_minute)
        if first_minute == self.minute and high is not None:
            self.high[self.slot, i] = max(price, high)
        return i

    def _grow(self, capacity: int) -> None:
        def widen(arr: Any) -> Any:
            wide = np.zeros((*arr.shape[:-1], capacity), arr.dtype)
            wide[..., : arr.shape[-1]] = arr
            return wide

        self.open, self.high, self.low, self.close = (
            widen(a) for a in (self.open, self.high, self.low, self.close)
        )
        self.volume, self.quote_volume = widen(self.volume), widen(self.quote_volume)
        self.trades, self.valid = widen(self.trades), widen(self.valid)
        self.first_minute = widen(self.first_minute)
        self._sum_volume, self._sum_quote = widen(self._sum_volume), widen(self._sum_quote)
        self._sum_trades = widen(self._sum_trades)
        self._closed_high, self._closed_low = widen(self._closed_high), widen(self._closed_low)
        self._block_high, self._block_low = widen(self._block_high), widen(self._block_low)
        self.capacity = capacity

    # -- writing ---------------------------------------------------------------------------

    def load_history(
        self,
        o: FloatArray,
        h: FloatArray,
        lo: FloatArray,
        c: FloatArray,
        v: FloatArray,
        qv: FloatArray,
        trades: IntArray,
        valid: BoolArray,
    ) -> None:
        """Write `(minutes, n)` blocks as the minutes ending at the current one, in bulk (warm-up)."""
        minutes, n = o.shape
        if minutes > self.ring_minutes or n != self.n:
            raise ValueError(
                f"history of shape {o.shape} does not fit {self.ring_minutes} minutes x {self.n} symbols"
            )
        slots = np.arange(self.minute - minutes + 1, self.minute + 1) % self.ring_minutes
        for ring, block in (
            (self.open, o),
            (self.high, h),
            (self.low, lo),
            (self.close, c),
            (self.volume, v),
            (self.quote_volume, qv),
            (self.trades, trades),
            (self.valid, valid),
        ):
            ring[slots, :n] = block
        self._recompute_sums()
        last_block = (
            self.minute + 1
        ) // BLOCK_MINUTES  # exclusive: the hour in progress is not whole
        for b in range(
            max(last_block - _BLOCKS, (self.minute - minutes + 1) // BLOCK_MINUTES), last_block
        ):
            self._close_block(b)
        self._inner_key = None  # the blocks were rewritten

    def begin_minute(
        self, minute: int, price: FloatArray, *, valid: BoolArray | bool = True
    ) -> None:
        """Close the current minute and open `minute` (the next one) at `price` for every listed symbol."""
        if minute != self.minute + 1:
            raise ValueError(f"minutes advance one at a time: at {self.minute}, asked for {minute}")
        n, r = self.n, self.ring_minutes
        closing, leaving = self.slot, (minute - WINDOW_MINUTES) % r
        self._sum_volume[:n] += self.volume[closing, :n]
        self._sum_volume[:n] -= self.volume[leaving, :n]
        self._sum_quote[:n] += self.quote_volume[closing, :n]
        self._sum_quote[:n] -= self.quote_volume[leaving, :n]
        self._sum_trades[:n] += self.trades[closing, :n]
        self._sum_trades[:n] -= self.trades[leaving, :n]
        np.maximum(self._sum_volume[:n], 0.0, out=self._sum_volume[:n])
        np.maximum(self._sum_quote[:n], 0.0, out=self._sum_quote[:n])
        self.minute = minute
        if minute % BLOCK_MINUTES == 0:
            self._close_block(minute // BLOCK_MINUTES - 1)
        s = self.slot
        for arr in (self.open, self.high, self.low, self.close):
            arr[s, :n] = price
        self.volume[s, :n] = 0
        self.quote_volume[s, :n] = 0
        self.trades[s, :n] = 0
        self.valid[s, :n] = valid

    def trade(
        self,
        price: FloatArray,
        volume: FloatArray,
        quote_volume: FloatArray,
        trades: npt.NDArray[np.int32],
    ) -> None:
        """Add one sub-step's trading to the current minute of the first `len(price)` symbols."""
        n, s = len(price), self.slot
        np.maximum(self.high[s, :n], price, out=self.high[s, :n])
        np.minimum(self.low[s, :n], price, out=self.low[s, :n])
        self.close[s, :n] = price
        self.volume[s, :n] += volume
        self.quote_volume[s, :n] += quote_volume
        self.trades[s, :n] += trades

    def set_current(
        self,
        o: FloatArray,
        h: FloatArray,
        lo: FloatArray,
        c: FloatArray,
        v: FloatArray,
        qv: FloatArray,
        valid: BoolArray,
    ) -> None:
        """Overwrite the current minute of the first `len(o)` symbols (replayed candles)."""
        n, s = len(o), self.slot
        self.open[s, :n] = o
        self.high[s, :n] = h
        self.low[s, :n] = lo
        self.close[s, :n] = c
        self.volume[s, :n] = v
        self.quote_volume[s, :n] = qv
        self.valid[s, :n] = valid

    # -- reading ---------------------------------------------------------------------------

    def stats(self) -> RollingStats:
        n, s = self.n, self.slot
        if self._extremes_minute != self.minute:
            self._recompute_extremes()
        oldest = (self.minute - WINDOW_MINUTES + 1) % self.ring_minutes
        return RollingStats(
            open=self.open[oldest, :n].copy(),
            high=np.maximum(self._closed_high[:n], self.high[s, :n]),
            low=np.minimum(self._closed_low[:n], self.low[s, :n]),
            base_volume=self._sum_volume[:n] + self.volume[s, :n],
            quote_volume=self._sum_quote[:n] + self.quote_volume[s, :n],
            trades=self._sum_trades[:n] + self.trades[s, :n],
        )

    def candles(
        self, i: int, tf_ms: int, *, start_ms: int | None = None, end_ms: int | None = None
    ) -> CandleArrays:
        """Candles of `tf_ms` the ring can build completely for symbol `i` (1m rows aggregated;
        a bucket whose start has left the ring is dropped, not shown short), limited to the
        buckets holding `start_ms` .. `end_ms` when given (the caller cuts exactly)."""
        r = self.ring_minutes
        lo = max(int(self.first_minute[i]), self.minute - r + 1)
        first, last = lo, self.minute
        if start_ms is not None:
            first = max(first, (start_ms - start_ms % tf_ms) // MINUTE_MS)
        if end_ms is not None:
            last = min(last, (end_ms - end_ms % tf_ms + tf_ms) // MINUTE_MS - 1)
        if first > last:
            return _empty_candles()
        minutes = np.arange(first, last + 1, dtype=np.int64)
        slots = minutes % r
        keep = self.valid[slots, i]
        minutes, slots = minutes[keep], slots[keep]
        if len(minutes) == 0:
            return _empty_candles()
        open_ms = minutes * MINUTE_MS
        bucket = open_ms - open_ms % tf_ms
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        ends = np.r_[starts[1:], len(bucket)] - 1
        buckets = bucket[starts]
        evicted = lo > int(self.first_minute[i])
        complete = (
            ~(evicted & (buckets < lo * MINUTE_MS)) if evicted else np.ones(len(buckets), np.bool_)
        )
        out = CandleArrays(
            open_ms=buckets,
            open=self.open[slots[starts], i],
            high=np.maximum.reduceat(self.high[slots, i], starts),
            low=np.minimum.reduceat(self.low[slots, i], starts),
            close=self.close[slots[ends], i],
            volume=np.add.reduceat(self.volume[slots, i], starts),
            closed=buckets + tf_ms <= self.minute * MINUTE_MS,
        )
        if complete.all():
            return out
        return CandleArrays(*(getattr(out, f)[complete] for f in CandleArrays.__slots__))

    def footprint(self) -> int:
        """Bytes held by the rings: fixed by ring length and symbol capacity, not by run time."""
        arrays = (
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote_volume,
            self.trades,
            self.valid,
        )
        return sum(a.nbytes for a in arrays)

    def quote_volumes_24h(self) -> FloatArray:
        """Trailing-24 h quote volume of every listed symbol (no high/low work)."""
        n = self.n
        out: FloatArray = self._sum_quote[:n] + self.quote_volume[self.slot, :n]
        return out

    def quote_volume_24h(self, i: int) -> float:
        """Trailing-24 h quote volume of symbol `i` alone (the book's liquidity, per order)."""
        return float(self._sum_quote[i] + self.quote_volume[self.slot, i])

    def closed_quote_volumes(self, first: int, count: int) -> FloatArray:
        """[minute, symbol] quote volume of the closed minutes first .. first+count-1 (epoch
        minutes; 0 before a symbol listed), a copy: what the 24 h sums were summed from."""
        if count < 0 or first < self.minute - self.ring_minutes + 1 or first + count > self.minute:
            raise ValueError(
                f"minutes {first} .. {first + count - 1} are not closed minutes the ring holds "
                f"({self.minute - self.ring_minutes + 1} .. {self.minute - 1})"
            )
        n = self.n
        out: FloatArray = np.concatenate([self.quote_volume[p, :n] for p in self._rows(first, count)]).astype(np.float64)
        return out

    # -- internals -------------------------------------------------------------------------

    def _rows(self, first: int, count: int) -> list[slice]:
        """Ring rows of minutes first .. first+count-1, as one or two slices."""
        r = self.ring_minutes
        start = first % r
        if start + count <= r:
            return [slice(start, start + count)]
        return [slice(start, r), slice(0, start + count - r)]

    def _window_slots(self) -> list[slice]:
        """Ring rows of the closed part of the window, minutes m-1439 .. m-1."""
        return self._rows(self.minute - WINDOW_MINUTES + 1, WINDOW_MINUTES - 1)

    def _close_block(self, block: int) -> None:
        n, rows = self.n, self._rows(block * BLOCK_MINUTES, BLOCK_MINUTES)
        self._block_high[block % _BLOCKS, :n] = np.max(
            [self.high[p, :n].max(axis=0) for p in rows], axis=0
        )
        self._block_low[block % _BLOCKS, :n] = np.min(
            [self.low[p, :n].min(axis=0) for p in rows], axis=0
        )

    def _recompute_extremes(self) -> None:
        """Closed-window high/low: the whole hour blocks' extremes (reduced again only when the
        blocks in the window or the columns change) and the loose minutes at both ends."""
        n = self.n
        lo, hi = self.minute - WINDOW_MINUTES + 1, self.minute  # window minutes [lo, hi)
        first_block, end_block = -(-lo // BLOCK_MINUTES), hi // BLOCK_MINUTES
        if self._inner_key != (first_block, end_block, n):
            blocks = np.arange(first_block, end_block) % _BLOCKS
            self._inner_high = self._block_high[blocks, :n].max(axis=0)
            self._inner_low = self._block_low[blocks, :n].min(axis=0)
            self._inner_key = (first_block, end_block, n)
        loose = (
            self._rows(lo, first_block * BLOCK_MINUTES - lo)
            if first_block * BLOCK_MINUTES > lo
            else []
        )
        if hi > end_block * BLOCK_MINUTES:
            loose += self._rows(end_block * BLOCK_MINUTES, hi - end_block * BLOCK_MINUTES)
        high, low = self._closed_high[:n], self._closed_low[:n]
        high[:] = self._inner_high
        low[:] = self._inner_low
        for p in loose:
            np.maximum(high, self.high[p, :n].max(axis=0), out=high)
            np.minimum(low, self.low[p, :n].min(axis=0), out=low)
        self._extremes_minute = self.minute

    def _recompute_sums(self) -> None:
        n = self.n
        parts = self._window_slots()
        self._sum_volume[:n] = sum(self.volume[p, :n].sum(axis=0, dtype=np.float64) for p in parts)
        self._sum_quote[:n] = sum(
            self.quote_volume[p, :n].sum(axis=0, dtype=np.float64) for p in parts
        )
        self._sum_trades[:n] = sum(self.trades[p, :n].sum(axis=0, dtype=np.int64) for p in parts)
        self._extremes_minute = -1


def _empty_candles() -> CandleArrays:
    f = np.zeros(0)
    return CandleArrays(np.zeros(0, np.int64), f, f, f, f, f, np.zeros(0, np.bool_))
