"""Notification channels against a local HTTP sink, the dispatcher's policies, and which
events become messages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import load_config
from engine.config.sections.trading import RiskSettings
from engine.errors import ConfigError
from engine.ops.notify import (
    ChannelReport,
    DeliveryError,
    Dispatcher,
    DispatchSettings,
    FakeNotifier,
    Notification,
    NotificationBridge,
    Severity,
    build_notifier,
    notification_for,
)
from engine.ops.notify.feishu import FeishuNotifier
from engine.ops.notify.telegram import TelegramBot, TelegramNotifier
from engine.portfolio.risk import RiskManager
from tests.engine.ops.notify_sink import HttpSink
from tests.kit.waiting import eventually

TOKEN = "123456:SECRET-token"
CHAT = -100123


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    s = HttpSink()
    await s.start()
    yield s
    await s.stop()


def note(text: str = "hello", **kw: Any) -> Notification:
    return Notification("Title", text, **kw)


# -- channels ---------------------------------------------------------------------------------


async def test_telegram_send_message_shape(sink: HttpSink) -> None:
    notifier = TelegramNotifier(TelegramBot(sink.base_url, TOKEN), CHAT)
    try:
        await notifier.send(Notification("Opened DOGE/USDT", "100 @ 0.3", Severity.WARNING))
    finally:
        await notifier.aclose()
    [req] = sink.requests
    assert req.path == f"/bot{TOKEN}/sendMessage"
    assert req.body == {"chat_id": CHAT, "text": "⚠️ Opened DOGE/USDT\n100 @ 0.3", "disable_web_page_preview": True}
    assert req.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("status", "extra", "retryable", "retry_after"),
    [
        (429, {"parameters": {"retry_after": 7}}, True, 7.0),
        (500, {}, True, None),
        (502, {}, True, None),
        (400, {}, False, None),
        (403, {}, False, None),
    ],
    ids=["429-retry-after", "500", "502", "400-bad-request", "403-bot-blocked"],
)
async def test_telegram_errors_map_to_delivery_errors(
    sink: HttpSink, status: int, extra: dict[str, Any], retryable: bool, retry_after: float | None
) -> None:
    sink.fail(status, **extra, description=f"failed for bot{TOKEN}")
    bot = TelegramBot(sink.base_url, TOKEN)
    try:
        with pytest.raises(DeliveryError) as info:
            await bot.send_message(CHAT, "x")
    finally:
        await bot.aclose()
    assert info.value.retryable is retryable
    assert info.value.retry_after == retry_after
    assert f"HTTP {status}" in str(info.value)
    assert TOKEN not in str(info.value)


async def test_telegram_network_error_is_retryable_and_hides_the_token(sink: HttpSink) -> None:
    url = sink.base_url
    await sink.stop()  # nothing listens there any more
    bot = TelegramBot(url, TOKEN, timeout_s=2)
    try:
        with pytest.raises(DeliveryError) as info:
            await bot.send_message(CHAT, "x")
    finally:
        await bot.aclose()
    assert info.value.retryable
    assert not info.value.maybe_delivered  # refused: nothing reached the far end
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("channel", ["telegram", "feishu"])
async def test_a_timeout_says_the_message_may_have_arrived(sink: HttpSink, channel: str) -> None:
    """A far end that took the request and answers too late may have shown the message: the
    dispatcher retries such a failure once at most (a slow endpoint got each message 5 times)."""
    sink.hold()
    notifier: TelegramNotifier | FeishuNotifier = (
        TelegramNotifier(TelegramBot(sink.base_url, TOKEN, timeout_s=0.2), CHAT)
        if channel == "telegram"
        else FeishuNotifier(f"{sink.base_url}/feishu/hook/abc", timeout_s=0.2)
    )
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(note("slow"))
    finally:
        await notifier.aclose()
    assert len(sink.requests) == 1
    assert info.value.retryable and info.value.maybe_delivered
    assert TOKEN not in str(info.value)


async def test_feishu_webhook_shape_without_secret(sink: HttpSink) -> None:
    notifier = FeishuNotifier(f"{sink.base_url}/feishu/hook/abc", clock=lambda: 1_700_000_000.5)
    try:
        await notifier.send(note("body"))
    finally:
        await notifier.aclose()
    [req] = sink.requests
    assert req.path == "/feishu/hook/abc"
    assert req.body == {"msg_type": "text", "content": {"text": "Title\nbody"}}


async def test_feishu_webhook_is_signed_when_a_secret_is_set(sink: HttpSink) -> None:
    notifier = FeishuNotifier(f"{sink.base_url}/feishu/hook/abc", secret="s3cret", clock=lambda: 1_700_000_000.9)
    try:
        await notifier.send(note("body"))
    finally:
        await notifier.aclose()
    body = sink.requests[0].body
    assert body["timestamp"] == "1700000000"
    expected = base64.b64encode(hmac.new(b"1700000000\ns3cret", b"", hashlib.sha256).digest()).decode()
    assert body["sign"] == expected


async def feishu_refusal(sink: HttpSink) -> DeliveryError:
    """The error a Feishu notifier pointed at `sink` raises for one message (the sink's answer set)."""
    notifier = FeishuNotifier(f"{sink.base_url}/feishu/hook/abc")
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier.send(note())
    finally:
        await notifier.aclose()
    return info.value


@pytest.mark.parametrize(
    ("status", "reply", "retryable"),
    [
        (200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}, False),
        (200, {"code": 11232, "msg": "frequency limited"}, True),
        (429, {"code": 9499, "msg": "too many requests"}, True),
        (503, {}, True),
    ],
    ids=["bad-signature", "rate-limited-code", "http-429", "http-503"],
)
async def test_feishu_errors(sink: HttpSink, status: int, reply: dict[str, Any], retryable: bool) -> None:
    sink.answer(status, reply)
    error = await feishu_refusal(sink)
    assert error.retryable is retryable
    assert "/feishu/hook" not in str(error)


