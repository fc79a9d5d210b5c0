from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from engine.journal.events import check
from engine.journal.trace import Check, as_dict, build_tree, summarise
from tests.kit.domain import T0
from tests.kit.events import (
    RecordingSink,
    WrittenTrace,
    close_all_trace,
    entered_trace,
    filter_rejected_trace,
    opened_trace,
    risk_rejected_trace,
    rule_rejected_trace,
)


def explain(factory: Any, **kwargs: Any) -> tuple[WrittenTrace, Any]:
    sink = RecordingSink()
    written = factory(sink, **kwargs)
    return written, summarise(written.trace_id, sink.trace(written.trace_id))


def test_an_entered_trace_explains_discovery_signal_risk_orders_and_exit() -> None:
    _, s = explain(entered_trace)
    assert s.verdict.outcome == "entered"
    assert s.verdict.blocked_by is None
    assert s.discovery is not None and s.discovery.accepted and s.discovery.heat == 82.4
    assert s.discovery.components["momentum"] == 0.82
    assert s.signal is not None and (s.signal.decision, s.signal.ml_score, s.signal.ml_threshold) == ("enter", 0.71, 0.6)
    assert s.risk is not None and s.risk.approved
    assert [(o.purpose, o.status, o.filled_qty) for o in s.orders] == [("entry", "filled", 166.0), ("take_profit", "filled", 166.0)]
    assert s.orders[1].average_price == 0.3304
    assert [p.action for p in s.positions] == ["open", "close"]
    assert s.exit_purpose == "take_profit"
    assert s.realised_pnl == pytest.approx((0.3304 - 0.3003) * 166 - 0.0498 - 0.0548)
    assert "realised PnL +4.8920" in s.verdict.reason


def test_an_entered_trace_shows_the_signal_that_went_on_to_risk_not_an_earlier_bars_skip() -> None:
    """A trace spans bars: its first signal may be a skip (features not there yet), a later
    bar's the entry. The summary and verdict read the one the risk check followed."""
    sink = RecordingSink()
    written = entered_trace(sink)
    events = sink.trace(written.trace_id)
    candidate = events[0]
    skip = sink.emit(
        "signal_snapshot", ts_ms=candidate.ts_ms + 1, trace_id=written.trace_id, symbol=candidate.symbol, cause=candidate.seq,
        payload={"decision": "skip", "reason": "failed: momentum_5", "rules": [check("momentum_5", False, None, 0.01)],
                 "features": {"ret_5": None}, "ml_score": None, "ml_threshold": None},
    )  # fmt: skip
    (early,) = [e for e in sink.trace(written.trace_id) if e.seq == skip]
    s = summarise(written.trace_id, [replace(early, seq=0), *events])  # as an earlier bar's skip: first in the trace
    assert s.signal is not None and s.signal.decision == "enter"
    assert s.verdict.outcome == "entered"


@pytest.mark.parametrize(
    ("factory", "kwargs", "stage", "blocker"),
    [
        (filter_rejected_trace, {"value": 4.0e5, "threshold": 1.0e6}, "discovery", Check("discovery", "min_quote_volume_24h", False, 4.0e5, 1.0e6)),
        (rule_rejected_trace, {"value": 1.8, "threshold": 3.0}, "signal", Check("signal", "volume", False, 1.8, 3.0)),
        (risk_rejected_trace, {"open_positions": 3, "limit": 3}, "risk", Check("risk", "max_concurrent", False, 3, 3)),
    ],
    ids=["filter", "rule", "risk"],
)
def test_a_rejected_trace_names_the_check_that_said_no(factory: Any, kwargs: dict[str, Any], stage: str, blocker: Check) -> None:
    _, s = explain(factory, **kwargs)
    assert s.verdict.outcome == "rejected"
    assert s.verdict.stage == stage
    assert s.verdict.blocked_by == blocker
    assert blocker.name in s.verdict.reason
    assert not s.orders


@pytest.mark.parametrize(
    ("check_", "value", "threshold"),
    [
        (Check("signal", "cooldown", False, 600_000.0, 1_800_000.0), "10m", "30m"),
        (Check("risk", "loss_cooldown", False, 1_617_396_120_000, 1_617_403_020_000), "2021-04-02 20:42:00 UTC", "2021-04-02 22:37:00 UTC"),
        (Check("risk", "loss_cooldown", True, 1_617_396_120_000, 0), "2021-04-02 20:42:00 UTC", "none"),  # never cooled down
        (Check("exit", "max_hold", True, 5_400_000, 14_400_000), "1h30", "4h00"),
        (Check("signal", "cooldown", True, None, 1_800_000.0), "∞ (none yet)", "30m"),  # never traded: no last action
        (Check("risk", "daily_loss", True, 0.027711, 0.03), "0.027711", "0.03"),  # not a time: as it is
    ],
    ids=["span", "moment", "no-cooldown", "hold", "never", "plain"],
)
def test_time_checks_read_as_times(check_: Check, value: str, threshold: str) -> None:
    """The journal keeps milliseconds for machines; a reader sees spans and UTC moments."""
    assert (check_.shown_value, check_.shown_threshold) == (value, threshold)


