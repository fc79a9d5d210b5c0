"""`Tap`: the `EventSink` every cycle writes through, in front of the journal.

The live engine and the backtester journal through the same tap, so both remember the same
things while they write:
- which `candidate_snapshot` started each trace (the `cause` of its signal, bounded);
- the latest signal decision per symbol (the pool view's "signal state");
- failed order calls, reported to the state machine (`on_order_error`);
- the last `recent` events as one-line rows for the console's event stream (the backtester,
  which has no console, keeps none);
- a count of events (and by kind), and observers (notifications) that see every event after it
  is written.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.execution.broker import counts_as_order_error
from engine.journal.events import TRAIL_ACTION, EventSink
from engine.journal.sinks import NullSink
from engine.numfmt import price, quantity
from engine.runtime.snapshot import EventRow

RECENT_EVENTS = 200
CANDIDATE_SEQS = 8_192

EventObserver = Callable[[str, Mapping[str, Any], "str | None"], object]
_NO_PAYLOAD: Mapping[str, Any] = {}  # a tallied event's: its sink keeps none (`Tap.tally`)


class Tap:
    def __init__(self, sink: EventSink, *, recent: int = RECENT_EVENTS) -> None:
        self.sink = sink
        self.recent: deque[EventRow] = deque(maxlen=recent)
        self._keep_recent = recent > 0
        self.observers: list[EventObserver] = []  # e.g. notifications; each must be cheap and non-blocking
        self.candidate_seq: dict[str, int] = {}
        self.last_signal: dict[str, str] = {}  # symbol -> latest signal decision, for the pool view
        self.on_order_error: Callable[[int], None] | None = None  # failed order calls, for the state machine
        self.kinds: Counter[str] = Counter()  # events by kind (a backtest reports its state changes)

    @property
    def events(self) -> int:
        """Events emitted through this tap."""
        return self.kinds.total()

    @property
    def keeps_payloads(self) -> bool:
        """Payloads are read if the sink keeps them, an observer sees them, or the console's
        recent-events rows are kept; otherwise emitters may leave them out (`EventSink`)."""
        return self.sink.keeps_payloads or self._keep_recent or bool(self.observers)

    @property
    def counts_only(self) -> bool:
        """Whether nothing reads more of an event than its kind and seq: a `NullSink` keeping no
        payloads, no observer, no console rows (a backtest with its journal off). Then events
        are only numbered and counted (`emit_skips`, `tally`), and nothing can tell in which
        order a run of minutes emitted them: the cycle may step quiet minutes at once
        (`TradingCycle.step_quiet`)."""
        sink = self.sink
        return not (sink.keeps_payloads or self._keep_recent or self.observers) and isinstance(sink, NullSink)

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
        seq = self.sink.emit(kind, ts_ms=ts_ms, payload=payload, trace_id=trace_id, symbol=symbol, cause=cause)
        self.kinds[kind] += 1
        if kind == "candidate_snapshot" and trace_id is not None:
            self.candidate_seq[trace_id] = seq
            # A trace is a cause only within its own bar (<= one snapshot per symbol per bar), so
            # the newest 4,096 cover two full bars of a 2,000-symbol market; a larger map only
            # grew RSS over a simulated week (bench_soak).
            if len(self.candidate_seq) > CANDIDATE_SEQS:
                for old in list(self.candidate_seq)[: CANDIDATE_SEQS // 2]:
                    del self.candidate_seq[old]
        elif kind == "signal_snapshot" and symbol is not None:
            self.last_signal[symbol] = str(payload.get("decision", ""))
        elif kind == "order_result" and counts_as_order_error(payload) and self.on_order_error is not None:
            self.on_order_error(ts_ms)
        if self.observers:
            for observe in self.observers:
                observe(kind, payload, symbol)
        if self._keep_recent:
            self.recent.append(EventRow(seq, ts_ms, kind, symbol, trace_id, event_line(kind, payload)))
        return seq

    def emit_skips(
        self, ts_ms: int, payload: Mapping[str, Any], trace_ids: Sequence[str], symbols: Sequence[str],
        causes: Mapping[str, int] | None,
    ) -> None:  # fmt: skip
        """`emit` of a `signal_snapshot` with `payload` for each trace id and symbol, in order,
        caused by the trace's `causes` entry: a minute's cold candidates (`SignalStage`), ~36,000
        a replayed month. Where nothing reads more than the count (a `NullSink` that keeps no
        payloads, no observer, no console rows) they are numbered at once, counted, and their
        symbols' last decision noted, as each `emit` would: the same seqs, counts and state."""
        if not symbols:
            return
        sink = self.sink
        # `keeps_payloads` read out (a minute's one or two skips cost less than the property)
        if sink.keeps_payloads or self._keep_recent or self.observers or not isinstance(sink, NullSink):
            for trace_id, symbol in zip(trace_ids, symbols, strict=True):
                cause = None if causes is None else causes.get(trace_id)
                self.emit("signal_snapshot", ts_ms=ts_ms, payload=payload, trace_id=trace_id, symbol=symbol, cause=cause)
            return
        sink.skip(len(symbols))
        self.kinds["signal_snapshot"] += len(symbols)
        decision, last = str(payload.get("decision", "")), self.last_signal
        for symbol in symbols:
            last[symbol] = decision

    def tally(self, ts_ms: int, kinds: Sequence[str]) -> None:
        """Events of `kinds` at `ts_ms`, where nothing reads more of them than their kind: the
        sink only counts and numbers them (`keeps_payloads` False: no payload kept, no observer,
        no console rows). Each still takes its seq, so the seqs after them and the counts are
        those of `emit`; no trace is remembered as a cause (`candidate_seq`), a link only a
        sink keeping events would keep. For discovery's events run ahead of the core with the
        journal off (`engine.backtest.discovery_process`): ~50,000 candidate snapshots a
        replayed month, each `emit`'s bookkeeping for nothing."""
        sink = self.sink
        if sink.keeps_payloads or self._keep_recent or self.observers:  # `keeps_payloads`, read out
            raise ValueError("tally() is for a tap whose sink only counts events; this one keeps them")
        if isinstance(sink, NullSink):
            sink.skip(len(kinds))  # the journal off: numbered at once
        else:
            emit = sink.emit
            for kind in kinds:
                emit(kind, ts_ms=ts_ms, payload=_NO_PAYLOAD)
        counts = self.kinds
        for kind in kinds:  # not `Counter.update`, whose checks cost more than a minute's one or two events
            counts[kind] += 1


