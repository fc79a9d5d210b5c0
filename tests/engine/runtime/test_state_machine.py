from __future__ import annotations

import itertools
import random

import pytest

from engine.config.sections.state import StateSection
from engine.domain import EngineState, StateReason
from engine.runtime.state_machine import (
    TRANSITIONS,
    EngineStateMachine,
    HealthInputs,
    Trigger,
)

T, D, B = EngineState.TRADEABLE, EngineState.DEGRADED, EngineState.BLOCKED
S = StateSection()
MIN = 60_000
DAY = 86_400_000

# One measurement per trigger, so the table can be driven from data.
INPUT_FOR = {
    Trigger.HEALTHY: lambda now: HealthInputs(now, data_age_s=1.0),
    Trigger.DEGRADE: lambda now: HealthInputs(now, data_age_s=95.0),
    Trigger.BLOCK: lambda now: HealthInputs(now, data_age_s=301.0),
}
# Expected (next state after one cycle, next state once hysteresis is satisfied).
EXPECTED = {
    (T, Trigger.HEALTHY): (T, T),
    (T, Trigger.DEGRADE): (D, D),
    (T, Trigger.BLOCK): (B, B),
    (D, Trigger.HEALTHY): (D, T),
    (D, Trigger.DEGRADE): (D, D),
    (D, Trigger.BLOCK): (B, B),
    (B, Trigger.HEALTHY): (B, T),
    (B, Trigger.DEGRADE): (B, D),
    (B, Trigger.BLOCK): (B, B),
}


def test_table_covers_every_state_and_trigger() -> None:
    assert set(TRANSITIONS) == set(itertools.product(EngineState, Trigger)) == set(EXPECTED)


@pytest.mark.parametrize(("state", "trigger"), sorted(EXPECTED), ids=lambda v: str(v))
def test_every_transition(state: EngineState, trigger: Trigger) -> None:
    sm = EngineStateMachine(S, initial=state)
    first, settled = EXPECTED[(state, trigger)]
    sm.step(INPUT_FOR[trigger](0))
    assert sm.state is first
    for i in range(1, 10):
        sm.step(INPUT_FOR[trigger](i * 1000))
    assert sm.state is settled


@pytest.mark.parametrize(
    ("start", "needed"), [(D, S.recover_cycles_degraded), (B, S.recover_cycles_blocked)], ids=["degraded", "blocked"]
)
def test_recovery_needs_consecutive_healthy_cycles(start: EngineState, needed: int) -> None:
    sm = EngineStateMachine(S, initial=start)
    for i in range(needed - 1):
        assert sm.step(INPUT_FOR[Trigger.HEALTHY](i)) is None
        assert sm.state is start
        assert sm.reasons[-1].code == "recovering"
    transition = sm.step(INPUT_FOR[Trigger.HEALTHY](needed))
    assert transition is not None
    assert (transition.from_state, transition.to_state) == (start, T)


def test_a_bad_cycle_resets_the_recovery_streak() -> None:
    sm = EngineStateMachine(S, initial=D)
    sm.step(INPUT_FOR[Trigger.HEALTHY](0))
    sm.step(INPUT_FOR[Trigger.HEALTHY](1))
    sm.step(INPUT_FOR[Trigger.DEGRADE](2))
    sm.step(INPUT_FOR[Trigger.HEALTHY](3))
    sm.step(INPUT_FOR[Trigger.HEALTHY](4))
    assert sm.state is D
    sm.step(INPUT_FOR[Trigger.HEALTHY](5))
    assert sm.state is T


