"""Turn one trace's events into an explanation: a tree by `cause`, and a summary that says
what discovery saw, what the signal decided, what risk allowed, what was ordered and filled,
how the position ended and, for a candidate that was not traded, exactly which check said no.

A position can end under another trace (a close-all sells every position in its own): the
reader adds those events (`position_update`s naming this trace as `position_trace_id`, their
fills and orders), and they count here as this position's, while the rest of a foreign trace
is not read as this one's discovery, signal or risk.

Pure: no I/O, no rendering. `hotcoin_tui.replay_view` draws it; `--json` prints `as_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from engine.journal.checks import condition as check_condition
from engine.journal.checks import op_of
from engine.journal.events import TRAIL_ACTION, JournalEvent
from engine.timefmt import span, utc_second


@dataclass(frozen=True, slots=True)
class Check:
    """One filter / rule / risk check: its verdict, the value it saw and the limit it applied.

    `op` and `condition` say which way it compares (`engine.journal.checks`: by name, so old
    journals read the same): `condition` is what the check needs to pass, as a reader reads it
    (`50.06 ≤ 100`, `1 < 1`), and its mark says whether that held. Both are None for a name
    the engine does not make. They are fields, derived from the rest, so `--json` carries them."""

    stage: str  # discovery | signal | risk
    name: str
    passed: bool
    value: Any = None
    threshold: Any = None
    detail: str | None = None  # what the value and threshold do not say (e.g. since when a pause holds)
    op: str | None = field(init=False)
    condition: str | None = field(init=False)

    def __post_init__(self) -> None:
        op = op_of(self.name)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "condition", check_condition(self.name, op, self.shown_value, self.shown_threshold, self.threshold))

    @classmethod
    def parse(cls, stage: str, raw: Any) -> Check:
        if isinstance(raw, Mapping):
            detail = raw.get("detail")
            return cls(
                stage, str(raw.get("name", "?")), bool(raw.get("passed")), raw.get("value"), raw.get("threshold"),
                None if detail is None else str(detail),
            )
        return cls(stage, str(raw), False)

    @property
    def shown_value(self) -> str:
        return _shown(self.name, self.value, _VALUE_NONE)

    @property
    def shown_threshold(self) -> str:
        return _shown(self.name, self.threshold, _THRESHOLD_NONE)

    @property
    def reading(self) -> str:
        """The check as a line says it: its condition, or for a name without one the value
        and threshold, with no direction invented."""
        return self.condition or f"value {self.shown_value}, threshold {self.shown_threshold}"


# Checks whose value and threshold are times in ms (the journal keeps them raw, for machines):
# spans of time, and moments.
_SPAN_CHECKS = frozenset({"cooldown", "max_hold"})
_MOMENT_CHECKS = frozenset({"loss_cooldown"})
# What a null means where it is not "unknown", so the condition reads right: `cooldown`'s value
# is the time since the symbol's last entry or exit, null (infinite) when it had none;
# `trailing_stop`'s threshold is null until the trail is armed (and the check passes).
_VALUE_NONE = {"cooldown": "∞ (none yet)"}
_THRESHOLD_NONE = {"trailing_stop": "none (not armed)"}


def _shown(name: str, value: Any, nulls: Mapping[str, str] | None = None) -> str:
    """A check's value as a reader wants it: a span as 30m or 1h05, a moment in UTC (an unset
    moment, 0, as "none": a loss cool-down that never started is not one that ended in 1970)."""
    if value is None and nulls and name in nulls:
        return nulls[name]
    if isinstance(value, int | float) and not isinstance(value, bool):
        if name in _SPAN_CHECKS:
            return span(value)
        if name in _MOMENT_CHECKS:
            return utc_second(value) if value > 0 else "none"
    return fmt_value(value)


@dataclass(frozen=True, slots=True)
class TraceNode:
    event: JournalEvent
    children: tuple[TraceNode, ...] = ()


@dataclass(frozen=True, slots=True)
class Discovery:
    seq: int
    ts_ms: int
    heat: float
    rank: int
    price: float
    components: Mapping[str, Any]
    filters: tuple[Check, ...]
    accepted: bool


@dataclass(frozen=True, slots=True)
class SignalView:
    seq: int
    ts_ms: int
    decision: str
    reason: str
    rules: tuple[Check, ...]
    features: Mapping[str, Any]
    ml_score: float | None
    ml_threshold: float | None
    model: str | None = None  # the scorer's version (shadow ones too); None with ML off


@dataclass(frozen=True, slots=True)
class RiskView:
    seq: int
    approved: bool
    checks: tuple[Check, ...]


@dataclass(frozen=True, slots=True)
class FillView:
    seq: int
    ts_ms: int
    side: str
    price: float
    quantity: float
    fee_quote: float


@dataclass(slots=True)
class OrderView:
    """An order attempt with the broker's answers and its fills (matched by client_order_id)."""

    seq: int
    ts_ms: int
    client_order_id: str
    purpose: str
    side: str
    order_type: str
    quantity: str
    price: str | None
    status: str | None = None  # the last journaled `order_result`'s
    error_class: str | None = None
    error: str | None = None  # the broker's own words, when it refused
    # The broker's words when it settled the order itself (the last result's `detail`): the
    # exchange no longer knows it, its create never reached it, it landed late. An "expired"
    # alone reads as a limit that timed out; a vanished order is not that.
    detail: str | None = None
    fills: list[FillView] = field(default_factory=list)
    # What the broker did not take as the exchange said it (`order_anomaly`): an estimated fee,
    # a late landing, the exchange's state over ours. Empty in journals from before the kind.
    anomalies: list[str] = field(default_factory=list)

    @property
    def filled_qty(self) -> float:
        return sum(f.quantity for f in self.fills)

    @property
    def average_price(self) -> float | None:
        qty = self.filled_qty
        return sum(f.price * f.quantity for f in self.fills) / qty if qty else None


