"""Everything the owner hears and says, started and stopped as one: the runtime's entry point.

    async with open_notifications(config, session.client, session.journal_path) as bridge:
        engine.tap.listeners.append(bridge.on_event)   # however the runtime taps its events
        await engine.run()

Inside the block: the dispatcher delivers (rate-limited, deduplicated, retried, bounded), the
Telegram command poller answers the configured chat, and the daily report goes out at 00:00
UTC. With no channel configured the bridge is still returned and drops everything, so the
runtime wires one code path. Nothing here can stop or slow the engine: every task is the
bridge's own, and leaving the block cancels them after a short drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from engine.config import HotcoinConfig
from engine.journal.events import EventSink
from engine.ops.notify.base import Notification
from engine.ops.notify.events import NotificationBridge
from engine.ops.notify.factory import build_notifier, telegram_bot
from engine.ops.notify.telegram_commands import TelegramCommands
from engine.ops.report import DailyReporter
from engine.runtime.client import EngineClient


class _Nowhere:
    """The sink when no channel is configured."""

    def notify(self, note: Notification) -> bool:
        return False


@contextlib.asynccontextmanager
async def open_notifications(
    config: HotcoinConfig, client: EngineClient, journal_path: Path, events: EventSink | None = None
) -> AsyncIterator[NotificationBridge]:
    """`events` journals what the bridge refuses itself (commands from strangers)."""
    bot = telegram_bot(config)
    dispatcher = build_notifier(config, bot)
    if dispatcher is None:
        yield NotificationBridge(_Nowhere())
        return
    bridge = NotificationBridge(dispatcher, dispatcher.report)
    tasks: list[asyncio.Task[None]] = []
    tg = config.notify.telegram
    async with dispatcher:
        if bot is not None and tg.chat_id is not None and tg.commands:
            commands = TelegramCommands(
                bot,
                tg.chat_id,
                client,
                confirm_window_s=tg.confirm_window_s,
                poll_timeout_s=tg.poll_timeout_s,
                journal=events,
                allowed_user_ids=frozenset(tg.allowed_user_ids),
            )
            tasks.append(asyncio.create_task(commands.run(), name="telegram-commands"))
        if config.notify.daily_report:
            reporter = DailyReporter(journal_path, bridge.send, clusters=config.trading.risk.clusters)
            tasks.append(asyncio.create_task(reporter.run(), name="daily-report"))
        try:
            yield bridge
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
