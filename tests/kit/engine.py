"""Build a real `Engine` on a small deterministic simulated market with a scripted pump.

The market has no random pumps, dumps or listings, so the only hot coin is the one the test
scripts; the feed runs in lockstep (5 s of sim time per batch, no sleeping) so a run is fast
and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.clock import SimClock
from engine.config import HotcoinConfig, load_config
from engine.execution.broker import Broker
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.writer import Journal
from engine.runtime.engine import Engine, OrderStream
from engine.runtime.feed import SimFeed
from engine.runtime.session import WARMUP_MS
from engine.runtime.snapshot import Mode
from engine.signals.scorer import ModelLoad
from engine.sim.market import SimMarket
from engine.sim.scenario import Move

START_MS = 1_700_000_000_000 // 60_000 * 60_000
PUMP_SYMBOL_INDEX = 5  # the sixth plain alt coin of the quiet market


def quiet_config(**overrides: Any) -> HotcoinConfig:
    cli: dict[str, Any] = {
        "sim.symbols": 40,
        "sim.pumps_per_day": 0,
        "sim.dumps_per_day": 0,
        "sim.listings_per_day": 0,
        "ops.http_enabled": False,
    }
    cli.update(overrides)
    return load_config(env={}, cli=cli).config


def plain_alts(market: SimMarket) -> list[str]:
    skip = {"BTC", "ETH", "BNB", "USDC", "BUSD", "TUSD"}
    return [s for s in market.symbols if s.split("/")[0] not in skip and not s.split("/")[0].endswith(("UP", "DOWN"))]


def script_pump(market: SimMarket, start_ms: int, *, size: float = 0.6, ramp_min: int = 20) -> str:
    symbol = plain_alts(market)[PUMP_SYMBOL_INDEX]
    market.script(
        Move(symbol, start_ms, start_ms + ramp_min * 60_000, start_ms + 3 * ramp_min * 60_000, math.log1p(size), 0.4, 15.0, 120_000)
    )
    return symbol


@dataclass
class EngineRig:
    engine: Engine
    market: SimMarket
    pump_symbol: str
    journal: Journal


@asynccontextmanager
async def pump_rig(
    journal_path: Path,
    config: HotcoinConfig | None = None,
    broker: Broker | None = None,
    model: ModelLoad | None = None,
    feed_type: type[SimFeed] = SimFeed,
    start_ms: int = START_MS,
    run_id: str = "test-run",
    pump_ms: int | None = None,
    order_stream: OrderStream | None = None,
) -> AsyncIterator[EngineRig]:
    """`start_ms`: where the sim clock starts (a restart after an earlier rig's run starts later,
    under its own `run_id` as a real restart does); `pump_ms`: when the pump starts (5 minutes
    after `start_ms` by default; a restart's warm-up replays an earlier rig's pump if given
    its time); `order_stream`: the user stream of an exchange broker (`Engine`)."""
    config = config or quiet_config()
    market = SimMarket(config.sim, start_ms - WARMUP_MS)
    symbol = script_pump(market, start_ms + 5 * 60_000 if pump_ms is None else pump_ms)
    feed = feed_type(market, SimClock(start_ms, 1.0), interval_ms=5_000, lockstep=True)
    broker = broker or PaperBroker(FillModel.from_settings(config.trading.execution))
    async with Journal.open(journal_path, config.journal) as journal:
        engine = Engine(config, feed, broker, journal, run_id=run_id, mode=Mode.SIM, model=model, order_stream=order_stream)
        yield EngineRig(engine, market, symbol, journal)
