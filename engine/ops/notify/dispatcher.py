"""Deliver notifications without ever making the engine wait for them.

`Dispatcher.notify()` is synchronous and cheap (a few µs): it drops a duplicate (same
`dedupe_key` within the window), appends to each channel's bounded queue and returns. When a
queue is full the oldest routine message is dropped (a critical one only when nothing else is
left), and the next delivered message says how many were lost. One background task per
channel delivers in order, paced to `max_per_minute` (a sliding 60 s window), and retries a
failed delivery that may succeed later (429, 5xx, network) with exponential backoff, or after
exactly the `retry_after` the far end asked for. A channel that is down, slow or rate-limited
delays only its own queue: never the caller, never another channel.

At close the queues get a few seconds at the usual pace; then the urgent messages still waiting
(the engine stopping, a crash, a critical alert) get one attempt each past the rate limit, within
a deadline, and whatever is left, the message a worker had in hand included, is counted lost.

Time is injected (`clock`, `sleep`) so tests drive backoff and pacing without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

from engine.config.sections.notify import NotifySection
from engine.ops.notify.base import DeliveryError, Notification, Notifier, Severity

log = logging.getLogger("hotcoin.notify")

RATE_WINDOW_S = 60.0
DEDUPE_KEYS = 4096  # keys remembered at most; past it the oldest are forgotten early


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    max_per_minute: int = 20
    dedupe_window_s: float = 300.0
    queue_size: int = 200
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 120.0

    @classmethod
    def from_section(cls, section: NotifySection) -> DispatchSettings:
        return cls(
            max_per_minute=section.max_per_minute,
            dedupe_window_s=section.dedupe_window_s,
            queue_size=section.queue_size,
            max_retries=section.max_retries,
            backoff_s=section.backoff_s,
            max_backoff_s=section.max_backoff_s,
        )

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (0-based) when the far end named none."""
        return float(min(self.backoff_s * (2**attempt), self.max_backoff_s))


def urgent(note: Notification) -> bool:
    """Sent at close even past the rate limit: "Engine stopped" (and why) is the one message the
    owner must get, and it comes last, behind whatever the pace was still holding."""
    return note.severity is Severity.CRITICAL or note.category == "system"


@dataclass(slots=True)
class ChannelStats:
    sent: int = 0
    failed: int = 0  # messages given up on (non-retryable, retries exhausted, left at shutdown)
    retries: int = 0
    dropped: int = 0  # oldest messages dropped because the queue was full
    failing: int = 0  # delivery attempts failed in a row; 0 once one goes through
    last_error: str = ""  # why the latest attempt failed; "" once one goes through


@dataclass(frozen=True, slots=True)
class ChannelReport:
    """One channel as /health and /metrics show it: a channel down all day was visible only in
    the log, so nobody watching the probes knew the alerts were not arriving."""

    queued: int  # waiting, plus the one being sent
    sent: int
    failed: int
    dropped: int
    retries: int
    failing: int
    last_error: str

    @property
    def ok(self) -> bool:
        return self.failing == 0


class _Channel:
    def __init__(self, notifier: Notifier, queue_size: int) -> None:
        self.notifier = notifier
        self.pending: deque[Notification] = deque()
        self.queue_size = queue_size
        self.wake = asyncio.Event()
        self.sent_at: deque[float] = deque()
        self.stats = ChannelStats()
        self.unreported_drops = 0
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def offer(self, note: Notification) -> None:
        if len(self.pending) >= self.queue_size:
            # Drop the oldest routine message; a critical one (loss limit, L5, blocked) only
            # when nothing else is left to drop.
            victim = next((n for n in self.pending if n.severity is not Severity.CRITICAL), self.pending[0])
            self.pending.remove(victim)
            self.stats.dropped += 1
            self.unreported_drops += 1
        self.pending.append(note)
        self.wake.set()

    @property
    def idle(self) -> bool:
        return not self.pending and not self.busy


Sleep = Callable[[float], Awaitable[None]]


