from __future__ import annotations

from pydantic import Field

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
