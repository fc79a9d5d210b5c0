"""Emergency close-all of 20 positions against the simulated exchange: from the call to every
exit acknowledged by the exchange (target <= 1 s).

Everything is the real thing except the market: the sim exchange serves Binance's REST and
WebSocket on 127.0.0.1, the engine reaches it through the ccxt.pro gateway and the exchange
broker, and `engine.execution.close_all.close_all` cancels every open order (one resting
LIMIT per round, so the cancel leg is exercised too) and sells every position at market,
concurrently. Each round first buys 20 positions through the same router, then times the
close. Also timed: the same close sent one order at a time, to show what concurrency buys.

    .venv/bin/python -m bench.bench_close_all [--rounds 5] [--positions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from decimal import Decimal

from pydantic import SecretStr

from engine.config import load_config
from engine.domain import Market, OrderIntent, OrderPurpose, OrderType, Side
from engine.execution.client_ids import client_order_id
from engine.execution.close_all import close_all
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.router import OrderRouter
from engine.journal.events import make_trace_id
from engine.market.ccxt_gateway import CcxtGateway
from engine.sim.market import SimMarket
from engine.sim.server import SimExchangeServer
from engine.trading import TradingCore
from tests.kit.events import RecordingSink

SKIP = ("BTC", "ETH", "BNB", "USDC", "BUSD", "TUSD")


def _buy(market: Market, price: float, notional: float, trace: str) -> OrderIntent:
    return OrderIntent(
        client_order_id=client_order_id(trace, OrderPurpose.ENTRY),
        trace_id=trace,
        symbol=market.symbol,
        side=Side.BUY,
        order_type=OrderType.MARKET,
        purpose=OrderPurpose.ENTRY,
        quantity=market.round_qty(notional / price),
        reference_price=price,
    )


async def one_round(gateway: CcxtGateway, markets: dict[str, Market], symbols: list[str], rnd: int, sequential: bool) -> float:
    config = load_config(env={}, cli={"trading.capital.profile": "full"}).config
    sink = RecordingSink()
    broker = ExchangeBroker(gateway)
    router = OrderRouter(broker, sink)
    core = TradingCore(config.trading, markets, sink, run_id=f"bench-{rnd}")
    batch = await gateway.fetch_tickers()
    last = {s: float(batch.last[i]) for i, s in enumerate(batch.symbols)}
    now = batch.ts_ms
    buys = [_buy(markets[s], last[s], 30.0, make_trace_id("bench", rnd, s)) for s in symbols]
    for update in await router.send_all(buys, now):
        core.on_order_update(update, now)
    # One resting limit far below the market: close-all must cancel it before selling.
    first = markets[symbols[0]]
    trace = make_trace_id("bench-limit", rnd)
    limit = OrderIntent(
        client_order_id=client_order_id(trace, OrderPurpose.ENTRY),
        trace_id=trace,
        symbol=first.symbol,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        purpose=OrderPurpose.ENTRY,
        quantity=first.round_qty(30.0 / (last[first.symbol] * 0.5)),
        price=first.round_price(last[first.symbol] * 0.5),
        reference_price=last[first.symbol],
    )
    await router.send(limit, now)
    assert len(core.book.holdings) == len(symbols), f"opened {len(core.book.holdings)} of {len(symbols)}"
    started = time.perf_counter()
    if sequential:
        open_orders = await broker.open_orders()
        for order in open_orders:
            await router.cancel(order, now)
        start = core.begin_close_all(now, "bench")
        for intent in core.close_all_intents(now):
            sent = await router.send(intent, now, start.seq)
            if sent is not None:
                core.on_order_update(sent, now)
    else:
        report = await close_all(core, router, now, "bench")
        if report.still_open:
            why = [(e.kind, dict(e.payload)) for e in sink.events if e.kind in ("order_result", "signal_snapshot")][-2:]
            raise AssertionError(f"close-all left {report.still_open}: {why}")
    elapsed = time.perf_counter() - started
    assert not core.book.holdings, f"still open: {sorted(core.book.holdings)}"
    return elapsed


async def main_async(rounds: int, positions: int) -> None:
    settings = load_config(env={}, cli={"sim.symbols": 60, "sim.pumps_per_day": 0, "sim.dumps_per_day": 0, "sim.listings_per_day": 0}).config
    market = SimMarket(settings.sim, 1_700_000_000_000)
    server = SimExchangeServer(market, speed=1.0, start_balance=Decimal(1_000_000))
    await server.start()
    section = settings.exchange.model_copy(
        update={"api_key": SecretStr("bench-key"), "api_secret": SecretStr("bench-secret"), "enable_rate_limit": False}
    )
    gateway = CcxtGateway(section, endpoint=server.base_url)
    try:
        markets = await gateway.load_markets()
        symbols = [s for s in markets if not s.startswith(SKIP) and not s.split("/")[0].endswith(("UP", "DOWN"))][:positions]
        concurrent = [await one_round(gateway, markets, symbols, r, sequential=False) for r in range(rounds)]
        sequential = [await one_round(gateway, markets, symbols, rounds + r, sequential=True) for r in range(rounds)]
    finally:
        await gateway.close()
        await server.stop()
    for name, times in (("concurrent (close_all)", concurrent), ("one order at a time", sequential)):
        ms = [t * 1000 for t in times]
        print(f"{name:24} {positions} positions + 1 open order: median {statistics.median(ms):7.1f} ms  max {max(ms):7.1f} ms  over {rounds} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--positions", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main_async(args.rounds, args.positions))


if __name__ == "__main__":
    main()
