"""Polls Binance's listing announcements over HTTP: a thin async shell around the pure parser.

All judgement (which titles announce which coins, which articles are new) lives in
`engine.discovery.listings`; this module only fetches, obeys the rate-limit back-off and hands
new announcements to a callback. The clock is injected so tests drive it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import aiohttp

from engine.discovery.http import RateLimitBackoff, fetch_json
from engine.discovery.listings import Announcement, SeenArticles, parse_announcements


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AnnouncementPoller:
    """Fetches the announcement list and yields the articles not seen before."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        quote_asset: str = "USDT",
        stop_words: tuple[str, ...] = (),
        retention_ms: int = 14 * 86_400_000,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.session = session
        self.url = url
        self.quote_asset = quote_asset
        self.stop_words = stop_words
        self.clock = clock
        self.backoff = RateLimitBackoff()
        self.seen = SeenArticles(retention_ms)
        self.counters: Counter[str] = Counter()

    async def poll_once(self) -> list[Announcement]:
        now = self.clock()
        payload = await fetch_json(self.session, self.url, now_ms=now, backoff=self.backoff, counters=self.counters)
        if payload is None:
            return []
        parsed = parse_announcements(payload, self.quote_asset, self.stop_words, self.counters)
        return self.seen.fresh(parsed, now)

    async def run(
        self, on_new: Callable[[list[Announcement]], None], interval_s: float, stop: asyncio.Event
    ) -> None:
        """Poll every `interval_s` until `stop` is set (a back-off just makes polls no-ops)."""
        while not stop.is_set():
            new = await self.poll_once()
            if new:
                on_new(new)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                continue
