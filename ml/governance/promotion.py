"""The promotion decision: may the engine act on this model's score, or only journal it?

Each gate is written down with the value the model reached and the threshold from config
(`[ml.gates]`), so `promotion_decision_{task}_{interval}.json` explains itself: a model is
`production` only when every gate passes, otherwise `research_only` (shadow) with the reasons.
Lift is "model metric / baseline metric" per out-of-sample fold (1.0 = no better than the
baseline); stability is the spread of those fold lifts, std/mean.

The lift gate judges the median fold lift, and a second gate the worst fold's. The mean of the
ratios let one lucky fold carry the others: fold lifts 1.8, 0.85, 0.85, 0.95 averaged 1.11 and
passed as production, a model worse than the baseline in three folds of four (its precision
pooled over all four folds was 0.975 of the baseline's). The median is what most folds reach, so
one fold cannot lift it; the worst-fold gate stops a model that loses to the baseline anywhere.
The median, not the lift of the pooled precisions: it is one rule for every task, whose lifts
are not all precision ratios (`tft_heat`'s is an MSE ratio, `ppo_sizing`'s a return ratio), and a
pooled ratio weighs each fold by its baseline's hits, so a period where the baseline happens to
do well decides for the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from engine.config.sections.ml import PromotionGates
from ml.governance.contract import read_json_object, write_json_atomic
from ml.governance.errors import ContractError
from ml.governance.names import check_task_interval

Verdict = Literal["production", "research_only"]


def decision_filename(task: str, interval: str) -> str:
    check_task_interval(task, interval)
    return f"promotion_decision_{task}_{interval}.json"


@dataclass(frozen=True)
class Evaluation:
    """Out-of-sample evidence: one lift per contiguous time fold, and the samples behind them."""

    fold_lifts: tuple[float, ...]
    samples: int
    baseline: str

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> Evaluation:
        """From a training job's metrics JSON (`oos.fold_lifts`, `oos.samples`, `oos.baseline`)."""
        try:
            oos = metrics["oos"]
            lifts = tuple(float("nan") if v is None else float(v) for v in oos["fold_lifts"])
            return cls(fold_lifts=lifts, samples=int(oos["samples"]), baseline=str(oos["baseline"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(
                f"metrics lack the out-of-sample summary (oos.fold_lifts, oos.samples, oos.baseline): {exc}"
            ) from None


@dataclass(frozen=True)
class GateResult:
    name: str
    value: float | None  # None: undefined (e.g. a fold without any positive label)
    threshold: float
    comparator: Literal[">=", "<="]
    passed: bool
    reason: str


@dataclass(frozen=True)
class PromotionDecision:
    task: str
    interval: str
    verdict: Verdict
    gates: tuple[GateResult, ...]
    reasons: tuple[str, ...]
    model_sha256: str
    decided_ms: int
    baseline: str

    @property
    def filename(self) -> str:
        return decision_filename(self.task, self.interval)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["gates"] = [asdict(g) for g in self.gates]
        data["reasons"] = list(self.reasons)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromotionDecision:
        try:
            verdict = str(data["verdict"])
            if verdict not in ("production", "research_only"):
                raise ValueError(f"verdict {verdict!r} is neither production nor research_only")
            gates = tuple(
                GateResult(
                    name=str(g["name"]),
                    value=None if g["value"] is None else float(g["value"]),
                    threshold=float(g["threshold"]),
                    comparator=">=" if g["comparator"] == ">=" else "<=",
                    passed=bool(g["passed"]),
                    reason=str(g["reason"]),
                )
                for g in data["gates"]
            )
            return cls(
                task=str(data["task"]),
                interval=str(data["interval"]),
                verdict="production" if verdict == "production" else "research_only",
                gates=gates,
                reasons=tuple(str(r) for r in data["reasons"]),
                model_sha256=str(data["model_sha256"]),
                decided_ms=int(data["decided_ms"]),
                baseline=str(data["baseline"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"malformed promotion decision: {type(exc).__name__}: {exc}") from None


def _gate(name: str, value: float | None, threshold: float, comparator: Literal[">=", "<="], what: str) -> GateResult:
    if value is None or not math.isfinite(value):
        return GateResult(name, None, threshold, comparator, False, f"{what} is undefined")
    passed = value >= threshold if comparator == ">=" else value <= threshold
    verb = "meets" if passed else "misses"
    shown = f"{int(value)}" if value.is_integer() else f"{value:.4g}"
    return GateResult(name, value, threshold, comparator, passed, f"{what} {shown} {verb} {comparator} {threshold:g}")


def _fold_cv(lifts: Sequence[float]) -> float | None:
    if len(lifts) < 2 or not all(math.isfinite(v) for v in lifts):
        return None
    mean = sum(lifts) / len(lifts)
    if mean <= 0:
        return None
    var = sum((v - mean) ** 2 for v in lifts) / (len(lifts) - 1)
    return math.sqrt(var) / mean


def _median(lifts: Sequence[float]) -> float | None:
    """The median fold lift (see the module doc for why not the mean); None when any is undefined."""
    if not lifts or not all(math.isfinite(v) for v in lifts):
        return None
    ordered = sorted(lifts)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# gate name -> (its threshold in `PromotionGates`, comparator, what the value is)
_GATES: dict[str, tuple[str, Literal[">=", "<="], str]] = {
    "oos_median_lift": ("min_oos_lift", ">=", "median out-of-sample fold lift"),
    "oos_worst_fold_lift": ("min_worst_fold_lift", ">=", "worst out-of-sample fold lift"),
    "fold_stability_cv": ("max_fold_cv", "<=", "fold lift std/mean"),
    "oos_samples": ("min_oos_samples", ">=", "out-of-sample samples"),
    "oos_folds": ("min_folds", ">=", "out-of-sample folds"),
}


def _apply(values: Mapping[str, float | None], gates: PromotionGates) -> tuple[GateResult, ...]:
    """Every gate judged on its value. An undefined value (None) fails; so does a gate whose
    value was never recorded (not a key of `values`: a decision made before the gate existed),
    with a reason saying so."""
    return tuple(
        _gate(name, values[name], float(getattr(gates, attr)), comparator, what)
        if name in values
        else _unrecorded(name, float(getattr(gates, attr)), comparator, what)
        for name, (attr, comparator, what) in _GATES.items()
    )


def _unrecorded(name: str, threshold: float, comparator: Literal[">=", "<="], what: str) -> GateResult:
    reason = f"{what} is not on record (decided before hotcoin had this gate); retrain the model to judge it"
    return GateResult(name, None, threshold, comparator, False, reason)


def decide(
    *,
    task: str,
    interval: str,
    evaluation: Evaluation,
    gates: PromotionGates,
    model_sha256: str,
    decided_ms: int,
) -> PromotionDecision:
    """Apply every gate; all must pass for `production`, and the reasons name each one missed."""
    lifts = evaluation.fold_lifts
    defined = bool(lifts) and all(math.isfinite(v) for v in lifts)
    values = {
        "oos_median_lift": _median(lifts),
        "oos_worst_fold_lift": min(lifts) if defined else None,
        "fold_stability_cv": _fold_cv(lifts),
        "oos_samples": float(evaluation.samples),
        "oos_folds": float(len(lifts)),
    }
    results = _apply(values, gates)
    failed = tuple(g.reason for g in results if not g.passed)
    return PromotionDecision(
        task=task,
        interval=interval,
        verdict="research_only" if failed else "production",
        gates=results,
        reasons=failed or ("every gate passed",),
        model_sha256=model_sha256,
        decided_ms=decided_ms,
        baseline=evaluation.baseline,
    )


def recheck(decision: PromotionDecision, gates: PromotionGates) -> PromotionDecision:
    """`decision` judged again by today's `gates`, from the values it recorded: a production
    model that misses one now comes back research_only, with the gates it misses as reasons;
    anything else comes back unchanged. Demotion only: gates are tightened to stop trusting
    models, while promoting one takes a registration that records the decision."""
    if decision.verdict != "production":
        return decision
    results = _apply({g.name: g.value for g in decision.gates}, gates)
    failed = tuple(g.reason for g in results if not g.passed)
    if not failed:
        return decision
    return replace(
        decision,
        verdict="research_only",
        gates=results,
        reasons=tuple(f"registered as production, but under the current [ml.gates] {r}" for r in failed),
    )


def write_decision(decision: PromotionDecision, folder: Path) -> Path:
    path = folder / decision.filename
    write_json_atomic(path, decision.to_json())
    return path


def read_decision(path: Path) -> PromotionDecision:
    return PromotionDecision.from_json(read_json_object(path, "promotion decision"))
