"""What a social post is, how symbols are found in it, and the interface every source implements.

A source is anything with `async fetch() -> list[SocialPost]` (an X search, a Binance Square
feed, a JSONL file being appended to); `FakeSocialSource` is the test double. Push sources
(the webhook) hand posts straight to a callback instead.
"""

from __future__ import annotations

import abc
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_CASHTAG = re.compile(r"[$＄#]([A-Za-z][A-Za-z0-9]{1,14})(?![A-Za-z0-9])")
# Tags that are words, not coins: "#crypto", "$USD".
NOT_COINS = frozenset({"CRYPTO", "BITCOIN", "BINANCE", "USD", "USDT", "NFT", "WEB3", "DEFI", "AI", "ALTCOIN", "ALTCOINS"})


@dataclass(frozen=True, slots=True)
class SocialPost:
    """One post: where from, when (epoch ms), who (with followers), what, and the coins it names."""

    source: str
    post_id: str
    ts_ms: int
    author: str
    followers: int
    text: str
    symbols: tuple[str, ...]  # base assets, upper case


def extract_cashtags(text: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Coins named as $PEPE / #PEPE (plus `extra`, e.g. a feed's own coin tags), deduplicated, in order."""
    out: list[str] = []
    for tag in (*_CASHTAG.findall(text), *extra):
        sym = tag.upper()
        if sym not in NOT_COINS and sym not in out:
            out.append(sym)
    return tuple(out)


def post_from_json(obj: Any, default_source: str, counters: Counter[str]) -> SocialPost | None:
    """A post from the generic JSON shape (JSONL lines, webhook bodies); None (counted) when malformed.

    Shape: {"id": str|int, "ts_ms": int, "text": str, "author"?: str, "followers"?: int,
    "source"?: str, "symbols"?: [str]}.
    """
    if not isinstance(obj, Mapping):
        counters["bad_post:not_an_object"] += 1
        return None
    post_id, ts, text = obj.get("id"), obj.get("ts_ms"), obj.get("text")
    if post_id is None or not isinstance(text, str):
        counters["bad_post:missing_id_or_text"] += 1
        return None
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
        counters["bad_post:bad_ts_ms"] += 1
        return None
    followers = obj.get("followers", 0)
    if not isinstance(followers, int) or isinstance(followers, bool) or followers < 0:
        followers = 0
        counters["bad_post:bad_followers"] += 1
    extra = obj.get("symbols", [])
    extra = [s for s in extra if isinstance(s, str)] if isinstance(extra, list) else []
    return SocialPost(
        source=str(obj.get("source", default_source)),
        post_id=str(post_id),
        ts_ms=ts,
        author=str(obj.get("author", "")),
        followers=followers,
        text=text,
        symbols=extract_cashtags(text, extra),
    )


class SocialSource(abc.ABC):
    """A pull source of posts."""

    name: str = "social"

    @abc.abstractmethod
    async def fetch(self) -> list[SocialPost]:
        """Posts not returned before (may be empty; never raises for transport trouble)."""


class FakeSocialSource(SocialSource):
    """Hands out queued posts: the double for code that consumes sources."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.queued: list[SocialPost] = []

    def push(self, *posts: SocialPost) -> None:
        self.queued.extend(posts)

    async def fetch(self) -> list[SocialPost]:
        out, self.queued = self.queued, []
        return out