def test_the_first_failing_check_in_chain_order_wins() -> None:
    sink = RecordingSink()
    c = sink.emit("candidate_snapshot", ts_ms=1, trace_id="t", payload={
        "heat": 70.0, "components": {}, "rank": 1, "price": 1.0, "accepted": True,
        "filters": [check("soft_filter", False, 1, 2)],  # failed but discovery still accepted
    })  # fmt: skip
    sink.emit("signal_snapshot", ts_ms=2, trace_id="t", cause=c, payload={
        "decision": "skip", "reason": "two rules failed", "features": {},
        "rules": [check("a", True, 1, 0), check("b", False, 0.1, 0.2), check("c", False, 5, 9)],
    })  # fmt: skip
    s = summarise("t", sink.events)
    assert s.verdict.blocked_by == Check("signal", "b", False, 0.1, 0.2)


def test_ml_score_below_threshold_is_named_when_every_rule_passed() -> None:
    sink = RecordingSink()
    sink.emit("signal_snapshot", ts_ms=2, trace_id="t", payload={
        "decision": "skip", "reason": "ml score too low", "features": {}, "rules": [check("a", True, 1, 0)],
        "ml_score": 0.41, "ml_threshold": 0.6,
    })  # fmt: skip
    assert summarise("t", sink.events).verdict.blocked_by == Check("signal", "ml_score", False, 0.41, 0.6)


def _entry_order(sink: RecordingSink, *results: tuple[str, str | None], buy: float = 0.0) -> list[Any]:
    """An entry order in trace t (client id of our entry shape) and the broker's answers, in
    order, then a buy fill of `buy` coins when > 0."""
    cid = "hc-0123456789abcdef-e1"
    cause = sink.emit("order_attempt", ts_ms=1, trace_id="t", payload={
        "client_order_id": cid, "side": "buy", "order_type": "limit", "purpose": "entry", "quantity": "1", "price": "0.3",
    })  # fmt: skip
    for status, error_class in results:
        payload = {"client_order_id": cid, "status": status, "error_class": error_class}
        if error_class:
            payload["error"] = "Account has insufficient balance for requested action."
        cause = sink.emit("order_result", ts_ms=2, trace_id="t", cause=cause, payload=payload)
    if buy:
        sink.emit("fill", ts_ms=3, trace_id="t", cause=cause,
                  payload={"client_order_id": cid, "side": "buy", "price": 0.3, "quantity": buy, "fee_quote": 0.0})  # fmt: skip
    return sink.events


def test_an_entry_order_the_broker_rejected_says_so() -> None:
    v = summarise("t", _entry_order(RecordingSink(), ("rejected", "non_retryable"))).verdict
    assert (v.outcome, v.stage) == ("not_filled", "execution")
    assert "rejected by the broker (non_retryable: Account has insufficient balance" in v.reason
    assert "nothing was bought" in v.reason


@pytest.mark.parametrize(
    ("results", "buy", "outcome", "said"),
    [
        ([("open", None), ("expired", None)], 0.0, "not_filled", "entry order expired; nothing was bought"),
        ([("open", None), ("canceled", None)], 0.0, "not_filled", "entry order canceled; nothing was bought"),
        ([("open", None)], 0.0, "ordered", "entry order sent, not filled yet (last answer: open)"),
        ([], 0.0, "ordered", "last answer: none"),
        ([("partially_filled", None), ("canceled", None)], 0.4, "entered", "entered; position still open"),
    ],
    ids=["expired", "canceled", "resting", "no-answer", "partly-filled-then-canceled"],
)
def test_an_entry_is_entered_only_once_a_buy_filled(results: list[tuple[str, str | None]], buy: float, outcome: str, said: str) -> None:
    """Entered means a buy fill; an entry order's last journaled answer says the rest."""
    v = summarise("t", _entry_order(RecordingSink(), *results, buy=buy)).verdict
    assert v.outcome == outcome
    assert said in v.reason


def test_a_position_closed_by_close_all_reads_closed_with_the_close_alls_exit() -> None:
    """The close-all sells in its own trace; the position's replay (given those events, as the
    reader adds them) shows that exit, its fill and PnL, and reads closed, not still open."""
    sink = RecordingSink()
    a, b = opened_trace(sink, symbol="TOBB/USDT"), opened_trace(sink, symbol="WHIVN/USDT", ts_ms=T0 + 1)
    ca = close_all_trace(sink, [a, b])
    close = ca.seqs[f"close:{a.trace_id}"]
    fill = next(e for e in sink.events if e.seq == close - 1)
    cid = fill.payload["client_order_id"]
    linked = [e for e in sink.trace(ca.trace_id) if e.seq == close or e.payload.get("client_order_id") == cid]
    s = summarise(a.trace_id, [*sink.trace(a.trace_id), *linked])
    assert (s.verdict.outcome, s.verdict.reason) == ("entered", "entered and closed, realised PnL -1.0590")
    assert s.exit_purpose == "close_all" and s.realised_pnl == pytest.approx(-1.059)
    assert [o.purpose for o in s.orders] == ["entry", "close_all"] and s.orders[1].filled_qty == 100.0
    assert s.signal is not None and s.signal.decision == "enter"  # not the close-all's exit decision


