"""New listings: from market info (the exchange's symbol list) and from announcements.

Market info. The first load is the baseline: symbols present then are not "new"; their listing
time comes from `known_listings_ms`, or is unknown (treated as old). After that:
- a symbol that appears already TRADING is listed now;
- a symbol that appears in another status (BREAK, PRE_TRADING: Binance shows new coins a while
  before trading opens), or that was never seen TRADING, is listed when it turns TRADING;
- a symbol that traded before and comes back from BREAK is a resumption, not a listing;
- a symbol missing from market info is remembered for `forget_after_ms` (a partial answer from
  the exchange must not make old coins look new when they reappear), then forgotten.

Announcements. `parse_announcements` reads Binance's announcement JSON (pure), and
`extract_symbols` finds coins in titles such as "Binance Will List Pepe (PEPE)" or "Binance
Will List Sonic (S)": the words in parentheses, minus stop words ("(BNB)", "(USDT)", "(UTC)"),
minus coins whose only pairs named in the title are not quoted in the quote asset, and only in
titles that announce a *spot* listing, the one thing that makes a coin new (`spot_listing`).
Binance's listing catalog also announces old coins coming to other products ("Binance Will
Add Movement (MOVE) on Earn, Buy Crypto, Convert, Margin & Futures", "Binance Margin Will Add
New Pairs (AERO/USDT, MOVE/USDT)"): read as listings, they dated coins traded for months as
minutes old (the full listing-freshness heat, the new-listing volume allowance). So:
- "Will List", "Lists", "Open(s) Trading" announce a spot listing, unless a product names
  itself as the lister ("Binance Futures Will List") or as where the coin goes ("... on
  Binance Futures", "on Earn");
- "Will Add", "Adds", "Added", "Listing" announce one only where the title names no other
  product at all (`_NON_SPOT`: Earn, Margin, Futures, Convert, Loan, Buy Crypto, Options,
  pairs, tags...): those words mostly announce an old coin on another product.
`SeenArticles` remembers article ids, forgetting old ones.

An announced coin that is already in market info with an unknown age (present at the first
load) takes the announcement time as its listing time, unless it was seen trading before the
announcement (`note_announcements`' `first_ticker_ms`): Binance announces a spot listing
hours before trading opens, so a coin that traded before its announcement is an old coin, and
the announcement is about something else.

Restarts. A listing time is the engine's own observation (the first load of a run is a
baseline, so a coin listed before it is otherwise of unknown age): discovery journals each
`ListingEvent` as a `listing` event, restart recovery reads the recent ones back
(`engine.runtime.recovery`, kept in its checkpoints), and `ListingMonitor.restore` hands them
to the next run's monitor before its first load.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.config.sections.discovery import ListingsSection
from engine.domain.market import Market, MarketStatus

DAY_MS = 86_400_000

_PAREN = re.compile(r"\(([^()]{1,40})\)")
_TOKEN = re.compile(r"^[A-Z0-9]{1,15}$")  # one letter is a ticker too: "Binance Will List Sonic (S)"
_PAIR = re.compile(r"\b([A-Z0-9]{1,15})/([A-Z0-9]{2,10})\b")
# Phrases that announce a spot listing (trading opens), and those that may announce one or only
# an old coin on another product (module doc).
_SPOT_LISTING_WORDS = re.compile(r"\b(will list|lists|will open trading|opens trading|open trading)\b", re.IGNORECASE)
_ADD_WORDS = re.compile(r"\b(will add|adds|added|listing)\b", re.IGNORECASE)
_NOT_LISTING_WORDS = re.compile(r"\b(delist\w*|remov\w*|ceas\w*|suspen\w*|cancel\w*|deprecat\w*)\b", re.IGNORECASE)
# Binance products other than spot trading, and words of announcements about coins already
# listed (new pairs, tags, borrowing): an "adds" title naming one is not a spot listing.
_PRODUCTS = (
    r"simple earn|earn|margin|futures|convert|vip loan|loans?|buy crypto|options|perpetual|contracts?|"
    r"copy trading|trading bots?|auto-invest|staking|dual investment|launchpool|launchpad|megadrop|"
    r"hodler airdrops?|airdrops?|alpha|pre-market|pay|wallet"
)
_NON_SPOT = re.compile(rf"\b({_PRODUCTS}|pairs?|tags?|borrowable|collateral)\b", re.IGNORECASE)
# A product as the lister ("Binance Margin Will List") or the destination ("... on Binance Futures").
_PRODUCT_LISTS = re.compile(
    rf"\b({_PRODUCTS})\s+(will list|lists|will open trading|opens trading)\b|\bon\s+(binance\s+)?({_PRODUCTS})\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ListingEvent:
    symbol: str
    ts_ms: int
    reason: str  # "new_symbol" | "now_trading" | "announced"


@dataclass(frozen=True, slots=True)
class Announcement:
    article_id: str
    title: str
    ts_ms: int
    symbols: tuple[str, ...]  # base assets


def spot_listing(title: str) -> bool:
    """Whether an announcement title announces a spot listing (module doc): the only kind that
    makes a coin new. "Binance Will List Sonic (S)" does; "Binance Will Add Movement (MOVE) on
    Earn, Buy Crypto, Convert, Margin & Futures" and "Binance Margin Will Add New Pairs
    (AERO/USDT, MOVE/USDT)" announce old coins on other products and do not."""
    if _NOT_LISTING_WORDS.search(title):
        return False
    if _SPOT_LISTING_WORDS.search(title):
        return not _PRODUCT_LISTS.search(title)
    return bool(_ADD_WORDS.search(title)) and not _NON_SPOT.search(title)


