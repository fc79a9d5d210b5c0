"""Journal test kit: a recording `EventSink` fake, and factories that emit realistic, complete
traces (linked by `cause`) into any sink, a real `Journal` included.

    entered_trace(sink)          candidate -> signal enter -> risk approved -> entry order,
                                 fill, position open -> take-profit exit, position closed
    filter_rejected_trace(sink)  discovery filter failed
    rule_rejected_trace(sink)    a signal rule failed
    risk_rejected_trace(sink)    a risk check failed
    opened_trace(sink)           as entered, but the position is still open
    close_all_trace(sink, ...)   an emergency close-all selling those positions in its own trace
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from engine.domain import Order, OrderIntent, OrderStatus
from engine.errors import EventValidationError
from engine.execution.broker import Broker, OrderUpdate
from engine.journal.events import EventSink, JournalEvent, check, make_trace_id, validate_event
from engine.journal.writer import Journal

from .domain import T0


class RecordingSink:
    """In-memory `EventSink`: validates like the journal, assigns seqs, keeps every event."""

    keeps_payloads = True

    def __init__(self) -> None:
        self.events: list[JournalEvent] = []

    def emit(
        self,
        kind: str,
        *,
        ts_ms: int,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
        symbol: str | None = None,
        cause: int | None = None,
    ) -> int:
        v = validate_event(kind, ts_ms, payload)
        if cause is not None and not 0 < cause <= len(self.events):
            raise EventValidationError(f"{kind}: cause {cause} is not an earlier event")
        seq = len(self.events) + 1
        self.events.append(JournalEvent(seq, ts_ms, kind, dict(payload), trace_id, symbol, cause, v))
        return seq

    def trace(self, trace_id: str) -> list[JournalEvent]:
        return [e for e in self.events if e.trace_id == trace_id]


@dataclass(frozen=True)
class WrittenTrace:
    trace_id: str
    symbol: str
    outcome: str
    ts_ms: int
    seqs: dict[str, int] = field(default_factory=dict)  # step name -> seq


def _candidate(heat: float, price: float, filters: list[dict[str, Any]], accepted: bool) -> dict[str, Any]:
    return {
        "heat": heat,
        "components": {"momentum": 0.82, "volume_surge": 0.74, "listing_freshness": 0.0, "social_velocity": 0.1},
        "rank": 2,
        "price": price,
        "filters": filters,
        "accepted": accepted,
        "quote_volume_24h": 5.2e7,
        "returns": {"1m": 0.006, "5m": 0.041, "15m": 0.066, "60m": 0.12},
        "sources": ["ticker"],
    }


_PASSING_FILTERS = [
    check("min_quote_volume_24h", True, 5.2e7, 1e6),
    check("max_spread_bps", True, 8.0, 30.0),
    check("not_blacklisted", True, "COIN", "blacklist"),
]
_RULES = [
    check("heat", True, 82.4, 60.0),
    check("momentum_5", True, 0.041, 0.02),
    check("volume", True, 4.1, 3.0),
]
_FEATURES = {"ret_1m": 0.006, "ret_5m": 0.041, "ret_15m": 0.066, "volume_surge": 4.1, "rsi_14": 68.2}
_RISK = [
    check("engine_state", True, "tradeable", "tradeable"),
    check("max_concurrent", True, 1, 3),
    check("daily_loss", True, 0.004, 0.03),
]


def _start(sink: EventSink, symbol: str, ts: int, tag: str, filters: list[dict[str, Any]], accepted: bool) -> tuple[str, int]:
    trace_id = make_trace_id("kit-run", symbol, ts, tag)
    seq = sink.emit(
        "candidate_snapshot", ts_ms=ts, trace_id=trace_id, symbol=symbol, payload=_candidate(82.4, 0.3, filters, accepted)
    )
    return trace_id, seq


def _signal(sink: EventSink, trace_id: str, symbol: str, ts: int, cause: int, rules: list[dict[str, Any]], decision: str, reason: str) -> int:
    payload = {"decision": decision, "reason": reason, "rules": rules, "features": _FEATURES, "ml_score": 0.71, "ml_threshold": 0.6}
    return sink.emit("signal_snapshot", ts_ms=ts, trace_id=trace_id, symbol=symbol, cause=cause, payload=payload)


def entered_trace(sink: EventSink, *, symbol: str = "DOGE/USDT", ts_ms: int = T0, hold_ms: int = 420_000) -> WrittenTrace:
    """A full winning trade: entry at ~0.3003, take-profit exit at ~0.3304 `hold_ms` later."""
    s: dict[str, int] = {}
    trace_id, s["candidate"] = _start(sink, symbol, ts_ms, "entered", _PASSING_FILTERS, True)

    def emit(step: str, kind: str, ts: int, cause: str, payload: dict[str, Any]) -> None:
        s[step] = sink.emit(kind, ts_ms=ts, trace_id=trace_id, symbol=symbol, cause=s[cause], payload=payload)

    s["signal"] = _signal(sink, trace_id, symbol, ts_ms + 3, s["candidate"], _RULES, "enter", "all rules passed; ml 0.71 >= 0.60")
    emit("risk", "risk_check", ts_ms + 4, "signal", {"approved": True, "checks": _RISK, "allocation_quote": 50.0})
    entry_id, exit_id = f"hc-{trace_id}-e1", f"hc-{trace_id}-x1"
    emit("entry_order", "order_attempt", ts_ms + 5, "risk", {
        "client_order_id": entry_id, "side": "buy", "order_type": "market", "purpose": "entry",
        "quantity": "166", "reference_price": 0.3,
    })  # fmt: skip
    emit("entry_result", "order_result", ts_ms + 40, "entry_order",
         {"client_order_id": entry_id, "status": "filled", "error_class": None, "exchange_order_id": "9001"})  # fmt: skip
    emit("entry_fill", "fill", ts_ms + 41, "entry_result",
         {"client_order_id": entry_id, "side": "buy", "price": 0.3003, "quantity": 166.0, "fee_quote": 0.0498})  # fmt: skip
    emit("opened", "position_update", ts_ms + 42, "entry_fill",
         {"action": "open", "quantity": 166.0, "entry_price": 0.3003, "realised_pnl": 0.0})  # fmt: skip
    t = ts_ms + hold_ms
    emit("exit_order", "order_attempt", t, "opened", {
        "client_order_id": exit_id, "side": "sell", "order_type": "market", "purpose": "take_profit",
        "quantity": "166", "reason": "tp1 +10% reached",
    })  # fmt: skip
    emit("exit_result", "order_result", t + 30, "exit_order",
         {"client_order_id": exit_id, "status": "filled", "error_class": None, "exchange_order_id": "9002"})  # fmt: skip
    emit("exit_fill", "fill", t + 31, "exit_result",
         {"client_order_id": exit_id, "side": "sell", "price": 0.3304, "quantity": 166.0, "fee_quote": 0.0548})  # fmt: skip
    pnl = round((0.3304 - 0.3003) * 166.0 - 0.0498 - 0.0548, 6)
    emit("closed", "position_update", t + 32, "exit_fill",
         {"action": "close", "quantity": 0.0, "entry_price": 0.3003, "realised_pnl": pnl})  # fmt: skip
    return WrittenTrace(trace_id, symbol, "entered", ts_ms, s)


def opened_trace(sink: EventSink, *, symbol: str = "TOBB/USDT", ts_ms: int = T0) -> WrittenTrace:
    """Entered and filled at 0.3; the position is still open at the end of the trace."""
    s: dict[str, int] = {}
    trace_id, s["candidate"] = _start(sink, symbol, ts_ms, "opened", _PASSING_FILTERS, True)

    def emit(step: str, kind: str, cause: str, payload: dict[str, Any]) -> None:
        s[step] = sink.emit(kind, ts_ms=ts_ms + len(s), trace_id=trace_id, symbol=symbol, cause=s[cause], payload=payload)

    s["signal"] = _signal(sink, trace_id, symbol, ts_ms + 1, s["candidate"], _RULES, "enter", "all rules passed")
    emit("risk", "risk_check", "signal", {"approved": True, "checks": _RISK})
    cid = f"hc-{trace_id}-e1"
    emit("entry_order", "order_attempt", "risk",
         {"client_order_id": cid, "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "100"})  # fmt: skip
    emit("entry_result", "order_result", "entry_order", {"client_order_id": cid, "status": "filled", "error_class": None})
    emit("entry_fill", "fill", "entry_result",
         {"client_order_id": cid, "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03})  # fmt: skip
    emit("opened", "position_update", "entry_fill", {
        "action": "open", "quantity": 100.0, "entry_price": 0.3003, "realised_pnl": 0.0, "position_trace_id": trace_id,
    })  # fmt: skip
    return WrittenTrace(trace_id, symbol, "entered", ts_ms, s)


def close_all_trace(sink: EventSink, positions: Sequence[WrittenTrace], *, ts_ms: int = T0 + 600_000) -> WrittenTrace:
    """An emergency close-all, as the core journals it: a command, then per position an exit
    decision, a market sell, its result, fill and the position's close, all in the close-all's
    own trace, each close naming the position's trace as `position_trace_id`."""
    trace_id = make_trace_id("kit-run", "close_all", ts_ms, 1)
    held = sorted(p.symbol for p in positions)
    command = sink.emit("command", ts_ms=ts_ms, trace_id=trace_id, payload={
        "command": "close_all", "origin": "operator", "repeat": False, "positions": held, "pending_entries": [],
    })  # fmt: skip
    s = {"command": command}
    for leg, p in enumerate(positions, 1):
        at = partial(sink.emit, ts_ms=ts_ms + leg, trace_id=trace_id, symbol=p.symbol)
        cid = f"hc-{trace_id}-c{leg}"
        decided = at("signal_snapshot", cause=command, payload={
            "decision": "exit", "reason": "emergency close-all", "rules": [], "features": {}, "stage": "exit_policy",
        })  # fmt: skip
        attempt = at("order_attempt", cause=decided, payload={
            "client_order_id": cid, "side": "sell", "order_type": "market", "purpose": "close_all", "quantity": "100",
        })  # fmt: skip
        result = at("order_result", cause=attempt, payload={"client_order_id": cid, "status": "filled", "error_class": None})
        fill = at("fill", cause=result, payload={
            "client_order_id": cid, "side": "sell", "price": 0.29, "quantity": 100.0, "fee_quote": 0.029,
        })  # fmt: skip
        s[f"close:{p.trace_id}"] = at("position_update", cause=fill, payload={
            "action": "close", "quantity": 0.0, "entry_price": 0.3003, "realised_pnl": -1.059, "reason": "close_all",
            "position_trace_id": p.trace_id,
        })  # fmt: skip
    return WrittenTrace(trace_id, "", "close_all", ts_ms, s)


