"""Discovery, one call per ticker batch: windows -> anomalies -> heat -> filters -> pool -> events.

Market info, announcements and social posts arrive on their own schedules (`on_markets`,
`on_announcements`, `on_posts`) and change per-symbol inputs; `on_batch` does the per-second
work for all symbols at once and returns a `DiscoveryCycle`.

Journal. A candidate's *decision chain* is one symbol in one journal bar (`pool.bar_ms`): its
`trace_id` is derived from (run id, symbol, bar start), so every event that follows from the
candidate in that bar (signal, risk, orders) shares it, and a backtest replayed twice journals
the same ids. A `candidate_snapshot` is emitted at most once per symbol per bar:
- for a symbol entering the pool (at once, mid-bar or not);
- for every pool member at the first batch of each new bar (re-evaluated on the new bar);
- for a symbol a filter rejects while its heat is >= `pool.min_heat`, so "why not?" has an answer.
With 1 s batches and 60 s bars that is at most pool size + rejected hot symbols per minute,
never thousands per second.

Bad input never raises: rejected batches, bad prices and volumes, malformed, duplicate or
unknown symbols are counted (`counters`) and skipped.
"""

from __future__ import annotations

import math
import types
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config.sections.discovery import DiscoverySection
from engine.discovery.anomaly import AnomalyAlert, AnomalyDetector, AnomalyScores
from engine.discovery.filters import CandidateFilters, FilterCode
from engine.discovery.heat import HeatFrame, HeatRanker
from engine.discovery.listings import Announcement, ListingEvent, ListingMonitor
from engine.discovery.pool import CandidatePool, PoolSnapshot
from engine.discovery.social.source import SocialPost
from engine.discovery.social.velocity import MentionVelocity
from engine.discovery.windows import TickerWindows
from engine.domain.discovery import Candidate
from engine.domain.market import Market
from engine.domain.ticker import IntArray, TickerBatch
from engine.journal.events import EventSink, make_trace_id

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class DiscoveryCycle:
    """The outcome of one batch."""

    ts_ms: int
    accepted: bool  # False: the batch was out of order or a duplicate (counted)
    snapshot: PoolSnapshot
    entered: tuple[str, ...] = ()
    left: tuple[tuple[str, str], ...] = ()
    alerts: tuple[AnomalyAlert, ...] = ()
    events: int = 0


