"""TickerWindows: rolling returns and volume, the 24 h counter's quirks, bad input, bounded memory."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np
import pytest

from engine.config.sections.discovery import WindowsSection
from engine.discovery import rolling_robust
from engine.discovery.windows import (
    RETURN_HORIZONS_MIN,
    RingBlock,
    RingState,
    TickerWindows,
    sliding_fmin,
)
from engine.domain.ticker import TickerBatch
from tests.kit.discovery import DAY_MS, TickerFeed
from tests.kit.domain import T0, make_batch

MIN = 60_000


def windows(**kw: object) -> TickerWindows:
    cfg = {"capacity": 16, "slot_ms": 15_000, "history_slots": 256} | kw
    return TickerWindows(WindowsSection(**cfg))


def test_returns_over_each_horizon() -> None:
    w = windows()
    # price = 1 + k/1000 at batch k (one batch per 15 s slot)
    for k in range(300):
        w.update(make_batch({"A/USDT": 1.0 + k / 1000}, ts_ms=T0 + k * 15_000))
    row = w.row_of("A/USDT")
    assert row is not None
    rets = w.state().returns([w.slots_for(m) for m in RETURN_HORIZONS_MIN])[0]
    last = 1.0 + 299 / 1000
    for h, minutes in enumerate(RETURN_HORIZONS_MIN):
        then = 1.0 + (299 - minutes * 4) / 1000
        assert rets[h, row] == pytest.approx(last / then - 1)


def test_run_up_is_rise_from_the_hour_low() -> None:
    w = windows()
    prices = [1.0] * 100 + [0.8] + [1.0] * 100 + [1.2]
    for k, p in enumerate(prices):
        w.update(make_batch({"A/USDT": p}, ts_ms=T0 + k * 15_000))
    assert w.state().run_up()[0, 0] == pytest.approx(1.2 / 0.8 - 1)


def test_volume_from_rolling_24h_diffs_at_a_steady_rate() -> None:
    feed = TickerFeed(["A/USDT"], daily_volume=8.64e7)  # 1,000 quote a second
    w = windows()
    for _ in range(40):
        w.update(feed.batch())
    vol = w.state().recent_volume(MIN // w.slot_ms)[0]  # the last minute's four slots
    assert vol[0] == pytest.approx(60_000.0, rel=1e-6)


def test_daily_reset_of_the_counter_is_not_a_volume_spike() -> None:
    feed = TickerFeed(["A/USDT"])
    w = windows()
    for _ in range(10):
        w.update(feed.batch())
    feed.qv24["A/USDT"] = 1000.0  # the exchange's counter restarts at midnight
    w.update(feed.batch())
    assert w.counters["volume_reset"] == 1
    assert math.isnan(w.volume_ring[0, w.head])  # unknown, never a spike or a negative
    w.update(feed.batch())
    assert 0 < w.volume_ring[0, w.head] < 1e5


def test_a_burst_leaving_the_24h_window_is_not_read_as_silence() -> None:
    """A day after a burst its volume leaves the exchange's window; with the day ring the
    interval volume stays right instead of reading zero (and every later minute as a surge)."""
    w = windows(slot_ms=MIN, volume_bucket_ms=MIN)
    rate = 1000.0  # quote per minute
    minutes = np.full(1440 + 3 * 1440 + 10, rate)  # a day traded before we start watching
    minutes[1440 + 1500] = 1e7  # a burst, after our first day (whose departures are guessed)
    cum = np.concatenate([[0.0], np.cumsum(minutes)])
    for m in range(1, 3 * 1440 + 11):
        qv = cum[1440 + m] - cum[m]
        w.update(make_batch({"A/USDT": 1.0}, ts_ms=T0 + m * MIN, quote_volume_24h={"A/USDT": qv}))
        if m == 1500 + 1440 + 1:  # the burst's minute just left the window
            assert w.volume_ring[0, w.head] == pytest.approx(rate, rel=0.01)
    assert w.volume_ring[0, w.head] == pytest.approx(rate, rel=0.01)


@pytest.mark.parametrize(
    ("value", "counter"),
    [
        pytest.param(float("nan"), "missing_price", id="nan"),
        pytest.param(0.0, "nonpositive_price", id="zero"),
        pytest.param(-1.0, "nonpositive_price", id="negative"),
        pytest.param(float("inf"), "nonfinite_price", id="inf"),
    ],
)
def test_bad_prices_are_counted_and_skipped(value: float, counter: str) -> None:
    feed = TickerFeed(["A/USDT", "B/USDT"], noise=0.0)
    w = windows()
    w.update(feed.batch())
    w.update(feed.batch(last={"A/USDT": value, "B/USDT": 2.2}))
    assert w.counters[counter] == 1
    assert w.last_price[w.index["A/USDT"]] == 1.0  # kept, not overwritten
    assert w.last_price[w.index["B/USDT"]] == 2.2


@pytest.mark.parametrize(
    "value", [pytest.param(float("nan"), id="nan"), pytest.param(-5.0, id="negative"), pytest.param(float("inf"), id="inf")]
)
def test_bad_volumes_are_counted_and_price_still_used(value: float) -> None:
    w = windows()
    w.update(make_batch({"A/USDT": 1.0}, ts_ms=T0))
    w.update(make_batch({"A/USDT": 1.1}, ts_ms=T0 + 1000, quote_volume_24h={"A/USDT": value}))
    assert w.counters["bad_volume"] == 1
    assert w.last_price[0] == 1.1
    assert w.quote_volume_24h[0] == 1e7


@pytest.mark.parametrize(
    ("second_ts", "counter"),
    [pytest.param(T0, "duplicate_batch", id="duplicate"), pytest.param(T0 - 1, "out_of_order_batch", id="out-of-order")],
)
def test_stale_batches_are_rejected_and_counted(second_ts: int, counter: str) -> None:
    w = windows()
    assert w.update(make_batch({"A/USDT": 1.0}, ts_ms=T0)) is not None
    assert w.update(make_batch({"A/USDT": 9.0}, ts_ms=second_ts)) is None
    assert w.counters[counter] == 1
    assert w.last_price[0] == 1.0


@pytest.mark.parametrize(
    ("symbol", "counter"),
    [
        pytest.param("NOSLASH", "malformed_symbol", id="no-slash"),
        pytest.param("A/B/C", "malformed_symbol", id="two-slashes"),
        pytest.param("/USDT", "malformed_symbol", id="empty-base"),
        pytest.param("ZZZ/USDT", "unknown_symbol", id="not-admitted"),
    ],
)
def test_symbols_that_cannot_be_tracked_are_counted(symbol: str, counter: str) -> None:
    w = windows()
    w.update(make_batch({"A/USDT": 1.0, symbol: 1.0}, ts_ms=T0), admit=lambda s: s == "A/USDT")
    assert w.counters[counter] == 1
    assert symbol not in w.index
    assert "A/USDT" in w.index


def test_duplicate_symbol_in_a_batch_counts_once_and_keeps_one_row() -> None:
    w = windows()
    batch = make_batch({"A/USDT": 1.0}, ts_ms=T0)
    from engine.domain.ticker import TickerBatch

    dup = TickerBatch.from_tickers(T0, [*batch.tickers(), *batch.tickers()])
    w.update(dup)
    assert w.counters["duplicate_symbol"] == 1
    assert len(w) == 1


def test_stale_symbols_are_swept_and_rows_reused() -> None:
    w = windows(stale_after_ms=60_000, cleanup_interval_ms=10_000)
    w.update(make_batch({"A/USDT": 1.0, "B/USDT": 1.0}, ts_ms=T0))
    for k in range(1, 10):  # B stops trading
        w.update(make_batch({"A/USDT": 1.0}, ts_ms=T0 + k * 15_000))
    assert "B/USDT" not in w.index
    assert w.counters["expired_symbols"] == 1
    upd = w.update(make_batch({"A/USDT": 1.0, "C/USDT": 5.0}, ts_ms=T0 + 200_000))
    assert upd is not None
    assert w.index["C/USDT"] == 1  # B's row, reused from the free-list
    assert list(upd.new_rows) == [1]
    assert np.isnan(w.price_ring[1]).sum() == w.history_slots - 1  # nothing of B's history survives


def test_a_market_wide_outage_does_not_sweep_everyone() -> None:
    w = windows(stale_after_ms=60_000, cleanup_interval_ms=10_000)
    w.update(make_batch({"A/USDT": 1.0}, ts_ms=T0))
    w.update(make_batch({"A/USDT": 1.0}, ts_ms=T0 + 3 * 3_600_000))
    assert w.counters["expired_symbols"] == 0
    assert "A/USDT" in w.index


def test_capacity_is_fixed_and_overflow_counted() -> None:
    w = windows(capacity=16)
    before = w.memory_bytes()
    prices = {f"S{i}/USDT": 1.0 for i in range(20)}
    for k in range(50):
        w.update(make_batch(prices, ts_ms=T0 + k * 15_000))
    assert len(w) == 16
    assert w.counters["capacity_full"] == 4  # the 4 extra symbols, once (the mapping is cached)
    assert w.memory_bytes() == before


def test_history_window_must_cover_an_hour() -> None:
    with pytest.raises(ValueError, match="60 min"):
        WindowsSection(slot_ms=1000, history_slots=256)


def test_a_day_of_batches_leaves_memory_flat() -> None:
    w = windows(slot_ms=MIN, volume_bucket_ms=MIN, stale_after_ms=10 * MIN, cleanup_interval_ms=MIN)
    before = w.memory_bytes()
    for m in range(1, 1441):  # a new coin every minute, each trading 5 minutes
        syms = {f"N{m - j}/USDT": 1.0 for j in range(5) if m - j > 0}
        w.update(make_batch(syms, ts_ms=T0 + m * MIN))
    assert len(w) <= 16
    assert w.memory_bytes() == before
    assert w.counters["expired_symbols"] > 1400
    assert w.day_ring.shape[1] == DAY_MS // MIN


def _same_windows(a: TickerWindows, b: TickerWindows) -> None:
    for name, value in vars(a).items():
        other = vars(b)[name]
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype and np.array_equal(value, other, equal_nan=True), name
        elif not name.startswith("_cached") and name != "cfg":
            assert value == other, name


def _live_layout(state: RingState) -> list[np.ndarray]:
    """`state`'s arrays with every ring's slots in their live columns (slot % R), whatever
    layout the block kept them in (copies, or windows of a timeline: `RingState.origin`)."""
    r = state.price_ring.shape[2]
    shift = (state.slot - state.heads()) % r  # how far each batch's columns sit from slot % R
    out = []
    for field in dataclasses.fields(state):
        x = getattr(state, field.name)
        if field.name in ("origin", "line_head"):  # where the columns sit: compared through them (`_same_blocks`)
            continue
        if field.name in ("log_return_line", "log1p_volume_line"):  # what a timeline's rings are windows of
            if x is not None:
                ring = state.log_return_ring if field.name == "log_return_line" else state.log1p_volume_ring
                assert ring is not None
                for j in range(len(ring)):
                    assert np.array_equal(x[:, j + 1 : j + 1 + r], ring[j], equal_nan=True)
            continue
        if field.name == "log_return_ring":  # a timeline's: the log price ring's differences, where traded
            if x is not None:
                lp = state.log_price_ring
                assert lp is not None and state.traded_ring is not None
                derived = np.where(state.traded_ring, lp - np.roll(lp, 1, axis=2), np.nan)
                oldest = (state.heads() + 1) % r  # no return of the window
                for j in range(len(x)):
                    keep = np.arange(r) != oldest[j]
                    assert np.array_equal(x[j][:, keep], derived[j][:, keep], equal_nan=True)
            continue
        if x is not None and x.ndim == 3:
            x = np.stack([np.roll(x[j], shift[j], axis=1) for j in range(len(x))])
        out.append(x)
    return out


def _same_blocks(a: RingBlock, b: RingBlock) -> None:
    assert a.count == b.count
    for block in (a, b):  # a head column the block states is every batch's
        state = block.state()
        assert state.line_head is None or (state.heads() == state.line_head).all()
    for x, y in zip(_live_layout(a.state()), _live_layout(b.state()), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
    _same_reads(a.state(), b.state())


def _same_reads(a: RingState, b: RingState) -> None:
    """What scoring reads of two states: equal, whether a state's batches share a head column
    (read as views of it: `RingState.head`) or not (gathered batch by batch)."""
    for read in (
        lambda s: s.returns([1, 5, 15, 60]), lambda s: s.recent_volume(4), lambda s: s.traded_within(3), RingState.run_up,
    ):  # fmt: skip
        x, y = read(a), read(b)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=True)


def _fold(w: TickerWindows, pending: list[TickerBatch], block: RingBlock) -> int:
    """Fold `pending` at once, or one by one where `update_many` refuses; 1 if it refused."""
    refused = bool(pending) and not w.update_many(pending, block)
    for batch in pending if refused else ():
        w.update(batch)
        block.take()
    pending.clear()
    return int(refused)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("size", [60, 150])  # a block shorter than the ring of 64 slots, and one longer
def test_update_many_folds_batches_as_update_does_one_by_one(size: int, native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of steady batches folded at once (their volume estimates in compiled code where it
    was built, `rolling_robust.fold_volume`, or in numpy) leave every array, counter and ring
    copy as `update` and `RingBlock.take` leave them batch by batch: across bucket turns, a day of
    history (the departing volume is read), a counter reset, a surge, a pump, a gap, symbols
    whose tickers repeat (nothing traded: one for two minutes, one for longer than the gap, then
    every symbol for longer than the ring, as through a replayed outage), a new symbol and a bad
    price (refused: nothing changes, the caller folds it alone)."""
    if native and rolling_robust.load() is None:
        pytest.skip("the kernel is not built here (test_rolling_robust says why): only the numpy path runs")
    if not native:
        monkeypatch.setattr(rolling_robust, "load", lambda: None)
    symbols = ["A/USDT", "B/USDT", "C/USDT"]
    feed = TickerFeed(symbols, step_ms=MIN, seed=11)
    one, many = (windows(slot_ms=MIN, history_slots=64) for _ in range(2))
    batches = [feed.batch() for _ in range(1500)]  # a day and more
    feed.qv24["B/USDT"] = 10.0  # the exchange's counter restarts
    feed.rate["C/USDT"] *= 40  # a volume surge
    batches += [feed.batch() for _ in range(50)]
    feed.prices["A/USDT"] *= 1.3
    batches += [feed.batch() for _ in range(20)]
    feed.ts_ms += 30_000  # a batch late within its minute: the next slot still, 90 s after the last
    batches += [feed.batch() for _ in range(30)]
    feed.ts_ms += 7 * MIN  # a gap: the batch after it opens no next slot
    batches += [feed.batch() for _ in range(50)]
    for silent, minutes in (({"C/USDT"}, 2), ({"B/USDT"}, 25), (set(symbols), 70), (set(), 40)):
        feed.silent = silent
        batches += [feed.batch() for _ in range(minutes)]
    batches.append(feed.batch(last={"B/USDT": math.nan}))
    batches += [feed.batch() for _ in range(30)]
    feed.symbols.append("D/USDT")  # a listing: a new row
    feed.prices["D/USDT"], feed.rate["D/USDT"], feed.qv24["D/USDT"] = 3.0, 1.0, 1e5
    batches += [feed.batch() for _ in range(130)]
    feed.symbols.append("E/USDT")  # listed without a volume figure at first
    feed.prices["E/USDT"], feed.rate["E/USDT"], feed.qv24["E/USDT"] = 5.0, 1.0, 1e5
    batches += [feed.batch(quote_volume_24h={"E/USDT": math.nan}) for _ in range(3)]
    first_volume = len(batches)  # E's first volume figure: a block of its own, one batch (below)
    batches += [feed.batch() for _ in range(130)]
    cuts = sorted({*range(0, len(batches), size), first_volume, first_volume + 1, len(batches)})
    refused = views = 0
    for lo, hi in itertools.pairwise(cuts):  # one block each, pushed the way `Discovery.push` does
        block_one, block_many = RingBlock(one, hi - lo), RingBlock(many, hi - lo)
        pending: list[TickerBatch] = []
        for batch in batches[lo:hi]:
            one.update(batch)
            block_one.take()
            if many.steady(batch, pending[-1].ts_ms if pending else many.last_ts_ms):
                pending.append(batch)
            else:
                refused += _fold(many, pending, block_many)
                many.update(batch)
                block_many.take()
        refused += _fold(many, pending, block_many)
        _same_blocks(block_one, block_many)
        _same_windows(one, many)
        views += block_many.state().head() is not None and block_one.state().head() is None
    assert refused >= 1  # the bad price or E's missing volume
    assert views >= 1  # a timeline's columns read as views, the copies' gathered
    assert one.counters["volume_reset"] == 1 and one.counters["missing_price"] == 1 and one.counters["bad_volume"] == 3


