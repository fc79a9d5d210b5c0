"""Deliver notifications without ever making the engine wait for them.

`Dispatcher.notify()` is synchronous and cheap (a few µs): it drops a duplicate (same
`dedupe_key` within the window), appends to each channel's bounded queue and returns. When a
queue is full the oldest routine message is dropped (a critical one only when nothing else is
left). One background task per channel delivers in order, paced to `max_per_minute` (a sliding
60 s window). A channel that is down, slow or rate-limited delays only its own queue: never the
caller, never another channel.

Retries. A failed delivery that may succeed later (429, 5xx, network) is retried after
exponential backoff, or after exactly the `retry_after` the far end asked for, both capped at
`max_backoff_s`:
- a routine message (info, warning) `max_retries` times at most;
- a CRITICAL one (the loss limit, L5, a crash) until it goes through, the far end refuses it
  for good (not retryable) or the dispatcher closes: given up after four retries, a loss limit
  hit during a two-minute outage was never said at all. The channel is down for every message
  then, so what waits behind it (newer, less urgent) loses nothing it could have had;
- after a timeout, once at most, and not at all once the message has been in hand `HOLD_S`:
  the request was on its way, so the message may well have arrived (a slow endpoint answering
  after 30 s got each message five times, and held the queue minutes while every message
  behind it was dropped). Such a message is given up as "unconfirmed", not "failed".

Losses are said. Every message lost (dropped for a full queue, given up, unconfirmed) is
counted, and the next message delivered on that channel says how many and, for those given up
or unconfirmed, which (their titles); until then `report()` shows them as `unreported`, and
the latest loss stays in `last_lost` after the channel recovers. A message whose delivery
fails keeps that account for the next one.

At close the queues get a few seconds at the usual pace; then the urgent messages still waiting
(the engine stopping, a crash, a critical alert) go in one last message, unpaced, within a
deadline: the newest (the engine's last word, "Engine stopped") heads it, the others follow
most severe first, with the losses not yet said. One attempt is all a slow channel leaves time
for, so it must carry everything: sent one by one, the oldest went first ("Engine started"),
and "Engine stopped" never did. Whatever is left, the message a worker had in hand included,
is counted lost.

Time is injected (`clock`, `sleep`) so tests drive backoff and pacing without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType

from engine.config.sections.notify import NotifySection
from engine.ops.notify.base import DeliveryError, Notification, Notifier, Severity

log = logging.getLogger("hotcoin.notify")

RATE_WINDOW_S = 60.0
DEDUPE_KEYS = 4096  # keys remembered at most; past it the oldest are forgotten early
TIMEOUT_RETRIES = 1  # retries after timeouts (the message may have arrived): one duplicate at most
HOLD_S = 60.0  # no retry after a timeout once a message has been in hand this long
TITLES_SHOWN = 5  # lost messages named in the next one delivered; the rest are counted
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


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
        """Delay before retry number `attempt` (0-based) when the far end named none; a critical
        message's retries are unbounded, so the exponent stops long after the cap is reached."""
        return float(min(self.backoff_s * (2 ** min(attempt, 64)), self.max_backoff_s))


def urgent(note: Notification) -> bool:
    """Sent at close even past the rate limit: "Engine stopped" (and why) is the one message the
    owner must get, and it comes last, behind whatever the pace was still holding."""
    return note.severity is Severity.CRITICAL or note.category == "system"


@dataclass(slots=True)
class ChannelStats:
    sent: int = 0
    failed: int = 0  # messages given up on (non-retryable, retries exhausted, timed out, left at shutdown)
    retries: int = 0
    dropped: int = 0  # oldest messages dropped because the queue was full
    failing: int = 0  # delivery attempts failed in a row; 0 once one goes through
    last_error: str = ""  # why the latest attempt failed; "" once one goes through
    last_lost: str = ""  # the latest message lost and why; kept once the channel works again
    last_lost_at: float | None = None  # when (the dispatcher's clock)


@dataclass(slots=True)
class _Lost:
    """Messages lost for one reason since the owner was last told: how many, the first titles."""

    count: int = 0
    titles: list[str] = field(default_factory=list)

    def add(self, title: str) -> None:
        self.count += 1
        if len(self.titles) < TITLES_SHOWN:
            self.titles.append(title)

    def absorb(self, newer: _Lost) -> None:
        self.count += newer.count
        self.titles = (self.titles + newer.titles)[:TITLES_SHOWN]

    def named(self) -> str:
        more = self.count - len(self.titles)
        return "; ".join(self.titles) + (f" and {more} more" if more > 0 else "")


