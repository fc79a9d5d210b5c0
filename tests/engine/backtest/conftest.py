"""A small candle store with what the real one has: pumps, a listing mid-window, an
exchange-wide outage; and the minute-cadence config the backtests run with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import HotcoinConfig

MIN = 60_000
T0 = 1_618_531_200_000  # 2021-04-16 00:00 UTC: the store's first candle
DAYS_MIN = 1440 + 8 * 60  # a day of history, then 8 hours to trade
GAP = (1440 + 300, 1440 + 312)  # minutes with no candle for any pair (an outage)
LISTING_AT = 1440 + 60  # NEW/USDT's first candle
PUMPS = {"PUMP/USDT": 1440 + 100, "ALT/USDT": 1440 + 200, "NEW/USDT": 1440 + 340}
START = T0 + (1440 + 30) * MIN  # trading starts here in the tests


def _series(rng: np.random.Generator, price: float, n: int, pump_at: int | None) -> np.ndarray:
    steps = rng.normal(0.0, 0.0015, n)
    volume = rng.lognormal(0.0, 0.3, n) * 1e6 / price
    if pump_at is not None:
        steps[pump_at : pump_at + 25] += 0.012  # +35% in 25 minutes
        volume[pump_at : pump_at + 25] *= 8.0
        steps[pump_at + 25 : pump_at + 60] -= 0.006
    close = price * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[price], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.001, n))
    high = np.maximum(open_, close) * (1 + wick)
    low = np.minimum(open_, close) * (1 - wick)
    return np.column_stack([open_, high, low, close, volume])


def write_store(
    root: Path, *, cut_ms: int | None = None, ends: dict[str, int] | None = None, pumps: dict[str, int] | None = None
) -> Path:
    """Write the store; `cut_ms` drops every candle opening at or after it; `ends` cuts one
    pair's file at a minute (a delisting, or a pair collected over a shorter span); `pumps`
    replaces `PUMPS` (pair -> the minute its pump starts)."""
    rng = np.random.default_rng(11)
    root.mkdir(parents=True, exist_ok=True)
    pairs = {"BTC/USDT": 60_000.0, "ETH/USDT": 2_400.0, "PUMP/USDT": 0.5, "ALT/USDT": 3.2, "CALM/USDT": 12.0}
    for symbol, price in {**pairs, "NEW/USDT": 0.8}.items():
        first = LISTING_AT if symbol == "NEW/USDT" else 0
        minutes = np.arange(first, DAYS_MIN)
        pump = (PUMPS if pumps is None else pumps).get(symbol)
        values = _series(rng, price, len(minutes), None if pump is None else pump - first)
        keep = (minutes < GAP[0]) | (minutes >= GAP[1])
        ts = T0 + minutes[keep].astype(np.int64) * MIN
        values = values[keep]
        if cut_ms is not None:
            values, ts = values[ts < cut_ms], ts[ts < cut_ms]
        if ends is not None and symbol in ends:
            stop = T0 + ends[symbol] * MIN
            values, ts = values[ts < stop], ts[ts < stop]
        base, quote = symbol.split("/")
        table = pa.table(
            {"timestamp_ms": pa.array(ts, pa.int64())}
            | {c: pa.array(values[:, i], pa.float64()) for i, c in enumerate(("open", "high", "low", "close", "volume"))}
        )
        pq.write_table(table, root / f"{base}_{quote}-1m.parquet")
    return root


def minute_config(**top: object) -> HotcoinConfig:
    """Discovery fed one batch a minute (as bench_discovery_quality), small arrays."""
    data: dict[str, object] = {
        "discovery": {
            "windows": {"slot_ms": MIN, "history_slots": 128, "capacity": 64, "volume_bucket_ms": MIN},
            "anomaly": {"baseline_refresh_batches": 1},
            "pool": {"bar_ms": MIN},
        },
        "backtest": {"initial_history_minutes": 1440},
    }
    data.update(top)
    return HotcoinConfig.model_validate(data)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def config() -> HotcoinConfig:
    return minute_config()
