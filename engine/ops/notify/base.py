"""What a notification is, the one-method seam every channel implements, and its fake.

A channel (`Notifier`) delivers one message or raises `DeliveryError` saying whether a retry
may help and how long the far end asked us to wait. Everything else (deduplication, rate
limits, retries with backoff, the bounded queue) lives once, in `dispatcher.Dispatcher`, so a
new channel is a few lines of HTTP.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field

import aiohttp

from engine.errors import HotcoinError


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_MARK = {Severity.INFO: "", Severity.WARNING: "⚠️ ", Severity.CRITICAL: "🚨 "}


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for the owner. `key` identifies "the same news" for deduplication; it
    defaults to the title and text, so a repeated identical message is sent once per window.
    `dedupe=False` for news whose repetition means something (a state that flapped back, a
    second pause): the rate limit still applies."""

    title: str
    text: str
    severity: Severity = Severity.INFO
    category: str = "general"  # position | risk | state | command | system | report (for logs and filters)
    key: str = field(default="")
    dedupe: bool = True

    def dedupe_key(self) -> str:
        return self.key or f"{self.title}\n{self.text}"

    def headline(self) -> str:
        """The title with its severity mark, as the first line of `render()` shows it."""
        return f"{_MARK[self.severity]}{self.title}"

    def render(self) -> str:
        """Plain text as both channels show it: a marked title line, then the body."""
        head = self.headline()
        return f"{head}\n{self.text}" if self.text else head


class NotifyError(HotcoinError):
    """A notification channel could not be set up or used as configured."""


class DeliveryError(NotifyError):
    """One delivery attempt failed. `retryable`: a later attempt may succeed (429, 5xx, network);
    `retry_after`: seconds the far end asked us to wait (Telegram's `parameters.retry_after`);
    `maybe_delivered`: no answer came in time after the request was on its way (a timeout), so
    the message may have arrived all the same, and a retry may show it twice."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after: float | None = None, maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


def maybe_delivered(exc: BaseException) -> bool:
    """Whether a failed HTTP request may still have reached the far end: a timeout, unless it
    struck while connecting (aiohttp's `ConnectionTimeoutError`: nothing was sent)."""
    return isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError)


class Notifier(abc.ABC):
    """A channel to the owner: Telegram, Feishu, or a test double."""

    name: str = "notifier"

    @abc.abstractmethod
    async def send(self, note: Notification) -> None:
        """Deliver `note` once, or raise `DeliveryError`. Must not log secrets (URLs with tokens)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most channels hold nothing
        """Release what the channel holds (an HTTP session)."""


class FakeNotifier(Notifier):
    """Records what it was asked to send; `fail_next(error, times)` makes the next sends raise."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.sent: list[Notification] = []
        self.attempts = 0
        self._failures: list[DeliveryError] = []
        self.closed = False

    def fail_next(self, error: DeliveryError, times: int = 1) -> None:
        self._failures.extend([error] * times)

    async def send(self, note: Notification) -> None:
        self.attempts += 1
        if self._failures:
            raise self._failures.pop(0)
        self.sent.append(note)

    async def aclose(self) -> None:
        self.closed = True
