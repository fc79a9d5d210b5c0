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
     "rejected: operator_pause True = False does not hold"),
    ("risk_check", {"approved": False, "checks": [check("daily_loss", False, 0.0577171234, 0.03), check("cash", False, 1.5, 6)]},
     "rejected: daily_loss 0.0577171 < 0.03 does not hold (+1 more)"),
    ("risk_check", {"approved": False, "checks": [check("max_concurrent", False, 1, 1)]}, "rejected: max_concurrent 1 < 1 does not hold"),
    ("risk_check", {"approved": False, "checks": [check("max_concurrent_positions", False, 3, 3)]},
     "rejected: max_concurrent_positions value 3 threshold 3"),
    ("risk_check", {"approved": False, "checks": []}, "rejected"),
    ("run_start", {"run_id": "20261205T025425-1bc14e", "config_hash": "ab", "mode": "PAPER"}, "run 20261205T025425-1bc14e started (PAPER)"),
    ("run_start", {"run_id": "r1", "config_hash": "ab", "mode": "PAPER", "capital": 300.0}, "run r1 started (PAPER, capital 300.0)"),
    ("run_stop", {"run_id": "20261205T025425-1bc14e", "reason": "shutdown"}, "run 20261205T025425-1bc14e stopped (shutdown)"),
], ids=["approved", "rejected", "rejected-twice", "rejected-at-the-limit", "rejected-by-an-unknown-check", "rejected-no-checks", "run-start", "run-start-capital", "run-stop"])  # fmt: skip
def test_risk_checks_and_runs_say_what_happened(kind: str, payload: dict[str, Any], line: str) -> None:
    """The Events panel showed an empty What for these: every risk check and every run."""
    assert event_line(kind, payload) == line


@pytest.mark.parametrize(("payload", "line"), [
    ({"side": "sell", "quantity": 1984.0, "price": 0.025599194000000002}, "sell 1,984.0 @ 0.025599"),
    ({"side": "buy", "quantity": 3, "price": 1.41718e-6}, "buy 3 @ 0.0₅14172"),
    ({"side": "buy", "quantity": 12.5, "price": 61234.56}, "buy 12.5 @ 61235"),
], ids=["float-noise", "micro-price", "large-price"])  # fmt: skip
def test_fills_read_as_the_console_shows_prices_and_sizes(payload: dict[str, Any], line: str) -> None:
    """Audit: `sell 1984.0 @ 0.025599194000000002`, a float's noise where every panel shows
    five significant digits."""
    assert event_line("fill", {"client_order_id": "c1", "fee_quote": 0.01, **payload}) == line


def test_a_raised_trailing_stop_says_the_stop_and_its_peak() -> None:
    """A `trail` position update sells nothing: "trail pnl +0.00" said nothing; the stop it
    raised and the peak under it are what the owner reads it for."""
    payload = {"action": "trail", "quantity": 737.262, "entry_price": 0.138779355, "realised_pnl": 0.0,
               "trailing_high": 0.144795, "stop": 0.14045115}  # fmt: skip
    assert event_line("position_update", payload) == "trailing stop 0.14045 (peak 0.14480)"