@dataclass(frozen=True, slots=True)
class PositionStep:
    seq: int
    ts_ms: int
    action: str
    quantity: float
    entry_price: float
    realised_pnl: float
    symbol: str | None = None
    reason: str | None = None  # why the step was taken ("take_profit", "dust" for a write-off, ...)


@dataclass(frozen=True, slots=True)
class Verdict:
    """'entered' (a buy filled), 'not_filled' (the entry order ended without a fill),
    'ordered' (it has not ended yet), 'rejected' (with the stage and the first failing check),
    'close_all' (an emergency close-all's own trace) or 'open'."""

    outcome: str
    stage: str | None
    blocked_by: Check | None
    reason: str


@dataclass(frozen=True, slots=True)
class TraceSummary:
    trace_id: str
    symbol: str | None
    first_ts_ms: int
    last_ts_ms: int
    events: int
    discovery: Discovery | None
    signal: SignalView | None
    risk: RiskView | None
    orders: tuple[OrderView, ...]
    positions: tuple[PositionStep, ...]
    exit_purpose: str | None
    realised_pnl: float | None
    verdict: Verdict
    roots: tuple[TraceNode, ...]


def build_tree(events: Sequence[JournalEvent]) -> tuple[TraceNode, ...]:
    """Events as a forest by `cause`; an event whose cause is outside the trace is a root."""
    by_seq = {e.seq: e for e in events}
    children: dict[int, list[JournalEvent]] = {}
    roots: list[JournalEvent] = []
    for event in sorted(events, key=lambda e: e.seq):
        if event.cause is not None and event.cause in by_seq and event.cause != event.seq:
            children.setdefault(event.cause, []).append(event)
        else:
            roots.append(event)

    def node(event: JournalEvent) -> TraceNode:
        return TraceNode(event, tuple(node(c) for c in children.get(event.seq, ())))

    return tuple(node(r) for r in roots)


