"""A running sim exchange and a real ccxt.pro client pointed at it, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.sim.server import SimExchangeServer
from tests.kit.sim_exchange import FakeMarketSource, make_binance_client, running_sim_exchange


@pytest.fixture
def source() -> FakeMarketSource:
    return FakeMarketSource()


@pytest.fixture
async def sim(source: FakeMarketSource) -> AsyncIterator[SimExchangeServer]:
    async with running_sim_exchange(source) as server:
        yield server


@pytest.fixture
async def ex(sim: SimExchangeServer) -> AsyncIterator[Any]:
    client = make_binance_client(sim.base_url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()
