"""Generated candles with a planted, learnable signal, in the history layout the trainer reads.

Every symbol is a random walk with lognormal volume; now and then a symbol gets a volume burst
(ten times its usual volume, price unchanged) and then drifts up ~6% over the next 30 bars. The
burst is visible in `vol_ratio_20` at the burst bar, while the price-based baseline (rise from
the 60-bar low) sees nothing yet: a model that learns the burst must beat the baseline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MINUTE = 60_000
T0 = 1_617_321_600_000  # 2021-04-02 00:00 UTC


def synth_frames(n_symbols: int = 16, n_bars: int = 3000, seed: int = 0, *, burst_rate: float = 1 / 150) -> dict[str, pd.DataFrame]:
    """{"BTC/USDT": ..., "S001/USDT": ...}: candle frames with timestamp_ms, open, high, low, close, volume."""
    rng = np.random.default_rng(seed)
    names = ["BTC/USDT", *(f"S{i:03d}/USDT" for i in range(1, n_symbols))]
    ts = T0 + MINUTE * np.arange(n_bars, dtype=np.int64)
    out = {}
    for j, name in enumerate(names):
        r = rng.normal(0.0, 0.002, n_bars)
        volume = rng.lognormal(np.log(1000.0), 0.3, n_bars)
        if j > 0:
            for t0 in np.flatnonzero(rng.random(n_bars) < burst_rate):
                volume[t0] *= 10.0
                r[t0] = 0.0
                r[t0 + 1 : t0 + 31] += 0.002
        close = 1.0 * np.exp(np.cumsum(r))
        open_ = np.r_[1.0, close[:-1]]
        wick = np.abs(rng.normal(0.0, 0.0008, (2, n_bars)))
        out[name] = pd.DataFrame(
            {
                "timestamp_ms": ts,
                "open": open_,
                "high": np.maximum(open_, close) * (1 + wick[0]),
                "low": np.minimum(open_, close) * (1 - wick[1]),
                "close": close,
                "volume": volume,
            }
        )
    return out


def write_history(folder: Path, frames: dict[str, pd.DataFrame], interval: str = "1m") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        df.to_parquet(folder / f"{name.replace('/', '_')}-{interval}.parquet", index=False)
    return folder
