"""The signal stage: candidates (and held symbols) in, journaled signals out, once per bar.

For every symbol not yet evaluated in the current bar it builds the feature rows in one
vectorised pass (`features_hot_latest` over `BarHistory`), applies the rules, consults the ML
scorer according to its mode, and emits one `signal_snapshot` per symbol whose `cause` is the
candidate's `candidate_snapshot` seq (a held coin's exit decision: its position's `open`, see
`evaluate_exits`). Shadow scores go to `model_shadow` events only.

A candidate discovery dates as a listing (`coin_age_days`) whose bars begin at it gets the
since-listing window features (`Listings.in_window`), and its rule checks say so. A production
model is not put to a listing younger than any it was trained on (`Scorer.youngest_listing_bars`):
its score there is dropped (journaled as null) and the rules decide the entry alone, with the
`ml_score` check saying why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.config.sections.trading import SignalSettings
from engine.discovery.listings import DAY_MS
from engine.domain import Candidate, Signal, SignalDecision
from engine.journal.events import EventSink
from engine.signals.bars import BarSource, FeaturesAhead
from engine.signals.cache import BarCache
from engine.signals.columns import ColumnPool, MemberColumns
from engine.signals.features import (
    FEATURE_NAMES,
    WINDOW,
    BarMatrix,
    CandidateInfo,
    FloatArray,
    Listings,
    feature_dicts,
    feature_schema_hash,
    features_hot_latest,
    info_values,
    with_info,
    with_info_values,
)
from engine.signals.rules import RuleOutcome, SignalRules, model_too_young
from engine.signals.scorer import NullScorer, Scorer

# The inputs of one `_features` call -> its rows and each symbol's bars since listing.
FeatureMemo = dict[tuple[object, ...], tuple[FloatArray, FloatArray | None]]


class SkipSink(Protocol):
    """`Tap.emit_skips`: a `signal_snapshot` with `payload` for each trace id and symbol, in
    order, caused by the trace's entry in `causes`, as `emit` of each would journal it."""

    def __call__(
        self, ts_ms: int, payload: Mapping[str, Any], trace_ids: Sequence[str], symbols: Sequence[str],
        causes: Mapping[str, int] | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A signal computed in this call, and the seq of the `signal_snapshot` that journaled it."""

    signal: Signal
    seq: int


class SignalStage:
    def __init__(
        self,
        settings: SignalSettings,
        history: BarSource,
        sink: EventSink,
        scorer: Scorer | None = None,
    ) -> None:
        self.settings = settings
        self.history = history
        self._tf_ms = history.tf_ms  # a history's timeframe is fixed; read twice a cycle
        self.sink = sink
        self.scorer: Scorer = scorer or NullScorer()
        if self.scorer.mode != "off" and self.scorer.schema_hash != feature_schema_hash():
            raise ValueError(
                f"scorer {self.scorer.version} was built for feature schema {self.scorer.schema_hash[:12]}, "
                f"this engine computes {feature_schema_hash()[:12]}; retrain or install a matching model"
            )
        self.rules = SignalRules(settings)
        # Only whether a symbol was decided in the bar is read back: its decision is kept, so a
        # cold skip needs no `Signal` (`evaluate_entries(enter_only=True)`).
        self._entries: BarCache[SignalDecision] = BarCache()
        self._exits: BarCache[Signal] = BarCache()
        # A rank change is bar to bar, from each bar's first decision (the moment a backtest's
        # one batch a minute sees): symbol -> (bar, its rank at that bar's first sight), and its
        # rank at the first sight of the latest earlier bar it was seen in. Live used to compare
        # with the cycle a second before, a backtest with the minute before.
        self._ranks: dict[str, tuple[int, int]] = {}
        self._prev_ranks: dict[str, int] = {}
        # Features by their exact inputs, shared by backtests of one window (optimize's trials,
        # `engine.backtest.reuse`): None live, where no question is ever asked twice.
        self.memo: FeatureMemo | None = None
        # A backtest's store computes a symbol's features for its next bars at once: the asks
        # are served from it. None live.
        self._ahead = history if isinstance(history, FeaturesAhead) else None
        # A sink that journals a minute's cold skips at once (`Tap.emit_skips`), else None: each
        # is emitted alone.
        self._emit_skips: SkipSink | None = getattr(sink, "emit_skips", None)

    def bar_of(self, now_ms: int) -> int:
        """Open time of the last bar that has closed by `now_ms`."""
        tf = self._tf_ms
        return (now_ms // tf) * tf - tf

    def _features(
        self, symbols: Sequence[str], info: CandidateInfo, bar_ms: int, listed_ms: FloatArray | None = None
    ) -> tuple[FloatArray, FloatArray | None]:
        """Feature rows of `symbols` at `bar_ms`, and each one's bars since listing where its
        window features are since-listing ones (NaN elsewhere), None where no symbol's are (the
        rules then look for no listing details: most asks, every one a store's blocks serve).
        `listed_ms`: when discovery dated each symbol's listing, NaN (or None for all) where it
        knows of none."""
        key: tuple[object, ...] | None = None
        min_bars = self.settings.listing_min_bars
        if listed_ms is None:
            listed_ms = np.full(len(symbols), np.nan)
        if self.memo is not None:
            regime, tf = self.settings.regime_symbol, self.history.tf_ms
            key = (
                tuple(symbols), regime, tf, bar_ms, min_bars, listed_ms.tobytes(),
                b"".join(a.tobytes() for a in info.arrays()),
            )
            known = self.memo.get(key)
            if known is not None:
                return known
        ahead = self._ahead_rows(symbols, info, bar_ms, listed_ms)
        x, ages = ahead if ahead is not None else self._compute(symbols, info, bar_ms, listed_ms)
        if self.memo is not None and key is not None:
            x.setflags(write=False)  # shared with later runs: nobody may write into it
            if ages is not None:
                ages.setflags(write=False)
            self.memo[key] = (x, ages)
        return x, ages

    def _ahead_rows(
        self, symbols: Sequence[str], info: CandidateInfo, bar_ms: int, listed_ms: FloatArray
    ) -> tuple[FloatArray, FloatArray | None] | None:
        """`_compute`'s answer from the store's blocks (`FeaturesAhead`), or None when any
        symbol's is not there (live): a symbol's features do not depend on the others asked
        with it, so a call's rows are those of its symbols asked alone. A window without its
        first bar is read as `_compute` reads it: a listing where discovery's date says so
        (`Listings.at_rows`), its since-listing row then, the ordinary row otherwise."""
        if self._ahead is None:
            return None
        rows, regime, min_bars = [], self.settings.regime_symbol, self.settings.listing_min_bars
        firsts: dict[int, tuple[FloatArray, int]] = {}  # symbol's column -> (since-listing row, first row)
        for j, symbol in enumerate(symbols):
            row = self._ahead.latest_features(symbol, regime, bar_ms)
            if row is None:
                listed = self._ahead.listing_features(symbol, regime, bar_ms, min_bars) if min_bars else None
                if listed is None:
                    return None
                row, firsts[j] = listed[0], listed[1:]
            rows.append(row)
        if not firsts or not np.isfinite(listed_ms).any():  # `_compute`'s test: no listing to look for
            return with_info(rows, info), None
        first = np.zeros(len(symbols), np.intp)
        for j, (_, f) in firsts.items():
            first[j] = f
        listings = Listings.at_rows(first, listed_ms, bar_ms, WINDOW, self._tf_ms, min_bars)
        for j, (since, _) in firsts.items():
            if np.isfinite(listings.first_row[j]):
                rows[j] = since
        return with_info(rows, info), listings.ages(WINDOW)

    def _compute(
        self, symbols: Sequence[str], info: CandidateInfo, bar_ms: int, listed_ms: FloatArray
    ) -> tuple[FloatArray, FloatArray | None]:
        """`_features` from a window read: the live path, and what a store's blocks leave."""
        min_bars = self.settings.listing_min_bars
        # One gather for the symbols and the regime symbol together: a window read costs about
        # as much for one column as for ten, and the regime's closes are just its last column.
        both = self.history.window([*symbols, self.settings.regime_symbol], bar_ms)
        n = len(symbols)
        bars = BarMatrix(both.open[:, :n], both.high[:, :n], both.low[:, :n], both.close[:, :n], both.volume[:, :n])
        # A listing's bars begin inside the window, so its first row is missing there: a window
        # without a hole in that row holds no listing (most reads), as `Listings.in_window`
        # would find at ten times the cost.
        listings = (
            Listings.in_window(bars.close, listed_ms, bar_ms, self._tf_ms, min_bars)
            if min_bars and np.isnan(bars.close[0]).any() and np.isfinite(listed_ms).any()
            else None
        )
        x = features_hot_latest(bars, info, both.close[:, n], listings)
        return x, None if listings is None else listings.ages(bars.n_bars)

    def evaluate_entries(
        self,
        candidates: Sequence[Candidate],
        now_ms: int,
        *,
        min_heat: float,
        last_action_ms: Mapping[str, int],
        causes: Mapping[str, int] | None = None,
        enter_only: bool = False,
    ) -> list[Evaluated]:
        """Entry signals for the candidates not yet evaluated in this bar (cached ones are skipped).

        `enter_only` (what the core asks): the ENTER signals alone, every decision journaled and
        kept as without it; a minute whose fresh candidates are all cold (most minutes with a
        candidate) then builds no `Signal` and no `Evaluated`, only their journal lines."""
        bar_ms = self.bar_of(now_ms)
        # Nobody reads the payloads and no model scores the rows (a backtest with its journal
        # off): a candidate under the heat bar is skipped on that rule alone, since no other
        # rule can undo a failed one, and its features are never built. That is most fresh
        # candidates of a replay (89 % over two real days); each column of the rest is the
        # same whichever columns are computed beside it.
        keeps = self.sink.keeps_payloads
        skips_cold = not keeps and self.scorer.mode == "off"
        if (
            enter_only
            and skips_cold
            and isinstance(candidates, ColumnPool)
            and self._skip_cold_columns(candidates.columns, now_ms, bar_ms, min_heat, causes)
        ):
            return []  # decided as columns: no candidate built
        fresh = [c for c in candidates if self._entries.get(c.symbol, bar_ms) is None]
        previous = self._note_ranks(candidates, bar_ms)
        if not fresh:
            return []
        cold = {c.symbol for c in fresh if not c.heat >= min_heat} if skips_cold else ()
        if enter_only and len(cold) == len(fresh):  # every one cold (most minutes with a candidate): none enters
            self._skip_cold(fresh, now_ms, bar_ms, causes)
            return []
        warm = [c for c in fresh if c.symbol not in cold] if cold else fresh
        outcomes, rows, raw, scores = self._rule_entries(warm, previous, now_ms, bar_ms, min_heat, last_action_ms, keeps)
        if enter_only and cold:
            return self._enter_signals(fresh, cold, now_ms, bar_ms, causes, outcomes, rows, raw, scores)
        out = []
        i = 0
        for c in fresh:
            cause = None if causes is None else causes.get(c.trace_id)
            if c.symbol in cold:
                ev = self._cold(c, now_ms, cause)
                keep = True
            else:
                ev = self._journal(c.trace_id, c.symbol, now_ms, bar_ms, "entry", outcomes[i], rows[i], raw[i], scores, i, cause)
                keep = _has_last_bar(raw[i])  # else asked again next cycle, once the bar may have come
                i += 1
            if keep:
                self._entries.put(c.symbol, bar_ms, ev.signal.decision)
            if not enter_only or ev.signal.decision is SignalDecision.ENTER:
                out.append(ev)
        return out

    def skip_cold_pool(
        self, pool: MemberColumns, now_ms: int, min_heat: float, causes: Mapping[str, int] | None
    ) -> bool:
        """`evaluate_entries(pool, enter_only=True)` of a pool read as columns, in hottest-first
        order (`by_rank` returns it as it is), where it decides without a `Candidate`: True,
        with the ranks noted and the skips journaled and kept as `evaluate_entries` does them;
        False where it does not (a warm candidate, payloads read, a model scoring), nothing
        done. For a core at rest (`TradingCore.step`), whose cold minutes need nothing else."""
        if self.sink.keeps_payloads or self.scorer.mode != "off":
            return False
        return self._skip_cold_columns(pool, now_ms, self.bar_of(now_ms), min_heat, causes)

    def _enter_signals(
        self, fresh: Sequence[Candidate], cold: set[str], now_ms: int, bar_ms: int, causes: Mapping[str, int] | None,
        outcomes: Sequence[RuleOutcome], rows: Sequence[dict[str, float | None]], raw: Sequence[list[float]],
        scores: FloatArray | None,
    ) -> list[Evaluated]:
        """`evaluate_entries(enter_only=True)`'s loop over `fresh`, some of it `cold`: each run of
        cold candidates journaled and kept as skips at once (`_journal_skips`), the others as the
        loop does, in order, so every event keeps its seq. A minute with a hot candidate has a
        few cold ones beside it, each a `Signal` that nothing acting reads."""
        out, run, i = [], [], 0
        for c in fresh:
            if c.symbol in cold:
                run.append(c)
                continue
            self._skip_cold(run, now_ms, bar_ms, causes)
            run = []
            cause = None if causes is None else causes.get(c.trace_id)
            ev = self._journal(c.trace_id, c.symbol, now_ms, bar_ms, "entry", outcomes[i], rows[i], raw[i], scores, i, cause)
            if _has_last_bar(raw[i]):  # else asked again next cycle, once the bar may have come
                self._entries.put(c.symbol, bar_ms, ev.signal.decision)
            if ev.signal.decision is SignalDecision.ENTER:
                out.append(ev)
            i += 1
        self._skip_cold(run, now_ms, bar_ms, causes)
        return out

    def _skip_cold(self, fresh: Sequence[Candidate], now_ms: int, bar_ms: int, causes: Mapping[str, int] | None) -> None:
        """What the loop below `_rule_entries` journals and keeps for a minute of cold candidates
        alone (`_cold`'s line, a skip kept for the bar), in order, without the signals nobody
        acting reads (`evaluate_entries(enter_only=True)`)."""
        self._journal_skips([c.trace_id for c in fresh], [c.symbol for c in fresh], now_ms, bar_ms, causes)

    def _journal_skips(
        self, trace_ids: Sequence[str], symbols: Sequence[str], now_ms: int, bar_ms: int, causes: Mapping[str, int] | None
    ) -> None:
        """`_skip_cold` of these candidates' trace ids and symbols: through the sink's
        `emit_skips` where it has one (a tap: at once where nothing reads them), each emitted
        alone where not; each kept as a skip for the bar."""
        if not symbols:
            return  # nothing fresh: the bar's cache is left as it is
        if self._emit_skips is not None:
            self._emit_skips(now_ms, _COLD_PAYLOAD, trace_ids, symbols, causes)
        else:
            emit = self.sink.emit
            for trace_id, symbol in zip(trace_ids, symbols, strict=True):
                cause = None if causes is None else causes.get(trace_id)
                emit("signal_snapshot", ts_ms=now_ms, payload=_COLD_PAYLOAD, trace_id=trace_id, symbol=symbol, cause=cause)
        self._entries.put_many(symbols, bar_ms, SignalDecision.SKIP)

    def _skip_cold_columns(
        self, pool: MemberColumns, now_ms: int, bar_ms: int, min_heat: float, causes: Mapping[str, int] | None
    ) -> bool:
        """`evaluate_entries(enter_only=True)` of a pool read as columns (`ColumnPool`) where
        that decides it without a `Candidate`: no fresh candidate, or every fresh one cold
        (most minutes with a candidate). Then its ranks are noted, its skips journaled and kept,
        as the candidates' path does, and True; else False, and nothing is done (the ranks
        noted here would be noted again the same: `_note_ranks` keeps a bar's first)."""
        get, symbols, heats = self._entries.get, pool.symbols, pool.heats
        fresh: list[int] = []
        cold: set[str] = set()
        for i, symbol in enumerate(symbols):  # a loop, not comprehensions: pools are one to three
            if get(symbol, bar_ms) is None:
                if heats[i] >= min_heat:
                    return False  # a warm one: the candidates' path evaluates it
                fresh.append(i)
                cold.add(symbol)
        if len(cold) != len(fresh):
            return False  # a symbol named twice: the candidates' path sorts it out
        self._note_rank_columns(symbols, pool.ranks, bar_ms)
        trace_ids = pool.trace_ids
        if len(fresh) < len(symbols):  # else (a new bar's first ask: nearly always) all of them, in order
            symbols, trace_ids = [symbols[i] for i in fresh], [trace_ids[i] for i in fresh]
        self._journal_skips(trace_ids, symbols, now_ms, bar_ms, causes)
        return True

    def _rule_entries(
        self, warm: Sequence[Candidate], previous: Mapping[str, int], now_ms: int, bar_ms: int, min_heat: float,
        last_action_ms: Mapping[str, int], keeps: bool,
    ) -> tuple[list[RuleOutcome], list[dict[str, float | None]], list[list[float]], FloatArray | None]:
        """Features, model scores and entry rules of `warm`, in order: (outcomes, journal rows,
        raw rows, scores). `keeps`: whether the sink keeps payloads (else no check dicts)."""
        if not warm:
            return [], [], [], None
        since = np.array(
            [now_ms - last_action_ms[c.symbol] if c.symbol in last_action_ms else np.inf for c in warm],
            np.float64,
        )
        symbols = [c.symbol for c in warm]
        if not keeps and self.scorer.mode == "off":
            raw = self._block_rows(symbols, warm, previous, bar_ms)
            if raw is not None:
                outcomes = self.rules.entry(raw, min_heat=min_heat, since_last_action_ms=since, checks=False)
                return outcomes, [{} for _ in raw], raw, None
        x, ages = self._features(symbols, CandidateInfo.from_candidates(warm, previous), bar_ms, _listed_ms(warm))
        scores = self._scores(x)
        production = self.scorer.mode == "production"
        if production and scores is not None:
            young = model_too_young(ages, self.scorer.youngest_listing_bars, len(warm))
            scores = np.where(young, np.nan, scores)  # not taken: journaled as null, never deciding
        outcomes = self.rules.entry(
            x,
            min_heat=min_heat,
            since_last_action_ms=since,
            ml_scores=scores if production else None,
            ml_calibrated=self.scorer.calibrated_min_score,
            ml_youngest_listing=self.scorer.youngest_listing_bars,
            listing_bars=ages,
            checks=keeps,
        )
        return outcomes, self._feature_rows(x, keeps), x.tolist(), scores

    def evaluate_exits(
        self,
        held: Sequence[tuple[str, str]],
        now_ms: int,
        *,
        candidates: Mapping[str, Candidate],
        causes: Mapping[str, int] | None = None,
        opened: Mapping[str, int] | None = None,
    ) -> list[Evaluated]:
        """Exit signals for held (symbol, position trace id) pairs not yet evaluated in this bar.

        Heat comes from the symbol's current candidate if discovery still reports it, else NaN
        (which the heat-decay rule treats as unknown, not as zero).

        Each decision is journaled in the position's trace, caused by the event its exit
        decisions hang off (`opened`: position trace id -> seq of its `open` position_update),
        so the trace stays one tree; the candidate that brought the heat is another trace, so
        its `candidate_snapshot` is named in the payload (`candidate_seq`), not as the cause.
        """
        bar_ms = self.bar_of(now_ms)
        fresh = [(s, t) for s, t in held if self._exits.get(s, bar_ms) is None]
        if not fresh:
            return []
        previous = self._note_ranks([c for s, _ in held if (c := candidates.get(s)) is not None], bar_ms)
        cands = [candidates.get(s) for s, _ in fresh]
        keeps = self.sink.keeps_payloads
        raw = None if keeps else self._block_rows([s for s, _ in fresh], cands, previous, bar_ms)
        if raw is None:
            x, _ = self._features([s for s, _ in fresh], CandidateInfo.from_candidates(cands, previous), bar_ms, _listed_ms(cands))
            rows, raw = self._feature_rows(x, keeps), x.tolist()
        else:
            rows = [{} for _ in raw]
        outcomes = self.rules.exit(raw, checks=keeps)
        out = []
        for i, ((symbol, trace_id), cand) in enumerate(zip(fresh, cands, strict=True)):
            seen = None if causes is None or cand is None else causes.get(cand.trace_id)
            cause = None if opened is None else opened.get(trace_id)
            ev = self._journal(
                trace_id, symbol, now_ms, bar_ms, "exit", outcomes[i], rows[i], raw[i], None, i, cause, candidate_seq=seen
            )
            if _has_last_bar(raw[i]):
                self._exits.put(symbol, bar_ms, ev.signal)
            out.append(ev)
        return out

    def _block_rows(
        self, symbols: Sequence[str], cands: Sequence[Candidate | None], previous: Mapping[str, int], bar_ms: int
    ) -> list[list[float]] | None:
        """`_features(...)[0].tolist()` where each symbol's row is a store's block row
        (`FeaturesAhead.latest_features`, its info added as floats: `with_info_values`) and no
        memo is kept; else None, and `_features` answers. Asked where the sink keeps no payloads
        and no model scores: nobody reads the rows as an array then (the rules read a few values
        of each, a signal its floats), and a held coin is asked every minute, a hot candidate
        every minute it stays hot, where the arrays of `CandidateInfo` and `with_info` cost more
        than the rules."""
        if self._ahead is None or self.memo is not None:
            return None
        regime, latest = self.settings.regime_symbol, self._ahead.latest_features
        out = []
        for symbol, c in zip(symbols, cands, strict=True):
            row = latest(symbol, regime, bar_ms)
            if row is None:  # a listing's window, or not readable yet: `_features` decides
                return None
            out.append(with_info_values(row, None if c is None else info_values(c, previous.get(symbol))))
        return out

    def _cold(self, c: Candidate, now_ms: int, cause: int | None) -> Evaluated:
        """`_journal` of a cold candidate's skip (`evaluate_entries`), where nobody keeps the
        payload and no model scores: most candidates of a replay, each minute, so the one
        thing the tap reads (the decision) is all that is built."""
        seq = self.sink.emit(
            "signal_snapshot", ts_ms=now_ms, payload=_COLD_PAYLOAD, trace_id=c.trace_id, symbol=c.symbol, cause=cause
        )
        signal = Signal(
            trace_id=c.trace_id, symbol=c.symbol, ts_ms=now_ms, decision=SignalDecision.SKIP, reason="failed: heat",
            rules=_COLD_RULES, features={}, ml_score=None,
        )  # fmt: skip
        return Evaluated(signal, seq)

    def _note_ranks(self, candidates: Sequence[Candidate], bar_ms: int) -> dict[str, int]:
        """Note `candidates`' first ranks in `bar_ms` (held symbols too, from the exit side);
        returns each symbol's rank at the first sight of the latest earlier bar it was seen in."""
        for c in candidates:
            seen = self._ranks.get(c.symbol)
            if seen is None or seen[0] != bar_ms:
                if seen is not None:
                    self._prev_ranks[c.symbol] = seen[1]
                self._ranks[c.symbol] = (bar_ms, c.rank)
        return self._prev_ranks

    def _note_rank_columns(self, symbols: Sequence[str], ranks: Sequence[int], bar_ms: int) -> None:
        """`_note_ranks` of a pool read as columns."""
        seen_at, prev = self._ranks, self._prev_ranks
        for symbol, rank in zip(symbols, ranks, strict=True):
            seen = seen_at.get(symbol)
            if seen is None or seen[0] != bar_ms:
                if seen is not None:
                    prev[symbol] = seen[1]
                seen_at[symbol] = (bar_ms, rank)

    @staticmethod
    def _feature_rows(x: FloatArray, keeps: bool) -> list[dict[str, float | None]]:
        """The journal's view of each feature row; empty where the sink keeps no payloads."""
        return feature_dicts(x) if keeps else [{} for _ in range(len(x))]

    def _scores(self, x: FloatArray) -> FloatArray | None:
        if self.scorer.mode == "off":
            return None
        many = getattr(self.scorer, "score_many", None)  # one model call for all candidates (~20x cheaper)
        if many is not None:
            return np.asarray(many(x), np.float64)
        return np.array([self.scorer.score(row) for row in x], np.float64)

    def _journal(
        self,
        trace_id: str,
        symbol: str,
        now_ms: int,
        bar_ms: int,
        stage: str,
        outcome: RuleOutcome,
        features: dict[str, float | None],
        raw: list[float],
        scores: FloatArray | None,
        i: int,
        cause: int | None,
        *,
        candidate_seq: int | None = None,
    ) -> Evaluated:
        score = None if scores is None or np.isnan(scores[i]) else float(scores[i])
        production = self.scorer.mode == "production"
        payload: Mapping[str, Any]
        if self.sink.keeps_payloads:
            full: dict[str, Any] = {
                "decision": outcome.decision.value,
                "reason": outcome.reason,
                "rules": outcome.checks,
                "features": features,
                "ml_score": score if production else None,
                "model": None if self.scorer.mode == "off" else self.scorer.version,  # shadow models too
                "stage": stage,
                "bar_ms": bar_ms,
            }
            if candidate_seq is not None:
                full["candidate_seq"] = candidate_seq
            payload = full
        else:  # only the decision, which the tap remembers per symbol (`Tap.last_signal`)
            payload = _DECISION_PAYLOADS[outcome.decision]
        seq = self.sink.emit(
            "signal_snapshot", ts_ms=now_ms, payload=payload, trace_id=trace_id, symbol=symbol, cause=cause
        )
        if self.scorer.mode == "shadow" and score is not None:
            self.sink.emit(
                "model_shadow",
                ts_ms=now_ms,
                payload={"model": self.scorer.version, "score": score, "decision": outcome.decision.value},
                trace_id=trace_id,
                symbol=symbol,
                cause=seq,
            )
        signal = Signal(
            trace_id=trace_id,
            symbol=symbol,
            ts_ms=now_ms,
            decision=outcome.decision,
            reason=outcome.reason,
            rules=outcome.passed,
            features=dict(zip(FEATURE_NAMES, raw, strict=True)) if raw else {},  # none built for a cold skip
            ml_score=score if production else None,
        )
        return Evaluated(signal, seq)


_BAR_RANGE = FEATURE_NAMES.index("bar_range")
# A cold candidate's skip (`SignalStage._cold`) fails the heat rule alone. Both are read only
# (`Signal.rules` is a Mapping, the payload only the tap reads), so built once.
_COLD_RULES: Mapping[str, bool] = {"heat": False}
_COLD_PAYLOAD: Mapping[str, Any] = {"decision": SignalDecision.SKIP.value}
# The payload of each decision where the sink keeps none (`_journal`): read only, so one each.
_DECISION_PAYLOADS: Mapping[SignalDecision, Mapping[str, Any]] = {d: {"decision": d.value} for d in SignalDecision}


def _listed_ms(candidates: Sequence[Candidate | None]) -> FloatArray:
    """When discovery dated each candidate's listing (its age back from its time), NaN where it
    knows of none (or of no candidate: None)."""
    return np.array(
        [np.nan if c is None or c.coin_age_days is None else c.ts_ms - c.coin_age_days * DAY_MS for c in candidates],
        np.float64,
    )


def _has_last_bar(row: Sequence[float]) -> bool:
    """Whether the bar that just closed was there to decide on (its range is NaN only when it is
    missing). A decision without it (a candle fetch that failed, a candle the exchange had not
    published yet) is not kept for the bar: the next cycle decides again once it has come, where
    keeping it held every feature at NaN, an entry skipped and an exit signal unseen, for a bar."""
    return math.isfinite(row[_BAR_RANGE])
