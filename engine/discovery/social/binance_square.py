"""Binance Square feed: a tolerant pure parser and a thin async poller (URL configurable).

Binance Square has no documented public API; its web feed answers JSON shaped like
`{"data": {"vos": [{"id", "content" | "title", "authorName", "authorFollowers"?,
"date" | "createTime" (epoch s or ms), "tradingPairs"?: [{"code": "PEPE"}] }]}}` (`vos` may
also be `list`). The parser takes what it recognises and counts what it does not, so a change
of shape shows up as a counter, not a crash. Coins come from cashtags in the text plus the
post's own trading-pair tags.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from engine.discovery.http import RateLimitBackoff, fetch_json
from engine.discovery.social.source import SocialPost, SocialSource, extract_cashtags

_EPOCH_S_MAX = 10_000_000_000  # below this a timestamp is in seconds


def _ts_ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value * 1000) if value < _EPOCH_S_MAX else int(value)


def parse_square(payload: Any, counters: Counter[str] | None = None) -> list[SocialPost]:
    counters = counters if counters is not None else Counter()
    data = payload.get("data") if isinstance(payload, Mapping) else None
    items = data.get("vos", data.get("list")) if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        counters["bad_payload"] += 1
        return []
    posts = []
    for item in items:
        if not isinstance(item, Mapping):
            counters["bad_post"] += 1
            continue
        text = item.get("content") or item.get("title")
        ts = _ts_ms(item.get("date", item.get("createTime")))
        if "id" not in item or not isinstance(text, str) or ts is None:
            counters["bad_post"] += 1
            continue
        pairs = item.get("tradingPairs")
        tags = [p["code"] for p in pairs if isinstance(p, Mapping) and isinstance(p.get("code"), str)] if isinstance(pairs, list) else []
        followers = item.get("authorFollowers", 0)
        posts.append(
            SocialPost(
                source="binance_square",
                post_id=str(item["id"]),
                ts_ms=ts,
                author=str(item.get("authorName", "")),
                followers=followers if isinstance(followers, int) and not isinstance(followers, bool) else 0,
                text=text,
                symbols=extract_cashtags(text, tags),
            )
        )
    return posts


class BinanceSquareFeed(SocialSource):
    name = "binance_square"

    def __init__(
        self, session: aiohttp.ClientSession, url: str, *, clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    ) -> None:
        self.session = session
        self.url = url
        self.clock = clock
        self.backoff = RateLimitBackoff()
        self.counters: Counter[str] = Counter()

    async def fetch(self) -> list[SocialPost]:
        payload = await fetch_json(self.session, self.url, now_ms=self.clock(), backoff=self.backoff, counters=self.counters)
        return [] if payload is None else parse_square(payload, self.counters)
