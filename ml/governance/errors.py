"""Governance errors, a branch of the engine's tree:

    HotcoinError
    └── GovernanceError
        ├── ContractError     a contract or decision file that is missing or malformed
        ├── RegistryError     an unknown task, interval or version in the registry
        └── ModelRefused      a model that fails verification; `which` names what differs
"""

from __future__ import annotations

from engine.errors import HotcoinError


class GovernanceError(HotcoinError):
    """Base of model-governance errors."""


class ContractError(GovernanceError):
    """A runtime contract or promotion decision that cannot be read or is inconsistent."""


class RegistryError(GovernanceError):
    """The registry has no such model or version."""


class ModelRefused(GovernanceError):
    """A registered model that must not be loaded. `which` names what differs
    (`feature_schema_hash`, `feature_names`, `feature_dtypes`, `listing_min_bars`, `model_sha256`,
    `model_format`, `library_versions`, `decision_model_sha256`, ...); `expected`/`actual` are
    the two values that disagree."""

    def __init__(self, message: str, *, which: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.which = which
        self.expected = expected
        self.actual = actual
