"""Social sources: sentiment, cashtags, mention velocity, X and Binance Square parsers and pollers
(against local servers), the JSONL tail and the webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from engine.config import load_config
from engine.config.sections.discovery import SocialSection
from engine.discovery.announcements import AnnouncementPoller
from engine.discovery.social.binance_square import BinanceSquareFeed, parse_square
from engine.discovery.social.ingest import JsonlTail, bind_webhook_port, start_webhook, webhook_app
from engine.discovery.social.sentiment import LexiconSentiment
from engine.discovery.social.source import (
    FakeSocialSource,
    SocialPost,
    extract_cashtags,
    post_from_json,
    resolve_base,
)
from engine.discovery.social.velocity import MentionVelocity
from engine.discovery.social.x_search import XRecentSearch, parse_x_search
from engine.errors import ConfigError
from engine.runtime.sources import _poll
from tests.kit.domain import T0
from tests.kit.waiting import eventually

MIN = 60_000


@pytest.mark.parametrize(
    ("text", "sign"),
    [
        pytest.param("$PEPE to the moon, so bullish", 1, id="en-positive"),
        pytest.param("this is a rug, total scam, dump it", -1, id="en-negative"),
        pytest.param("not bullish at all", -1, id="en-negated-positive"),
        pytest.param("I don't think it will dump", 1, id="en-negated-negative"),
        pytest.param("PEPE 暴涨 起飞 利好", 1, id="zh-positive"),
        pytest.param("项目方跑路了, 暴跌, 利空", -1, id="zh-negative"),
        pytest.param("不会暴涨", -1, id="zh-negated-positive"),
        pytest.param("没有利空", 1, id="zh-negated-negative"),
        pytest.param("the weather is nice", 0, id="neutral"),
    ],
)
def test_sentiment_sign(text: str, sign: int) -> None:
    score = LexiconSentiment().score(text).score
    assert (score > 0) - (score < 0) == sign
    assert -1.0 <= score <= 1.0


@pytest.mark.parametrize(
    ("text", "symbols"),
    [
        pytest.param("$pepe and #FLOKI and $PEPE again", ("PEPE", "FLOKI"), id="dedupe-upper"),
        pytest.param("#crypto #Bitcoin $USDT", (), id="not-coins"),
        pytest.param("price is $5 today", ("5",), id="dollar-amount-a-candidate-resolve_base-drops"),
        pytest.param("买入＄WIF 起飞", ("WIF",), id="fullwidth-dollar"),
    ],
)
def test_cashtags(text: str, symbols: tuple[str, ...]) -> None:
    assert extract_cashtags(text) == symbols


KNOWN_BASES = frozenset({"PEPE", "1INCH", "1000SATS", "W", "S", "T", "ETH", "BTC"})


@pytest.mark.parametrize(
    ("text", "extra", "bases"),
    [
        pytest.param("$PEPEUSDT breakout", (), ("PEPE",), id="glued-quote"),
        pytest.param("$PEPE/USDT breakout", (), ("PEPE",), id="slash-quote"),
        pytest.param("moon", ("pepe/usdt", "$PEPE", "PEPEUSDT", "PEPE-USDT"), ("PEPE",), id="symbols-field"),
        pytest.param("$1INCH pump", (), ("1INCH",), id="digit-first"),
        pytest.param("$1000SATS pump", (), ("1000SATS",), id="digits-first"),
        pytest.param("$W $S and $T", (), ("W", "S", "T"), id="one-letter"),
        pytest.param("＄ＰＥＰＥ 起飞", (), ("PEPE",), id="full-width"),
        pytest.param("$ETHBTC", (), ("ETH",), id="other-quote"),
        pytest.param("$1 $100 $10K and $NOTACOIN", (), (), id="prices-and-unknown"),
    ],
)
def test_common_cashtags_name_their_known_base(text: str, extra: tuple[str, ...], bases: tuple[str, ...]) -> None:
    """`$PEPEUSDT`, `["pepe/usdt", "$PEPE"]`, `$1INCH`, `$1000SATS`, `$W`, `＄ＰＥＰＥ` counted for no
    coin (a letter first, 2-15 characters, no quote stripped, symbols not normalised); a price
    must still count for none."""
    v = MentionVelocity(SocialSection(), resolve=lambda tag: resolve_base(tag, KNOWN_BASES))
    p = SocialPost("t", "1", T0, "a", 0, text, extract_cashtags(text, extra))
    assert v.add([p], T0) == len(bases)
    assert tuple(v.scores(T0)) == bases
    assert v.counters["unknown_symbol"] == (0 if bases else 1)


def post(pid: str, ts: int, text: str = "$PEPE moon", followers: int = 10, source: str = "t") -> SocialPost:
    return SocialPost(source, pid, ts, "a", followers, text, extract_cashtags(text))


def velocity(**kw: Any) -> MentionVelocity:
    cfg = {"window_ms": 5 * MIN, "baseline_ms": 60 * MIN, "min_mentions": 3.0, "kol_followers": 10_000, "kol_weight": 3.0} | kw
    return MentionVelocity(SocialSection(**cfg))


def test_velocity_rises_against_own_baseline_and_kols_count_more() -> None:
    v = velocity()
    now = T0 + 2 * 3600_000
    # baseline: 12 mentions over the hour before the window (1 per 5 min)
    v.add([post(f"b{i}", now - 10 * MIN - i * 4 * MIN) for i in range(12)], now)
    v.add([post(f"w{i}", now - i * MIN) for i in range(4)], now)  # 4 in the window
    v.add([post("kol", now - 30_000, followers=50_000)], now)  # one KOL counts 3
    s = v.scores(now)["PEPE"]
    assert s.mentions == pytest.approx(7.0)
    assert s.velocity == pytest.approx(7.0 / 1.0)  # baseline rate 12/11 windows, floored at 1
    assert s.sentiment > 0


def test_velocity_needs_min_mentions_and_cleans_up() -> None:
    v = velocity()
    v.add([post("1", T0)], T0)
    assert v.scores(T0)["PEPE"].velocity == 0.0
    assert v.scores(T0 + 2 * 3600_000) == {}
    assert len(v) == 0 and v.counters["forgotten_symbols"] == 1


@pytest.mark.parametrize(
    ("p", "counter"),
    [
        pytest.param(post("f", T0 + 3600_000), "future_post", id="future"),
        pytest.param(post("s", T0 - 3 * 3600_000), "stale_post", id="stale"),
        pytest.param(post("n", T0, text="no coins here"), "post_without_symbol", id="no-symbol"),
    ],
)
def test_velocity_skips_bad_posts(p: SocialPost, counter: str) -> None:
    v = velocity()
    assert v.add([p], T0) == 0
    assert v.counters[counter] == 1


def test_velocity_counts_a_repeated_post_once() -> None:
    v = velocity()
    assert v.add([post("1", T0), post("1", T0)], T0) == 1
    assert v.counters["duplicate_post"] == 1


def test_a_post_counts_once_whichever_feed_or_named_source_carried_it() -> None:
    """The dedup key was (source, id) with the source taken from the post's body: one id re-sent
    naming "x2", "x3" counted three times, and one post relayed by the file and the webhook twice."""
    counters: Counter[str] = Counter()
    body = {"id": "h", "ts_ms": T0, "text": "$PEPE moon"}
    sent = [post_from_json({**body, **extra}, "webhook", counters) for extra in ({}, {"source": "x2"}, {"source": "x3"})]
    assert [p.source for p in sent if p is not None] == ["webhook"] * 3  # the feed names the source, not the post
    relayed = post_from_json(body, "jsonl", counters)
    v = velocity()
    assert v.add([p for p in (*sent, relayed) if p is not None], T0) == 1
    assert v.counters["duplicate_post"] == 3


@pytest.mark.parametrize(
    ("obj", "counter"),
    [
        pytest.param([1], "bad_post:not_an_object", id="not-object"),
        pytest.param({"ts_ms": T0, "text": "x"}, "bad_post:missing_id_or_text", id="no-id"),
        pytest.param({"id": 1, "ts_ms": "now", "text": "x"}, "bad_post:bad_ts_ms", id="bad-ts"),
        pytest.param({"id": 1, "ts_ms": -5, "text": "x"}, "bad_post:bad_ts_ms", id="negative-ts"),
    ],
)
def test_generic_post_shape_rejects_with_reason(obj: Any, counter: str) -> None:
    counters: Counter[str] = Counter()
    assert post_from_json(obj, "jsonl", counters) is None
    assert counters[counter] == 1


X_PAYLOAD = {
    "data": [
        {"id": "11", "text": "$PEPE breakout 🚀", "created_at": "2021-04-16T00:00:01.000Z", "author_id": "u1"},
        {"id": "12", "text": "$DOGE dump", "created_at": "2021-04-16T00:00:02.000Z", "author_id": "u2"},
        {"id": "13", "text": "no date"},
    ],
    "includes": {"users": [{"id": "u1", "username": "whale", "public_metrics": {"followers_count": 250_000}}]},
    "meta": {"newest_id": "12"},
}


def test_parse_x_search() -> None:
    counters: Counter[str] = Counter()
    posts, newest = parse_x_search(X_PAYLOAD, counters)
    assert newest == "12"
    assert [(p.post_id, p.author, p.followers, p.symbols) for p in posts] == [
        ("11", "whale", 250_000, ("PEPE",)),
        ("12", "", 0, ("DOGE",)),
    ]
    assert posts[0].ts_ms == T0 + 1000
    assert counters["bad_post"] == 1


SQUARE_PAYLOAD = {
    "data": {
        "vos": [
            {"id": 5, "content": "$WIF 起飞", "authorName": "kol", "authorFollowers": 20_000, "date": T0 // 1000},
            {"id": 6, "title": "new gem", "date": T0, "tradingPairs": [{"code": "BONK"}]},
            {"content": "no id", "date": T0},
        ]
    }
}


def test_parse_square() -> None:
    counters: Counter[str] = Counter()
    posts = parse_square(SQUARE_PAYLOAD, counters)
    assert [(p.post_id, p.ts_ms, p.symbols, p.followers) for p in posts] == [("5", T0, ("WIF",), 20_000), ("6", T0, ("BONK",), 0)]
    assert counters["bad_post"] == 1
    assert parse_square({"data": {}}, counters) == [] and counters["bad_payload"] == 1


class Local:
    """Local stand-ins for X and Binance Square, recording requests."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.x_status = 200

    async def x(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        if self.x_status != 200:
            return web.json_response({}, status=self.x_status)
        return web.json_response(X_PAYLOAD)

    async def square(self, request: web.Request) -> web.Response:
        return web.json_response(SQUARE_PAYLOAD)


@pytest.fixture
async def local() -> AsyncIterator[tuple[Local, TestServer, aiohttp.ClientSession]]:
    srv = Local()
    app = web.Application()
    app.router.add_get("/2/tweets/search/recent", srv.x)
    app.router.add_get("/square/feed", srv.square)
    ts = TestServer(app, host="127.0.0.1", port=0)
    await ts.start_server()
    async with aiohttp.ClientSession() as session:
        yield srv, ts, session
    await ts.close()


async def test_x_poller_sends_token_and_since_id(local: tuple[Local, TestServer, aiohttp.ClientSession]) -> None:
    srv, ts, session = local
    x = XRecentSearch(session, bearer_token=SecretStr("t0ken"), query="$PEPE", base_url=str(ts.make_url("")), clock=lambda: T0)
    assert "t0ken" not in repr(x)
    posts = await x.fetch()
    assert len(posts) == 2
    assert srv.requests[0].headers["Authorization"] == "Bearer t0ken"
    assert "since_id" not in srv.requests[0].query
    await x.fetch()
    assert srv.requests[1].query["since_id"] == "12"
    srv.x_status = 429
    assert await x.fetch() == []
    assert x.backoff.until_ms == T0 + 60_000


async def test_square_poller(local: tuple[Local, TestServer, aiohttp.ClientSession]) -> None:
    _, ts, session = local
    feed = BinanceSquareFeed(session, str(ts.make_url("/square/feed")), clock=lambda: T0)
    assert [p.post_id for p in await feed.fetch()] == ["5", "6"]


async def test_jsonl_tail_reads_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    tail = JsonlTail(path)
    assert await tail.fetch() == [] and tail.counters["file_missing"] == 1
    line = orjson.dumps({"id": 1, "ts_ms": T0, "text": "$PEPE moon", "followers": 20_000}).decode()
    path.write_text(line + "\nnot json\n" + '{"id": 2, "ts_ms": ' + str(T0))  # last line half-written
    posts = await tail.fetch()
    assert [(p.post_id, p.followers, p.symbols) for p in posts] == [("1", 20_000, ("PEPE",))]
    assert tail.counters["bad_line"] == 1
    with path.open("a") as fh:
        fh.write(', "text": "$WIF"}\n')
    assert [p.post_id for p in await tail.fetch()] == ["2"]
    path.write_text(line + "\n")  # rotated: shorter than what we read
    assert [p.post_id for p in await tail.fetch()] == ["1"]
    assert tail.counters["file_truncated"] == 1


def jsonl_line(pid: str, sym: str) -> str:
    return orjson.dumps({"id": pid, "ts_ms": T0, "text": f"${sym} breakout"}).decode() + "\n"


async def test_jsonl_tail_follows_a_file_replaced_under_its_name(tmp_path: Path) -> None:
    """A scraper writing its newest batch to a temp file and `os.replace`-ing it over the path: a
    new file no shorter than the old offset was read from that offset (posts lost, a cut line)."""
    path = tmp_path / "posts.jsonl"
    path.write_text(jsonl_line("1", "PEPE") + jsonl_line("2", "PEPE"))
    tail = JsonlTail(path)
    assert [p.post_id for p in await tail.fetch()] == ["1", "2"]
    tmp = tmp_path / "posts.jsonl.tmp"
    tmp.write_text(jsonl_line("3", "WIF") + jsonl_line("4", "WIF") + jsonl_line("5", "WIF"))
    os.replace(tmp, path)
    assert [p.post_id for p in await tail.fetch()] == ["3", "4", "5"]
    assert tail.counters["file_replaced"] == 1 and tail.counters["bad_line"] == 0


async def test_jsonl_tail_follows_a_rotated_file(tmp_path: Path) -> None:
    """logrotate: the file renamed away, a new one created and written past the old offset
    before the next poll: only its tail was read."""
    path = tmp_path / "posts.jsonl"
    path.write_text(jsonl_line("1", "PEPE"))
    tail = JsonlTail(path)
    assert [p.post_id for p in await tail.fetch()] == ["1"]
    path.rename(tmp_path / "posts.jsonl.1")
    path.write_text("".join(jsonl_line(str(i), "BONK") for i in range(6, 12)))
    assert [p.post_id for p in await tail.fetch()] == [str(i) for i in range(6, 12)]
    with path.open("a") as fh:
        fh.write(jsonl_line("12", "BONK"))
    assert [p.post_id for p in await tail.fetch()] == ["12"]  # and goes on appending from there
    assert tail.counters["file_replaced"] == 1


async def test_jsonl_tail_reads_regular_files_only_and_never_blocks(tmp_path: Path) -> None:
    """A FIFO as jsonl_path blocked the reading thread in open() (and the process after "engine
    stopped"); a directory raised every poll. Both are now a `problem`, at once."""
    fifo = tmp_path / "posts.fifo"
    os.mkfifo(fifo)
    tail = JsonlTail(fifo)
    try:
        assert await asyncio.wait_for(tail.fetch(), 5) == []
    finally:  # without the fix: release the thread stuck in open() so the test run can end
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert tail.problem is not None and "not a regular file" in tail.problem
    folder = JsonlTail(tmp_path)
    assert await folder.fetch() == [] and folder.problem is not None and "not a regular file" in folder.problem
    assert folder.counters["not_a_file"] == 1


async def test_a_source_in_trouble_is_logged_when_its_trouble_changes_not_every_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory as jsonl_path logged a traceback every second, and a missing (mistyped) path
    nothing at all, forever."""
    path = tmp_path / "posts.jsonl"
    tail = JsonlTail(path)
    stop = asyncio.Event()

    class Broken(FakeSocialSource):
        async def fetch(self) -> list[SocialPost]:
            raise IsADirectoryError(21, "Is a directory")

    broken = Broken("broken")
    with caplog.at_level(logging.INFO, logger="hotcoin.sources"):
        tasks = [asyncio.create_task(_poll(s, lambda posts: None, 0.01, stop)) for s in (tail, broken)]
        await eventually(lambda: tail.counters["file_missing"] >= 5)
        path.write_text(jsonl_line("1", "PEPE"))
        await eventually(lambda: tail.offset > 0)
        path.unlink()
        path.mkdir()
        await eventually(lambda: tail.counters["not_a_file"] >= 5)
        stop.set()
        await asyncio.gather(*tasks)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "hotcoin.sources"]
    assert said[0][0] == "ERROR" and said[0][1].startswith("social source broken failed")
    assert said[1:] == [
        ("WARNING", f"social source jsonl: {path} does not exist (yet): waiting for it"),
        ("INFO", "social source jsonl: reading again"),
        ("WARNING", f"social source jsonl: {path} is not a regular file: discovery.social.jsonl_path names a file posts are appended to"),
    ]


WEBHOOK_TOKEN = "wh-token-0123456789"
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


async def test_webhook_accepts_posts_on_loopback() -> None:
    got: list[SocialPost] = []
    counters: Counter[str] = Counter()
    runner = await start_webhook(webhook_app(got.extend, counters, WEBHOOK_TOKEN), bind_webhook_port(0))
    try:
        host, port = runner.addresses[0][:2]
        assert host == "127.0.0.1"
        async with aiohttp.ClientSession() as session:
            body = [{"id": 1, "ts_ms": T0, "text": "$PEPE"}, {"id": 2, "text": "no ts"}]
            async with session.post(f"http://127.0.0.1:{port}/posts", json=body, headers=AUTH) as resp:
                assert resp.status == 200
                assert await resp.json() == {
                    "accepted": 1,
                    "rejected": 1,
                    "rejections": [{"index": 1, "id": 2, "reason": "bad_post:bad_ts_ms", "detail": '"ts_ms" is the post\'s time as a positive integer, in epoch milliseconds'}],
                }
            bad = {**AUTH, "Content-Type": "application/json"}
            async with session.post(f"http://127.0.0.1:{port}/posts", data=b"{nope", headers=bad) as resp:
                assert resp.status == 400
                assert "not JSON" in (await resp.json())["error"]
    finally:
        await runner.cleanup()
    assert [p.symbols for p in got] == [("PEPE",)]
    assert counters["bad_body"] == 1


@pytest.mark.parametrize(
    ("headers", "status", "counter"),
    [
        ({"Content-Type": "application/json"}, 401, "unauthorized"),
        ({"Content-Type": "application/json", "Authorization": "Bearer wrong-token"}, 401, "unauthorized"),
        ({"Content-Type": "application/json", "Authorization": WEBHOOK_TOKEN}, 401, "unauthorized"),
        ({**AUTH, "Content-Type": "text/plain"}, 415, "bad_content_type"),
        ({**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, 415, "bad_content_type"),
    ],
    ids=["no-token", "wrong-token", "no-bearer", "text-plain", "form"],
)
async def test_webhook_refuses_posts_without_the_token_or_not_json(headers: dict[str, str], status: int, counter: str) -> None:
    """Any local user, or any web page (text/plain is a CORS "simple" request), pushed a coin's
    heat to 100 with forty fake KOL posts; now a post needs the token and application/json."""
    got: list[SocialPost] = []
    counters: Counter[str] = Counter()
    runner = await start_webhook(webhook_app(got.extend, counters, WEBHOOK_TOKEN), bind_webhook_port(0))
    try:
        port = runner.addresses[0][1]
        body = orjson.dumps([{"id": "evil", "ts_ms": T0, "text": "$PON to the moon", "followers": 10**6}])
        async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{port}/posts", data=body, headers=headers) as resp:
            assert resp.status == status
            assert "error" in await resp.json()
            if status == 401:
                assert resp.headers["WWW-Authenticate"] == "Bearer"
    finally:
        await runner.cleanup()
    assert got == []
    assert counters[counter] == 1


README_TS = 1767614400000  # the README's example post, 2026-01-05: stale a day after the window


async def test_the_webhook_refuses_with_reasons_the_posts_that_would_not_count() -> None:
    """It answered {"accepted": 1} for posts discovery then dropped unseen: epoch seconds, the
    README's fixed example time, no coin, a future time."""
    now = README_TS + 30 * 86_400_000
    v = MentionVelocity(SocialSection(), resolve=lambda tag: resolve_base(tag, KNOWN_BASES))
    got: list[SocialPost] = []
    counters: Counter[str] = Counter()
    app = webhook_app(got.extend, counters, WEBHOOK_TOKEN, screen=lambda p: v.screen(p, now))
    runner = await start_webhook(app, bind_webhook_port(0))
    cases = {
        "seconds": ({"ts_ms": now // 1000, "text": "$PEPE moon"}, "stale_post", "epoch milliseconds"),
        "readme": ({"ts_ms": README_TS, "text": "$PEPE listing soon"}, "stale_post", "no longer count"),
        "no-tag": ({"ts_ms": now, "text": "PEPE moon"}, "post_without_symbol", "no coin named"),
        "unknown": ({"ts_ms": now, "text": "$100 moon"}, "unknown_symbol", "no coin the exchange lists"),
        "future": ({"ts_ms": now + 86_400_000, "text": "$PEPE moon"}, "future_post", "after now"),
        "ok": ({"ts_ms": now, "text": "$PEPEUSDT moon"}, None, None),
    }
    body = [{"id": name, **obj} for name, (obj, _, _) in cases.items()]
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{port}/posts", json=body, headers=AUTH) as resp:
            answer = await resp.json()
        v.add(got, now)  # the engine folds what was accepted; the same id again is a repeat
        async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{port}/posts", json=body[-1], headers=AUTH) as resp:
            again = await resp.json()
    finally:
        await runner.cleanup()
    assert answer["accepted"] == 1 and answer["rejected"] == 5
    refused = {r["id"]: (r["reason"], r["detail"]) for r in answer["rejections"]}
    for name, (_, reason, hint) in cases.items():
        if reason is None:
            assert name not in refused
        else:
            assert refused[name][0] == reason and hint in refused[name][1], name
    assert [p.post_id for p in got] == ["ok"] and v.counters["mentions"] == 1
    assert again["rejections"][0]["reason"] == "duplicate_post"
    assert counters["rejected:stale_post"] == 2 and counters["webhook_posts"] == 1


async def post_json(port: int, body: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{port}/posts", json=body, headers=AUTH) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


@pytest.mark.parametrize("screened", [True, False], ids=["screened", "unscreened"])
async def test_a_post_id_repeated_in_one_request_is_refused(screened: bool) -> None:
    """Audit: `[{"id": "9", ...}, {"id": "9", ...}]` was answered {"accepted": 2}, though a post
    id counts once (README); discovery's screen only knew the posts it had taken. The second
    copy is refused as a repeat, screen or not, and only the first is delivered."""
    now = T0
    v = MentionVelocity(SocialSection(), resolve=lambda tag: resolve_base(tag, KNOWN_BASES))
    got: list[SocialPost] = []
    counters: Counter[str] = Counter()
    screen = (lambda p: v.screen(p, now)) if screened else None
    runner = await start_webhook(webhook_app(got.extend, counters, WEBHOOK_TOKEN, screen=screen), bind_webhook_port(0))
    post = {"id": "9", "ts_ms": now, "text": "$PEPE up"}
    try:
        answer = await post_json(runner.addresses[0][1], [post, {**post, "text": "$PEPE up again"}, {**post, "id": "10"}])
    finally:
        await runner.cleanup()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    assert answer["rejections"] == [
        {"index": 1, "id": "9", "reason": "duplicate_post", "detail": "post id '9' came earlier in this request"}
    ]
    assert [(p.post_id, p.text) for p in got] == [("9", "$PEPE up"), ("10", "$PEPE up")]
    assert counters["rejected:duplicate_post"] == 1 and counters["webhook_posts"] == 2


async def test_a_post_id_sent_again_before_the_engine_folds_it_in_is_refused(tmp_path: Path) -> None:
    """Audit: the same post in back-to-back requests was "accepted" twice when the second came
    before the engine's next cycle had taken the first (the screen asked discovery, which had
    not seen it yet). An id waiting in the engine's inbox is a repeat too; once folded in,
    discovery's own memory refuses it; and an id is not kept as queued after that."""
    from tests.kit.engine import plain_alts, pump_rig

    async with pump_rig(tmp_path / "j.sqlite") as rig:
        engine = rig.engine
        now = engine.feed.now_ms()
        await engine.cycle.driver.refresh_markets(now, force=True)  # the coins posts can name
        coin = plain_alts(rig.market)[0].split("/")[0]
        counters: Counter[str] = Counter()
        runner = await start_webhook(webhook_app(engine.deliver_posts, counters, WEBHOOK_TOKEN, screen=engine.screen_post), bind_webhook_port(0))
        post = {"id": "9", "ts_ms": now, "text": f"${coin} up"}
        try:
            port = runner.addresses[0][1]
            first = await post_json(port, post)
            queued = await post_json(port, post)
            await engine.cycle.driver.prepare(now)  # the next cycle folds the inbox into discovery
            taken = await post_json(port, post)
        finally:
            await runner.cleanup()
        assert (first["accepted"], first["rejected"]) == (1, 0), first
        assert [(r["reason"], r["detail"]) for r in queued["rejections"]] == [
            ("duplicate_post", "post id '9' is queued already: it counts at the next cycle")
        ]
        assert [(r["reason"], r["detail"]) for r in taken["rejections"]] == [("duplicate_post", "post id '9' was counted already")]
        assert not engine.cycle.post_queued("9") and counters["webhook_posts"] == 1


def test_the_readme_example_post_is_sent_at_the_current_time() -> None:
    """The README's curl example carried a fixed ts_ms (1767614400000), stale an hour later: the
    webhook took it and discovery dropped it, silently."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    example = readme[readme.index("### Feeding social posts") :].split("### ", 2)[1]
    assert '"ts_ms": ' in example and re.search(r'"ts_ms": \d', example) is None
    assert "epoch milliseconds" in example


@pytest.mark.parametrize(
    ("token", "why"),
    [("", "is empty"), ("   ", "is empty"), ("short-token", "at least 16 characters")],
    ids=["empty", "blank", "short"],
)
def test_an_empty_or_short_webhook_token_is_refused_at_load(tmp_path: Path, token: str, why: str) -> None:
    """An empty token in the secrets file crashed `hotcoin run` with a raw ValueError from the
    webhook; a short one is guessed. (Blank is every secret's check, length the token's own.)"""
    secrets = tmp_path / "s.toml"
    secrets.write_text(f"[discovery.social]\nwebhook_token = '{token}'\n")
    secrets.chmod(0o600)
    config = tmp_path / "c.toml"
    config.write_text(f"[paths]\nsecrets_file = '{secrets}'\n[discovery.social]\nwebhook_port = 8999\n")
    with pytest.raises(ConfigError, match=rf"discovery\.social\.webhook_token .*{why}") as refused:
        load_config(config)
    assert "webhook_port" not in str(refused.value)  # not also "needs a token": one error, the right one


def test_webhook_needs_a_token_and_the_token_is_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"discovery\.social\.webhook_port .*needs discovery\.social\.webhook_token.*HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_TOKEN"):
        load_config(env={"HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_PORT": "8999"})
    with pytest.raises(ValueError, match="non-empty token"):
        webhook_app(lambda posts: None, Counter(), "")
    config = tmp_path / "c.toml"
    config.write_text("[discovery.social]\nwebhook_port = 8999\nwebhook_token = 'in-the-config-file'\n")
    with pytest.raises(ConfigError, match="webhook_token is a secret") as refused:
        load_config(config)
    assert "in-the-config-file" not in str(refused.value)
    secrets = tmp_path / "s.toml"
    secrets.write_text("[discovery.social]\nwebhook_token = 'from-the-secrets-file'\n")
    secrets.chmod(0o600)
    config.write_text(f"[paths]\nsecrets_file = '{secrets}'\n[discovery.social]\nwebhook_port = 8999\n")
    social = load_config(config).config.discovery.social
    assert social.webhook_token is not None and social.webhook_token.get_secret_value() == "from-the-secrets-file"
    assert "from-the-secrets-file" not in repr(social)


async def test_fake_source_and_poller_run_loop(local: tuple[Local, TestServer, aiohttp.ClientSession]) -> None:
    fake = FakeSocialSource()
    fake.push(post("1", T0))
    assert len(await fake.fetch()) == 1 and await fake.fetch() == []
    _, ts, session = local
    poller = AnnouncementPoller(session, str(ts.make_url("/square/feed")), clock=lambda: T0)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(lambda anns: None, interval_s=0.01, stop=stop))
    try:
        await eventually(lambda: poller.counters["fetched"] >= 2)  # it keeps polling
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