def extract_symbols(title: str, quote_asset: str, stop_words: Iterable[str]) -> tuple[str, ...]:
    """Base assets a spot-listing title announces, in order, without duplicates."""
    if not spot_listing(title):
        return ()
    stops = {w.upper() for w in stop_words}
    quote = quote_asset.upper()
    pairs: dict[str, set[str]] = {}
    for base, q in _PAIR.findall(title):
        pairs.setdefault(base, set()).add(q)
    out: list[str] = []
    for group in _PAREN.findall(title):
        for word in re.split(r"[,\s]+", group.strip()):
            word = word.strip().lstrip("$")
            if not _TOKEN.match(word) or word in stops or word.isdigit():
                continue
            if word in pairs and quote not in pairs[word]:
                continue
            if word not in out:
                out.append(word)
    # "Binance Will List ABC/USDT" without parentheses: take pairs quoted in the quote asset.
    for base, quotes in pairs.items():
        if quote in quotes and base not in stops and base not in out:
            out.append(base)
    return tuple(out)


def parse_announcements(
    payload: Any, quote_asset: str, stop_words: Iterable[str], counters: Counter[str] | None = None
) -> list[Announcement]:
    """Announcements in Binance's CMS JSON: `data.catalogs[].articles[]` or `data.articles[]`.

    Each article needs `id` (or `code`), `title` and `releaseDate` (epoch ms); malformed
    articles are skipped and counted under `bad_article`, never raised.
    """
    counters = counters if counters is not None else Counter()
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, Mapping):
        counters["bad_payload"] += 1
        return []
    articles: list[Any] = []
    catalogs = data.get("catalogs")
    if isinstance(catalogs, list):
        for cat in catalogs:
            if isinstance(cat, Mapping) and isinstance(cat.get("articles"), list):
                articles.extend(cat["articles"])
    if isinstance(data.get("articles"), list):
        articles.extend(data["articles"])
    out: list[Announcement] = []
    stops = tuple(stop_words)
    for art in articles:
        if not isinstance(art, Mapping):
            counters["bad_article"] += 1
            continue
        art_id = art.get("id", art.get("code"))
        title = art.get("title")
        ts = art.get("releaseDate", art.get("publishDate"))
        if art_id is None or not isinstance(title, str) or not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
            counters["bad_article"] += 1
            continue
        out.append(Announcement(str(art_id), title, ts, extract_symbols(title, quote_asset, stops)))
    return out


