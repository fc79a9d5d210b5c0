"""A fetched job becomes a registered model: contract + promotion decision + registry version.

Everything the contract needs travelled with the job: the feature names, dtypes, schema hash,
`listing_min_bars` and regime symbol in `job.json` (taken from the feature code and the config
when the dataset was built), the library versions and label definition in `metrics.json`
(reported by the box that trained it). The youngest listing among the training windows is not
counted (`youngest_listing_bars` None), so the registry stays strict about `listing_min_bars`.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import HotcoinConfig
from engine.config.sections.ml import PromotionGates
from gpu_jobs.datasets import interval_ms
from gpu_jobs.spec import JobSpec
from ml.governance.contract import TrainingWindow, build_contract, file_sha256
from ml.governance.errors import ContractError
from ml.governance.promotion import Evaluation, decide
from ml.governance.registry import ModelRegistry, Registration


def registry_dir(config: HotcoinConfig) -> Path:
    return config.ml.registry_dir or (config.paths.data_dir / "models")


def register_fetched(folder: Path, registry: ModelRegistry, gates: PromotionGates, *, now_ms: int) -> Registration:
    """Register the model in a fetched job folder (`model.pt`, `metrics.json`, `job.json`). A job
    fetched again, or trained again by the same command, is found registered: that version comes
    back with `added` False, beside the decision today's `gates` make."""
    try:
        spec = JobSpec.from_json(json.loads((folder / "job.json").read_text()))
        metrics = json.loads((folder / "metrics.json").read_text())
    except FileNotFoundError as exc:
        raise ContractError(f"fetched job {folder} lacks {Path(exc.filename).name}; fetch it again") from None
    ds = spec.dataset
    split = int(ds.n_bars * (1.0 - float(spec.params["test_fraction"])))
    env = metrics.get("environment", {})
    contract = build_contract(
        task=spec.task,
        interval=spec.interval,
        model_path=folder / "model.pt",
        feature_names=ds.feature_names,
        feature_dtypes=ds.feature_dtypes,
        feature_schema_hash=ds.feature_schema_hash,
        training_window=TrainingWindow(ds.start_ms, ds.start_ms + split * interval_ms(spec.interval), ds.symbols),
        label_definition=str(metrics.get("label_definition") or spec.label_definition()),
        created_ms=now_ms,
        libraries={k: str(env.get(k, "unknown")) for k in ("python", "torch", "numpy")},
        job_id=folder.name,
        listing_min_bars=ds.listing_min_bars,
        regime_symbol=ds.regime_symbol,
        extra={
            "hyper": spec.params,
            "seed": spec.seed,
            "code_sha256": spec.code_sha256,
            "dataset_sha256": ds.sha256,
            "dataset_window": {"start_ms": ds.start_ms, "end_ms": ds.end_ms},
            "device": metrics.get("device"),
        },
    )
    decision = decide(
        task=spec.task,
        interval=spec.interval,
        evaluation=Evaluation.from_metrics(metrics),
        gates=gates,
        model_sha256=file_sha256(folder / "model.pt"),
        decided_ms=now_ms,
    )
    extras = {n: folder / n for n in ("metrics.json", "job.json", "train.log") if (folder / n).is_file()}
    return registry.add(model_path=folder / "model.pt", contract=contract, decision=decision, extra_files=extras)
