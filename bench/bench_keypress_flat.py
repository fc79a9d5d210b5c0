"""Key press to flat: close-all from an attached console, 20 positions, until every exit is
acknowledged by the simulated exchange (target <= 1 s).

The whole path is real: `hotcoin sim-exchange`'s server on 127.0.0.1, an engine session in
exchange mode (ccxt.pro gateway, exchange broker, journal, its 0600 attach socket), and the
Textual console attached through `RemoteEngineClient` (headless, 120x36). Entries are paused
and exits set so that nothing sells on its own; 20 positions are bought through the engine's
router. Timed: from `ctrl+x` + `Y` in the console to the first snapshot the console receives
that says close-all is done and no position is left (the exits were acknowledged before the
engine published it).

    .venv/bin/python -m bench.bench_keypress_flat [--rounds 3] [--positions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from engine.config import load_config
from engine.domain import OrderIntent, OrderPurpose, OrderType, Side
from engine.execution.client_ids import client_order_id
from engine.journal.events import make_trace_id
from engine.runtime.client import Command
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.session import RunOptions, open_session
from engine.runtime.socket_server import default_socket_path
from engine.sim.market import SimMarket
from engine.sim.server import SimExchangeServer

SKIP = ("BTC", "ETH", "BNB", "USDC", "BUSD", "TUSD")
HOLD = {  # exits that never fire on their own: only close-all sells
    "trading.exits.take_profit": [{"gain": 50.0, "fraction": 1.0}],
    "trading.exits.stop_loss": 0.9,
    "trading.exits.trailing_activation": 50.0,
    "trading.exits.exit_on_signal": False,
    "trading.exits.max_hold_ms": 30 * 86_400_000,
}


async def _until(condition: object, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.002)


async def one_round(positions: int, rnd: int, tmp: Path) -> float:
    from hotcoin_tui.app import HotcoinApp

    quiet = {"sim.symbols": 60, "sim.pumps_per_day": 0, "sim.dumps_per_day": 0, "sim.listings_per_day": 0}
    market = SimMarket(load_config(env={}, cli=quiet).config.sim, int(time.time() * 1000))
    server = SimExchangeServer(market, speed=1.0, start_balance=Decimal(1_000_000), push_interval_s=1.0)
    await server.start()
    data = tmp / f"round{rnd}"
    config = load_config(
        env={},
        cli={
            **HOLD,
            "exchange.name": "sim",
            "exchange.endpoint": server.base_url,
            "paths.data_dir": str(data),
            "ops.http_enabled": False,
        },
    ).config
    try:
        async with open_session(config, RunOptions(demo=False, speed=1.0)) as session:
            engine = session.engine
            run = asyncio.create_task(engine.run())
            await engine.command(Command.PAUSE, "bench")
            await _until(lambda: engine.core is not None and engine.hub.latest is not None)
            core = engine.core
            assert core is not None
            markets = core.markets
            symbols = [s for s in markets if not s.startswith(SKIP) and not s.split("/")[0].endswith(("UP", "DOWN"))][:positions]
            books = {s: engine.feed.book(s) for s in symbols}
            buys = [
                OrderIntent(
                    client_order_id=client_order_id(make_trace_id("keypress", rnd, s), OrderPurpose.ENTRY),
                    trace_id=make_trace_id("keypress", rnd, s),
                    symbol=s,
                    side=Side.BUY,
                    order_type=OrderType.MARKET,
                    purpose=OrderPurpose.ENTRY,
                    quantity=markets[s].round_qty(30.0 / books[s][1]),
                    reference_price=books[s][1],
                )
                for s in symbols
                if books[s][1] > 0
            ]
            latest = engine.hub.latest
            assert latest is not None, "the engine published no snapshot before the buys"
            now = latest.ts_ms
            for update in await engine.router.send_all(buys, now):  # between cycles, on the engine's loop
                core.on_order_update(update, now)
            async with RemoteEngineClient(default_socket_path(data)) as client:
                console = HotcoinApp(client, config.tui, attached=True)
                async with console.run_test(size=(120, 36)) as pilot:
                    await _until(lambda: console.snapshot is not None and len(console.snapshot.positions) == len(buys))
                    started = time.perf_counter()
                    await pilot.press("ctrl+x")
                    await pilot.press("Y")
                    await _until(
                        lambda: console.snapshot is not None
                        and console.snapshot.close_all is not None
                        and console.snapshot.close_all.done
                        and not console.snapshot.positions
                    )
                    elapsed = time.perf_counter() - started
            engine.stop()
            await run
    finally:
        await server.stop()
    return elapsed


async def main_async(rounds: int, positions: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        times = [await one_round(positions, r, Path(tmp)) for r in range(rounds)]
    ms = [t * 1000 for t in times]
    print(f"key press -> flat, {positions} positions via the attached console: median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms over {rounds} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--positions", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main_async(args.rounds, args.positions))


if __name__ == "__main__":
    main()
