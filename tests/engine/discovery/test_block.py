"""Batches settled a block at a time (`Discovery.push`) give exactly what `on_batch` gives one by
one: the same cycles, journal events, counters and the state the next batch starts from, through
new symbols, a symbol swept and re-listed, rejected batches, gaps, bad prices, social posts and
listings arriving mid-block, tickers that repeat (a symbol, then the whole market, trading
nothing), and a pump that fills the pool."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import pytest

from engine.config.sections.discovery import (
    AnomalySection,
    DiscoverySection,
    PoolSection,
    WindowsSection,
)
from engine.discovery import Discovery, rolling_robust
from engine.discovery.listings import Announcement
from engine.discovery.pipeline import DiscoveryCycle, Members, SettledRun, _Block
from engine.discovery.social.source import SocialPost
from engine.domain.ticker import TickerBatch, TickerRun
from tests.kit.discovery import TickerFeed
from tests.kit.domain import make_market

MIN = 60_000
SYMBOLS = ["BTC/USDT", "ETH/USDT", "PEPE/USDT", "USDC/USDT", "GHOST/USDT", "SOL/USDT"]


class EventList:
    """An `EventSink` keeping (kind, ts, trace, symbol, payload) per event."""

    def __init__(self, keeps_payloads: bool) -> None:
        self.keeps_payloads = keeps_payloads
        self.events: list[tuple[str, int, str | None, str | None, dict[str, Any]]] = []

    def emit(
        self, kind: str, *, ts_ms: int, payload: Mapping[str, Any], trace_id: str | None = None,
        symbol: str | None = None, cause: int | None = None,
    ) -> int:  # fmt: skip
        self.events.append((kind, ts_ms, trace_id, symbol, dict(payload)))
        return len(self.events)


def minute_config() -> DiscoverySection:
    """The replay's cadence (one batch a minute, baselines every batch), a pool easy to enter."""
    return DiscoverySection(
        windows=WindowsSection(capacity=16, slot_ms=MIN, history_slots=64, volume_bucket_ms=MIN,
                               stale_after_ms=10 * MIN, cleanup_interval_ms=MIN),
        anomaly=AnomalySection(baseline_refresh_batches=1, min_history_slots=10),
        pool=PoolSection(size=3, min_heat=35.0, ttl_ms=4 * MIN, bar_ms=MIN, history_len=4),
    )  # fmt: skip


def scenario() -> list[tuple[str, Any]]:
    """The inputs both ways see, in order: ("batch", TickerBatch) or ("call", fn(discovery))."""
    feed = TickerFeed(SYMBOLS, step_ms=MIN, noise=0.004, seed=11)
    start = feed.ts_ms
    out: list[tuple[str, Any]] = [("call", lambda d: d.on_markets(feed_markets(SYMBOLS), start))]

    def batches(n: int, **overrides: dict[str, float]) -> None:
        for _ in range(n):
            out.append(("batch", feed.batch(**overrides)))

    batches(90)
    for _ in range(8):  # a pump: the pool fills
        feed.prices["PEPE/USDT"] *= 1.035
        feed.rate["PEPE/USDT"] *= 1.6
        batches(1)
    batches(3, last={"ETH/USDT": float("nan")})  # bad prices, counted
    feed.rate["SOL/USDT"] *= 8  # a volume surge
    batches(6)
    out.append(("batch", out[-1][1]))  # a duplicate: rejected
    out.append(("batch", out[-4][1]))  # out of order, from an earlier bar: rejected inside a block
    batches(2)
    posted = feed.ts_ms
    out.append(("call", lambda d: d.on_posts(posts(posted), posted)))
    batches(5)
    ghost = feed.symbols.index("GHOST/USDT")
    feed.symbols.pop(ghost)  # silent past stale_after_ms: swept, its row freed
    batches(14)
    feed.symbols.append("NEW/USDT")  # a listing: a new symbol mid-run
    feed.prices["NEW/USDT"], feed.rate["NEW/USDT"], feed.qv24["NEW/USDT"] = 2.0, feed.rate["BTC/USDT"], 1e6
    listed = feed.ts_ms
    out.append(("call", lambda d: d.on_markets(feed_markets([*SYMBOLS, "NEW/USDT"]), listed)))
    out.append(("call", lambda d: d.on_announcements([Announcement("7", "Binance Will List New (NEW)", listed - MIN, ("NEW",))], listed)))
    batches(20)
    feed.ts_ms += 7 * MIN  # an outage: slots skipped
    batches(10)
    feed.symbols.append("GHOST/USDT")  # back: a row again
    batches(70)
    feed.silent = {"SOL/USDT"}  # SOL trades nothing: its ticker repeats, its 24 h figure drains
    batches(9)
    feed.silent = set(feed.symbols)  # a replayed outage: every ticker repeats, the clock moves on
    batches(75)
    feed.silent = set()
    batches(30)
    for _ in range(6):
        feed.prices["NEW/USDT"] *= 1.05
        batches(1)
    batches(40)
    return out