class Dispatcher:
    """Fan-out of notifications to channels; see the module docstring. Use `async with`, or
    `start()` and `aclose()`. `notify()` may be called before `start()` (messages wait)."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        settings: DispatchSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not notifiers:
            raise ValueError("Dispatcher needs at least one notifier")
        self.settings = settings or DispatchSettings()
        self._clock = clock
        self._sleep = sleep
        self._channels = [_Channel(n, self.settings.queue_size) for n in notifiers]
        self._recent: dict[str, float] = {}
        self.duplicates = 0
        self._closed = False
        self._progress = asyncio.Event()  # set each time a channel finishes a message

    # -- the caller's side: sync, never blocks ----------------------------------------------

    def notify(self, note: Notification) -> bool:
        """Queue `note` for every channel; False when it was a duplicate or we are closed."""
        if self._closed:
            log.debug("notification after close dropped", extra={"title": note.title})
            return False
        window = self.settings.dedupe_window_s
        if window > 0 and note.dedupe:
            now = self._clock()
            recent = self._recent  # key -> time first sent, oldest first (insertion order)
            while recent:
                oldest = next(iter(recent))
                if now - recent[oldest] < window and len(recent) < DEDUPE_KEYS:
                    break
                del recent[oldest]
            key = note.dedupe_key()
            if key in recent:
                self.duplicates += 1
                return False
            recent[key] = now
        for channel in self._channels:
            channel.offer(note)
        return True

    @property
    def stats(self) -> dict[str, ChannelStats]:
        return {c.notifier.name: c.stats for c in self._channels}

    def report(self) -> dict[str, ChannelReport]:
        """Each channel's queue and counters now, by channel name."""
        return {
            c.notifier.name: ChannelReport(
                queued=len(c.pending) + int(c.busy),
                sent=c.stats.sent,
                failed=c.stats.failed,
                dropped=c.stats.dropped,
                retries=c.stats.retries,
                failing=c.stats.failing,
                last_error=c.stats.last_error,
            )
            for c in self._channels
        }

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing in flight on any channel."""
        return all(c.idle for c in self._channels)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for channel in self._channels:
            if channel.task is None:
                channel.task = asyncio.create_task(self._run(channel), name=f"notify-{channel.notifier.name}")

    async def aclose(self, drain_s: float = 5.0, final_s: float = 3.0) -> None:
        """Stop accepting, give queued messages up to `drain_s` seconds, stop the workers, then
        give each urgent message left one attempt, unpaced, within `final_s` seconds."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                while not self.idle and any(c.task is not None and not c.task.done() for c in self._channels):
                    self._progress.clear()
                    await self._progress.wait()
        for channel in self._channels:
            if channel.task is not None:
                channel.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await channel.task
                channel.task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(final_s):
                await asyncio.gather(*(self._send_urgent(c) for c in self._channels))
        for channel in self._channels:
            left = len(channel.pending)
            if left:
                channel.stats.failed += left
                log.warning(
                    "notifications not delivered at shutdown",
                    extra={"channel": channel.notifier.name, "count": left, "titles": [n.title for n in channel.pending][:5]},
                )
            await channel.notifier.aclose()

    async def _send_urgent(self, channel: _Channel) -> None:
        """One attempt for each urgent message still queued, without pacing or retries: the
        engine is stopping, and a rate limit must not be what keeps "Engine stopped" unsaid."""
        for note in [n for n in channel.pending if urgent(n)]:
            try:
                await channel.notifier.send(note)
            except Exception as exc:  # a DeliveryError or a channel bug: it stays counted as lost
                log.warning("notification not delivered at shutdown", extra={"channel": channel.notifier.name, "error": str(exc), "title": note.title})
            else:
                channel.pending.remove(note)
                channel.stats.sent += 1

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- the channel workers ------------------------------------------------------------------

    async def _run(self, channel: _Channel) -> None:
        while True:
            if not channel.pending:
                channel.wake.clear()
                await channel.wake.wait()
                continue
            note = channel.pending.popleft()
            channel.busy = True
            try:
                if channel.unreported_drops:
                    lost, channel.unreported_drops = channel.unreported_drops, 0
                    note = replace(note, text=f"{note.text}\n({lost} earlier message(s) dropped: queue full)".lstrip("\n"))
                await self._pace(channel)
                await self._deliver(channel, note)
            except asyncio.CancelledError:
                # Stopped at close while pacing, sending or waiting to retry: the message goes
                # back to the head of its queue, to be sent (when urgent) or counted as lost.
                channel.pending.appendleft(note)
                raise
            finally:
                channel.busy = False
                self._progress.set()

    def _forget(self, note: Notification) -> None:
        """A message given up on is not "sent" for the dedupe window: its repeat (an L5 alert
        once the endpoint is back) must go out, not be dropped as a duplicate of one never seen."""
        if note.dedupe:
            self._recent.pop(note.dedupe_key(), None)

    async def _pace(self, channel: _Channel) -> None:
        """Wait until one more send fits in the last 60 s."""
        limit = self.settings.max_per_minute
        while True:
            now = self._clock()
            while channel.sent_at and now - channel.sent_at[0] >= RATE_WINDOW_S:
                channel.sent_at.popleft()
            if len(channel.sent_at) < limit:
                return
            await self._sleep(RATE_WINDOW_S - (now - channel.sent_at[0]))

    async def _deliver(self, channel: _Channel, note: Notification) -> None:
        name = channel.notifier.name
        for attempt in range(self.settings.max_retries + 1):
            channel.sent_at.append(self._clock())
            try:
                await channel.notifier.send(note)
            except DeliveryError as exc:
                channel.stats.failing += 1
                channel.stats.last_error = str(exc)
                last = attempt == self.settings.max_retries
                if not exc.retryable or last:
                    channel.stats.failed += 1
                    self._forget(note)
                    log.warning(
                        "notification not delivered",
                        extra={"channel": name, "error": str(exc), "attempts": attempt + 1, "title": note.title, "category": note.category},
                    )
                    return
                # The far end's Retry-After counts, up to the backoff cap: a 429 asking for a
                # day held every message behind it (an L5 alert among them) for that day.
                asked = exc.retry_after
                delay = min(asked, self.settings.max_backoff_s) if asked is not None else self.settings.backoff(attempt)
                channel.stats.retries += 1
                log.info("notification delivery retried", extra={"channel": name, "error": str(exc), "delay_s": delay})
                await self._sleep(max(0.0, delay))
            except Exception as exc:  # a channel bug must cost one message, never the worker
                channel.stats.failing += 1
                channel.stats.last_error = f"{type(exc).__name__} in the channel (see the log)"  # its text may hold a URL
                channel.stats.failed += 1
                self._forget(note)
                log.exception("notifier crashed", extra={"channel": name, "title": note.title, "category": note.category})
                return
            else:
                channel.stats.sent += 1
                channel.stats.failing, channel.stats.last_error = 0, ""
                return
