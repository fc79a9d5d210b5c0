"""One subscription that survives its connection: reconnect, rate limits, rotation, gap re-checks.

ccxt.pro does not reconnect in the background: a drop raises `NetworkError` on the waiting
`watch_*` call and the messages of the gap are lost. `ResilientStream.next()` hides that:

- **Drop** (any `ccxt.NetworkError`, incl. a keep-alive timeout on a half-open socket): the
  connection is closed and replaced after `ReconnectBackoff` (exponential, jittered), the
  reconnect is counted and announced (`NoticeKind.RECONNECT`), and `next()` carries on.
  Once live again (a message, or a confirmed subscription) the stream announces its recovery
  once (`NoticeKind.RECOVERED`: how long it was down, how many redials it took), so a reader
  of the notices sees the outage end without watching `health()`.
- **HTTP 429/418** (`DDoSProtection`, `RateLimitExceeded`): nothing is dialled until the shared
  `RateLimitBackoff` silence ends (60 -> 120 -> 240 -> 480 s, Retry-After a floor). A -2015
  that ccxt raises as `DDoSProtection` is a refused key, not a rate limit: raised, as below.
- **Gap re-check**: after a drop, a stream with `on_gap` (the user-data streams) is first
  re-subscribed (`prepare`, which returns once the exchange confirmed), and only then asks
  REST what changed, so no event can fall between the REST snapshot and the new stream.
  What `on_gap` returns is delivered as the next result.
- **Rotation** (`max_age_ms` > 0): Binance closes every connection at 24 h. After
  `max_age_ms` (a timer, so an idle stream rotates too) a second connection is opened while
  the first keeps delivering; once the new one is live (its subscription confirmed by
  `prepare`, or else its first message) the old one is closed: make-before-break, no gap.
  A message the old connection completed in the same instant is queued, not lost.
- **Silence** (`stale_s` > 0, for streams that push on a schedule): no message for that long
  counts as a drop. ccxt can stall without raising (an exception in its receive callback
  ends its receive loop), and keep-alive alone does not always notice. `stale_s` is read on
  the `Clock` (the exchange's seconds), but a dial, a handshake or a busy event loop take
  wall time whatever the exchange's pace: the watchdog also waits `STALE_WALL_FLOOR_S` of
  wall time, or a simulated exchange at x300 (30 s = 0.1 s of wall time) on a loaded box
  would redial every connection before its first message, forever.
- Any other error (bad keys, -2015 included, subscription refused) is raised as an `OrderError` subclass from
  `engine.market.errors`; the next `next()` starts a fresh connection.

The connection is anything with `next()` and `close()`: a ccxt.pro instance bound to one
`watch_*` method, or the raw fast ticker reader. Time and sleeps come from the `Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import ccxt

from engine.errors import ErrorClass, MarketDataError
from engine.market.backoff import Clock, RateLimitBackoff, ReconnectBackoff
from engine.market.ccxt_client import retry_after_of
from engine.market.errors import classify, is_rate_limit, to_order_error
from engine.market.gateway import ExchangeFault, GatewayNotice, NoticeKind, NoticeSink, StreamHealth

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


_SUBSCRIBED = object()  # a replacement connection confirmed its subscription (no data yet)


class Connection(Protocol[T_co]):
    """One live subscription: `next()` returns the next message's data, `close()` ends it."""

    async def next(self) -> T_co: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class HealthState:
    """Mutable counterpart of `StreamHealth`, owned by one stream (or the REST side)."""

    stream: str
    connected: bool = False
    last_message_ms: int = 0
    reconnects: int = 0
    rotations: int = 0
    last_error: str | None = None
    last_error_ms: int = 0
    rate_limited_until_ms: int = 0
    connected_since_ms: int = 0
    down_since_ms: int = 0
    fault: ExchangeFault | None = None
    clock_offset_ms: int | None = None

    def snapshot(self, rate: RateLimitBackoff | None = None) -> StreamHealth:
        until = max(self.rate_limited_until_ms, rate.until_ms if rate else 0)
        return StreamHealth(
            stream=self.stream,
            connected=self.connected,
            last_message_ms=self.last_message_ms,
            reconnects=self.reconnects,
            rotations=self.rotations,
            last_error=self.last_error,
            last_error_ms=self.last_error_ms,
            rate_limited_until_ms=until,
            connected_since_ms=self.connected_since_ms,
            down_since_ms=self.down_since_ms,
            fault=self.fault,
            clock_offset_ms=self.clock_offset_ms,
        )

    def up(self, now_ms: int) -> None:
        """A connection is live (a message, a confirmed subscription, a rotation's switch)."""
        self.connected = True
        self.connected_since_ms = self.connected_since_ms or now_ms
        self.down_since_ms = 0

    def down(self, now_ms: int) -> None:
        """The connection is gone; the outage dates from the first drop, not the last redial."""
        self.connected = False
        self.connected_since_ms = 0
        self.down_since_ms = self.down_since_ms or now_ms

    def error(self, exc: BaseException, now_ms: int) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.last_error_ms = now_ms