def test_update_many_marks_sweeps_as_update_does_however_far_apart() -> None:
    """Batches closer together than the sweep interval mark every other sweep, not each one:
    `update_many` marks the same times as `update` one by one (a replay's minutes, each an
    interval after the one before, mark the last)."""
    for interval in (MIN, 2 * MIN + 1):
        feed_one, feed_many = (TickerFeed(["A/USDT", "B/USDT"], step_ms=MIN, seed=3) for _ in range(2))
        one, many = (windows(slot_ms=MIN, history_slots=64, cleanup_interval_ms=interval) for _ in range(2))
        for _ in range(3):
            one.update(feed_one.batch())
            many.update(feed_many.batch())
        batches = [feed_many.batch() for _ in range(7)]
        block = RingBlock(many, 7)
        assert many.update_many(batches, block)
        for _ in range(7):
            one.update(feed_one.batch())
        assert one._last_cleanup_ms == many._last_cleanup_ms


def test_update_many_refuses_what_is_not_steady_and_changes_nothing() -> None:
    feed = TickerFeed(["A/USDT", "B/USDT"], step_ms=MIN)
    w = windows(slot_ms=MIN, history_slots=64)
    for _ in range(5):
        w.update(feed.batch())
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in vars(w).items()}
    block = RingBlock(w, 4)
    bad = [feed.batch(), feed.batch(quote_volume_24h={"A/USDT": -1.0})]
    feed.ts_ms += MIN
    skipped = [feed.batch()]
    for batches in (bad, skipped, [], [feed.batch() for _ in range(5)]):  # the last: more than the block holds
        assert not w.update_many(batches, block)
        assert block.count == 0
        for k, v in vars(w).items():
            assert np.array_equal(v, before[k], equal_nan=True) if isinstance(v, np.ndarray) else v == before[k], k


