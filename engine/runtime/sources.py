"""The slow discovery inputs of a running engine: exchange announcements and social posts.

Each source polls on its own schedule in its own task and hands what it found to the engine
(`Engine.deliver_posts` / `deliver_announcements`), which folds it into discovery at the start
of its next cycle: the discovery core stays single-threaded and clock-free. Sources are off
unless configured; the announcement poller reads the real exchange's announcements, so it
runs only when the engine trades a real market (never on the simulated one).

A source in trouble (a JSONL path that is missing or not a file, an exception) is logged when
its trouble starts, changes or ends, never at every poll: one line a second buries the log and
says nothing new. Each source's counters are exported with discovery's
(`hotcoin_discovery_events_total`), and a webhook that cannot listen stops the start with a
one-line `ConfigError` naming `discovery.social.webhook_port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from engine.config import HotcoinConfig
from engine.discovery.announcements import AnnouncementPoller
from engine.discovery.social.binance_square import BinanceSquareFeed
from engine.discovery.social.ingest import JsonlTail, bind_webhook_port, start_webhook, webhook_app
from engine.discovery.social.source import SocialPost, SocialSource
from engine.discovery.social.x_search import XRecentSearch
from engine.runtime.engine import Engine
from engine.runtime.snapshot import Mode

log = logging.getLogger("hotcoin.sources")


async def _poll(source: SocialSource, deliver: Callable[[list[SocialPost]], None], interval_s: float, stop: asyncio.Event) -> None:
    failure: str | None = None  # the exception logged last, until it changes or the source recovers
    problem: str | None = None  # the source's own `problem` logged last
    while not stop.is_set():
        try:
            posts = await source.fetch()
        except Exception as exc:  # a broken source is logged and retried; it never stops the engine
            if f"{type(exc).__name__}: {exc}" != failure:
                failure = f"{type(exc).__name__}: {exc}"
                log.exception("social source %s failed (retried every %g s; logged again when this changes)", source.name, interval_s)
            posts = []
        else:
            if failure is not None:
                log.info("social source %s works again", source.name)
                failure = None
        if source.problem != problem:
            if source.problem is not None:
                log.warning("social source %s: %s", source.name, source.problem)
            else:
                log.info("social source %s: reading again", source.name)
            problem = source.problem
        if posts:
            deliver(posts)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


@contextlib.asynccontextmanager
async def discovery_sources(
    config: HotcoinConfig, mode: Mode, engine: Engine, webhook_listener: socket.socket | None = None
) -> AsyncIterator[list[str]]:
    """Run the configured sources for the duration of the block; yields their names.
    `webhook_listener`: the webhook's port as the session bound it before opening any file
    (`bind_webhook_port`); without one, the configured port is bound here."""
    social = config.discovery.social
    listings = config.discovery.listings
    stop = asyncio.Event()
    names: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)))
        tasks: list[asyncio.Task[None]] = []
        polled: list[tuple[XRecentSearch | BinanceSquareFeed | JsonlTail, float]] = []
        if social.x_bearer_token is not None:
            polled.append((XRecentSearch(http, bearer_token=social.x_bearer_token, query=social.x_query, base_url=social.x_base_url), social.x_poll_ms / 1000))
        if social.square_url is not None:
            polled.append((BinanceSquareFeed(http, social.square_url), social.square_poll_ms / 1000))
        if social.jsonl_path is not None:
            polled.append((JsonlTail(Path(social.jsonl_path)), social.jsonl_poll_ms / 1000))
        webhook = False
        # Started first: a port in use stops the start before any poll task runs. (The config
        # refuses a port without a token.)
        if social.webhook_port is not None and social.webhook_token is not None:
            listener = webhook_listener if webhook_listener is not None else bind_webhook_port(social.webhook_port)
            counters: Counter[str] = Counter()
            engine.count_source("webhook", counters)
            app = webhook_app(engine.deliver_posts, counters, social.webhook_token.get_secret_value(), screen=engine.screen_post)
            runner = await start_webhook(app, listener)
            stack.push_async_callback(runner.cleanup)
            log.info("post webhook listening", extra={"url": f"http://127.0.0.1:{runner.addresses[0][1]}/posts"})
            webhook = True
        for source, interval in polled:
            engine.count_source(source.name, source.counters)
            tasks.append(asyncio.create_task(_poll(source, engine.deliver_posts, interval, stop), name=f"social:{source.name}"))
            names.append(source.name)
        if webhook:
            names.append("webhook")
        if mode is not Mode.SIM:
            poller = AnnouncementPoller(
                http,
                listings.announcement_url,
                quote_asset=config.exchange.quote_asset,
                stop_words=listings.announcement_stop_words,
                retention_ms=listings.announcement_retention_ms,
            )
            tasks.append(asyncio.create_task(poller.run(engine.deliver_announcements, listings.announcement_poll_ms / 1000, stop), name="announcements"))
            names.append("announcements")
        try:
            yield names
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
