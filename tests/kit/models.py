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
    skipped: tuple[str, ...] = ()


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


def register_booster(root: Path, work: Path, *, feature: str, cut: float, spread: float) -> None:
    """A real LightGBM model, registered as production, that `ml.runtime.load_scorer` loads:
    it scores near 1 where `feature` is above `cut` and near 0 below (trained on that rule over
    values within `spread` of it), so under the uncalibrated threshold it lets through only the
    entries whose `feature` is above `cut`."""
    import dataclasses

    import lightgbm as lgb

    from engine.config.sections.ml import PromotionGates
    from engine.config.sections.trading import SignalSettings
    from engine.signals.features import FEATURE_DTYPES, FEATURE_NAMES
    from ml.governance.contract import TrainingWindow, build_contract
    from ml.governance.promotion import Evaluation, decide
    from ml.governance.registry import ModelRegistry

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, len(FEATURE_NAMES)))
    at = FEATURE_NAMES.index(feature)
    x[:, at] = rng.uniform(cut - spread, cut + spread, len(x))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, (x[:, at] > cut).astype(float), feature_name=list(FEATURE_NAMES)),
        10,
    )
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.txt"
    booster.save_model(str(model))
    contract = dataclasses.replace(
        build_contract(
            task="hot_lgbm", interval="1m", model_path=model, feature_names=FEATURE_NAMES, feature_dtypes=FEATURE_DTYPES,
            feature_schema_hash=feature_schema_hash(), training_window=TrainingWindow(0, 1), label_definition="top decile",
            created_ms=1, listing_min_bars=SignalSettings().listing_min_bars,
        ),
        model_format="lightgbm_text",
    )  # fmt: skip
    decision = decide(  # passes the default [ml.gates]: production under any config that leaves them
        task="hot_lgbm", interval="1m", evaluation=Evaluation((2.0, 2.0, 2.0), 5000, "b"), gates=PromotionGates(),
        model_sha256=contract.model_sha256, decided_ms=1,
    )  # fmt: skip
    ModelRegistry(root).register(model_path=model, contract=contract, decision=decision)
