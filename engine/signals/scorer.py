"""The ML scorer slot: what a model must look like to sit in the signal path.

A scorer takes one symbol's feature row (in `FEATURE_NAMES` order) and returns a score in 0..1.
Its `mode` decides what the score may do:

- `production`: the score enters the entry decision as the `ml_score` rule (score >= threshold:
  `trading.signals.ml_min_score`, or with "auto" the model's own `calibrated_min_score`).
- `shadow`: the score is journaled as a `model_shadow` event and never touches the decision,
  so a candidate model can be judged on live data without risking money.
- `off`: the scorer is not consulted at all (the `NullScorer`, when no model is installed).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

ScorerMode = Literal["production", "shadow", "off"]


class Scorer(Protocol):
    """A model behind the signal rules. `schema_hash` must equal `feature_schema_hash()`.
    `calibrated_min_score` is the entry threshold on the model's own scale, set at training
    (None: the model records none)."""

    mode: ScorerMode
    version: str
    schema_hash: str
    calibrated_min_score: float | None

    def score(self, features: npt.NDArray[np.float64]) -> float: ...


class NullScorer:
    """No model installed: mode `off`, so the signal stage never asks it for a score."""

    mode: ScorerMode = "off"
    version = "none"
    schema_hash = ""
    calibrated_min_score: float | None = None

    def score(self, features: npt.NDArray[np.float64]) -> float:
        """NaN, which fails every threshold, should anything consult an `off` scorer anyway."""
        return float("nan")


class ModelLoad(Protocol):
    """What a model loader hands the runtime (`ml.runtime.load_scorer` returns one): the scorer
    to install (None: rules alone), one line for status saying why, and the model's name;
    `failed` when a model was there but none could be installed (refused, unreadable), which
    the user must see, not only a log at info; `warnings` about the installed one (e.g. an
    entry threshold above every score it gave out of sample); `training_window`, the
    [first, last] bar times it was trained on, so a backtest over them can say it is in-sample."""

    @property
    def scorer(self) -> Scorer | None: ...

    @property
    def status(self) -> str: ...

    @property
    def model(self) -> str | None: ...

    @property
    def mode(self) -> ScorerMode: ...

    @property
    def failed(self) -> bool: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    @property
    def training_window(self) -> tuple[int, int] | None: ...
