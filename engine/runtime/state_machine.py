"""engine_state: tradeable | degraded | blocked, as a transition table with reasons.

Each cycle (one market batch) the runtime measures the engine's health (`HealthInputs`) and
calls `step()`, once: an operator command between batches is no cycle and must not count
towards recovery. The measurement becomes a `Trigger` (the worst condition seen), and the
table below says where the engine may go from each state and after how many cycles in a row
no worse than a trigger: getting worse is immediate, getting better needs hysteresis (3 healthy
cycles out of degraded, 6 out of blocked), so a flapping feed cannot flip the engine between
trading and not trading every second.

Risk level L5 blocks for a cool-down (24 h by default) that healthy cycles cannot shorten, and
for as long as the level stays L5 (the rest of the UTC day: levels do not fall back intraday).
A journal that can no longer write (its events saved to a spill file instead) blocks for the
rest of the run: no new position without a journal, while exits go on closing the ones held.
An exchange fault a human must fix (`HealthInputs.exchange_fault`: the key refused, clock skew)
blocks while it stands, under its own reason rather than as a count of order errors; exits and
close-all are still tried (backed off by the core), and the first that works clears it.
Pure: time comes in with the inputs; the runtime journals each `Transition` as `state_change`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.config.sections.state import StateSection
from engine.domain import EngineState, StateReason
from engine.timefmt import utc_second

T, D, B = EngineState.TRADEABLE, EngineState.DEGRADED, EngineState.BLOCKED


class Trigger(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADE = "degrade"
    BLOCK = "block"


class InvalidTransition(Exception):
    """A (state, trigger) pair the table does not know: a programming error, never data."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Where a trigger leads and after how many consecutive cycles (`streak` setting name or 0)."""

    target: EngineState
    streak: str | None = None  # name of the StateSection field holding the cycle count


# (state, trigger) -> rule: the engine in `state` goes to `target` once `streak` cycles in a
# row, counted since it entered `state`, were no worse than `trigger` (no streak: at once).
# Each cycle every rule of the current state whose trigger is no better than the cycle's is
# considered, and the engine goes to the best target among those satisfied; the (state, BLOCK)
# rules need no streak, so one always is. So from BLOCKED: 6 healthy cycles in a row lead to
# TRADEABLE; 6 cycles in a row without a blocking cause, some of them degraded, lead to
# DEGRADED, from which 3 healthy cycles in a row lead on to TRADEABLE. A cycle worse than a
# rule's trigger restarts that rule's count.
TRANSITIONS: dict[tuple[EngineState, Trigger], Rule] = {
    (T, Trigger.HEALTHY): Rule(T),
    (T, Trigger.DEGRADE): Rule(D),
    (T, Trigger.BLOCK): Rule(B),
    (D, Trigger.HEALTHY): Rule(T, "recover_cycles_degraded"),
    (D, Trigger.DEGRADE): Rule(D),
    (D, Trigger.BLOCK): Rule(B),
    (B, Trigger.HEALTHY): Rule(T, "recover_cycles_blocked"),
    (B, Trigger.DEGRADE): Rule(D, "recover_cycles_blocked"),
    (B, Trigger.BLOCK): Rule(B),
}

_SEVERITY = {Trigger.HEALTHY: 0, Trigger.DEGRADE: 1, Trigger.BLOCK: 2}
_RANK = {T: 0, D: 1, B: 2}  # best first
_COUNTED = {Trigger.HEALTHY: "healthy cycles", Trigger.DEGRADE: "cycles without a blocking cause"}


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """One cycle's measurements. Ages in seconds; None means "no such stream configured"."""

    now_ms: int
    data_age_s: float | None
    ws_down_s: float = 0.0
    risk_level: int = 1
    journal_failure: str | None = None  # the journal's writer failed: what and where its events go
    exchange_fault: StateReason | None = None  # the exchange refuses us until a human acts (key, clock)


@dataclass(frozen=True, slots=True)
class Transition:
    from_state: EngineState
    to_state: EngineState
    reasons: tuple[StateReason, ...]

    def payload(self) -> dict[str, Any]:
        """The `state_change` journal payload (the runtime and the backtester journal the same)."""
        return {
            "from": self.from_state.value,
            "to": self.to_state.value,
            "reasons": [r.code for r in self.reasons],
            "details": [
                {"code": r.code, "detail": r.detail, "value": r.value, "threshold": r.threshold} for r in self.reasons
            ],
        }


class OrderErrorWindow:
    """Timestamps of order errors within the last `window_s` (bounded by the window itself)."""

    def __init__(self, window_s: float) -> None:
        self._window_ms = int(window_s * 1000)
        self._times: deque[int] = deque()

    def record(self, ts_ms: int) -> None:
        self._times.append(ts_ms)

    def count(self, now_ms: int) -> int:
        while self._times and self._times[0] <= now_ms - self._window_ms:
            self._times.popleft()
        return len(self._times)


