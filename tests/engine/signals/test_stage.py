"""The signal stage: once per bar, journaled with the candidate as cause, ML slot by mode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.config.sections.trading import SignalSettings
from engine.domain import SignalDecision
from engine.signals.bars import BarHistory
from engine.signals.cache import BarCache
from engine.signals.features import LISTING_ORDINARY_BARS, CandidateInfo, feature_schema_hash
from engine.signals.scorer import NullScorer, ScorerMode
from engine.signals.stage import Evaluated, SignalStage
from tests.engine.signals import market_kit as mk
from tests.kit.events import RecordingSink


class FixedScorer:
    """A model that says the same score for everything."""

    def __init__(
        self, value: float, mode: ScorerMode, schema_hash: str | None = None, youngest_listing_bars: int = LISTING_ORDINARY_BARS
    ) -> None:
        self.value = value
        self.mode: ScorerMode = mode
        self.version = f"fixed-{value}"
        self.schema_hash = feature_schema_hash() if schema_hash is None else schema_hash
        self.calibrated_min_score: float | None = None
        self.youngest_listing_bars = youngest_listing_bars
        self.calls = 0

    def score(self, features: np.ndarray) -> float:
        self.calls += 1
        return self.value


def make_stage(scorer: FixedScorer | NullScorer | None = None, n: int = 3) -> tuple[SignalStage, RecordingSink, list[str]]:
    names = mk.symbols(n)
    history = BarHistory("1m")
    mk.feed_hot(history, names, mk.NOW)
    sink = RecordingSink()
    return SignalStage(SignalSettings(), history, sink, scorer), sink, names


def causes_for(sink: RecordingSink, cands: list) -> dict[str, int]:  # type: ignore[type-arg]
    return {
        c.trace_id: sink.emit(
            "candidate_snapshot",
            ts_ms=mk.NOW,
            trace_id=c.trace_id,
            symbol=c.symbol,
            payload={"heat": c.heat, "components": {}, "rank": c.rank, "price": c.price, "filters": [], "accepted": True},
        )
        for c in cands
    }


def test_signal_snapshot_per_candidate_caused_by_its_candidate_snapshot() -> None:
    stage, sink, names = make_stage()
    cands = mk.candidates(names, mk.NOW)
    causes = causes_for(sink, cands)
    out = stage.evaluate_entries(cands, mk.NOW, min_heat=70.0, last_action_ms={}, causes=causes)
    assert [e.signal.decision for e in out] == [SignalDecision.ENTER] * 3
    snaps = [e for e in sink.events if e.kind == "signal_snapshot"]
    assert len(snaps) == 3
    for snap, cand in zip(snaps, cands, strict=True):
        assert snap.cause == causes[cand.trace_id]
        assert snap.trace_id == cand.trace_id
        assert snap.payload["ml_score"] is None and snap.payload["model"] is None
        assert len(snap.payload["features"]) >= 25
        assert all(set(r) == {"name", "passed", "value", "threshold"} for r in snap.payload["rules"])


def test_computed_at_most_once_per_bar() -> None:
    stage, sink, names = make_stage()
    cands = mk.candidates(names, mk.NOW)
    assert len(stage.evaluate_entries(cands, mk.NOW, min_heat=70.0, last_action_ms={})) == 3
    # Later in the same bar: nothing recomputed, nothing journaled again.
    assert stage.evaluate_entries(cands, mk.NOW + 30_000, min_heat=70.0, last_action_ms={}) == []
    assert sum(e.kind == "signal_snapshot" for e in sink.events) == 3
    # The next bar evaluates again.
    assert len(stage.evaluate_entries(cands, mk.NOW + 60_000, min_heat=70.0, last_action_ms={})) == 3


@pytest.mark.parametrize(
    ("score", "decision"),
    [pytest.param(0.9, SignalDecision.ENTER, id="high-score-enters"), pytest.param(0.2, SignalDecision.SKIP, id="low-score-skips")],
)
def test_production_scorer_enters_the_decision(score: float, decision: SignalDecision) -> None:
    scorer = FixedScorer(score, "production")
    stage, sink, names = make_stage(scorer, n=1)
    (ev,) = stage.evaluate_entries(mk.candidates(names, mk.NOW), mk.NOW, min_heat=70.0, last_action_ms={})
    assert ev.signal.decision is decision
    assert ev.signal.ml_score == score
    (snap,) = [e for e in sink.events if e.kind == "signal_snapshot"]
    assert snap.payload["model"] == scorer.version
    assert any(r["name"] == "ml_score" for r in snap.payload["rules"])
    assert not any(e.kind == "model_shadow" for e in sink.events)


@pytest.mark.parametrize("score", [pytest.param(0.0, id="zero"), pytest.param(1.0, id="one")])
def test_shadow_scorer_is_journaled_and_never_decides(score: float) -> None:
    scorer = FixedScorer(score, "shadow")
    stage, sink, names = make_stage(scorer, n=2)
    out = stage.evaluate_entries(mk.candidates(names, mk.NOW), mk.NOW, min_heat=70.0, last_action_ms={})
    assert [e.signal.decision for e in out] == [SignalDecision.ENTER] * 2  # same as without a model
    assert all(e.signal.ml_score is None for e in out)
    shadows = [e for e in sink.events if e.kind == "model_shadow"]
    assert [s.payload["score"] for s in shadows] == [score, score]
    assert [s.cause for s in shadows] == [e.seq for e in out]
    snaps = [e for e in sink.events if e.kind == "signal_snapshot"]
    assert all(not any(r["name"] == "ml_score" for r in s.payload["rules"]) for s in snaps)


def test_null_scorer_is_never_consulted() -> None:
    stage, sink, names = make_stage(NullScorer(), n=1)
    (ev,) = stage.evaluate_entries(mk.candidates(names, mk.NOW), mk.NOW, min_heat=70.0, last_action_ms={})
    assert ev.signal.decision is SignalDecision.ENTER
    assert not any(e.kind == "model_shadow" for e in sink.events)
    assert np.isnan(NullScorer().score(np.zeros(3)))


def test_scorer_for_another_feature_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="feature schema"):
        make_stage(FixedScorer(0.5, "production", schema_hash="0" * 64))


def test_exit_signals_use_the_position_trace_and_unknown_heat() -> None:
    stage, _sink, names = make_stage(n=2)
    cands = {c.symbol: c for c in mk.candidates(names[:1], mk.NOW, heat=20.0)}
    out = stage.evaluate_exits([(names[0], "a" * 16), (names[1], "b" * 16)], mk.NOW, candidates=cands)
    assert [e.signal.trace_id for e in out] == ["a" * 16, "b" * 16]
    assert out[0].signal.decision is SignalDecision.EXIT and "heat_decay" in out[0].signal.reason
    assert out[1].signal.decision is SignalDecision.HOLD  # no candidate: heat unknown, not zero
    assert stage.evaluate_exits([(names[0], "a" * 16)], mk.NOW + 1000, candidates=cands) == []


def test_bar_cache_keeps_only_the_latest_bar() -> None:
    cache: BarCache[int] = BarCache()
    cache.put("A", 60_000, 1)
    assert cache.get("A", 60_000) == 1
    cache.put("A", 0, 9)  # a late, older bar does not displace the current one
    assert cache.get("A", 60_000) == 1 and cache.get("A", 0) is None
    cache.put("B", 120_000, 2)
    assert cache.get("A", 60_000) is None and cache.get("B", 120_000) == 2 and len(cache) == 1


def test_a_memo_answers_the_same_question_with_the_same_rows() -> None:
    """Shared by backtests of one window: the same symbols, info and bar give the rows already
    computed (read-only); other info is computed afresh."""
    stage, _, names = make_stage()
    stage.memo = {}
    bar = stage.bar_of(mk.NOW)
    info = CandidateInfo(*(np.linspace(0.1, 0.9, len(names)) + k for k in range(10)))
    first, _ = stage._features(names, info, bar)
    assert not first.flags.writeable and len(stage.memo) == 1
    assert stage._features(names, info, bar)[0] is first
    other = CandidateInfo(*(a + 1.0 for a in info.arrays()))
    again, _ = stage._features(names, other, bar)
    assert again is not first and len(stage.memo) == 2
    stage.memo = None  # live: computed every time, the same numbers
    assert stage._features(names, info, bar)[0].tobytes() == first.tobytes()


class CountingSink:
    """A journal-off sink: numbers and keeps events, reads no payloads (as `NullSink`)."""

    keeps_payloads = False

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, str | None, int | None]] = []

    def emit(self, kind: str, *, ts_ms: int, payload: object, trace_id: str | None = None, symbol: str | None = None,
             cause: int | None = None) -> int:  # fmt: skip
        self.events.append((kind, trace_id, symbol, cause))
        return len(self.events)


def _mixed(names: list[str]) -> list:  # type: ignore[type-arg]
    """Three candidates at heats 80, 50 and 75, ranked in that order."""
    heats = (80.0, 50.0, 75.0)
    return [replace(mk.candidates([s], mk.NOW, heat=h)[0], rank=i + 1) for i, (s, h) in enumerate(zip(names, heats, strict=True))]


@pytest.mark.parametrize("scorer", [None, FixedScorer(0.9, "shadow")], ids=["no-model", "shadow-model"])
def test_journal_off_skips_cold_candidates_on_heat_without_building_their_features(
    scorer: FixedScorer | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decisions, events and causes as with every candidate's features built; the features are
    built only for candidates over the heat bar, and only when no model scores the rows."""
    names = mk.symbols(3)
    history = BarHistory("1m")
    mk.feed_hot(history, names, mk.NOW)
    full_sink, off_sink = RecordingSink(), CountingSink()
    full = SignalStage(SignalSettings(), history, full_sink, scorer)
    off = SignalStage(SignalSettings(), history, off_sink, scorer)
    asked: list[list[str]] = []
    features = off._features

    def spy(symbols: list[str], info: CandidateInfo, bar: int, listed: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        asked.append(list(symbols))
        return features(symbols, info, bar, listed)

    monkeypatch.setattr(off, "_features", spy)
    cands = _mixed(names)
    want = full.evaluate_entries(cands, mk.NOW, min_heat=70.0, last_action_ms={})
    got = off.evaluate_entries(cands, mk.NOW, min_heat=70.0, last_action_ms={})
    assert [e.signal.decision for e in got] == [e.signal.decision for e in want] == [
        SignalDecision.ENTER, SignalDecision.SKIP, SignalDecision.ENTER,
    ]  # fmt: skip
    assert [(k, t, s, c) for k, t, s, c in off_sink.events] == [(e.kind, e.trace_id, e.symbol, e.cause) for e in full_sink.events]
    if scorer is None:
        assert asked == [[names[0], names[2]]]  # the cold one's features were never built
        assert got[1].signal.reason == "failed: heat" and got[1].signal.features == {}
        for k in (0, 2):  # a column is the same, bit for bit, whichever columns are built beside it
            a, b = got[k].signal.features, want[k].signal.features
            assert a.keys() == b.keys() and np.array_equal(list(a.values()), list(b.values()), equal_nan=True)
    else:
        assert asked == [names]  # a shadow model scores every row: nothing is skipped


def test_journal_off_a_minute_of_cold_candidates_alone_decides_as_the_rules_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fresh candidate under the heat bar (most minutes with one, journal off): decisions,
    events, causes and the bar's cache as the stage that journals gives them, without a feature
    row built; the next cycle of the bar finds each one decided."""
    names = mk.symbols(3)
    history = BarHistory("1m")
    mk.feed_hot(history, names, mk.NOW)
    full_sink, off_sink = RecordingSink(), CountingSink()
    full = SignalStage(SignalSettings(), history, full_sink)
    off = SignalStage(SignalSettings(), history, off_sink)
    monkeypatch.setattr(off, "_features", None)  # called: a TypeError
    cands = _mixed(names)
    causes = causes_for(full_sink, cands)
    want = full.evaluate_entries(cands, mk.NOW, min_heat=90.0, last_action_ms={}, causes=causes)
    got = off.evaluate_entries(cands, mk.NOW, min_heat=90.0, last_action_ms={}, causes=causes)
    assert [(e.signal.trace_id, e.signal.decision, e.signal.reason, dict(e.signal.rules)) for e in got] == [
        (e.signal.trace_id, e.signal.decision, "failed: heat", {"heat": False}) for e in want
    ]
    assert all(e.signal.decision is SignalDecision.SKIP for e in want)
    assert off_sink.events == [(e.kind, e.trace_id, e.symbol, e.cause) for e in full_sink.events[len(cands) :]]
    assert [e.seq for e in got] == list(range(1, 4))
    assert off.evaluate_entries(cands, mk.NOW, min_heat=90.0, last_action_ms={}) == []  # kept for the bar


@pytest.mark.parametrize("min_heat", [70.0, 90.0], ids=["some-warm", "all-cold"])
@pytest.mark.parametrize("sink_kind", ["journal", "journal-off"])
def test_entering_is_evaluate_entries_enter_signals_with_the_same_journal_and_bar(min_heat: float, sink_kind: str) -> None:
    """What the core asks (`enter_only`): the ENTER signals `evaluate_entries` gives, the same
    events with the same seqs and causes, and every candidate decided for the bar; a minute of
    cold candidates alone (journal off) journals its skips and builds no signal, and a cold one
    beside warm ones (journal off, some warm) is journaled and kept as a skip in its place
    (`_enter_signals`)."""
    names = mk.symbols(3)
    history = BarHistory("1m")
    mk.feed_hot(history, names, mk.NOW)

    def sink() -> RecordingSink | CountingSink:
        return RecordingSink() if sink_kind == "journal" else CountingSink()

    plain_sink, acting_sink = sink(), sink()
    plain = SignalStage(SignalSettings(), history, plain_sink)
    acting = SignalStage(SignalSettings(), history, acting_sink)
    cands = _mixed(names)
    causes = causes_for(plain_sink, cands)  # type: ignore[arg-type]
    assert causes_for(acting_sink, cands) == causes  # type: ignore[arg-type]
    want = plain.evaluate_entries(cands, mk.NOW, min_heat=min_heat, last_action_ms={}, causes=causes)
    got = acting.evaluate_entries(cands, mk.NOW, min_heat=min_heat, last_action_ms={}, causes=causes, enter_only=True)
    entered = [e for e in want if e.signal.decision is SignalDecision.ENTER]
    assert [_plain(e) for e in got] == [_plain(e) for e in entered]
    for a, b in zip(got, entered, strict=True):  # NaN features (no regime history) equal as NaN
        assert np.array_equal(list(a.signal.features.values()), list(b.signal.features.values()), equal_nan=True)
    assert len(got) == (2 if min_heat == 70.0 else 0)
    assert _events(acting_sink) == _events(plain_sink)
    assert acting.evaluate_entries(cands, mk.NOW + 5_000, min_heat=min_heat, last_action_ms={}, enter_only=True) == []  # kept for the bar
    assert _events(acting_sink) == _events(plain_sink)


def _plain(e: Evaluated) -> tuple[object, ...]:
    """An evaluation less its features (NaN there is unequal to itself)."""
    s = e.signal
    return e.seq, s.trace_id, s.symbol, s.ts_ms, s.decision, s.reason, dict(s.rules), list(s.features), s.ml_score


def _events(sink: RecordingSink | CountingSink) -> list[tuple[object, ...]]:
    """(kind, trace, symbol, cause) of each event a sink took, in order."""
    if isinstance(sink, CountingSink):
        return list(sink.events)
    return [(e.kind, e.trace_id, e.symbol, e.cause) for e in sink.events]


def test_a_decision_without_the_bar_that_just_closed_is_asked_again_once_it_comes() -> None:
    """The candle fetch failed (or the exchange had not published the bar yet): that decision,
    on NaN features, is not kept for the bar; the next cycle, with the bar, decides again."""
    names = mk.symbols(1)
    history = BarHistory("1m")
    last_open = (mk.NOW // 60_000) * 60_000 - 60_000
    bars = mk.hot_bars(names[0], last_open, 1.0)
    for c in bars[:-1]:  # everything but the bar that just closed
        history.add(c)
    for c in mk.hot_bars("BTC/USDT", last_open, 30_000.0, rising=0):
        history.add(c)
    stage = SignalStage(SignalSettings(), history, RecordingSink())
    cands = mk.candidates(names, mk.NOW)
    (first,) = stage.evaluate_entries(cands, mk.NOW, min_heat=70.0, last_action_ms={})
    assert first.signal.decision is SignalDecision.SKIP
    history.add(bars[-1])
    (second,) = stage.evaluate_entries(cands, mk.NOW + 5_000, min_heat=70.0, last_action_ms={})
    assert second.signal.decision is SignalDecision.ENTER
    assert stage.evaluate_entries(cands, mk.NOW + 10_000, min_heat=70.0, last_action_ms={}) == []  # now kept


@pytest.mark.parametrize("cycle_ms", [60_000, 1_000], ids=["a-batch-a-minute", "a-cycle-a-second"])
def test_a_rank_change_reads_the_same_live_and_in_a_backtest(cycle_ms: int) -> None:
    """Rank 5 at the previous bar's first decision, 2 by its end and at this bar's: the change
    is 3 whether the stage was asked once a minute (a backtest) or every second (live)."""
    from dataclasses import replace

    stage, _, names = make_stage(n=1)
    bar = mk.NOW // 60_000 * 60_000
    got = None
    for t in range(bar - 60_000, bar + 1, cycle_ms):
        (cand,) = mk.candidates(names, t)
        out = stage.evaluate_entries([replace(cand, rank=5 if t < bar - 30_000 else 2)], t, min_heat=70.0, last_action_ms={})
        if t == bar:
            got = out[0].signal.features["rank_change"]
    assert got == 3.0


def test_a_held_symbols_rank_change_is_from_its_latest_bar_not_its_entry() -> None:
    from dataclasses import replace

    stage, _, names = make_stage(n=1)
    (cand,) = mk.candidates(names, mk.NOW)
    stage.evaluate_entries([replace(cand, rank=5)], mk.NOW - 600_000, min_heat=70.0, last_action_ms={})  # entered at 5
    stage.evaluate_exits([(names[0], "tr")], mk.NOW - 60_000, candidates={names[0]: replace(cand, rank=1)})
    (ev,) = stage.evaluate_exits([(names[0], "tr")], mk.NOW, candidates={names[0]: replace(cand, rank=3)})
    assert ev.signal.features["rank_change"] == -2.0
