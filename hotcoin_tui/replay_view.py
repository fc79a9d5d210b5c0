"""Draw a trace explanation (`engine.journal.trace.TraceSummary`) as a coloured rich tree, and
the `hotcoin traces` listing as a table. Rendering only: every fact comes from the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from engine.journal.events import TRAIL_ACTION, JournalEvent
from engine.journal.reader import TraceRow
from engine.journal.trace import Check, TraceNode, TraceSummary, fmt_quantity, fmt_value
from engine.portfolio.positions import WRITE_OFF_REASON

OUTCOME_STYLE = {
    "entered": "bold green",
    "rejected": "bold red",
    "not_filled": "bold red",
    "ordered": "bold yellow",
    "open": "bold yellow",
    "close_all": "bold magenta",
}


def outcome_label(outcome: str) -> str:
    """An outcome as a reader says it: not_filled as "not filled", close_all as "close-all"."""
    return outcome.replace("not_filled", "not filled").replace("close_all", "close-all")


def symbol_label(symbol: str | None, outcome: str) -> str:
    """A trace's coin as shown; a close-all has none of its own (it sells every coin held)."""
    return "(all)" if symbol is None and outcome == "close_all" else symbol or "-"


def when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def render_trace(summary: TraceSummary) -> RenderableType:
    """Header, verdict, then one branch per stage and the events as a cause tree."""
    v = summary.verdict
    header = Text.assemble(
        ("Trace ", "bold"),
        (summary.trace_id, "bold cyan"),
        "  ",
        (symbol_label(summary.symbol, v.outcome), "bold"),
        "  ",
        (outcome_label(v.outcome).upper(), OUTCOME_STYLE.get(v.outcome, "bold")),
        f"  {when(summary.first_ts_ms)} -> {when(summary.last_ts_ms)}  ({summary.events} events)",
    )
    if v.outcome in {"rejected", "not_filled"}:
        stage = f" at {v.stage}" if v.stage else ""
        verdict = Text.assemble((f"Why not{stage}: ", "bold red"), (v.reason, "red"))
    else:
        verdict = Text.assemble(("Verdict: ", "bold"), (v.reason, OUTCOME_STYLE.get(v.outcome, "")))
    tree = Tree(header, guide_style="dim")
    tree.add(verdict)
    _discovery(tree, summary)
    _signal(tree, summary)
    _risk(tree, summary)
    _orders(tree, summary)
    _position(tree, summary)
    events = tree.add(Text("Events (by cause)", style="bold"))
    for node in summary.roots:
        _event_node(events, node, summary.trace_id)
    return Group(tree)


def _checks(branch: Tree, label: str, checks: Sequence[Check], blocker: Check | None) -> None:
    if not checks:
        return
    node = branch.add(Text(label, style="bold"))
    for c in checks:
        mark, style = ("✔", "green") if c.passed else ("✘", "red")
        line = Text.assemble((f"{mark} {c.name}", style), f"  {c.reading}")  # the condition to pass; the mark, whether it held
        if c.detail is not None:
            line.append(f"  ({c.detail})")
        if c is blocker:
            line.append("  <- said no", style="bold red")
        node.add(line)


