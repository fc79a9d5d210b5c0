"""Entry and exit rules as tables of cases: each case names the rule that must say no."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from engine.config.sections.trading import SignalSettings, ml_min_score_in_force
from engine.domain import SignalDecision
from engine.signals.features import FEATURE_INDEX, FEATURE_NAMES
from engine.signals.rules import Rule, RuleOutcome, SignalRules, _Table, entry_rules, exit_rules

SETTINGS = SignalSettings()
PASSING = {
    "heat": 80.0,
    "ret_5": 0.03,
    "ret_1": 0.004,
    "vol_ratio_20": 3.0,
    "ret_60": 0.10,
    "vwap_dist_60": 0.03,
    "upper_wick": 0.1,
}


def row(**overrides: float) -> np.ndarray:
    x = np.zeros(len(FEATURE_NAMES))
    for name, value in {**PASSING, **overrides}.items():
        x[FEATURE_INDEX[name]] = value
    return x


ENTRY_CASES = [
    pytest.param({}, math.inf, None, [], id="all-pass"),
    pytest.param({"heat": 69.9}, math.inf, None, ["heat"], id="heat-below-min"),
    pytest.param({"heat": 70.0}, math.inf, None, [], id="heat-at-min-passes"),
    pytest.param({"ret_5": 0.009}, math.inf, None, ["momentum_5"], id="no-momentum"),
    pytest.param({"ret_1": -0.001}, math.inf, None, ["momentum_1"], id="falling-now"),
    pytest.param({"vol_ratio_20": 1.2}, math.inf, None, ["volume"], id="no-volume"),
    pytest.param({"ret_60": 0.31}, math.inf, None, ["not_extended_60"], id="extended-60-bar-run"),
    pytest.param({"vwap_dist_60": 0.09}, math.inf, None, ["not_extended_vwap"], id="far-above-vwap"),
    pytest.param({}, 60_000.0, None, ["cooldown"], id="in-cooldown"),
    pytest.param({}, 1_800_000.0, None, [], id="cooldown-just-over"),
    pytest.param({"ret_5": math.nan}, math.inf, None, ["momentum_5"], id="missing-data-never-passes"),
    pytest.param({}, math.inf, 0.7, [], id="ml-score-passes"),
    pytest.param({}, math.inf, 0.5, ["ml_score"], id="ml-score-below-threshold"),
    pytest.param({"heat": 10.0, "ret_60": 0.5}, math.inf, 0.1, ["heat", "not_extended_60", "ml_score"], id="several-fail"),
]


@pytest.mark.parametrize(("overrides", "since_ms", "ml", "failed"), ENTRY_CASES)
def test_entry_rules(overrides: dict[str, float], since_ms: float, ml: float | None, failed: list[str]) -> None:
    rules = SignalRules(SETTINGS)
    scores = None if ml is None else np.array([ml])
    (out,) = rules.entry(row(**overrides)[None, :], min_heat=70.0, since_last_action_ms=np.array([since_ms]), ml_scores=scores)
    assert [c["name"] for c in out.checks if not c["passed"]] == failed
    assert out.decision is (SignalDecision.SKIP if failed else SignalDecision.ENTER)
    for name in failed:
        assert name in out.reason
    names = [c["name"] for c in out.checks]
    assert ("ml_score" in names) is (ml is not None)
    for c in out.checks:
        assert set(c) == {"name", "passed", "value", "threshold"}


EXIT_CASES = [
    pytest.param({}, [], id="hold"),
    pytest.param({"ret_5": -0.021}, ["momentum_fade"], id="momentum-fade"),
    pytest.param({"heat": 30.0}, ["heat_decay"], id="heat-decay"),
    pytest.param({"heat": math.nan}, [], id="unknown-heat-does-not-force-exit"),
    pytest.param({"upper_wick": 0.7, "ret_1": -0.002}, ["reversal"], id="reversal-wick-and-lower-close"),
    pytest.param({"upper_wick": 0.7, "ret_1": 0.002}, [], id="wick-but-higher-close-holds"),
    pytest.param({"upper_wick": 0.2, "ret_1": -0.002}, [], id="lower-close-small-wick-holds"),
    pytest.param({"ret_5": -0.05, "heat": 10.0}, ["momentum_fade", "heat_decay"], id="fade-and-decay"),
]


@pytest.mark.parametrize(("overrides", "fired"), EXIT_CASES)
def test_exit_rules(overrides: dict[str, float], fired: list[str]) -> None:
    (out,) = SignalRules(SETTINGS).exit(row(**overrides)[None, :])
    assert [c["name"] for c in out.checks if not c["passed"]] == fired
    assert out.decision is (SignalDecision.EXIT if fired else SignalDecision.HOLD)
    # the journal and replay show "<decision>: <reason>": the reason does not say the decision again
    assert out.reason == (f"fired: {', '.join(fired)}" if fired else "no signal exit fired")


def test_rules_are_vectorised_per_symbol() -> None:
    x = np.stack([row(), row(heat=1.0), row(ret_5=-1.0)])
    outs = SignalRules(SETTINGS).entry(x, min_heat=70.0, since_last_action_ms=np.full(3, math.inf))
    assert [o.decision for o in outs] == [SignalDecision.ENTER, SignalDecision.SKIP, SignalDecision.SKIP]


def test_thresholds_come_from_config() -> None:
    strict = SignalSettings(min_ret_5=0.05)
    (out,) = SignalRules(strict).entry(row()[None, :], min_heat=0.0, since_last_action_ms=np.array([math.inf]))
    assert out.decision is SignalDecision.SKIP
    assert next(c for c in out.checks if c["name"] == "momentum_5")["threshold"] == 0.05


@pytest.mark.parametrize(
    ("feature", "op"), [pytest.param("nope", ">=", id="unknown-feature"), pytest.param("heat", "=~", id="unknown-op")]
)
def test_bad_rule_is_rejected(feature: str, op: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        Rule("x", feature, op, 1.0)


_NUMPY_OPS = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less}


def test_rule_table_compares_like_each_operator() -> None:
    """`_Table` compares in Python: every pass must be numpy's operator's own, on ties,
    infinities, signed zeros and NaN (which never passes)."""
    rng = np.random.default_rng(5)
    specials = np.array([0.0, -0.0, 0.5, -0.5, math.inf, -math.inf, math.nan])
    rules = [Rule(f"r{k}", FEATURE_NAMES[k], op, t) for k, (op, t) in enumerate(
        [(op, t) for op in (">=", "<=", ">", "<") for t in (0.5, -0.5, 0.0, -0.0)]
    )]  # fmt: skip
    x = rng.choice(specials, size=(200, len(FEATURE_NAMES)))
    values, passed = _Table(rules).evaluate(x)
    for j, rule in enumerate(rules):
        column = x[:, FEATURE_INDEX[rule.feature]]
        assert np.array([v[j] for v in values]).tobytes() == column.tobytes()
        with np.errstate(invalid="ignore"):
            assert [p[j] for p in passed] == _NUMPY_OPS[rule.op](column, rule.threshold).tolist()


def _numpy_table(rules: Sequence[Rule], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[symbols, rules] values and passes, by numpy's comparisons (the straightforward way)."""
    values = np.column_stack([x[:, FEATURE_INDEX[r.feature]] for r in rules])
    with np.errstate(invalid="ignore"):
        passed = np.column_stack([_NUMPY_OPS[r.op](values[:, j], r.threshold) for j, r in enumerate(rules)])
    return values, passed


