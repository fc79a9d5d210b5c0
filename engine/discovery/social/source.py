"""What a social post is, how symbols are found in it, and the interface every source implements.

A source is anything with `async fetch() -> list[SocialPost]` (an X search, a Binance Square
feed, a JSONL file being appended to); `FakeSocialSource` is the test double. Push sources
(the webhook) hand posts straight to a callback instead.

Coins. People write a coin every way: `$PEPE`, `#pepe`, `$PEPEUSDT`, `$PEPE/USDT`, `$1INCH`,
`$1000SATS`, `$W`, full-width `＄ＰＥＰＥ`, and feeds tag `["pepe/usdt", "$PEPE"]`. Each tag is
normalised here (`normalise_tag`: NFKC, no `$`/`#`, no `/QUOTE`, upper case, 1-15 letters or
digits), so a post carries *candidate* coins; which of them are coins at all is only known
against the exchange's markets, so `resolve_base` (called by discovery, which knows the bases)
keeps the known bases, stripping a glued quote asset (`PEPEUSDT` -> `PEPE`) when what is left
is one. `$5` or `$100` are candidates too and are dropped there, as unknown.

Identity. `source` is the feed that carried the post (set by the feed, never by the post), and
a post is the same post whichever feed carried it: its `post_id` (see `MentionVelocity`).
"""

from __future__ import annotations

import abc
import re
import unicodedata
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Run on NFKC-normalised text, where "＄ＰＥＰＥ" is "$PEPE". Digits may lead ($1INCH, $1000SATS) and
# one letter is a coin ($W, $S, $T): prices ("$5") are weeded out by `resolve_base`, not here.
_CASHTAG = re.compile(r"[$#]([A-Za-z0-9]{1,15})(?![A-Za-z0-9])")
_TAG = re.compile(r"[A-Z0-9]{1,15}")
_PAIR_SEPARATORS = re.compile(r"[/\-_:]")
# Tags that are words, not coins: "#crypto", "$USD".
NOT_COINS = frozenset({"CRYPTO", "BITCOIN", "BINANCE", "USD", "USDT", "NFT", "WEB3", "DEFI", "AI", "ALTCOIN", "ALTCOINS"})
# Quote assets people glue to a coin ("$PEPEUSDT", "$ETHBTC"), stripped when what is left is a known base.
QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR", "TRY")


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


def normalise_tag(raw: str) -> str | None:
    """`raw` as a candidate coin ("$pepe/usdt", "＄ＰＥＰＥ", "PEPE-USDT" -> "PEPE"), or None when it
    cannot be one (empty, too long, punctuation, a word like "crypto")."""
    tag = unicodedata.normalize("NFKC", raw).strip().lstrip("$#").strip()
    tag = _PAIR_SEPARATORS.split(tag, maxsplit=1)[0].upper()
    if not _TAG.fullmatch(tag) or tag in NOT_COINS:
        return None
    return tag


def extract_cashtags(text: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Candidate coins named as $PEPE / #PEPE (plus `extra`, e.g. a feed's own coin tags),
    normalised (`normalise_tag`), deduplicated, in order."""
    out: list[str] = []
    for raw in (*_CASHTAG.findall(unicodedata.normalize("NFKC", text)), *extra):
        tag = normalise_tag(raw)
        if tag is not None and tag not in out:
            out.append(tag)
    return tuple(out)


def resolve_base(tag: str, known_bases: Container[str], quotes: Iterable[str] = QUOTE_ASSETS) -> str | None:
    """The known base asset a candidate tag names: itself, or itself less a glued quote asset
    ("PEPEUSDT" -> "PEPE" when PEPE is known); None for anything else ("$100", a typo, a coin
    the exchange does not list), so a price or a stray word never counts as a mention."""
    if tag in known_bases:
        return tag
    for quote in quotes:
        if len(tag) > len(quote) and tag.endswith(quote) and tag[: -len(quote)] in known_bases:
            return tag[: -len(quote)]
    return None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a post is not taken or does not count: `reason` is its counter key, `detail` a
    sentence for its sender (the webhook answers it)."""

    reason: str
    detail: str


def read_post(obj: Any, source: str, counters: Counter[str]) -> SocialPost | Refusal:
    """A post from the generic JSON shape (JSONL lines, webhook bodies), or why it is malformed
    (counted).

    Shape: {"id": str|int, "ts_ms": int, "text": str, "author"?: str, "followers"?: int,
    "symbols"?: [str]}; `ts_ms` is epoch milliseconds. A "source" in the post is ignored: the
    post's `source` is `source`, the feed that carried it, so a sender cannot make one post
    count twice by naming another source (`MentionVelocity` counts a post id once).
    """
    if not isinstance(obj, Mapping):
        counters["bad_post:not_an_object"] += 1
        return Refusal("bad_post:not_an_object", "a post is a JSON object")
    post_id, ts, text = obj.get("id"), obj.get("ts_ms"), obj.get("text")
    if post_id is None or not isinstance(text, str):
        counters["bad_post:missing_id_or_text"] += 1
        return Refusal("bad_post:missing_id_or_text", 'a post needs "id" and a string "text"')
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
        counters["bad_post:bad_ts_ms"] += 1
        return Refusal("bad_post:bad_ts_ms", '"ts_ms" is the post\'s time as a positive integer, in epoch milliseconds')
    followers = obj.get("followers", 0)
    if not isinstance(followers, int) or isinstance(followers, bool) or followers < 0:
        followers = 0
        counters["bad_post:bad_followers"] += 1
    extra = obj.get("symbols", [])
    extra = [s for s in extra if isinstance(s, str)] if isinstance(extra, list) else []
    return SocialPost(
        source=source,
        post_id=str(post_id),
        ts_ms=ts,
        author=str(obj.get("author", "")),
        followers=followers,
        text=text,
        symbols=extract_cashtags(text, extra),
    )


def post_from_json(obj: Any, source: str, counters: Counter[str]) -> SocialPost | None:
    """`read_post`, None where it is malformed."""
    post = read_post(obj, source, counters)
    return post if isinstance(post, SocialPost) else None


class SocialSource(abc.ABC):
    """A pull source of posts."""

    name: str = "social"
    # Why the source cannot deliver now, for a human ("... does not exist (yet)"); None while it
    # can. The poller logs it when it changes, not at every poll.
    problem: str | None = None

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