def filter_rejected_trace(
    sink: EventSink, *, symbol: str = "PEPE/USDT", ts_ms: int = T0, value: float = 4.0e5, threshold: float = 1.0e6
) -> WrittenTrace:
    """Discovery saw heat but the 24 h quote volume filter failed."""
    filters = [_PASSING_FILTERS[1], check("min_quote_volume_24h", False, value, threshold), _PASSING_FILTERS[2]]
    trace_id, seq = _start(sink, symbol, ts_ms, "filter", filters, False)
    return WrittenTrace(trace_id, symbol, "rejected", ts_ms, {"candidate": seq})


def rule_rejected_trace(
    sink: EventSink, *, symbol: str = "SHIB/USDT", ts_ms: int = T0, value: float = 1.8, threshold: float = 3.0
) -> WrittenTrace:
    """Discovery accepted it; the volume-surge rule said no."""
    trace_id, cand = _start(sink, symbol, ts_ms, "rule", _PASSING_FILTERS, True)
    rules = [_RULES[0], _RULES[1], check("volume", False, value, threshold)]
    sig = _signal(sink, trace_id, symbol, ts_ms + 3, cand, rules, "skip", "failed: volume")
    return WrittenTrace(trace_id, symbol, "rejected", ts_ms, {"candidate": cand, "signal": sig})