def feed_markets(symbols: list[str]) -> list[Any]:
    return [make_market(s) for s in symbols]


def posts(ts: int) -> list[SocialPost]:
    return [SocialPost("x", f"p{i}", ts - i * 1000, "kol", 50_000, "$SOL to the moon", ("SOL",)) for i in range(30)]


class Taker:
    """A `RunTaker`: the cycles of the batches settled one by one and of the runs settled at
    once (`SettledRun.cycles`), a run's candidate snapshots journaled as discovery journals
    them (every member of a batch that has any), as the backtest's discovery process counts them."""

    def __init__(self, sink: EventList, cycles: list[DiscoveryCycle]) -> None:
        self.sink, self.cycles, self.runs = sink, cycles, 0

    def __call__(self, cycle: DiscoveryCycle) -> None:
        self.cycles.append(cycle)

    def run(self, run: SettledRun) -> None:
        self.runs += 1
        for cycle, count in zip(run.cycles(), run.events, strict=True):
            members = cycle.snapshot.deferred
            if count:
                assert isinstance(members, Members) and count == len(members.symbols)
                for symbol, trace in zip(members.symbols, members.trace_ids, strict=True):
                    self.sink.emit("candidate_snapshot", ts_ms=cycle.ts_ms, payload={}, trace_id=trace, symbol=symbol)
            self.cycles.append(cycle)


def run(
    keeps_payloads: bool, block: int | None, runs: bool = False, taker: bool = False
) -> tuple[Discovery, EventList, list[DiscoveryCycle]]:
    """The scenario batch by batch (`block` None), pushed a block at a time, or (`runs`) handed
    over as runs of consecutive batches naming the same symbols (`push_run`); to a `Taker`
    (`taker`: runs settled at once handed over as they are) or batch by batch."""
    sink = EventList(keeps_payloads)
    disc = Discovery(minute_config(), sink, run_id="block")
    cycles: list[DiscoveryCycle] = []
    settled: Callable[[DiscoveryCycle], object] = Taker(sink, cycles) if taker else cycles.append
    waiting: list[TickerBatch] = []

    def hand_over() -> None:
        if waiting:
            disc.push_run(run_of(waiting), settled, block or 60)
            waiting.clear()

    for kind, item in scenario():
        if kind == "call":
            hand_over()
            item(disc)
        elif block is None:
            cycles.append(disc.on_batch(item))
        elif runs:
            if waiting and item.symbols != waiting[-1].symbols:
                hand_over()
            waiting.append(item)
        else:
            disc.push(item, settled, block)
    if block is not None:
        hand_over()
        disc.flush(settled)
    if taker:  # runs handed over as they are, unless the sink keeps payloads (then batch by batch)
        assert cast(Taker, settled).runs >= 10 if not keeps_payloads else cast(Taker, settled).runs == 0
    return disc, sink, cycles


def run_of(batches: list[TickerBatch]) -> TickerRun:
    """Batches naming the same symbols as one run, read-only as a tape's."""
    def rows(name: str) -> np.ndarray:
        out = np.stack([getattr(b, name) for b in batches])
        out.setflags(write=False)
        return out

    names = ("event_ms", "last", "bid", "ask", "open_24h", "high_24h", "low_24h", "base_volume_24h",
             "quote_volume_24h", "trade_count_24h")  # fmt: skip
    return TickerRun(np.array([b.ts_ms for b in batches], np.int64), batches[0].symbols, *(rows(n) for n in names))


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def same(a: object, b: object) -> bool:
    """`a == b`, but an unknown (NaN) return in a candidate matches NaN: compared through the
    reprs, which spell every float exactly (and NaN as nan)."""
    return repr(a) == repr(b)