@pytest.mark.parametrize(
    ("inputs", "errors", "state", "code"),
    [
        (HealthInputs(0, data_age_s=89.9), 0, T, None),
        (HealthInputs(0, data_age_s=90.0), 0, D, "data_stale"),
        (HealthInputs(0, data_age_s=300.0), 0, B, "data_stale"),
        (HealthInputs(0, data_age_s=1.0), 2, T, None),
        (HealthInputs(0, data_age_s=1.0), 3, D, "order_errors"),
        (HealthInputs(0, data_age_s=1.0), 10, B, "order_errors"),
        (HealthInputs(0, data_age_s=1.0, ws_down_s=120.0), 0, T, None),
        (HealthInputs(0, data_age_s=1.0, ws_down_s=121.0), 0, D, "ws_down"),
        (HealthInputs(0, data_age_s=1.0, risk_level=4), 0, T, None),
        (HealthInputs(0, data_age_s=1.0, risk_level=5), 0, B, "risk_l5"),
        (HealthInputs(0, data_age_s=None), 0, T, None),
    ],
    ids=["fresh", "stale-90", "stale-300", "2-errors", "3-errors", "10-errors", "ws-120", "ws-121", "L4", "L5", "no-stream"],
)
def test_thresholds_from_design(inputs: HealthInputs, errors: int, state: EngineState, code: str | None) -> None:
    sm = EngineStateMachine(S)
    for _ in range(errors):
        sm.errors.record(inputs.now_ms)
    transition = sm.step(inputs)
    assert sm.state is state
    if code is None:
        assert transition is None
    else:
        assert transition is not None
        assert code in {r.code for r in transition.reasons}
        reason = next(r for r in transition.reasons if r.code == code)
        assert reason.value is not None
        assert reason.threshold is not None


def test_order_errors_age_out_of_the_window() -> None:
    sm = EngineStateMachine(S)
    for t in (0, 1000, 2000):
        sm.errors.record(t)
    sm.step(HealthInputs(3000, data_age_s=1.0))
    assert sm.state is D
    later = 2000 + int(S.order_error_window_s * 1000)
    for i in range(S.recover_cycles_degraded):
        sm.step(HealthInputs(later + i, data_age_s=1.0))
    assert sm.state is T


def test_l5_blocks_for_the_whole_cooldown() -> None:
    sm = EngineStateMachine(S)
    sm.step(HealthInputs(0, data_age_s=1.0, risk_level=5))
    assert sm.state is B
    # Risk is back to normal, but healthy cycles cannot end the cool-down early.
    for minute in range(1, 60 * 24, 30):
        sm.step(HealthInputs(minute * MIN, data_age_s=1.0, risk_level=1))
        assert sm.state is B
    end = int(S.l5_cooldown_s * 1000)
    for i in range(S.recover_cycles_blocked):
        sm.step(HealthInputs(end + i, data_age_s=1.0))
    assert sm.state is T


def test_force_l5_blocks_on_next_step() -> None:
    sm = EngineStateMachine(S)
    sm.force_l5(0)
    sm.step(HealthInputs(1, data_age_s=1.0))
    assert sm.state is B
    assert sm.l5_until_ms == int(S.l5_cooldown_s * 1000)


def test_blocked_to_degraded_when_only_the_block_cause_clears() -> None:
    sm = EngineStateMachine(S)
    sm.step(HealthInputs(0, data_age_s=400.0))
    for i in range(S.recover_cycles_blocked):
        sm.step(HealthInputs(i + 1, data_age_s=100.0))
    assert sm.state is D


@pytest.mark.parametrize(
    "ages",
    [
        pytest.param([95.0] * 5 + [1.0], id="five-degraded-then-healthy"),
        pytest.param([1.0, 95.0, 1.0, 1.0, 1.0, 1.0], id="flapping"),
    ],
)
def test_out_of_blocked_to_tradeable_needs_six_healthy_cycles_in_a_row(ages: list[float]) -> None:
    """Six cycles without a blocking cause, not all healthy, lead from blocked to degraded;
    from there the usual three healthy cycles lead on to tradeable."""
    sm = EngineStateMachine(S)
    sm.step(HealthInputs(0, data_age_s=305.0))
    assert sm.state is B
    for i, age in enumerate(ages, start=1):
        sm.step(HealthInputs(i * 1000, data_age_s=age))
    assert sm.state is D
    start = (len(ages) + 1) * 1000
    for i in range(S.recover_cycles_degraded - 1):
        sm.step(HealthInputs(start + i * 1000, data_age_s=1.0))
        assert sm.state is D
    sm.step(HealthInputs(start + 10_000, data_age_s=1.0))
    assert sm.state is T