def _said(values: np.ndarray, passed: np.ndarray, names: list[str], exit_mode: bool) -> list[tuple[object, ...]]:
    """Per symbol: the decision, the rules that said no, every pass, every journaled value."""
    out: list[tuple[object, ...]] = []
    for vs, ok in zip(values.tolist(), passed.tolist(), strict=True):
        failed = [n for n, p in zip(names, ok, strict=True) if not p]
        if exit_mode:
            decision = SignalDecision.EXIT if failed else SignalDecision.HOLD
        else:
            decision = SignalDecision.SKIP if failed else SignalDecision.ENTER
        out.append((decision, failed, ok, [v if math.isfinite(v) else None for v in vs]))
    return out


def _decided(outcomes: Sequence[RuleOutcome]) -> list[tuple[object, ...]]:
    return [
        (o.decision, [n for n, p in o.passed.items() if not p], list(o.passed.values()), [c["value"] for c in o.checks])
        for o in outcomes
    ]


def _rows(rng: np.random.Generator, picks: dict[str, list[float]], n: int = 400) -> np.ndarray:
    """Random feature rows whose rule features sit at, around and beyond the thresholds, or NaN."""
    x = rng.normal(0.0, 1.0, (n, len(FEATURE_NAMES)))
    for name, choices in picks.items():
        x[:, FEATURE_INDEX[name]] = rng.choice(np.array(choices), n)
    return x


def test_exit_is_numpy_s_table() -> None:
    """`SignalRules.exit`: every decision, pass and journaled value is what numpy's comparisons
    give (a NaN rule value holds; the reversal needs a long wick on a falling bar)."""
    rules, s = SignalRules(SETTINGS), SETTINGS
    x = _rows(np.random.default_rng(9), {
        "ret_5": [s.exit_fade_ret_5, -0.0, 0.0, 0.01, -0.05, math.nan, math.inf, -math.inf],
        "heat": [s.exit_heat_below, 0.0, 99.0, 10.0, math.nan],
        "upper_wick": [s.exit_upper_wick, 0.0, 0.99, math.nan],
        "ret_1": [0.0, -0.0, -0.01, 0.01, math.nan],
    })  # fmt: skip
    table = exit_rules(s)
    values, held = _numpy_table(table, x)
    wick, ret1 = x[:, FEATURE_INDEX["upper_wick"]], x[:, FEATURE_INDEX["ret_1"]]
    passed = np.column_stack([held | np.isnan(values), ~((wick >= s.exit_upper_wick) & (ret1 < 0))])
    expected = _said(np.column_stack([values, wick]), passed, [*(r.name for r in table), "reversal"], exit_mode=True)
    assert _decided(rules.exit(x)) == expected
    assert {e[0] for e in expected} == {SignalDecision.EXIT, SignalDecision.HOLD}
    # The rows as Python floats (a held coin's, `SignalStage.evaluate_exits`): the same outcomes.
    for checks in (True, False):
        assert rules.exit(x.tolist(), checks=checks) == rules.exit(x, checks=checks)