@pytest.mark.parametrize(
    "reply",
    [b"<html>login required</html>", b"", {"ok": True}, {"code": None}, {"code": False}, [0]],
    ids=["html", "empty", "no-code", "null-code", "false-code", "json-list"],
)
async def test_feishu_200_without_its_code_0_is_not_delivered(sink: HttpSink, reply: dict[str, Any] | bytes | list[int]) -> None:
    """A 200 from something that is not Feishu (a proxy page, a wrong URL) counted as delivered:
    the owner never saw the message and nothing said so."""
    sink.answer(200, orjson.dumps(reply) if isinstance(reply, list) else reply)
    error = await feishu_refusal(sink)
    assert error.retryable is False
    assert "notify.feishu.webhook_url" in str(error)


async def test_feishu_older_status_code_0_is_delivered(sink: HttpSink) -> None:
    sink.answer(200, {"Extra": None, "StatusCode": 0, "StatusMessage": "success"})
    notifier = FeishuNotifier(f"{sink.base_url}/feishu/hook/abc")
    try:
        await notifier.send(note())
    finally:
        await notifier.aclose()


# -- dispatcher -------------------------------------------------------------------------------


def dispatcher(*notifiers: Any, t: FakeTime, **settings: Any) -> Dispatcher:
    base = {"backoff_s": 1.0, "max_backoff_s": 30.0, "max_per_minute": 100, "dedupe_window_s": 60.0}
    return Dispatcher(list(notifiers), DispatchSettings(**{**base, **settings}), clock=t.clock, sleep=t.sleep)


async def test_identical_messages_within_the_window_are_sent_once() -> None:
    t, fake = FakeTime(), FakeNotifier()
    async with dispatcher(fake, t=t) as d:
        assert d.notify(note("same"))
        assert not d.notify(note("same"))
        assert d.notify(note("other"))
        t.now += 61
        assert d.notify(note("same"))
        await eventually(lambda: len(fake.sent) == 3)
    assert [n.text for n in fake.sent] == ["same", "other", "same"]
    assert d.duplicates == 1


async def test_an_explicit_key_dedupes_different_texts() -> None:
    t, fake = FakeTime(), FakeNotifier()
    async with dispatcher(fake, t=t) as d:
        assert d.notify(note("stale 91s", key="stale"))
        assert not d.notify(note("stale 95s", key="stale"))
        await eventually(lambda: d.idle)
    assert [n.text for n in fake.sent] == ["stale 91s"]


async def test_rate_limit_paces_sends_to_the_sliding_minute() -> None:
    t, fake = FakeTime(), FakeNotifier()
    async with dispatcher(fake, t=t, max_per_minute=2) as d:
        for i in range(5):
            d.notify(note(f"m{i}"))
        await eventually(lambda: len(fake.sent) == 5)
    assert [n.text for n in fake.sent] == [f"m{i}" for i in range(5)]
    assert t.slept == [60.0, 60.0]  # two sends per minute: waits before the 3rd and the 5th


async def test_retries_with_exponential_backoff_on_5xx(sink: HttpSink) -> None:
    t = FakeTime()
    sink.fail(500, times=3)
    d = dispatcher(TelegramNotifier(TelegramBot(sink.base_url, TOKEN), CHAT), t=t, max_retries=4)
    async with d:
        d.notify(note("eventually"))
        await eventually(lambda: d.stats["telegram"].sent == 1)
    assert len(sink.requests) == 4
    assert t.slept == [1.0, 2.0, 4.0]
    assert d.stats["telegram"].retries == 3


