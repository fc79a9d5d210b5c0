"""Bar-level cache: each symbol's signal is computed at most once per bar.

Candidate cycles run every second or so; the features look at closed bars. The rules also read
heat and the cool-down, which move within a bar, but they are read once, at the bar's first
decision: live and a minute-grained backtest then decide at the same moments (a backtest sees
one batch a minute), at the cost of up to one bar's delay for a coin that turns hot mid-bar.
The cache keeps the current bar's results and forgets a bar as soon as a newer one is asked
for. A decision made without the bar that just closed is not kept (`SignalStage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class BarCache(Generic[T]):
    """(symbol, bar open ms) -> value, holding only the most recent bar."""

    def __init__(self) -> None:
        self._bar_ms: int | None = None
        self._values: dict[str, T] = {}

    def _roll(self, bar_ms: int) -> None:
        if bar_ms != self._bar_ms:
            if self._bar_ms is not None and bar_ms < self._bar_ms:
                # An older bar arriving late must not wipe the current bar's results.
                return
            self._bar_ms = bar_ms
            self._values = {}

    def get(self, symbol: str, bar_ms: int) -> T | None:
        if bar_ms != self._bar_ms:
            return None
        return self._values.get(symbol)

    def put(self, symbol: str, bar_ms: int, value: T) -> None:
        self._roll(bar_ms)
        if bar_ms == self._bar_ms:
            self._values[symbol] = value

    def put_many(self, symbols: Sequence[str], bar_ms: int, value: T) -> None:
        """`put` of `value` for each of `symbols`, in order (none: nothing, not even a roll)."""
        if not symbols:
            return
        self._roll(bar_ms)
        if bar_ms == self._bar_ms:
            self._values.update(dict.fromkeys(symbols, value))

    def __len__(self) -> int:
        return len(self._values)