def risk_rejected_trace(sink: EventSink, *, symbol: str = "WIF/USDT", ts_ms: int = T0, open_positions: int = 3, limit: int = 3) -> WrittenTrace:
    """The signal said enter; risk refused: too many open positions."""
    trace_id, cand = _start(sink, symbol, ts_ms, "risk", _PASSING_FILTERS, True)
    sig = _signal(sink, trace_id, symbol, ts_ms + 3, cand, _RULES, "enter", "all rules passed; ml 0.71 >= 0.60")
    checks = [_RISK[0], check("max_concurrent", False, open_positions, limit), _RISK[2]]
    risk = sink.emit(
        "risk_check", ts_ms=ts_ms + 4, trace_id=trace_id, symbol=symbol, cause=sig, payload={"approved": False, "checks": checks}
    )
    return WrittenTrace(trace_id, symbol, "rejected", ts_ms, {"candidate": cand, "signal": sig, "risk": risk})


def build_journal(path: Path, steps: Sequence[Callable[[EventSink], WrittenTrace]]) -> list[WrittenTrace]:
    """Write the given trace factories into a real journal file (for sync tests, e.g. CLI)."""

    async def write() -> list[WrittenTrace]:
        async with Journal.open(path) as journal:
            return [step(journal) for step in steps]

    return asyncio.run(write())


class AttemptCheckingBroker(Broker):
    """A broker standing in for an exchange that checks, at each `submit`, that the order's
    `order_attempt` is already committed in the journal file (read through a separate sqlite3
    connection, as recovery would after a crash), then acknowledges it as open."""

    def __init__(self, journal_path: Path) -> None:
        self.journal_path = journal_path
        self.unjournaled: list[str] = []  # client ids that reached `submit` before their attempt was on disk
        self.orders: dict[str, Order] = {}

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        with closing(sqlite3.connect(self.journal_path)) as conn:
            found = conn.execute(
                "SELECT COUNT(*) FROM events WHERE kind = 'order_attempt' AND payload LIKE ?",
                (f'%"client_order_id":"{intent.client_order_id}"%',),
            ).fetchone()[0]
        if not found:
            self.unjournaled.append(intent.client_order_id)
        order = self.orders[intent.client_order_id] = Order.from_intent(intent, OrderStatus.OPEN, now_ms)
        return OrderUpdate(order)

    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        order = self.orders[client_order_id] = replace(self.orders[client_order_id], status=OrderStatus.CANCELED, updated_ms=now_ms)
        return OrderUpdate(order)

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        return []

    async def open_orders(self) -> list[Order]:
        return []
