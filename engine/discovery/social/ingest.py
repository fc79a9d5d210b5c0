"""Generic post ingest, so anything can feed discovery: a JSONL file tail and a local webhook.

Both take the generic JSON post shape of `read_post`. The tail reads only complete new lines
(a half-written last line waits for its newline) and counts bad lines. It follows the *name*,
like `tail -F`: when the path is a new file (its device and inode changed: `os.replace` by a
scraper, logrotate's rename and create) it reads the new file from its start, and when the file
shrinks (truncated in place) it starts over; lines written to a renamed-away file after the
last poll are not read. It reads regular files only: opening a FIFO would block a thread (and
the engine's exit) until something writes to it, so a FIFO, a directory or a missing file is a
`problem` the poller logs once, not an error every poll.

The webhook is an aiohttp handler, `POST /posts` with one post or a list, served on 127.0.0.1
unless told otherwise. It answers what it took and, post by post, what it refused and why: a
malformed post, and (with `screen`, discovery's own verdict) a stale or future one, one naming
no coin the exchange lists, or a repeat; a sender that is told "accepted" is counted.

Loopback is not a boundary: every local user can reach it, and so can any web page the owner
opens (a `text/plain` POST is a CORS "simple" request, sent without asking). Forty fake KOL
posts are enough to push a coin's heat to 100, so the webhook takes a post only with the shared
token in `Authorization: Bearer <token>` (compared in constant time) and only as
`application/json`, which a page cannot send cross-origin without a preflight we never answer.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from engine.discovery.social.source import (
    Refusal,
    SocialPost,
    SocialSource,
    post_from_json,
    read_post,
)
from engine.errors import ConfigError
from engine.ops.listen import listening_socket

Screen = Callable[[SocialPost], tuple[str, ...] | Refusal]


class JsonlTail(SocialSource):
    """Posts appended to a JSONL file since the last read."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.counters: Counter[str] = Counter()
        self.problem: str | None = None  # why the file cannot be read now (missing, not a file); None: reading
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file `offset` is in

    def _trouble(self, counter: str, problem: str) -> list[SocialPost]:
        self.counters[counter] += 1
        self.problem = problem
        return []

    def read_new(self) -> list[SocialPost]:
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return self._trouble("file_missing", f"{self.path} does not exist (yet): waiting for it")
        except OSError as exc:
            return self._trouble("file_unreadable", f"{self.path} cannot be opened ({exc.strerror or exc})")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return self._trouble("not_a_file", f"{self.path} is not a regular file: discovery.social.jsonl_path names a file posts are appended to")
        with open(fd, "rb") as fh:
            self.problem = None
            identity = (st.st_dev, st.st_ino)
            if identity != self._identity:
                if self._identity is not None:  # replaced or rotated: a new file under the same name
                    self.counters["file_replaced"] += 1
                    self.offset = 0
                self._identity = identity
            elif st.st_size < self.offset:
                self.counters["file_truncated"] += 1
                self.offset = 0
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


def webhook_app(
    on_posts: Callable[[list[SocialPost]], None], counters: Counter[str], token: str, screen: Screen | None = None
) -> web.Application:
    """An app with `POST /posts`: 200 {"accepted": n, "rejected": m, "rejections": [{"index",
    "id", "reason", "detail"}]}; 401 without the bearer `token`, 415 for a body not sent as
    application/json, 400 on a body that is not JSON. `screen` (discovery's verdict on a post
    now) refuses posts that would not count; without it only malformed posts, and a post id
    repeated in one body (a post id counts once), are refused."""
    if not token:
        raise ValueError("the post webhook needs a non-empty token")
    expected = f"Bearer {token}".encode()

    def verdict(item: Any) -> SocialPost | Refusal:
        post = read_post(item, "webhook", counters)
        if isinstance(post, SocialPost) and screen is not None:
            counted = screen(post)
            if isinstance(counted, Refusal):
                return counted
        return post

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
        posts: list[SocialPost] = []
        rejections: list[dict[str, Any]] = []
        taken: set[str] = set()
        for index, item in enumerate(items):
            post = verdict(item)
            if isinstance(post, SocialPost) and post.post_id in taken:
                # `screen` knows the posts discovery took and the ones queued for it, not the
                # ones before this one in the same body: the answer said "accepted" for both
                # copies, though discovery counts one.
                post = Refusal("duplicate_post", f"post id {post.post_id!r} came earlier in this request")
            if isinstance(post, SocialPost):
                taken.add(post.post_id)
                posts.append(post)
                continue
            counters[f"rejected:{post.reason}"] += 1
            post_id = item.get("id") if isinstance(item, dict) else None
            rejections.append({"index": index, "id": post_id, "reason": post.reason, "detail": post.detail})
        if posts:
            on_posts(posts)
        counters["webhook_posts"] += len(posts)
        return web.json_response({"accepted": len(posts), "rejected": len(rejections), "rejections": rejections})

    app = web.Application()
    app.router.add_post("/posts", handle)
    return app


def bind_webhook_port(port: int, host: str = "127.0.0.1") -> socket.socket:
    """The webhook's port, bound (0: any free port); a taken one is a `ConfigError` naming
    `discovery.social.webhook_port` and the way out."""
    try:
        return listening_socket(host, port)
    except OSError as exc:  # another engine, another program
        raise ConfigError(
            f"discovery.social.webhook_port={port}: cannot listen on {host}:{port} "
            f"({exc.strerror or exc}); another hotcoin engine or program may be using it. Stop it, pick a free port "
            "(HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_PORT=...), or unset discovery.social.webhook_port"
        ) from exc


async def start_webhook(app: web.Application, listener: socket.socket) -> web.AppRunner:
    """Serve `app` on `listener` (`bind_webhook_port`), which it then owns; stop it with
    `await runner.cleanup()`."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.SockSite(runner, listener).start()
    except BaseException:
        await runner.cleanup()
        listener.close()
        raise
    return runner
