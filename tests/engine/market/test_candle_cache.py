"""Candle fetches are reused within 0.8 of a bar, bounded, and shared while in flight."""

from __future__ import annotations

import asyncio

import pytest

from engine.domain import Candle
from engine.market.candle_cache import CandleCache
from engine.market.fake import ManualClock
from tests.kit.domain import make_candle


class CountingFetch:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> list[Candle]:
        self.calls += 1
        await asyncio.sleep(0)
        return [make_candle(close=float(self.calls))]


async def test_same_candles_are_not_fetched_twice_within_a_bar() -> None:
    clock = ManualClock()
    cache = CandleCache(clock)
    fetch = CountingFetch()
    key = ("DOGE/USDT", "1m", None, 100)
    first = await cache.get(key, fetch)
    clock.advance(47.9)  # still inside 0.8 x 60 s
    assert await cache.get(key, fetch) == first
    assert fetch.calls == 1
    clock.advance(0.2)  # 48.1 s: expired
    refreshed = await cache.get(key, fetch)
    assert fetch.calls == 2
    assert refreshed[0].close == 2.0
    assert (cache.hits, cache.misses) == (1, 2)


async def test_ttl_scales_with_the_timeframe() -> None:
    clock = ManualClock()
    cache = CandleCache(clock)
    fetch = CountingFetch()
    key = ("DOGE/USDT", "1h", None, 100)
    await cache.get(key, fetch)
    clock.advance(2879)  # < 0.8 x 3600 s
    await cache.get(key, fetch)
    assert fetch.calls == 1


async def test_different_requests_are_different_entries_and_lru_bounded() -> None:
    cache = CandleCache(ManualClock(), max_entries=2)
    fetch = CountingFetch()
    a, b, c = (("A/USDT", "1m", None, 10), ("B/USDT", "1m", None, 10), ("C/USDT", "1m", None, 10))
    await cache.get(a, fetch)
    await cache.get(b, fetch)
    await cache.get(a, fetch)  # a is now most recent
    await cache.get(c, fetch)  # evicts b
    assert len(cache) == 2
    await cache.get(a, fetch)
    assert fetch.calls == 3
    await cache.get(b, fetch)
    assert fetch.calls == 4


async def test_concurrent_identical_requests_share_one_fetch() -> None:
    cache = CandleCache(ManualClock())
    fetch = CountingFetch()
    key = ("DOGE/USDT", "1m", None, 10)
    results = await asyncio.gather(*(cache.get(key, fetch) for _ in range(5)))
    assert fetch.calls == 1
    assert all(r == results[0] for r in results)


async def test_a_failed_fetch_is_not_cached_and_reaches_every_waiter() -> None:
    cache = CandleCache(ManualClock())
    gate = asyncio.Event()

    async def failing() -> list[Candle]:
        await gate.wait()
        raise RuntimeError("exchange down")

    key = ("DOGE/USDT", "1m", None, 10)
    waiters = [asyncio.ensure_future(cache.get(key, failing)) for _ in range(2)]
    await asyncio.sleep(0)
    gate.set()
    for waiter in waiters:
        with pytest.raises(RuntimeError, match="exchange down"):
            await waiter
    fetch = CountingFetch()
    await cache.get(key, fetch)
    assert fetch.calls == 1


@pytest.mark.parametrize(("entries", "fraction"), [(0, 0.8), (10, 0), (10, 1.5)], ids=["entries", "zero", "over-one"])
def test_bad_settings_are_rejected(entries: int, fraction: float) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CandleCache(ManualClock(), max_entries=entries, ttl_fraction=fraction)
