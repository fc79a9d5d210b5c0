"""`DiscoveryDriver`: discovery's half of the cycle (`engine.runtime.cycle`), in a module of its own.

A backtest's discovery process (`engine.backtest.discovery_process`) runs one over its own
replay market and never trades: kept apart from `TradingCycle`, it forks without the trading
side imported (the core, execution, portfolio, the state machine: 11% of the instructions
before a month's fork, ~25-40 ms), which the trading process then imports while the child
already runs.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any, Protocol

from engine.discovery.listings import Announcement
from engine.discovery.pipeline import DiscoveryCycle
from engine.discovery.social.source import SocialPost
from engine.domain import Market, MinuteVolumes, TickerBatch
from engine.runtime.feed import MarketFeed

MARKETS_REFRESH_MS = 5 * 60_000


class DiscoveryStage(Protocol):
    """What the cycle asks of discovery: a `Discovery`, or a backtest's replay of one's output
    (`engine.backtest.reuse`). Discovery reads the market and nothing the core does."""

    def on_batch(self, batch: TickerBatch, *, journal: bool = True) -> DiscoveryCycle: ...

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> object: ...

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> object: ...

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> object: ...

    def seed_day(self, volumes: MinuteVolumes) -> object: ...


class DiscoveryDriver:
    """Discovery's half of the cycle: everything discovery sees, in the order it sees it.

    Market info is refreshed every `MARKETS_REFRESH_MS` of market time (forced at the first
    warm-up batch and at the first trading batch: listings appear), social posts and
    announcements delivered since the last batch are folded in, then the batch itself.
    `TradingCycle` runs one; a backtest's discovery process (`engine.backtest.discovery_process`)
    runs one on its own, over its own copy of the replay market, so the two processes call
    discovery identically by construction rather than by keeping two copies of this order.
    """

    def __init__(self, discovery: DiscoveryStage, feed: MarketFeed, slot_ms: int) -> None:
        self.discovery = discovery
        self.feed = feed
        self.slot_ms = slot_ms
        self.markets: dict[str, Market] = {}  # replaced (never mutated) when a refresh changes them
        self._markets_at = 0
        self._inbox: deque[tuple[str, list[Any]]] = deque(maxlen=1000)  # slow inputs between batches
        self._queued_posts: Counter[str] = Counter()  # post id -> its copies in the inbox

    async def warmup(self) -> int:
        """The feed's warm-up batches through discovery, journaling nothing; their count.

        Nothing is decided in a warm-up, and a restart's warm-up replays minutes the run before
        already journaled and decided: its snapshots listed, under the new run's trace ids,
        "open" traces nothing would decide, stamped before that run's end. Discovery journals
        the pool it leaves at the first trading batch instead (`engine.discovery.pipeline`)."""
        warm = 0
        async for past in self.feed.warmup(self.slot_ms):
            if not warm:
                await self.refresh_markets(past.ts_ms, force=True)
            self.discovery.on_batch(past, journal=False)
            if not warm:
                # A feed that holds the day behind its first batch (a replay's candles) says what
                # traded when, so what leaves the 24 h figures is read from the start instead of
                # guessed for a day: a minute's volume z must not depend on where a backtest began.
                day = self.feed.day_volumes(past.ts_ms)
                if day is not None:
                    self.discovery.seed_day(day)
            warm += 1
        return warm

    async def open(self, first: TickerBatch) -> None:
        """Market info at the first trading batch, whatever the schedule says."""
        await self.refresh_markets(first.ts_ms, force=True)

    def deliver(self, kind: str, items: list[Any]) -> None:
        if len(self._inbox) == self._inbox.maxlen:  # the deque drops its oldest to take this one
            self._unqueue(*self._inbox[0])
        self._inbox.append((kind, items))
        if kind == "posts":
            self._queued_posts.update(post.post_id for post in items)

    def post_queued(self, post_id: str) -> bool:
        """Whether a post with this id waits in the inbox for the next cycle. Discovery only
        refuses a repeat once it has taken the first copy: until then the webhook (which
        answers discovery's verdict to the sender) said "accepted" for a copy sent again."""
        return post_id in self._queued_posts

    def _unqueue(self, kind: str, items: list[Any]) -> None:
        if kind == "posts":
            for post in items:
                left = self._queued_posts[post.post_id] - 1
                if left:
                    self._queued_posts[post.post_id] = left
                else:
                    del self._queued_posts[post.post_id]

    async def on_batch(self, batch: TickerBatch) -> DiscoveryCycle:
        if self.due(batch.ts_ms):
            await self.prepare(batch.ts_ms)
        return self.discovery.on_batch(batch)

    def due(self, now: int) -> bool:
        """Whether `prepare` has anything to do at `now`: a markets refresh due, or slow inputs
        delivered. Most batches have neither, and a coroutine that does nothing costs more than
        this question: where it is False, `on_batch` is `discovery.on_batch`, called at once."""
        return bool(self._inbox) or now - self._markets_at >= MARKETS_REFRESH_MS

    async def prepare(self, now: int) -> None:
        """Everything discovery sees before the batch at `now`: market info when due, slow inputs."""
        await self.refresh_markets(now)
        while self._inbox:
            kind, items = self._inbox.popleft()
            self._unqueue(kind, items)
            if kind == "posts":
                self.discovery.on_posts(items, now)
            else:
                self.discovery.on_announcements(items, now)

    async def prepare_run(self, times: list[int]) -> None:
        """`prepare` at each of `times` in turn (a replay's run of minutes), skipping the
        minutes where it has nothing to do: no refresh due, nothing delivered."""
        for now in times:
            if self.due(now):
                await self.prepare(now)

    async def refresh_unchanged(self, now: int) -> bool:
        """`prepare` at `now` where it changes nothing: nothing delivered, and market info as
        it was. Then the refresh's time is noted, as `refresh_markets` notes it, and True;
        else False and nothing is done (a quiet run stops there: `TradingCycle.step_quiet`)."""
        if self._inbox:
            return False
        if now - self._markets_at >= MARKETS_REFRESH_MS:
            if await self.feed.markets() != self.markets:
                return False
            self._markets_at = now
        return True

    async def refresh_markets(self, now: int, force: bool = False) -> None:
        if not force and now - self._markets_at < MARKETS_REFRESH_MS:
            return
        markets = await self.feed.markets()
        self._markets_at = now
        # Any change, not a change of count: a coin Binance lists as BREAK that opens for
        # trading, or a rename (one symbol out, one in), keeps the count and must reach the
        # listing monitor all the same (equal `Market`s compare by identity first: cheap).
        if force or markets != self.markets:
            self.markets = dict(markets)
            self.discovery.on_markets(markets.values(), now)