def event_line(kind: str, p: Mapping[str, Any]) -> str:
    """One line of an event for the console's event stream (missing fields read as blanks)."""
    get = p.get
    if kind == "candidate_snapshot":
        return f"heat {get('heat', 0):.0f} rank {get('rank', '?')} {'accepted' if get('accepted') else 'rejected'}"
    if kind == "signal_snapshot":
        return f"{get('decision')}: {get('reason')}"
    if kind == "order_attempt":
        return f"{get('purpose')} {get('side')} {get('quantity')}"
    if kind == "order_result":
        return f"{get('status')}" + (f" ({get('error')})" if get("error") else "")
    if kind == "fill":
        return f"{get('side')} {_number(get('quantity'), quantity)} @ {_number(get('price'), price)}"
    if kind == "position_update" and get("action") == TRAIL_ACTION:
        return f"trailing stop {_number(get('stop'), price)} (peak {_number(get('trailing_high'), price)})"
    if kind == "position_update":
        return f"{get('action')} pnl {get('realised_pnl', 0):+.2f}"
    if kind == "state_change":
        return f"{get('from')} -> {get('to')}"
    if kind == "risk_check":
        return _risk_line(p)
    if kind == "run_start":
        capital = "" if get("capital") is None else f", capital {get('capital')}"
        return f"run {get('run_id')} started ({get('mode')}{capital})"
    if kind == "run_stop":
        return f"run {get('run_id')} stopped ({get('reason')})"
    return str(get("detail") or get("command") or get("code") or "")


def _risk_line(p: Mapping[str, Any]) -> str:
    """"approved", or the first check that refused the entry with its value and limit (the
    question an operator asks of a refusal), and how many more refused."""
    if p.get("approved"):
        return "approved"
    failed = [c for c in p.get("checks") or () if isinstance(c, Mapping) and not c.get("passed", True)]
    if not failed:
        return "rejected"
    first = failed[0]
    more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
    # Imported here: a refused risk check is rare, and the replay's start otherwise paid the
    # trace module's import (~10 ms of dataclasses) before its fork for a line it seldom prints.
    from engine.journal.trace import Check

    said = Check.parse("risk", first).condition  # which way it compares, as replay says it
    shown = f"{said} does not hold" if said else f"value {_value(first.get('value'))} threshold {_value(first.get('threshold'))}"
    return f"rejected: {first.get('name')} {shown}{more}"


def _number(v: object, shown: Callable[[float], str]) -> str:
    """A payload's number as the console shows it (`1,984.0 @ 0.025599`, not the float's
    `1984.0 @ 0.025599194000000002`); anything else (missing, a string) as it is."""
    return shown(float(v)) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def _value(v: object) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