@pytest.mark.parametrize(
    ("block", "payloads", "runs", "taker"),
    [(1, False, False, False), (7, False, False, False), (60, False, False, False), (60, True, False, False),
     (7, False, True, False), (60, True, True, False), (7, False, True, True), (60, False, False, True),
     (60, True, True, True)],
)  # fmt: skip
def test_blocks_settle_exactly_as_batches_one_by_one(
    block: int, payloads: bool, runs: bool, taker: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []  # batches folded at once from runs (`_Block.take_run`)
    real = _Block.take_run

    def counting(self: _Block, discovery: Discovery, batches: TickerRun) -> bool:
        ok = real(self, discovery, batches)
        taken.append(len(batches) if ok else 0)
        return ok

    monkeypatch.setattr(_Block, "take_run", counting)
    one, one_sink, one_cycles = run(payloads, None)
    blk, blk_sink, blk_cycles = run(payloads, block, runs, taker)
    assert not runs or sum(taken) >= 60  # folded from runs at once until the posts (then batch by batch)
    assert len(blk_cycles) == len(one_cycles)
    assert same(blk_cycles, one_cycles)
    assert blk_sink.events == one_sink.events
    assert blk.all_counters() == one.all_counters()
    assert any(c.entered for c in one_cycles)
    assert sum(not c.accepted for c in one_cycles) == 2
    assert one.all_counters()["windows.expired_symbols"] >= 1
    # the state the next batch starts from
    for name in ("ret_median", "ret_sigma", "vol_median", "vol_sigma", "history", "vol_history"):
        assert same_array(getattr(blk.anomaly, name), getattr(one.anomaly, name)), name
    for name in ("_pct_bar", "_pct_prev_bar", "listing_ms", "social_velocity"):
        assert same_array(getattr(blk.ranker, name), getattr(one.ranker, name)), name
    assert blk.ranker._bar == one.ranker._bar
    assert blk.anomaly._cursor == one.anomaly._cursor
    assert same(blk.pool.snapshot(), one.pool.snapshot()) and blk.pool.members == one.pool.members
    assert (blk._bar, blk._emitted, blk._trace_bar, blk._traces) == (one._bar, one._emitted, one._trace_bar, one._traces)
    same_last(blk, one)
    # many batches settle quietly (`Discovery._settle_quiet`: no row at the heat bar, an empty pool)
    assert sum(c.accepted and not c.snapshot.candidates and not c.left for c in one_cycles) >= 30


@pytest.mark.parametrize("block", [60, 120])
def test_runs_settle_the_same_with_and_without_the_compiled_baselines(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A steady run's baselines roll along its timelines in compiled code where it was built
    (`rolling_robust`), else numpy sorts every window: the same cycles, events and state."""
    if rolling_robust.load() is None:
        pytest.skip("the kernel is not built here (test_rolling_robust says why): only the numpy path runs")
    native, native_sink, native_cycles = run(True, block, runs=True)
    monkeypatch.setattr(rolling_robust, "load", lambda: None)
    sorted_, sorted_sink, sorted_cycles = run(True, block, runs=True)
    assert same(native_cycles, sorted_cycles) and native_sink.events == sorted_sink.events
    assert any(c.entered for c in native_cycles)
    for name in ("ret_median", "ret_sigma", "vol_median", "vol_sigma", "history", "vol_history"):
        assert same_array(getattr(native.anomaly, name), getattr(sorted_.anomaly, name)), name
    same_last(native, sorted_)


@pytest.mark.parametrize(
    ("block", "payloads", "runs", "taker"),
    [(60, False, True, False), (60, True, True, False), (7, False, False, False), (120, True, False, False),
     (60, False, True, True), (7, False, False, True)],
)  # fmt: skip
def test_kept_batches_settle_as_the_general_path_settles_them(
    block: int, payloads: bool, runs: bool, taker: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block's batches in which the pool keeps its members (`Discovery._settle_kept`) settle
    as `_settle` settles them one by one: the same cycles, journal, counters, pool (members,
    expiries, heat history) and journal state, through symbols entering, members cooling,
    expiring and leaving (a run goes on past entries and expiries)."""
    kept: list[int] = []
    spanned: list[bool] = []  # a run in which a member expired before its last batch, and somebody entered
    real = Discovery._settle_kept

    def counting(self: Discovery, *args: Any) -> SettledRun | None:
        run = real(self, *args)
        kept.append(0 if run is None else len(run.times))
        spanned.append(run is not None and any(t < len(run.times) - 1 for t in run.left) and bool(run.entered))
        return run

    monkeypatch.setattr(Discovery, "_settle_kept", counting)
    fast, fast_sink, fast_cycles = run(payloads, block, runs, taker)  # `taker`: the runs handed over as they are
    monkeypatch.setattr(Discovery, "_settle_kept", lambda self, *args: None)
    plain, plain_sink, plain_cycles = run(payloads, block, runs)
    assert sum(kept) >= 40 and max(kept) >= 5  # runs of kept batches, settled in one call
    assert any(spanned)
    assert same(fast_cycles, plain_cycles) and fast_sink.events == plain_sink.events
    assert any(c.left for c in fast_cycles) and fast.all_counters() == plain.all_counters()
    assert fast.pool.members == plain.pool.members
    for symbol in fast.pool.members:
        assert fast.pool.history(symbol) == plain.pool.history(symbol)
        assert fast.pool._members[symbol].expires_ms == plain.pool._members[symbol].expires_ms
    assert (fast._bar, fast._emitted, fast._trace_bar, fast._traces, fast._banded) == (
        plain._bar, plain._emitted, plain._trace_bar, plain._traces, plain._banded
    )  # fmt: skip
    same_last(fast, plain)


def same_last(blk: Discovery, one: Discovery) -> None:
    """The frame and scores of the batch settled last, as a reader of discovery sees them."""
    assert blk.last_frame is not None and one.last_frame is not None
    assert blk.last_frame.ts_ms == one.last_frame.ts_ms and same_array(blk.last_frame.heat, one.last_frame.heat)
    for name, part in one.last_frame.parts.items():
        assert same_array(blk.last_frame.parts[name], part), name
    assert blk.last_scores is not None and one.last_scores is not None
    assert blk.last_scores.extent == one.last_scores.extent
    for name in ("price_z", "accel", "volume_z", "volume_surge", "run_up"):
        assert same_array(getattr(blk.last_scores, name), getattr(one.last_scores, name)), name


@pytest.mark.parametrize(("runs", "bar_minutes", "block"), [(False, 1, 60), (True, 1, 60), (True, 2, 60), (True, 1, 120)])
def test_a_block_ending_quietly_reads_as_batches_one_by_one(runs: bool, bar_minutes: int, block: int) -> None:
    """A calm market's batches settle quietly; the last one's frame is built when read, the
    same. Handed over as one run, they are folded a block at a time (a block of 120: more
    batches than the ring's 64 slots, folded at once); with a pool bar of two minutes, a batch
    opening no bar goes alone."""
    feed = TickerFeed(SYMBOLS, step_ms=MIN, seed=2)
    batches = [feed.batch() for _ in range(block + 15)]
    config = minute_config()
    config = config.model_copy(update={"pool": config.pool.model_copy(update={"bar_ms": bar_minutes * MIN})})
    sinks = EventList(False), EventList(False)
    one, blk = (Discovery(config, sink, run_id="block") for sink in sinks)
    for disc in (one, blk):
        disc.on_markets(feed_markets(SYMBOLS), batches[0].ts_ms - MIN)
    one_cycles = [one.on_batch(b) for b in batches]
    blk_cycles: list[DiscoveryCycle] = []
    if runs:
        blk.push(batches[0], blk_cycles.append, block)  # the symbols' first batch: rows are made
        blk.push_run(run_of(batches[1:]), blk_cycles.append, block)
    else:
        for b in batches:
            blk.push(b, blk_cycles.append, block)
    blk.flush(blk_cycles.append)
    assert same(blk_cycles, one_cycles) and not one.pool.members
    assert sinks[0].events == sinks[1].events and blk.all_counters() == one.all_counters()
    assert (blk._bar, blk._emitted, blk._trace_bar, blk._traces) == (one._bar, one._emitted, one._trace_bar, one._traces)
    assert (blk._social_next_ms, blk._social_dirty) == (one._social_next_ms, one._social_dirty)
    assert blk.ranker._bar == one.ranker._bar
    for name in ("_pct_bar", "_pct_prev_bar"):
        assert same_array(getattr(blk.ranker, name), getattr(one.ranker, name)), name
    assert blk._last_pending is not None or bar_minutes > 1  # not built yet (a quiet last batch of a block)
    same_last(blk, one)


def test_a_block_is_closed_by_what_it_cannot_rank() -> None:
    """A batch naming new symbols settles at once, market info settles the block before it
    applies; the rest wait for the block."""
    disc = Discovery(minute_config(), EventList(False), run_id="block")
    feed = TickerFeed(SYMBOLS, step_ms=MIN, seed=2)
    disc.on_markets(feed_markets(SYMBOLS), feed.ts_ms)
    settled: list[DiscoveryCycle] = []
    disc.push(feed.batch(), settled.append)  # the first batch names new symbols
    assert len(settled) == 1
    for _ in range(5):
        disc.push(feed.batch(), settled.append)
    assert len(settled) == 1  # waiting in the block
    with pytest.raises(RuntimeError, match="flush"):
        disc.on_batch(feed.batch())
    disc.on_markets(feed_markets(SYMBOLS), feed.ts_ms)
    assert len(settled) == 6  # settled before the markets applied
    for _ in range(3):
        disc.push(feed.batch(), settled.append)
    disc.flush(settled.append)
    assert [c.ts_ms for c in settled] == sorted(c.ts_ms for c in settled) and len(settled) == 9


@pytest.mark.parametrize("window_ms", [1000, 60_000, 300_000, 3_600_000])
def test_marking_a_run_of_idle_social_minutes_is_applying_each(window_ms: int) -> None:
    """`_mark_social` leaves an idle social state's clock (and its dirty mark) as `_apply_social`
    minute by minute does, whatever the window's step against the minutes' spacing."""
    config = minute_config()
    config = config.model_copy(update={"social": config.social.model_copy(update={"window_ms": window_ms})})
    rng = np.random.default_rng(5)
    for trial in range(40):
        one, run = Discovery(config, run_id="social"), Discovery(config, run_id="social")
        times = np.cumsum(rng.choice([1000, 30_000, MIN, 3 * MIN], size=int(rng.integers(1, 30)))).tolist()
        start = int(rng.integers(0, 5 * MIN))
        for disc in (one, run):
            disc._social_dirty, disc._social_next_ms = bool(trial % 2), start
        for now in times:
            one._apply_social(now)
        run._mark_social(times)
        assert (run._social_dirty, run._social_next_ms) == (one._social_dirty, one._social_next_ms)


def test_room_is_what_the_open_block_still_takes() -> None:
    disc = Discovery(minute_config(), None, run_id="block")
    feed = TickerFeed(SYMBOLS, step_ms=MIN, seed=2)
    disc.on_markets(feed_markets(SYMBOLS), feed.ts_ms)
    disc.on_batch(feed.batch())
    assert disc.room(60) == 60  # no block open: a new one takes a block's worth
    for k in range(1, 8):
        disc.push(feed.batch(), lambda c: None, 60)
        assert disc.room(60) == 60 - k
    disc.push_run(run_of([feed.batch() for _ in range(disc.room(60))]), lambda c: None, 60)
    assert disc.room(60) == 60  # the run filled the block exactly: settled


def test_a_calm_market_settles_sixty_batches_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a timing: a calm market's batches wait for their block, then settle 60 at a time."""
    sizes: list[int] = []
    real = Discovery.flush

    def counting(self: Discovery, settled: Callable[[DiscoveryCycle], object]) -> None:
        sizes.append(0 if self._block is None else len(self._block))
        real(self, settled)

    disc = Discovery(minute_config(), None, run_id="block")
    feed = TickerFeed(SYMBOLS, step_ms=MIN, seed=2)
    disc.on_markets(feed_markets(SYMBOLS), feed.ts_ms)
    disc.on_batch(feed.batch())
    monkeypatch.setattr(Discovery, "flush", counting)
    for _ in range(120):
        disc.push(feed.batch(), lambda c: None, 60)
    assert [n for n in sizes if n] == [60, 60]


def test_batches_keep_their_own_inputs_in_a_block() -> None:
    """A listing known mid-block raises heat from its own batch on, not before."""
    batches: list[TickerBatch] = []
    feed = TickerFeed(SYMBOLS, step_ms=MIN, seed=5)
    for _ in range(30):
        batches.append(feed.batch())

    def heats(block: int | None) -> list[float]:
        disc = Discovery(minute_config(), None, run_id="block")
        disc.on_markets(feed_markets(SYMBOLS), batches[0].ts_ms - MIN)
        out: list[float] = []

        def freshness(cycle: DiscoveryCycle) -> None:
            assert disc.last_frame is not None and disc.last_frame.ts_ms == cycle.ts_ms
            out.append(float(disc.last_frame.parts["listing_freshness"][disc.windows.index["SOL/USDT"]]))

        disc.on_batch(batches[0])
        for i, b in enumerate(batches[1:]):
            if i == 12:
                # Announced before its first ticker (an announcement after it dates nothing): listed then.
                ann = Announcement("8", "Binance Will List Solana (SOL)", batches[0].ts_ms - MIN, ("SOL",))
                disc.on_announcements([ann], b.ts_ms)
            if block is None:
                freshness(disc.on_batch(b))
            else:
                disc.push(b, freshness, block)
        disc.flush(freshness)
        return out

    one, blk = heats(None), heats(60)
    assert blk == one
    assert one[11] == 0.0 and one[12] > 0.9
