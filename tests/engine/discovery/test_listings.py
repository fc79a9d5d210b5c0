"""ListingMonitor, the announcement parser, seen-article memory, back-off and the HTTP poller."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine.config.sections.discovery import ListingsSection
from engine.discovery.announcements import AnnouncementPoller
from engine.discovery.http import RateLimitBackoff
from engine.discovery.listings import (
    Announcement,
    ListingMonitor,
    SeenArticles,
    extract_symbols,
    parse_announcements,
    spot_listing,
)
from engine.domain.market import MarketStatus
from tests.kit.domain import T0, make_market

DAY = 86_400_000
STOPS = ListingsSection().announcement_stop_words


def monitor(**kw: Any) -> ListingMonitor:
    return ListingMonitor(ListingsSection(**kw))


def test_first_load_is_the_baseline_with_known_ages() -> None:
    m = monitor(known_listings_ms={"PEPE/USDT": T0 - 2 * DAY})
    events = m.update([make_market("BTC/USDT"), make_market("PEPE/USDT")], T0)
    assert events == []
    assert m.age_days("PEPE/USDT", T0) == pytest.approx(2.0)
    assert m.age_days("BTC/USDT", T0) is None  # unknown: old


def test_a_new_trading_symbol_is_listed_now() -> None:
    m = monitor()
    m.update([make_market("BTC/USDT")], T0)
    events = m.update([make_market("BTC/USDT"), make_market("NEW/USDT")], T0 + 1000)
    assert [(e.symbol, e.reason) for e in events] == [("NEW/USDT", "new_symbol")]
    assert m.age_days("NEW/USDT", T0 + 1000 + DAY // 2) == pytest.approx(0.5)


@pytest.mark.parametrize("first_status", [MarketStatus.BREAK, MarketStatus.PRE_TRADING], ids=["break", "pre-trading"])
def test_break_to_trading_is_a_listing(first_status: MarketStatus) -> None:
    m = monitor()
    m.update([make_market("BTC/USDT")], T0)
    assert m.update([make_market("BTC/USDT"), make_market("NEW/USDT", status=first_status)], T0 + 1000) == []
    assert m.age_days("NEW/USDT", T0 + 2000) is None
    events = m.update([make_market("BTC/USDT"), make_market("NEW/USDT")], T0 + 5000)
    assert [(e.symbol, e.reason) for e in events] == [("NEW/USDT", "now_trading")]
    assert m.listing_ms("NEW/USDT") == T0 + 5000


def test_a_coin_back_from_maintenance_is_not_a_listing() -> None:
    m = monitor()
    m.update([make_market("BTC/USDT")], T0)
    m.update([make_market("BTC/USDT", status=MarketStatus.BREAK)], T0 + 1000)
    assert m.update([make_market("BTC/USDT")], T0 + 2000) == []
    assert m.counters["resumed_symbols"] == 1


def test_symbols_missing_from_market_info_are_remembered_then_forgotten() -> None:
    m = monitor(forget_after_ms=DAY)
    m.update([make_market("BTC/USDT"), make_market("OLD/USDT")], T0)
    m.update([make_market("BTC/USDT")], T0 + 1000)  # a partial answer
    assert "OLD/USDT" not in m
    assert m.update([make_market("BTC/USDT"), make_market("OLD/USDT")], T0 + 2000) == []  # back: not new
    m.update([make_market("BTC/USDT")], T0 + 3000)
    m.update([make_market("BTC/USDT")], T0 + 3000 + DAY)
    assert m.counters["forgotten_symbols"] == 1
    events = m.update([make_market("BTC/USDT"), make_market("OLD/USDT")], T0 + 4000 + DAY)
    assert [e.symbol for e in events] == ["OLD/USDT"]  # relisted after being forgotten


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        pytest.param("Binance Will List Pepe (PEPE)", ("PEPE",), id="simple"),
        pytest.param("Binance Will List Pepe (PEPE) and Floki (FLOKI)", ("PEPE", "FLOKI"), id="two-coins"),
        pytest.param("Binance Will List Arbitrum (ARB) with Seed Tag Applied", ("ARB",), id="seed-tag"),
        pytest.param("Binance Will List Sui (SUI) (2023-05-03)", ("SUI",), id="date-in-parens"),
        pytest.param("Binance Launchpool: Farm X by Staking (BNB) and (FDUSD)", (), id="bnb-fdusd-not-listing"),
        pytest.param("Binance Will List ABC (ABC) (UTC)", ("ABC",), id="utc-stop-word"),
        pytest.param("Binance Will Delist Foo (FOO)", (), id="delisting"),
        pytest.param("Binance Will Open Trading for XYZ/BTC (XYZ)", (), id="not-quoted-in-usdt"),
        pytest.param("Binance Will List XYZ (XYZ) with XYZ/USDT and XYZ/BTC Trading Pairs", ("XYZ",), id="quoted-in-usdt"),
        pytest.param("Binance Will List QQQ/USDT", ("QQQ",), id="pair-without-parens"),
        pytest.param("Binance Will List (New) Coin (Beta)", (), id="common-words"),
        pytest.param("Binance Will List Token (ai16z)", (), id="lower-case-not-a-ticker"),
        pytest.param("Binance Will List 1000SATS (1000SATS)", ("1000SATS",), id="digits"),
        pytest.param("Binance Will List Sonic (S)", ("S",), id="one-letter-ticker"),  # 2025-01-07
        pytest.param("Binance Will List S/USDT", ("S",), id="one-letter-pair"),
        pytest.param(
            "Binance Will List Cheems (1000CHEEMS) and Test (TST) with Seed Tag Applied", ("1000CHEEMS", "TST"), id="seed-tag-two"
        ),
    ],
)
def test_extract_symbols(title: str, expected: tuple[str, ...]) -> None:
    assert extract_symbols(title, "USDT", STOPS) == expected


@pytest.mark.parametrize(
    "title",
    [
        # Binance's listing catalog (48), old coins on other products: not spot listings.
        "Binance Will Add Movement (MOVE) on Earn, Buy Crypto, Convert, Margin & Futures",  # 2024-12-09, MOVE on spot since
        "Binance Will Add Aerodrome (AERO) on Earn, Buy Crypto, Convert, VIP Loan & Margin",
        "Binance Margin Will Add New Pairs (AERO/USDT, MOVE/USDT)",
        "Binance Adds XYZ/USDT and XYZ/BTC Trading Pairs (XYZ)",  # new pairs of a coin already listed
        "Binance Will Add Pepe (PEPE) as a New Borrowable Asset on Isolated Margin",
        "Binance Will Add Pepe (PEPE) to the Monitoring Tag",
        "Binance Simple Earn Will Add Pepe (PEPE) to Flexible Products",
        "Binance Futures Will List USDⓈ-M PEPE Perpetual (PEPE)",  # a product lists it: not spot
        "Binance Will List Pepe (PEPE) on Binance Futures",
        "Binance Will List Pepe (PEPE) on Binance Alpha",
    ],
)
def test_announcements_of_other_products_date_no_coin(title: str) -> None:
    """Only a spot listing makes a coin new (the module doc's rule): "Will Add X on Earn,
    ... Margin & Futures" dated MOVE, on spot for months, as listed that minute."""
    assert not spot_listing(title)
    assert extract_symbols(title, "USDT", STOPS) == ()


@pytest.mark.parametrize(
    "title",
    [
        "Binance Will List Sonic (S)",
        "Binance Will List Pepe (PEPE) on Binance Spot and Futures",  # spot named: a spot listing
        "Binance Will Open Trading for Pepe (PEPE)",
        "Binance Adds Pepe (PEPE)",  # "adds" alone, no other product named
    ],
)
def test_spot_listing_titles(title: str) -> None:
    assert spot_listing(title)
    assert extract_symbols(title, "USDT", STOPS) != ()


def cms(articles: list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": "000000", "data": {"catalogs": [{"catalogId": 48, "articles": articles}]}}


def test_parse_announcements_counts_bad_articles() -> None:
    counters: Counter[str] = Counter()
    payload = cms(
        [
            {"id": 1, "code": "a1", "title": "Binance Will List Pepe (PEPE)", "releaseDate": T0},
            {"id": 2, "title": 5, "releaseDate": T0},
            {"title": "no id", "releaseDate": T0},
            "junk",  # type: ignore[list-item]
        ]
    )
    anns = parse_announcements(payload, "USDT", STOPS, counters)
    assert anns == [Announcement("1", "Binance Will List Pepe (PEPE)", T0, ("PEPE",))]
    assert counters["bad_article"] == 3
    assert parse_announcements({"nope": 1}, "USDT", STOPS, counters) == []
    assert counters["bad_payload"] == 1


def test_seen_articles_are_remembered_then_forgotten() -> None:
    seen = SeenArticles(retention_ms=DAY)
    a = Announcement("1", "t", T0, ())
    assert seen.fresh([a], T0) == [a]
    assert seen.fresh([a], T0 + 1000) == []
    assert seen.fresh([], T0 + 2 * DAY) == [] and len(seen) == 0
    assert seen.fresh([a], T0 + 2 * DAY) == [a]


def test_announcement_dates_an_old_coin_of_unknown_age() -> None:
    m = monitor()
    m.update([make_market("PEPE/USDT")], T0)
    events = m.note_announcements([Announcement("1", "t", T0 - 3600_000, ("PEPE", "NOTYET"))], T0, "USDT")
    assert [(e.symbol, e.reason) for e in events] == [("PEPE/USDT", "announced")]
    assert m.age_days("PEPE/USDT", T0) == pytest.approx(1 / 24)
    assert m.announced("NOTYET") == T0 - 3600_000


def test_an_announcement_after_the_coin_was_seen_trading_dates_nothing() -> None:
    """Binance announces a spot listing before trading opens: a coin whose first ticker came
    before the announcement is an old coin, whatever the title says."""
    m = monitor()
    m.update([make_market("PEPE/USDT"), make_market("DOGE/USDT")], T0)
    first = {"PEPE/USDT": T0 - 3600_000, "DOGE/USDT": T0 - 600_000}.get
    anns = [Announcement("1", "t", T0 - 1800_000, ("PEPE", "DOGE"))]
    events = m.note_announcements(anns, T0, "USDT", first)
    assert [e.symbol for e in events] == ["DOGE/USDT"]  # its tickers began after the announcement
    assert m.listing_ms("PEPE/USDT") is None and m.listing_ms("DOGE/USDT") == T0 - 1800_000
    assert m.counters["announced_already_trading"] == 1


def test_restored_listing_times_date_coins_at_the_first_load() -> None:
    """A restart's first load is a baseline: the times the earlier run journaled date its coins."""
    m = monitor(known_listings_ms={"PEPE/USDT": T0 - DAY})
    m.restore({"NEW/USDT": T0 - 1200_000, "PEPE/USDT": T0 - 2 * DAY, "GONE/USDT": T0 - 5000})
    markets = [make_market("BTC/USDT"), make_market("NEW/USDT"), make_market("PEPE/USDT")]
    assert m.update(markets, T0) == []
    assert m.listing_ms("NEW/USDT") == T0 - 1200_000
    assert m.listing_ms("PEPE/USDT") == T0 - DAY  # the config's word stands
    assert m.listing_ms("BTC/USDT") is None
    # Missing from the first (partial) answer, back later: the listing the earlier run saw, not a new one.
    assert m.update([*markets, make_market("GONE/USDT")], T0 + 1000) == []
    assert m.listing_ms("GONE/USDT") == T0 - 5000
    # Restored while already loaded (a coin in BREAK at the restart): dated, and trading again is a resumption.
    late = monitor()
    late.update([make_market("OLD/USDT", status=MarketStatus.BREAK)], T0)
    assert late.restore({"OLD/USDT": T0 - DAY}) == ["OLD/USDT"]
    assert late.update([make_market("OLD/USDT")], T0 + 1000) == []
    assert late.listing_ms("OLD/USDT") == T0 - DAY


def test_backoff_ladder_and_reset() -> None:
    b = RateLimitBackoff()
    waits = [b.on_rate_limited(T0) for _ in range(6)]
    assert waits == [60_000, 120_000, 240_000, 480_000, 480_000, 480_000]
    assert not b.ready(T0 + 479_999) and b.ready(T0 + 480_000)
    assert b.on_rate_limited(T0, retry_after_ms=900_000) == 900_000
    b.on_success()
    assert b.on_rate_limited(T0) == 60_000


# ----------------------------------------------------------------------------- the poller
class Server:
    """A local stand-in for Binance's announcement endpoint: answers from a script of statuses."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.articles: list[dict[str, Any]] = []
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            return web.json_response({"code": "-1003"}, status=status)
        return web.json_response(cms(self.articles))


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, str, aiohttp.ClientSession]]:
    srv = Server()
    app = web.Application()
    app.router.add_get("/bapi/cms", srv.handle)
    ts = TestServer(app, host="127.0.0.1", port=0)
    await ts.start_server()
    async with aiohttp.ClientSession() as session:
        yield srv, str(ts.make_url("/bapi/cms")), session
    await ts.close()


async def test_poller_returns_each_article_once(served: tuple[Server, str, aiohttp.ClientSession]) -> None:
    srv, url, session = served
    now = [T0]
    poller = AnnouncementPoller(session, url, stop_words=STOPS, clock=lambda: now[0])
    srv.articles = [{"id": 7, "title": "Binance Will List Pepe (PEPE)", "releaseDate": T0}]
    first = await poller.poll_once()
    assert [a.symbols for a in first] == [("PEPE",)]
    assert await poller.poll_once() == []
    srv.articles.append({"id": 8, "title": "Binance Will List Floki (FLOKI)", "releaseDate": T0 + 1})
    assert [a.article_id for a in await poller.poll_once()] == ["8"]


@pytest.mark.parametrize("status", [429, 418], ids=["429", "418"])
async def test_poller_backs_off_60_120_240_480(served: tuple[Server, str, aiohttp.ClientSession], status: int) -> None:
    srv, url, session = served
    now = [T0]
    poller = AnnouncementPoller(session, url, clock=lambda: now[0])
    srv.statuses = [status] * 5
    waits = []
    for _ in range(5):
        hits = srv.hits
        assert await poller.poll_once() == []
        assert srv.hits == hits + 1
        wait = poller.backoff.until_ms - now[0]
        waits.append(wait)
        now[0] += wait - 1
        await poller.poll_once()  # still backing off: no request goes out
        assert srv.hits == hits + 1
        now[0] += 1
    assert waits == [60_000, 120_000, 240_000, 480_000, 480_000]
    assert poller.counters[f"http_{status}"] == 5
    srv.articles = [{"id": 1, "title": "Binance Will List Pepe (PEPE)", "releaseDate": T0}]
    assert len(await poller.poll_once()) == 1
    assert poller.backoff.strikes == 0


async def test_poller_survives_server_errors_and_bad_json(served: tuple[Server, str, aiohttp.ClientSession]) -> None:
    srv, url, session = served
    poller = AnnouncementPoller(session, url, clock=lambda: T0)
    srv.statuses = [500]
    assert await poller.poll_once() == []
    assert poller.counters["http_500"] == 1
    dead = AnnouncementPoller(session, "http://127.0.0.1:1/nothing", clock=lambda: T0)
    assert await dead.poll_once() == []
    assert any(k.startswith("fetch_error") for k in dead.counters)
