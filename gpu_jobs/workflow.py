"""`hotcoin train --gpu`: candles -> dataset -> packed job -> GPU box -> registered model.

Each stage is its own function elsewhere; this is only the order they run in and where their
files go on the trading box (`<data_dir>/gpu_jobs/{packs,fetched}`).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import HotcoinConfig
from gpu_jobs.client import EventSink, JobClient, RetryPolicy
from gpu_jobs.datasets import FeatureSet, check_enough_bars, load_candles, write_dataset
from gpu_jobs.pack import PackedJob, pack_job
from gpu_jobs.profiles import make_client
from gpu_jobs.register import register_fetched, registry_dir
from gpu_jobs.spec import DatasetInfo, JobSpec
from ml.governance.registry import ModelRegistry, Registration


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class TrainRequest:
    task: str
    profile: str
    data_dir: Path
    interval: str = "1m"
    epochs: int | None = None
    seed: int = 0
    symbols: tuple[str, ...] = ()
    hyper: Mapping[str, float | int] = field(default_factory=dict)


def jobs_dir(config: HotcoinConfig) -> Path:
    return config.paths.data_dir / "gpu_jobs"


def prepare_job(config: HotcoinConfig, req: TrainRequest, features: FeatureSet) -> PackedJob:
    """Read candles, compute features, write the dataset and pack the job (blocking); a
    `DatasetError` when the candles are too few for the task or lack the regime pair's."""
    candles = load_candles(
        req.data_dir,
        req.interval,
        req.symbols or None,
        regime_symbol=config.trading.signals.regime_symbol,
        require_regime=True,
    )
    hyper: dict[str, Any] = dict(req.hyper)
    if req.epochs is not None:
        hyper["epochs"] = req.epochs
    work = jobs_dir(config)
    work.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="dataset-", dir=work))
    try:
        meta = write_dataset(candles, features, staging, name=f"{req.data_dir.name}-{req.interval}")
        spec = JobSpec(
            task=req.task, interval=req.interval, dataset=DatasetInfo.from_json(meta), hyper=hyper, seed=req.seed
        )
        check_enough_bars(spec, candles.close)  # here, not after the upload on the box
        return pack_job(spec, staging, work / "packs")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def train_on_gpu(
    config: HotcoinConfig,
    req: TrainRequest,
    features: FeatureSet,
    *,
    on_event: EventSink | None = None,
    retry: RetryPolicy | None = None,
    clock_ms: Callable[[], int] = wall_ms,
    client: JobClient | None = None,
) -> Registration:
    """The whole round trip; its registration (see `register_fetched`)."""
    client = client or make_client(config, req.profile, on_event=on_event, retry=retry)
    packed = await asyncio.to_thread(prepare_job, config, req, features)
    fetched = await client.run(packed, jobs_dir(config) / "fetched")
    registry = ModelRegistry(registry_dir(config))
    return await asyncio.to_thread(register_fetched, fetched, registry, config.ml.gates, now_ms=clock_ms())
