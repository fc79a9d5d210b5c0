"""The one-line text of each event in the console's Events panel (`event_line`)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.runtime.tap import event_line


def check(name: str, passed: bool, value: object, threshold: object) -> dict[str, Any]:
    return {"name": name, "passed": passed, "value": value, "threshold": threshold}


@pytest.mark.parametrize(("kind", "payload", "line"), [
    ("risk_check", {"approved": True, "checks": [check("max_concurrent", True, 0, 2)]}, "approved"),
    ("risk_check", {"approved": False, "checks": [check("engine_state", True, "tradeable", "tradeable"), check("operator_pause", False, True, False)]},
     "rejected: operator_pause value True threshold False"),
    ("risk_check", {"approved": False, "checks": [check("daily_loss", False, -0.0577171234, 0.03), check("cash", False, 1.5, 6)]},
     "rejected: daily_loss value -0.0577171 threshold 0.03 (+1 more)"),
    ("risk_check", {"approved": False, "checks": []}, "rejected"),
    ("run_start", {"run_id": "20261205T025425-1bc14e", "config_hash": "ab", "mode": "PAPER"}, "run 20261205T025425-1bc14e started (PAPER)"),
    ("run_start", {"run_id": "r1", "config_hash": "ab", "mode": "PAPER", "capital": 300.0}, "run r1 started (PAPER, capital 300.0)"),
    ("run_stop", {"run_id": "20261205T025425-1bc14e", "reason": "shutdown"}, "run 20261205T025425-1bc14e stopped (shutdown)"),
], ids=["approved", "rejected", "rejected-twice", "rejected-no-checks", "run-start", "run-start-capital", "run-stop"])  # fmt: skip
def test_risk_checks_and_runs_say_what_happened(kind: str, payload: dict[str, Any], line: str) -> None:
    """The Events panel showed an empty What for these: every risk check and every run."""
    assert event_line(kind, payload) == line