@dataclass(slots=True)
class _Losses:
    """What the next delivered message must own up to, by why each message was lost."""

    dropped: _Lost = field(default_factory=_Lost)  # the queue was full
    given_up: _Lost = field(default_factory=_Lost)  # refused, or out of retries
    unconfirmed: _Lost = field(default_factory=_Lost)  # timed out: may have arrived

    @property
    def count(self) -> int:
        return self.dropped.count + self.given_up.count + self.unconfirmed.count

    def then(self, newer: _Losses) -> _Losses:
        """These (told in a message that was not delivered after all), followed by `newer`."""
        for mine, theirs in ((self.dropped, newer.dropped), (self.given_up, newer.given_up), (self.unconfirmed, newer.unconfirmed)):
            mine.absorb(theirs)
        return self

    def said(self) -> str:
        """The lines that tell the owner, "" when nothing was lost."""
        lines = []
        if self.dropped.count:
            lines.append(f"({self.dropped.count} earlier message(s) dropped: queue full)")
        if self.given_up.count:
            lines.append(f"({self.given_up.count} earlier message(s) not delivered, given up: {self.given_up.named()})")
        if self.unconfirmed.count:
            lines.append(
                f"({self.unconfirmed.count} earlier message(s) unconfirmed, the channel timed out and they may have "
                f"arrived: {self.unconfirmed.named()})"
            )
        return "\n".join(lines)


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
    # Lost and not yet said in a delivered message: a critical alert given up on while the next
    # message went through read as a healthy channel (failing 0, no error), the loss unseen.
    unreported: int = 0
    last_lost: str = ""  # the latest message lost and why, kept after the channel recovers
    last_lost_ago_s: float | None = None  # how long ago; None: nothing lost yet

    @property
    def ok(self) -> bool:
        return self.failing == 0 and self.unreported == 0


