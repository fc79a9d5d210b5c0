"""Run a registered torch model on CPU in a shadow slot: `load_scorer(...).score(window)`.

The model is loaded only through the registry, which refuses it unless its contract matches the
running feature code and its file; torch is imported here, lazily, so the engine never imports
it just by knowing this module exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ml.governance.contract import DEFAULT_REGIME_SYMBOL
from ml.governance.errors import ContractError, GovernanceError
from ml.governance.registry import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from engine.signals.scorer import ScorerMode

SCORABLE = frozenset({"lstm_hot", "tft_heat"})


class TorchScorer:
    """`score(window)`: window is [seq_len, n_features] in the contract's feature order, oldest
    bar first, raw feature values (NaN allowed). lstm_hot -> probability of "hot";
    tft_heat -> mean forecast heat over the horizon.

    It carries the attributes of the engine's scorer slot (`engine.signals.scorer.Scorer`):
    `mode` follows the promotion verdict (`production`, else `shadow`), `version` names the
    registry version, `schema_hash` is the contract's; `window` says how many rows to pass."""

    def __init__(self, model: ModelVersion, payload: dict[str, Any]) -> None:
        import torch

        from gpu_jobs.models.registry import build_model

        self.model = model
        self.task = model.task
        names = list(payload["feature_names"])
        if names != list(model.contract.feature_names):
            raise ContractError(f"{model.name}: the model file's features differ from its contract's; re-register it")
        self.seq_len = int(payload["seq_len"])
        self.window = self.seq_len
        self.mode: ScorerMode = "production" if model.production else "shadow"
        self.version = model.name
        self.schema_hash = model.contract.feature_schema_hash
        self.mean = payload["norm_mean"].numpy()
        self.std = payload["norm_std"].numpy()
        unseen = set(payload.get("unseen_features", []))
        self.unseen = np.array([n in unseen for n in names])
        self.module = build_model(self.task, dict(payload["arch"]))
        self.module.load_state_dict(payload["state_dict"])
        self.module.eval()
        self._torch = torch

    @property
    def name(self) -> str:
        return self.model.name

    def score(self, features: npt.NDArray[np.floating[Any]]) -> float:
        window = np.asarray(features, dtype=np.float32)
        expected = (self.seq_len, len(self.mean))
        if window.shape != expected:
            raise ValueError(f"{self.name} scores windows of shape {expected} (bars, features); got {window.shape}")
        z = np.clip(np.nan_to_num((window - self.mean) / self.std, nan=0.0, posinf=10.0, neginf=-10.0), -10, 10)
        z[:, self.unseen] = 0.0  # never seen in training: show the model what it learned on
        with self._torch.no_grad():
            out = self.module(self._torch.from_numpy(z.astype(np.float32))[None])
        if self.task == "lstm_hot":
            return float(self._torch.sigmoid(out)[0])
        return float(out[0].mean())


def load_scorer(
    registry: ModelRegistry,
    task: str,
    interval: str,
    *,
    feature_schema_hash: str,
    listing_min_bars: int | None,
    regime_symbol: str = DEFAULT_REGIME_SYMBOL,
    version: int | None = None,
    production_only: bool = False,
) -> TorchScorer:
    """A CPU scorer for a verified registry version (`ModelRefused` if verification fails).
    `listing_min_bars`: the one the windows it will score are computed with (for `features_hot`,
    the engine's `trading.signals.listing_min_bars`; None for features without since-listing
    windows); `regime_symbol`: the pair their btc_* columns come from. A model trained under
    another of either is refused."""
    if task not in SCORABLE:
        raise GovernanceError(f"{task} has no single score; scorable tasks: {', '.join(sorted(SCORABLE))}")
    model = registry.load(
        task,
        interval,
        feature_schema_hash=feature_schema_hash,
        listing_min_bars=listing_min_bars,
        regime_symbol=regime_symbol,
        version=version,
        production_only=production_only,
    )
    return TorchScorer(model, _load_payload(model.model_path))


def _load_payload(path: Path) -> dict[str, Any]:
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != 1:
        raise ContractError(f"{path} is not a gpu_jobs model file (format 1)")
    return payload
