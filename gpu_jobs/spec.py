"""What a training job is: task, dataset, hyper-parameters, seed and code, as plain JSON.

Standard library only: this module runs on both sides (the trading box writes `job.json`, the
GPU box reads it), and the GPU box has nothing of hotcoin but the packed job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Task -> default hyper-parameters. Every key a task reads is here, so a typo in an override is
# an error instead of a silently ignored setting.
TASK_DEFAULTS: dict[str, dict[str, float | int]] = {
    "lstm_hot": {
        "epochs": 5,
        "batch_size": 512,
        "lr": 1e-3,
        "hidden": 64,
        "layers": 1,
        "seq_len": 32,
        "horizon": 15,
        "threshold": 0.02,
        "test_fraction": 0.3,
        "folds": 4,
        "max_train_samples": 200_000,
    },
    "tft_heat": {
        "epochs": 5,
        "batch_size": 256,
        "lr": 1e-3,
        "hidden": 32,
        "heads": 4,
        "seq_len": 32,
        "horizon": 6,
        "test_fraction": 0.3,
        "folds": 4,
        "max_train_samples": 100_000,
    },
    "ppo_sizing": {
        "epochs": 20,
        "lr": 3e-4,
        "hidden": 64,
        "envs": 16,
        "rollout": 64,
        "update_epochs": 4,
        "minibatch": 256,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip": 0.2,
        "entropy": 0.01,
        "cost": 0.001,
        "test_fraction": 0.3,
        "folds": 4,
    },
}
TASKS = tuple(TASK_DEFAULTS)


class SpecError(ValueError):
    """A job spec that cannot run; the message names the field and the fix."""


def parse_overrides(task: str, items: Sequence[str]) -> dict[str, float | int]:
    """`key=value` strings (`hotcoin train --set`) as hyper-parameter overrides of `task`, each
    value of its default's type. A key the task does not read, a value that is not such a number,
    or a key given twice is a `SpecError` naming the task's keys: a mistyped key, ignored, would
    train the unchanged model again (under a new job id) as if it were the change asked for.
    Every whole-number setting counts or sizes something and must be at least 1; the others are
    finite and not negative (`JobSpec` checks `test_fraction` further)."""
    if task not in TASK_DEFAULTS:
        raise SpecError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    defaults = TASK_DEFAULTS[task]
    known = f"{task} takes {', '.join(sorted(defaults))}"
    out: dict[str, float | int] = {}
    for item in items:
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or not key or not raw:
            raise SpecError(f"--set {item!r} is not key=value (e.g. --set batch_size=256); {known}")
        if key not in defaults:
            raise SpecError(f"--set {key}: {task} has no hyper-parameter {key!r}; {known}")
        if key in out:
            raise SpecError(f"--set {key} is given twice; give each key once")
        default = defaults[key]
        value: float | int
        try:
            value = int(raw) if isinstance(default, int) else float(raw)
        except ValueError:
            kind = "a whole number" if isinstance(default, int) else "a number"
            raise SpecError(f"--set {key}={raw}: {key} takes {kind} (default {default})") from None
        if isinstance(default, int) and value < 1:
            raise SpecError(f"--set {key}={raw}: {key} must be at least 1 (default {default})")
        if not math.isfinite(value) or value < 0:
            raise SpecError(f"--set {key}={raw}: {key} must be a finite number, 0 or more (default {default})")
        out[key] = value
    return out


@dataclass(frozen=True)
class DatasetInfo:
    """The arrays shipped with the job (built on the trading box from Parquet candles)."""

    name: str
    interval: str
    symbols: tuple[str, ...]
    start_ms: int
    end_ms: int
    n_bars: int
    feature_names: tuple[str, ...]
    feature_dtypes: tuple[str, ...]
    feature_schema_hash: str
    sha256: str  # of the dataset's files, in name order
    listing_min_bars: int | None = None  # the features' since-listing windows (None: none, or packed before it was recorded)
    regime_symbol: str = "BTC/USDT"  # whose closes fed the regime features (a job packed before it was recorded: BTC/USDT)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("symbols", "feature_names", "feature_dtypes"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            name=str(data["name"]),
            interval=str(data["interval"]),
            symbols=tuple(data["symbols"]),
            start_ms=int(data["start_ms"]),
            end_ms=int(data["end_ms"]),
            n_bars=int(data["n_bars"]),
            feature_names=tuple(data["feature_names"]),
            feature_dtypes=tuple(data["feature_dtypes"]),
            feature_schema_hash=str(data["feature_schema_hash"]),
            sha256=str(data["sha256"]),
            listing_min_bars=None if data.get("listing_min_bars") is None else int(data["listing_min_bars"]),
            regime_symbol=str(data.get("regime_symbol", "BTC/USDT")),
        )


@dataclass(frozen=True)
class JobSpec:
    task: str
    interval: str
    dataset: DatasetInfo
    hyper: Mapping[str, float | int] = field(default_factory=dict)
    seed: int = 0
    code_sha256: str = ""  # filled in by the packer from the code it packs

    def __post_init__(self) -> None:
        if self.task not in TASK_DEFAULTS:
            raise SpecError(f"unknown task {self.task!r}; known tasks: {', '.join(TASKS)}")
        unknown = sorted(set(self.hyper) - set(TASK_DEFAULTS[self.task]))
        if unknown:
            raise SpecError(
                f"hyper-parameters {unknown} do not apply to {self.task}; "
                f"known: {', '.join(sorted(TASK_DEFAULTS[self.task]))}"
            )
        if self.dataset.interval != self.interval:
            raise SpecError(f"dataset is {self.dataset.interval} candles but the job says {self.interval}")
        merged = self.params
        if int(merged["epochs"]) < 1:
            raise SpecError("epochs must be at least 1")
        if not 0 < float(merged["test_fraction"]) < 1:
            raise SpecError("test_fraction must be between 0 and 1")

    @property
    def params(self) -> dict[str, float | int]:
        """Defaults overlaid with this job's overrides."""
        return {**TASK_DEFAULTS[self.task], **self.hyper}

    def with_code(self, code_sha256: str) -> JobSpec:
        return replace(self, code_sha256=code_sha256)

    def label_definition(self) -> str:
        p = self.params
        if self.task == "lstm_hot":
            return (
                f"hot = 1 if close[t+{p['horizon']}] / close[t] - 1 >= {p['threshold']} else 0, "
                f"t = last bar of a {p['seq_len']}-bar feature window ({self.interval} bars)"
            )
        if self.task == "tft_heat":
            return (
                f"heat[t+k] = 100 * |log(close[t+k] / close[t+k-1])| for k = 1..{p['horizon']}, "
                f"from a {p['seq_len']}-bar feature window ({self.interval} bars)"
            )
        return (
            "reward = log(1 + sum_i w_i * (close_i[t+1] / close_i[t] - 1) - "
            f"{p['cost']} * turnover), weights over {len(self.dataset.symbols)} coins + cash"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "interval": self.interval,
            "dataset": self.dataset.to_json(),
            "hyper": dict(self.hyper),
            "seed": self.seed,
            "code_sha256": self.code_sha256,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        try:
            return cls(
                task=str(data["task"]),
                interval=str(data["interval"]),
                dataset=DatasetInfo.from_json(data["dataset"]),
                hyper=dict(data.get("hyper", {})),
                seed=int(data.get("seed", 0)),
                code_sha256=str(data.get("code_sha256", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SpecError):
                raise
            raise SpecError(f"malformed job spec: {type(exc).__name__}: {exc}") from None