STALE_WALL_FLOOR_S = 2.0  # the silence watchdog never fires sooner than this in wall time


class ResilientStream(Generic[T]):
    """`next()` returns the stream's next data, whatever happened to the connection meanwhile."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], Connection[T]],
        *,
        clock: Clock,
        backoff: ReconnectBackoff,
        rate: RateLimitBackoff,
        max_age_ms: int,
        notify: NoticeSink | None = None,
        prepare: Callable[[Connection[T]], Awaitable[None]] | None = None,
        on_gap: Callable[[int], Awaitable[T | None]] | None = None,
        stale_s: float = 0.0,
        stale_wall_floor_s: float = STALE_WALL_FLOOR_S,
    ) -> None:
        self.name = name
        self._stale_s = stale_s
        self._stale_wall_floor_s = stale_wall_floor_s
        self._connect = connect
        self._clock = clock
        self._backoff = backoff
        self._rate = rate
        self._max_age_ms = max_age_ms
        self._notify = notify
        self._prepare = prepare
        self._on_gap = on_gap
        self.health = HealthState(name)
        self._conn: Connection[T] | None = None
        self._task: asyncio.Task[T] | None = None
        self._new: Connection[T] | None = None
        self._new_task: asyncio.Task[Any] | None = None
        self._ready: deque[T] = deque()
        self._gap_since_ms: int | None = None
        self._outage_from: int | None = None  # `health.reconnects` when the current outage began
        self._prepared = False
        self._next_rotation_try_ms = 0
        self._closed = False
        self._closing: set[asyncio.Future[None]] = set()

    def connections(self) -> list[Connection[T]]:
        """The live connections: the current one and, mid-rotation, the new one."""
        return [c for c in (self._conn, self._new) if c is not None]

    def _emit(self, kind: NoticeKind, **fields: object) -> None:
        if self._notify is not None:
            self._notify(GatewayNotice(kind=kind, stream=self.name, ts_ms=self._clock.now_ms(), **fields))  # type: ignore[arg-type]

    async def next(self) -> T:
        if self._closed:
            raise RuntimeError(f"stream {self.name} is closed")
        while True:
            if self._ready:
                return self._ready.popleft()
            wait_s = self._rate.remaining_s(self._clock.now_ms())
            if wait_s > 0:
                await self._clock.sleep(wait_s)
                continue
            if self._conn is None:
                self._conn = self._connect()
                self._prepared = False
            if not self._prepared and not await self._subscribe(self._conn):
                continue
            if self._gap_since_ms is not None and self._on_gap is not None:
                result = await self._close_gap(self._conn)
                if result is not None:
                    return result
                continue
            self._maybe_start_rotation()
            if self._task is None:
                self._task = asyncio.ensure_future(self._conn.next())
            waiting: set[asyncio.Future[Any]] = {self._task}
            if self._new_task is not None:
                waiting.add(self._new_task)
            watchdog = self._watchdog()
            rotation = self._timer(self._rotation_due_s()) if self._new is None else None
            waiting.update(t for t in (watchdog, rotation) if t is not None)
            try:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for timer in (watchdog, rotation):
                    if timer is not None and not timer.done():
                        timer.cancel()
            if self._closed:
                raise RuntimeError(f"stream {self.name} was closed while waiting")
            if self._task not in done and (self._new_task is None or self._new_task not in done):
                if watchdog is not None and watchdog in done:
                    await self._on_error(ccxt.RequestTimeout(f"stream {self.name}: no message for {self._stale_s:g} s"))
                continue  # a timer: the watchdog (handled) or a rotation falling due on an idle stream
            if self._new_task is not None and self._new_task in done:
                await self._finish_rotation()
                continue
            task, self._task = self._task, None
            try:
                data = task.result()
            except Exception as exc:
                await self._on_error(exc)
                continue
            self._on_message()
            return data

    def _timer(self, seconds: float | None) -> asyncio.Future[None] | None:
        return asyncio.ensure_future(self._clock.sleep(seconds)) if seconds else None

    def _watchdog(self) -> asyncio.Future[Any] | None:
        """Done once `stale_s` clock seconds and `stale_wall_floor_s` wall seconds have passed."""
        if not self._stale_s:
            return None
        return asyncio.ensure_future(self._silence())

    async def _silence(self) -> None:
        await asyncio.gather(self._clock.sleep(self._stale_s), asyncio.sleep(self._stale_wall_floor_s))

    def _rotation_due_s(self) -> float | None:
        since = self.health.connected_since_ms
        if not since or self._max_age_ms <= 0:
            return None
        due_ms = max(since + self._max_age_ms, self._next_rotation_try_ms)
        return max(0.001, (due_ms - self._clock.now_ms()) / 1000)

    async def _subscribe(self, conn: Connection[T]) -> bool:
        """Run `prepare` on a new connection (subscribe, confirmed); False if it failed."""
        if self._prepare is not None:
            try:
                await self._prepare(conn)
            except Exception as exc:
                await self._on_error(exc)
                return False
            # A confirmed subscription is a live stream even before its first event.
            self._up(self._clock.now_ms())
        self._prepared = True
        return True

    async def _close_gap(self, conn: Connection[T]) -> T | None:
        """With the new subscription up, ask REST what the gap hid; None if nothing changed."""
        assert self._on_gap is not None and self._gap_since_ms is not None
        if self._task is None:
            self._task = asyncio.ensure_future(conn.next())
        gap_ms = max(0, self._clock.now_ms() - self._gap_since_ms)
        result = await self._on_gap(gap_ms)  # raises OrderError if REST fails; the gap stays open
        self._gap_since_ms = None
        return result

    def _on_message(self) -> None:
        now = self._clock.now_ms()
        self._up(now)
        self.health.last_message_ms = now
        self._backoff.reset()

    def _up(self, now: int) -> None:
        """The stream is live; after an outage (a drop or a rate limit), `RECOVERED` says so
        once, with how long it was down and how many redials it took (module docstring)."""
        h = self.health
        down_since = h.down_since_ms
        h.up(now)
        if self._outage_from is None:
            return
        attempts, self._outage_from = h.reconnects - self._outage_from, None
        down_ms = max(0, now - down_since) if down_since else None
        down = "" if down_ms is None else f" after {down_ms / 1000:.0f} s down (by the exchange's clock)"
        self._emit(NoticeKind.RECOVERED, detail=f"live again{down}, {attempts} reconnect(s)", down_ms=down_ms, attempts=attempts)

    def _outage(self) -> None:
        """A drop or a rate limit: the outage `_up` ends starts here, unless one is running."""
        if self._outage_from is None:
            self._outage_from = self.health.reconnects

    async def _drop_connection(self) -> None:
        conn, task = self._conn, self._task
        self._conn, self._task, self._prepared = None, None, False
        self.health.down(self._clock.now_ms())
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(BaseException):
                await task
        if conn is not None:
            # In the background: ccxt's close waits out a TLS grace period (250 ms) that the
            # next connection need not wait for. `close()` collects these.
            closing = asyncio.ensure_future(_quiet_close(conn))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _on_error(self, exc: BaseException) -> None:
        now = self._clock.now_ms()
        h = self.health
        h.error(exc, now)
        if isinstance(exc, MarketDataError):
            raise exc  # one bad message: the connection itself is fine, the caller counts and skips
        if self._gap_since_ms is None:
            self._gap_since_ms = h.last_message_ms or now
        await self._drop_connection()
        if is_rate_limit(exc):
            self._outage()
            wait = self._rate.hit(now, retry_after_of(exc))
            h.rate_limited_until_ms = self._rate.until_ms
            h.reconnects += 1
            self._emit(NoticeKind.RATE_LIMITED, detail=h.last_error or "", delay_s=wait, until_ms=self._rate.until_ms)
            return
        if _is_drop(exc):
            self._outage()
            delay = self._backoff.next_delay()
            h.reconnects += 1
            self._emit(
                NoticeKind.RECONNECT, detail=h.last_error or "", delay_s=delay, error_class=classify(exc).value
            )
            await self._clock.sleep(delay)
            return
        raise to_order_error(exc, operation=f"watch {self.name}") from exc

    def _maybe_start_rotation(self) -> None:
        h = self.health
        now = self._clock.now_ms()
        if (
            self._new is None
            and self._max_age_ms > 0
            and h.connected_since_ms
            and now - h.connected_since_ms >= self._max_age_ms
            and now >= self._next_rotation_try_ms
        ):
            self._new = self._connect()
            self._new_task = asyncio.ensure_future(self._open_replacement(self._new))

    async def _open_replacement(self, conn: Connection[T]) -> Any:
        """The new connection is ready at its confirmed subscription (`prepare`), or else at its
        first message: an idle user-data stream must rotate without waiting for an event."""
        if self._prepare is not None:
            await self._prepare(conn)
            return _SUBSCRIBED
        return await conn.next()

    async def _finish_rotation(self) -> None:
        new, new_task = self._new, self._new_task
        self._new, self._new_task = None, None
        assert new is not None and new_task is not None
        now = self._clock.now_ms()
        try:
            data = new_task.result()
        except Exception as exc:
            # The old connection is still good: keep it, try rotating again after a backoff.
            self.health.error(exc, now)
            self._next_rotation_try_ms = now + int(self._backoff.next_delay() * 1000)
            with contextlib.suppress(Exception):
                await new.close()
            return
        old_task = self._task
        if old_task is not None and old_task.done() and not old_task.cancelled() and old_task.exception() is None:
            self._ready.append(old_task.result())
        await self._drop_connection()
        self._conn, self._prepared = new, True
        self.health.rotations += 1
        self.health.up(now)
        if data is not _SUBSCRIBED:
            self._on_message()
            self._ready.append(data)
        self._emit(NoticeKind.ROTATED, detail=f"after {self._max_age_ms} ms")

    async def close(self) -> None:
        """Close both connections (current and, mid-rotation, the new one); idempotent."""
        self._closed = True
        if self._new_task is not None:
            self._new_task.cancel()
            with contextlib.suppress(BaseException):
                await self._new_task
        if self._new is not None:
            with contextlib.suppress(Exception):
                await self._new.close()
        self._new, self._new_task = None, None
        await self._drop_connection()
        if self._closing:
            await asyncio.gather(*self._closing)


async def _quiet_close(conn: Connection[Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


def _is_drop(exc: BaseException) -> bool:
    """Whether `exc` is the connection going away, to be redialled after the backoff: ccxt's
    retryable network errors, and a socket error ccxt lets through unwrapped (aiohttp's
    `ClientConnectionResetError` "Cannot write to closing transport", raised by a subscribe
    sent as the server closed). That one was raised to the caller as an unknown order error,
    and the engine's user-stream listener waited up to a minute before asking again."""
    if isinstance(exc, ccxt.NetworkError):
        return classify(exc) is ErrorClass.RETRYABLE
    return isinstance(exc, ConnectionError | aiohttp.ClientConnectionError)
