"""The simulated exchange is never sent the owner's API keys: `hotcoin run --exchange sim
--endpoint URL` signed with the keys in the secrets file whenever it held some, handing the
real Binance key (X-MBX-APIKEY) and requests signed with the real secret to whatever answered
at the endpoint. The sim accepts any key, so the run signs with the sim's own."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from pydantic import SecretStr

from engine.config import HotcoinConfig
from engine.execution.paper import FillModel, PaperBroker
from engine.runtime.session import SIM_API_KEY, RunOptions, exchange_feed
from engine.sim.server import SimExchangeServer
from tests.kit.exchange_rig import exchange_config
from tests.kit.sim_exchange import FakeMarketSource

OWNER_KEY, OWNER_SECRET = "owner-real-binance-key", "owner-real-binance-secret"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def with_keys(config: HotcoinConfig, key: str, secret: str) -> HotcoinConfig:
    """`config` as loaded with `key` and `secret` in the secrets file."""
    section = config.exchange.model_copy(update={"api_key": SecretStr(key), "api_secret": SecretStr(secret)})
    return config.model_copy(update={"exchange": section})


async def test_a_run_on_the_sim_exchange_signs_with_the_sims_key_not_the_configured_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    @web.middleware
    async def record_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if "X-MBX-APIKEY" in request.headers:
            seen.append(request.headers["X-MBX-APIKEY"])
        return await handler(request)

    server = SimExchangeServer(FakeMarketSource(), speed=60.0, push_interval_s=0.05, tick_s=0.02)
    server.app.middlewares.append(record_key)  # before start() freezes the app
    await server.start()
    try:
        config = with_keys(exchange_config(**{"exchange.endpoint": server.base_url}), OWNER_KEY, OWNER_SECRET)
        with caplog.at_level(logging.INFO, logger="hotcoin.session"):
            feed, _ = await exchange_feed(config, RunOptions(demo=False, speed=60.0), PaperBroker(FillModel()))
        try:
            await feed.gateway.fetch_balance()  # a signed request
        finally:
            await feed.close()
    finally:
        await server.stop()
    assert seen and set(seen) == {SIM_API_KEY}, seen
    said = [r.getMessage() for r in caplog.records if "not sent to the simulated exchange" in r.getMessage()]
    assert len(said) == 1, said  # said once, at the start
    assert OWNER_KEY not in said[0] and OWNER_SECRET not in said[0]


async def test_without_configured_keys_nothing_is_said_about_them(caplog: pytest.LogCaptureFixture) -> None:
    server = SimExchangeServer(FakeMarketSource(), speed=60.0, push_interval_s=0.05, tick_s=0.02)
    await server.start()
    try:
        config = exchange_config(**{"exchange.endpoint": server.base_url})
        with caplog.at_level(logging.INFO, logger="hotcoin.session"):
            feed, _ = await exchange_feed(config, RunOptions(demo=False, speed=60.0), PaperBroker(FillModel()))
        try:
            await feed.gateway.fetch_balance()
        finally:
            await feed.close()
    finally:
        await server.stop()
    assert not [r for r in caplog.records if "not sent to the simulated exchange" in r.getMessage()]