async def test_429_retry_after_is_honoured(sink: HttpSink) -> None:
    t = FakeTime()
    sink.fail(429, parameters={"retry_after": 17})
    d = dispatcher(TelegramNotifier(TelegramBot(sink.base_url, TOKEN), CHAT), t=t)
    async with d:
        d.notify(note("after the wait"))
        await eventually(lambda: d.stats["telegram"].sent == 1)
    assert t.slept == [17.0]
    assert sink.sent_texts() == ["Title\nafter the wait", "Title\nafter the wait"]


async def test_non_retryable_errors_and_exhausted_retries_give_up() -> None:
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DeliveryError("400", retryable=False))
    fake.fail_next(DeliveryError("500", retryable=True), times=3)
    async with dispatcher(fake, t=t, max_retries=2) as d:
        d.notify(note("bad request"))
        d.notify(note("server down"))
        d.notify(note("fine"))
        await eventually(lambda: d.stats["fake"].sent == 1)
    assert [n.text for n in fake.sent] == ["fine\n(2 earlier message(s) not delivered, given up: Title; Title)"]
    assert d.stats["fake"].failed == 2
    assert fake.attempts == 1 + 3 + 1
    assert t.slept == [1.0, 2.0]


async def test_a_message_given_up_on_is_not_a_duplicate_of_its_repeat() -> None:
    """An L5 alert given up on (timed out twice) during an outage: its repeat, once the endpoint
    is back, goes out (it was dropped as a duplicate of the one never delivered)."""
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DeliveryError("timeout", retryable=True, maybe_delivered=True), times=2)
    async with dispatcher(fake, t=t, max_retries=1, dedupe_window_s=300.0) as d:
        alert = note("drawdown 9%", severity=Severity.CRITICAL, key="risk:L5")
        assert d.notify(alert)
        await eventually(lambda: d.stats["fake"].failed == 1)
        assert d.notify(alert)  # not a duplicate: the first was never delivered
        await eventually(lambda: d.stats["fake"].sent == 1)
    assert [n.text.split("\n")[0] for n in fake.sent] == ["drawdown 9%"]


async def test_a_retry_after_longer_than_the_cap_waits_the_cap() -> None:
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DeliveryError("429", retryable=True, retry_after=86_400.0))
    async with dispatcher(fake, t=t, max_backoff_s=120.0) as d:
        d.notify(note("after the cap"))
        await eventually(lambda: d.stats["fake"].sent == 1)
    assert t.slept == [120.0]


async def test_a_crashing_notifier_costs_one_message_not_the_worker() -> None:
    class Broken(FakeNotifier):
        async def send(self, note: Notification) -> None:
            if note.text == "boom":
                raise RuntimeError("bug in a channel")
            await super().send(note)

    t, broken = FakeTime(), Broken("broken")
    async with dispatcher(broken, t=t) as d:
        d.notify(note("boom"))
        d.notify(note("after"))
        await eventually(lambda: len(broken.sent) == 1)
    assert d.stats["broken"].failed == 1


async def test_a_blocked_sink_never_blocks_the_caller_or_other_channels(sink: HttpSink) -> None:
    sink.hold()
    other = FakeNotifier("other")
    d = Dispatcher(
        [TelegramNotifier(TelegramBot(sink.base_url, TOKEN, timeout_s=30), CHAT), other],
        DispatchSettings(queue_size=3, dedupe_window_s=0),
    )
    await d.start()
    try:
        assert d.notify(note("m0"))
        await eventually(lambda: len(sink.requests) == 1 and len(other.sent) == 1)  # m0 held at the sink
        for i in range(1, 10):
            assert d.notify(note(f"m{i}"))  # returns at once although telegram never answers
        await eventually(lambda: len(other.sent) == 4)  # the other channel goes on meanwhile
        assert len(sink.requests) == 1
        assert d.stats["telegram"].dropped == 6  # m1..m6 dropped; m7, m8, m9 wait
        sink.release()
        await eventually(lambda: d.stats["telegram"].sent == 4)
    finally:
        await d.aclose()
    texts = sink.sent_texts()
    assert texts[0] == "Title\nm0"
    assert texts[1] == "Title\nm7\n(6 earlier message(s) dropped: queue full)"
    assert texts[2:] == ["Title\nm8", "Title\nm9"]


async def test_close_drains_then_stops_and_refuses_new_messages() -> None:
    t, fake = FakeTime(), FakeNotifier()
    d = dispatcher(fake, t=t)
    d.notify(note("queued before start"))
    await d.start()
    await d.aclose()
    assert [n.text for n in fake.sent] == ["queued before start"]
    assert fake.closed
    assert not d.notify(note("too late"))


