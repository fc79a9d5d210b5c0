"""Model governance settings: where registered models live and the gates a model must pass
before the engine may act on its score (otherwise it only runs in shadow)."""

from __future__ import annotations

from pydantic import Field

from engine.config.sections.base import Section, UserPath


class PromotionGates(Section):
    """Thresholds of the promotion decision. A model that fails any gate is `research_only`:
    its scores are journaled in shadow and never traded on."""

    min_oos_lift: float = Field(
        1.1,
        gt=0,
        description="Lowest acceptable median out-of-sample fold lift over the task's baseline "
        "(1.0 = no better than the baseline). The median, not the mean: one lucky fold cannot carry the others.",
    )
    min_worst_fold_lift: float = Field(
        1.0,
        ge=0,
        description="Lowest acceptable lift of the worst out-of-sample fold: 1.0 refuses a model that does worse "
        "than the baseline in any period it was tested on; 0 turns the gate off.",
    )
    max_fold_cv: float = Field(
        0.5,
        gt=0,
        description="Highest acceptable spread of the lift across out-of-sample folds, as std/mean; "
        "a model that is good in one period only is not stable.",
    )
    min_oos_samples: int = Field(
        1000, ge=1, description="Fewest out-of-sample samples the lift must be measured on."
    )
    min_folds: int = Field(3, ge=2, description="Fewest out-of-sample folds the stability is measured over.")


class MlSection(Section):
    registry_dir: UserPath | None = Field(
        None, description="Versioned model registry folder; default <data_dir>/models."
    )
    gates: PromotionGates = Field(default_factory=PromotionGates)
