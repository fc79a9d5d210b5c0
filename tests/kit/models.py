"""A stand-in model for the signal path: a constant scorer in a chosen mode, and the load
result a model loader would hand the runtime or the backtester."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.signals.features import feature_schema_hash
from engine.signals.scorer import ScorerMode

MODEL = "hot_lgbm_1m@v0007#deadbeef"


@dataclass
class ConstantScorer:
    mode: ScorerMode
    value: float = 0.0  # 0 fails the ml_score rule: a production model that blocks every entry
    version: str = MODEL
    schema_hash: str = feature_schema_hash()
    calibrated_min_score: float | None = None

    def score(self, features: npt.NDArray[np.float64]) -> float:
        return self.value


@dataclass(frozen=True)
class Load:
    scorer: ConstantScorer | None
    status: str
    model: str | None
    mode: ScorerMode
    failed: bool = False
    warnings: tuple[str, ...] = ()
    training_window: tuple[int, int] | None = None


def loaded(mode: ScorerMode) -> Load:
    return Load(ConstantScorer(mode), f"{MODEL}: {mode}", MODEL, mode)
