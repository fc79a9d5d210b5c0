"""What the market did over a backtest's window: the figure a strategy's return is read against.

A -5 % month means one thing when the pairs fell 30 % and another when they rose 30 %. So the
report puts the strategy beside buying and holding: every pair of the store, equal weights,
from the trading window's start to its end, and the regime symbol (BTC/USDT by default) alone.

Prices are what a trader could have acted on: at time T, the close of the last candle that had
closed by T. A pair listed after the start is bought at its first candle's close; a pair with no
candle closed inside the window is left out (and not counted).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from engine.backtest.history import CandleSeries
from engine.domain.candle import timeframe_ms


@dataclass(frozen=True, slots=True)
class MarketChange:
    mean: float  # equal-weight buy and hold of every pair, as a fraction (0.0 with no pair)
    changes: dict[str, float]  # per pair
    reference: str | None = None  # the regime symbol, reported on its own

    @property
    def pairs(self) -> int:
        return len(self.changes)

    @property
    def reference_change(self) -> float | None:
        return None if self.reference is None else self.changes.get(self.reference)

    def as_dict(self) -> dict[str, object]:
        return {
            "mean_change": self.mean, "pairs": self.pairs, "reference": self.reference,
            "reference_change": self.reference_change, "changes": self.changes,
        }  # fmt: skip


def pair_change(series: CandleSeries, start_ms: int, end_ms: int) -> float | None:
    """Buy-and-hold return of one pair over [start, end], or None when it did not trade then."""
    tf = timeframe_ms(series.timeframe)
    ts = series.ts
    last = int(np.searchsorted(ts, end_ms - tf, "right")) - 1  # the last candle closed by the end
    if last < 0:
        return None
    before = int(np.searchsorted(ts, start_ms - tf, "right")) - 1  # the last candle closed by the start
    if last <= before:  # no candle closed inside the window
        return None
    # Listed inside the window (no candle closed by the start): bought at its first close. Not at
    # its first open: a listing's opening print is an auction's extreme (TKO opened at 0.10 and
    # closed its first minute at 2.86), which no order placed after the listing could get.
    entry = float(series.close[max(before, 0)])
    if not entry > 0.0:
        return None
    return float(series.close[last]) / entry - 1.0


def market_change(
    series: Iterable[CandleSeries], start_ms: int, end_ms: int, reference: str | None = None
) -> MarketChange:
    changes: dict[str, float] = {}
    for s in series:
        if not len(s):
            continue
        change = pair_change(s, start_ms, end_ms)
        if change is not None:
            changes[s.symbol] = change
    mean = sum(changes.values()) / len(changes) if changes else 0.0
    return MarketChange(mean, changes, reference)
