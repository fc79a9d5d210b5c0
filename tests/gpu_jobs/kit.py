"""Small, fast training inputs for job tests: synthetic candles with pumps, a three-column
feature set defined here (tests do not depend on the engine's feature code), tiny specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gpu_jobs.datasets import Candles, FeatureSet, FloatArray, write_dataset
from gpu_jobs.spec import DatasetInfo, JobSpec
from ml.governance.contract import schema_hash

TINY_NAMES = ("ret_1", "bar_range", "log_volume")
TINY_DTYPES = ("float32", "float32", "float32")


def tiny_compute(c: Candles) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.vstack([np.full((1, c.close.shape[1]), np.nan), np.log(c.close[1:] / c.close[:-1])])
        return np.stack([ret, (c.high - c.low) / c.close, np.log1p(c.volume)], axis=-1)


TINY_FEATURES = FeatureSet("tiny", TINY_NAMES, TINY_DTYPES, schema_hash(TINY_NAMES, TINY_DTYPES), tiny_compute)


def synthetic_candles(n_bars: int = 900, n_symbols: int = 3, seed: int = 7, interval: str = "1m") -> Candles:
    """Random walks with a pump now and then (so "hot" labels exist) and one missing bar."""
    rng = np.random.default_rng(seed)
    logret = rng.normal(0, 0.004, (n_bars, n_symbols))
    for s in range(n_symbols):
        for start in rng.integers(50, n_bars - 30, 6):
            logret[start : start + 10, s] += 0.006
    close = 1.0 * np.exp(np.cumsum(logret, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, close.shape))
    volume = rng.uniform(100, 1000, close.shape)
    close[n_bars // 2, 0] = np.nan  # an outage on one symbol: windows must not span it
    ts = np.arange(n_bars, dtype=np.int64) * 60_000 + 1_617_235_200_000
    symbols = tuple(f"C{i}/USDT" for i in range(n_symbols))
    return Candles(interval, symbols, ts, open_, high, low, close, volume, np.full(n_bars, np.nan))


def make_dataset(folder: Path, candles: Candles | None = None, features: FeatureSet = TINY_FEATURES) -> DatasetInfo:
    meta = write_dataset(candles or synthetic_candles(), features, folder, name="synthetic")
    return DatasetInfo.from_json(meta)


TINY_HYPER: dict[str, dict[str, Any]] = {
    "lstm_hot": {"epochs": 2, "hidden": 8, "seq_len": 16, "horizon": 5, "threshold": 0.01, "batch_size": 256, "folds": 3},
    "tft_heat": {"epochs": 2, "hidden": 8, "heads": 2, "seq_len": 16, "horizon": 3, "batch_size": 256, "folds": 3},
    "ppo_sizing": {"epochs": 2, "hidden": 16, "envs": 4, "rollout": 16, "update_epochs": 2, "minibatch": 32, "folds": 3},
}


def make_spec(task: str, dataset: DatasetInfo, seed: int = 1, **hyper: Any) -> JobSpec:
    return JobSpec(task=task, interval=dataset.interval, dataset=dataset, hyper={**TINY_HYPER[task], **hyper}, seed=seed)
