"""One OHLCV bar."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.errors import MarketDataError

_INF = math.inf

FloatArray = npt.NDArray[np.float64]

TIMEFRAME_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


def timeframe_ms(timeframe: str) -> int:
    """Bar length in milliseconds; unknown timeframes are a caller error, named."""
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        known = ", ".join(TIMEFRAME_MS)
        raise MarketDataError(f"unknown timeframe {timeframe!r}; use one of {known}") from None


@dataclass(frozen=True, slots=True)
class Candle:
    """A bar of `timeframe` opening at `open_ms` (UTC epoch ms); volume in the base asset."""

    symbol: str
    timeframe: str
    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = True

    @property
    def close_ms(self) -> int:
        return self.open_ms + timeframe_ms(self.timeframe)

    def validate(self) -> Candle:
        """Reject bars no exchange could have printed; returns self for chaining."""
        o, h, lo, c = self.open, self.high, self.low, self.close
        # Chained comparisons, no loop: every closed bar fed to the core passes here. NaN fails
        # every comparison, so `0 < x < inf` is "positive and finite".
        if not (0.0 < o < _INF and 0.0 < h < _INF and 0.0 < lo < _INF and 0.0 < c < _INF):
            raise MarketDataError(f"{self.symbol} {self.open_ms}: non-positive or non-finite price")
        if not 0.0 <= self.volume < _INF:
            raise MarketDataError(f"{self.symbol} {self.open_ms}: bad volume {self.volume!r}")
        if lo > o or lo > c or h < o or h < c:
            raise MarketDataError(f"{self.symbol} {self.open_ms}: high/low do not bound open/close")
        return self


@dataclass(frozen=True, slots=True)
class Bars:
    """Closed bars of one symbol and timeframe as arrays, oldest first, open times strictly
    increasing: what a feed hands the core's bar history in one piece.

    Every bar has passed `Candle.validate`'s checks: `Bars.of` runs them candle by candle, and
    a feed that slices a store's columns, checked when the file was read
    (`engine.backtest.feed`), builds them directly. That is the point of the type: a backtest
    feeds a bar a minute per pool member, and building, checking and storing a `Candle` object
    for each was most of what feeding them cost."""

    symbol: str
    timeframe: str
    open_ms: npt.NDArray[np.int64]
    ohlcv: npt.NDArray[np.float64]  # [bars, 5]: open, high, low, close, volume

    @classmethod
    def of(cls, symbol: str, timeframe: str, candles: Sequence[Candle]) -> Bars:
        """The closed ones of `candles` (one symbol and timeframe), each checked, in time order;
        of two with one open time the later in `candles` counts (as adding them in turn would)."""
        by_open: dict[int, Candle] = {}
        for c in candles:
            if c.symbol != symbol or c.timeframe != timeframe:
                raise MarketDataError(f"a {c.symbol} {c.timeframe} bar among {symbol} {timeframe} bars")
            if c.closed:
                by_open[c.open_ms] = c.validate()
        closed = [by_open[t] for t in sorted(by_open)]
        open_ms = np.array([c.open_ms for c in closed], np.int64)
        ohlcv = np.array([(c.open, c.high, c.low, c.close, c.volume) for c in closed], np.float64).reshape(-1, 5)
        return cls(symbol, timeframe, open_ms, ohlcv)

    def __len__(self) -> int:
        return len(self.open_ms)


def candle_problem(
    o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray
) -> tuple[int, str] | None:
    """(first row, what is wrong) of OHLCV columns holding a bar no exchange could have
    printed, or None: `Candle.validate`'s rules over whole columns. One definition for every
    reader of candle files (the backtest store, the training data), so a file one refuses the
    other does not learn from."""
    return None if _sound(o, h, lo, c, v) else _first_problem(o, h, lo, c, v)


def _first_problem(
    o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray
) -> tuple[int, str] | None:
    """`candle_problem` by row masks: the first row of the first rule it breaks."""
    problems = (
        (~(priced(o) & priced(h) & priced(lo) & priced(c)), "a price is not positive and finite"),
        (~np.isfinite(v) | (v < 0), "a volume is negative or not finite"),
        (h < np.maximum(o, c), "a high is below its open or close"),
        (lo > np.minimum(o, c), "a low is above its open or close"),
    )
    for bad, what in problems:
        if bad.any():
            return int(np.flatnonzero(bad)[0]), what
    return None


def _sound(o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray) -> bool:
    """Whether `candle_problem` finds nothing, by reductions where it can: a column's minimum
    and maximum say whether every value is positive (or not negative) and finite (a NaN makes
    both NaN, and fails). What every file read is asked (a backtest's 34, in both of its
    processes), at about half the cost of the row masks, which are built only to name a row."""
    if not len(o):
        return True
    for x in (o, h, lo, c):
        if not (x.min() > 0.0 and x.max() < np.inf):
            return False
    if not (v.min() >= 0.0 and v.max() < np.inf):
        return False
    return bool((h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all())


def priced(x: FloatArray) -> npt.NDArray[np.bool_]:
    """0 < x < inf (NaN fails): a usable price. Checked column by column: the row-wise
    reductions over a [rows, 5] block it replaces were most of a file's load time."""
    out: npt.NDArray[np.bool_] = x > 0.0
    out &= x < np.inf
    return out
