from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from engine.config.sections.base import Section


class StateSection(Section):
    """Thresholds of the engine_state machine (seed numbers from DESIGN.md)."""

    stale_degraded_s: float = Field(90.0, gt=0, description="Market data older than this -> degraded.")
    stale_blocked_s: float = Field(300.0, gt=0, description="Market data older than this -> blocked.")
    order_error_window_s: float = Field(300.0, gt=0, description="Window over which order errors are counted.")
    order_errors_degraded: int = Field(3, ge=1, description="Order errors in the window that degrade the engine.")
    order_errors_blocked: int = Field(10, ge=1, description="Order errors in the window that block the engine.")
    ws_down_degraded_s: float = Field(
        120.0, gt=0, description="WebSocket down longer than this -> no new positions (degraded)."
    )
    l5_cooldown_s: float = Field(
        86_400.0,
        ge=0,
        description=(
            "Risk level L5 blocks the engine for this long, and in any case while the level lasts "
            "(the rest of the UTC day): 0 blocks until the day ends."
        ),
    )
    recover_cycles_degraded: int = Field(3, ge=1, description="Healthy cycles in a row to leave degraded.")
    recover_cycles_blocked: int = Field(6, ge=1, description="Cycles in a row without a blocking cause to leave blocked.")

    @model_validator(mode="after")
    def _degraded_before_blocked(self) -> Self:
        """A degraded threshold above its blocked one would skip the degraded step unseen (the
        blocked check comes first); equal ones go straight to blocked, which may be meant."""
        for degraded, blocked in (("stale_degraded_s", "stale_blocked_s"), ("order_errors_degraded", "order_errors_blocked")):
            if getattr(self, degraded) > getattr(self, blocked):
                raise ValueError(
                    f"state.{degraded}={getattr(self, degraded)} exceeds state.{blocked}={getattr(self, blocked)}: "
                    "the engine would block without ever degrading first; lower the first or raise the second"
                )
        return self
