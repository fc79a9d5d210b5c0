"""Rule-based entry and exit signals, as tables of thresholds over `features_hot` columns.

Each rule is a `Rule(name, feature, op, threshold)`; the rules' features of all symbols are
gathered at once and compared in Python (`_Table`), then each symbol gets its list of `check`
dicts so replay can say which rule said no, with the value it saw and the limit it applied.

Entry: every rule must pass, and a missing value (NaN) never passes: an entry is never made on
what cannot be seen. Exit (for held symbols): a *failed* check is an exit trigger; the symbol
is exited when any trigger fires, and the reason names them. A missing value fires no exit
rule (it holds; the journal shows the check passed with value null): the price-based exits
(stop, trailing stop, max hold) still protect the position.

A rule that read a listing's since-listing value (`engine.signals.features.since_listing`)
says so in its check's `detail`, as does one whose value is unknown only because the listing
is younger than `listing_min_bars`: replay then tells them from ordinary window values. A
production model is not put to a listing younger than any it was trained on (`model_too_young`):
its `ml_score` check passes, value null, and its detail says the rules decided alone.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.config.sections.trading import SignalSettings, ml_min_score_in_force
from engine.domain import SignalDecision
from engine.signals.features import FEATURE_INDEX, since_listing

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_UPPER_WICK, _RET_1 = FEATURE_INDEX["upper_wick"], FEATURE_INDEX["ret_1"]


@dataclass(frozen=True, slots=True)
class Rule:
    """`feature op threshold` must hold for the rule to pass."""

    name: str
    feature: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.feature not in FEATURE_INDEX:
            raise ValueError(f"rule {self.name!r} reads unknown feature {self.feature!r}")
        if self.op not in _OPS:
            raise ValueError(f"rule {self.name!r}: unknown operator {self.op!r}; use one of {list(_OPS)}")


# [symbols, features] rows: an array, or its rows as the floats `tolist` gives (the stage holds
# a held coin's or a hot candidate's row so where its journal keeps no payloads).
Features = FloatArray | Sequence[Sequence[float]]


def _gather(features: Features, index: npt.NDArray[np.intp], columns: Sequence[int]) -> list[list[float]]:
    """Each row's values at `columns` (`index` as an array), as Python floats."""
    if isinstance(features, np.ndarray):
        out: list[list[float]] = features.take(index, axis=1).tolist()
        return out
    return [[row[k] for k in columns] for row in features]


