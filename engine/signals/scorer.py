"""The ML scorer slot: what a model must look like to sit in the signal path.

A scorer takes one symbol's feature row (in `FEATURE_NAMES` order) and returns a score in 0..1.
Its `mode` decides what the score may do:

- `production`: the score enters the entry decision as the `ml_score` rule (score >= threshold:
  `trading.signals.ml_min_score`, or with "auto" the model's own `calibrated_min_score`).
- `shadow`: the score is journaled as a `model_shadow` event and never touches the decision,
  so a candidate model can be judged on live data without risking money.
- `off`: the scorer is not consulted at all (the `NullScorer`, when no model is installed).

A production model is not asked about a listing younger than any it was trained on
(`youngest_listing_bars`): its score there would be a guess on features it never saw, so the
rules decide that entry alone and the `ml_score` check says why.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from engine.signals.features import LISTING_ORDINARY_BARS

ScorerMode = Literal["production", "shadow", "off"]


class Scorer(Protocol):
    """A model behind the signal rules. `schema_hash` must equal `feature_schema_hash()`.
    `calibrated_min_score` is the entry threshold on the model's own scale, set at training
    (None: the model records none). `youngest_listing_bars` is the youngest listing, in bars
    since its first (counted), among its training rows: `LISTING_ORDINARY_BARS` when it saw
    none younger, as hot_lgbm never has."""

    mode: ScorerMode
    version: str
    schema_hash: str
    calibrated_min_score: float | None
    youngest_listing_bars: int

    def score(self, features: npt.NDArray[np.float64]) -> float: ...


class NullScorer:
    """No model installed: mode `off`, so the signal stage never asks it for a score."""

    mode: ScorerMode = "off"
    version = "none"
    schema_hash = ""
    calibrated_min_score: float | None = None
    youngest_listing_bars = LISTING_ORDINARY_BARS

    def score(self, features: npt.NDArray[np.float64]) -> float:
        """NaN, which fails every threshold, should anything consult an `off` scorer anyway."""
        return float("nan")


class ModelLoad(Protocol):
    """What a model loader hands the runtime (`ml.runtime.load_scorer` returns one): the scorer
    to install (None: rules alone), one line for status saying why, and the model's name;
    `failed` when a model was there but none could be installed (refused, unreadable), which
    the user must see, not only a log at info; `warnings` about the installed one (e.g. an
    entry threshold above every score it gave out of sample); `training_window`, the
    [first, last] bar times it was trained on, so a backtest over them can say it is in-sample;
    `skipped`, the versions passed over ("name (why)": unreadable, or a missing or damaged model
    file), which `hotcoin doctor` warns of even when an older version loaded in their place."""

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

    @property
    def skipped(self) -> tuple[str, ...]: ...
