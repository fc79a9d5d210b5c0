"""X (Twitter) API v2 recent search: a pure response parser and a thin async poller.

The poller asks for posts newer than the newest it has seen (`since_id`), with the author
expansion so each post carries its author's follower count (KOL weighting). The bearer token
is a `SecretStr`: it goes into the Authorization header and nowhere else.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
from pydantic import SecretStr

from engine.discovery.http import RateLimitBackoff, fetch_json
from engine.discovery.social.source import SocialPost, SocialSource, extract_cashtags

SEARCH_PATH = "/2/tweets/search/recent"


def _iso_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return int(dt.timestamp() * 1000)


def parse_x_search(payload: Any, counters: Counter[str] | None = None) -> tuple[list[SocialPost], str | None]:
    """(posts, newest_id) from a recent-search response; malformed posts are counted and skipped."""
    counters = counters if counters is not None else Counter()
    if not isinstance(payload, Mapping):
        counters["bad_payload"] += 1
        return [], None
    users: dict[str, tuple[str, int]] = {}
    includes = payload.get("includes")
    if isinstance(includes, Mapping) and isinstance(includes.get("users"), list):
        for u in includes["users"]:
            if isinstance(u, Mapping) and "id" in u:
                metrics = u.get("public_metrics")
                followers = metrics.get("followers_count", 0) if isinstance(metrics, Mapping) else 0
                users[str(u["id"])] = (str(u.get("username", "")), followers if isinstance(followers, int) else 0)
    posts: list[SocialPost] = []
    data = payload.get("data", [])
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, Mapping):
            counters["bad_post"] += 1
            continue
        ts = _iso_ms(item.get("created_at"))
        text = item.get("text")
        if "id" not in item or ts is None or not isinstance(text, str):
            counters["bad_post"] += 1
            continue
        author, followers = users.get(str(item.get("author_id", "")), ("", 0))
        posts.append(SocialPost("x", str(item["id"]), ts, author, followers, text, extract_cashtags(text)))
    meta = payload.get("meta")
    newest = meta.get("newest_id") if isinstance(meta, Mapping) else None
    return posts, str(newest) if newest is not None else None


class XRecentSearch(SocialSource):
    name = "x"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        bearer_token: SecretStr,
        query: str,
        base_url: str = "https://api.twitter.com",
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.session = session
        self._token = bearer_token
        self.query = query
        self.url = base_url.rstrip("/") + SEARCH_PATH
        self.clock = clock
        self.since_id: str | None = None
        self.backoff = RateLimitBackoff()
        self.counters: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"XRecentSearch(url={self.url!r}, query={self.query!r}, token=***)"

    async def fetch(self) -> list[SocialPost]:
        params = {
            "query": self.query,
            "max_results": "100",
            "tweet.fields": "created_at,author_id",
            "expansions": "author_id",
            "user.fields": "public_metrics,username",
        }
        if self.since_id is not None:
            params["since_id"] = self.since_id
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        payload = await fetch_json(
            self.session, self.url, now_ms=self.clock(), backoff=self.backoff, counters=self.counters,
            headers=headers, params=params,
        )  # fmt: skip
        if payload is None:
            return []
        posts, newest = parse_x_search(payload, self.counters)
        if newest is not None:
            self.since_id = newest
        return posts