class _Table:
    """Rules evaluated as one block: their columns gathered in one numpy call, then compared in
    Python. The stage asks for one or two symbols at a time (a held coin every bar, a hot
    candidate), where a numpy comparison costs more than the Python one; a NaN fails each
    operator either way (`tests/engine/signals/test_rules.py` pins them to numpy's)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self.names = [r.name for r in rules]
        self.thresholds = [r.threshold for r in rules]
        self.columns = [FEATURE_INDEX[r.feature] for r in rules]
        self._gather = np.array(self.columns, np.intp)  # take() with an index array: a fancy index with a list converts it each call
        self._tests = [(_OPS[r.op], r.threshold) for r in rules]

    def passes(self, values: Sequence[float]) -> list[bool]:
        """Whether each rule passed on its value (one symbol's, in rule order)."""
        return [test(v, t) for (test, t), v in zip(self._tests, values, strict=True)]

    def evaluate(self, features: Features) -> tuple[list[list[float]], list[list[bool]]]:
        """[symbols, rules] values and whether each passed."""
        values = _gather(features, self._gather, self.columns)
        return values, [self.passes(row) for row in values]


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One symbol's evaluation: the decision, a one-line reason, and every rule as a check dict."""

    decision: SignalDecision
    reason: str
    checks: list[dict[str, Any]]
    passed: dict[str, bool]  # rule name -> passed, the `Signal.rules` view


def entry_rules(settings: SignalSettings, min_heat: float) -> tuple[Rule, ...]:
    return (
        Rule("heat", "heat", ">=", min_heat),
        Rule("momentum_5", "ret_5", ">=", settings.min_ret_5),
        Rule("momentum_1", "ret_1", ">=", settings.min_ret_1),
        Rule("volume", "vol_ratio_20", ">=", settings.min_vol_ratio_20),
        Rule("not_extended_60", "ret_60", "<=", settings.max_ret_60),
        Rule("not_extended_vwap", "vwap_dist_60", "<=", settings.max_vwap_dist_60),
    )


def exit_rules(settings: SignalSettings) -> tuple[Rule, ...]:
    """Phrased as conditions for *holding*: `momentum_fade` passes while the fade has not happened."""
    return (
        Rule("momentum_fade", "ret_5", ">", settings.exit_fade_ret_5),
        Rule("heat_decay", "heat", ">=", settings.exit_heat_below),
    )


def model_too_young(listing_bars: FloatArray | None, youngest: int, n: int) -> BoolArray:
    """[n]: which symbols are listings younger than `youngest` bars, the youngest listing a
    production model was trained on (`Scorer.youngest_listing_bars`). Its score there would
    be read off features it never saw (hot_lgbm has never seen a listing's first hour), so
    the stage does not take it and the rules decide alone. NaN (no listing) is never too young."""
    if listing_bars is None:
        return np.zeros(n, np.bool_)
    with np.errstate(invalid="ignore"):
        return np.asarray(listing_bars < youngest, np.bool_)


def _unasked_details(young: BoolArray, ages: FloatArray, youngest: int) -> list[str | None]:
    """The `ml_score` check's detail for each listing the model was not put to."""
    said = f"younger than any the model was trained on ({youngest} bars): the rules decide alone"
    return [f"listing {age:.0f} bars old, {said}" if unasked else None for unasked, age in zip(young.tolist(), ages.tolist(), strict=True)]


class SignalRules:
    """Evaluates entry rules for candidates and exit rules for held symbols."""

    def __init__(self, settings: SignalSettings) -> None:
        self.settings = settings
        self._exit = _Table(exit_rules(settings))
        # What `exit` reads of a row: its rules' features, then the reversal's two (and as an
        # index array, as `_Table._gather`).
        self._exit_index = [*self._exit.columns, _UPPER_WICK, _RET_1]
        self._exit_columns = np.array(self._exit_index, np.intp)
        self._entry: tuple[float, _Table] | None = None  # (min_heat, rules): rebuilt when it changes

    def entry(
        self,
        features: Features,
        *,
        min_heat: float,
        since_last_action_ms: FloatArray,
        ml_scores: FloatArray | None = None,
        ml_calibrated: float | None = None,
        ml_youngest_listing: int = 0,
        listing_bars: FloatArray | None = None,
        checks: bool = True,
    ) -> list[RuleOutcome]:
        """Entry decisions for [S, F] features. `since_last_action_ms` is inf where the symbol
        has no entry/exit yet. `ml_scores` (production scorer only) adds the `ml_score` rule,
        whose threshold is `ml_min_score`, or with "auto" the model's `ml_calibrated` one; it
        passes, with a detail, for a listing younger than `ml_youngest_listing` bars (the
        youngest the model was trained on: `model_too_young`). `listing_bars`: each symbol's
        bars since listing where its features are since-listing ones (NaN elsewhere), for the
        checks' details. `checks=False` leaves each outcome's check dicts out (empty), for a
        caller whose journal keeps no payloads: they are read nowhere else."""
        if self._entry is None or self._entry[0] != min_heat:
            self._entry = (min_heat, _Table(entry_rules(self.settings, min_heat)))
        table = self._entry[1]
        names, thresholds = [*table.names, "cooldown"], [*table.thresholds, float(self.settings.cooldown_ms)]
        values, passed = table.evaluate(features)
        for row, ok, since in zip(values, passed, since_last_action_ms.tolist(), strict=True):
            row.append(since)
            ok.append(since >= thresholds[-1])
        details: dict[str, list[str | None]] = {}
        if ml_scores is not None:
            threshold = ml_min_score_in_force(self.settings.ml_min_score, ml_calibrated)
            young = model_too_young(listing_bars, ml_youngest_listing, len(values))
            names.append("ml_score")
            thresholds.append(threshold)
            for row, ok, score, unasked in zip(values, passed, ml_scores.tolist(), young.tolist(), strict=True):
                row.append(math.nan if unasked else score)
                ok.append(unasked or score >= threshold)  # a NaN score fails
            if checks and young.any() and listing_bars is not None:
                details["ml_score"] = _unasked_details(young, listing_bars, ml_youngest_listing)
        if checks and listing_bars is not None and np.isfinite(listing_bars).any():
            for j, rule in enumerate(table.rules):
                details[rule.name] = self._listing_details(rule.feature, [row[j] for row in values], listing_bars)
        return _outcomes(names, thresholds, values, passed, exit_mode=False, checks=checks, details=details)

    def _listing_details(self, feature: str, values: Sequence[float], ages: FloatArray) -> list[str | None]:
        """Per symbol, what a check on `feature` must add for a listing: that the value is the
        since-listing one, or that it is unknown until the listing is `listing_min_bars` old."""
        least = self.settings.listing_min_bars
        out: list[str | None] = []
        for age, value in zip(ages.tolist(), values, strict=True):
            if not (age == age and since_listing(feature, age)):  # NaN: no listing
                out.append(None)
            elif age < least:
                out.append(f"listing {age:.0f} bars old: unknown before {least} (signals.listing_min_bars)")
            else:
                out.append(f"since listing, {age:.0f} bars" if value == value else None)
        return out

    def exit(self, features: Features, *, checks: bool = True) -> list[RuleOutcome]:
        """Exit decisions for held symbols: EXIT when any trigger fires, else HOLD. `checks`: as
        for `entry`."""
        table, limit = self._exit, self.settings.exit_upper_wick
        values, passed = [], []
        for row in _gather(features, self._exit_columns, self._exit_index):
            *ruled, wick, ret1 = row
            # Unknown (NaN) must not force an exit: a coin discovery stopped reporting keeps its other exits.
            held = [ok or v != v for ok, v in zip(table.passes(ruled), ruled, strict=True)]
            held.append(not (wick >= limit and ret1 < 0))
            values.append([*ruled, wick])
            passed.append(held)
        names, thresholds = [*self._exit.names, "reversal"], [*self._exit.thresholds, limit]
        return _outcomes(names, thresholds, values, passed, exit_mode=True, checks=checks)


def _outcomes(
    names: list[str],
    thresholds: list[float],
    values: list[list[float]],
    passed: list[list[bool]],
    *,
    exit_mode: bool,
    checks: bool,
    details: Mapping[str, list[str | None]] | None = None,
) -> list[RuleOutcome]:
    """One outcome per row of [symbols, rules] `values` and `passed` (the rules in `names`
    order); without `checks`, their check dicts are left out."""
    out: list[RuleOutcome] = []
    isfinite = math.isfinite
    for i, ok in enumerate(passed):
        said: list[dict[str, Any]] = []
        if checks:
            # An unknown value (or 'never') as None: JSON has neither NaN nor infinity, so the
            # journal says null.
            said = [
                {"name": name, "passed": p, "value": v if isfinite(v) else None, "threshold": t}
                for name, p, v, t in zip(names, ok, values[i], thresholds, strict=True)
            ]
            if details:
                for check in said:
                    detail = details.get(check["name"])
                    if detail is not None and detail[i] is not None:
                        check["detail"] = detail[i]
        failed = [name for name, p in zip(names, ok, strict=True) if not p]
        if exit_mode:
            decision = SignalDecision.EXIT if failed else SignalDecision.HOLD
            reason = f"fired: {', '.join(failed)}" if failed else "no signal exit fired"  # shown after "exit: " / "hold: "
        else:
            decision = SignalDecision.SKIP if failed else SignalDecision.ENTER
            reason = f"failed: {', '.join(failed)}" if failed else "all entry rules passed"
        out.append(RuleOutcome(decision, reason, said, dict(zip(names, ok, strict=True))))
    return out