def summarise(trace_id: str, events: Sequence[JournalEvent]) -> TraceSummary:
    """The explanation of one trace (events in any order)."""
    if not events:
        raise ValueError(f"trace {trace_id} has no events")
    ordered = sorted(events, key=lambda e: e.seq)
    discovery = risk = close_all = None
    signals: dict[int, SignalView] = {}
    risk_cause: int | None = None
    orders: dict[str, OrderView] = {}
    positions: list[PositionStep] = []
    for e in ordered:
        p = e.payload
        own = e.trace_id in (None, trace_id)
        if e.kind == "position_update" and p["action"] == TRAIL_ACTION:
            continue  # a stop that moved, no fill: the tree shows it, the position's steps are its fills
        if e.kind == "position_update" and (own or p.get("position_trace_id") == trace_id):
            positions.append(
                PositionStep(
                    e.seq, e.ts_ms, str(p["action"]), float(p["quantity"]), float(p["entry_price"]),
                    float(p["realised_pnl"]), e.symbol, _opt_str(p.get("reason")),
                )
            )  # fmt: skip
        elif e.kind == "order_attempt":
            orders[p["client_order_id"]] = OrderView(
                e.seq, e.ts_ms, str(p["client_order_id"]), str(p["purpose"]), str(p["side"]),
                str(p["order_type"]), str(p["quantity"]), _opt_str(p.get("price")),
            )  # fmt: skip
        elif e.kind == "order_result" and p["client_order_id"] in orders:
            order = orders[p["client_order_id"]]  # in seq order: the last result stands
            order.status, order.error_class, order.error = str(p["status"]), _opt_str(p["error_class"]), _opt_str(p.get("error"))
            order.detail = _opt_str(p.get("detail"))
        elif e.kind == "order_anomaly" and p["client_order_id"] in orders:
            orders[p["client_order_id"]].anomalies.append(str(p["detail"]))
        elif e.kind == "fill" and p["client_order_id"] in orders:
            orders[p["client_order_id"]].fills.append(
                FillView(e.seq, e.ts_ms, str(p["side"]), float(p["price"]), float(p["quantity"]), float(p["fee_quote"]))
            )
        elif not own:
            continue  # the rest of another trace is not this one's story
        elif e.kind == "candidate_snapshot" and discovery is None:
            discovery = Discovery(
                e.seq, e.ts_ms, float(p["heat"]), int(p["rank"]), float(p["price"]), dict(p["components"]),
                tuple(Check.parse("discovery", f) for f in p["filters"]), bool(p["accepted"]),
            )  # fmt: skip
        elif e.kind == "signal_snapshot":
            rules = tuple(Check.parse("signal", r) for r in p["rules"])
            signals[e.seq] = SignalView(
                e.seq, e.ts_ms, str(p["decision"]), str(p["reason"]), rules, dict(p["features"]),
                _opt_float(p.get("ml_score")), _ml_threshold(p, rules), _opt_str(p.get("model")),
            )  # fmt: skip
        elif e.kind == "risk_check" and risk is None:
            risk = RiskView(e.seq, bool(p["approved"]), tuple(Check.parse("risk", c) for c in p["checks"]))
            risk_cause = e.cause
        elif e.kind == "command" and p.get("command") == "close_all" and close_all is None:
            close_all = e
    exits = [o for o in orders.values() if o.purpose != "entry"]
    closed = next((s for s in reversed(positions) if s.action == "close"), None)
    signal = _decisive_signal(signals, risk_cause)
    return TraceSummary(
        trace_id=trace_id,
        symbol=next((e.symbol for e in ordered if e.symbol), None) if close_all is None else None,
        first_ts_ms=ordered[0].ts_ms,
        last_ts_ms=max(e.ts_ms for e in ordered),
        events=len(ordered),
        discovery=discovery,
        signal=signal,
        risk=risk,
        orders=tuple(orders.values()),
        positions=tuple(positions),
        exit_purpose=exits[-1].purpose if exits else None,
        # Each position_update carries the PnL its own fill realised: the trade's total is their sum.
        realised_pnl=sum(step.realised_pnl for step in positions) if closed else None,
        verdict=(
            _close_all_verdict(close_all, positions)
            if close_all is not None
            else _verdict(discovery, signal, risk, list(orders.values()), closed, positions)
        ),
        roots=build_tree(ordered),
    )


def _decisive_signal(signals: Mapping[int, SignalView], risk_cause: int | None) -> SignalView | None:
    """The signal that went on to risk, when one did: a trace spans bars, and its first signal
    may be an earlier bar's skip (the entered coin's replay showed "skip" over n/a features).
    Otherwise the last one: within a bar a candidate is decided again until the bar's last
    candle has come, and only that last decision saw the data (the first said why not from
    features that were n/a). A held position's exit decisions (exit, hold) are not the entry's."""
    if risk_cause is not None and risk_cause in signals:
        return signals[risk_cause]
    entries = [seq for seq, view in signals.items() if view.decision not in {"exit", "hold"}]
    return signals[max(entries)] if entries else None


def _ml_threshold(payload: Mapping[str, Any], rules: Sequence[Check]) -> float | None:
    """The ML threshold a decision applied: the `ml_score` rule's (the stage journals it there),
    else an `ml_threshold` field."""
    rule = next((r for r in rules if r.name == "ml_score"), None)
    return _opt_float(rule.threshold if rule is not None else payload.get("ml_threshold"))


def _close_all_verdict(command: JournalEvent, positions: Sequence[PositionStep]) -> Verdict:
    """An emergency close-all's own trace: what it had to close and what it did."""
    held = [str(s) for s in command.payload.get("positions", [])]
    closed = sorted({s.symbol or "?" for s in positions if s.action == "close"})
    origin = command.payload.get("origin", "?")
    if not held and not closed:
        return Verdict("close_all", None, None, f"emergency close-all by {origin}: nothing was held")
    left = [s for s in held if s not in closed]
    pnl = sum(s.realised_pnl for s in positions)
    said = f"emergency close-all by {origin}: closed {len(closed)} of {len(held) or len(closed)} position(s)"
    said += f" ({', '.join(closed)}), realised PnL {pnl:+.4f}" if closed else ""
    return Verdict("close_all", None, None, said + (f"; not closed here: {', '.join(left)}" if left else ""))


