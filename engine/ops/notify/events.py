"""Which journal events become a message for the owner, and what it says.

`notification_for(kind, payload, symbol)` is a pure table from an event to a `Notification`
(or None: most events are not news). `NotificationBridge` is what the runtime's event tap
calls for every event it emits; it costs one dict lookup for the kinds that are never news.

What is news:
- position opened (with size, price and why) and closed (with the PnL that close realised, and
  the position's total when earlier partial closes make it differ); partial closes
  (take-profit tiers) as well; adds are not;
- risk limits that fire: the daily loss limit, consecutive losses, risk level L5 (L2-L4 are
  visible on the dashboard and not worth a phone buzz);
- a restart whose recovery could not apply some journal events (its positions and cash leave
  them out), or that found committed events lost to a damaged -wal;
- every engine_state change, with its reasons;
- operator commands (pause, resume, close-all, shutdown) and where they came from;
- a run that starts (a warning when its model was refused, leaving it on rules alone, or
  comes with warnings) or stops;
- system anomalies: an order whose outcome is unknown, or whatever the runtime reports
  through `NotificationBridge.anomaly()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from engine.ops.notify.base import Notification, Severity
from engine.ops.notify.dispatcher import ChannelReport
from engine.portfolio.positions import ExitReasons

log = logging.getLogger("hotcoin.notify")


def _num(value: Any, fmt: str = ".8g") -> str:
    return format(value, fmt) if isinstance(value, int | float) and not isinstance(value, bool) else "?"


def _signed(value: Any) -> str:
    sign = "+" if isinstance(value, int | float) and value >= 0 else ""
    return f"{sign}{_num(value, ',.2f')}"


def _position(payload: Mapping[str, Any], symbol: str | None) -> Notification | None:
    action = payload.get("action")
    sym = symbol or "?"
    reason = payload.get("reason")
    why = f" ({reason})" if reason else ""
    if action == "close" and payload.get("exit_reason"):
        # The dust write-off after a full exit's sell closes the position (`ExitReasons`): the
        # bridge adds the sell's reason, and the message says both, not "(dust)" alone.
        why = f" ({payload['exit_reason']}; the dust it left written off)"
    if action == "open":
        qty, price = payload.get("quantity"), payload.get("entry_price")
        notional = qty * price if isinstance(qty, int | float) and isinstance(price, int | float) else None
        worth = f" ≈ {_num(notional, ',.2f')}" if notional is not None else ""
        return Notification(
            f"Opened {sym}", f"{_num(qty)} @ {_num(price)}{worth}{why}", category="position", key=f"open:{sym}:{payload.get('position_trace_id', '')}:{qty}"
        )
    if action in ("close", "partial_close"):
        # "PnL" is always what this close made; the position's total so far follows when an
        # earlier partial close makes it differ. (A close once said the total and a partial its
        # own: "+2.43" then "+7.41" read as +9.84 made, when the position made +7.41.)
        pnl = payload.get("realised_pnl")
        made = _signed(pnl)
        total = _signed(payload.get("total_realised_pnl", pnl))
        so_far = "" if total == made else f", position {total} {'in all' if action == 'close' else 'so far'}"
        title = f"Closed {sym}" if action == "close" else f"Partly closed {sym}"
        left = "" if action == "close" else f", {_num(payload.get('quantity'))} left"
        return Notification(
            title,
            f"PnL {made}{so_far}{left}{why}",
            severity=Severity.INFO,
            category="position",
            key=f"{action}:{sym}:{payload.get('position_trace_id', '')}:{payload.get('quantity')}:{pnl}",
        )
    return None


def _risk(payload: Mapping[str, Any], symbol: str | None) -> Notification | None:
    code, level, detail = payload.get("code"), payload.get("level"), str(payload.get("detail", ""))
    if code == "daily_loss_limit":
        return Notification("Daily loss limit hit", detail, Severity.CRITICAL, "risk", key=f"risk:{code}:{level}")
    if code == "consecutive_losses":
        return Notification("Losing streak: entries cooling down", detail, Severity.WARNING, "risk")
    if code == "risk_level" and level == "L5":
        return Notification("Risk level L5: engine blocked", detail, Severity.CRITICAL, "risk", key="risk:L5")
    if code == "recovered" and payload.get("anomalies"):  # the detail says which and what to do
        return Notification("Restart recovery left journal events out", detail, Severity.WARNING, "risk")
    if code == "journal_wal_damaged":  # the detail names the copy kept and what to check
        return Notification("Journal lost events to a damaged -wal", detail, Severity.CRITICAL, "system")
    return None


def _state(payload: Mapping[str, Any], symbol: str | None) -> Notification | None:
    to = str(payload.get("to", "?"))
    reasons = payload.get("reasons") or []
    because = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
    # A reason without a measurement (the journal's) says what happened only in its detail:
    # "journal" alone would not tell the owner that the engine now only closes positions.
    details = payload.get("details")
    if isinstance(details, list) and all(isinstance(d, Mapping) for d in details):
        because = "; ".join(
            f"{d.get('code')}: {d.get('detail')}" if d.get("value") is None else str(d.get("code")) for d in details
        ) or because
    severity = {"blocked": Severity.CRITICAL, "degraded": Severity.WARNING}.get(to, Severity.INFO)
    # Never deduplicated: after tradeable → degraded → tradeable → degraded, the owner's last
    # message must say degraded. The state machine's hysteresis keeps these rare.
    return Notification(f"Engine {payload.get('from', '?')} → {to}", because, severity, "state", dedupe=False)


def _command(payload: Mapping[str, Any], symbol: str | None) -> Notification | None:
    command = str(payload.get("command", "?")).replace("_", "-")
    return Notification(f"Command: {command}", f"from {payload.get('origin', '?')}", category="command", dedupe=False)


def _order_result(payload: Mapping[str, Any], symbol: str | None) -> Notification | None:
    if payload.get("status") != "unknown":
        return None
    return Notification(
        f"Order outcome unknown: {symbol or '?'}",
        f"{payload.get('client_order_id')}: {payload.get('error', 'no answer')}; reconciling",
        Severity.WARNING,
        "system",
    )


# Stop reasons the owner asked for (SIGTERM, --duration, the end of a replay): anything else is
# a stop nobody planned (a journal error, a crash) and must not be the message a full queue drops.
_PLANNED_STOPS = ("shutdown", "duration", "end_of_data")


def _run(payload: Mapping[str, Any], symbol: str | None) -> Notification | None:
    if "reason" in payload:
        reason = str(payload.get("reason"))
        severity = Severity.WARNING if reason.startswith(_PLANNED_STOPS) else Severity.CRITICAL
        return Notification("Engine stopped", f"run {payload.get('run_id')}: {reason}", severity, "system")
    started = f"run {payload.get('run_id')} ({payload.get('mode', '?')})"
    # A model refused (tampered, unreadable, built for other bars) leaves the engine trading on
    # its rules alone, and warnings about the one installed change what it trades: said only in
    # the log, the owner, who reads the phone, never learnt of either.
    warnings = payload.get("model_warnings")
    said = [f"model: {w}" for w in warnings] if isinstance(warnings, list) else []
    if payload.get("model_failed") is True:
        said.insert(0, f"model: {payload.get('model_status')}")
    if said:
        return Notification("Engine started", "\n".join([started, *said]), Severity.WARNING, "system")
    return Notification("Engine started", started, category="system")


_TABLE: dict[str, Callable[[Mapping[str, Any], str | None], Notification | None]] = {
    "position_update": _position,
    "risk_event": _risk,
    "state_change": _state,
    "command": _command,
    "order_result": _order_result,
    "run_start": _run,
    "run_stop": _run,
}


def notification_for(kind: str, payload: Mapping[str, Any], symbol: str | None = None) -> Notification | None:
    """The message an event deserves, or None."""
    make = _TABLE.get(kind)
    return None if make is None else make(payload, symbol)


class NotificationSink(Protocol):
    """What the bridge hands notifications to (a `Dispatcher` is one)."""

    def notify(self, note: Notification) -> bool: ...


class NotificationBridge:
    """The runtime's event tap calls `on_event` for every event; news goes to the dispatcher.

    Never raises into the caller: a malformed payload costs its message and a log line."""

    def __init__(self, dispatcher: NotificationSink, channels: Callable[[], Mapping[str, ChannelReport]] = dict) -> None:
        self._dispatcher = dispatcher
        self._channels = channels
        self._exits = ExitReasons()

    def channels(self) -> Mapping[str, ChannelReport]:
        """Each channel's queue and counters (none when no channel is configured)."""
        return self._channels()

    def on_event(self, kind: str, payload: Mapping[str, Any], symbol: str | None = None) -> bool:
        """True when the event became a queued notification."""
        if kind not in _TABLE:
            return False
        try:
            if kind == "position_update":
                payload = self._with_exit_reason(payload, symbol)
            note = notification_for(kind, payload, symbol)
        except Exception:  # never let a message template break the engine's emit path
            log.exception("notification template failed", extra={"kind": kind})
            return False
        return note is not None and self._dispatcher.notify(note)

    def _with_exit_reason(self, payload: Mapping[str, Any], symbol: str | None) -> Mapping[str, Any]:
        """`payload`, with `exit_reason` when it closes a position for another reason than its
        own: the last sell's, where the close writes off the dust that sell left. One event
        alone cannot say it, so the bridge follows each position's updates."""
        reason = str(payload.get("reason", ""))
        position = str(payload.get("position_trace_id") or symbol)
        why = self._exits.on_update(position, payload.get("action"), reason)
        return payload if why is None or why == reason else {**payload, "exit_reason": why}

    def anomaly(self, title: str, detail: str, *, key: str = "") -> bool:
        """A system problem the runtime noticed (journal back-pressure, a stream down for long)."""
        return self._dispatcher.notify(Notification(title, detail, Severity.WARNING, "system", key=key))

    def send(self, note: Notification) -> bool:
        """Anything else worth telling (the daily report)."""
        return self._dispatcher.notify(note)
