"""`load_scorer`: the engine's single way to get a model into the signal path.

It picks the registry's current model for the configured task and interval (the newest version
that earned `production`; if none has, the newest version, which then only watches), verifies
that its contract matches the running feature code and that its file hashes to the contract,
and returns the scorer in the mode its promotion decision allows:

- `production` -> mode `production`: its score enters the entry decision (`ml_score` rule);
- `research_only` -> mode `shadow`: scored and journaled as `model_shadow`, never deciding.

Anything else (no registry, no version, a refused or unreadable model) returns no scorer and a
one-line status saying why and that the engine runs on its rules alone: a model problem must
never stop trading on rules, and must never be silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config import HotcoinConfig
from engine.signals.features import feature_schema_hash
from engine.signals.scorer import ScorerMode
from ml.governance.errors import GovernanceError, ModelRefused
from ml.governance.registry import ModelRegistry, ModelVersion, verify
from ml.scorer import LgbmScorer, model_label

TASK = "hot_lgbm"
_RULES_ONLY = "the engine runs on its rules alone"


@dataclass(frozen=True)
class ScorerLoad:
    """What the runtime installs (`scorer`, None for no model) and what status shows (`status`)."""

    scorer: LgbmScorer | None
    status: str
    model: str | None = None  # e.g. hot_lgbm_1m@v0003#1a2b3c4d
    model_sha256: str | None = None
    mode: ScorerMode = "off"


def registry_root(config: HotcoinConfig) -> Path:
    return config.ml.registry_dir or (config.paths.data_dir / "models")


def _current(registry: ModelRegistry, task: str, interval: str) -> ModelVersion | None:
    versions = registry.versions(task, interval)
    production = [v for v in versions if v.production]
    pool = production or versions
    return pool[-1] if pool else None


def load_scorer(config: HotcoinConfig, *, task: str = TASK, interval: str | None = None) -> ScorerLoad:
    """The scorer for `task` on the signal timeframe (default `trading.signals.timeframe`)."""
    interval = interval or config.trading.signals.timeframe
    root = registry_root(config)
    registry = ModelRegistry(root)
    try:
        chosen = _current(registry, task, interval)
    except GovernanceError as exc:
        return ScorerLoad(None, f"model registry {root} is unreadable ({exc}); {_RULES_ONLY}")
    if chosen is None:
        return ScorerLoad(
            None,
            f"no {task}_{interval} model in {root}; {_RULES_ONLY} (train one with `hotcoin train --task {task}`)",
        )
    label = model_label(chosen)
    mode: ScorerMode = "production" if chosen.production else "shadow"
    try:
        verify(chosen, feature_schema_hash=feature_schema_hash())
        scorer = LgbmScorer.load(chosen, mode)
    except ModelRefused as exc:
        return ScorerLoad(None, f"REFUSED {exc}; {_RULES_ONLY}", label, chosen.contract.model_sha256)
    except (GovernanceError, OSError, ValueError) as exc:  # e.g. a missing contract, an unreadable file
        return ScorerLoad(None, f"{label} could not be loaded ({exc}); {_RULES_ONLY}", label, chosen.contract.model_sha256)
    if mode == "production":
        status = f"{label} in production: its score gates entries (trading.signals.ml_min_score)"
    else:
        why = "; ".join(chosen.decision.reasons)
        status = f"{label} in shadow (research_only: {why}): scored and journaled, never trading"
    return ScorerLoad(scorer, status, label, chosen.contract.model_sha256, mode)
