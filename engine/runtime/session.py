"""Build a running engine from config and options: market feed, broker, journal, ops server.

`hotcoin run` (headless) and `hotcoin tui` (in-process UI) both open an `EngineSession`;
the only difference is who watches it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.errors import ConfigError
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.events import JournalEvent
from engine.journal.writer import Journal
from engine.ops.http import OpsServer
from engine.ops.notify.service import open_notifications
from engine.runtime.engine import Engine, trace_events
from engine.runtime.feed import SimFeed
from engine.runtime.local_client import LocalEngineClient
from engine.runtime.snapshot import Mode
from engine.runtime.socket_server import default_socket_path, serve_engine_socket
from engine.sim.market import SimMarket, open_market
from engine.sim.scenario import Move, PumpEvent

log = logging.getLogger("hotcoin.session")

# Discovery's longest window is 60 minutes; the simulated market starts this much earlier and
# is fast-forwarded so the demo trades from its first minute.
WARMUP_MS = 65 * 60_000
# Random pumps come about once an hour market-wide; a demo watched for a minute at x60 should
# still see one whole trade, so the demo market scripts its first pump a few minutes in.
DEMO_PUMP_AFTER_MS = 3 * 60_000


def script_demo_pump(market: SimMarket, at_ms: int) -> PumpEvent:
    """A +60% pump over 20 minutes on the most liquid free plain alt coin (recorded in ground truth)."""
    batch = market.tickers()
    skip = ("BTC", "ETH", "BNB", "USDC", "BUSD", "TUSD")
    alts = [
        (float(batch.quote_volume_24h[i]), s)
        for i, s in enumerate(batch.symbols)
        if not s.split("/")[0].startswith(skip) and not s.split("/")[0].endswith(("UP", "DOWN"))
    ]
    for _, symbol in sorted(alts, reverse=True):
        move = Move(symbol, at_ms, at_ms + 20 * 60_000, at_ms + 60 * 60_000, math.log1p(0.6), 0.4, 15.0, 120_000)
        try:
            market.script(move)
        except ValueError:  # this coin already has a random move planned then: take the next
            continue
        return move.event()
    raise ValueError("no alt coin is free for the demo pump; lower sim.pumps_per_day")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What the command line chose, beyond the config file."""

    demo: bool = True
    live: bool = False
    confirm_live: bool = False
    speed: float = 1.0
    http: bool = True
    start_ms: int | None = None  # sim start time; default: now
    demo_pump: bool = True  # script one pump early in a generated market, so a demo shows a trade
    attach_socket: bool = True  # serve the engine client on a 0600 Unix socket for `hotcoin tui --attach`


@dataclass(frozen=True, slots=True)
class EngineSession:
    engine: Engine
    client: LocalEngineClient
    journal_path: Path
    run_id: str
    ops_port: int | None


def new_run_id(now_ms: int) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ms / 1000)) + "-" + secrets.token_hex(3)


def mode_of(config: HotcoinConfig, options: RunOptions) -> Mode:
    if options.demo or config.exchange.name == "sim":
        return Mode.SIM
    return Mode.LIVE if options.live else Mode.PAPER


def check_live(config: HotcoinConfig, options: RunOptions) -> None:
    """Live trading needs keys *and* an explicit confirmation; anything less is refused."""
    if not options.live:
        return
    if options.demo or config.exchange.name == "sim":
        raise ConfigError("--live trades real money and cannot run on the simulated market; drop --demo or --live")
    if config.exchange.api_key is None or config.exchange.api_secret is None:
        raise ConfigError(
            "--live needs exchange.api_key and exchange.api_secret in the secrets file (chmod 600) "
            "or HOTCOIN_EXCHANGE__API_KEY / HOTCOIN_EXCHANGE__API_SECRET"
        )
    if not options.confirm_live:
        raise ConfigError("--live sends real orders; add --yes-really-trade-live to confirm")


@contextlib.asynccontextmanager
async def open_session(config: HotcoinConfig, options: RunOptions) -> AsyncIterator[EngineSession]:
    check_live(config, options)
    mode = mode_of(config, options)
    if mode is not Mode.SIM:
        raise ConfigError(
            "trading on Binance from `hotcoin run` is not wired yet; use --demo (the simulated market)"
        )
    start_ms = options.start_ms if options.start_ms is not None else time.time_ns() // 1_000_000
    run_id = new_run_id(start_ms)
    clock = SimClock(start_ms, options.speed)
    market = open_market(config.sim, start_ms - WARMUP_MS)
    if options.demo_pump and isinstance(market, SimMarket):
        script_demo_pump(market, start_ms + DEMO_PUMP_AFTER_MS)
    feed = SimFeed(market, clock)
    ex = config.trading.execution
    broker = PaperBroker(FillModel(ex.fee_rate, ex.maker_fee_rate, ex.slippage_bps))
    journal_path = config.journal_path
    async with Journal.open(journal_path, config.journal) as journal:
        engine = Engine(config, feed, broker, journal, run_id=run_id, mode=mode)

        async def trace(trace_id: str) -> list[JournalEvent]:
            await journal.flush()
            return await trace_events(str(journal_path), trace_id)

        client = LocalEngineClient(engine.hub, engine.command, engine.candles, engine.fills, trace)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(feed.close)
            ops: OpsServer | None = None
            if options.http and config.ops.http_enabled:
                ops = OpsServer(
                    engine.metrics,
                    lambda: engine.hub.latest,
                    lambda: {"journal": journal.unwritten},
                    config.ops.http_host,
                    config.ops.http_port,
                )
                await ops.start()
                stack.push_async_callback(ops.stop)
            if options.attach_socket:
                # `hotcoin tui --attach` reaches this engine here; closing a TUI never stops it.
                await stack.enter_async_context(serve_engine_socket(default_socket_path(config.paths.data_dir), client))
            bridge = await stack.enter_async_context(open_notifications(config, client, journal_path))
            engine.observe(bridge.on_event)
            yield EngineSession(engine, client, journal_path, run_id, ops.port if ops else None)
