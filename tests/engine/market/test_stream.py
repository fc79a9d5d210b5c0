"""ResilientStream with scripted connections and a manual clock: every path, no real waiting."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import ccxt
import pytest

from engine.errors import (
    ExchangeAuthError,
    MarketDataError,
    RetryableOrderError,
)
from engine.market.backoff import RateLimitBackoff, ReconnectBackoff
from engine.market.fake import ManualClock
from engine.market.gateway import GatewayNotice, NoticeKind
from engine.market.stream import ResilientStream
from tests.kit.waiting import eventually


class FakeConn:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def push(self, *items: Any) -> None:
        for item in items:
            self.queue.put_nowait(item)

    async def next(self) -> Any:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        self.closed = True


class Dialer:
    """Hands out pre-made connections in order (so tests can script them before they exist)."""

    def __init__(self, count: int) -> None:
        self.conns = [FakeConn() for _ in range(count)]
        self.made = 0

    def __call__(self) -> FakeConn:
        conn = self.conns[self.made]
        self.made += 1
        return conn


def make_stream(dialer: Dialer, clock: ManualClock, **kwargs: Any) -> tuple[ResilientStream[Any], list[GatewayNotice]]:
    notices: list[GatewayNotice] = []
    stream: ResilientStream[Any] = ResilientStream(
        "s",
        dialer,
        clock=clock,
        backoff=ReconnectBackoff(base_s=0.5, cap_s=8, rng=random.Random(3)),
        rate=kwargs.pop("rate", RateLimitBackoff()),
        max_age_ms=kwargs.pop("max_age_ms", 0),
        notify=notices.append,
        **kwargs,
    )
    return stream, notices


async def test_a_drop_reconnects_after_backoff_and_data_resumes() -> None:
    dialer = Dialer(2)
    dialer.conns[0].push(1, ccxt.NetworkError("closing code 1006"))
    dialer.conns[1].push(2)
    clock = ManualClock(auto=True)
    stream, notices = make_stream(dialer, clock)
    assert await stream.next() == 1
    assert await stream.next() == 2
    assert dialer.conns[0].closed
    assert stream.health.reconnects == 1
    assert stream.health.connected
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert [n.kind for n in notices] == [NoticeKind.RECONNECT, NoticeKind.RECOVERED]
    assert notices[0].error_class == "retryable"
    assert notices[1].attempts == 1 and notices[1].down_ms is not None and notices[1].down_ms >= 250
    assert "1006" in (stream.health.last_error or "")


async def test_an_outage_of_several_failed_dials_recovers_with_one_notice_saying_how_long_and_how_many() -> None:
    """Every failed redial is a RECONNECT (the counters stay exact); the outage's end is said
    once, by RECOVERED, timed from the first drop, so a log can stay quiet in between."""
    dialer = Dialer(4)
    dialer.conns[0].push(1, ccxt.NetworkError("closing code 1001"))
    dialer.conns[1].push(ccxt.NetworkError("Cannot connect"))
    dialer.conns[2].push(ccxt.NetworkError("Cannot connect"))
    dialer.conns[3].push(2, 3)
    clock = ManualClock(auto=True)
    stream, notices = make_stream(dialer, clock)
    assert [await stream.next() for _ in range(3)] == [1, 2, 3]
    kinds = [n.kind for n in notices]
    assert kinds == [NoticeKind.RECONNECT] * 3 + [NoticeKind.RECOVERED]
    recovered = notices[-1]
    assert recovered.attempts == 3 == stream.health.reconnects
    assert recovered.down_ms is not None and recovered.down_ms >= int(sum(clock.sleeps) * 1000) - 1


@pytest.mark.parametrize("where", ["message", "subscribe"])
async def test_a_socket_reset_ccxt_lets_through_is_a_drop_redialled_after_backoff(where: str) -> None:
    """aiohttp's `ClientConnectionResetError` ("Cannot write to closing transport"), raised by
    ccxt unwrapped when a subscribe goes out as the server closes: it was raised to the caller
    as an unknown order error, and the user stream was left unsubscribed for up to a minute."""
    reset = aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    dialer = Dialer(2)
    dialer.conns[1].push("ok")
    subscribed: list[Any] = []

    async def prepare(conn: Any) -> None:
        subscribed.append(conn)
        if where == "subscribe" and len(subscribed) == 1:
            raise reset

    if where == "message":
        dialer.conns[0].push(reset)
    clock = ManualClock(auto=True)
    stream, notices = make_stream(dialer, clock, prepare=prepare)
    assert await stream.next() == "ok"
    assert [n.kind for n in notices] == [NoticeKind.RECONNECT, NoticeKind.RECOVERED] and stream.health.reconnects == 1
    assert 0.25 <= clock.sleeps[0] <= 0.5 and dialer.made == 2


async def test_down_since_dates_from_the_first_drop_and_clears_on_reconnect() -> None:
    """The state machine's "websocket down" is measured from here: the drop, kept through
    redials that fail, not the last message (a stream can go quiet long before it drops)."""
    dialer = Dialer(3)
    dialer.conns[0].push(1)
    clock = ManualClock()
    stream, _ = make_stream(dialer, clock)
    assert await stream.next() == 1
    assert stream.health.down_since_ms == 0
    clock.advance(100)  # connected and silent: not down
    dialer.conns[0].push(ccxt.NetworkError("closing code 1006"))
    waiting = asyncio.ensure_future(stream.next())
    await eventually(lambda: stream.health.reconnects == 1)
    dropped_at = clock.now_ms()
    assert not stream.health.connected and stream.health.down_since_ms == dropped_at
    dialer.conns[1].push(ccxt.RequestTimeout("dial timed out"))
    clock.advance(1)
    await eventually(lambda: stream.health.reconnects == 2)
    assert stream.health.down_since_ms == dropped_at  # a failed redial does not restart the outage
    dialer.conns[2].push(2)
    clock.advance(2)
    assert await waiting == 2
    assert stream.health.connected and stream.health.down_since_ms == 0
    assert stream.health.snapshot().down_since_ms == 0


async def test_repeated_drops_back_off_exponentially_and_reset_after_a_message() -> None:
    dialer = Dialer(5)
    for conn in dialer.conns[:3]:
        conn.push(ccxt.RequestTimeout("ping-pong keepalive missing on time"))
    dialer.conns[3].push(1, ccxt.NetworkError("x"))
    dialer.conns[4].push(2)
    clock = ManualClock(auto=True)
    stream, _ = make_stream(dialer, clock)
    assert await stream.next() == 1
    assert await stream.next() == 2
    ceilings = [0.5, 1, 2, 0.5]
    assert all(c / 2 <= s <= c for s, c in zip(clock.sleeps, ceilings, strict=True))
    assert stream.health.reconnects == 4


async def test_rate_limit_silence_is_waited_out_with_retry_after_as_floor() -> None:
    dialer = Dialer(2)
    err = ccxt.DDoSProtection("429")
    err.retry_after_s = 100.0
    dialer.conns[0].push(err)
    dialer.conns[1].push("ok")
    clock = ManualClock()
    rate = RateLimitBackoff()
    stream, notices = make_stream(dialer, clock, rate=rate)
    task = asyncio.ensure_future(stream.next())
    await eventually(lambda: clock.sleepers == 1)
    assert clock.sleeps == [100.0]
    assert stream.health.snapshot(rate).rate_limited_until_ms == clock.now_ms() + 100_000
    assert notices[0].kind is NoticeKind.RATE_LIMITED and notices[0].delay_s == 100.0
    clock.advance(99)
    await asyncio.sleep(0)
    assert not task.done() and dialer.made == 1
    clock.advance(1)
    assert await task == "ok"


@pytest.mark.parametrize(
    "klass", [ccxt.AuthenticationError, ccxt.DDoSProtection], ids=["auth", "-2015-as-ddos-after-a-good-call"]
)
async def test_a_non_network_error_is_raised_classified_and_the_next_call_redials(klass: type[Exception]) -> None:
    dialer = Dialer(2)
    dialer.conns[0].push(klass('binance {"code":-2015,"msg":"Invalid API-key"}'))
    dialer.conns[1].push("ok")
    rate = RateLimitBackoff()
    stream, notices = make_stream(dialer, ManualClock(auto=True), rate=rate)
    with pytest.raises(ExchangeAuthError, match="watch s") as caught:
        await stream.next()
    assert caught.value.code == -2015
    assert rate.strikes == 0 and not notices  # a refused key is no rate limit: nothing silenced
    await eventually(lambda: dialer.conns[0].closed)  # closed in the background
    assert await stream.next() == "ok"


async def test_bad_data_is_raised_but_keeps_the_connection() -> None:
    dialer = Dialer(1)
    dialer.conns[0].push(MarketDataError("NaN price"), "ok")
    stream, _ = make_stream(dialer, ManualClock(auto=True))
    with pytest.raises(MarketDataError):
        await stream.next()
    assert await stream.next() == "ok"
    assert dialer.made == 1 and stream.health.reconnects == 0


async def test_after_a_gap_it_resubscribes_first_then_rechecks_and_delivers_the_recheck() -> None:
    dialer = Dialer(2)
    dialer.conns[0].push("e1", ccxt.NetworkError("drop"))
    dialer.conns[1].push("e2")
    order: list[str] = []

    async def prepare(conn: Any) -> None:
        order.append(f"prepare conn{dialer.conns.index(conn)}")

    async def on_gap(gap_ms: int) -> str:
        order.append(f"recheck after {gap_ms} ms")
        return "resync"

    clock = ManualClock(auto=True)
    stream, _ = make_stream(dialer, clock, prepare=prepare, on_gap=on_gap)
    assert await stream.next() == "e1"
    assert await stream.next() == "resync"
    gap = int(clock.sleeps[0] * 1000)
    assert order == ["prepare conn0", "prepare conn1", f"recheck after {gap} ms"]
    assert await stream.next() == "e2"


async def test_a_gap_with_nothing_changed_just_waits_for_data() -> None:
    dialer = Dialer(2)
    dialer.conns[0].push(ccxt.NetworkError("drop"))
    dialer.conns[1].push("e2")

    async def on_gap(gap_ms: int) -> None:
        return None

    stream, _ = make_stream(dialer, ManualClock(auto=True), on_gap=on_gap)
    assert await stream.next() == "e2"


async def test_a_failed_recheck_is_raised_and_retried_on_the_next_call() -> None:
    dialer = Dialer(2)
    dialer.conns[0].push(ccxt.NetworkError("drop"))
    attempts: list[int] = []

    async def on_gap(gap_ms: int) -> str:
        attempts.append(gap_ms)
        if len(attempts) == 1:
            raise RetryableOrderError("rest down")
        return "resync"

    stream, _ = make_stream(dialer, ManualClock(auto=True), on_gap=on_gap)
    with pytest.raises(RetryableOrderError):
        await stream.next()
    assert await stream.next() == "resync"
    assert dialer.made == 2


async def test_planned_rotation_is_make_before_break() -> None:
    dialer = Dialer(2)
    old, new = dialer.conns
    old.push(1)
    clock = ManualClock()
    stream, notices = make_stream(dialer, clock, max_age_ms=1000)
    assert await stream.next() == 1
    clock.advance(2)
    old.push(2)
    assert await stream.next() == 2  # the old connection keeps delivering while the new one opens
    assert dialer.made == 2 and not old.closed
    new.push(10)
    assert await stream.next() == 10
    await eventually(lambda: old.closed)
    assert not new.closed
    assert stream.health.rotations == 1 and stream.health.reconnects == 0
    assert stream.health.connected_since_ms == clock.now_ms()
    assert [n.kind for n in notices] == [NoticeKind.ROTATED]
    new.push(11)
    assert await stream.next() == 11


async def test_a_message_the_old_connection_finished_at_the_switch_is_not_lost() -> None:
    dialer = Dialer(2)
    old, new = dialer.conns
    old.push(1)
    clock = ManualClock()
    stream, _ = make_stream(dialer, clock, max_age_ms=1000)
    assert await stream.next() == 1
    clock.advance(2)
    waiting = asyncio.ensure_future(stream.next())
    await asyncio.sleep(0)
    old.push(2)
    new.push(10)
    results = [await waiting, await stream.next()]
    assert sorted(results) == [2, 10]


async def test_a_failed_rotation_keeps_the_old_connection() -> None:
    dialer = Dialer(3)
    old, bad, _ = dialer.conns
    old.push(1)
    clock = ManualClock()
    stream, _ = make_stream(dialer, clock, max_age_ms=1000)
    assert await stream.next() == 1
    clock.advance(2)
    bad.push(ccxt.NetworkError("refused"))
    waiting = asyncio.ensure_future(stream.next())
    await eventually(lambda: bad.closed)
    old.push(2)
    assert await waiting == 2
    assert not old.closed and stream.health.rotations == 0


async def test_close_closes_everything_and_refuses_further_use() -> None:
    dialer = Dialer(2)
    clock = ManualClock()
    dialer.conns[0].push(1)
    stream, _ = make_stream(dialer, clock, max_age_ms=1000)
    assert await stream.next() == 1
    clock.advance(2)
    pending = asyncio.ensure_future(stream.next())
    await eventually(lambda: dialer.made == 2)
    await stream.close()
    assert all(c.closed for c in dialer.conns)
    with pytest.raises(RuntimeError, match="closed while waiting"):
        await pending
    with pytest.raises(RuntimeError, match="closed"):
        await stream.next()


async def test_the_watchdog_turns_silence_into_a_reconnect() -> None:
    dialer = Dialer(2)
    dialer.conns[0].push(1)
    clock = ManualClock()
    stream, notices = make_stream(dialer, clock, stale_s=30, stale_wall_floor_s=0.0)
    assert await stream.next() == 1
    waiting = asyncio.ensure_future(stream.next())
    await eventually(lambda: clock.sleepers == 1)
    clock.advance(29)
    await asyncio.sleep(0)
    assert dialer.made == 1
    clock.advance(1)
    await eventually(lambda: stream.health.reconnects == 1)
    assert dialer.conns[0].closed
    dialer.conns[1].push(2)
    await eventually(lambda: clock.sleepers >= 1)
    clock.advance(1)
    assert await waiting == 2
    assert notices[0].kind is NoticeKind.RECONNECT


async def test_the_watchdog_waits_a_wall_time_floor_however_fast_the_clock_runs() -> None:
    """A simulated exchange at x300 makes 30 s of its time 0.1 s of ours: a dial or a busy
    event loop takes longer than that, and without the floor every connection would be
    redialled before its first message."""
    dialer = Dialer(2)
    clock = ManualClock()
    stream, _ = make_stream(dialer, clock, stale_s=30, stale_wall_floor_s=0.3)
    waiting = asyncio.ensure_future(stream.next())
    await eventually(lambda: clock.sleepers == 1)
    clock.advance(60)  # the exchange's 30 s are long gone
    await asyncio.sleep(0.1)
    assert dialer.made == 1 and stream.health.reconnects == 0
    dialer.conns[0].push(1)
    assert await waiting == 1
    waiting = asyncio.ensure_future(stream.next())
    await eventually(lambda: clock.sleepers == 1)
    clock.advance(30)
    await eventually(lambda: stream.health.reconnects == 1)  # after the floor, silence is a drop
    waiting.cancel()
    await stream.close()
