"""`ExchangeClock` re-anchoring: forward as the exchange says, never backwards (a restarted
exchange's times are shown whole days later instead), small disagreements kept as noise; and
`GatewayFeed` re-reading it after a reconnect, so its batches stay monotonic and fresh."""

from __future__ import annotations

import pytest

from engine.market.exchange_clock import (
    DAY_MS,
    REWIND_MIN_MS,
    ExchangeClock,
    exchange_shift_ms,
    signing_reference,
)
from engine.market.fake import FakeGateway, ManualClock
from engine.market.gateway import StreamHealth
from engine.runtime.gateway_feed import GatewayFeed
from tests.kit.domain import T0, make_batch, make_market

PACE = 300.0


class Wall:
    """A monotonic wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.s = 100.0

    def __call__(self) -> float:
        return self.s


def test_a_clock_extrapolates_at_its_pace_and_follows_the_exchange_forward() -> None:
    wall = Wall()
    clock = ExchangeClock(T0, PACE, wall)
    wall.s += 2
    assert clock.now_ms() == T0 + 600_000
    assert clock.reanchor(T0 + 3_600_000) == 3_000_000  # an exchange ahead: a step forward
    assert clock.now_ms() == T0 + 3_600_000 and clock.shift_ms == 0
    assert exchange_shift_ms(clock) == 0 and exchange_shift_ms(ManualClock(T0)) == 0


@pytest.mark.parametrize(
    ("behind_ms", "uncertainty_ms"),
    [
        pytest.param(REWIND_MIN_MS, 0, id="within-the-noise-bound"),
        pytest.param(REWIND_MIN_MS * 3, REWIND_MIN_MS * 2, id="within-the-reading's-uncertainty"),
    ],
)
def test_an_exchange_a_little_behind_is_noise_and_the_clock_is_kept(behind_ms: int, uncertainty_ms: int) -> None:
    wall = Wall()
    clock = ExchangeClock(T0, PACE, wall)
    assert clock.reanchor(T0 - behind_ms, uncertainty_ms=uncertainty_ms) == 0
    assert clock.now_ms() == T0 and clock.shift_ms == 0


def test_an_exchange_far_behind_is_shown_whole_days_later_and_the_clock_never_goes_back() -> None:
    """A sim restarted from its origin after 30 h of market time: the clock does not go back 30 h
    (the engine's discovery windows, timers and journal need one timeline); the exchange's times
    are shown 2 days later from now on, so its next batches are fresh and on bar boundaries."""
    wall = Wall()
    clock = ExchangeClock(T0, PACE, wall)
    wall.s += 360  # 30 h of market time
    before = clock.now_ms()
    stepped = clock.reanchor(T0)  # the restarted exchange's clock reads its origin again
    assert clock.shift_ms == 2 * DAY_MS
    assert stepped == 2 * DAY_MS - 30 * 3_600_000 and clock.now_ms() == before + stepped
    assert clock.from_exchange(T0 + 60_000) == T0 + 2 * DAY_MS + 60_000
    assert clock.to_exchange(clock.now_ms()) == T0
    wall.s += 1
    assert clock.now_ms() == T0 + 2 * DAY_MS + 300_000  # on at its pace from there
    # The same exchange read again agrees: nothing moves; a second restart adds to the shift.
    assert clock.reanchor(T0 + 300_000) == 0 and clock.shift_ms == 2 * DAY_MS
    assert clock.reanchor(T0) == 0  # 5 min behind: noise
    wall.s += 3600
    clock.reanchor(T0)
    assert clock.shift_ms == 15 * DAY_MS and clock.now_ms() >= T0 + 2 * DAY_MS + 300_000 + 3600 * 300_000


async def test_resync_reads_the_exchange_at_the_round_trips_midpoint() -> None:
    wall = Wall()

    async def fetch_time() -> int:
        wall.s += 0.01  # a round trip of 3 s of market time: the reading is 1.5 s old when it lands
        return T0 + DAY_MS

    assert await ExchangeClock(T0, PACE, wall).resync() is None  # nothing to read it from: extrapolated only
    clock = ExchangeClock(T0, PACE, wall, fetch_time=fetch_time)
    assert await clock.resync() == DAY_MS + 1_500 - 3_000
    assert clock.now_ms() == T0 + DAY_MS + 1_500 and clock.resyncs == 1 and clock.shift_ms == 0


async def test_the_feed_re_reads_the_clock_after_a_reconnect_and_its_batches_stay_fresh_and_monotonic() -> None:
    """A restarted exchange: its first batch after the drop has event times from its own origin,
    hours behind our clock. The feed re-reads the exchange's time, and hands the engine a batch
    later than the last one whose data is fresh: no `data_stale` for the first run's length."""
    wall = Wall()
    exchange_now = [T0 + 10 * 3_600_000]

    async def fetch_time() -> int:
        return exchange_now[0]

    clock = ExchangeClock(T0 + 10 * 3_600_000, PACE, wall, fetch_time=fetch_time)
    gateway = FakeGateway({"DOGE/USDT": make_market("DOGE/USDT")}, clock=ManualClock(T0))
    feed = GatewayFeed(gateway, clock=clock, idle_s=0.01)
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.3}, ts_ms=clock.now_ms()))
    first = await feed.next_batch()
    assert feed.data_age_s(first.ts_ms) == 0
    assert clock.resyncs == 0  # no drop, no disagreement: not asked
    wall.s += 60  # five hours of market time pass; the exchange restarts from T0
    exchange_now[0] = T0
    gateway.set_health(StreamHealth("tickers", connected=True, reconnects=3))
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.31}, ts_ms=T0 + 1_000))
    back = await feed.next_batch()
    assert clock.resyncs == 1 and clock.shift_ms == DAY_MS
    assert back.ts_ms > first.ts_ms + 5 * 3_600_000
    assert int(back.event_ms[0]) == T0 + DAY_MS + 1_000
    age = feed.data_age_s(back.ts_ms)
    assert age is not None and age < 60  # fresh, where the old clock read it as 15 hours old
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.32}, ts_ms=T0 + 2_000))
    assert (await feed.next_batch()).ts_ms > back.ts_ms and clock.resyncs == 1  # asked once per reconnect
    await feed.close()


