"""`BarHistory`: the last few closed bars of every symbol, aligned on bar time, for the live path.

The live feature path (`features_hot_latest`) needs the last `WINDOW` bars of each candidate as
[bars, symbols] matrices. Keeping one ring of slots per bar time (slot = bar index mod depth)
makes adding a candle O(1) and reading a window for 500 symbols a single fancy-index gather;
each slot remembers which bar it holds, so a symbol that missed a bar reads NaN there instead of
a stale value from `depth` bars ago.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from engine.domain import Bars, Candle
from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError
from engine.signals.features import WINDOW, BarMatrix, FloatArray

_FIELDS = 5  # open, high, low, close, volume


class BarSource(Protocol):
    """Where the signal stage reads bars: a `BarHistory` fed bar by bar (live), or a backtest's
    candle store read in place (`engine.backtest.stored_bars`)."""

    @property
    def timeframe(self) -> str: ...

    @property
    def tf_ms(self) -> int: ...

    def window(self, symbols: Sequence[str], last_open_ms: int, bars: int | None = None) -> BarMatrix: ...


@runtime_checkable
class FeaturesAhead(Protocol):
    """A `BarSource` that holds the bars after the one asked for too (a backtest's store), so it
    can compute a symbol's features for the coming bars at once (`StoredBars.latest_features`):
    one symbol's [features] row as `features_hot_latest` gives it without info, or None where
    the stage must compute it itself. Live has no such source."""

    def latest_features(self, symbol: str, regime: str, bar_ms: int) -> FloatArray | None: ...

    def listing_features(
        self, symbol: str, regime: str, bar_ms: int, min_bars: int
    ) -> tuple[FloatArray, FloatArray, int] | None:
        """Where `latest_features` is None only because the window lacks its first bar: its
        row, its row counted since the window's first bar that is there, and that row (0:
        none is); None where the stage must compute it itself."""


class BarStore(BarSource, Protocol):
    """A `BarSource` that holds every bar already: the cycle, instead of copying a symbol's new
    bars in, says how far the core may read them (`follow`), with the same answers."""

    def follow(self, symbol: str, now_ms: int) -> None:
        """The core may read `symbol`'s bars closed by `now_ms`, as feeding them would allow."""


class BarHistory:
    """Closed bars of one timeframe for many symbols, the most recent `depth` bar times."""

    def __init__(self, timeframe: str, depth: int = WINDOW, capacity: int = 64) -> None:
        if depth < 2:
            raise MarketDataError(f"BarHistory depth must be at least 2 bars, got {depth}")
        self.timeframe = timeframe
        self.tf_ms = timeframe_ms(timeframe)
        self.depth = depth
        self._cols: dict[str, int] = {}
        self._data: npt.NDArray[np.float64] = np.full((depth, capacity, _FIELDS), np.nan)
        self._bar: npt.NDArray[np.int64] = np.full((depth, capacity), -1, np.int64)

    def _column(self, symbol: str) -> int:
        col = self._cols.get(symbol)
        if col is None:
            col = len(self._cols)
            if col == self._data.shape[1]:
                grow = self._data.shape[1]
                self._data = np.concatenate([self._data, np.full((self.depth, grow, _FIELDS), np.nan)], axis=1)
                self._bar = np.concatenate([self._bar, np.full((self.depth, grow), -1, np.int64)], axis=1)
            self._cols[symbol] = col
        return col

    def add(self, candle: Candle) -> None:
        """Record a closed bar; open bars are refused (features use closed bars only)."""
        if not candle.closed:
            raise MarketDataError(f"{candle.symbol} bar at {candle.open_ms} is still open; add closed bars only")
        self.add_bars(Bars.of(candle.symbol, candle.timeframe, [candle]))

    def add_bars(self, bars: Bars) -> None:
        """Record closed, checked bars of one symbol (see `Bars`), as adding them one by one would."""
        if bars.timeframe != self.timeframe:
            raise MarketDataError(
                f"{bars.symbol}: a {bars.timeframe} bar fed to a {self.timeframe} history; keep one BarHistory per timeframe"
            )
        if not len(bars):
            return
        col, tf, depth, data, bar = self._column(bars.symbol), self.tf_ms, self.depth, self._data, self._bar
        # Bar by bar: a feed hands over one or two at a time, where scalar writes beat vector
        # ones, and a later bar overwrites an older one in its slot, as it must.
        for t, row in zip(bars.open_ms.tolist(), bars.ohlcv, strict=True):
            index = t // tf
            data[index % depth, col] = row
            bar[index % depth, col] = index

    def window(self, symbols: Sequence[str], last_open_ms: int, bars: int | None = None) -> BarMatrix:
        """[bars, symbols] matrices for the bars ending with the one opening at `last_open_ms`."""
        n = self.depth if bars is None else bars
        if not 0 < n <= self.depth:
            raise MarketDataError(f"window of {n} bars asked from a history {self.depth} deep")
        last = last_open_ms // self.tf_ms
        wanted = np.arange(last - n + 1, last + 1, dtype=np.int64)
        slots = wanted % self.depth
        cols = np.array([self._cols.get(s, -1) for s in symbols], np.int64)
        known = cols >= 0
        safe = np.where(known, cols, 0)
        # take() twice rather than one broadcast fancy index: same gather, fewer microseconds.
        valid = self._bar.take(slots, axis=0).take(safe, axis=1) == wanted[:, None]
        valid &= known
        data = self._data.take(slots, axis=0).take(safe, axis=1)  # [n, S, 5], a copy
        if not valid.all():  # a missing bar, or a symbol never fed: NaN
            data[~valid] = np.nan
        return BarMatrix(data[..., 0], data[..., 1], data[..., 2], data[..., 3], data[..., 4])

    def closes(self, symbol: str, last_open_ms: int, bars: int | None = None) -> npt.NDArray[np.float64]:
        """One symbol's closes over the window (e.g. BTC for the market regime)."""
        return self.window((symbol,), last_open_ms, bars).close[:, 0]
