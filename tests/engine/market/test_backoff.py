"""The two backoff schedules and the Retry-After parser: plain arithmetic."""

from __future__ import annotations

import random

import pytest

from engine.market.backoff import RateLimitBackoff, ReconnectBackoff, parse_retry_after


def test_reconnect_backoff_doubles_within_jitter_and_caps() -> None:
    backoff = ReconnectBackoff(base_s=0.5, factor=2, cap_s=4, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    ceilings = [0.5, 1, 2, 4, 4, 4]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_reconnect_backoff_is_reproducible_with_a_seed() -> None:
    a = ReconnectBackoff(rng=random.Random(1))
    b = ReconnectBackoff(rng=random.Random(1))
    assert [a.next_delay() for _ in range(5)] == [b.next_delay() for _ in range(5)]


@pytest.mark.parametrize(("base", "factor", "cap"), [(0, 2, 1), (1, 0.5, 2), (2, 2, 1)], ids=["base", "factor", "cap"])
def test_reconnect_backoff_rejects_nonsense(base: float, factor: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        ReconnectBackoff(base_s=base, factor=factor, cap_s=cap)


def test_rate_limit_schedule_climbs_60_120_240_480_then_stays() -> None:
    rate = RateLimitBackoff()
    now = 1_000_000
    waits = []
    for _ in range(6):
        waits.append(rate.hit(now))
        now = rate.until_ms
    assert waits == [60, 120, 240, 480, 480, 480]


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    rate = RateLimitBackoff()
    assert rate.hit(0, retry_after_s=5) == 60
    assert rate.hit(0, retry_after_s=600) == 600
    assert rate.until_ms == 600_000
    assert rate.remaining_s(599_000) == 1


def test_trusting_retry_after_takes_the_server_at_its_word() -> None:
    """`hotcoin collect`'s policy: the Retry-After itself (short or long), the schedule only
    when the server named no time."""
    rate = RateLimitBackoff(trust_retry_after=True)
    assert rate.hit(0, retry_after_s=2) == 2 and rate.until_ms == 2_000
    assert rate.hit(2_000, retry_after_s=600) == 600 and rate.until_ms == 602_000  # a 418 ban, whole
    rate.success()
    assert rate.hit(0) == 60 and rate.hit(60_000) == 120


def test_success_resets_the_schedule() -> None:
    rate = RateLimitBackoff()
    rate.hit(0)
    rate.hit(0)
    rate.success()
    assert rate.until_ms == 0
    assert rate.hit(0) == 60


@pytest.mark.parametrize(
    ("header", "seconds"), [("30", 30.0), (" 2 ", 2.0), (None, None), ("soon", None), ("-1", None)],
    ids=["int", "spaces", "absent", "garbage", "negative"],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds
