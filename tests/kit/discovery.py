"""Discovery test kit: a small deterministic ticker feed and discovery configs sized for tests."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from engine.config.sections.discovery import (
    AnomalySection,
    DiscoverySection,
    PoolSection,
    WindowsSection,
)
from engine.discovery import Discovery
from engine.domain.market import Market
from engine.domain.ticker import TickerBatch

from .domain import T0, make_market

DAY_MS = 86_400_000


def small_config(**sections: object) -> DiscoverySection:
    """15 s slots, 64 rows, baselines refreshed every batch; override sections by keyword."""
    base: dict[str, object] = {
        "windows": WindowsSection(capacity=64, slot_ms=15_000, history_slots=256),
        "anomaly": AnomalySection(baseline_refresh_batches=1, min_history_slots=20),
        "pool": PoolSection(size=5, min_heat=50.0, ttl_ms=120_000, bar_ms=60_000, history_len=4),
    }
    base.update(sections)
    return DiscoverySection(**base)


class TickerFeed:
    """Symbols moving by a small deterministic noise, with a rolling 24 h volume at a steady rate.

    `prices[s] *= x` and `rate[s] = ...` steer one symbol (a pump, a volume surge); a symbol in
    `silent` trades nothing (an outage): its 24 h figure drains and its ticker's event time stays
    at its last trade. `batch()` advances the clock by `step_ms` and returns the market at the
    new time.
    """

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        start_ms: int = T0,
        step_ms: int = 15_000,
        daily_volume: float = 5e7,
        noise: float = 0.001,
        seed: int = 3,
    ) -> None:
        self.symbols = list(symbols)
        self.ts_ms = start_ms
        self.step_ms = step_ms
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.prices = {s: 1.0 + i for i, s in enumerate(self.symbols)}
        self.rate = {s: daily_volume / DAY_MS for s in self.symbols}  # quote per ms
        self.qv24 = {s: daily_volume for s in self.symbols}
        self.silent: set[str] = set()
        self.traded_ms: dict[str, int] = {}  # each symbol's last trade, once it has traded

    def markets(self) -> list[Market]:
        return [make_market(s) for s in self.symbols]

    def batch(self, **overrides: dict[str, float]) -> TickerBatch:
        """The next batch; `overrides={'last': {'X/USDT': nan}}` replaces single values."""
        self.ts_ms += self.step_ms
        n = len(self.symbols)
        shocks = np.exp(self.noise * self.rng.standard_normal(n))
        for i, s in enumerate(self.symbols):
            self.prices[s] *= float(shocks[i])
            traded = 0.0 if s in self.silent else self.rate[s] * self.step_ms
            self.qv24[s] += traded - self.qv24[s] * self.step_ms / DAY_MS
            if s not in self.silent:
                self.traded_ms[s] = self.ts_ms
        cols: dict[str, np.ndarray] = {
            "last": np.array([self.prices[s] for s in self.symbols]),
            "quote_volume_24h": np.array([self.qv24[s] for s in self.symbols]),
        }
        for name, values in overrides.items():
            for s, v in values.items():
                cols[name][self.symbols.index(s)] = v
        last = cols["last"]
        return TickerBatch(
            ts_ms=self.ts_ms,
            symbols=tuple(self.symbols),
            event_ms=np.array([self.traded_ms.get(s, self.ts_ms) for s in self.symbols], dtype=np.int64),
            last=last,
            bid=last * 0.999,
            ask=last * 1.001,
            open_24h=last,
            high_24h=last * 1.05,
            low_24h=last * 0.95,
            base_volume_24h=cols["quote_volume_24h"] / np.where(last > 0, last, 1.0),
            quote_volume_24h=cols["quote_volume_24h"],
            trade_count_24h=np.full(n, 1000, dtype=np.int64),
        )


PUMP_SYMBOLS = [f"C{i:02d}/USDT" for i in range(20)] + ["PEPE/USDT"]


def pumped_pepe() -> tuple[Discovery, TickerFeed]:
    """Default discovery over 20 quiet coins and PEPE/USDT, two hours of 15 s slots of history,
    then PEPE pumping (+2 % and 1.5x the volume rate a slot, eight slots): PEPE is in the pool."""
    d = Discovery(DiscoverySection(), None)
    f = TickerFeed(PUMP_SYMBOLS, noise=0.001)
    d.on_markets(f.markets(), f.ts_ms)
    for _ in range(2 * 240):
        d.on_batch(f.batch())
    for _ in range(8):
        f.prices["PEPE/USDT"] *= 1.02
        f.rate["PEPE/USDT"] *= 1.5
        d.on_batch(f.batch())
    assert "PEPE/USDT" in d.pool
    return d, f
