"""The sinks' `keeps_payloads` flag: only a sink that drops everything (and nothing reading
through the tap) lets the per-minute emitters leave payloads out."""

from __future__ import annotations

import pytest

from engine.journal.events import EventSink
from engine.journal.sinks import NullSink
from engine.runtime.tap import Tap
from tests.kit.events import RecordingSink


def test_a_counting_sink_keeps_no_payloads_unless_it_validates() -> None:
    assert not NullSink().keeps_payloads
    assert NullSink(validate=True).keeps_payloads  # validation reads every field
    assert RecordingSink().keeps_payloads


def test_the_tap_keeps_payloads_for_its_sink_its_console_rows_and_its_observers() -> None:
    def tap(sink: EventSink, recent: int) -> Tap:
        return Tap(sink, recent=recent)

    assert not tap(NullSink(), 0).keeps_payloads
    assert tap(RecordingSink(), 0).keeps_payloads
    assert tap(NullSink(), 200).keeps_payloads  # the console's event rows are built from payloads
    quiet = tap(NullSink(), 0)
    quiet.observers.append(lambda kind, payload, symbol: None)  # e.g. notifications
    assert quiet.keeps_payloads


def test_the_tap_counts_events_by_kind_whatever_the_sink_keeps() -> None:
    t = Tap(NullSink(), recent=0)
    for kind in ("state_change", "candidate_snapshot", "state_change"):
        t.emit(kind, ts_ms=1, payload={})
    assert t.events == 3 and t.kinds == {"state_change": 2, "candidate_snapshot": 1}


def test_a_tally_counts_and_numbers_events_as_emitting_them_does() -> None:
    """`Tap.tally` (discovery's events with the journal off) leaves the counts and the seqs
    after it where emitting each event would have."""
    kinds = ("candidate_snapshot", "listing", "candidate_snapshot")
    emitted, tallied = Tap(NullSink(), recent=0), Tap(NullSink(), recent=0)
    for tap in (emitted, tallied):
        tap.emit("state_change", ts_ms=1, payload={})
    for kind in kinds:
        emitted.emit(kind, ts_ms=2, payload={}, trace_id="t", symbol="A/USDT")
    tallied.tally(2, kinds)
    assert tallied.kinds == emitted.kinds and tallied.events == emitted.events == 4
    assert tallied.emit("fill", ts_ms=3, payload={}) == emitted.emit("fill", ts_ms=3, payload={}) == 5


def test_a_tally_is_refused_where_events_are_kept() -> None:
    with pytest.raises(ValueError, match="keeps them"):
        Tap(RecordingSink(), recent=0).tally(1, ("candidate_snapshot",))
    with pytest.raises(ValueError, match="reads every payload"):
        NullSink(validate=True).skip(1)


@pytest.mark.parametrize("sink", ["null", "recording", "observed"])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_skips_at_once_are_the_skips_emitted_one_by_one(sink: str, n: int) -> None:
    """`Tap.emit_skips` (a minute's cold candidates): the seqs after it, the counts, each symbol's
    last decision and what a keeping sink holds are those of an `emit` each."""

    def make(seen: list[tuple[str, str | None]]) -> Tap:
        tap = Tap(RecordingSink() if sink == "recording" else NullSink(), recent=0)
        if sink == "observed":  # an observer reads every event: each is emitted
            tap.observers.append(lambda kind, payload, symbol: seen.append((kind, symbol)))
        return tap

    seen_one: list[tuple[str, str | None]] = []
    seen_many: list[tuple[str, str | None]] = []

    payload = {"decision": "skip", "reason": "failed: heat", "rules": [], "features": {}}
    traces, symbols = [f"t{i}" for i in range(n)], ["A/USDT", "B/USDT", "A/USDT"][:n]  # a symbol twice: the last wins
    causes = {"t0": 1, "t2": 1}  # the first event's
    one, many = make(seen_one), make(seen_many)
    for tap in (one, many):
        tap.emit("signal_snapshot", ts_ms=1, payload={**payload, "decision": "enter"}, trace_id="x", symbol="B/USDT")
    for trace_id, symbol in zip(traces, symbols, strict=True):
        one.emit("signal_snapshot", ts_ms=2, payload=payload, trace_id=trace_id, symbol=symbol, cause=causes.get(trace_id))
    many.emit_skips(2, payload, traces, symbols, causes)
    assert many.kinds == one.kinds and many.events == one.events == 1 + n
    assert many.last_signal == one.last_signal and list(many.last_signal) == list(one.last_signal)
    assert many.emit("signal_snapshot", ts_ms=3, payload=payload) == one.emit("signal_snapshot", ts_ms=3, payload=payload)
    assert seen_many == seen_one
    if isinstance(one.sink, RecordingSink) and isinstance(many.sink, RecordingSink):
        assert [(e.kind, e.trace_id, e.symbol, e.cause) for e in many.sink.events] == [
            (e.kind, e.trace_id, e.symbol, e.cause) for e in one.sink.events
        ]
