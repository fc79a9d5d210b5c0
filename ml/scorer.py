"""A LightGBM model in the engine's scorer slot (`engine.signals.scorer.Scorer`).

Built only from a registry `ModelVersion` (`LgbmScorer.load`), never from a loose file: the
bytes handed to LightGBM are the bytes whose sha256 was checked against the contract, read
once, so a file swapped between the registry's check and the load cannot slip in.

`score(row)` serves the signal stage's per-symbol call; `score_many(matrix)` scores a whole
bar's candidates in one LightGBM call, which is what keeps 500 candidates inside the budget.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.signals.features import FEATURE_NAMES, LISTING_ORDINARY_BARS, feature_schema_hash
from engine.signals.scorer import ScorerMode
from ml.governance.errors import ModelRefused

if TYPE_CHECKING:
    import lightgbm

    from ml.governance.registry import ModelVersion

FloatArray = npt.NDArray[np.float64]
MODEL_FORMAT = "lightgbm_text"
LIBRARIES = ("lightgbm", "numpy")  # what reads the model and its inputs: their versions are checked at load


def model_label(version: ModelVersion) -> str:
    """`hot_lgbm_1m@v0003#1a2b3c4d`: the registry version and the model file's hash, the string
    journaled as `model` in signal snapshots and shadow events and shown in status."""
    return f"{version.name}#{version.contract.model_sha256[:8]}"


class LgbmScorer:
    """Probability that the symbol's next 30 minutes are in the market's top 10%."""

    def __init__(
        self,
        booster: lightgbm.Booster,
        *,
        mode: ScorerMode,
        version: str,
        schema_hash: str,
        calibrated_min_score: float | None = None,
        youngest_listing_bars: int = LISTING_ORDINARY_BARS,
    ) -> None:
        if booster.num_feature() != len(FEATURE_NAMES):
            raise ValueError(f"booster has {booster.num_feature()} features, the feature code has {len(FEATURE_NAMES)}")
        self._booster = booster
        self.mode: ScorerMode = mode
        self.version = version
        self.schema_hash = schema_hash
        self.calibrated_min_score = calibrated_min_score
        self.youngest_listing_bars = youngest_listing_bars

    @classmethod
    def load(cls, version: ModelVersion, mode: ScorerMode) -> LgbmScorer:
        """The scorer of a registry version; `ModelRefused` if it is not a LightGBM model of this
        feature schema, its bytes do not hash to the contract's sha256, or it was trained with
        another major version of LightGBM or numpy (another minor one is `verify`'s warning).
        A contract that does not record the youngest listing it was trained on (before version
        4) reads as `LISTING_ORDINARY_BARS`: hot_lgbm's rows have always needed the baseline's
        61 closes, so no such model saw a younger listing."""
        import lightgbm as lgb

        # Here, not at the top: `ml.runtime` imports this module on every start, the registry
        # only where it holds a model (`ml.governance.names`); a version in hand means it has.
        from ml.governance.registry import check_libraries

        contract = version.contract
        if contract.model_format != MODEL_FORMAT:
            raise ModelRefused(
                f"{version.name} refused: model format {contract.model_format!r} is not {MODEL_FORMAT!r}; "
                "this scorer only runs LightGBM text models",
                which="model_format",
                expected=MODEL_FORMAT,
                actual=contract.model_format,
            )
        if contract.feature_schema_hash != feature_schema_hash() or tuple(contract.feature_names) != FEATURE_NAMES:
            raise ModelRefused(
                f"{version.name} refused: trained on feature schema {contract.feature_schema_hash[:12]}, the running "
                f"feature code is {feature_schema_hash()[:12]}; retrain it",
                which="feature_schema_hash",
                expected=contract.feature_schema_hash,
                actual=feature_schema_hash(),
            )
        check_libraries(version, LIBRARIES)
        blob = version.model_path.read_bytes()
        actual = hashlib.sha256(blob).hexdigest()
        if actual != contract.model_sha256:
            raise ModelRefused(
                f"{version.name} refused: model file hashes to {actual[:16]}…, the contract says "
                f"{contract.model_sha256[:16]}…; the file was changed, re-register it",
                which="model_sha256",
                expected=contract.model_sha256,
                actual=actual,
            )
        try:
            booster = lgb.Booster(model_str=blob.decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ModelRefused(
                f"{version.name} refused: LightGBM cannot read its model file ({exc})",
                which="model_format",
                expected=MODEL_FORMAT,
                actual="unreadable",
            ) from None
        _check_feature_order(version, tuple(booster.feature_name()))
        calibration = contract.score_calibration
        return cls(
            booster,
            mode=mode,
            version=model_label(version),
            schema_hash=contract.feature_schema_hash,
            calibrated_min_score=None if calibration is None else calibration.min_score,
            youngest_listing_bars=(
                LISTING_ORDINARY_BARS if contract.youngest_listing_bars is None else contract.youngest_listing_bars
            ),
        )

    def score_many(self, features: FloatArray) -> FloatArray:
        """Scores of a [symbols, features] matrix, one LightGBM call, single-threaded (the
        decision loop must not fight the rest of the engine for cores)."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected [symbols, {len(FEATURE_NAMES)}] features, got shape {x.shape}")
        if x.shape[0] == 0:
            return np.empty(0, np.float64)
        return np.asarray(self._booster.predict(x, num_threads=1), np.float64)

    def score(self, features: FloatArray) -> float:
        """One symbol's score (a feature row in `FEATURE_NAMES` order)."""
        return float(self.score_many(np.asarray(features, np.float64).reshape(1, -1))[0])


def _check_feature_order(version: ModelVersion, booster_names: tuple[str, ...]) -> None:
    """The booster's own column names must be the engine's, in order. The contract only says
    what the model was *meant* to be fed: a model trained on the same columns in another order
    has the same count and passes every hash, then scores each feature as if it were another."""
    if booster_names == FEATURE_NAMES:
        return
    pairs = zip(booster_names, FEATURE_NAMES, strict=False)
    where = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(booster_names), len(FEATURE_NAMES)))
    model = booster_names[where] if where < len(booster_names) else "nothing"
    engine = FEATURE_NAMES[where] if where < len(FEATURE_NAMES) else "nothing"
    raise ModelRefused(
        f"{version.name} refused: the model's own feature order differs from the engine's (column {where}: model "
        f"{model!r}, engine {engine!r}); it was trained on other columns than its contract names, retrain it",
        which="feature_names",
        expected=",".join(FEATURE_NAMES),
        actual=",".join(booster_names),
    )
