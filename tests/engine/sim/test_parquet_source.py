"""The replayed market: real candles served through the generated market's interface."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config.sections.sim import SimSection
from engine.domain import TickerBatch
from engine.errors import ConfigError, MarketDataError
from engine.sim import parquet_source
from engine.sim.market import open_market
from engine.sim.parquet_source import (
    COLUMNS,
    ParquetMarket,
    SharedDays,
    TableCache,
    _event_times,
    _Grid,
    _running_sums,
    _sliding,
    _tick_exponent,
    read_candles,
)
from engine.sim.rings import WINDOW_MINUTES

M = 60_000
T0 = 1_618_531_200_000  # 2021-04-16 00:00 UTC
G = T0 - 60 * M  # first minute in the files
GAP = range(G + 50 * M, G + 60 * M, M)  # BBB has no candles in these minutes (an outage)
LISTED = G + 120 * M  # NEW's first candle


def candles(n: int, start: float, seed: int) -> np.ndarray:
    """(n, 5) OHLCV rows on a 1e-4 tick, alternating up and down candles."""
    rng = np.random.default_rng(seed)
    close = np.round(start * np.exp(np.cumsum(rng.normal(0, 0.004, n))), 4)
    open_ = np.r_[start, close[:-1]]
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, n)), 4)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, n)), 4)
    return np.column_stack([open_, high, low, close, np.round(rng.uniform(10, 1000, n), 2)])


def write(path: Path, times: np.ndarray, rows: np.ndarray) -> None:
    table = pa.table(
        {
            "timestamp_ms": times.astype(np.int64),
            **{c: rows[:, k] for k, c in enumerate(("open", "high", "low", "close", "volume"))},
        }
    )
    pq.write_table(table, path)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    minutes = np.arange(G, G + 300 * M, M)
    files = {
        "AAA": (minutes, candles(300, 2.5, 1)),
        "BBB": (np.array([t for t in minutes.tolist() if t not in GAP]), candles(290, 0.75, 2)),
        "NEW": (np.arange(LISTED, G + 300 * M, M), candles(180, 1.2, 3)),
    }
    files["NEW"][1][0, 1] = 12.0  # the listing wick: 10x the open
    for base, (times, rows) in files.items():
        write(tmp_path / f"{base}_USDT-1m.parquet", times, rows)
    write(tmp_path / "ZZZ_BTC-1m.parquet", minutes, candles(300, 0.01, 4))  # other quote: ignored
    (tmp_path / "events.csv").write_text(
        "kind,pair,timeframe,low_ms,low,onset_ms,peak_ms,peak,rise_pct,minutes_low_to_peak,listing_ms\n"
        f"major,AAA/USDT,1m,{G + 10 * M},2.0,{G + 15 * M},{G + 40 * M},3.0,50.0,30,\n"
        f"minor,AAA/USDT,1m,{G + 100 * M},2.0,{G + 105 * M},{G + 110 * M},2.4,20.0,10,\n"
        f"major,AAA/USDT,5m,{G + 10 * M},2.0,{G + 15 * M},{G + 40 * M},3.0,50.0,30,\n"
    )
    return files


def replay(tmp_path: Path, start_ms: int = T0, **fields: object) -> ParquetMarket:
    return ParquetMarket(SimSection(data_dir=tmp_path, history_minutes=60, **fields), start_ms)


def test_closed_candles_are_the_files_own(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    m = replay(tmp_path)
    m.advance_to(T0 + 100 * M + 30_000)
    times, rows = data["AAA"]
    got = [c for c in m.klines("AAA/USDT", "1m", limit=1000) if c.closed]
    assert len(got) == 160 and got[0].open_ms == G
    for c in got:
        r = int(np.searchsorted(times, c.open_ms))
        assert (c.open, c.high, c.low, c.close, c.volume) == tuple(rows[r])
    running = m.klines("AAA/USDT", "1m", limit=1)[0]
    assert not running.closed and running.open_ms == T0 + 100 * M


def test_a_pair_lists_at_its_first_candle_with_its_wick(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    m = replay(tmp_path)
    assert list(m.symbols) == ["AAA/USDT", "BBB/USDT"]
    assert [(e.symbol, e.listed_ms) for e in m.listings] == [("NEW/USDT", LISTED)]
    with pytest.raises(MarketDataError, match="not listed yet"):
        m.klines("NEW/USDT", "1m")
    m.advance_to(LISTED - 1)
    assert "NEW/USDT" not in m.tickers().symbols
    m.advance_to(LISTED + 5 * M)
    assert list(m.symbols) == ["AAA/USDT", "BBB/USDT", "NEW/USDT"]
    first = m.klines("NEW/USDT", "1m")[0]
    assert first.open_ms == LISTED and first.high == 12.0 and first.open == data["NEW"][1][0, 0]
    batch = m.tickers()
    assert batch.high_24h[2] == 12.0 and batch.open_24h[2] == first.open
    assert {mk.symbol for mk in m.markets()} == set(m.symbols)


def test_an_outage_prints_no_candle_and_holds_the_price(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    m = replay(tmp_path, start_ms=GAP[0] - 2 * M)
    before = m.tickers()
    m.advance_to(GAP[0] + 30_000)
    held = m.last_price("BBB/USDT")
    assert held == data["BBB"][1][49, 3]  # the close before the outage
    m.advance_to(GAP[-1] + 59_000)
    assert m.last_price("BBB/USDT") == held
    opens = [c.open_ms for c in m.klines("BBB/USDT", "1m", limit=1000)]
    assert not set(GAP) & set(opens)
    after = m.tickers()
    assert after.base_volume_24h[1] == pytest.approx(
        before.base_volume_24h[1] + data["BBB"][1][48:50, 4].sum()
    )
    assert after.base_volume_24h[0] > before.base_volume_24h[0]  # AAA traded on


def test_a_ticker_shows_when_its_pair_last_traded(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Through BBB's outage, and a minute of AAA's with a candle of no volume, the pair's ticker
    keeps the event time of its last trade (discovery reads no volume from it), on both replay
    paths; a running minute that trades shows now."""
    times, rows = data["AAA"]
    rows = rows.copy()
    rows[30, 4] = 0.0  # AAA trades nothing in minute G+30
    write(tmp_path / "AAA_USDT-1m.parquet", times, rows)
    start = G + 20 * M
    rings, ahead = replay(tmp_path, start), replay(tmp_path, start)
    ahead.replay_ahead()
    events = {}
    for t in range(start + M, G + 70 * M, M):
        same_minutes(rings, ahead, range(t, t + M, M))
        events[t] = ahead.tickers().event_ms.tolist()
    assert [events[G + k * M][0] for k in (30, 31, 32)] == [G + 30 * M, G + 30 * M, G + 32 * M]
    assert {events[t][1] for t in range(GAP[0] + M, GAP[-1] + 2 * M, M)} == {GAP[0]}  # the outage's end included
    assert events[GAP[-1] + 2 * M][1] == GAP[-1] + 2 * M  # its first minute after traded
    inside = replay(tmp_path, start)
    inside.advance_to(GAP[3] + 30_000)
    assert inside.tickers().event_ms.tolist() == [GAP[3] + 30_000, GAP[0]]