# An order's end with no fill: its entry was never filled.
_UNFILLED_ENDS = frozenset({"rejected", "expired", "canceled"})


def _verdict(
    discovery: Discovery | None,
    signal: SignalView | None,
    risk: RiskView | None,
    orders: list[OrderView],
    closed: PositionStep | None,
    positions: list[PositionStep],
) -> Verdict:
    """Chain order: discovery -> signal -> risk -> entry order -> buy fill. The first stage that
    said no is the answer, and within it the first failing check."""
    entry = next((o for o in orders if o.purpose == "entry"), None)
    if entry is not None:
        if any(f.side == "buy" for f in entry.fills):
            if closed is not None:
                pnl = sum(p.realised_pnl for p in positions)
                return Verdict("entered", None, None, f"entered and closed, realised PnL {pnl:+.4f}")
            return Verdict("entered", None, None, "entered; position still open")
        if entry.status in _UNFILLED_ENDS:
            why = "; ".join(w for w in (": ".join(w for w in (entry.error_class, entry.error) if w), entry.detail) if w)
            said = f"entry order {entry.status}" + (" by the broker" if entry.status == "rejected" else "")
            return Verdict("not_filled", "execution", None, said + (f" ({why})" if why else "") + "; nothing was bought")
        return Verdict("ordered", "execution", None, f"entry order sent, not filled yet (last answer: {entry.status or 'none'})")
    if discovery is not None and not discovery.accepted:
        return _rejected("discovery", discovery.filters, "candidate not accepted by discovery")
    if signal is not None and signal.decision != "enter":
        failing = next((c for c in signal.rules if not c.passed), None)
        ml, limit = signal.ml_score, signal.ml_threshold
        if failing is None and ml is not None and limit is not None and ml < limit:
            failing = Check("signal", "ml_score", False, signal.ml_score, signal.ml_threshold)
        if failing is None:
            return Verdict("rejected", "signal", None, f"signal decided {signal.decision}: {signal.reason}")
        return Verdict("rejected", "signal", failing, _says_no(failing))
    if risk is not None and not risk.approved:
        return _rejected("risk", risk.checks, "risk did not approve the entry")
    stage = "risk" if risk else "signal" if signal else "discovery" if discovery else None
    return Verdict("open", stage, None, f"no decision recorded after {stage or 'the first event'} yet")


def _rejected(stage: str, checks: Sequence[Check], fallback: str) -> Verdict:
    failing = next((c for c in checks if not c.passed), None)
    return Verdict("rejected", stage, failing, _says_no(failing) if failing else fallback)


def _says_no(check: Check) -> str:
    what = {"discovery": "filter", "signal": "rule", "risk": "risk check"}.get(check.stage, "check")
    said = f"{what} {check.name} failed: " + (f"{check.condition} does not hold" if check.condition else check.reading)
    return said if check.detail is None else f"{said} ({check.detail})"


def fmt_value(value: Any) -> str:
    """Numbers as a reader wants them: 52,000,000 not 5.2e+07, 0.041 not 0.04100000001."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.6g}"
    return "n/a" if value is None else str(value)


def fmt_quantity(value: Any) -> str:
    """A quantity exactly as journaled, 5,994.999 not 5995: rounded to 6 digits, it showed coins
    that were never held (upwards too), hiding the dust a buy's fee in coins leaves."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{Decimal(repr(value)).normalize():,f}"
    return fmt_value(value)


def _opt_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def as_dict(summary: TraceSummary) -> dict[str, Any]:
    """Plain data for `--json`: the summary plus the cause tree (seq, kind, children)."""

    def tree(n: TraceNode) -> dict[str, Any]:
        return {"seq": n.event.seq, "kind": n.event.kind, "children": [tree(c) for c in n.children]}

    def order(o: OrderView) -> dict[str, Any]:
        return {**asdict(o), "filled_qty": o.filled_qty, "average_price": o.average_price}

    v = summary.verdict
    return {
        "trace_id": summary.trace_id,
        "symbol": summary.symbol,
        "first_ts_ms": summary.first_ts_ms,
        "last_ts_ms": summary.last_ts_ms,
        "events": summary.events,
        "verdict": asdict(v),
        "discovery": asdict(summary.discovery) if summary.discovery else None,
        "signal": asdict(summary.signal) if summary.signal else None,
        "risk": asdict(summary.risk) if summary.risk else None,
        "orders": [order(o) for o in summary.orders],
        "positions": [asdict(p) for p in summary.positions],
        "exit_purpose": summary.exit_purpose,
        "realised_pnl": summary.realised_pnl,
        "tree": [tree(n) for n in summary.roots],
    }
