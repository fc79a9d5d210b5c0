"""Send one notification now and wait for each channel's outcome: for a command that exits
right after (`hotcoin report --send`), where the engine's dispatcher never waits.

The wait is the retry schedule's worst case, not a fixed few seconds: a short drain cancelled
deliveries still being retried and reported them as failed (a channel that answered on the
fourth try was "failed"), and the error that made a channel fail is kept to be shown, not
only logged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine.config import HotcoinConfig
from engine.ops.notify.base import DeliveryError, Notification, Notifier
from engine.ops.notify.dispatcher import Dispatcher, DispatchSettings
from engine.ops.notify.factory import build_notifiers

SLACK_S = 1.0  # for the work between attempts (signing, queueing): far below one timeout


def longest_delivery_s(settings: DispatchSettings, timeout_s: float) -> float:
    """How long one message can take on one channel before the dispatcher gives it up: every
    attempt running to its timeout, with the longest wait (the cap a 429's retry_after is held
    to) before each retry. A critical message is never given up while the channel is down
    (`dispatcher` module docstring): this wait is then where its retries stop."""
    attempts = settings.max_retries + 1
    return attempts * timeout_s + settings.max_retries * settings.max_backoff_s + SLACK_S


@dataclass(frozen=True, slots=True)
class Outcome:
    """One channel's result: `error` is None when it delivered."""

    channel: str
    attempts: int
    error: str | None


class _Witness(Notifier):
    """Passes each send through to its channel and remembers how the last one ended."""

    def __init__(self, inner: Notifier) -> None:
        self.name = inner.name
        self._inner = inner
        self.attempts = 0
        self.delivered = False
        self.error: str | None = None

    async def send(self, note: Notification) -> None:
        self.attempts += 1
        try:
            await self._inner.send(note)
        except DeliveryError as exc:
            self.error = str(exc)
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        self.delivered = True
        self.error = None

    async def aclose(self) -> None:
        await self._inner.aclose()


async def send_now(config: HotcoinConfig, note: Notification) -> list[Outcome]:
    """Deliver `note` to every configured channel (with the configured retries) and return one
    outcome per channel; an empty list when no channel is configured."""
    notifiers = build_notifiers(config)
    if not notifiers:
        return []
    settings = DispatchSettings.from_section(config.notify)
    return await deliver(notifiers, settings, note, within_s=longest_delivery_s(settings, config.notify.timeout_s))


async def deliver(notifiers: list[Notifier], settings: DispatchSettings, note: Notification, *, within_s: float) -> list[Outcome]:
    """`send_now` on given channels. Cancelled (Ctrl-C during a long retry), it still stops
    the retries and closes every channel's HTTP session before the cancellation goes on."""
    witnesses = [_Witness(n) for n in notifiers]
    dispatcher = Dispatcher(witnesses, settings)
    await dispatcher.start()
    dispatcher.notify(note)
    try:
        await dispatcher.aclose(drain_s=within_s)
    except asyncio.CancelledError:
        await dispatcher.aclose(drain_s=0)
        raise
    return [
        Outcome(w.name, w.attempts, None if w.delivered else w.error or f"no answer within {within_s:.0f} s")
        for w in witnesses
    ]