class Discovery:
    """The discovery core: feed it batches, market info, announcements and posts; read the pool."""

    def __init__(
        self,
        cfg: DiscoverySection | None = None,
        sink: EventSink | None = None,
        *,
        quote_asset: str = "USDT",
        run_id: str = "run",
    ) -> None:
        self.cfg = cfg = cfg or DiscoverySection()
        self.sink = sink
        self.quote_asset = quote_asset
        self.run_id = run_id
        self.windows = TickerWindows(cfg.windows)
        self.anomaly = AnomalyDetector(cfg.anomaly, self.windows)
        self.ranker = HeatRanker(cfg.heat, cfg.windows.capacity, cfg.pool.bar_ms)
        self.filters = CandidateFilters(cfg.filters, quote_asset, cfg.windows.capacity)
        self.pool = CandidatePool(cfg.pool)
        self.listings = ListingMonitor(cfg.listings)
        self.social = MentionVelocity(cfg.social)
        self.counters: Counter[str] = Counter()
        self._social_rows: IntArray = np.zeros(0, dtype=np.int64)
        self._social_dirty = False
        self._social_next_ms = 0
        self._bar = -1
        self._emitted: set[str] = set()  # symbols journaled in the current bar
        self._trace_bar = -1
        self._traces: dict[str, str] = {}  # symbol -> trace id in the current bar
        self.last_frame: HeatFrame | None = None
        self.last_scores: AnomalyScores | None = None

    # ------------------------------------------------------------------ slow inputs
    def on_markets(self, markets: Iterable[Market], now_ms: int) -> list[ListingEvent]:
        """A full market-info load: listings, known bases (leveraged tokens), symbol admission."""
        markets = list(markets)
        events = self.listings.update(markets, now_ms)
        self.filters.note_bases(m.symbol for m in markets)
        self.windows.invalidate_mapping()  # symbols refused as unknown may be known now
        for ev in events:
            self._set_listing(ev.symbol)
        return events

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> list[ListingEvent]:
        events = self.listings.note_announcements(announcements, now_ms, self.quote_asset)
        for ev in events:
            self._set_listing(ev.symbol)
        return events

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> int:
        added = self.social.add(posts, now_ms)
        if added:
            self._social_dirty = True
        return added

    def _set_listing(self, symbol: str) -> None:
        row = self.windows.row_of(symbol)
        if row is not None:
            listed = self.listings.listing_ms(symbol)
            self.ranker.listing_ms[row] = np.nan if listed is None else float(listed)

    def _admit(self, symbol: str) -> bool:
        return symbol in self.listings

    # ------------------------------------------------------------------ the batch
    def on_batch(self, batch: TickerBatch) -> DiscoveryCycle:
        now = batch.ts_ms
        w = self.windows
        upd = w.update(batch, self._admit if self.listings.loaded else None)
        if upd is None:
            return DiscoveryCycle(ts_ms=now, accepted=False, snapshot=self.pool.snapshot())
        if len(upd.new_rows):
            self._on_new_rows(upd.new_rows)
        scores = self.anomaly.step(now)
        self._apply_social(now)
        e = scores.extent
        frame = self.ranker.rank(scores, w.active, now)
        age_days = (now - self.ranker.listing_ms[:e]) / DAY_MS
        codes = self.filters.evaluate(w.quote_volume_24h[:e], age_days)
        heat = frame.heat
        hot = heat >= self.cfg.pool.min_heat
        eligible = np.flatnonzero(hot & (codes == 0))
        size = self.cfg.pool.size
        if len(eligible) > size:
            eligible = eligible[np.argpartition(-heat[eligible], size - 1)[:size]]
        symbols = w.symbols
        qualifying = {s for s in (symbols[r] for r in eligible.tolist()) if s is not None}
        rows: dict[str, int] = {s: int(r) for s, r in zip(qualifying, (w.index[s] for s in qualifying), strict=True)}
        rejected: dict[str, str] = {}
        for symbol in self.pool.members:
            row = w.index.get(symbol)
            if row is None or row >= e:
                continue
            code = FilterCode(int(codes[row]))
            if code is not FilterCode.PASS:
                rejected[symbol] = f"filtered: {code.check_name}"
            else:
                rows[symbol] = row
        bar = now // self.cfg.pool.bar_ms
        bar_start = bar * self.cfg.pool.bar_ms
        if bar != self._trace_bar:
            self._trace_bar, self._traces = bar, {}
        heats = {s: float(heat[r]) for s, r in rows.items()}
        change = self.pool.update(
            now, heats, qualifying, rejected,
            lambda s, rank: self._candidate(s, rows[s], rank, now, bar_start, frame, scores),
        )  # fmt: skip
        self.last_frame, self.last_scores = frame, scores
        emitted = self._journal(now, bar, bar_start, change.snapshot, change.entered, frame, scores, codes, hot)
        return DiscoveryCycle(
            ts_ms=now,
            accepted=True,
            snapshot=change.snapshot,
            entered=change.entered,
            left=change.left,
            alerts=scores.alerts,
            events=emitted,
        )

    def _on_new_rows(self, rows: IntArray) -> None:
        self.anomaly.reset_rows(rows)
        self.ranker.reset_rows(rows)
        symbols = self.windows.symbols
        self.filters.note_bases(s for s in (symbols[r] for r in rows.tolist()) if s is not None)
        self.filters.on_new_rows(rows, symbols)
        for row in rows.tolist():
            symbol = symbols[row]
            listed = self.listings.listing_ms(symbol) if symbol is not None else None
            if listed is not None:
                self.ranker.listing_ms[row] = float(listed)
        self._social_dirty = True

    def _apply_social(self, now_ms: int) -> None:
        """Copy social scores into the ranker's arrays when posts arrived or once per window step."""
        if not self._social_dirty and now_ms < self._social_next_ms:
            return
        self._social_dirty = False
        self._social_next_ms = now_ms + max(1000, self.cfg.social.window_ms // 30)
        r = self.ranker
        r.social_velocity[self._social_rows] = 0.0
        r.social_sentiment[self._social_rows] = 0.0
        rows = []
        for base, score in self.social.scores(now_ms).items():
            row = self.windows.row_of(f"{base}/{self.quote_asset}")
            if row is None:
                continue
            r.social_velocity[row] = score.velocity
            r.social_sentiment[row] = score.sentiment
            rows.append(row)
        self._social_rows = np.asarray(rows, dtype=np.int64)

    def trace_id(self, symbol: str, bar_start: int) -> str:
        """The decision-chain id of `symbol` in the bar starting at `bar_start` (cached for the bar)."""
        trace = self._traces.get(symbol) if bar_start // self.cfg.pool.bar_ms == self._trace_bar else None
        if trace is None:
            trace = make_trace_id(self.run_id, symbol, bar_start)
            if bar_start // self.cfg.pool.bar_ms == self._trace_bar:
                self._traces[symbol] = trace
        return trace

    def _candidate(
        self, symbol: str, row: int, rank: int, now: int, bar_start: int, frame: HeatFrame, scores: AnomalyScores
    ) -> Candidate:
        w = self.windows
        listed = self.ranker.listing_ms[row]
        return Candidate(
            trace_id=self.trace_id(symbol, bar_start),
            symbol=symbol,
            ts_ms=now,
            heat=float(frame.heat[row]),
            components=frame.components(row),
            rank=rank,
            price=float(w.last_price[row]),
            quote_volume_24h=_finite(w.quote_volume_24h[row]),
            sources=frame.sources(row),
            coin_age_days=None if listed != listed else max(0.0, (now - float(listed)) / DAY_MS),
            returns=types.MappingProxyType({k: _finite(v[row]) for k, v in scores.returns.items()}),
            volume_surge=_finite(scores.volume_surge[row]),
        )

    # ------------------------------------------------------------------ journal
    def _journal(
        self,
        now: int,
        bar: int,
        bar_start: int,
        snapshot: PoolSnapshot,
        entered: tuple[str, ...],
        frame: HeatFrame,
        scores: AnomalyScores,
        codes: Any,
        hot: Any,
    ) -> int:
        if self.sink is None:
            return 0
        new_bar = bar != self._bar
        if new_bar:
            self._bar = bar
            self._emitted = set()
        emitted = 0
        if new_bar or entered:
            for cand in snapshot.candidates:
                if cand.symbol in self._emitted:
                    continue
                row = self.windows.index[cand.symbol]
                self._emit_candidate(now, cand.symbol, row, cand.trace_id, cand.rank, True, frame, scores)
                emitted += 1
        symbols = self.windows.symbols
        rejected_hot = [
            (row, s)
            for row in np.flatnonzero(hot & (codes != 0)).tolist()
            if (s := symbols[row]) is not None and s not in self._emitted
        ]
        for row, symbol in rejected_hot:
            market_rank = 1 + int(np.count_nonzero(frame.heat > frame.heat[row]))
            trace = self.trace_id(symbol, bar_start)
            self._emit_candidate(now, symbol, row, trace, market_rank, False, frame, scores)
            emitted += 1
        self.counters["candidate_snapshots"] += emitted
        return emitted

    def _emit_candidate(
        self, now: int, symbol: str, row: int, trace: str, rank: int, accepted: bool, frame: HeatFrame, scores: AnomalyScores
    ) -> None:
        assert self.sink is not None
        payload = self._payload(now, symbol, row, rank, accepted, frame, scores) if self.sink.keeps_payloads else {}
        self.sink.emit("candidate_snapshot", ts_ms=now, payload=payload, trace_id=trace, symbol=symbol)
        self._emitted.add(symbol)

    def _payload(
        self, now: int, symbol: str, row: int, rank: int, accepted: bool, frame: HeatFrame, scores: AnomalyScores
    ) -> dict[str, Any]:
        """A `candidate_snapshot` payload: everything "why (not) this coin?" needs afterwards."""
        w = self.windows
        listed = self.ranker.listing_ms[row]
        age = None if listed != listed else max(0.0, (now - float(listed)) / DAY_MS)
        qv = float(w.quote_volume_24h[row])
        payload: dict[str, Any] = {
            "heat": round(float(frame.heat[row]), 4),
            "components": {k: round(float(v[row]), 6) for k, v in frame.parts.items()},
            "rank": rank,
            "price": float(w.last_price[row]),
            "filters": self.filters.explain(symbol, qv, age),
            "accepted": accepted,
            "returns": {k: round(_finite(v[row]), 6) for k, v in scores.returns.items()},
            "price_z": round(float(scores.price_z[row]), 4),
            "volume_z": round(float(scores.volume_z[row]), 4),
            "volume_surge": round(_finite(scores.volume_surge[row]), 4),
            "coin_age_days": None if age is None else round(age, 4),
            "sources": list(frame.sources(row)),
            "quote_volume_24h": qv if qv == qv else None,
            "run_up_60m": round(_finite(scores.run_up[row]), 6),
            "range_24h": round(_finite(w.range_24h(row)), 6),
            "trade_count_24h": int(w.trade_count_24h[row]),
        }
        return payload

    # ------------------------------------------------------------------ reads
    def snapshot(self) -> PoolSnapshot:
        return self.pool.snapshot()

    def all_counters(self) -> dict[str, int]:
        """Every counted reason, prefixed by the part that counted it."""
        out: dict[str, int] = {}
        parts: Mapping[str, Counter[str]] = {
            "windows": self.windows.counters,
            "anomaly": self.anomaly.counters,
            "listings": self.listings.counters,
            "social": self.social.counters,
            "discovery": self.counters,
        }
        for prefix, counter in parts.items():
            for key, value in counter.items():
                out[f"{prefix}.{key}"] = value
        return out


def _finite(x: float | np.floating[Any]) -> float:
    v = float(x)
    return v if math.isfinite(v) else 0.0