class Stuck:
    """A pacing or retry wait that outlasts the test: the worker still holds its message when
    the dispatcher closes. `waits` lists the delays asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.Event().wait()


STOPPED = Notification("Engine stopped", "run r1: shutdown", Severity.WARNING, "system")


async def test_close_sends_engine_stopped_past_the_rate_limit(caplog: pytest.LogCaptureFixture) -> None:
    """At the rate limit when the engine stopped, "Engine stopped" waited behind the pace, was
    dropped at close, and the log counted one message short (the one being paced)."""
    t, fake, stuck = FakeTime(), FakeNotifier(), Stuck()
    d = Dispatcher([fake], DispatchSettings(max_per_minute=1, dedupe_window_s=0), clock=t.clock, sleep=stuck)
    await d.start()
    d.notify(note("routine 1"))
    d.notify(note("routine 2"))  # taken by the worker, which waits for the next minute
    await eventually(lambda: stuck.waits == [60.0])
    d.notify(STOPPED)
    with caplog.at_level(logging.WARNING, logger="hotcoin.notify"):
        await d.aclose(drain_s=0.05)
    assert [n.title for n in fake.sent] == ["Title", "Engine stopped"]
    assert d.stats["fake"].failed == 1  # routine 2, never sent
    [lost] = [r for r in caplog.records if r.getMessage() == "notifications not delivered at shutdown"]
    assert lost.__dict__["count"] == 1


async def test_close_counts_the_message_in_hand_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DeliveryError("500", retryable=True))
    d = Dispatcher([fake], DispatchSettings(dedupe_window_s=0), clock=t.clock, sleep=Stuck())
    await d.start()
    d.notify(note("waits to retry"))
    await eventually(lambda: d.stats["fake"].retries == 1)
    with caplog.at_level(logging.WARNING, logger="hotcoin.notify"):
        await d.aclose(drain_s=0.05)
    assert fake.sent == []
    assert d.stats["fake"].failed == 1
    [lost] = [r for r in caplog.records if r.getMessage() == "notifications not delivered at shutdown"]
    assert lost.__dict__["count"] == 1


async def test_close_gives_a_hung_channel_a_deadline_not_forever() -> None:
    class Hung(FakeNotifier):
        async def send(self, note: Notification) -> None:
            await asyncio.Event().wait()

    hung, other = Hung("hung"), FakeNotifier("other")
    d = Dispatcher([hung, other], DispatchSettings(dedupe_window_s=0))
    await d.start()
    d.notify(STOPPED)
    await eventually(lambda: len(other.sent) == 1)
    async with asyncio.timeout(2):
        await d.aclose(drain_s=0.05, final_s=0.05)
    assert d.stats["hung"].failed == 1
    assert d.stats["other"].sent == 1


async def test_report_says_a_channel_is_failing_and_what_waits_behind_it() -> None:
    t, fake, stuck = FakeTime(), FakeNotifier(), Stuck()
    fake.fail_next(DeliveryError("telegram sendMessage: HTTP 502", retryable=True))
    d = Dispatcher([fake], DispatchSettings(dedupe_window_s=0), clock=t.clock, sleep=stuck)
    await d.start()
    d.notify(note("a"))
    d.notify(note("b"))
    await eventually(lambda: stuck.waits == [1.0])  # "a" waits to retry, "b" behind it
    try:
        assert d.report() == {
            "fake": ChannelReport(queued=2, sent=0, failed=0, dropped=0, retries=1, failing=1, last_error="telegram sendMessage: HTTP 502")
        }
        assert not d.report()["fake"].ok
    finally:
        await d.aclose(drain_s=0, final_s=0)


async def test_report_is_ok_again_once_a_delivery_goes_through() -> None:
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DeliveryError("500", retryable=True), times=2)
    async with dispatcher(fake, t=t) as d:
        d.notify(note("late"))
        await eventually(lambda: d.stats["fake"].sent == 1)
        assert d.report()["fake"] == ChannelReport(queued=0, sent=1, failed=0, dropped=0, retries=2, failing=0, last_error="")


DOWN = DeliveryError("feishu webhook: HTTP 502", retryable=True)
TIMED_OUT = DeliveryError("feishu webhook: TimeoutError", retryable=True, maybe_delivered=True)
LOSS_LIMIT = Notification("Daily loss limit hit", "equity -5.1% today", Severity.CRITICAL, "risk", key="risk:daily_loss_limit:L4")


async def test_a_critical_alert_retries_until_the_channel_recovers() -> None:
    """A loss limit hit during an outage longer than four retries was given up on and never
    said again: a critical message keeps retrying, its backoff capped, until it goes through."""
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DOWN, times=8)
    async with dispatcher(fake, t=t, max_retries=4, max_backoff_s=30.0) as d:
        d.notify(LOSS_LIMIT)
        d.notify(note("behind it"))
        await eventually(lambda: d.stats["fake"].sent == 2)
    assert [n.title for n in fake.sent] == ["Daily loss limit hit", "Title"]
    assert fake.sent[0].text == "equity -5.1% today"
    assert t.slept == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert d.stats["fake"].failed == 0


async def test_a_critical_alert_still_gives_up_on_a_refusal() -> None:
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DeliveryError("feishu webhook: HTTP 400", retryable=False))
    async with dispatcher(fake, t=t) as d:
        d.notify(LOSS_LIMIT)
        await eventually(lambda: d.stats["fake"].failed == 1)
    assert fake.attempts == 1


async def test_a_message_given_up_is_named_in_the_next_one_and_shown_meanwhile() -> None:
    """A message given up on vanished: the next one went out with no word of it, and /health read
    the channel as fine (failing 0, no error). It is now said, with its title, in the next
    message, shown as unreported until then, and the latest loss stays visible after."""
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DOWN, times=2)
    async with dispatcher(fake, t=t, max_retries=1) as d:
        d.notify(Notification("Opened FOO/USDT", "100 @ 1", Severity.WARNING, "position"))
        await eventually(lambda: d.stats["fake"].failed == 1)
        before = d.report()["fake"]
        assert (before.unreported, before.ok) == (1, False)
        assert before.last_lost == "⚠️ Opened FOO/USDT: given up after 2 attempt(s): feishu webhook: HTTP 502"
        t.now += 5
        d.notify(Notification("Closed FOO/USDT", "PnL +1.00", category="position"))
        await eventually(lambda: d.stats["fake"].sent == 1)
        after = d.report()["fake"]
    assert fake.sent[0].text == "PnL +1.00\n(1 earlier message(s) not delivered, given up: ⚠️ Opened FOO/USDT)"
    assert (after.unreported, after.ok, after.failed) == (0, True, 1)
    assert after.last_lost == before.last_lost
    assert after.last_lost_ago_s == 5.0


async def test_losses_told_in_a_message_that_fails_wait_for_the_next() -> None:
    """The "N dropped" note rode on the next message; when that one failed too, the count was
    gone with it."""
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(DeliveryError("400", retryable=False))
    d = dispatcher(fake, t=t, queue_size=1, dedupe_window_s=0)
    d.notify(note("dropped"))
    d.notify(Notification("Refused", "x"))  # drops the first; carries the note, and fails
    await d.start()
    await eventually(lambda: d.stats["fake"].failed == 1)
    d.notify(note("told"))
    await eventually(lambda: d.stats["fake"].sent == 1)
    await d.aclose()
    assert fake.sent[0].text == (
        "told\n(1 earlier message(s) dropped: queue full)\n(1 earlier message(s) not delivered, given up: Refused)"
    )


async def test_a_timeout_is_retried_once_then_said_unconfirmed() -> None:
    """A slow endpoint (answering after 30 s, past the 10 s timeout) got the same message five
    times while the queue behind it waited: after a timeout the message may have arrived, so it
    is retried once, even a critical one, then given up as unconfirmed, and the next message
    says so."""
    t, fake = FakeTime(), FakeNotifier()
    fake.fail_next(TIMED_OUT, times=2)
    async with dispatcher(fake, t=t, max_retries=4) as d:
        d.notify(LOSS_LIMIT)
        d.notify(note("next"))
        await eventually(lambda: d.stats["fake"].sent == 1)
    assert fake.attempts == 3
    assert t.slept == [1.0]
    assert fake.sent[0].text == (
        "next\n(1 earlier message(s) unconfirmed, the channel timed out and they may have arrived: "
        "🚨 Daily loss limit hit)"
    )
    assert d.stats["fake"].failed == 1
    assert d.report()["fake"].last_lost.startswith("🚨 Daily loss limit hit: unconfirmed, timed out after 2 attempt(s)")


async def test_a_message_in_hand_a_minute_is_not_retried_after_a_timeout() -> None:
    """However long the configured timeout, one message never holds the queue past a minute
    by timing out again and again."""
    t = FakeTime()

    class Slow(FakeNotifier):
        async def send(self, note: Notification) -> None:
            if note.text == "slow":
                self.attempts += 1
                t.now += 61.0  # the attempt's timeout ran out
                raise TIMED_OUT
            await super().send(note)

    slow = Slow()
    async with dispatcher(slow, t=t) as d:
        d.notify(note("slow"))
        d.notify(note("waiting"))
        await eventually(lambda: d.stats["fake"].sent == 1)
    assert slow.attempts == 2  # "slow" once, then "waiting"
    assert t.slept == []


async def test_close_sends_engine_stopped_first_with_the_rest_in_it() -> None:
    """At close a slow channel had time for one attempt, and it went to the oldest urgent
    message ("Engine started"), not "Engine stopped". The urgent messages left now go in one
    message headed by the newest, at the highest severity among them."""
    fake = FakeNotifier()
    d = Dispatcher([fake], DispatchSettings(dedupe_window_s=0))  # not started: all still queued at close
    d.notify(Notification("Engine started", "run r1 (SIM)", category="system"))
    d.notify(note("routine"))
    d.notify(LOSS_LIMIT)
    d.notify(Notification("Losing streak", "5 losing trades", Severity.WARNING, "system"))
    d.notify(STOPPED)
    await d.aclose(drain_s=0)
    assert fake.attempts == 1
    [last] = fake.sent
    assert (last.title, last.severity) == ("Engine stopped", Severity.CRITICAL)
    assert last.text == (
        "run r1: shutdown\n"
        "Also not sent before shutdown:\n"
        "🚨 Daily loss limit hit\nequity -5.1% today\n"
        "⚠️ Losing streak\n5 losing trades\n"
        "Engine started\nrun r1 (SIM)\n"
        "(1 routine message(s) left unsent at shutdown)"
    )
    assert (d.stats["fake"].sent, d.stats["fake"].failed) == (4, 1)


# -- what becomes a notification --------------------------------------------------------------

POS = {"quantity": 100.0, "entry_price": 0.3, "realised_pnl": 0.0, "position_trace_id": "abcd"}


@pytest.mark.parametrize(
    ("kind", "payload", "title", "text", "severity"),
    [
        ("position_update", {**POS, "action": "open", "reason": "hot"}, "Opened DOGE/USDT", "100 @ 0.3 ≈ 30.00 (hot)", Severity.INFO),
        ("position_update", {**POS, "action": "close", "quantity": 0.0, "realised_pnl": 1.0, "total_realised_pnl": 4.5, "reason": "take_profit"}, "Closed DOGE/USDT", "PnL +1.00, position +4.50 in all (take_profit)", Severity.INFO),
        ("position_update", {**POS, "action": "close", "quantity": 0.0, "realised_pnl": 4.5, "total_realised_pnl": 4.5, "reason": "take_profit"}, "Closed DOGE/USDT", "PnL +4.50 (take_profit)", Severity.INFO),
        ("position_update", {**POS, "action": "close", "quantity": 0.0, "realised_pnl": -2.25, "reason": "stop"}, "Closed DOGE/USDT", "PnL -2.25 (stop)", Severity.INFO),
        ("position_update", {**POS, "action": "partial_close", "quantity": 40.0, "realised_pnl": 1.5, "reason": "tp1"}, "Partly closed DOGE/USDT", "PnL +1.50, 40 left (tp1)", Severity.INFO),
        ("position_update", {**POS, "action": "partial_close", "quantity": 20.0, "realised_pnl": 1.5, "total_realised_pnl": 3.0, "reason": "tp2"}, "Partly closed DOGE/USDT", "PnL +1.50, position +3.00 so far, 20 left (tp2)", Severity.INFO),
        ("risk_event", {"code": "daily_loss_limit", "level": "L3", "detail": "daily loss 5% > 4%"}, "Daily loss limit hit", "daily loss 5% > 4%", Severity.CRITICAL),
        ("risk_event", {"code": "consecutive_losses", "level": "L1", "detail": "5 losing trades"}, "Losing streak: entries cooling down", "5 losing trades", Severity.WARNING),
        ("risk_event", {"code": "risk_level", "level": "L5", "detail": "drawdown 12%"}, "Risk level L5: engine blocked", "drawdown 12%", Severity.CRITICAL),
        ("state_change", {"from": "tradeable", "to": "blocked", "reasons": ["data_stale", "risk_l5"]}, "Engine tradeable → blocked", "data_stale; risk_l5", Severity.CRITICAL),
        ("state_change", {"from": "blocked", "to": "tradeable", "reasons": []}, "Engine blocked → tradeable", "", Severity.INFO),
        ("state_change", {"from": "tradeable", "to": "blocked", "reasons": ["data_stale", "journal"], "details": [
            {"code": "data_stale", "detail": "market data stale", "value": 301.0, "threshold": 300.0},
            {"code": "journal", "detail": "journal write failed: disk is full; events saved to j.unwritten-9.jsonl", "value": None, "threshold": None},
        ]}, "Engine tradeable → blocked", "data_stale; journal: journal write failed: disk is full; events saved to j.unwritten-9.jsonl", Severity.CRITICAL),
        ("command", {"command": "close_all", "origin": "telegram:owner"}, "Command: close-all", "from telegram:owner", Severity.INFO),
        ("run_stop", {"run_id": "r1", "reason": "shutdown"}, "Engine stopped", "run r1: shutdown", Severity.WARNING),
        ("run_stop", {"run_id": "r1", "reason": "journal error: disk full"}, "Engine stopped", "run r1: journal error: disk full", Severity.CRITICAL),
        ("run_start", {"run_id": "r1", "config_hash": "c", "mode": "SIM"}, "Engine started", "run r1 (SIM)", Severity.INFO),
        ("run_start", {"run_id": "r1", "config_hash": "c", "mode": "SIM", "model_status": "no hot_lgbm_1m model in x; rules alone", "model_failed": False, "model_warnings": []}, "Engine started", "run r1 (SIM)", Severity.INFO),
        ("run_start", {"run_id": "r1", "config_hash": "c", "mode": "LIVE", "model_status": "REFUSED m@v1 refused: model_sha256 differs; the engine runs on its rules alone", "model_failed": True, "model_warnings": []}, "Engine started", "run r1 (LIVE)\nmodel: REFUSED m@v1 refused: model_sha256 differs; the engine runs on its rules alone", Severity.WARNING),
        ("run_start", {"run_id": "r1", "config_hash": "c", "mode": "SIM", "model_status": "m@v1 in production", "model_failed": False, "model_warnings": ["ml_min_score above every score"]}, "Engine started", "run r1 (SIM)\nmodel: ml_min_score above every score", Severity.WARNING),
        ("order_result", {"client_order_id": "hc-1", "status": "unknown", "error_class": "unknown", "error": "timeout"}, "Order outcome unknown: DOGE/USDT", "hc-1: timeout; reconciling", Severity.WARNING),
    ],
    ids=["open", "close-after-partials", "close-win", "close-loss", "partial", "second-partial", "daily-loss", "streak", "l5", "to-blocked", "recovered", "journal-failed", "command", "run-stop", "run-stop-unplanned", "run-start", "run-start-no-model", "run-start-model-refused", "run-start-model-warned", "order-unknown"],
)  # fmt: skip
def test_events_that_are_news(kind: str, payload: dict[str, Any], title: str, text: str, severity: Severity) -> None:
    got = notification_for(kind, payload, "DOGE/USDT")
    assert got is not None
    assert (got.title, got.text, got.severity) == (title, text, severity)


def test_a_losing_streak_message_says_when_entries_resume_in_utc() -> None:
    """The risk manager's own event, through the table: the owner read "no new entries until
    1618621860000 (epoch ms)"."""
    risk = RiskManager(RiskSettings())
    fired = [e for _ in range(3) for e in risk.record_trade(-1.0, 1_618_618_260_000)]  # 00:11 UTC
    got = notification_for("risk_event", fired[0].payload())
    assert got is not None
    assert got.text == "3 losing trades in a row; no new entries until 2021-04-17 01:11:00 UTC (in 1h00)"
    assert "epoch" not in got.text


