"""`ExchangeClock`: the gateway's clock for an exchange that keeps its own, paced time.

The simulated exchange runs at `pace` x wall time from a time of its own, which the runtime
reads from its `/api/v3/time` at start and then extrapolates. That reading goes out of date
when the exchange's clock is not the one we read: a sim-exchange restarted mid-run starts its
clock again from its own origin (hours or days of market time behind ours at x300), and one
started ahead of the wall jumps us forward. `resync()` re-reads the exchange's time (the feed
calls it when the ticker stream comes back after a drop, or when event times disagree with
this clock) and re-anchors.

**Never backwards.** The engine cannot follow an exchange whose clock went back: discovery
drops every batch older than the last it took, errors, cool-downs and max-hold timers are
measured against times already journaled, and the journal's `ts_ms` would run backwards
through a trace. So `now_ms()` (the time the gateway stamps, the feed hands the engine, and
rate-limit silences, stream health and the candle cache are judged by) only moves forward:

- the exchange *ahead* of this clock: re-anchored at its time, a step forward (the engine sees
  its data age and recovers, as after any outage);
- *behind* by less than `REWIND_MIN_MS` (or twice the reading's own uncertainty): kept, as
  noise (a slow round trip at x300 is minutes of market time), never stepped back;
- *behind* by more (a restarted exchange): the exchange's time from here on is shown `shift_ms`
  later, `shift_ms` a whole number of days, the fewest that keep `now_ms()` from going back.
  Whole days keep every bar up to 1d on its boundaries and the time of day as the exchange
  says it; the gateway adds `shift_ms` to every time the exchange reports (event times,
  candles, orders, fills) and takes it off every time it sends (`since`), so the engine
  lives on one continuous timeline in which the new exchange's data is fresh. The cost: the
  engine's clock steps forward by less than a day, once, at the restart.

Binance never needs any of this: `SystemClock` is its time.

**Signing.** ccxt stamps signed requests with the wall clock (less `timeDifference`), and an
exchange judges them on its own clock; `signing_reference` says what to read the exchange's
time against to learn the offset (`engine.market.ccxt_gateway`'s resync).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from engine.market.backoff import Clock

DAY_MS = 86_400_000  # the shift after a rewind is whole days (module docstring)
REWIND_MIN_MS = 5 * 60_000  # an exchange this far behind our clock has restarted; less is noise

TimeSource = Callable[[], Awaitable[int]]  # reads the exchange's clock (`GET /api/v3/time`), in its ms


class ExchangeClock:
    """The gateway's `Clock` for an exchange whose time runs at `pace` x wall time from
    `exchange_ms` (the simulated exchange's clock, read from its `/api/v3/time`).

    The gateway stamps batches and judges candles closed, stream silence, backoffs and
    rate-limit silences with its clock; on the simulated exchange at x300 those must be
    exchange seconds (a 60 s rate-limit silence lasts 0.2 s of wall time there, as it would
    for a client living at the exchange's pace). `fetch_time` re-reads the exchange's clock for
    `resync()`; without it the clock is only ever extrapolated. See the module docstring for
    why `now_ms()` never goes back and what `shift_ms` is.
    """

    def __init__(
        self,
        exchange_ms: int,
        pace: float,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        fetch_time: TimeSource | None = None,
    ) -> None:
        if pace <= 0:
            raise ValueError(f"pace must be positive (exchange seconds per wall second), got {pace}")
        self.pace = pace
        self.shift_ms = 0  # how much later than the exchange says its times are shown (module docstring)
        self.resyncs = 0
        self._origin = exchange_ms
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._first = (exchange_ms, self._t0)  # the reading this clock was built from (`as_first_read_ms`)
        self._fetch_time = fetch_time

    def now_ms(self) -> int:
        return self._origin + self.shift_ms + int((self._monotonic() - self._t0) * 1000.0 * self.pace)

    def as_first_read_ms(self) -> int:
        """The exchange's time now, in its ms, as the first reading extrapolates it at `pace`:
        whatever `reanchor` did since (forward steps, `shift_ms`), what its time would read had
        its clock not moved against ours since this clock was built."""
        exchange_ms, t0 = self._first
        return exchange_ms + int((self._monotonic() - t0) * 1000.0 * self.pace)

    def from_exchange(self, exchange_ms: int) -> int:
        """A time the exchange reported, on this clock."""
        return exchange_ms + self.shift_ms

    def to_exchange(self, ms: int) -> int:
        """A time on this clock, as the exchange counts it (a request's `since`)."""
        return ms - self.shift_ms

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.pace)

    def reanchor(self, exchange_ms: int, *, uncertainty_ms: int = 0) -> int:
        """The exchange's clock reads `exchange_ms` now (give or take `uncertainty_ms`): follow it
        forward, keep it when a little behind, shift when far behind (module docstring). Returns
        how many ms `now_ms()` stepped forward (0: kept, or no step)."""
        before = self.now_ms()
        behind = before - (exchange_ms + self.shift_ms)
        if behind > max(REWIND_MIN_MS, 2 * uncertainty_ms):
            self.shift_ms = math.ceil((before - exchange_ms) / DAY_MS) * DAY_MS
        elif behind > 0:
            return 0
        self._origin, self._t0 = exchange_ms, self._monotonic()
        return self.now_ms() - before

    def continue_after(self, ms: int) -> int:
        """Go on from a timeline that already reached `ms` (the journal's newest event, written
        by an engine run before this one, on a sim-exchange that has restarted since): where the
        exchange's time is more than `REWIND_MIN_MS` behind it, its times are shown the whole
        days later that keep this engine's events after the earlier run's, as `reanchor` does
        mid-run. A restarted engine read the exchange's time afresh, and journaled its start a
        day before the earlier run's stop: reports then mixed the two runs. Returns `shift_ms`."""
        behind = ms - self.now_ms()
        if behind > REWIND_MIN_MS:
            self.shift_ms += math.ceil(behind / DAY_MS) * DAY_MS
        return self.shift_ms

    async def resync(self) -> int | None:
        """Re-read the exchange's clock and `reanchor`; None without a `fetch_time`. The reading
        is taken as of the round trip's midpoint, half the round trip its uncertainty. Raises
        what `fetch_time` raises."""
        if self._fetch_time is None:
            return None
        sent = self._monotonic()
        server_ms = await self._fetch_time()
        back = self._monotonic()
        half_ms = int((back - sent) / 2 * 1000.0 * self.pace)
        self.resyncs += 1
        return self.reanchor(server_ms + half_ms, uncertainty_ms=half_ms)


def signing_reference(clock: Clock, wall_ms: Callable[[], int]) -> Callable[[], int]:
    """What to read the exchange's time (`GET /api/v3/time`) against to learn how far ahead of
    the timestamps we sign with (`wall_ms`, the clock ccxt stamps requests with) its recvWindow
    check runs: the exchange's clock minus that reference is the offset to sign with.

    - An exchange whose time is the wall's: Binance (`SystemClock`), and the simulated exchange
      at x1, whose clock is the wall's (`hotcoin sim-exchange` starts it at the wall's time):
      `wall_ms`. Never the exchange-anchored clock, even where it keeps the exchange's time
      (at x1): that clock was read from the exchange's time, skew included, so against it a
      skew present at start read as 0 and ccxt went on signing with the wall clock, refused.
    - A paced simulated exchange (x300): its time is simulated, no wall clock's, while it judges
      signed requests on the wall clock plus its skew; all its time can tell is how far its
      clock moved against ours since we first read it, so the reference is that first reading
      extrapolated (`ExchangeClock.as_first_read_ms`). A skew it had before that reading cannot
      be told from its simulated time (`hotcoin doctor` skips its clock check alike).
    """
    if isinstance(clock, ExchangeClock) and clock.pace != 1.0:
        return clock.as_first_read_ms
    return wall_ms


def exchange_shift_ms(clock: Clock) -> int:
    """How much later than the exchange reports them `clock` shows its times (0 but on an
    `ExchangeClock` after the exchange's clock went back)."""
    return clock.shift_ms if isinstance(clock, ExchangeClock) else 0
