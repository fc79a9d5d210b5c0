"""`StoredBars`: the trading core's bars read in place from the candle store, in a backtest.

Live, the cycle copies each symbol's new closed bars into a `BarHistory` ring as the core comes
to need them (`TradingCycle._feed_candles`). A backtest holds every candle already, checked, in
columns (`CandleSlicer`), and copying them into a ring a few symbols a minute was a fifth of
the trading process's time. Here the cycle only says how far the core may read a symbol
(`follow`: the last bar closed by then), and a window read slices the stored columns.

The answers are the ring's. For a symbol fed at this bar the ring holds every stored bar of
the window: the first feed takes the last WINDOW+1 closed bars, each later one everything
since the last bar fed, and a symbol back after a long absence takes the last WINDOW+1 again,
so a hole it left is always older than any window read from then on. A read therefore sees
the stored bars of the window up to the symbol's mark, from the market's first loaded candle
(`earliest_ms`) on, and NaN elsewhere: a missing minute, a symbol never followed. The ring's
`ring_minutes` bound never bites within a window (the ring holds a day and more).
`tests/engine/backtest/test_stored_bars.py` compares both with the cycle's own feeding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError
from engine.signals.features import (
    WINDOW,
    BarMatrix,
    FloatArray,
    Listings,
    features_hot_windows,
    regime_windows,
)

if TYPE_CHECKING:  # the feed builds these over its slicer
    from engine.backtest.feed import CandleSlicer

_FIELDS = 5  # open, high, low, close, volume: BarHistory's layout, so the features see the same arrays
# Bars `latest_features` computes at once. A block costs mostly numpy's per-call overhead: 64
# windows cost ~1.5x 16 (229 vs 154 us). With the journal on every fresh candidate is asked
# (43k asks over the month, 3,295 blocks at 16, 1,390 at 64); with it off (held and hot coins,
# 3.6k asks) the blocks cost the same at either size.
AHEAD = 64
# Bars whose regime features (`regime_windows`) are computed at once: every symbol's block reads
# them, where each block computed its own (~a quarter of its cost). A month's 398 blocks need
# 383 regime calls of 64 (82 us each, 32 ms), 208 of 128 (19 ms), 120 of 256 (21 ms), 36 of
# 1024 (28 ms): past a few hundred windows a call costs its size, and the blocks are sparse.
REGIME_AHEAD = 256


class StoredBars:
    """A `BarStore` over the store's candles at the slicer's timeframe."""

    def __init__(self, slicer: CandleSlicer, depth: int = WINDOW) -> None:
        self._slicer = slicer
        self.timeframe = slicer.index.timeframe
        self.tf_ms = timeframe_ms(self.timeframe)
        self.depth = depth
        self._marks: dict[str, int] = {}  # symbol -> open time of the last bar the core may read
        self._first_ms = slicer.index.first_ms  # symbol -> its first stored bar
        # symbol -> (first bar, regime, [AHEAD, features] rows, first bar missing): `latest_features`
        self._blocks: dict[str, tuple[int, str, FloatArray, npt.NDArray[np.bool_]]] = {}
        # symbol -> (first bar, regime, min bars, [AHEAD, features] since-listing rows, [AHEAD]
        # first rows): `listing_features`, for the blocks that lack a first bar
        self._listing_blocks: dict[str, tuple[int, str, int, FloatArray, npt.NDArray[np.intp]]] = {}
        self._regimes: dict[str, tuple[int, FloatArray]] = {}  # regime -> (first bar, [3, REGIME_AHEAD]): `_regime`

    def follow(self, symbol: str, now_ms: int) -> None:
        # `CandleSlicer.covers` at the store's own timeframe, asked for every symbol the core may
        # decide on, each minute: read here without the call.
        first = self._first_ms.get(symbol)
        if first is not None and first <= now_ms:  # else nothing is stored for it yet: NaN
            tf = self.tf_ms
            self._marks[symbol] = now_ms // tf * tf - tf

    def window(self, symbols: Sequence[str], last_open_ms: int, bars: int | None = None) -> BarMatrix:
        """[bars, symbols] matrices for the bars ending with the one opening at `last_open_ms`."""
        n = self.depth if bars is None else bars
        if not 0 < n <= self.depth:
            raise MarketDataError(f"window of {n} bars asked from a history {self.depth} deep")
        data = np.full((n, len(symbols), _FIELDS), np.nan)
        for j, symbol in enumerate(symbols):
            mark = self._marks.get(symbol)
            if mark is not None:
                self._read(data[:, j], symbol, last_open_ms, min(last_open_ms, mark))
        return BarMatrix(data[..., 0], data[..., 1], data[..., 2], data[..., 3], data[..., 4])

    def _read(self, out: FloatArray, symbol: str, last_open_ms: int, upto_ms: int) -> None:
        """Write `symbol`'s stored bars up to the one opening at `upto_ms` into `out` ([bars, 5],
        NaN-filled, its last row the bar opening at `last_open_ms`), from `earliest_ms` on."""
        tf = self.tf_ms
        first = last_open_ms - (out.shape[0] - 1) * tf
        lowest = max(first, self._slicer.earliest_ms)
        if upto_ms < lowest:
            return
        s = self._slicer.series(symbol)
        lo, hi = s.ts.searchsorted((lowest, upto_ms + 1)).tolist()
        if lo >= hi:
            return
        a, b = (int(s.ts[lo]) - first) // tf, (int(s.ts[hi - 1]) - first) // tf + 1
        rows: slice | np.ndarray = slice(a, b) if b - a == hi - lo else (s.ts[lo:hi] - first) // tf  # a gap: scatter
        for k, column in enumerate((s.open, s.high, s.low, s.close, s.volume)):
            out[rows, k] = column[lo:hi]

    def latest_features(self, symbol: str, regime: str, bar_ms: int) -> FloatArray | None:
        """`symbol`'s features at `bar_ms` against the `regime` symbol's closes, as
        `features_hot_latest` gives them over `window([symbol, regime], bar_ms)` without info
        (`with_info` adds it): a [features] row. None where that read would not be whole (the
        core may not read a bar of it yet) or its first bar is missing (a listing may begin in
        it): `listing_features` serves those.

        The features of a symbol held or hot this minute are mostly asked again the next: the
        first ask computes the next `AHEAD` bars in one `features_hot_windows` call, from the
        store's bars, which a read at each of those bars sees as they are once the core may read
        them (checked at each ask: the marks)."""
        block = self._block(symbol, regime, bar_ms)
        if block is None:
            return None
        i = (bar_ms - block[0]) // self.tf_ms
        return None if block[3][i] else block[2][i]

    def listing_features(
        self, symbol: str, regime: str, bar_ms: int, min_bars: int
    ) -> tuple[FloatArray, FloatArray, int] | None:
        """Where `latest_features` is None for a window that lacks its first bar (a listing may
        begin in it): its row as `latest_features` would give it, the row `features_hot_latest`
        gives with the symbol's bars counted since the window's first bar that is there
        (`Listings` of that row, `min_bars`), and that row (0: no bar is there). Whether the
        window holds a listing is the caller's to say (`Listings.at_rows`). None where the read
        would not be whole, as `latest_features`.

        A listing is asked every minute it is hot or held, each a window computed alone with
        its listing patched in (three times a block's cost); computed ahead like the others
        from the block's own windows."""
        block = self._block(symbol, regime, bar_ms)
        if block is None:
            return None
        start = block[0]
        listed = self._listing_blocks.get(symbol)
        if listed is None or listed[:3] != (start, regime, min_bars):
            bars = self._windows(symbol, start, AHEAD)
            first = (~np.isnan(bars.close)).argmax(axis=0)  # as `Listings.in_window` finds it
            rows = features_hot_windows(bars, self._regime(regime, start), Listings(np.where(first > 0, first, np.nan), min_bars))
            listed = self._listing_blocks[symbol] = (start, regime, min_bars, rows, first)
        i = (bar_ms - start) // self.tf_ms
        return block[2][i], listed[3][i], int(listed[4][i])

    def _block(self, symbol: str, regime: str, bar_ms: int) -> tuple[int, str, FloatArray, npt.NDArray[np.bool_]] | None:
        """The block of `latest_features` that holds `bar_ms`, computed if none does; None
        where the core may not read the bar of `symbol` or `regime` yet."""
        marks, tf = self._marks, self.tf_ms
        if marks.get(symbol, -1) < bar_ms or marks.get(regime, -1) < bar_ms or bar_ms % tf:
            return None
        block = self._blocks.get(symbol)
        if block is None or block[1] != regime or not 0 <= bar_ms - block[0] < AHEAD * tf:
            block = self._blocks[symbol] = (bar_ms, regime, *self._ahead(symbol, regime, bar_ms))
        return block

    def _ahead(self, symbol: str, regime: str, bar_ms: int) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """The features of `symbol`'s windows at `bar_ms` and the `AHEAD - 1` bars after it
        ([AHEAD, features]), and which of them lack their first bar."""
        bars = self._windows(symbol, bar_ms, AHEAD)
        return features_hot_windows(bars, self._regime(regime, bar_ms)), np.isnan(bars.close[0])

    def _regime(self, regime: str, bar_ms: int) -> FloatArray:
        """The regime features ([3, AHEAD]) beside the windows at `bar_ms` and the `AHEAD - 1`
        bars after it, from `regime`'s blocks of `REGIME_AHEAD` bars: the same for every
        symbol's block, so computed once for them all."""
        tf = self.tf_ms
        known = self._regimes.get(regime)
        if known is None or not 0 <= bar_ms - known[0] <= (REGIME_AHEAD - AHEAD) * tf:
            known = self._regimes[regime] = (bar_ms, regime_windows(self._windows(regime, bar_ms, REGIME_AHEAD).close))
        i = (bar_ms - known[0]) // tf
        return known[1][:, i : i + AHEAD]

    def _windows(self, symbol: str, bar_ms: int, count: int) -> BarMatrix:
        """`symbol`'s windows at `bar_ms` and the `count - 1` bars after it ([WINDOW, count]
        each): strided views of its stored bars."""
        last = bar_ms + (count - 1) * self.tf_ms
        stored = np.full((_FIELDS, WINDOW - 1 + count), np.nan)  # [field, bar]
        self._read(stored.T, symbol, last, last)
        # [field, bar, window]: window w's bar b is stored bar w + b, so a window's bars lie side
        # by side along the windows axis, the one numpy's loops run along.
        field_step, step = stored.strides
        windows = np.lib.stride_tricks.as_strided(stored, (_FIELDS, WINDOW, count), (field_step, step, step), writeable=False)
        return BarMatrix(*windows)