def test_a_positions_close_messages_add_up_to_what_it_made() -> None:
    """A take-profit tier made +2.43 and the final close +4.98: the close used to say the
    position's total, "+7.41", so the two messages read as +9.84 made. Each message's PnL is
    now its own close's, and the final one adds the total."""
    ev = {**POS, "position_trace_id": "dzz", "reason": "take_profit"}
    partial = notification_for("position_update", {**ev, "action": "partial_close", "quantity": 6102.0, "realised_pnl": 2.43, "total_realised_pnl": 2.43}, "DZZ/USDT")
    close = notification_for("position_update", {**ev, "action": "close", "quantity": 0.0, "realised_pnl": 4.98, "total_realised_pnl": 7.41}, "DZZ/USDT")
    assert partial is not None and close is not None
    assert partial.text == "PnL +2.43, 6102 left (take_profit)"
    assert close.text == "PnL +4.98, position +7.41 in all (take_profit)"


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("position_update", {**POS, "action": "add"}),
        ("risk_event", {"code": "risk_level", "level": "L3", "detail": "x"}),
        ("risk_event", {"code": "daily_reset", "level": "L1", "detail": "x"}),
        ("order_result", {"client_order_id": "hc-1", "status": "filled", "error_class": None}),
        ("candidate_snapshot", {"heat": 80}),
        ("fill", {"side": "buy"}),
    ],
    ids=["add", "l3", "daily-reset", "filled", "candidate", "fill"],
)
def test_events_that_are_not_news(kind: str, payload: dict[str, Any]) -> None:
    assert notification_for(kind, payload, "DOGE/USDT") is None