def test_inside_a_minute_the_price_walks_open_extremes_close(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    _, rows = data["AAA"]
    r = next(
        r for r in range(60, 120) if rows[r, 3] > rows[r, 0]
    )  # an up candle: open, low, high, close
    o, h, lo, c, v = rows[r]
    m = replay(tmp_path, start_ms=G + r * M)
    seen = []
    for second in (0, 10, 20, 40, 59):
        m.advance_to(G + r * M + second * 1000)
        running = m.klines("AAA/USDT", "1m", limit=1)[0]
        seen.append((m.last_price("AAA/USDT"), running.high, running.low, running.volume))
    assert seen[0] == (o, o, o, 0.0)
    assert lo < seen[1][0] < o and seen[1][2] == seen[1][0]
    assert seen[2][0] == pytest.approx(lo) and seen[3][0] == pytest.approx(h)
    assert seen[3][1:3] == (h, lo)
    assert seen[4][3] == pytest.approx(v * 59 / 60)
    assert h > seen[4][0] > c or seen[4][0] == c
    m.advance_to(G + (r + 1) * M)
    closed = m.klines("AAA/USDT", "1m", limit=2)[0]
    assert (closed.open, closed.high, closed.low, closed.close, closed.volume) == (o, h, lo, c, v)


def test_replay_is_a_function_of_time(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    one, many = replay(tmp_path), replay(tmp_path)
    end = T0 + 150 * M + 12_345
    one.advance_to(end)
    rng = np.random.default_rng(1)
    t = T0
    while t < end:
        t = min(end, t + int(rng.integers(1, 900_000)))
        many.advance_to(t)
    a, b = one.tickers(), many.tickers()
    assert a.symbols == b.symbols
    for name in (
        "last",
        "bid",
        "ask",
        "open_24h",
        "high_24h",
        "low_24h",
        "base_volume_24h",
        "quote_volume_24h",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.trade_count_24h == -1).all()  # the files have no trade counts
    for symbol in a.symbols:
        assert one.klines(symbol, "5m") == many.klines(symbol, "5m")


def test_24h_stats_agree_with_klines(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    m = replay(tmp_path)
    m.advance_to(T0 + 200 * M + 45_000)
    batch = m.tickers()
    for i, symbol in enumerate(batch.symbols):
        got = m.klines(
            symbol,
            "1m",
            start_ms=m.now_ms - (WINDOW_MINUTES - 1) * M - 59_999,
            limit=WINDOW_MINUTES,
        )
        assert batch.high_24h[i] == max(c.high for c in got)
        assert batch.low_24h[i] == min(c.low for c in got)
        assert batch.base_volume_24h[i] == pytest.approx(sum(c.volume for c in got), rel=1e-12)
        assert batch.bid[i] < batch.last[i] < batch.ask[i]


def test_ground_truth_comes_from_events_csv(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    (event,) = replay(tmp_path).ground_truth
    assert (event.symbol, event.start_ms, event.peak_ms, event.kind) == (
        "AAA/USDT",
        G + 10 * M,
        G + 40 * M,
        "pump",
    )
    assert event.size == pytest.approx(0.5)


def test_open_market_replays_when_a_data_dir_is_set(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    assert isinstance(open_market(SimSection(data_dir=tmp_path), T0), ParquetMarket)


def test_bad_sources_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \*_USDT-1m\.parquet"):
        replay(tmp_path)
    with pytest.raises(ConfigError, match="data_dir is not set"):
        ParquetMarket(SimSection(), T0)
    rows = candles(5, 1.0, 5)
    rows[3, 2] = -1.0
    write(tmp_path / "BAD_USDT-1m.parquet", np.arange(G, G + 5 * M, M), rows)
    with pytest.raises(MarketDataError, match=r"BAD_USDT-1m\.parquet.*row 3"):
        replay(tmp_path)


@pytest.mark.parametrize(
    ("column", "row", "value", "problem", "named"),
    [
        ("open", 2, float("nan"), "a price is not positive and finite", 2),
        ("close", 4, float("inf"), "a price is not positive and finite", 4),
        ("high", 1, 0.0, "a price is not positive and finite", 1),
        ("volume", 3, float("nan"), "a volume is negative or not finite", 3),
        ("volume", 2, -1.0, "a volume is negative or not finite", 2),
        ("high", 3, 0.5, "a high is below its open or close", 3),
        ("low", 1, 9.0, "a low is above its open or close", 1),
        ("time", 3, G + 2 * M, "timestamps are not strictly increasing", 3),  # the row that steps back
        ("time", 4, G + 4 * M + 1, "a timestamp is not aligned to 1m", 4),
    ],
)
def test_every_bad_candle_is_named_with_its_row(
    tmp_path: Path, column: str, row: int, value: float, problem: str, named: int
) -> None:
    times = np.arange(G, G + 6 * M, M)
    rows = candles(6, 1.0, 5)
    if column == "time":
        times[row] = value
    else:
        rows[row, ("open", "high", "low", "close", "volume").index(column)] = value
    write(tmp_path / "BAD_USDT-1m.parquet", times, rows)
    with pytest.raises(MarketDataError, match=rf"BAD_USDT-1m\.parquet: {problem} \(row {named}\)"):
        replay(tmp_path)


@pytest.mark.shared_data
def test_real_candles_replay_btgs_listing_and_doges_pump(shared_data: Path) -> None:
    morning = T0 + 6 * 3_600_000  # 2021-04-16 06:00 UTC; BTG lists at 07:00, DOGE pumps 13:00-13:44
    m = ParquetMarket(SimSection(data_dir=shared_data), morning)
    assert len(m.symbols) == 33 and "BTG/USDT" not in m.symbols
    assert {e.symbol for e in m.listings} == {"EPS/USDT", "TKO/USDT", "BTG/USDT"}
    assert len(m.ground_truth) == 49  # the labelled 1m majors
    m.advance_to(morning + 65 * M)
    first = m.klines("BTG/USDT", "1m")[0]
    assert first.open_ms == morning + 60 * M and first.high > first.open
    m.advance_to(T0 + 13 * 3_600_000 + 45 * M)
    hour = m.klines("DOGE/USDT", "1h", limit=1)[0]
    assert hour.open_ms == T0 + 13 * 3_600_000 and hour.high == 0.45 and not hour.closed


def _settled(path: Path) -> None:
    """Date the file back past the cache's settling time, as a store file written earlier."""
    old = path.stat().st_mtime_ns - 10 * TableCache.SETTLE_NS
    os.utime(path, ns=(old, old))


def test_table_cache_keeps_settled_files_and_sees_rewrites(tmp_path: Path) -> None:
    cache = TableCache(1 << 20)
    path = tmp_path / "AAA_USDT-1m.parquet"
    write(path, np.arange(G, G + 5 * M, M), candles(5, 1.0, 1))
    fresh = cache.read(path, ["close"])
    assert cache.read(path, ["close"]) is not fresh and cache.bytes == 0  # just written: not kept
    _settled(path)
    kept = cache.read(path, ["close"])
    assert cache.read(path, ["close"]) is kept and cache.bytes == kept.nbytes
    assert cache.read(path, ["open"]) is not kept  # other columns, another entry
    rows = candles(5, 1.0, 1)
    rows[:, 3] *= 2.0  # same size, other closes
    write(path, np.arange(G, G + 5 * M, M), rows)
    _settled(path)  # even dated back: the rewrite has another mtime (and may have another inode)
    again = cache.read(path, ["close"])
    assert again.column("close").to_pylist() == rows[:, 3].tolist()


def test_table_cache_drops_the_least_recently_used_past_its_budget(tmp_path: Path) -> None:
    paths = []
    for i, base in enumerate(("AAA", "BBB", "CCC")):
        paths.append(tmp_path / f"{base}_USDT-1m.parquet")
        write(paths[-1], np.arange(G, G + 50 * M, M), candles(50, 1.0, i))
        _settled(paths[-1])
    one = TableCache(1 << 20).read(paths[0], list(COLUMNS)).nbytes
    cache = TableCache(2 * one)
    a = cache.read(paths[0], list(COLUMNS))
    b = cache.read(paths[1], list(COLUMNS))
    assert cache.read(paths[0], list(COLUMNS)) is a  # AAA used last: BBB goes first
    cache.read(paths[2], list(COLUMNS))
    assert cache.bytes <= 2 * one
    assert cache.read(paths[0], list(COLUMNS)) is a
    assert cache.read(paths[1], list(COLUMNS)) is not b
    with pytest.raises(FileNotFoundError):
        cache.read(tmp_path / "NOPE_USDT-1m.parquet", ["close"])


FIELDS = ("last", "bid", "ask", "open_24h", "high_24h", "low_24h", "base_volume_24h", "quote_volume_24h",
          "trade_count_24h", "event_ms")  # fmt: skip


def same_minutes(rings: ParquetMarket, ahead: ParquetMarket, minutes: range) -> int:
    """Step both markets through `minutes` (epoch ms); every batch and book bit for bit equal,
    the second market's arrays shaped and read-only as a checked batch's are."""
    for t in minutes:
        rings.advance_to(t)
        ahead.advance_to(t)
        a, b = rings.tickers(), ahead.tickers()
        assert (a.ts_ms, a.symbols) == (b.ts_ms, b.symbols)
        for name in FIELDS:
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), (t, name)
            # what `TickerBatch.trusted` (the tape's batches) leaves to the tape: shaped, read-only
            assert y.shape == (len(b.symbols),) and not y.flags.writeable, (t, name)
        for symbol in a.symbols:
            assert rings.book(symbol) == ahead.book(symbol)
        for x, y in zip(rings.books(), ahead.books(), strict=True):
            assert np.array_equal(x, y), t
        assert rings.markets() == ahead.markets()
    return len(minutes)


def test_a_replay_computed_ahead_shows_the_same_minutes(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Through an outage, a listing with its wick, a jump of several minutes and past the files' end."""
    start = G + 20 * M
    rings, ahead = replay(tmp_path, start), replay(tmp_path, start)
    assert same_minutes(rings, ahead, range(start + M, start + 6 * M, M)) == 5
    ahead.replay_ahead()
    same_minutes(rings, ahead, range(start + 6 * M, G + 200 * M, M))
    same_minutes(rings, ahead, range(G + 207 * M, G + 330 * M, M))  # jumps 7 minutes first
    assert "NEW/USDT" in ahead.symbols
    with pytest.raises(MarketDataError, match="history store"):
        ahead.klines("AAA/USDT", "1m")
    with pytest.raises(MarketDataError, match="whole minutes"):
        ahead.advance_to(G + 330 * M + 15_000)


def day_and_more(tmp_path: Path) -> tuple[ParquetMarket, ParquetMarket, int]:
    """1,700 minutes of two pairs (BBB with the outage), replayed twice from minute 200, the
    second computed ahead: (rings, ahead, start)."""
    minutes = np.arange(G, G + 1700 * M, M)
    write(tmp_path / "AAA_USDT-1m.parquet", minutes, candles(1700, 2.5, 5))
    write(tmp_path / "BBB_USDT-1m.parquet", np.array([t for t in minutes.tolist() if t not in GAP]), candles(1690, 0.75, 6))
    start = G + 200 * M
    rings, ahead = replay(tmp_path, start), replay(tmp_path, start)
    ahead.replay_ahead()
    return rings, ahead, start


def test_a_replay_computed_ahead_drops_the_volume_leaving_its_24_hours(tmp_path: Path) -> None:
    """Past a day of files the 24 h sums lose the minutes leaving the window, as the rings' do."""
    rings, ahead, start = day_and_more(tmp_path)
    assert same_minutes(rings, ahead, range(start + M, G + 1720 * M, M)) > 1500


@pytest.mark.shared_data
def test_real_candles_computed_ahead_are_the_rings_own(shared_data: Path) -> None:
    """Two days of the real month, BTG's listing and day boundaries of the tape included."""
    rings, ahead = (ParquetMarket(SimSection(data_dir=shared_data), T0) for _ in range(2))
    ahead.replay_ahead()
    assert same_minutes(rings, ahead, range(T0 + M, T0 + 2 * WINDOW_MINUTES * M + 30 * M, M)) > 2 * WINDOW_MINUTES
    assert "BTG/USDT" in ahead.symbols


def shared_replays(tmp_path: Path, days: int, slots: int) -> tuple[ParquetMarket, ...]:
    """`days` of two pairs (BBB with the outage) from minute 200, replayed three times computed
    ahead: by a tape of its own (`test_a_replay_computed_ahead_drops_the_volume_leaving_its_24_hours`
    holds it to the rings), one that computes its days and shares them (the writer, as a
    backtest's discovery process) and one that takes them (its process always alive)."""
    n = 200 + days * WINDOW_MINUTES
    minutes = np.arange(G, G + n * M, M)
    write(tmp_path / "AAA_USDT-1m.parquet", minutes, candles(n, 2.5, 7))
    write(tmp_path / "BBB_USDT-1m.parquet", np.array([t for t in minutes.tolist() if t not in GAP]), candles(n - 10, 0.75, 8))
    start = G + 200 * M
    alone, writer, reader = (replay(tmp_path, start) for _ in range(3))
    alone.replay_ahead()
    shared = SharedDays(2, slots)
    writer.replay_ahead(shared.writer())
    reader.replay_ahead(shared.reader(lambda: True))
    return alone, writer, reader


def same_batches(want: TickerBatch, got: TickerBatch | list[object], t: int) -> None:
    """A batch (or one sent down a pipe as [ts, symbols, *FIELDS]) equal to `want`, bit for bit."""
    got = got if isinstance(got, list) else [got.ts_ms, got.symbols, *(getattr(got, name) for name in FIELDS)]
    assert got[:2] == [want.ts_ms, want.symbols], t
    for name, y in zip(FIELDS, got[2:], strict=True):
        x = getattr(want, name)
        assert isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y), (t, name)


def test_days_computed_once_and_shared_are_a_tapes_own(tmp_path: Path) -> None:
    """Both sharing tapes show what a tape of its own shows, minute for minute, through four
    days on two slots (each reused), the writer a minute ahead as in a backtest (the taker
    shows a minute only once the writer's result for the minute before has come). Every day
    is shared, the first included."""
    start = G + 200 * M
    end = start + 4 * WINDOW_MINUTES * M
    alone, writer, reader = shared_replays(tmp_path, 4, 2)
    for t in range(start + M, end, M):
        for market in (alone, writer, reader):
            market.advance_to(t)
        want = alone.tickers()
        for got in (writer.tickers(), reader.tickers()):
            same_batches(want, got, t)
            assert all(not getattr(got, name).flags.writeable for name in FIELDS)
        if (t - start) % (WINDOW_MINUTES * M) in (0, M):  # each day's first minute and its neighbour
            same_minutes(alone, reader, range(t, t + M, M))  # books and markets too
    assert reader._tape is not None and reader._tape.link is not None
    days = reader._tape.link.days
    assert days._put == days._taken == 4


def _write_in_child(tmp_path: Path, shared: SharedDays, conn: Connection | None, minutes: range) -> None:
    """A forked process's computing tape, run through `minutes` as fast as it goes: each
    minute's batch back down `conn` (as a backtest's discovery process sends its results)."""
    writer = replay(tmp_path, minutes[0] - M)
    writer.replay_ahead(shared.writer())
    for t in minutes:
        writer.advance_to(t)
        if conn is not None:
            batch = writer.tickers()
            conn.send([batch.ts_ms, batch.symbols, *(getattr(batch, name) for name in FIELDS)])
    if conn is not None:
        conn.close()


def test_days_shared_with_a_forked_process_are_its_own(tmp_path: Path) -> None:
    """Across a real fork, as in a backtest: the computing tape in the child, running ahead,
    and the taker in this process showing a minute only once the child's batch for the minute
    before has come (the order a backtest's pipe gives). Four days on two slots, each reused."""
    start = G + 200 * M
    minutes = range(start + M, start + 4 * WINDOW_MINUTES * M, M)
    alone, _, reader = shared_replays(tmp_path, 4, 2)
    assert reader._tape is not None and reader._tape.link is not None
    ctx = mp.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_write_in_child, args=(tmp_path, reader._tape.link.days, theirs, minutes))
    child.start()
    theirs.close()
    try:
        for t in minutes:
            got = mine.recv()
            reader.advance_to(t)
            alone.advance_to(t)
            want = alone.tickers()
            same_batches(want, got, t)
            same_batches(want, reader.tickers(), t)
    finally:
        child.join(timeout=10)
    assert child.exitcode == 0


def _seqs(days: SharedDays, wanted: list[int]) -> list[int]:
    """The slots' day numbers once they are `wanted` (the writer gets there by itself), or after 10 s."""
    for _ in range(1000):
        if days._heads[:, 0].tolist() == wanted:
            break
        time.sleep(0.01)
    seqs: list[int] = days._heads[:, 0].tolist()
    return seqs


def test_a_writer_ahead_waits_for_free_slots_and_never_overwrites(tmp_path: Path) -> None:
    """A writer running days ahead of the taker fills the slots and then waits: a slot the
    taker has not copied is never written, and each day taken is the one computed."""
    start = G + 200 * M
    minutes = range(start + M, start + 4 * WINDOW_MINUTES * M, M)
    alone, _, reader = shared_replays(tmp_path, 4, 2)
    assert reader._tape is not None and reader._tape.link is not None
    days = reader._tape.link.days
    child = mp.get_context("fork").Process(target=_write_in_child, args=(tmp_path, days, None, minutes))
    child.start()
    try:
        assert _seqs(days, [0, 1]) == [0, 1]
        time.sleep(0.2)
        assert days._heads[:, 0].tolist() == [0, 1]  # it waits for a free slot: day 2 would overwrite day 0
        for day in range(4):
            first = start + (day * WINDOW_MINUTES + 1) * M
            for t in range(first, first + WINDOW_MINUTES * M, M):
                reader.advance_to(t)
                alone.advance_to(t)
                same_batches(alone.tickers(), reader.tickers(), t)
                if t == first and day < 2:  # day taken: its slot alone is written again (the other untaken)
                    want = [day + 2, 1] if day == 0 else [2, 3]
                    assert _seqs(days, want) == want
    finally:
        child.join(timeout=10)
    assert child.exitcode == 0


def test_a_shared_day_that_is_not_the_one_expected_is_refused(tmp_path: Path) -> None:
    """Two tapes that switched on different minutes would show different days: the taker says so."""
    start = G + 200 * M
    _, writer, reader = shared_replays(tmp_path, 2, 2)
    writer.advance_to(start + M)  # computes and shares day 0, from start + M
    late = replay(tmp_path, start + M)
    assert reader._tape is not None and reader._tape.link is not None
    late.replay_ahead(reader._tape.link)  # its day 0 is from start + 2 M
    with pytest.raises(MarketDataError, match="diverged"):
        late.advance_to(start + 2 * M)


def _exit_in_child(tmp_path: Path, shared: SharedDays) -> None:
    """A writer that fails before it computes a day (a discovery process that failed)."""
    os._exit(3)


def test_a_taker_waiting_on_a_writer_that_has_gone_says_so(tmp_path: Path) -> None:
    days = SharedDays(1)
    days.POLL_S = 0.01
    child = mp.get_context("fork").Process(target=_exit_in_child, args=(tmp_path, days))
    child.start()
    with pytest.raises(MarketDataError, match="computing the replay's days has gone"):
        days.take(0, 1, child.is_alive)
    child.join()


def test_a_writer_waiting_on_a_taker_that_has_gone_says_so(tmp_path: Path) -> None:
    """The writer waits for a free slot, checking the process that made the ring (its parent in
    a backtest) still runs; this process made it, so it is not this one's parent."""
    _, writer, _ = shared_replays(tmp_path, 4, 2)
    assert writer._tape is not None and writer._tape.link is not None
    writer._tape.link.days.POLL_S = 0.01
    start = G + 200 * M
    writer.advance_to(start + (WINDOW_MINUTES + 1) * M)  # days 0 and 1 fill both slots
    with pytest.raises(MarketDataError, match="taking the replay's days has gone"):
        writer.advance_to(start + (2 * WINDOW_MINUTES + 1) * M)


def stepped(start: np.ndarray, added: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """A ring's running sums as the rings step them, minute by minute."""
    s, want = start.copy(), np.empty(added.shape)
    for k in range(len(added)):
        s += added[k]
        s -= dropped[k]
        np.maximum(s, 0.0, out=s)
        want[k] = s
    return want


@pytest.mark.parametrize("drying", [(), (0,), (1,), (0, 1)], ids=["none", "base", "quote", "both"])
def test_running_sums_round_and_clamp_as_the_rings_step(drying: tuple[int, ...]) -> None:
    """The tape's two 24 h sums (base volume in float64, quote volume in float32, as the rings
    keep them) in one complex accumulate equal the rings' stepping bit for bit: rounding as the
    window slides, and the clamp at zero when more leaves than is in (a day whose volume dries
    up, so rounding leaves a sum a hair below zero), in either sum or both, the other unharmed."""
    rng = np.random.default_rng(7 + len(drying))
    added, dropped, starts = [], [], np.empty((2, 5))
    for k, dtype in enumerate((np.float64, np.float32)):
        added.append((rng.lognormal(3, 2, (1440, 5)) * (0.0 if k in drying else 1.0)).astype(dtype))
        dropped.append(rng.lognormal(3, 2, (1440, 5)).astype(dtype))
        starts[k] = dropped[k].astype(np.float64).sum(axis=0) * (1.0 - 1e-15)  # what the window held
    steps = np.full((2 * 1440 + 1, 5), np.nan, np.complex128)  # a tape's reused array: whatever it held
    for got in (_running_sums(starts, (added[0], added[1]), (dropped[0], dropped[1])),
                _running_sums(starts, (added[0], added[1]), (dropped[0], dropped[1]), steps)):  # fmt: skip
        for k in range(2):
            want = stepped(starts[k], added[k], dropped[k])
            assert got[k].dtype == np.float64 and np.array_equal(got[k], want), (drying, k)
            assert (k in drying) == bool((want == 0.0).any())


def same_runs(rings: ParquetMarket, ahead: ParquetMarket, start: int, end: int, limits: list[int]) -> list[int]:
    """Take runs from `ahead` (limits in turn) from `start` to `end` and step `rings` through the
    same minutes: every batch of every run bit for bit the rings' (and shaped and read-only),
    `ahead` left at each run's last minute as stepping leaves it. The runs' lengths."""
    lengths: list[int] = []
    t = start
    while t < end:
        run = ahead.run(t, limits[len(lengths) % len(limits)])
        assert run is not None and len(run) >= 1 and int(run.ts_ms[0]) == t
        assert np.array_equal(np.diff(run.ts_ms), np.full(len(run) - 1, M))
        for j, ts in enumerate(run.ts_ms.tolist()):
            rings.advance_to(ts)
            a, b = rings.tickers(), run.batch(j)
            assert (a.ts_ms, a.symbols) == (b.ts_ms, b.symbols)
            for name in FIELDS:
                x, y = getattr(a, name), getattr(b, name)
                assert x.dtype == y.dtype and np.array_equal(x, y), (ts, name)
                assert y.shape == (len(b.symbols),) and not y.flags.writeable, (ts, name)
        assert ahead.now_ms == int(run.ts_ms[-1]) and ahead.tickers().ts_ms == int(run.ts_ms[-1])
        for x, y in zip(rings.books(), ahead.books(), strict=True):
            assert np.array_equal(x, y)
        assert rings.markets() == ahead.markets()
        lengths.append(len(run))
        t = int(run.ts_ms[-1]) + M
    return lengths


def test_a_run_is_the_minutes_one_by_one_cut_at_a_listing(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """`run` hands over minutes at once: the same batches, through the outage, cut just before
    the listing (a run names the same symbols throughout)."""
    start = G + 20 * M
    rings, ahead = replay(tmp_path, start), replay(tmp_path, start)
    assert ahead.run(start + M, 10) is None  # not before `replay_ahead`
    ahead.replay_ahead()
    lengths = same_runs(rings, ahead, start + M, G + 330 * M, [7, 500, 1, 60])
    starts = [start + M + sum(lengths[:i]) * M for i in range(len(lengths))]
    assert LISTED in starts and lengths[:2] == [7, 92]  # the second run stops short of the listing
    assert "NEW/USDT" in ahead.symbols


def test_a_run_ends_with_the_tapes_day(tmp_path: Path) -> None:
    rings, ahead, start = day_and_more(tmp_path)
    lengths = same_runs(rings, ahead, start + M, G + 1720 * M, [100])
    assert max(lengths) == 100 and any(n < 100 for n in lengths[:-1])  # a day's end cut one short


def test_a_pair_whose_candles_end_early_halts_after_its_last_one(
    tmp_path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """OLD's file ends at minute 200 of 300 (a delisting, or a shorter collection). Its last close
    used to be quoted, TRADING, to the end of the data, so exits filled hours later at a price
    that never was; it is BREAK from the minute after its last candle, on both replay paths,
    and a run stops short of the halt (a run's markets do not change inside it)."""
    halt = G + 200 * M
    write(tmp_path / "OLD_USDT-1m.parquet", np.arange(G, halt, M), candles(200, 3.0, 5))
    start = G + 150 * M
    rings, ahead = replay(tmp_path, start), replay(tmp_path, start)
    ahead.replay_ahead()

    def status(market: ParquetMarket) -> str:
        return next(m.status.value for m in market.markets() if m.symbol == "OLD/USDT")

    assert status(rings) == status(ahead) == "TRADING"
    lengths = same_runs(rings, ahead, start + M, G + 290 * M, [500])
    assert start + M + lengths[0] * M == halt  # the first run stops short of the halt
    assert status(rings) == status(ahead) == "BREAK"
    late = replay(tmp_path, G + 250 * M)  # a replay starting after the halt starts halted
    assert status(late) == "BREAK"


@pytest.mark.parametrize("idle_share", [0.0, 0.01, 0.5, 1.0])
def test_event_times_are_the_running_maximum_of_when_each_pair_traded(idle_share: float) -> None:
    """`_event_times` (a running maximum for the pairs with an idle minute only) equals the
    running maximum over every pair, pairs trading throughout, never, and now and then."""
    rng = np.random.default_rng(int(idle_share * 100))
    traded = rng.random((1440, 9)) >= idle_share
    traded[:, 0] = True
    traded[:, 1] = False
    shown_ms = (np.arange(1440, dtype=np.int64) + 1000) * 60_000
    before = rng.integers(0, 1000 * 60_000, 9)
    want = np.maximum.accumulate(np.where(traded, shown_ms[:, None], before[None, :]), axis=0)
    np.testing.assert_array_equal(_event_times(traded, shown_ms, before), want)


@pytest.mark.parametrize(("rows", "w"), [(2878, 1439), (2879, 1439), (5000, 1439), (100, 7), (50, 49), (9, 9), (6, 1)])
def test_sliding_extremes_are_each_window_s(rows: int, w: int) -> None:
    """`_sliding` equals the max / min of every window taken one by one, NaNs included."""
    rng = np.random.default_rng(rows + w)
    a = rng.random((rows, 5))
    a[rng.random(a.shape) < 0.01] = np.nan
    for op, reduce in ((np.maximum, np.max), (np.minimum, np.min)):
        want = np.array([reduce(a[i : i + w], axis=0) for i in range(rows - w + 1)])
        np.testing.assert_array_equal(_sliding(a, w, op), want)


@pytest.mark.parametrize("piece", [7, 60, 1440])
def test_the_grid_holds_prices_through_missing_minutes_as_stepping_would(piece: int) -> None:
    """`_Grid.fill` in pieces of `piece` rows, from before the grid to past its end (pairs with
    every minute copied whole, the others filled), equals the grid built minute by minute: a
    candle where the file has one, else the last close before it (the first open before any)
    and no volume; valid where a candle is. Pairs: whole, listed late, ended early, with an
    outage, and with a single candle."""
    rng = np.random.default_rng(piece)
    minutes, outside = 200, 30
    kept = [np.arange(minutes), np.arange(75, minutes), np.arange(0, 130), np.r_[0:50, 64:minutes], np.array([99])]
    stacked = [(f"P{j}/USDT", G + rows * M, np.abs(rng.normal(1.0, 0.1, (len(rows), 5)))) for j, rows in enumerate(kept)]
    grid = _Grid([(s, ts, tuple(values.T)) for s, ts, values in stacked], G // M)  # a file's columns, as read
    span = range(-outside, minutes + outside)
    want, want_valid = np.zeros((5, len(span), len(kept))), np.zeros((len(span), len(kept)), np.bool_)
    for j, (_, ts, values) in enumerate(stacked):
        rows = dict(zip((ts // M - G // M).tolist(), values, strict=True))
        last = values[0, 0]
        for i, r in enumerate(span):
            if r in rows:
                want[:, i, j], want_valid[i, j] = rows[r], True
                last = rows[r][3]
            else:
                want[:4, i, j] = last
    for i in range(0, len(span), piece):
        length = min(piece, len(span) - i)
        fields, valid = np.full((5, len(kept), length), np.nan), np.ones((len(kept), length), np.bool_)
        grid.fill(span[i], fields, valid)  # pair-major
        np.testing.assert_array_equal(fields, want[:, i : i + length].transpose(0, 2, 1))
        np.testing.assert_array_equal(valid, want_valid[i : i + length].T)


@pytest.mark.parametrize("decimals", [0, 2, 4, 8, 10])
def test_a_pairs_tick_is_the_finest_decimal_of_its_first_prices(decimals: int) -> None:
    """`_tick_exponent` over a file's columns as read: the finest decimal its first 5,000
    rows' prices use (volume aside), at most `MAX_DECIMALS`, as over the rows stacked."""
    rng = np.random.default_rng(decimals)
    values = np.round(rng.uniform(0.5, 2.0, (6000, 5)), min(decimals, 8))
    values[5000:, :4] = 1.0 + 1e-12  # past the sample: not looked at
    values[:, 4] = rng.uniform(0, 1, 6000)  # volume: not a price
    sample = values[:5000, :4].ravel()
    want = next((-d for d in range(9) if np.array_equal(np.round(sample, d), sample)), -8)
    assert _tick_exponent(tuple(values.T)) == want == -min(decimals, 8)


@pytest.mark.parametrize(("head", "rest"), [(2, 5), (5, 2), (0, 8), (8, 0), (3, 3), (10, 1)])
def test_a_pairs_tick_is_that_of_its_whole_sample_not_its_first_prices(head: int, rest: int) -> None:
    """`_tick_exponent` tries decimals from those the first hundred prices need up: the first
    hundred rows on `head` decimals and the rest of the sample on `rest` give the sample's
    finest all the same (at most `MAX_DECIMALS`), as trying every decimal over the rows stacked."""
    rng = np.random.default_rng(head * 10 + rest)
    values = rng.uniform(0.5, 2.0, (5000, 5))
    values[:100] = np.round(values[:100], head)
    values[100:] = np.round(values[100:], rest)
    sample = values[:, :4].ravel()
    want = next((-d for d in range(9) if np.array_equal(np.round(sample, d), sample)), -8)
    assert _tick_exponent(tuple(values.T)) == want == -min(max(head, rest), 8)


def test_a_kept_files_candles_are_checked_once_and_a_bad_or_new_one_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`read_candles` checks a kept table's candles once (`_PASSED`) and reads the same
    candles as when it checks every time; a file not kept (just written) or rewritten is
    checked again, and a bad one fails at every read, with each reader's advice."""
    checked: list[Path] = []
    check = parquet_source._check_candles

    def counting(path: Path, *args: object) -> None:
        checked.append(path)
        check(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(parquet_source, "_check_candles", counting)
    path = tmp_path / "AAA_USDT-1m.parquet"
    rows = candles(5, 1.0, 1)
    write(path, np.arange(G, G + 5 * M, M), rows)
    first = read_candles(path, "1m")
    read_candles(path, "1m")
    assert len(checked) == 2  # just written: not kept, so checked each time
    _settled(path)
    kept = [read_candles(path, "1m") for _ in range(3)]
    assert len(checked) == 3
    with pytest.raises(MarketDataError, match="not aligned to 5m"):  # another timeframe: another verdict
        read_candles(path, "5m")
    for got in kept:
        for a, b in zip(got, first, strict=True):
            np.testing.assert_array_equal(a, b)
    rows[3, 2] = -1.0  # a rewrite with a bad low
    write(path, np.arange(G, G + 5 * M, M), rows)
    _settled(path)
    for fix in ("the market's advice", "the store's advice"):
        with pytest.raises(MarketDataError, match=rf"\(row 3\); {fix}"):
            read_candles(path, "1m", fix=fix)
