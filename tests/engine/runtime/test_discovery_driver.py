"""`DiscoveryDriver.prepare_run` (a replay's run of minutes) does what `prepare` at each minute
does: the same market refreshes at the same minutes, slow inputs delivered at the same one.
As the replay tape does, runs start at a listing, so a run's minutes all see one market."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from typing import Any

from engine.discovery.social.source import SocialPost
from engine.runtime.discovery_driver import MARKETS_REFRESH_MS, DiscoveryDriver
from tests.kit.domain import make_market

MIN = 60_000
T0 = 1_618_531_200_000


class _Feed:
    """Markets whose count grows at `listing_at` (a listing); every read logged."""

    def __init__(self, log: list[tuple[str, int]], listing_at: int) -> None:
        self.log = log
        self.listing_at = listing_at
        self.now = 0

    async def markets(self) -> dict[str, Any]:
        self.log.append(("markets", self.now))
        symbols = ["A/USDT", "B/USDT"] + (["NEW/USDT"] if self.now >= self.listing_at else [])
        return {s: make_market(s) for s in symbols}


class _Discovery:
    def __init__(self, log: list[tuple[str, int]]) -> None:
        self.log = log

    def on_markets(self, markets: Iterable[Any], now_ms: int) -> object:
        self.log.append(("on_markets", now_ms))
        return None

    def on_posts(self, posts: Iterable[Any], now_ms: int) -> object:
        self.log.append(("on_posts", now_ms))
        return None

    def on_announcements(self, announcements: Iterable[Any], now_ms: int) -> object:
        self.log.append(("on_announcements", now_ms))
        return None

    def on_batch(self, batch: Any) -> object:
        self.log.append(("on_batch", batch.ts_ms))
        return batch.ts_ms


def _drive(runs: bool) -> list[tuple[str, int]]:
    log: list[tuple[str, int]] = []
    feed = _Feed(log, listing_at=T0 + 27 * MIN)  # the third run's first minute
    driver = DiscoveryDriver(_Discovery(log), feed, MIN)  # type: ignore[arg-type]

    async def go() -> None:
        feed.now = T0
        await driver.refresh_markets(T0, force=True)
        minutes = [T0 + m * MIN for m in range(1, 40)]
        for lo in range(0, len(minutes), 13):
            times = minutes[lo : lo + 13]
            if lo == 13:
                driver.deliver("posts", [])  # delivered between runs: folded in at the next minute
            feed.now = times[-1]  # the tape hands a run over at once: the market is at its end
            if runs:
                await driver.prepare_run(times)
            else:
                for t in times:
                    feed.now = t
                    await driver.prepare(t)

    asyncio.run(go())
    return log


def test_prepare_run_refreshes_and_delivers_at_the_minutes_prepare_does() -> None:
    one, run = _drive(False), _drive(True)
    assert [e for e in run if e[0] != "markets"] == [e for e in one if e[0] != "markets"]
    assert sum(k == "markets" for k, _ in run) == sum(k == "markets" for k, _ in one)  # as many refreshes
    refreshes = [t for k, t in one if k == "markets"]
    assert len(refreshes) >= 8 and all(b - a >= MARKETS_REFRESH_MS for a, b in itertools.pairwise(refreshes))
    assert ("on_posts", T0 + 14 * MIN) in one and ("on_markets", T0 + 30 * MIN) in one  # the listing, at a refresh


def test_a_refresh_that_keeps_the_count_still_reaches_discovery() -> None:
    """A coin shown as BREAK that opens for trading, and a rename (one symbol out, one in),
    keep the market count: discovery hears of both all the same, and of nothing unchanged."""
    from engine.domain.market import MarketStatus

    seen: list[dict[str, Any]] = []

    class Discovery(_Discovery):
        def on_markets(self, markets: Iterable[Any], now_ms: int) -> object:
            seen.append({m.symbol: m.status for m in markets})
            return None

    states = [
        {"A/USDT": MarketStatus.TRADING, "NEW/USDT": MarketStatus.BREAK, "OLD/USDT": MarketStatus.TRADING},
        {"A/USDT": MarketStatus.TRADING, "NEW/USDT": MarketStatus.TRADING, "OLD/USDT": MarketStatus.TRADING},
        {"A/USDT": MarketStatus.TRADING, "NEW/USDT": MarketStatus.TRADING, "OLD2/USDT": MarketStatus.TRADING},
        {"A/USDT": MarketStatus.TRADING, "NEW/USDT": MarketStatus.TRADING, "OLD2/USDT": MarketStatus.TRADING},
    ]

    class Feed:
        now = 0

        async def markets(self) -> dict[str, Any]:
            return {s: make_market(s, status=st) for s, st in states[self.now].items()}

    feed = Feed()
    driver = DiscoveryDriver(Discovery([]), feed, MIN)  # type: ignore[arg-type]

    async def go() -> None:
        for k in range(len(states)):
            feed.now = k
            await driver.refresh_markets(T0 + k * MARKETS_REFRESH_MS, force=k == 0)

    asyncio.run(go())
    assert seen == states[:3]  # the fourth refresh changed nothing: not passed on
    assert driver.markets["NEW/USDT"].status is MarketStatus.TRADING


def _post(post_id: str) -> SocialPost:
    return SocialPost("webhook", post_id, T0, "kol", 0, "$A up", ("A",))


def test_a_post_is_queued_from_its_delivery_until_discovery_takes_it() -> None:
    """What the webhook asks before it answers a repeat "accepted": each copy delivered counts,
    the next cycle takes them all, and a batch the full inbox drops is no longer queued."""
    log: list[tuple[str, int]] = []
    driver = DiscoveryDriver(_Discovery(log), _Feed(log, listing_at=T0), MIN)  # type: ignore[arg-type]
    driver.deliver("posts", [_post("a"), _post("b")])
    driver.deliver("posts", [_post("a")])
    driver.deliver("announcements", [])
    assert driver.post_queued("a") and driver.post_queued("b") and not driver.post_queued("c")
    asyncio.run(driver.prepare(T0))
    assert not driver.post_queued("a") and not driver.post_queued("b")
    assert [kind for kind, _ in log if kind.startswith("on_")] == ["on_markets", "on_posts", "on_posts", "on_announcements"]
    driver.deliver("posts", [_post("oldest")])
    for k in range(999):
        driver.deliver("posts", [_post(f"p{k}")])
    assert driver.post_queued("oldest")
    driver.deliver("posts", [_post("newest")])  # the inbox keeps 1000 deliveries: the oldest goes
    assert not driver.post_queued("oldest") and driver.post_queued("p0") and driver.post_queued("newest")


def _step_batches(called: bool) -> list[tuple[str, int]]:
    """A batch a minute through refreshes and deliveries, each `await driver.on_batch`, or as
    `TradingCycle.step` takes it: `discovery.on_batch` called at once where nothing is `due`."""
    log: list[tuple[str, int]] = []
    feed = _Feed(log, listing_at=T0 + 27 * MIN)
    driver = DiscoveryDriver(_Discovery(log), feed, MIN)  # type: ignore[arg-type]

    async def go() -> None:
        feed.now = T0
        await driver.refresh_markets(T0, force=True)
        for m in range(1, 45):  # refreshes every MARKETS_REFRESH_MS, posts at three minutes
            now = feed.now = T0 + m * MIN
            if m in (3, 4, 40):
                driver.deliver("posts", [])
            batch = type("Batch", (), {"ts_ms": now})()
            if called and not driver.due(now):
                got = driver.discovery.on_batch(batch)
            else:
                got = await driver.on_batch(batch)
            assert got == now

    asyncio.run(go())
    return log


def test_a_batch_called_where_nothing_is_due_is_the_awaited_one() -> None:
    awaited, called = _step_batches(False), _step_batches(True)
    assert called == awaited
    assert sum(k == "markets" for k, _ in called) >= 44 * MIN // MARKETS_REFRESH_MS and sum(k == "on_posts" for k, _ in called) == 3