class EngineStateMachine:
    def __init__(self, settings: StateSection, initial: EngineState = T) -> None:
        self._s = settings
        self.state = initial
        self.reasons: tuple[StateReason, ...] = ()
        # Why the engine left tradeable (or got worse), kept until it is tradeable again: a
        # cause gone after one cycle left a blocked engine's reasons saying only "recovering".
        self._cause: StateReason | None = None
        self.errors = OrderErrorWindow(settings.order_error_window_s)
        self._runs = dict.fromkeys(Trigger, 0)  # trigger -> cycles in a row no worse than it, in this state
        self._l5_until_ms = 0

    @property
    def l5_until_ms(self) -> int:
        return self._l5_until_ms

    def evaluate(self, h: HealthInputs) -> tuple[Trigger, tuple[StateReason, ...]]:
        """The worst condition in this measurement, and every reason that is not healthy."""
        s = self._s
        reasons: list[StateReason] = []
        block = degrade = False
        if h.data_age_s is not None:
            if h.data_age_s >= s.stale_blocked_s:
                block = True
                reasons.append(StateReason("data_stale", "market data stale", h.data_age_s, s.stale_blocked_s))
            elif h.data_age_s >= s.stale_degraded_s:
                degrade = True
                reasons.append(StateReason("data_stale", "market data stale", h.data_age_s, s.stale_degraded_s))
        errors = self.errors.count(h.now_ms)
        if errors >= s.order_errors_blocked:
            block = True
            reasons.append(StateReason("order_errors", "order errors in window", errors, s.order_errors_blocked))
        elif errors >= s.order_errors_degraded:
            degrade = True
            reasons.append(StateReason("order_errors", "order errors in window", errors, s.order_errors_degraded))
        if h.ws_down_s > s.ws_down_degraded_s:
            degrade = True
            reasons.append(StateReason("ws_down", "websocket down", h.ws_down_s, s.ws_down_degraded_s))
        if h.risk_level >= 5 and self._l5_until_ms <= h.now_ms:
            self._l5_until_ms = h.now_ms + int(s.l5_cooldown_s * 1000)
        if self._l5_until_ms > h.now_ms:
            block = True
            left = (self._l5_until_ms - h.now_ms) / 1000
            reasons.append(StateReason("risk_l5", "risk level L5 cool-down", left, s.l5_cooldown_s))
        elif h.risk_level >= 5:  # no cool-down configured: blocked while the level lasts (the day)
            block = True
            reasons.append(StateReason("risk_l5", "risk level L5 until the UTC day ends", h.risk_level, 5))
        if h.journal_failure is not None:
            block = True
            reasons.append(StateReason("journal", h.journal_failure))
        if h.exchange_fault is not None:
            block = True
            reasons.append(h.exchange_fault)
        trigger = Trigger.BLOCK if block else Trigger.DEGRADE if degrade else Trigger.HEALTHY
        return trigger, tuple(reasons)

    def step(self, h: HealthInputs) -> Transition | None:
        """Advance one cycle (one market batch, never a command); returns the transition if the
        state changed. The reasons say what is wrong and, while recovering, how far each way
        out has counted (a transition's, as counted in the state it enters)."""
        trigger, found = self.evaluate(h)
        if trigger is Trigger.HEALTHY and self.state is T:
            # Nearly every cycle: a healthy cycle of a tradeable engine. Every rule of T leads
            # at once and none waits; a healthy cycle has no reasons and T keeps no cause. So
            # the table's answer is known without reading it: the counts go on, the state
            # stays (a backtest's month is 40,000 of these; `tests/engine/runtime/
            # test_state_machine.py` walks both ways side by side).
            self.count_healthy(1)
            return None
        return self._by_table(trigger, found, h.now_ms)

    def step_measured(
        self, now_ms: int, data_age_s: float | None, ws_down_s: float, risk_level: int,
        journal_failure: str | None, exchange_fault: StateReason | None,
    ) -> Transition | None:
        """`step(HealthInputs(...))` of these measurements, in its fields' order, for the
        runtime's one step a batch. A tradeable engine measured healthy (every check of
        `evaluate` below its threshold: a backtest's month is 40,000 such minutes) is counted
        without building the inputs, its reasons or the trigger, which cost more than the rest
        of the step; anything else goes through `step` itself. Pinned against `step` by
        `tests/engine/runtime/test_state_machine.py`."""
        if self.healthy_in_tradeable(now_ms, data_age_s, ws_down_s, risk_level, journal_failure, exchange_fault):
            self.count_healthy(1)
            return None
        return self.step(HealthInputs(now_ms, data_age_s, ws_down_s, risk_level, journal_failure, exchange_fault))

    def healthy_in_tradeable(
        self, now_ms: int, data_age_s: float | None, ws_down_s: float, risk_level: int,
        journal_failure: str | None, exchange_fault: StateReason | None,
    ) -> bool:  # fmt: skip
        """Whether a step of these measurements would be a healthy cycle of a tradeable engine
        (`step_measured`'s fast path), steps not counted: `count_healthy` counts them. It
        drops the order errors the window left behind, as `evaluate` does, and nothing else."""
        s = self._s
        if (
            self.state is T
            and journal_failure is None
            and exchange_fault is None
            and risk_level < 5
            and self._l5_until_ms <= now_ms
            and ws_down_s <= s.ws_down_degraded_s
            and (data_age_s is None or (data_age_s < s.stale_blocked_s and data_age_s < s.stale_degraded_s))
        ):
            errors = self.errors.count(now_ms)  # last: it drops the errors the window left behind, as `evaluate`
            return errors < s.order_errors_blocked and errors < s.order_errors_degraded
        return False

    def count_healthy(self, n: int) -> None:
        """`n` healthy cycles of a tradeable engine (`healthy_in_tradeable` said so of each):
        the counts go on, the state stays, no reasons."""
        runs = self._runs
        for t in runs:
            runs[t] += n
        self.reasons = ()

    def _by_table(self, trigger: Trigger, found: tuple[StateReason, ...], now_ms: int) -> Transition | None:
        """`step` for a cycle measured as `trigger` with reasons `found`, read from the table."""
        worst = _SEVERITY[trigger]
        for t in Trigger:
            self._runs[t] = self._runs[t] + 1 if worst <= _SEVERITY[t] else 0
        rules = self._rules(worst)
        target = min((rule.target for t, rule, needed in rules if self._runs[t] >= needed), key=_RANK.__getitem__)
        before = self.state
        if target is not before:
            self.state, self._runs = target, dict.fromkeys(Trigger, 0)
            rules = self._rules(worst)
            if target is T:
                self._cause = None
            elif _RANK[target] > _RANK[before]:
                self._cause = _cause(target, now_ms, found)
        waiting = tuple(
            StateReason("recovering", f"{_COUNTED[t]} {self._runs[t]}/{needed} to {rule.target.value}", self._runs[t], needed)
            for t, rule, needed in rules
            if self._runs[t] < needed and _RANK[rule.target] < _RANK[self.state]
        )
        since = () if found or self._cause is None else (self._cause,)
        self.reasons = (*found, *since, *waiting)
        return None if target is before else Transition(before, target, (*found, *waiting))

    def _rules(self, worst: int) -> list[tuple[Trigger, Rule, int]]:
        """The current state's rules that a cycle of severity `worst` counts for, each with the
        cycles in a row it needs."""
        rules = []
        for t in Trigger:
            if _SEVERITY[t] < worst:
                continue
            rule = TRANSITIONS.get((self.state, t))
            if rule is None:
                raise InvalidTransition(f"no rule for ({self.state}, {t})")
            rules.append((t, rule, 0 if rule.streak is None else int(getattr(self._s, rule.streak))))
        return rules

    def restore(self, state: EngineState, error_times: Iterable[int]) -> None:
        """After a restart: the state the journal last recorded and the order errors it saw, so
        a restart neither lifts a block nor forgets the errors that count towards one; leaving
        the restored state takes the usual hysteresis."""
        self.state, self.reasons, self._cause = state, (), None
        self._runs = dict.fromkeys(Trigger, 0)
        for ts_ms in error_times:
            self.errors.record(ts_ms)

    def restore_l5(self, until_ms: int) -> None:
        """After a restart: the L5 block reached before it runs on to its original end."""
        self._l5_until_ms = max(self._l5_until_ms, until_ms)

    def force_l5(self, now_ms: int) -> None:
        """Risk asks for blocked now (the next `step` applies it)."""
        self._l5_until_ms = now_ms + int(self._s.l5_cooldown_s * 1000)


def _cause(state: EngineState, now_ms: int, found: tuple[StateReason, ...]) -> StateReason:
    """What made the engine `state` at `now_ms`, as one reason (code `cause`) that stays in its
    reasons once the conditions themselves are gone, until it is tradeable again."""
    what = "; ".join(_said(r) for r in found) or "no reason recorded"
    return StateReason("cause", f"{state.value} since {utc_second(now_ms)}: {what}")


def _said(r: StateReason) -> str:
    if r.value is None:
        return r.detail
    return f"{r.detail} ({r.value:g})" if r.threshold is None else f"{r.detail} ({r.value:g} vs {r.threshold:g})"