class _Channel:
    def __init__(self, notifier: Notifier, queue_size: int) -> None:
        self.notifier = notifier
        self.pending: deque[Notification] = deque()
        self.queue_size = queue_size
        self.wake = asyncio.Event()
        self.sent_at: deque[float] = deque()
        self.stats = ChannelStats()
        self.losses = _Losses()  # not yet said in a delivered message
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def offer(self, note: Notification, now: float) -> None:
        if len(self.pending) >= self.queue_size:
            # Drop the oldest routine message; a critical one (loss limit, L5, blocked) only
            # when nothing else is left to drop.
            victim = next((n for n in self.pending if n.severity is not Severity.CRITICAL), self.pending[0])
            self.pending.remove(victim)
            self.stats.dropped += 1
            self.lost(victim, self.losses.dropped, "dropped: queue full", now)
        self.pending.append(note)
        self.wake.set()

    def lost(self, note: Notification, kind: _Lost, why: str, now: float) -> None:
        kind.add(note.headline())
        self.stats.last_lost, self.stats.last_lost_at = f"{note.headline()}: {why}", now

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
        now = self._clock()
        window = self.settings.dedupe_window_s
        if window > 0 and note.dedupe:
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
            channel.offer(note, now)
        return True

    @property
    def stats(self) -> dict[str, ChannelStats]:
        return {c.notifier.name: c.stats for c in self._channels}

    def report(self) -> dict[str, ChannelReport]:
        """Each channel's queue and counters now, by channel name."""
        now = self._clock()
        return {
            c.notifier.name: ChannelReport(
                queued=len(c.pending) + int(c.busy),
                sent=c.stats.sent,
                failed=c.stats.failed,
                dropped=c.stats.dropped,
                retries=c.stats.retries,
                failing=c.stats.failing,
                last_error=c.stats.last_error,
                unreported=c.losses.count,
                last_lost=c.stats.last_lost,
                last_lost_ago_s=None if c.stats.last_lost_at is None else max(0.0, now - c.stats.last_lost_at),
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
        give the urgent messages left one attempt, in one message, unpaced, within `final_s`
        seconds."""
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
        """One attempt, without pacing or retries, at one message carrying every urgent one
        still queued (`last_word`): the engine is stopping, and neither a rate limit nor a slow
        channel spending the deadline on a stale "Engine started" may keep "Engine stopped"
        unsaid."""
        left = [n for n in channel.pending if urgent(n)]
        if not left:
            return
        try:
            await channel.notifier.send(last_word(left, channel.losses, len(channel.pending) - len(left)))
        except Exception as exc:  # a DeliveryError or a channel bug: they stay counted as lost
            log.warning(
                "notification not delivered at shutdown",
                extra={"channel": channel.notifier.name, "error": str(exc), "titles": [n.title for n in left][:5]},
            )
        else:
            for note in left:
                channel.pending.remove(note)
            channel.stats.sent += len(left)
            channel.losses = _Losses()
            channel.stats.failing, channel.stats.last_error = 0, ""

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
            # The losses not yet said ride on this message; should it not be delivered, they
            # wait for the next one (with this one among them).
            told, channel.losses = channel.losses, _Losses()
            try:
                said = told.said()
                sending = replace(note, text=f"{note.text}\n{said}".lstrip("\n")) if said else note
                await self._pace(channel)
                delivered = await self._deliver(channel, note, sending)
            except asyncio.CancelledError:
                # Stopped at close while pacing, sending or waiting to retry: the message goes
                # back to the head of its queue, to be sent (when urgent) or counted as lost.
                channel.losses = told.then(channel.losses)
                channel.pending.appendleft(note)
                raise
            else:
                if not delivered:
                    channel.losses = told.then(channel.losses)
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

    def _gives_up(self, note: Notification, exc: DeliveryError, retries: int, timeouts: int, held_s: float) -> bool:
        """Whether the failure `exc` ends the attempts at `note` (see the module docstring)."""
        if not exc.retryable:
            return True
        if exc.maybe_delivered and (timeouts > TIMEOUT_RETRIES or held_s >= HOLD_S):
            return True
        return note.severity is not Severity.CRITICAL and retries >= self.settings.max_retries

    async def _deliver(self, channel: _Channel, note: Notification, sending: Notification) -> bool:
        """Send `sending` (`note` with the losses it tells of) with retries; False when it was
        given up, counted and recorded for the next message to say."""
        name = channel.notifier.name
        first = self._clock()
        retries = timeouts = 0
        while True:
            channel.sent_at.append(self._clock())
            try:
                await channel.notifier.send(sending)
            except DeliveryError as exc:
                channel.stats.failing += 1
                channel.stats.last_error = str(exc)
                timeouts += int(exc.maybe_delivered)
                if self._gives_up(note, exc, retries, timeouts, self._clock() - first):
                    # A timeout along the way may have delivered it: "unconfirmed", not "not delivered".
                    kind, why = (
                        (channel.losses.unconfirmed, "unconfirmed, timed out") if timeouts else (channel.losses.given_up, "given up")
                    )
                    self._give_up(channel, note, kind, f"{why} after {retries + 1} attempt(s): {exc}")
                    log.warning(
                        "notification not delivered",
                        extra={
                            "channel": name, "error": str(exc), "attempts": retries + 1, "timeouts": timeouts,
                            "title": note.title, "category": note.category,
                        },
                    )
                    return False
                # The far end's Retry-After counts, up to the backoff cap: a 429 asking for a
                # day held every message behind it (an L5 alert among them) for that day.
                asked = exc.retry_after
                delay = min(asked, self.settings.max_backoff_s) if asked is not None else self.settings.backoff(retries)
                retries += 1
                channel.stats.retries += 1
                log.info("notification delivery retried", extra={"channel": name, "error": str(exc), "delay_s": delay})
                await self._sleep(max(0.0, delay))
            except Exception as exc:  # a channel bug must cost one message, never the worker
                channel.stats.failing += 1
                channel.stats.last_error = f"{type(exc).__name__} in the channel (see the log)"  # its text may hold a URL
                self._give_up(channel, note, channel.losses.given_up, channel.stats.last_error)
                log.exception("notifier crashed", extra={"channel": name, "title": note.title, "category": note.category})
                return False
            else:
                channel.stats.sent += 1
                channel.stats.failing, channel.stats.last_error = 0, ""
                return True

    def _give_up(self, channel: _Channel, note: Notification, kind: _Lost, why: str) -> None:
        channel.stats.failed += 1
        channel.lost(note, kind, why, self._clock())
        self._forget(note)


def last_word(left: Sequence[Notification], losses: _Losses, routine_left: int) -> Notification:
    """The one message sent at close for the urgent messages `left` (oldest first): the newest
    heads it, at the highest severity among them; the others follow, most severe first and then
    newest first, and then the losses not yet said and the routine messages left unsent."""
    head = left[-1]
    others = sorted(reversed(left[:-1]), key=lambda n: _RANK[n.severity], reverse=True)  # stable: newest first kept
    if len(left) == 1 and not losses.count and not routine_left:
        return head
    parts = [head.text] if head.text else []
    if others:
        parts.append("Also not sent before shutdown:\n" + "\n".join(n.render() for n in others))
    said = losses.said()
    if said:
        parts.append(said)
    if routine_left:
        parts.append(f"({routine_left} routine message(s) left unsent at shutdown)")
    severity = max((n.severity for n in left), key=_RANK.__getitem__)
    return replace(head, severity=severity, text="\n".join(parts))
