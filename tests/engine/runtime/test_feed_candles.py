"""The cycle feeds each wanted symbol's closed bars once per bar, but only once the bar that
just closed has come: a failed candle fetch is asked again a few seconds later, not left
missing (every feature NaN, the decision skipped) until the next bar."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

from engine.domain import Bars
from engine.runtime.cycle import BARS_RETRY_MS, TradingCycle
from engine.signals.bars import BarHistory
from tests.engine.signals import market_kit as mk

MIN = 60_000
SYMBOL = "C000/USDT"


class _Feed:
    """Closed 1m bars up to the current minute; answers nothing (as `GatewayFeed` does on an
    exchange error) while `failing`."""

    def __init__(self) -> None:
        self.failing = False
        self.now = 0
        self.calls: list[tuple[str, int, int | None]] = []

    async def closed_bars(self, symbol: str, tf: str, limit: int, *, after_ms: int | None = None) -> Bars:
        self.calls.append((symbol, self.now, after_ms))
        if self.failing:
            return Bars.of(symbol, tf, [])
        last = self.now // MIN * MIN - MIN
        candles = [c for c in mk.hot_bars(symbol, last, 1.0) if after_ms is None or c.open_ms > after_ms]
        return Bars.of(symbol, tf, candles[-(limit - 1) :])


def _cycle(feed: _Feed, history: BarHistory) -> Any:
    """A `TradingCycle` with only what `_feed_candles` reads (no market, broker or journal)."""
    cycle = TradingCycle.__new__(TradingCycle)
    cycle.core = SimpleNamespace(book=SimpleNamespace(holdings={}), on_bars=history.add_bars)  # type: ignore[assignment]
    cycle.feed = feed  # type: ignore[assignment]
    cycle._tf, cycle._tf_ms, cycle._regime, cycle._store, cycle._fed = "1m", MIN, SYMBOL, None, {}
    cycle.driver = SimpleNamespace(markets={SYMBOL: object()})  # type: ignore[assignment]
    return cycle


def test_a_failed_fetch_is_retried_within_the_bar() -> None:
    feed, history = _Feed(), BarHistory("1m")
    cycle = _cycle(feed, history)
    pool = [SimpleNamespace(symbol=SYMBOL)]

    async def at(now: int, failing: bool) -> None:
        feed.now, feed.failing = now, failing
        await cycle._feed_candles(pool, now)

    bar = mk.NOW // MIN * MIN
    asyncio.run(at(bar - MIN + 1_000, False))  # fed for the bar before
    asyncio.run(at(bar + 1_000, True))  # the next bar's fetch fails
    asyncio.run(at(bar + 2_000, False))  # too soon to ask again
    asyncio.run(at(bar + 1_000 + BARS_RETRY_MS, False))  # asked again, and it comes
    asyncio.run(at(bar + 40_000, False))  # fed for this bar: not asked again
    assert [t - bar for _, t, _ in feed.calls] == [1_000 - MIN, 1_000, 1_000 + BARS_RETRY_MS]
    assert math.isfinite(history.window([SYMBOL], bar - MIN).close[-1, 0])  # the bar that just closed is there


class _HangingFeed(_Feed):
    """Every request waits for `release`: an exchange whose REST hangs until its timeout."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.release, self.all_asked = asyncio.Event(), asyncio.Event()
        self.expected = expected
        self.in_flight = 0

    async def closed_bars(self, symbol: str, tf: str, limit: int, *, after_ms: int | None = None) -> Bars:
        self.in_flight += 1
        if self.in_flight == self.expected:
            self.all_asked.set()
        await self.release.wait()
        self.in_flight -= 1
        return await super().closed_bars(symbol, tf, limit, after_ms=after_ms)


def test_a_hanging_exchange_holds_the_cycle_for_one_request_not_one_per_symbol() -> None:
    """Asked one after the other, 20 wanted symbols on an exchange whose REST hangs held the
    cycle, exits included, for 20 request timeouts. They are asked all at once, and every
    symbol's bars still land, in the order asked."""
    symbols = [f"C{i:03d}/USDT" for i in range(5)]
    feed, history = _HangingFeed(len(symbols)), BarHistory("1m")
    cycle = _cycle(feed, history)
    cycle.driver = SimpleNamespace(markets={s: object() for s in symbols})
    pool = [SimpleNamespace(symbol=s) for s in symbols]
    now = mk.NOW // MIN * MIN + 1_000
    feed.now = now

    async def feed_while_hung() -> None:
        fed = asyncio.ensure_future(cycle._feed_candles(pool, now))
        try:
            await asyncio.wait_for(feed.all_asked.wait(), 5)  # every request out while none has come back
        finally:
            feed.release.set()
            await fed

    asyncio.run(feed_while_hung())
    window = history.window(symbols, now // MIN * MIN - MIN)
    assert all(math.isfinite(window.close[-1, i]) for i in range(len(symbols)))


class _Store:
    """A `BarStore` that records what it was told to follow."""

    def __init__(self) -> None:
        self.followed: list[tuple[str, int]] = []

    def follow(self, symbol: str, now_ms: int) -> None:
        self.followed.append((symbol, now_ms))


def test_a_store_is_told_to_follow_each_wanted_symbol_it_has_a_market_for() -> None:
    """Each candidate, held coin and the regime symbol with a market, none without: the set of
    symbols following the old wanted-set gives (following twice in a minute is following once)."""
    cycle = _cycle(_Feed(), BarHistory("1m"))
    cycle._store = store = _Store()
    cycle.driver = SimpleNamespace(markets=dict.fromkeys(["A/USDT", "B/USDT", "H/USDT", SYMBOL]))
    cycle.core.book.holdings = {"H/USDT": object(), "B/USDT": object(), "X/USDT": object()}
    names = ["A/USDT", "B/USDT", "Z/USDT", "A/USDT"]
    pool = [SimpleNamespace(symbol=s) for s in names]
    asyncio.run(cycle._feed_candles(pool, mk.NOW))
    wanted = {*names, *cycle.core.book.holdings, SYMBOL}
    assert set(store.followed) == {(s, mk.NOW) for s in wanted if s in cycle.driver.markets}
