from __future__ import annotations

import math
from typing import Any

import pytest

from engine.errors import EventValidationError
from engine.journal.events import KINDS, check, make_trace_id, validate_event

GOOD: dict[str, dict[str, Any]] = {
    "run_start": {"run_id": "r1", "config_hash": "abc", "mode": "paper"},
    "run_stop": {"run_id": "r1", "reason": "duration"},
    "candidate_snapshot": {"heat": 81.5, "components": {"momentum": 0.9}, "rank": 1, "price": 0.3, "filters": [check("min_quote_volume", True, 5e7, 1e6)], "accepted": True},
    "signal_snapshot": {"decision": "enter", "reason": "all rules passed", "rules": [], "features": {"ret_5": 0.04}},
    "risk_check": {"approved": False, "checks": [check("max_concurrent", False, 3, 3)]},
    "order_attempt": {"client_order_id": "hc-1", "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "100"},
    "order_result": {"client_order_id": "hc-1", "status": "filled", "error_class": None},
    "fill": {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03},
    "order_anomaly": {"client_order_id": "hc-1", "detail": "landed late: the exchange has it filled"},
    "position_update": {"action": "open", "quantity": 100.0, "entry_price": 0.3, "realised_pnl": 0.0},
    "state_change": {"from": "tradeable", "to": "degraded", "reasons": ["data_stale"]},
    "risk_event": {"code": "daily_loss", "level": "L4", "detail": "-3.2% of start-of-day equity"},
    "model_shadow": {"model": "hot_lgbm@abc", "score": 0.71},
    "command": {"command": "close_all", "origin": "tui"},
    "checkpoint": {"through_seq": 41, "capital": 10_000.0, "digest": "00ff", "state": {"cash": 9_500.0}},
    "listing": {"listed_ms": 1_700_000_000_000, "reason": "new_symbol", "detail": "listing dated new_symbol, 0 min ago"},
    "command_refused": {"command": "/pause", "origin": "telegram:mallory#77", "reason": "unknown chat", "chat_id": -100},
}


def test_every_kind_has_a_good_example() -> None:
    assert set(GOOD) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_good_payloads_validate(kind: str) -> None:
    assert validate_event(kind, 1, GOOD[kind]) == KINDS[kind].v


@pytest.mark.parametrize(
    ("kind", "ts", "payload", "message"),
    [
        ("nonsense", 1, {}, "unknown event kind 'nonsense'"),
        ("fill", -1, GOOD["fill"], "ts_ms must be a non-negative int"),
        ("fill", 1.5, GOOD["fill"], "ts_ms must be a non-negative int"),
        ("fill", 1, ["not", "a", "dict"], "payload must be a mapping"),
        ("fill", 1, {**GOOD["fill"], "price": math.nan}, "fill.price: nan is not a finite number"),
        ("fill", 1, {**GOOD["fill"], "price": "0.3"}, "fill.price: expected int | float, got str"),
        ("candidate_snapshot", 1, {**GOOD["candidate_snapshot"], "rank": True}, "expected int, got bool"),
        ("order_result", 1, {"client_order_id": "x", "status": "ok"}, "lacks required field 'error_class'"),
    ],
    ids=["unknown-kind", "negative-ts", "float-ts", "list-payload", "nan", "str-number", "bool-as-int", "missing-field"],
)
def test_malformed_events_are_rejected_with_the_reason(kind: str, ts: Any, payload: Any, message: str) -> None:
    with pytest.raises(EventValidationError, match=message):
        validate_event(kind, ts, payload)


def test_trace_ids_are_derived_and_short() -> None:
    a = make_trace_id("run1", "DOGE/USDT", 1000)
    assert a == make_trace_id("run1", "DOGE/USDT", 1000)
    assert a != make_trace_id("run1", "DOGE/USDT", 1001)
    assert len(a) == 16 and int(a, 16) >= 0
