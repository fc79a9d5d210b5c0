"""Decision latency: a ticker batch with 500 candidates -> order intent handed to the broker.

    .venv/bin/python -m bench.bench_decision_latency [--candidates 500] [--rounds 200]

Each timed round starts when the batch arrives and ends when the paper broker's `submit` is
entered for the first intent: `TradingCore.step` (marks, risk, exits; then per candidate:
features over the last 61 bars, entry rules, one `signal_snapshot`, risk and sizing checks,
pre-check, one `risk_check`) and the router's `order_attempt`, through a sink that validates
every event as the journal does.

Two cases:
- cold: the first cycle of a new bar, every candidate evaluated (the worst case, once a minute);
  every candidate passes the rules, so all 500 reach the risk checks and the first one gets the
  order (an empty book, `max_concurrent` 5).
- warm: a later cycle in the same bar (signals cached), prices move so one position's stop fires:
  the exit intent is what reaches the broker.
Wall time and the thread's CPU time are both reported: on a shared, loaded machine the wall
p99 measures the scheduler as much as the code. Target: p99 <= 20 ms (cold).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from engine.config.sections.trading import CapitalProfile, CapitalSettings, TradingSection
from engine.domain import Order, OrderIntent
from engine.execution.broker import Broker, OrderUpdate
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.journal.sinks import NullSink
from engine.runtime.headless import freeze_startup_heap
from engine.signals.bars import BarHistory
from engine.trading import TradingCore
from tests.engine.signals import market_kit as mk


class StampingBroker(Broker):
    """Notes when the first intent reaches the broker, then fills it on paper."""

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner
        self.first_ns: int | None = None
        self.first_cpu_ns = 0

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if self.first_ns is None:
            self.first_ns = time.perf_counter_ns()
            self.first_cpu_ns = time.thread_time_ns()
        return await self.inner.submit(intent, now_ms)

    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        return await self.inner.cancel(symbol, client_order_id, now_ms)

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        return await self.inner.sync(now_ms)

    def expired(self, now_ms: int) -> list[Order]:
        return self.inner.expired(now_ms)

    async def open_orders(self) -> list[Order]:
        return await self.inner.open_orders()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(n: int, rounds: int, *, gc_freeze: bool = False) -> dict[str, list[float]]:
    names = mk.symbols(n)
    settings = TradingSection(
        capital=CapitalSettings(profile="b", profiles={"b": CapitalProfile(capital=5000.0, max_concurrent=5)})
    )
    markets = mk.markets(names)
    history = BarHistory("1m")
    mk.feed_hot(history, names, mk.NOW)
    prices = dict.fromkeys(names, 1.025)
    batch = mk.book(prices, mk.NOW)
    if gc_freeze:
        freeze_startup_heap()
    out: dict[str, list[float]] = {"cold": [], "warm": [], "cold_cpu": [], "warm_cpu": [], "events_cold": []}
    for r in range(rounds):
        sink = NullSink(validate=True)
        core = TradingCore(settings, markets, sink, history=history)
        paper = PaperBroker(FillModel())
        paper.update_book(batch)
        broker = StampingBroker(paper)
        router = OrderRouter(broker, sink)
        cands = mk.candidates(names, mk.NOW + r)  # fresh trace ids every round

        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        intents = core.step(batch, cands, mk.NOW)
        updates = await router.send_all(intents, mk.NOW, core.causes)
        assert broker.first_ns is not None, "no intent reached the broker"
        out["cold"].append((broker.first_ns - t0) / 1e6)
        out["cold_cpu"].append((broker.first_cpu_ns - c0) / 1e6)
        out["events_cold"].append(float(sink.count))
        for u in updates:
            core.on_order_update(u, mk.NOW)

        # Same bar, 2 s later: the first position's price drops through its stop.
        moved = dict(prices)
        moved[intents[0].symbol] = 1.025 * 0.95
        later = mk.book(moved, mk.NOW + 2000)
        paper.update_book(later)
        broker.first_ns = None
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        exits = core.step(later, cands, mk.NOW + 2000)
        await router.send_all(exits, mk.NOW + 2000, core.causes)
        assert broker.first_ns is not None, "the stop loss did not reach the broker"
        out["warm"].append((broker.first_ns - t0) / 1e6)
        out["warm_cpu"].append((broker.first_cpu_ns - c0) / 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after set-up and a gen-0 threshold of 50,000, as `hotcoin run` does (engine.runtime.headless)",
    )
    args = parser.parse_args()
    out = asyncio.run(run(args.candidates, args.rounds, gc_freeze=args.gc_freeze))
    gc_mode = "gc frozen, threshold 50k" if args.gc_freeze else "default gc"
    print(f"decision latency, {args.candidates} candidates, {args.rounds} rounds, {gc_mode} (ms, batch -> broker.submit)")
    print(f"  (wall = perf_counter; cpu = this thread's CPU time, immune to other processes; load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for case in ("cold", "cold_cpu", "warm", "warm_cpu"):
        v = out[case]
        print(
            f"  {case:8s} p50 {statistics.median(v):7.3f}  p99 {percentile(v, 0.99):7.3f}  "
            f"max {max(v):7.3f}  mean {statistics.fmean(v):7.3f}"
        )
    print(f"  events journaled per cold cycle: {statistics.median(out['events_cold']):.0f}")
    for case in ("cold", "cold_cpu"):
        p99 = percentile(out[case], 0.99)
        print(f"  target p99 <= 20 ms ({case}): {'met' if p99 <= 20.0 else 'MISSED'} ({p99:.3f} ms)")


if __name__ == "__main__":
    main()
