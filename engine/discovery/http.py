"""The one HTTP fetch the polling sources share, and the rate-limit back-off they obey.

Binance answers 429 when a client polls too fast and 418 when it kept going after a 429 (an IP
ban that grows). Both mean: stop, and wait longer each time. `RateLimitBackoff` is pure (time
passed in) and waits 60 s, 120 s, 240 s, then 480 s for every further strike, or longer when
the server's Retry-After says so; one successful fetch clears it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp

BACKOFF_LADDER_MS: tuple[int, ...] = (60_000, 120_000, 240_000, 480_000)
RATE_LIMIT_STATUSES = frozenset({418, 429})


class RateLimitBackoff:
    """When the next request may go out after rate-limit answers."""

    def __init__(self, ladder_ms: tuple[int, ...] = BACKOFF_LADDER_MS) -> None:
        self.ladder_ms = ladder_ms
        self.strikes = 0
        self.until_ms = 0

    def ready(self, now_ms: int) -> bool:
        return now_ms >= self.until_ms

    def on_rate_limited(self, now_ms: int, retry_after_ms: int | None = None) -> int:
        """Register a 429/418; returns the wait (ms) before the next request."""
        wait = self.ladder_ms[min(self.strikes, len(self.ladder_ms) - 1)]
        if retry_after_ms is not None:
            wait = max(wait, retry_after_ms)
        self.strikes += 1
        self.until_ms = now_ms + wait
        return wait

    def on_success(self) -> None:
        self.strikes = 0
        self.until_ms = 0


def _retry_after_ms(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return int(float(value) * 1000)
    except ValueError:
        return None


async def fetch_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    now_ms: int,
    backoff: RateLimitBackoff,
    counters: Counter[str],
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> Any | None:
    """GET `url` as JSON; None (with a counted reason) on back-off, rate limit, HTTP error or bad JSON."""
    if not backoff.ready(now_ms):
        counters["skipped_backoff"] += 1
        return None
    try:
        async with session.get(
            url, headers=headers, params=params, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status in RATE_LIMIT_STATUSES:
                backoff.on_rate_limited(now_ms, _retry_after_ms(resp.headers))
                counters[f"http_{resp.status}"] += 1
                return None
            if resp.status != 200:
                counters[f"http_{resp.status}"] += 1
                return None
            payload = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError) as exc:
        counters[f"fetch_error:{type(exc).__name__}"] += 1
        return None
    except ValueError:
        counters["bad_json"] += 1
        return None
    backoff.on_success()
    counters["fetched"] += 1
    return payload
