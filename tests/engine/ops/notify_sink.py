"""A local HTTP sink standing in for the Telegram Bot API and a Feishu webhook.

It records every request, answers like the real service, and can be told to fail the next
requests with a status (and a Telegram `retry_after`), or to hold requests until released (a
blocked far end). Served on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class HttpSink:
    requests: list[Recorded] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    _script: deque[tuple[int, dict[str, Any] | bytes]] = field(default_factory=deque)
    _held: asyncio.Event | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        self.release()
        self._arrived.set()  # end any long poll in progress
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, status: int, times: int = 1, **body: Any) -> None:
        """The next `times` requests answer `status` with a Telegram-style error body."""
        doc: dict[str, Any] = {"ok": False, "error_code": status, "description": f"error {status}", **body}
        self._script.extend([(status, doc)] * times)

    def answer(self, status: int, body: dict[str, Any] | bytes) -> None:
        """The next request answers `status` with `body`: JSON for a dict, as given for bytes."""
        self._script.append((status, body))

    def hold(self) -> None:
        """Hold every request until `release()` (a far end that accepts and never answers)."""
        self._held = asyncio.Event()

    def release(self) -> None:
        if self._held is not None:
            self._held.set()
            self._held = None

    def push_update(self, update: dict[str, Any]) -> None:
        """A message for the bot: answered to the pending (or next) getUpdates long poll."""
        self.updates.append(update)
        self._arrived.set()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def sent_texts(self) -> list[str]:
        return [str(r.body.get("text")) for r in self.requests if r.path.endswith("/sendMessage")]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = orjson.loads(raw) if raw else {}
        self.requests.append(Recorded(request.path, body, dict(request.headers)))
        if self._held is not None:
            await self._held.wait()
        if self._script:
            status, doc = self._script.popleft()
            if isinstance(doc, bytes):
                return web.Response(body=doc, status=status, content_type="text/html")
            return web.json_response(doc, status=status)
        if request.path.endswith("/getUpdates"):
            if not self.updates and body.get("timeout"):  # long poll, as Telegram does
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), body["timeout"])
            offset = body.get("offset") or 0
            pending = [u for u in self.updates if u["update_id"] >= offset]
            self.updates = []
            return web.json_response({"ok": True, "result": pending})
        if request.path.startswith("/feishu"):
            return web.json_response({"code": 0, "msg": "success", "data": {}})
        return web.json_response({"ok": True, "result": {"message_id": len(self.requests)}})
