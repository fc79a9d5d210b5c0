"""How long one full-market ticker batch takes through discovery (budget: <= 2 ms median).

A synthetic market of 2,000 USDT symbols moves once a second (random walks, rolling 24 h
volumes, a few symbols pumping so the pool is full and the journal busy). After 15 minutes of
warm-up (the baselines need history), `Discovery.on_batch` is timed over 600 batches: windows,
anomalies, heat, filters, pool and candidate_snapshot events into a validating sink.
Batch construction is not timed (the gateway does it). Three cases: the gateway re-sends the
same symbol tuple (the mapping is cached), a fresh, equal tuple every batch, and a different
random 80% of the symbols every batch (Binance's !ticker@arr sends only changed tickers). Wall-clock
percentiles on a shared 2-core box include preemption by other processes; the CPU mean
(process time / batches) does not.

    .venv/bin/python -m bench.bench_discovery_speed
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engine.config.sections.discovery import DiscoverySection
from engine.discovery.pipeline import Discovery
from engine.domain.ticker import TickerBatch
from engine.journal.sinks import NullSink

T0 = 1_700_000_000_000


class SyntheticMarket:
    def __init__(self, n: int, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = n
        self.symbols = tuple(f"C{i:04d}/USDT" for i in range(n))
        self.price = np.exp(self.rng.uniform(-8, 8, n))
        self.vol_rate = np.exp(self.rng.uniform(np.log(2e6), np.log(5e8), n)) / 86_400  # quote per second
        self.qv = self.vol_rate * 86_400
        self.sigma = self.rng.uniform(0.0001, 0.0005, n)  # 0.6% to 3% an hour
        self.pumping = np.zeros(n, dtype=bool)

    def step(self, ts_ms: int, mode: str) -> TickerBatch:
        n = self.n
        if self.rng.random() < 0.02:  # a new pump every ~50 s
            self.pumping[self.rng.integers(n)] = True
        drift = np.where(self.pumping, 0.002, 0.0)
        self.price *= np.exp(drift + self.sigma * self.rng.standard_normal(n))
        traded = self.vol_rate * np.where(self.pumping, 12.0, 1.0) * self.rng.uniform(0.5, 1.5, n)
        self.qv += traded - self.qv / 86_400
        self.pumping &= self.rng.random(n) > 0.003
        # "subset" is like !ticker@arr: only the ~80% that changed this second
        keep = np.flatnonzero(self.rng.random(n) < 0.8) if mode == "subset" else np.arange(n)
        symbols = self.symbols if mode == "same" else tuple(self.symbols[i] for i in keep)
        last = self.price[keep]
        qv = self.qv[keep]
        k = len(keep)
        return TickerBatch(
            ts_ms=ts_ms,
            symbols=symbols,
            event_ms=np.full(k, ts_ms, dtype=np.int64),
            last=last,
            bid=last * 0.9995,
            ask=last * 1.0005,
            open_24h=last,
            high_24h=last * 1.05,
            low_24h=last * 0.95,
            base_volume_24h=qv / last,
            quote_volume_24h=qv,
            trade_count_24h=np.full(k, 10_000, dtype=np.int64),
        )


def run(n_symbols: int, warmup_s: int, timed: int, mode: str) -> dict[str, float]:
    market = SyntheticMarket(n_symbols)
    sink = NullSink(validate=True)
    disc = Discovery(DiscoverySection(), sink)
    ts = T0
    for _ in range(warmup_s):
        ts += 1000
        disc.on_batch(market.step(ts, mode))
    batches = []
    for _ in range(timed):
        ts += 1000
        batches.append(market.step(ts, mode))
    times = np.empty(timed)
    events0 = sink.count
    pool_sizes = []
    cpu0 = time.process_time()
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        cycle = disc.on_batch(b)
        times[i] = time.perf_counter() - t0
        pool_sizes.append(len(cycle.snapshot))
    cpu_ms = (time.process_time() - cpu0) * 1e3 / timed
    ms = times * 1e3
    return {
        "cpu_mean_ms": cpu_ms,
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "mean_pool": float(np.mean(pool_sizes)),
        "events_per_min": (sink.count - events0) / (timed / 60),
        "memory_mb": disc.windows.memory_bytes() / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=900, help="seconds of market before timing")
    ap.add_argument("--batches", type=int, default=600)
    args = ap.parse_args()
    labels = {"same": "same symbol tuple  ", "fresh": "fresh equal tuple  ", "subset": "changing 80% subset"}
    for mode, label in labels.items():
        r = run(args.symbols, args.warmup, args.batches, mode)
        print(
            f"{label}: {args.symbols} symbols, {args.batches} batches: median {r['median_ms']:.3f} ms, "
            f"p90 {r['p90_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms, "
            f"CPU mean {r['cpu_mean_ms']:.3f} ms; "
            f"pool {r['mean_pool']:.1f}, {r['events_per_min']:.0f} events/min, windows {r['memory_mb']:.1f} MB"
        )


if __name__ == "__main__":
    main()