def test_a_close_that_writes_off_dust_says_the_sell_that_ended_the_position() -> None:
    """Audit: a take-profit trade's "Closed" message said "(dust)": the position's last update is
    the write-off of the crumbs its last sell left, with reason "dust". The message gives the
    last sell's reason, as `hotcoin report` and the backtest do; a position that was all dust
    still closes "(dust)"."""
    notes: list[Notification] = []

    class Sink:
        def notify(self, n: Notification) -> bool:
            notes.append(n)
            return True

    bridge = NotificationBridge(Sink())
    pon = {**POS, "position_trace_id": "a585"}
    bridge.on_event("position_update", {**pon, "action": "partial_close", "quantity": 0.1, "realised_pnl": 2.45, "total_realised_pnl": 3.67, "reason": "take_profit"}, "PON/USDT")
    bridge.on_event("position_update", {**pon, "action": "close", "quantity": 0.0, "realised_pnl": -0.0026, "total_realised_pnl": 3.67, "reason": "dust"}, "PON/USDT")
    crumbs = {**POS, "position_trace_id": "z9", "action": "close", "quantity": 0.0, "realised_pnl": -0.01, "reason": "dust"}
    bridge.on_event("position_update", crumbs, "DUST/USDT")
    assert [(n.title, n.text) for n in notes] == [
        ("Partly closed PON/USDT", "PnL +2.45, position +3.67 so far, 0.1 left (take_profit)"),
        ("Closed PON/USDT", "PnL -0.00, position +3.67 in all (take_profit; the dust it left written off)"),
        ("Closed DUST/USDT", "PnL -0.01 (dust)"),
    ]