def test_recovery_reasons_count_what_they_say() -> None:
    sm = EngineStateMachine(S)
    sm.step(HealthInputs(0, data_age_s=305.0))
    sm.step(HealthInputs(1000, data_age_s=95.0))
    assert [(r.detail, r.value, r.threshold) for r in sm.reasons if r.code == "recovering"] == [
        ("cycles without a blocking cause 1/6 to degraded", 1, 6)
    ]
    sm.step(HealthInputs(2000, data_age_s=1.0))
    assert [(r.detail, r.value) for r in sm.reasons if r.code == "recovering"] == [
        ("healthy cycles 1/6 to tradeable", 1),
        ("cycles without a blocking cause 2/6 to degraded", 2),
    ]
    for i in range(3, 7):
        transition = sm.step(HealthInputs(i * 1000, data_age_s=1.0))
    assert transition is not None and (transition.from_state, transition.to_state) == (B, D)
    assert [r.detail for r in transition.reasons] == ["healthy cycles 0/3 to tradeable"]  # counted afresh in degraded


def test_l5_without_a_cooldown_blocks_until_the_level_falls() -> None:
    """`l5_cooldown_s = 0` still blocks on L5: for as long as risk stays at L5 (the UTC day)."""
    sm = EngineStateMachine(StateSection(l5_cooldown_s=0))
    sm.step(HealthInputs(0, data_age_s=1.0, risk_level=5))
    assert sm.state is B
    assert [(r.code, r.value, r.threshold) for r in sm.reasons] == [("risk_l5", 5, 5)]
    for i in range(1, 10):
        sm.step(HealthInputs(i * MIN, data_age_s=1.0, risk_level=5))
    assert sm.state is B
    for i in range(S.recover_cycles_blocked):
        sm.step(HealthInputs(DAY + i, data_age_s=1.0, risk_level=1))
    assert sm.state is T


def test_a_failed_journal_blocks_for_as_long_as_it_lasts() -> None:
    """A journal that cannot write (its events going to a spill file) blocks at once, with its
    own words as the reason; healthy cycles do not lift it (the writer never recovers in-run)."""
    failure = "journal write failed: disk is full; events saved to j.unwritten-9.jsonl"
    sm = EngineStateMachine(S)
    transition = sm.step(HealthInputs(0, data_age_s=1.0, journal_failure=failure))
    assert transition is not None and transition.to_state is B
    assert transition.payload()["reasons"] == ["journal"]
    assert [(r.code, r.detail, r.value) for r in sm.reasons] == [("journal", failure, None)]
    for i in range(1, 3 * S.recover_cycles_blocked):
        assert sm.step(HealthInputs(i * 1000, data_age_s=1.0, journal_failure=failure)) is None
    assert sm.state is B


def test_an_exchange_fault_blocks_under_its_own_reason_while_it_stands() -> None:
    """A refused key or clock skew blocks at once with what to fix as the reason (not as a count of
    order errors), and the usual hysteresis leads out once the fault is gone."""
    fault = StateReason("exchange_auth", "API key cannot trade or IP not whitelisted: fix the key's permissions")
    sm = EngineStateMachine(S)
    transition = sm.step(HealthInputs(0, data_age_s=1.0, exchange_fault=fault))
    assert transition is not None and transition.to_state is B
    assert transition.payload()["details"] == [
        {"code": "exchange_auth", "detail": fault.detail, "value": None, "threshold": None}
    ]
    assert sm.step(HealthInputs(1000, data_age_s=1.0, exchange_fault=fault)) is None
    for i in range(S.recover_cycles_blocked):
        sm.step(HealthInputs(2000 + i * 1000, data_age_s=1.0))
    assert sm.state is T


