"""Stub factories for engine snapshots (what readers see)."""

from __future__ import annotations

from typing import Any

from engine.runtime.snapshot import (
    CandidateRow,
    EngineSnapshot,
    EngineStatus,
    Mode,
    PositionRow,
    StreamRow,
    Totals,
)
from tests.kit.domain import T0


def make_status(**overrides: Any) -> EngineStatus:
    fields: dict[str, Any] = {
        "state": "tradeable",
        "reasons": (),
        "mode": Mode.SIM,
        "paused": False,
        "risk_level": 1,
        "order_error_rate": 0.0,
        "streams": (StreamRow("tickers", "connected", T0 - 1500),),
        "run_id": "run-1",
        "config_hash": "cfg",
    }
    fields.update(overrides)
    return EngineStatus(**fields)


def make_snapshot(**overrides: Any) -> EngineSnapshot:
    fields: dict[str, Any] = {
        "seq": 1,
        "ts_ms": T0,
        "status": make_status(),
        "candidates": (
            CandidateRow("DOGE/USDT", "aaaa", 88.0, 1, 0.3, 0.01, 0.05, 0.2, 6.0, None, ("ticker",), "enter"),
        ),
        "positions": (PositionRow("DOGE/USDT", "aaaa", 100.0, 0.3, 0.33, 3.0, 0.0, 0, 0.28, T0 - 60_000),),
        "totals": Totals(equity=10_003.0, cash=9_970.0, exposure=33.0, day_pnl=3.0, daily_loss_limit=-300.0),
    }
    fields.update(overrides)
    return EngineSnapshot(**fields)