def test_bridge_queues_news_and_survives_malformed_payloads() -> None:
    class Sink:
        def __init__(self) -> None:
            self.notes: list[Notification] = []

        def notify(self, n: Notification) -> bool:
            self.notes.append(n)
            return True

    sink = Sink()
    bridge = NotificationBridge(sink)
    assert bridge.on_event("position_update", {**POS, "action": "open"}, "DOGE/USDT")
    assert not bridge.on_event("candidate_snapshot", {}, "DOGE/USDT")
    assert bridge.on_event("state_change", {"reasons": object()})  # odd payload: no crash, still a message
    assert not bridge.on_event("position_update", None, "X")  # type: ignore[arg-type]
    assert bridge.anomaly("Journal behind", "120000 events unwritten", key="journal")
    assert [n.title for n in sink.notes] == ["Opened DOGE/USDT", "Engine ? → ?", "Journal behind"]


# -- configuration ----------------------------------------------------------------------------


def test_build_notifier_from_config(tmp_path: Path) -> None:
    assert build_notifier(load_config(env={}).config) is None
    env = {
        "HOTCOIN_NOTIFY__TELEGRAM__BOT_TOKEN": TOKEN,
        "HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": str(CHAT),
        "HOTCOIN_NOTIFY__FEISHU__WEBHOOK_URL": "http://127.0.0.1:9/feishu/hook",
        "HOTCOIN_NOTIFY__MAX_PER_MINUTE": "7",
    }
    config = load_config(env=env).config
    d = build_notifier(config)
    assert d is not None
    assert sorted(d.stats) == ["feishu", "telegram"]
    assert d.settings.max_per_minute == 7
    assert TOKEN not in str(config.redacted())


