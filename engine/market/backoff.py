"""Waiting, done in one place: the clock the gateway reads, and the two backoff schedules.

Every wait in `engine.market` goes through a `Clock`, so tests run an hour of reconnects
and rate-limit bans in milliseconds (`engine.market.fake.ManualClock`) and the schedules
themselves are plain arithmetic, tested without an event loop.

- `ReconnectBackoff`: a dropped stream is re-dialled after base x factor^n seconds, capped,
  with "full jitter" (uniform in [delay/2, delay]) so many clients dropped by one exchange
  restart do not all come back in the same millisecond. The RNG is injected (seeded in tests).
- `RateLimitBackoff`: HTTP 429/418 mean Binance is counting our weight; continuing to send
  escalates a 429 into an IP ban (418) of minutes to days. So after one, nothing is sent for
  60 s, then 120, 240, 480 (capped) on repeats; a server `Retry-After` is a floor. A batch
  download (`hotcoin collect`) takes the server at its word instead (`trust_retry_after`).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time in epoch ms, and an awaitable sleep; the only time source of the gateway."""

    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: `time.time()` and `asyncio.sleep`."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ReconnectBackoff:
    """Delay before re-dialling a dropped stream: base x factor^attempt, capped, jittered."""

    def __init__(
        self, *, base_s: float = 0.5, factor: float = 2.0, cap_s: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if base_s <= 0 or factor < 1 or cap_s < base_s:
            raise ValueError(f"backoff needs base_s > 0, factor >= 1, cap_s >= base_s; got {base_s}, {factor}, {cap_s}")
        self.base_s = base_s
        self.factor = factor
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The next wait in seconds, and count the attempt."""
        ceiling = min(self.cap_s, self.base_s * self.factor**self.attempt)
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """A message arrived: the next drop starts from `base_s` again."""
        self.attempt = 0


RATE_LIMIT_SCHEDULE_S: tuple[float, ...] = (60.0, 120.0, 240.0, 480.0)


class RateLimitBackoff:
    """How long to stay silent after HTTP 429/418: 60 -> 120 -> 240 -> 480 s, Retry-After a floor.

    `until_ms` is the end of the current silence (0 when none). A success after the silence
    resets the schedule; another 429 before that climbs it.

    `trust_retry_after`: the silence is the server's Retry-After itself when it sent one, the
    schedule only when it did not. Binance documents Retry-After as the wait that prevents a ban
    (429) or the ban's end (418), so honouring it exactly is safe; the live engine still keeps
    the schedule's margin (a ban there stops trading with positions open), but a batch download
    has only time at stake and would otherwise sit out 15 minutes of a burst the server asked
    2 s for. A ban of unknown length (no Retry-After) keeps the schedule either way.
    """

    def __init__(
        self, schedule_s: tuple[float, ...] = RATE_LIMIT_SCHEDULE_S, *, trust_retry_after: bool = False
    ) -> None:
        if not schedule_s or any(s <= 0 for s in schedule_s):
            raise ValueError(f"rate-limit schedule must be positive seconds, got {schedule_s}")
        self.schedule_s = schedule_s
        self.trust_retry_after = trust_retry_after
        self.strikes = 0
        self.until_ms = 0

    def hit(self, now_ms: int, retry_after_s: float | None = None) -> float:
        """Record a 429/418 at `now_ms`; returns the silence in seconds."""
        step = self.schedule_s[min(self.strikes, len(self.schedule_s) - 1)]
        if self.trust_retry_after and retry_after_s is not None:
            step = 0.0
        wait = max(step, retry_after_s or 0.0)
        self.strikes += 1
        self.until_ms = max(self.until_ms, now_ms + int(wait * 1000))
        return wait

    def remaining_s(self, now_ms: int) -> float:
        return max(0.0, (self.until_ms - now_ms) / 1000)

    def success(self) -> None:
        self.strikes = 0
        self.until_ms = 0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP Retry-After header (delta-seconds form; Binance sends that), else None."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