def test_the_cause_of_a_block_stays_in_the_reasons_until_tradeable() -> None:
    """A cause gone after one cycle (data 318 s old once, at a heartbeat) left a blocked engine
    saying only "recovering" in /health for six cycles: why it blocked was nowhere but the
    journal. The transition's own reasons, as journaled, are unchanged."""
    sm = EngineStateMachine(S)
    transition = sm.step(HealthInputs(0, data_age_s=318.9))
    assert transition is not None and [r.code for r in transition.reasons] == ["data_stale"]
    sm.step(HealthInputs(1000, data_age_s=1.0))
    (cause,) = [r for r in sm.reasons if r.code == "cause"]
    assert cause.detail == "blocked since 1970-01-01 00:00:00 UTC: market data stale (318.9 vs 300)"
    assert [r.code for r in sm.reasons] == ["cause", "recovering", "recovering"]
    sm.step(HealthInputs(2000, data_age_s=318.9))  # the cause back: it speaks for itself
    assert "cause" not in [r.code for r in sm.reasons]
    for i in range(3, 20):
        transition = sm.step(HealthInputs(i * 1000, data_age_s=1.0)) or transition
    assert sm.state is T and sm.reasons == ()
    assert transition is not None and "cause" not in [r.code for r in transition.reasons]


def test_the_healthy_tradeable_shortcut_answers_as_the_table_does() -> None:
    """`step` skips the table for a healthy cycle of a tradeable engine: a random walk through
    every trigger, stepped beside a machine that always reads the table, stays in lockstep
    (state, reasons, counts, transitions)."""
    rng = random.Random(7)
    fast, table = EngineStateMachine(S), EngineStateMachine(S)
    triggers = [Trigger.HEALTHY] * 6 + [Trigger.DEGRADE, Trigger.BLOCK]
    for i in range(2000):
        h = INPUT_FOR[rng.choice(triggers)](i * MIN)
        got = fast.step(h)
        want = table._by_table(*table.evaluate(h), h.now_ms)
        assert (got, fast.state, fast.reasons, fast._runs) == (want, table.state, table.reasons, table._runs)


def test_step_measured_answers_as_step_does() -> None:
    """`step_measured` counts a healthy tradeable cycle without building its inputs: a random
    walk over every measurement it reads (data age at and around both thresholds, unknown too,
    websocket downtime, order errors, risk level L5, a failed journal, an exchange fault),
    stepped beside a machine fed the same as `HealthInputs`, stays in lockstep (state, reasons,
    counts, L5 cool-down, the error window, transitions)."""
    rng = random.Random(11)
    fast, plain = EngineStateMachine(S), EngineStateMachine(S)
    fault = StateReason("api_key", "key refused")
    ages = [None, 0.0, 1.0, S.stale_degraded_s - 0.1, S.stale_degraded_s, S.stale_blocked_s, float("nan")]
    for i in range(4000):
        now = i * MIN
        if rng.random() < 0.03:  # errors land on both machines alike, in bursts
            for _ in range(rng.randint(1, 4)):
                fast.errors.record(now)
                plain.errors.record(now)
        healthy = rng.random() < 0.7
        measured = (
            now,
            1.0 if healthy else rng.choice(ages),
            0.0 if healthy else rng.choice([0.0, S.ws_down_degraded_s, S.ws_down_degraded_s + 1]),
            1 if healthy else rng.choice([1, 4, 5]),
            None if healthy or rng.random() < 0.9 else "disk full",
            None if healthy or rng.random() < 0.9 else fault,
        )
        got = fast.step_measured(*measured)
        want = plain.step(HealthInputs(*measured))
        assert (got, fast.state, fast.reasons, fast._runs, fast.l5_until_ms) == (
            want, plain.state, plain.reasons, plain._runs, plain.l5_until_ms
        )
        assert fast.errors.count(now) == plain.errors.count(now)
