"""`StoredBars` (the core's bars read in place from the store) answers every window read as the
`BarHistory` the cycle feeds would: the same bars, NaN in the same places. Two real
`TradingCycle`s over the same replay, one feeding a ring and one following the store, are told
the same symbols each minute (random sets: symbols come and go, stay away longer than a window,
the listing is asked for before it exists, the regime symbol always), across the outage."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engine.backtest.feed import CandleSlicer, HistoryFeed
from engine.backtest.history import HistoryStore, index_history
from engine.backtest.stored_bars import AHEAD, StoredBars
from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.config.sections.trading import SignalSettings
from engine.domain import Bars
from engine.errors import MarketDataError
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.sinks import NullSink
from engine.runtime.cycle import TradingCycle
from engine.runtime.tap import Tap
from engine.signals.bars import BarHistory
from engine.signals.features import (
    WINDOW,
    BarMatrix,
    CandidateInfo,
    FloatArray,
    features_hot_latest,
    with_info,
)
from engine.signals.stage import Evaluated, SignalStage
from engine.sim.parquet_source import ParquetMarket
from tests.engine.backtest.conftest import DAYS_MIN, GAP, LISTING_AT, MIN, T0, minute_config
from tests.engine.signals import market_kit as mk

SYMBOLS = ("BTC/USDT", "ETH/USDT", "PUMP/USDT", "ALT/USDT", "CALM/USDT", "NEW/USDT")
FIELDS = ("open", "high", "low", "close", "volume")


async def _cycle(
    config: HotcoinConfig, store: Path, start: int, *, stored: bool, history: int = 90
) -> tuple[TradingCycle, HistoryFeed]:
    index = index_history(store)
    sim = config.sim.model_copy(update={"data_dir": store, "history_minutes": history})
    slicer = CandleSlicer(index, HistoryStore(store), start - history * MIN, sim.candle_ring_minutes)
    feed = HistoryFeed(ParquetMarket(sim, start), SimClock(start), index, MIN, slicer=slicer, stored_bars=stored)
    broker = PaperBroker(FillModel.from_settings(config.trading.execution))
    cycle = TradingCycle(config, feed, broker, Tap(NullSink(), recent=0), run_id="bars")
    await cycle.begin(await feed.next_batch(), "backtest")
    return cycle, feed


@pytest.mark.parametrize("history", [90, 30], ids=["history", "short-history"])  # windows reaching before the market's first candle
def test_stored_bars_read_as_the_fed_ring(store: Path, history: int) -> None:
    config = minute_config()
    start = T0 + (LISTING_AT - 40) * MIN  # NEW/USDT is asked for before its first candle
    rng = np.random.default_rng(5)

    async def run() -> int:
        fed, fed_feed = await _cycle(config, store, start, stored=False, history=history)
        kept, kept_feed = await _cycle(config, store, start, stored=True, history=history)
        assert fed.core is not None and kept.core is not None
        assert isinstance(fed.core.history, BarHistory) and isinstance(kept.core.history, StoredBars)
        away = {"ETH/USDT": range(LISTING_AT, LISTING_AT + WINDOW + 30)}  # back after more than a window
        compared = 0
        while True:
            batch, same = await fed_feed.next_batch(), await kept_feed.next_batch()
            now = batch.ts_ms
            assert same.ts_ms == now
            minute = (now - T0) // MIN
            if minute >= DAYS_MIN - 1:
                return compared
            await fed.driver.prepare(now)  # market info on the cycle's schedule: the listing appears
            await kept.driver.prepare(now)
            wanted = [s for s in SYMBOLS if rng.random() < 0.5 and minute not in away.get(s, ())]
            cands = [SimpleNamespace(symbol=s) for s in wanted]
            await fed._feed_candles(cands, now)  # type: ignore[arg-type]
            await kept._feed_candles(cands, now)  # type: ignore[arg-type]
            bar = now // MIN * MIN - MIN
            for n in (WINDOW, 7):
                a = fed.core.history.window([*SYMBOLS, "GONE/USDT"], bar, n)
                b = kept.core.history.window([*SYMBOLS, "GONE/USDT"], bar, n)
                for name in FIELDS:
                    assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), (minute, n, name)
                compared += int(np.isfinite(a.close).sum())

    compared = asyncio.run(run())
    assert compared > 50_000  # most of the windows hold bars: the comparison is not of NaNs


def test_the_outage_and_the_listing_read_nan(store: Path) -> None:
    index = index_history(store)
    slicer = CandleSlicer(index, HistoryStore(store), T0, 1500)
    bars = StoredBars(slicer)
    now = T0 + (GAP[1] + 5) * MIN
    bars.follow("PUMP/USDT", now)
    bars.follow("NEW/USDT", T0 + (LISTING_AT - 1) * MIN)  # not listed yet: nothing to follow
    bars.follow("GONE/USDT", now)  # not in the store at all
    w = bars.window(["PUMP/USDT", "NEW/USDT", "GONE/USDT"], now - MIN, 20)
    minutes = (now - MIN) // MIN - np.arange(19, -1, -1) - T0 // MIN
    outage = (minutes >= GAP[0]) & (minutes < GAP[1])
    assert np.isnan(w.close[outage, 0]).all() and np.isfinite(w.close[~outage, 0]).all()
    assert np.isnan(w.close[:, 1:]).all()
    with pytest.raises(MarketDataError, match="deep"):
        bars.window(["PUMP/USDT"], now - MIN, WINDOW + 1)


def test_a_store_core_refuses_fed_bars(store: Path) -> None:
    async def run() -> None:
        cycle, _ = await _cycle(minute_config(), store, T0 + 1500 * MIN, stored=True)
        assert cycle.core is not None
        with pytest.raises(MarketDataError, match="candle store"):
            cycle.core.on_bars(Bars.of("BTC/USDT", "1m", []))

    asyncio.run(run())


def test_latest_features_are_the_window_read_s_bit_for_bit(store: Path) -> None:
    """`latest_features` computes a symbol's next `AHEAD` bars at once, from the store, ahead of
    what the core may read: each answer must be the bits `features_hot_latest` gives over the
    window the core reads at that bar (its symbol alone, the regime beside it), and None where
    that read is not whole (the core may not read the bar yet) or lacks its first bar (the
    listing, the outage). Asked bar after bar, with jumps, through the outage and the listing."""
    index = index_history(store)
    bars = StoredBars(CandleSlicer(index, HistoryStore(store), T0, 1500))
    rng = np.random.default_rng(3)
    info = CandidateInfo.unknown((1,))
    minute, served, declined = LISTING_AT - 30, 0, 0
    while minute < GAP[1] + 3 * AHEAD:
        now = T0 + minute * MIN
        bar = now - MIN
        for symbol in ("BTC/USDT", "PUMP/USDT", "NEW/USDT", "CALM/USDT"):
            if symbol != "CALM/USDT" or minute % 7:  # CALM is left behind now and then
                bars.follow(symbol, now)
        for symbol in ("PUMP/USDT", "NEW/USDT", "CALM/USDT", "BTC/USDT", "GONE/USDT"):
            row = bars.latest_features(symbol, "BTC/USDT", bar)
            both = bars.window([symbol, "BTC/USDT"], bar)
            alone = BarMatrix(*(getattr(both, f)[:, :1] for f in FIELDS))
            if row is None:
                declined += 1
                assert np.isnan(alone.close[0, 0]) or (symbol == "CALM/USDT" and minute % 7 == 0) or symbol == "GONE/USDT"
                continue
            served += 1
            assert with_info([row], info).tobytes() == features_hot_latest(alone, info, both.close[:, 1]).tobytes(), (symbol, minute)
        minute += int(rng.choice([1, 1, 1, 1, 1, 1, 1, 2, 3, AHEAD - 1, AHEAD + 3]))
    assert served > 120 and declined > 20


class _WindowReads:
    """A store seen only through its window reads: the stage computes every row itself."""

    def __init__(self, bars: StoredBars) -> None:
        self.tf_ms = bars.tf_ms
        self.window = bars.window


@pytest.mark.parametrize(
    "listed", ["dated", "undated", "dated-too-early"], ids=["listing", "no-date", "not-a-listing"]
)  # discovery's date of NEW/USDT's listing: its first candle's minute, none, ten minutes before its first bar
def test_windows_without_a_first_bar_are_served_from_the_blocks_as_the_stage_computes_them(
    store: Path, listed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window that lacks its first bar (the listing, the outage) is served from the store's
    blocks (`listing_features`): the rows and listing ages (None, NaN or a count) are the bits
    the stage's own window read gives (`_compute`, `Listings.in_window`), the listing asked
    alone and beside a symbol the outage cut."""
    index = index_history(store)
    bars = StoredBars(CandleSlicer(index, HistoryStore(store), T0, 1500))
    ahead = SignalStage(SignalSettings(), bars, NullSink())
    plain = SignalStage(SignalSettings(), _WindowReads(bars), NullSink())  # type: ignore[arg-type]
    computed: list[int] = []  # the bars the stage computed itself
    compute = ahead._compute

    def spy(symbols: Sequence[str], info: CandidateInfo, bar: int, dates: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        computed.append(bar)
        return compute(symbols, info, bar, dates)

    monkeypatch.setattr(ahead, "_compute", spy)
    listed_ms = {"dated": T0 + LISTING_AT * MIN + 17_000, "undated": np.nan, "dated-too-early": T0 + (LISTING_AT - 10) * MIN}[listed]
    aged = 0
    for minute in range(LISTING_AT - 3, GAP[1] + WINDOW + 3):
        now = T0 + minute * MIN
        for symbol in ("BTC/USDT", "NEW/USDT", "PUMP/USDT"):
            bars.follow(symbol, now)
        symbols = ["NEW/USDT", "PUMP/USDT"][: 1 + minute % 2]
        info = CandidateInfo.unknown((len(symbols),))
        dates = np.array([listed_ms, np.nan][: len(symbols)])
        want = plain._features(symbols, info, now - MIN, dates)
        got = ahead._features(symbols, info, now - MIN, dates)
        assert got[0].tobytes() == want[0].tobytes(), minute
        assert (got[1] is None) == (want[1] is None), minute
        if got[1] is not None and want[1] is not None:
            assert np.array_equal(got[1], want[1], equal_nan=True), minute
            aged += bool(np.isfinite(got[1]).any())
    assert computed and max(computed) < T0 + LISTING_AT * MIN  # only before NEW/USDT's first bar, which no block holds
    assert aged > 0 if listed == "dated" else aged == 0


class _Decisions:
    """A journal-off sink (no payloads kept) that numbers and keeps each event's address."""

    keeps_payloads = False

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str | None, str | None, int | None]] = []

    def emit(self, kind: str, *, ts_ms: int, payload: object, trace_id: str | None = None, symbol: str | None = None,
             cause: int | None = None) -> int:  # fmt: skip
        self.events.append((kind, ts_ms, trace_id, symbol, cause))
        return len(self.events)


