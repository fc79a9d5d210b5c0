"""Generic post ingest, so anything can feed discovery: a JSONL file tail and a local webhook.

Both take the generic JSON post shape of `post_from_json`. The tail reads only complete new
lines (a half-written last line waits for its newline), starts over when the file shrinks
(rotated or truncated), and counts bad lines. The webhook is an aiohttp handler, `POST /posts`
with one post or a list, served on 127.0.0.1 unless told otherwise.

Loopback is not a boundary: every local user can reach it, and so can any web page the owner
opens (a `text/plain` POST is a CORS "simple" request, sent without asking). Forty fake KOL
posts are enough to push a coin's heat to 100, so the webhook takes a post only with the shared
token in `Authorization: Bearer <token>` (compared in constant time) and only as
`application/json`, which a page cannot send cross-origin without a preflight we never answer.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from aiohttp import web

from engine.discovery.social.source import SocialPost, SocialSource, post_from_json


class JsonlTail(SocialSource):
    """Posts appended to a JSONL file since the last read."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.counters: Counter[str] = Counter()

    def read_new(self) -> list[SocialPost]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self.counters["file_missing"] += 1
            return []
        if size < self.offset:
            self.counters["file_truncated"] += 1
            self.offset = 0
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        posts = []
        for line in chunk[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.counters["bad_line"] += 1
                continue
            post = post_from_json(obj, self.name, self.counters)
            if post is not None:
                posts.append(post)
        return posts

    async def fetch(self) -> list[SocialPost]:
        return await asyncio.to_thread(self.read_new)


def webhook_app(on_posts: Callable[[list[SocialPost]], None], counters: Counter[str], token: str) -> web.Application:
    """An app with `POST /posts`: 200 {"accepted": n, "rejected": m}; 401 without the bearer
    `token`, 415 for a body not sent as application/json, 400 on a body that is not JSON."""
    if not token:
        raise ValueError("the post webhook needs a non-empty token")
    expected = f"Bearer {token}".encode()

    async def handle(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            counters["unauthorized"] += 1
            return web.json_response(
                {"error": "missing or wrong token; send Authorization: Bearer <discovery.social.webhook_token>"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.content_type != "application/json":
            counters["bad_content_type"] += 1
            return web.json_response({"error": "send the posts as Content-Type: application/json"}, status=415)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            counters["bad_body"] += 1
            return web.json_response({"error": "body is not JSON; send a post object or a list of them"}, status=400)
        items = body if isinstance(body, list) else [body]
        posts = [p for p in (post_from_json(i, "webhook", counters) for i in items) if p is not None]
        if posts:
            on_posts(posts)
        counters["webhook_posts"] += len(posts)
        return web.json_response({"accepted": len(posts), "rejected": len(items) - len(posts)})

    app = web.Application()
    app.router.add_post("/posts", handle)
    return app


async def start_webhook(app: web.Application, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    """Serve `app` on host:port (0 = any free port); stop it with `await runner.cleanup()`."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