def test_notify_secrets_are_refused_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[notify.telegram]\nbot_token = "123:abc"\n')
    with pytest.raises(ConfigError, match=r"notify\.telegram\.bot_token is a secret"):
        load_config(path, env={})


async def test_state_changes_are_never_deduplicated() -> None:
    t, fake = FakeTime(), FakeNotifier()
    flaps = [("tradeable", "degraded"), ("degraded", "tradeable"), ("tradeable", "degraded")]
    async with dispatcher(fake, t=t) as d:
        bridge = NotificationBridge(d)
        for old, new in flaps:
            assert bridge.on_event("state_change", {"from": old, "to": new, "reasons": ["data_stale"] if new == "degraded" else []})
        await eventually(lambda: len(fake.sent) == 3)
    assert fake.sent[-1].title == "Engine tradeable → degraded"  # the owner's last word is the truth


async def test_a_full_queue_drops_routine_messages_before_critical_ones() -> None:
    fake = FakeNotifier()
    d = Dispatcher([fake], DispatchSettings(queue_size=3, dedupe_window_s=0))  # not started: nothing drains
    d.notify(note("routine 1"))
    d.notify(note("loss limit", severity=Severity.CRITICAL))
    d.notify(note("routine 2"))
    d.notify(note("routine 3"))  # drops routine 1
    d.notify(note("routine 4"))  # drops routine 2, not the loss limit
    await d.start()
    await d.aclose()
    assert [n.text.split("\n")[0] for n in fake.sent] == ["loss limit", "routine 3", "routine 4"]
    assert d.stats["fake"].dropped == 2