def test_a_clock_goes_on_after_a_journal_that_reached_further_in_whole_days() -> None:
    """An engine restarted against a sim-exchange that restarted under the earlier run (whose
    events are shown days later) read the exchange's time afresh and journaled its start a day
    before the earlier run's stop. It now starts where that timeline left off."""
    wall = Wall()
    clock = ExchangeClock(T0, PACE, wall)
    assert clock.continue_after(T0 - DAY_MS) == 0  # a journal behind the exchange: nothing to do
    assert clock.continue_after(T0 + REWIND_MIN_MS) == 0  # a little ahead: noise, as mid-run
    assert clock.continue_after(T0 + DAY_MS + 5_000) == 2 * DAY_MS
    assert clock.now_ms() == T0 + 2 * DAY_MS > T0 + DAY_MS + 5_000
    assert clock.from_exchange(T0 + 60_000) == T0 + 2 * DAY_MS + 60_000


def test_signatures_are_measured_against_the_wall_unless_the_exchange_is_paced() -> None:
    """ccxt signs with the wall clock. An exchange whose time is the wall's (Binance, the sim at
    x1) is measured against the wall, never against a clock read from the exchange's own time,
    which carries any skew it had at start. A paced one's time is simulated: it is measured
    against its first reading extrapolated, whatever the clock did since."""

    def wall_ms() -> int:
        return 1_000

    wall = Wall()
    assert signing_reference(ManualClock(T0), wall_ms) is wall_ms
    assert signing_reference(ExchangeClock(T0 + 120_000, 1.0, wall), wall_ms) is wall_ms
    paced = ExchangeClock(T0, PACE, wall)
    wall.s += 2
    paced.reanchor(T0 + 3_600_000)  # the feed followed the exchange's clock forward
    assert paced.now_ms() == T0 + 3_600_000
    assert signing_reference(paced, wall_ms)() == T0 + 600_000
