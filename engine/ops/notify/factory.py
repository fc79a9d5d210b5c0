"""Build the configured channels from config: the one entry point the runtime wires."""

from __future__ import annotations

from engine.config import HotcoinConfig
from engine.ops.notify.base import Notifier
from engine.ops.notify.dispatcher import Dispatcher, DispatchSettings
from engine.ops.notify.feishu import FeishuNotifier
from engine.ops.notify.telegram import TelegramBot, TelegramNotifier


def telegram_bot(config: HotcoinConfig) -> TelegramBot | None:
    """The Bot API client when a token and a chat id are configured, else None."""
    tg = config.notify.telegram
    if tg.bot_token is None or tg.chat_id is None:
        return None
    return TelegramBot(tg.base_url, tg.bot_token.get_secret_value(), timeout_s=config.notify.timeout_s)


def build_notifiers(config: HotcoinConfig, bot: TelegramBot | None = None) -> list[Notifier]:
    notifiers: list[Notifier] = []
    tg = config.notify.telegram
    bot = bot or telegram_bot(config)
    if bot is not None and tg.chat_id is not None:
        notifiers.append(TelegramNotifier(bot, tg.chat_id))
    fs = config.notify.feishu
    if fs.webhook_url is not None:
        notifiers.append(
            FeishuNotifier(
                fs.webhook_url.get_secret_value(),
                secret=fs.secret.get_secret_value() if fs.secret is not None else None,
                timeout_s=config.notify.timeout_s,
            )
        )
    return notifiers


def build_notifier(config: HotcoinConfig, bot: TelegramBot | None = None) -> Dispatcher | None:
    """A (not yet started) dispatcher over every configured channel; None when none is.
    Pass `bot` to share one Telegram client with the command poller."""
    notifiers = build_notifiers(config, bot)
    if not notifiers:
        return None
    return Dispatcher(notifiers, DispatchSettings.from_section(config.notify))
