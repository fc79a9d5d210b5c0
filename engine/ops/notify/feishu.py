"""Feishu (Lark) custom-bot webhook: one text message per notification.

With a signing secret the body carries `timestamp` (epoch seconds, as a string) and
`sign = base64(HMAC-SHA256(key="<timestamp>\\n<secret>", message=b""))`, as Feishu's bot
documentation specifies. Feishu answers HTTP 200 with `{"code": 0}` (older bots `{"StatusCode": 0}`)
on success and a non-zero `code` otherwise; anything else (no code, a body that is not JSON) is
a failure. Its rate limit (code 11232), HTTP 429 and 5xx may be retried.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from engine.config.sections.notify import http_url_problem
from engine.ops.notify.base import DeliveryError, Notification, Notifier, maybe_delivered

RATE_LIMITED_CODES = frozenset({11232})


def feishu_sign(timestamp: int, secret: str) -> str:
    """The `sign` field for a webhook body sent at `timestamp` (epoch seconds)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode()


def feishu_body(text: str, *, secret: str | None, now_s: int) -> dict[str, Any]:
    body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
    if secret:
        body["timestamp"] = str(now_s)
        body["sign"] = feishu_sign(now_s, secret)
    return body


class FeishuNotifier(Notifier):
    name = "feishu"

    def __init__(
        self,
        webhook_url: str,
        *,
        secret: str | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if http_url_problem(webhook_url) is not None:  # the config refuses it first, naming the key
            raise ValueError("feishu: notify.feishu.webhook_url must be an http(s) URL")
        self._url = webhook_url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def send(self, note: Notification) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        body = orjson.dumps(feishu_body(note.render(), secret=self._secret, now_s=int(self._clock())))
        try:
            async with self._session.post(
                self._url, data=body, headers={"Content-Type": "application/json"}, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The webhook URL embeds the bot's token: name the failure, never the URL.
            raise DeliveryError(
                f"feishu webhook: {type(exc).__name__}", retryable=True, maybe_delivered=maybe_delivered(exc)
            ) from None
        try:
            reply = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            reply = None
        code = reply.get("code", reply.get("StatusCode")) if isinstance(reply, dict) else None
        if status == 200 and type(code) is int and code == 0:
            return
        retryable = status == 429 or status >= 500 or code in RATE_LIMITED_CODES
        if status == 200 and type(code) is not int:
            # Only Feishu's own `{"code": 0}` says the message arrived: an empty, HTML or other
            # page answering 200 (a proxy, a wrong URL) was counted as delivered, unseen.
            raise DeliveryError(
                "feishu webhook: HTTP 200 without a Feishu answer (no numeric `code` in the reply); "
                "check that notify.feishu.webhook_url is the bot's webhook URL",
                retryable=False,
            )
        said = f" code {code}" if code is not None else ""
        msg = str(reply.get("msg", reply.get("StatusMessage", ""))) if isinstance(reply, dict) else ""
        raise DeliveryError(f"feishu webhook: HTTP {status}{said} {msg}".rstrip(), retryable=retryable)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)
