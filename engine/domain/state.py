"""Engine state as seen by the state machine, the UI and the journal."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EngineState(enum.StrEnum):
    """What the engine may do right now.

    tradeable: everything. degraded: no new entries, exits continue.
    blocked: no new orders except exits and close-all.
    """

    TRADEABLE = "tradeable"
    DEGRADED = "degraded"
    BLOCKED = "blocked"

    @property
    def allows_entries(self) -> bool:
        return self is EngineState.TRADEABLE


@dataclass(frozen=True, slots=True)
class StateReason:
    """One reason the engine is not (or no longer) tradeable, e.g. `data_stale` 95 s >= 90 s."""

    code: str
    detail: str
    value: float | None = None
    threshold: float | None = None