class SeenArticles:
    """Article ids already handled, each forgotten `retention_ms` after it was first seen."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self._seen: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def fresh(self, announcements: Iterable[Announcement], now_ms: int) -> list[Announcement]:
        """The announcements not seen before (now remembered), after forgetting expired ids."""
        cutoff = now_ms - self.retention_ms
        for art_id in [k for k, t in self._seen.items() if t < cutoff]:
            del self._seen[art_id]
        out = []
        for ann in announcements:
            if ann.article_id not in self._seen:
                self._seen[ann.article_id] = now_ms
                out.append(ann)
        return out


@dataclass(slots=True)
class _Listed:
    status: MarketStatus
    listed_ms: int | None
    traded: bool  # seen TRADING at least once
    gone_since: int | None = None


class ListingMonitor:
    """First-seen times from market info and announcements; every coin gets an age (or None)."""

    def __init__(self, cfg: ListingsSection) -> None:
        self.cfg = cfg
        self._symbols: dict[str, _Listed] = {}
        self._announced: dict[str, int] = {}  # base -> announcement time
        self._restored: dict[str, int] = {}  # symbol -> listing time an earlier run saw (`restore`), until its market shows
        self.loaded = False
        self.counters: Counter[str] = Counter()

    def restore(self, listed: Mapping[str, int]) -> list[str]:
        """Listing times an earlier run of the engine saw (restart recovery's, from its journaled
        `listing` events); the symbols whose age this gave now.

        Without them a restart made every coin listed before it a coin of unknown age, as old
        as BTC: one listed 20 minutes before lost its listing heat and left the pool. A symbol
        restored here counts as traded (a later BREAK -> TRADING is a resumption, not a
        listing); a time the config (`known_listings_ms`) or this run already has is kept."""
        given = []
        for symbol, ms in listed.items():
            entry = self._symbols.get(symbol)
            if entry is None:
                self._restored[symbol] = ms
            elif entry.listed_ms is None:
                entry.listed_ms, entry.traded = ms, True
                given.append(symbol)
        return given

    def __contains__(self, symbol: str) -> bool:
        entry = self._symbols.get(symbol)
        return entry is not None and entry.gone_since is None

    def update(self, markets: Iterable[Market], now_ms: int) -> list[ListingEvent]:
        """Fold in a full market-info load; returns the listings it reveals."""
        events: list[ListingEvent] = []
        present: set[str] = set()
        first = not self.loaded
        for m in markets:
            present.add(m.symbol)
            trading = m.status is MarketStatus.TRADING
            entry = self._symbols.get(m.symbol)
            if entry is None:
                listed = self.cfg.known_listings_ms.get(m.symbol)
                restored = self._restored.pop(m.symbol, None)
                if listed is None and restored is not None:
                    listed = restored  # listed before the restart, as that run saw it: not new now
                elif not first and trading:
                    listed = now_ms
                    events.append(ListingEvent(m.symbol, now_ms, "new_symbol"))
                self._symbols[m.symbol] = _Listed(m.status, listed, trading or restored is not None)
                continue
            if entry.gone_since is not None:
                entry.gone_since = None
                self.counters["returned_symbols"] += 1
            if trading and not entry.traded:
                entry.traded = True
                entry.listed_ms = now_ms
                events.append(ListingEvent(m.symbol, now_ms, "now_trading"))
            elif trading and entry.status is not MarketStatus.TRADING:
                self.counters["resumed_symbols"] += 1
            entry.status = m.status
        self.loaded = True
        for symbol, entry in list(self._symbols.items()):
            if symbol in present:
                continue
            if entry.gone_since is None:
                entry.gone_since = now_ms
            elif now_ms - entry.gone_since >= self.cfg.forget_after_ms:
                del self._symbols[symbol]
                self.counters["forgotten_symbols"] += 1
        self.counters["listings"] += len(events)
        return events

    def note_announcements(
        self,
        announcements: Iterable[Announcement],
        now_ms: int,
        quote_asset: str,
        first_ticker_ms: Callable[[str], int | None] = lambda symbol: None,
    ) -> list[ListingEvent]:
        """Record announced coins; an announced coin in market info with an unknown age takes the
        announcement time, unless `first_ticker_ms(symbol)` (when its first ticker was seen; None:
        none yet) is before the announcement.

        Binance announces a spot listing before trading opens, so a coin with tickers from before
        its announcement was trading already: the announcement (a product, a tag, a title the
        parser misread) must not make an old coin look minutes old. An announcement older than
        what the run has seen of the coin cannot be told apart, and still dates it."""
        events = []
        for ann in announcements:
            for base in ann.symbols:
                self._announced[base] = ann.ts_ms
                symbol = f"{base}/{quote_asset}"
                entry = self._symbols.get(symbol)
                if entry is None or entry.listed_ms is not None:
                    continue
                seen = first_ticker_ms(symbol)
                if seen is not None and seen < ann.ts_ms:
                    self.counters["announced_already_trading"] += 1
                    continue
                entry.listed_ms = ann.ts_ms
                events.append(ListingEvent(symbol, ann.ts_ms, "announced"))
        cutoff = now_ms - self.cfg.announcement_freshness_ms
        for base in [b for b, t in self._announced.items() if t < cutoff]:
            del self._announced[base]
        return events

    def announced(self, base: str) -> int | None:
        return self._announced.get(base)

    def listing_ms(self, symbol: str) -> int | None:
        entry = self._symbols.get(symbol)
        return entry.listed_ms if entry is not None else None

    def age_days(self, symbol: str, now_ms: int) -> float | None:
        """Days since listing; None when unknown (present at the first load, no known time)."""
        listed = self.listing_ms(symbol)
        return None if listed is None else max(0.0, (now_ms - listed) / DAY_MS)
