"""engine_state: tradeable | degraded | blocked, as a transition table with reasons.

Each cycle the runtime measures the engine's health (`HealthInputs`) and calls `step()`.
The measurement becomes a `Trigger` (the worst condition seen), and the table below says
where that trigger leads from each state and how many cycles in a row it must hold first:
getting worse is immediate, getting better needs hysteresis (3 healthy cycles out of
degraded, 6 cycles without a blocking cause out of blocked), so a flapping feed cannot
flip the engine between trading and not trading every second.

Risk level L5 blocks for a cool-down (24 h by default) that healthy cycles cannot shorten.
Pure: time comes in with the inputs; the runtime journals each `Transition` as `state_change`.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

from engine.config.sections.state import StateSection
from engine.domain import EngineState, StateReason

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


# (state, trigger) -> rule. From BLOCKED, DEGRADE and HEALTHY both count as "not blocking":
# after enough of them the engine lands in whatever state the current trigger implies.
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


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """One cycle's measurements. Ages in seconds; None means "no such stream configured"."""

    now_ms: int
    data_age_s: float | None
    ws_down_s: float = 0.0
    risk_level: int = 1


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
        self.errors = OrderErrorWindow(settings.order_error_window_s)
        self._streak = 0
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
        trigger = Trigger.BLOCK if block else Trigger.DEGRADE if degrade else Trigger.HEALTHY
        return trigger, tuple(reasons)

    def step(self, h: HealthInputs) -> Transition | None:
        """Advance one cycle; returns the transition if the state changed."""
        trigger, reasons = self.evaluate(h)
        rule = TRANSITIONS.get((self.state, trigger))
        if rule is None:
            raise InvalidTransition(f"no rule for ({self.state}, {trigger})")
        target = rule.target
        if rule.streak is not None:
            self._streak += 1
            needed: int = getattr(self._s, rule.streak)
            if self._streak < needed:
                target = self.state
                waiting = StateReason("recovering", f"healthy cycles {self._streak}/{needed}", self._streak, needed)
                reasons = (*reasons, waiting)
        if target is self.state:
            if rule.streak is None:
                self._streak = 0
            self.reasons = reasons
            return None
        transition = Transition(self.state, target, reasons)
        self.state, self.reasons, self._streak = target, reasons, 0
        return transition

    def restore_l5(self, until_ms: int) -> None:
        """After a restart: the L5 block reached before it runs on to its original end."""
        self._l5_until_ms = max(self._l5_until_ms, until_ms)

    def force_l5(self, now_ms: int) -> None:
        """Risk asks for blocked now (the next `step` applies it)."""
        self._l5_until_ms = now_ms + int(self._s.l5_cooldown_s * 1000)
