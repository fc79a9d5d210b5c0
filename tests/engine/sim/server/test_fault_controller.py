"""The fault controller alone: counters, priorities, validation, bans on a fake clock."""

from __future__ import annotations

import pytest

from engine.sim.server.faults import FaultController, FaultPlan, RestFaultKind


class FakeWall:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def test_one_shot_faults_count_down_in_priority_order() -> None:
    c = FaultController(FaultPlan(rate_limit_burst=1, server_errors=2, hang_requests=1, server_error_statuses=[502, 503]))
    kinds = [(f.kind, f.status) if f else None for f in (c.next_rest_fault() for _ in range(5))]
    assert kinds == [
        (RestFaultKind.RATE_LIMITED, 429),
        (RestFaultKind.SERVER_ERROR, 502),
        (RestFaultKind.SERVER_ERROR, 503),
        (RestFaultKind.HANG, 0),
        None,
    ]
    assert c.snapshot()["injected"] == {"banned": 0, "rate_limited": 1, "server_error": 2, "hang": 1, "lost_reply": 0, "late_order": 0}


def test_ban_outranks_everything_until_it_expires() -> None:
    wall = FakeWall()
    c = FaultController(FaultPlan(rate_limit_burst=1), wall_ms=wall)
    c.ban(2.5)
    fault = c.next_rest_fault()
    assert fault is not None and (fault.kind, fault.status, fault.retry_after_s) == (RestFaultKind.BANNED, 418, 3)
    wall.ms += 2_500
    after = c.next_rest_fault()
    assert after is not None and after.kind is RestFaultKind.RATE_LIMITED  # the burst was not consumed by the ban


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"latency_ms": -1}, id="negative-latency"),
        pytest.param({"ticker_nan_rate": 1.5}, id="rate-above-one"),
        pytest.param({"no_such_knob": 1}, id="unknown-knob"),
        pytest.param({"server_error_statuses": [404]}, id="not-5xx"),
        pytest.param({"latency_ms": 5, "ban_s": "soon"}, id="bad-ban"),
    ],
)
def test_bad_updates_change_nothing(changes: dict[str, object]) -> None:
    c = FaultController()
    before = c.snapshot()
    with pytest.raises(ValueError, match=r"ban_s|invalid fault settings"):
        c.update(changes)
    assert c.snapshot() == before


def test_corruption_rates_are_all_or_nothing_at_the_extremes() -> None:
    c = FaultController(FaultPlan(ticker_nan_rate=1.0))
    rows: list[dict[str, object]] = [{"c": "1", "b": "1", "a": "1", "h": "1", "l": "1"} for _ in range(3)]
    c.corrupt_tickers(rows, ("b", "a", "h", "l"))
    assert all(r == {"c": "1", "b": "NaN", "a": "NaN", "h": "NaN", "l": "NaN"} for r in rows)
    c.update({"ticker_nan_rate": 0.0, "ticker_malformed_rate": 1.0})
    c.corrupt_tickers(rows, ("b",))
    assert all((r["c"], r["h"]) == ("1.2.3", None) for r in rows)
