"""Build a real `Engine` in exchange mode: the simulated exchange on 127.0.0.1:0 (a quiet
`SimMarket` with one scripted pump), the real ccxt.pro gateway at its URL, `GatewayFeed`,
and the exchange broker (orders really hit the sim's matching engine) or the paper broker.

The exchange runs at `speed` x wall time and the gateway keeps its time (`ExchangeClock`),
so a whole pump is traded in seconds and every threshold in the config is in exchange
seconds (at x300, `stale_degraded_s=60` is 0.2 s of wall time). The pump is scripted once
the engine has made its first cycle, `pump_after_ms` of exchange time later: a loaded box
takes seconds to start an engine, and at x300 a pump timed from the server's start had come
and gone before the engine saw a price. The handle exposes the
server (`rig.server.faults`, `rig.server.drop_websockets()`) and the sim's account of our
API key (`rig.account()`), for faults and for checking what really happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from engine.config import HotcoinConfig
from engine.execution.broker import Broker
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.writer import Journal
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.exchange_clock import ExchangeClock
from engine.runtime.engine import Engine
from engine.runtime.gateway_feed import GatewayFeed
from engine.runtime.session import notice_log, order_durability, server_time_ms
from engine.runtime.snapshot import Mode
from engine.sim.market import SimMarket
from engine.sim.matching import Account
from engine.sim.server import FaultPlan, SimExchangeServer
from tests.kit.engine import PUMP_SYMBOL_INDEX, START_MS, plain_alts, quiet_config, script_pump
from tests.kit.sim_exchange import API_KEY, SECRET, running_sim_exchange
from tests.kit.waiting import eventually

SPEED = 300.0  # exchange seconds per wall second: a 30-minute pump trades in about 6 s
PUMP_AFTER_MS = 8 * 60_000  # after the first cycle: discovery needs ~5 min of its own history before z-scores count


def exchange_config(**overrides: Any) -> HotcoinConfig:
    """The quiet test market, reached as the simulated exchange. Requests get 10 s: a kline
    request slowed past a tight timeout by a loaded box costs the engine a bar; the fault
    tests that inject hangs set their own short timeout.

    Entries need heat 62, not the starter profile's 70: the scripted pump's momentum is full
    (heat 60) from its fifth minute, and its volume surge, scored against minutes that the
    x300 clock samples unevenly, adds 10 to 17, so at 70 whether the pump was traded at all
    hung on a few tenths of a point (journals of failed runs: 69.7, 69.9, 69.2, then 70.4
    a minute past the entry's not-extended limit)."""
    cli: dict[str, Any] = {
        "exchange.name": "sim",
        "exchange.request_timeout_ms": 10_000,
        "trading.capital.profiles.starter.min_heat": 62.0,
    }
    cli.update(overrides)
    return quiet_config(**cli)


@dataclass
class ExchangeRig:
    engine: Engine
    server: SimExchangeServer
    market: SimMarket
    gateway: CcxtGateway
    feed: GatewayFeed
    journal: Journal
    pump_symbol: str | None

    def account(self) -> Account:
        """Our account on the sim: balances, every order by client id, every execution."""
        return self.server.venue.engine.account(API_KEY)


@asynccontextmanager
async def exchange_rig(
    journal_path: Path,
    config: HotcoinConfig | None = None,
    *,
    broker: Literal["exchange", "paper"] = "exchange",
    speed: float = SPEED,
    pump_after_ms: int | None = PUMP_AFTER_MS,
    idle_s: float = 0.2,
    exchange_fee_rate: Decimal = Decimal("0.001"),
    start_ms: int = START_MS,
    faults: FaultPlan | None = None,
) -> AsyncIterator[ExchangeRig]:
    """`pump_after_ms=None`: no pump (fault tests that only need a running engine).
    `exchange_fee_rate`: the sim's commission (charged in the asset received, as Binance does).
    `start_ms`: where the sim's market and clock start. `faults`: the sim's from its start,
    before the engine reads its clock. The gateway's clock is read from the sim's
    `/api/v3/time`, and re-read there when the feed asks, as `hotcoin run`'s is."""
    config = config or exchange_config()
    market = SimMarket(config.sim, start_ms)
    symbol = None if pump_after_ms is None else plain_alts(market)[PUMP_SYMBOL_INDEX]
    async with running_sim_exchange(
        market, speed=speed, push_interval_s=0.05, tick_s=0.02, fee_rate=exchange_fee_rate, faults=faults
    ) as server:
        section = config.exchange.model_copy(
            update={"endpoint": server.base_url, "api_key": SecretStr(API_KEY), "api_secret": SecretStr(SECRET)}
        )
        base_url = server.base_url  # a sim restarted on the same port is read there too

        async def read_time() -> int:
            return await server_time_ms(base_url, 10_000)

        clock = ExchangeClock(await read_time(), speed, fetch_time=read_time)
        # The gateway's notices logged as `hotcoin run` logs them (one line per outage and stream).
        gateway = CcxtGateway(section, clock=clock, notify=notice_log())
        feed = GatewayFeed(gateway, clock=clock, idle_s=idle_s)
        chosen: Broker = (
            ExchangeBroker(gateway) if broker == "exchange" else PaperBroker(FillModel.from_settings(config.trading.execution))
        )
        try:
            async with Journal.open(journal_path, config.journal) as journal:
                engine = Engine(
                    config, feed, chosen, journal, run_id="test-run", mode=Mode.SIM,
                    durable=order_durability(chosen, journal),
                    order_stream=gateway.watch_orders if isinstance(chosen, ExchangeBroker) else None,
                )
                pump = None if pump_after_ms is None else asyncio.create_task(_pump_once_started(engine, market, server, pump_after_ms))
                try:
                    yield ExchangeRig(engine, server, market, gateway, feed, journal, symbol)
                finally:
                    if pump is not None:
                        pump.cancel()
        finally:
            await feed.close()


async def _pump_once_started(engine: Engine, market: SimMarket, server: SimExchangeServer, after_ms: int) -> None:
    """Script the pump `after_ms` of exchange time after the engine's first cycle, on a
    minute boundary as a real move would start."""
    await eventually(lambda: engine.core is not None, timeout=3600)
    start = (server.venue.clock.now_ms() + after_ms) // 60_000 * 60_000 + 60_000
    script_pump(market, start)
