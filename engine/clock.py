"""Clocks for the async shell. The core never reads a clock: the runtime reads one of these
and passes `now_ms` in, so the same decisions run on wall time, sim time and history."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def to_wall_seconds(self, sim_ms: int) -> float:
        """How long the runtime must really wait for `sim_ms` of this clock's time to pass."""
        ...


class SimClock:
    """Sim time that runs `speed` times faster than the wall clock from `start_ms`.

    Monotonic underneath, so a wall-clock step (NTP) never moves sim time backwards.
    """

    def __init__(self, start_ms: int, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start_ms = start_ms
        self.speed = speed
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.speed)

    def to_wall_seconds(self, sim_ms: int) -> float:
        return sim_ms / 1000 / self.speed