def test_held_and_hot_coins_decided_from_the_blocks_rows_as_from_the_feature_matrix(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the journal off and no model, a held coin's exit and a hot candidate's entry read
    its block row as floats with its info added (`SignalStage._block_rows`): every signal
    (decision, reason, rules, features, seq), the journal and the bar's caches are what the
    stage's feature matrix gives (`_features`), held coins with and without a candidate, ranks
    that move, a cool-down, across the listing (whose rows the matrix serves) and the outage."""
    index = index_history(store)
    bars = StoredBars(CandleSlicer(index, HistoryStore(store), T0, 1500))
    lean_sink, plain_sink = _Decisions(), _Decisions()
    lean, plain = SignalStage(SignalSettings(), bars, lean_sink), SignalStage(SignalSettings(), bars, plain_sink)
    monkeypatch.setattr(plain, "_block_rows", lambda *args: None)
    rows = lean._block_rows
    served: list[bool] = []

    def spy(*args: Any) -> list[list[float]] | None:
        got = rows(*args)
        served.append(got is not None)
        return got

    monkeypatch.setattr(lean, "_block_rows", spy)
    held = [("NEW/USDT", "t-new"), ("PUMP/USDT", "t-pump"), ("CALM/USDT", "t-calm")]
    decided: set[str] = set()
    for minute in range(LISTING_AT - 3, GAP[1] + WINDOW + 3):
        now = T0 + minute * MIN
        for symbol in ("BTC/USDT", "NEW/USDT", "PUMP/USDT", "CALM/USDT", "ALT/USDT"):
            bars.follow(symbol, now)
        # heats around the exit bar, ranks that move, and CALM/USDT's candidate only some minutes
        names = ["PUMP/USDT", "NEW/USDT", "CALM/USDT"][: 2 + minute % 2]
        cands = {c.symbol: c for c in mk.candidates(names, now, heat=20.0 + minute % 50)}
        causes, opened = {c.trace_id: minute for c in cands.values()}, {"t-new": 1, "t-pump": 2}
        asked = held[: 1 + minute % 3]
        got = lean.evaluate_exits(asked, now, candidates=cands, causes=causes, opened=opened)
        want = plain.evaluate_exits(asked, now, candidates=cands, causes=causes, opened=opened)
        assert [_signal(e) for e in got] == [_signal(e) for e in want], minute
        assert lean_sink.events == plain_sink.events
        fresh = mk.candidates(["ALT/USDT", "PUMP/USDT", "NEW/USDT"][minute % 2 :], now, heat=55.0 + minute % 30)
        last = {"PUMP/USDT": now - 2 * MIN} if minute % 5 == 0 else {}
        got = lean.evaluate_entries(fresh, now, min_heat=60.0, last_action_ms=last, causes=causes)
        want = plain.evaluate_entries(fresh, now, min_heat=60.0, last_action_ms=last, causes=causes)
        assert [_signal(e) for e in got] == [_signal(e) for e in want], minute
        assert lean_sink.events == plain_sink.events
        decided.update(e.signal.reason for e in got)
        assert [lean._entries.get(c.symbol, now - MIN) for c in fresh] == [plain._entries.get(c.symbol, now - MIN) for c in fresh]
        kept = [(lean._exits.get(s, now - MIN), plain._exits.get(s, now - MIN)) for s, _ in held]
        assert [None if a is None else _signal(Evaluated(a, 0)) for a, _ in kept] == [None if b is None else _signal(Evaluated(b, 0)) for _, b in kept]
    assert {"all entry rules passed", "failed: heat", "failed: cooldown"} < decided  # entered, cold, cooling down, and more
    assert sum(served) > 400 and not all(served)  # most from the blocks; the listing's first hour from `_features`


def _signal(e: Evaluated) -> tuple[object, ...]:
    """An evaluation, its features' NaN as None (NaN is unequal to itself)."""
    s = e.signal
    features = {k: None if v != v else v for k, v in s.features.items()}
    return e.seq, s.trace_id, s.symbol, s.ts_ms, s.decision, s.reason, dict(s.rules), features, s.ml_score
