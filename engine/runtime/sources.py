"""The slow discovery inputs of a running engine: exchange announcements and social posts.

Each source polls on its own schedule in its own task and hands what it found to the engine
(`Engine.deliver_posts` / `deliver_announcements`), which folds it into discovery at the start
of its next cycle: the discovery core stays single-threaded and clock-free. Sources are off
unless configured; the announcement poller reads the real exchange's announcements, so it
runs only when the engine trades a real market (never on the simulated one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from engine.config import HotcoinConfig
from engine.discovery.announcements import AnnouncementPoller
from engine.discovery.social.binance_square import BinanceSquareFeed
from engine.discovery.social.ingest import JsonlTail, start_webhook, webhook_app
from engine.discovery.social.source import SocialPost, SocialSource
from engine.discovery.social.x_search import XRecentSearch
from engine.runtime.engine import Engine
from engine.runtime.snapshot import Mode

log = logging.getLogger("hotcoin.sources")


async def _poll(source: SocialSource, deliver: Callable[[list[SocialPost]], None], interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            posts = await source.fetch()
        except Exception:  # a broken source is logged and retried; it never stops the engine
            log.exception("social source %s failed", source.name)
            posts = []
        if posts:
            deliver(posts)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


@contextlib.asynccontextmanager
async def discovery_sources(config: HotcoinConfig, mode: Mode, engine: Engine) -> AsyncIterator[list[str]]:
    """Run the configured sources for the duration of the block; yields their names."""
    social = config.discovery.social
    listings = config.discovery.listings
    stop = asyncio.Event()
    names: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)))
        tasks: list[asyncio.Task[None]] = []
        polled: list[tuple[SocialSource, float]] = []
        if social.x_bearer_token is not None:
            polled.append((XRecentSearch(http, bearer_token=social.x_bearer_token, query=social.x_query, base_url=social.x_base_url), social.x_poll_ms / 1000))
        if social.square_url is not None:
            polled.append((BinanceSquareFeed(http, social.square_url), social.square_poll_ms / 1000))
        if social.jsonl_path is not None:
            polled.append((JsonlTail(Path(social.jsonl_path)), social.jsonl_poll_ms / 1000))
        for source, interval in polled:
            tasks.append(asyncio.create_task(_poll(source, engine.deliver_posts, interval, stop), name=f"social:{source.name}"))
            names.append(source.name)
        if social.webhook_port is not None and social.webhook_token is not None:  # the config refuses a port without a token
            app = webhook_app(engine.deliver_posts, Counter(), social.webhook_token.get_secret_value())
            runner = await start_webhook(app, social.webhook_port)
            stack.push_async_callback(runner.cleanup)
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
