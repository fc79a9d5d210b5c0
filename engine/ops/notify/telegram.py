"""Telegram Bot API: `sendMessage` for notifications, `getUpdates` for remote commands.

The token is part of every URL (`/bot<token>/<method>`), so no URL and no aiohttp error text
reaches a log or an exception unscrubbed. Errors map onto `DeliveryError`: 429 (with
`parameters.retry_after`), 5xx and network failures may be retried; other 4xx will fail again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from engine.ops.notify.base import DeliveryError, Notification, Notifier, maybe_delivered

MAX_TEXT = 4096  # Telegram's limit on one message


class TelegramBot:
    """A small async client of the Bot API methods hotcoin uses."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0) -> None:
        if not token:
            raise ValueError("telegram: empty bot token; set notify.telegram.bot_token in the secrets file")
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def call(self, method: str, payload: Mapping[str, Any], *, timeout_s: float | None = None) -> Any:
        """POST one method; returns its `result` or raises `DeliveryError` (token scrubbed)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(json_serialize=lambda o: orjson.dumps(o).decode())
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else self._timeout_s)
        url = f"{self._base}/bot{self._token}/{method}"
        try:
            async with self._session.post(url, json=dict(payload), timeout=timeout) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(
                f"telegram {method}: {self._scrub(type(exc).__name__ + ': ' + str(exc))}",
                retryable=True,
                maybe_delivered=maybe_delivered(exc),
            ) from None
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        if status == 200 and isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        desc = body.get("description", "") if isinstance(body, dict) else ""
        params = body.get("parameters") if isinstance(body, dict) else None
        retry_after = params.get("retry_after") if isinstance(params, dict) else None
        retryable = status == 429 or status >= 500
        raise DeliveryError(
            f"telegram {method}: HTTP {status} {self._scrub(str(desc))}".rstrip(),
            retryable=retryable,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        )

    async def send_message(self, chat_id: int, text: str) -> None:
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "…"
        await self.call("sendMessage", {"chat_id": chat_id, "text": text, "disable_web_page_preview": True})

    async def get_updates(self, offset: int | None, timeout_s: int) -> list[dict[str, Any]]:
        """Long-poll for new updates after `offset` (only `message` updates are asked for)."""
        payload: dict[str, Any] = {"timeout": timeout_s, "allowed_updates": ["message"]}
        if offset is not None:
            payload["offset"] = offset
        result = await self.call("getUpdates", payload, timeout_s=timeout_s + self._timeout_s)
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    async def get_me(self) -> dict[str, Any]:
        result = await self.call("getMe", {})
        return result if isinstance(result, dict) else {}

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)  # let aiohttp close its connector's transports

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***")


class TelegramNotifier(Notifier):
    """Sends each notification as one plain-text message to the configured chat."""

    name = "telegram"

    def __init__(self, bot: TelegramBot, chat_id: int) -> None:
        self._bot = bot
        self._chat_id = chat_id

    async def send(self, note: Notification) -> None:
        await self._bot.send_message(self._chat_id, note.render())

    async def aclose(self) -> None:
        await self._bot.aclose()
