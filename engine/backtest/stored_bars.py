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

from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError
from engine.signals.features import WINDOW, BarMatrix

if TYPE_CHECKING:  # the feed builds these over its slicer
    from engine.backtest.feed import CandleSlicer

_FIELDS = 5  # open, high, low, close, volume: BarHistory's layout, so the features see the same arrays


class StoredBars:
    """A `BarStore` over the store's candles at the slicer's timeframe."""

    def __init__(self, slicer: CandleSlicer, depth: int = WINDOW) -> None:
        self._slicer = slicer
        self.timeframe = slicer.index.timeframe
        self.tf_ms = timeframe_ms(self.timeframe)
        self.depth = depth
        self._marks: dict[str, int] = {}  # symbol -> open time of the last bar the core may read
        self._first_ms = slicer.index.first_ms  # symbol -> its first stored bar

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
        tf = self.tf_ms
        first = last_open_ms - (n - 1) * tf
        lowest = max(first, self._slicer.earliest_ms)
        data = np.full((n, len(symbols), _FIELDS), np.nan)
        for j, symbol in enumerate(symbols):
            mark = self._marks.get(symbol)
            if mark is None or mark < lowest:
                continue
            s = self._slicer.series(symbol)
            lo, hi = s.ts.searchsorted((lowest, min(last_open_ms, mark) + 1)).tolist()
            if lo >= hi:
                continue
            a, b = (int(s.ts[lo]) - first) // tf, (int(s.ts[hi - 1]) - first) // tf + 1
            rows: slice | np.ndarray = slice(a, b) if b - a == hi - lo else (s.ts[lo:hi] - first) // tf  # a gap: scatter
            for k, column in enumerate((s.open, s.high, s.low, s.close, s.volume)):
                data[rows, j, k] = column[lo:hi]
        return BarMatrix(data[..., 0], data[..., 1], data[..., 2], data[..., 3], data[..., 4])
