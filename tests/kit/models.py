"""A stand-in model for the signal path: a constant scorer in a chosen mode, the load result
a model loader would hand the runtime or the backtester, and a registered model the real
loader refuses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.signals.features import LISTING_ORDINARY_BARS, feature_schema_hash
from engine.signals.scorer import ScorerMode

MODEL = "hot_lgbm_1m@v0007#deadbeef"


@dataclass
class ConstantScorer:
    mode: ScorerMode
    value: float = 0.0  # 0 fails the ml_score rule: a production model that blocks every entry
    version: str = MODEL
    schema_hash: str = feature_schema_hash()
    calibrated_min_score: float | None = None
    youngest_listing_bars: int = LISTING_ORDINARY_BARS  # as hot_lgbm: no listing's first hour in training

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


def register_unloadable(root: Path, work: Path, *, listing_min_bars: int = 15) -> None:
    """A production hot_lgbm version in the registry at `root` that `ml.runtime.load_scorer`
    refuses: its contract names another model format (refused once everything else matches),
    and it was trained under `listing_min_bars` (refused first by an engine running another)."""
    from engine.config.sections.ml import PromotionGates
    from engine.signals.features import FEATURE_DTYPES, FEATURE_NAMES
    from ml.governance.contract import TrainingWindow, build_contract
    from ml.governance.promotion import Evaluation, decide
    from ml.governance.registry import ModelRegistry

    model = work / "model.txt"
    model.write_text("not a LightGBM model")
    contract = build_contract(
        task="hot_lgbm", interval="1m", model_path=model, feature_names=FEATURE_NAMES, feature_dtypes=FEATURE_DTYPES,
        feature_schema_hash=feature_schema_hash(), training_window=TrainingWindow(0, 1), label_definition="top decile",
        created_ms=1, listing_min_bars=listing_min_bars,
    )  # fmt: skip
    decision = decide(
        task="hot_lgbm", interval="1m", evaluation=Evaluation((2.0, 2.0, 2.0), 5000, "b"), gates=PromotionGates(),
        model_sha256=contract.model_sha256, decided_ms=1,
    )  # fmt: skip
    ModelRegistry(root).register(model_path=model, contract=contract, decision=decision)
