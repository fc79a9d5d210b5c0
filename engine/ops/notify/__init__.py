"""Notifications to the owner (Telegram, Feishu) and remote commands over Telegram.

Wiring, in the runtime (one block; see `service`):

    from engine.ops.notify.service import open_notifications
    async with open_notifications(config, client, journal_path) as bridge:
        ...  # the event tap calls bridge.on_event(kind, payload, symbol) for every event

or piece by piece: `build_notifier(config)` (a Dispatcher, or None when no channel is
configured), `NotificationBridge(dispatcher)`, `TelegramCommands`, `report.DailyReporter`.
"""

from engine.ops.notify.base import (
    DeliveryError,
    FakeNotifier,
    Notification,
    Notifier,
    NotifyError,
    Severity,
)
from engine.ops.notify.dispatcher import ChannelReport, Dispatcher, DispatchSettings
from engine.ops.notify.events import NotificationBridge, notification_for
from engine.ops.notify.factory import build_notifier, build_notifiers, telegram_bot

__all__ = [
    "ChannelReport",
    "DeliveryError",
    "DispatchSettings",
    "Dispatcher",
    "FakeNotifier",
    "Notification",
    "NotificationBridge",
    "Notifier",
    "NotifyError",
    "Severity",
    "build_notifier",
    "build_notifiers",
    "notification_for",
    "telegram_bot",
]