@pytest.mark.parametrize("w", [1, 2, 3, 7, 8, 60])
def test_sliding_fmin_is_the_nan_skipping_minimum_of_every_window(w: int) -> None:
    rng = np.random.default_rng(w)
    x = rng.random((5, 90))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[0, :] = np.nan  # every window empty
    x[1, 10:40] = np.nan  # some windows empty
    expected = np.fmin.reduce(np.lib.stride_tricks.sliding_window_view(x, w, axis=1), axis=2)
    np.testing.assert_array_equal(sliding_fmin(x, w), expected)


@pytest.mark.parametrize("opened", [[1, 2, 3], [0, 1, 2, 3, 4], [1, 1, 2, 2, 3], [2, 3], [5, 6, 7], [40, 41], []])
def test_open_buckets_is_open_bucket_in_turn(opened: list[int]) -> None:
    """`_open_buckets` (consecutive buckets in one step) leaves what `_open_bucket` of each
    bucket not open yet, in turn, leaves: gaps and a first bucket go the plain way."""
    feed = TickerFeed(["A/USDT", "B/USDT", "C/USDT"], noise=0.01)
    a = windows(slot_ms=MIN, volume_bucket_ms=MIN, history_slots=64)
    for _ in range(30):
        a.update(feed.batch())
    a.active[1] = False  # an inactive row's column opens NaN
    a.day_ring[:3] = np.arange(3 * a.day_ring.shape[1], dtype=np.float32).reshape(3, -1)
    b = copy.deepcopy(a)
    base = a._bucket
    a._open_buckets([base + k for k in opened])
    for bk in dict.fromkeys(base + k for k in opened):
        if bk != b._bucket:
            b._open_bucket(bk)
    _same_windows(a, b)