def test_a_close_all_trace_has_its_own_outcome_not_a_rejection() -> None:
    sink = RecordingSink()
    a, b = opened_trace(sink, symbol="TOBB/USDT"), opened_trace(sink, symbol="WHIVN/USDT", ts_ms=T0 + 1)
    ca = close_all_trace(sink, [a, b])
    s = summarise(ca.trace_id, sink.trace(ca.trace_id))
    assert s.verdict.outcome == "close_all" and s.verdict.blocked_by is None
    assert s.verdict.reason == "emergency close-all by operator: closed 2 of 2 position(s) (TOBB/USDT, WHIVN/USDT), realised PnL -2.1180"
    assert s.symbol is None  # it spans coins


def test_a_close_all_with_nothing_held_says_so() -> None:
    sink = RecordingSink()
    ca = close_all_trace(sink, [])
    assert summarise(ca.trace_id, sink.trace(ca.trace_id)).verdict.reason == "emergency close-all by operator: nothing was held"


def test_a_rejected_candidate_is_explained_by_its_last_evaluation() -> None:
    """Within a bar a candidate is decided again until its bar's last candle has come: the first
    decision failed on features that were not there; the last one, with the data, says why not."""
    sink = RecordingSink()
    early = {"decision": "skip", "reason": "failed: momentum_5", "features": {"ret_5": None},
             "rules": [check("heat", True, 82.0, 70.0), check("momentum_5", False, None, 0.01)]}  # fmt: skip
    late = {"decision": "skip", "reason": "failed: volume", "features": {"ret_5": 0.02},
            "rules": [check("heat", True, 82.0, 70.0), check("momentum_5", True, 0.02, 0.01), check("volume", False, 1.2, 1.5)]}  # fmt: skip
    sink.emit("signal_snapshot", ts_ms=1, trace_id="t", payload=early)
    sink.emit("signal_snapshot", ts_ms=2, trace_id="t", payload=late)
    s = summarise("t", sink.events)
    assert s.verdict.blocked_by == Check("signal", "volume", False, 1.2, 1.5)
    assert s.signal is not None and s.signal.features == {"ret_5": 0.02}


def test_the_ml_threshold_and_model_come_from_the_decision() -> None:
    """The stage journals the threshold in the `ml_score` rule (no `ml_threshold` field) and
    the scorer's version as `model`."""
    sink = RecordingSink()
    sink.emit("signal_snapshot", ts_ms=1, trace_id="t", payload={
        "decision": "skip", "reason": "failed: heat", "features": {}, "ml_score": 0.31, "model": "hot_lgbm_1m@v0001",
        "rules": [check("heat", False, 64.0, 70.0), check("ml_score", True, 0.31, 0.25)],
    })  # fmt: skip
    g = summarise("t", sink.events).signal
    assert g is not None and (g.ml_score, g.ml_threshold, g.model) == (0.31, 0.25, "hot_lgbm_1m@v0001")


def test_a_trace_without_a_decision_is_open() -> None:
    sink = RecordingSink()
    written = filter_rejected_trace(sink)
    sink.events[0] = replace(sink.events[0], payload={**sink.events[0].payload, "accepted": True, "filters": []})
    assert summarise(written.trace_id, sink.events).verdict.outcome == "open"


def test_the_tree_follows_cause() -> None:
    sink = RecordingSink()
    written = entered_trace(sink)
    roots = build_tree(sink.trace(written.trace_id))
    assert len(roots) == 1
    chain = []
    node = roots[0]
    while True:
        chain.append(node.event.kind)
        if not node.children:
            break
        (node,) = node.children
    assert chain[:4] == ["candidate_snapshot", "signal_snapshot", "risk_check", "order_attempt"]
    assert chain[-1] == "position_update" and len(chain) == 11


def test_a_cause_outside_the_trace_makes_a_root() -> None:
    sink = RecordingSink()
    other = sink.emit("state_change", ts_ms=1, payload={"from": "tradeable", "to": "degraded", "reasons": []})
    sink.emit("risk_event", ts_ms=2, trace_id="t", cause=other, payload={"code": "x", "level": "L1", "detail": ""})
    assert [r.event.kind for r in build_tree(sink.trace("t"))] == ["risk_event"]


def test_as_dict_is_plain_data() -> None:
    import orjson

    written, s = explain(rule_rejected_trace)
    d = orjson.loads(orjson.dumps(as_dict(s)))
    assert d["trace_id"] == written.trace_id
    assert d["verdict"]["blocked_by"]["name"] == "volume"
    assert (d["verdict"]["blocked_by"]["op"], d["verdict"]["blocked_by"]["condition"]) == (">=", "1.8 ≥ 3")
    assert d["tree"][0]["children"][0]["kind"] == "signal_snapshot"
    assert d["signal"]["rules"][2]["passed"] is False