def _kv(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {fmt_value(v)}" for k, v in values.items())


def _discovery(tree: Tree, s: TraceSummary) -> None:
    d = s.discovery
    if d is None:
        return
    status = Text("accepted", "green") if d.accepted else Text("not accepted", "red")
    branch = tree.add(
        Text.assemble(("Discovery", "bold"), f"  heat {d.heat:.1f}  rank {d.rank}  price {fmt_value(d.price)}  ", status)
    )
    branch.add(Text(f"components: {_kv(d.components)}"))
    _checks(branch, "filters", d.filters, s.verdict.blocked_by)


def _signal(tree: Tree, s: TraceSummary) -> None:
    g = s.signal
    if g is None:
        return
    style = "green" if g.decision == "enter" else "red"
    branch = tree.add(Text.assemble(("Signal", "bold"), "  decision ", (g.decision, style), f" - {g.reason}"))
    if g.ml_score is not None:
        said = [f"threshold {fmt_value(g.ml_threshold)}"] if g.ml_threshold is not None else []
        said += [g.model] if g.model else []
        branch.add(Text(f"ML score {fmt_value(g.ml_score)}" + (f" ({', '.join(said)})" if said else "")))
    elif g.model:
        branch.add(Text(f"model {g.model} (shadow: its score is not part of the decision)", style="dim"))
    _checks(branch, "rules", g.rules, s.verdict.blocked_by)
    if g.features:
        branch.add(Text(f"features: {_kv(g.features)}", style="dim"))


def _risk(tree: Tree, s: TraceSummary) -> None:
    r = s.risk
    if r is None:
        return
    status = Text("approved", "green") if r.approved else Text("refused", "red")
    branch = tree.add(Text.assemble(("Risk", "bold"), "  ", status))
    _checks(branch, "checks", r.checks, s.verdict.blocked_by)


def _orders(tree: Tree, s: TraceSummary) -> None:
    if not s.orders:
        return
    branch = tree.add(Text("Orders", style="bold"))
    for o in s.orders:
        status_style = "green" if o.status == "filled" else "red" if o.status in {"rejected", "expired"} else "yellow"
        line = Text.assemble(
            (o.purpose, "bold"),
            f"  {o.side} {o.order_type} {o.quantity}" + (f" @ {o.price}" if o.price else "") + f"  [{o.client_order_id}] -> ",
            (o.status or "no answer", status_style),
        )
        if o.error_class or o.error:
            line.append(f" ({': '.join(w for w in (o.error_class, o.error) if w)})", style="red")
        if o.detail:  # the broker settled it itself: say how (vanished, never reached, landed late)
            line.append(f" ({o.detail})", style=status_style)
        node = branch.add(line)
        for f in o.fills:
            node.add(Text(f"fill {f.side} {fmt_quantity(f.quantity)} @ {fmt_value(f.price)}  fee {fmt_value(f.fee_quote)}  {when(f.ts_ms)}"))
        for a in o.anomalies:  # what the broker did not take as the exchange said it: an estimated fee moves PnL
            node.add(Text.assemble(("anomaly: ", "bold yellow"), (a, "yellow")))


def _position(tree: Tree, s: TraceSummary) -> None:
    if not s.positions:
        return
    branch = tree.add(Text("Position", style="bold"))
    so_far = 0.0
    for p in s.positions:  # a step's PnL is its fill's; after a take-profit tier, the position's differs
        so_far += p.realised_pnl
        line = Text(f"{p.action}  qty {fmt_quantity(p.quantity)}  entry {fmt_value(p.entry_price)}  ")
        pnl_style = "green" if p.realised_pnl > 0 else "red" if p.realised_pnl < 0 else ""
        what = "dust written off (no fill), PnL" if p.reason == WRITE_OFF_REASON else "this fill's realised PnL"
        line.append(f"{what} {p.realised_pnl:+.4f}", style=pnl_style)
        if round(so_far, 4) != round(p.realised_pnl, 4):
            line.append(f" (position so far {so_far:+.4f})")
        branch.add(line)
    if s.realised_pnl is not None:
        style = "bold green" if s.realised_pnl >= 0 else "bold red"
        # A close-all's trace holds only its own sells: a position's earlier take-profits are in
        # the position's trace, so "all fills" would overstate what this sum covers.
        scope = (
            " (the close-all's fills; replay each position's own trace for its whole trade)"
            if s.verdict.outcome == "close_all"
            else " (all fills)"
        )
        branch.add(Text.assemble(f"exit by {s.exit_purpose or '?'}: ", (f"realised PnL {s.realised_pnl:+.4f}", style), scope))


def _event_node(parent: Tree, node: TraceNode, trace_id: str) -> None:
    e = node.event
    label = Text.assemble((f"#{e.seq}", "cyan"), f" {when(e.ts_ms)[11:23]} ", (e.kind, "bold"), f"  {describe(e)}")
    if e.trace_id is not None and e.trace_id != trace_id:
        label.append(f"  (in trace {e.trace_id})", style="dim")  # this position's exit under another trace
    child = parent.add(label)
    for c in node.children:
        _event_node(child, c, trace_id)


def describe(e: JournalEvent) -> str:
    """One line saying what an event says."""
    p = e.payload
    if e.kind == "candidate_snapshot":
        return f"heat {fmt_value(p['heat'])} rank {p['rank']} {'accepted' if p['accepted'] else 'not accepted'}"
    if e.kind == "signal_snapshot":
        return f"{p['decision']}: {p['reason']}"
    if e.kind == "risk_check":
        return "approved" if p["approved"] else "refused"
    if e.kind == "order_attempt":
        return f"{p['purpose']} {p['side']} {p['order_type']} {p['quantity']}"
    if e.kind == "order_result":
        return str(p["status"]) + (f" ({p['error_class']})" if p.get("error_class") else "")
    if e.kind == "fill":
        return f"{p['side']} {fmt_quantity(p['quantity'])} @ {fmt_value(p['price'])} fee {fmt_value(p['fee_quote'])}"
    if e.kind == "order_anomaly":
        return str(p["detail"])
    if e.kind == "position_update" and p["action"] == TRAIL_ACTION:
        return f"trailing stop raised to {fmt_value(p.get('stop'))} (peak {fmt_value(p.get('trailing_high'))})"
    if e.kind == "position_update":
        what = "written off as dust, pnl" if p.get("reason") == WRITE_OFF_REASON else "this fill's pnl"
        return f"{p['action']} qty {fmt_quantity(p['quantity'])} {what} {fmt_value(p['realised_pnl'])}"
    return _kv({k: v for k, v in p.items() if not isinstance(v, dict | list)})


def traces_table(rows: Sequence[TraceRow]) -> Table:
    table = Table(title=f"{len(rows)} trace(s), newest first")
    for name in ("trace_id", "time (UTC)", "symbol", "outcome", "first seq"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(
            r.trace_id, when(r.ts_ms)[:19], symbol_label(r.symbol, r.outcome), Text(outcome_label(r.outcome), OUTCOME_STYLE.get(r.outcome, "")),
            str(r.first_seq),
        )
    return table