@pytest.mark.parametrize("ml", [False, True], ids=["rules", "ml-score"])
def test_entry_is_numpy_s_table(ml: bool) -> None:
    """`SignalRules.entry`: every decision, pass and journaled value is what numpy's comparisons
    give, the cooldown and the model's score (NaN fails; a listing too young passes, unasked)
    included."""
    rules, s = SignalRules(SETTINGS), SETTINGS
    rng = np.random.default_rng(10)
    x = _rows(rng, {
        "heat": [70.0, 69.9, 95.0, math.nan], "ret_5": [s.min_ret_5, 0.0, 0.05, math.nan],
        "ret_1": [s.min_ret_1, -0.0, 0.01], "vol_ratio_20": [s.min_vol_ratio_20, 1.0, 9.0, math.inf],
        "ret_60": [s.max_ret_60, 0.5, -0.1, -math.inf], "vwap_dist_60": [s.max_vwap_dist_60, 0.2, 0.0, math.nan],
    })  # fmt: skip
    since = rng.choice(np.array([math.inf, float(s.cooldown_ms), 1.0]), len(x))
    scores = rng.choice(np.array([0.1, 0.6, 0.9, math.nan]), len(x)) if ml else None
    ages = rng.choice(np.array([math.nan, 5.0, 300.0]), len(x))
    table = entry_rules(s, 70.0)
    values, passed = _numpy_table(table, x)
    values, passed = np.column_stack([values, since]), np.column_stack([passed, since >= s.cooldown_ms])
    names = [*(r.name for r in table), "cooldown"]
    if scores is not None:
        young = ages < 60
        threshold = ml_min_score_in_force(s.ml_min_score, 0.55)
        values = np.column_stack([values, np.where(young, np.nan, scores)])
        passed = np.column_stack([passed, young | ((scores >= threshold) & ~np.isnan(scores))])
        names.append("ml_score")
    got = rules.entry(
        x, min_heat=70.0, since_last_action_ms=since, ml_scores=scores, ml_calibrated=0.55, ml_youngest_listing=60,
        listing_bars=ages,
    )  # fmt: skip
    assert _decided(got) == _said(values, passed, names, exit_mode=False)
    assert {o.decision for o in got} == {SignalDecision.ENTER, SignalDecision.SKIP}
    # The rows as Python floats (a hot candidate's, `SignalStage._rule_entries`): the same outcomes.
    for checks in (True, False):
        asked = {"min_heat": 70.0, "since_last_action_ms": since, "ml_scores": scores, "ml_calibrated": 0.55,
                 "ml_youngest_listing": 60, "listing_bars": ages, "checks": checks}  # fmt: skip
        assert rules.entry(x.tolist(), **asked) == rules.entry(x, **asked)  # type: ignore[arg-type]


def test_outcomes_without_checks_decide_alike() -> None:
    """`checks=False` (a journal that keeps no payloads) leaves only the check dicts out."""
    rules = SignalRules(SETTINGS)
    x = np.stack([row(), row(heat=10.0, ret_60=0.5), row(ret_5=math.nan), row(upper_wick=0.9, ret_1=-0.01)])
    since = np.array([math.inf, 1.0, math.inf, math.inf])
    for full, lean in [
        (rules.entry(x, min_heat=70.0, since_last_action_ms=since), rules.entry(x, min_heat=70.0, since_last_action_ms=since, checks=False)),
        (rules.exit(x), rules.exit(x, checks=False)),
    ]:
        assert [(o.decision, o.reason, o.passed) for o in full] == [(o.decision, o.reason, o.passed) for o in lean]
        assert all(o.checks for o in full) and not any(o.checks for o in lean)


@pytest.mark.parametrize("ml", [False, True], ids=["rules", "production-model"])
def test_no_listing_ages_decide_and_say_as_all_nan_ones(ml: bool) -> None:
    """The stage passes no ages (None) where no symbol's features are since-listing ones, the
    store's blocks every time: outcomes, checks and details must be those of all-NaN ages."""
    rng = np.random.default_rng(11)
    x = np.stack([row(ret_5=float(v)) for v in rng.normal(0.01, 0.01, 6)])
    x[1, FEATURE_INDEX["ret_1"]] = math.nan
    kw: dict[str, Any] = {
        "min_heat": 70.0,
        "since_last_action_ms": rng.uniform(0, 4e6, 6),
        "ml_scores": rng.random(6) if ml else None,
        "ml_youngest_listing": 30,
    }
    rules = SignalRules(SETTINGS)
    assert rules.entry(x, listing_bars=None, **kw) == rules.entry(x, listing_bars=np.full(6, np.nan), **kw)
