"""Notifications (Telegram, Feishu), remote commands over Telegram, and the daily report.

The bot token and the Feishu webhook URL (which embeds its own token) are secrets: they come
only from the secrets file or the environment, like the exchange keys.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from engine.config.sections.base import Secret, Section

TELEGRAM_API = "https://api.telegram.org"


def http_url_problem(url: str) -> str | None:
    """What keeps `url` from being an http(s) URL with a host, or None when nothing does.

    Checked when the config loads, so that `config show`, `doctor` and `run` all refuse a bad
    URL with the key named: found only when a channel is built, it was a traceback at engine
    start, after doctor had passed it."""
    if any(ch.isspace() for ch in url):
        return "contains spaces or a line break (pasted with them?)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "is not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "does not start with https:// (or http://)"
    if not parts.hostname:
        return "has no host after the scheme"
    return None


class TelegramSettings(Section):
    bot_token: SecretStr | None = Field(
        None, description="Bot token from @BotFather (secrets file or env only); unset: no Telegram."
    )
    chat_id: int | None = Field(
        None,
        description="The one chat messages go to and commands are taken from; messages from any other chat "
        "are ignored and logged.",
    )
    allowed_user_ids: list[int] = Field(
        default_factory=list,
        description="Numeric Telegram user ids whose commands are obeyed in chat_id; others are refused and "
        "journaled. Empty: anyone in the chat (a group chat, negative id, warns at start).",
    )
    base_url: str = Field(TELEGRAM_API, description="Bot API base URL (a local Bot API server, or a test sink).")
    commands: bool = Field(
        True, description="Poll for /status /positions /pause /resume /closeall from the configured chat."
    )
    poll_timeout_s: int = Field(25, ge=0, le=50, description="Long-poll timeout of getUpdates.")
    confirm_window_s: float = Field(
        60.0, gt=0, le=600, description="/closeall must be confirmed with /confirm <code> within this many seconds."
    )

    @field_validator("bot_token")
    @classmethod
    def _token_is_a_token(cls, token: SecretStr | None) -> SecretStr | None:
        """An empty or space-padded token passed the load and crashed the Bot API client (or
        made every call a 404): refused here, naming the key (never the value)."""
        if token is not None:
            value = token.get_secret_value()
            if not value.strip():
                raise ValueError(
                    "the bot token is empty: put the token @BotFather gave you in the secrets file, "
                    "or remove bot_token to run without Telegram"
                )
            if any(ch.isspace() for ch in value):
                raise ValueError("the bot token contains spaces or a line break: copy it again from @BotFather")
        return token

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, url: str) -> str:
        problem = http_url_problem(url)
        if problem is not None:
            raise ValueError(f"the Bot API base URL {problem}: use {TELEGRAM_API} or your local Bot API server's URL")
        return url


class FeishuSettings(Section):
    webhook_url: SecretStr | None = Field(
        None, description="Custom-bot webhook URL (secrets file or env only); unset: no Feishu."
    )
    secret: Secret | None = Field(
        None, description="The bot's signing secret, when signature verification is on (secrets file or env only)."
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, url: SecretStr | None) -> SecretStr | None:
        problem = http_url_problem(url.get_secret_value()) if url is not None else None
        if problem is not None:
            raise ValueError(
                f"the webhook URL {problem}: copy the whole URL "
                "(https://open.feishu.cn/open-apis/bot/v2/hook/...) from the custom bot's settings"
            )
        return url


class NotifySection(Section):
    telegram: TelegramSettings = Field(
        default_factory=TelegramSettings, description="Telegram bot: notifications and remote commands."
    )
    feishu: FeishuSettings = Field(default_factory=FeishuSettings, description="Feishu (Lark) custom-bot webhook.")
    max_per_minute: int = Field(
        20, ge=1, le=600, description="Messages sent per minute per channel at most (Telegram allows ~20 to a group)."
    )
    dedupe_window_s: float = Field(
        300.0, ge=0, description="An identical message within this many seconds is sent once (0: never deduplicate)."
    )
    queue_size: int = Field(
        200, ge=1, description="Messages waiting per channel at most; beyond it the oldest is dropped and counted."
    )
    max_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Retries of one message after a 429, 5xx or network error (a critical one retries until it is "
        "delivered; after a timeout, when it may have arrived, any message is retried once at most).",
    )
    backoff_s: float = Field(1.0, gt=0, description="First retry delay; doubles each retry (a 429's retry_after wins).")
    max_backoff_s: float = Field(120.0, gt=0, description="Longest wait before one retry.")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one delivery attempt.")
    daily_report: bool = Field(True, description="Send the daily report at 00:00 UTC to every channel.")
