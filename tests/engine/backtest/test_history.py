"""The history store: naming, checks that name the bad row, resumable appends, gaps kept as
gaps (no synthetic candles), staleness through an outage, listings that start late."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.backtest.history import (
    HistoryStore,
    _open_times,
    file_name,
    index_history,
    sorted_union,
    symbol_of,
)
from engine.domain import Candle
from engine.errors import MarketDataError
from tests.engine.backtest.conftest import GAP, LISTING_AT, MIN, T0


def _candle(i: int, price: float = 1.0, *, closed: bool = True) -> Candle:
    return Candle("DOGE/USDT", "1m", T0 + i * MIN, price, price * 1.01, price * 0.99, price, 10.0, closed)


@pytest.mark.parametrize(
    ("symbol", "tf", "name"),
    [("DOGE/USDT", "1m", "DOGE_USDT-1m.parquet"), ("1INCH/BTC", "5m", "1INCH_BTC-5m.parquet")],
    ids=["doge", "digit-base"],
)
def test_file_names_round_trip(symbol: str, tf: str, name: str) -> None:
    assert file_name(symbol, tf) == name
    assert symbol_of(Path(name)) == (symbol, tf)


def test_bad_symbol_is_refused_with_the_fix() -> None:
    with pytest.raises(MarketDataError, match="BASE/QUOTE"):
        file_name("DOGEUSDT", "1m")


def test_append_resumes_after_the_last_stored_candle(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    assert store.append("DOGE/USDT", "1m", [_candle(i) for i in range(5)]) == 5
    # a resumed download re-fetches an overlapping page, and the running candle is not stored
    again = [_candle(i, 2.0) for i in range(3, 8)] + [_candle(8, closed=False)]
    assert store.append("DOGE/USDT", "1m", again) == 3
    s = store.read("DOGE/USDT", "1m")
    assert s.ts.tolist() == [T0 + i * MIN for i in range(8)]
    assert s.close.tolist() == [1.0] * 5 + [2.0] * 3  # stored candles are never rewritten
    assert store.last_ms("DOGE/USDT", "1m") == T0 + 7 * MIN
    assert not list(tmp_path.glob("*.tmp"))


def test_misaligned_candle_is_refused(tmp_path: Path) -> None:
    bad = Candle("DOGE/USDT", "1m", T0 + 30_000, 1.0, 1.0, 1.0, 1.0, 1.0, True)
    with pytest.raises(MarketDataError, match="not aligned"):
        HistoryStore(tmp_path).append("DOGE/USDT", "1m", [bad])


@pytest.mark.parametrize(
    ("column", "row", "value", "message"),
    [
        ("close", 2, -1.0, "not positive"),
        ("high", 1, 0.5, "high is below"),
        ("volume", 3, -5.0, "volume is negative"),
        ("timestamp_ms", 2, T0, "not strictly increasing"),
    ],
    ids=["negative-price", "high-below", "negative-volume", "duplicate-time"],
)
def test_bad_file_names_file_and_row(tmp_path: Path, column: str, row: int, value: float, message: str) -> None:
    cols = {
        "timestamp_ms": np.arange(5, dtype=np.int64) * MIN + T0,
        "open": np.ones(5), "high": np.ones(5) * 1.1, "low": np.ones(5) * 0.9, "close": np.ones(5), "volume": np.ones(5),
    }  # fmt: skip
    cols[column] = cols[column].copy()
    cols[column][row] = value
    path = tmp_path / "DOGE_USDT-1m.parquet"
    pq.write_table(pa.table(cols), path)
    with pytest.raises(MarketDataError, match=rf"DOGE_USDT-1m\.parquet: .*{message}.*\(row {row}\)"):
        HistoryStore(tmp_path).read("DOGE/USDT", "1m")


def _stored_file(path: Path, change: dict[str, np.ndarray | None]) -> None:
    """Five good candles with `change` applied (None: the column left out)."""
    cols: dict[str, np.ndarray | None] = {
        "timestamp_ms": np.arange(5, dtype=np.int64) * MIN + T0,
        "open": np.ones(5), "high": np.ones(5) * 1.1, "low": np.ones(5) * 0.9, "close": np.ones(5), "volume": np.ones(5),
    }  # fmt: skip
    cols.update(change)
    pq.write_table(pa.table({c: v for c, v in cols.items() if v is not None}), path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"volume": None}, r"cannot read columns .*volume", id="missing-column"),
        pytest.param({"timestamp_ms": np.array([0, 2, 1, 3, 4]) * MIN + T0}, r"timestamps are not strictly increasing \(row 2\)", id="unordered"),
        pytest.param({"close": np.array([1.0, np.nan, 1.0, 1.0, 1.0])}, r"a price is not positive and finite \(row 1\)", id="nan-price"),
    ],
)
def test_append_to_a_stored_file_it_cannot_trust_names_it_and_the_fix(
    tmp_path: Path, change: dict[str, np.ndarray | None], problem: str
) -> None:
    """`collect` into a store holding such a file crashed with pyarrow's "Target schema's field
    names are not matching", said "duplicate or unordered candles" without the file, or added to
    a NaN price; now it names the file and says to move it away or delete it, and leaves it be."""
    path = tmp_path / "DOGE_USDT-1m.parquet"
    _stored_file(path, change)
    before = path.read_bytes()
    store = HistoryStore(tmp_path)
    fix = rf"; move it out of {tmp_path} or delete it, and collect downloads DOGE/USDT afresh$"
    with pytest.raises(MarketDataError, match=rf"^{path}: {problem}.*{fix}"):
        store.append("DOGE/USDT", "1m", [_candle(i) for i in range(5, 8)])
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))
    path.unlink()  # the fix the message gives
    assert store.append("DOGE/USDT", "1m", [_candle(i) for i in range(5, 8)]) == 3


def test_a_damaged_file_gives_the_backtest_the_fix_that_collect_accepts(tmp_path: Path) -> None:
    """A file cut short (a copy or a download interrupted): the backtest's index said "re-collect
    it", and `collect` then refused that very file; both now give the same fix, and it works."""
    path = tmp_path / "DOGE_USDT-1m.parquet"
    _stored_file(path, {})
    path.write_bytes(path.read_bytes()[:200])
    fix = f"; move it out of {tmp_path} or delete it, and collect downloads DOGE/USDT afresh"
    with pytest.raises(MarketDataError, match=rf"^{path}: cannot read its timestamp_ms column \(.*\){fix}$"):
        index_history(tmp_path)  # what `hotcoin backtest` reads first
    with pytest.raises(MarketDataError, match=rf"^{path}: cannot read columns .*{fix}$"):
        HistoryStore(tmp_path).append("DOGE/USDT", "1m", [_candle(0)])  # what `hotcoin collect` does
    path.unlink()
    assert HistoryStore(tmp_path).append("DOGE/USDT", "1m", [_candle(0)]) == 1


def test_candles_to_add_twice_name_the_file_and_write_nothing(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    store.append("DOGE/USDT", "1m", [_candle(i) for i in range(3)])
    with pytest.raises(MarketDataError, match=rf"two candles to add open at {T0 + 4 * MIN}; nothing written, .*DOGE_USDT-1m\.parquet keeps"):
        store.append("DOGE/USDT", "1m", [_candle(4), _candle(3), _candle(4, 2.0)])
    assert len(store.read("DOGE/USDT", "1m")) == 3


def test_empty_directory_says_how_to_fill_it(tmp_path: Path) -> None:
    with pytest.raises(MarketDataError, match=r"holds no \*_USDT-1m\.parquet files; run `hotcoin collect"):
        index_history(tmp_path)
    with pytest.raises(MarketDataError, match=rf"^{tmp_path / 'nodir'} does not exist; check the path, or fill it with `hotcoin collect"):
        index_history(tmp_path / "nodir")  # used to read "nodir holds no *_USDT-1m.parquet files"
    (tmp_path / "candles.csv").write_text("not a store")
    with pytest.raises(MarketDataError, match=r"candles\.csv is a file; --data takes the directory"):
        index_history(tmp_path / "candles.csv")


def test_gaps_are_kept_and_the_clock_sees_them_go_stale(store: Path) -> None:
    index = index_history(store)
    series = HistoryStore(store).read("BTC/USDT", "1m")
    assert series.gaps() == [(T0 + GAP[0] * MIN, GAP[1] - GAP[0])]  # no synthetic candles
    gap_start = T0 + GAP[0] * MIN  # the last candle before the gap closes here
    assert index.data_age_s(gap_start) == 0.0
    assert index.data_age_s(gap_start + 5 * MIN) == 300.0
    assert index.data_age_s(T0 + (GAP[1] + 1) * MIN) == 0.0  # first candle after it has closed


@pytest.mark.parametrize(
    ("window", "found"),
    [
        pytest.param((0, 10_000), True, id="across-it"),
        pytest.param((GAP[0] + 3, GAP[1] - 3), True, id="inside-it"),
        pytest.param((GAP[0] - 30, GAP[0] + 1), True, id="ending-in-it"),
        pytest.param((GAP[1] - 1, GAP[1] + 30), True, id="starting-in-it"),
        pytest.param((GAP[0] - 30, GAP[0]), False, id="ending-as-it-starts"),
        pytest.param((GAP[1], GAP[1] + 30), False, id="starting-as-it-ends"),
    ],
)
def test_outages_overlapping_a_window_are_found_whole(store: Path, window: tuple[int, int], found: bool) -> None:
    """The minutes without a candle for any pair that a window's candles [start, end) would
    have, each as the whole outage (first missing minute, the minute data returns)."""
    index = index_history(store)
    outage = (T0 + GAP[0] * MIN, T0 + GAP[1] * MIN)
    assert index.outages(T0 + window[0] * MIN, T0 + window[1] * MIN) == ([outage] if found else [])


def test_listing_starts_mid_window(store: Path) -> None:
    index = index_history(store)
    assert index.listed_after_start() == {"NEW/USDT": T0 + LISTING_AT * MIN}
    assert index.first_ms["BTC/USDT"] == T0


def test_shared_data_is_a_valid_store(shared_data: Path) -> None:
    index = index_history(shared_data)
    assert len(index.symbols) == 34
    assert index.rows == 1_327_027
    assert set(index.listed_after_start()) == {"EPS/USDT", "TKO/USDT", "BTG/USDT"}
    assert index.data_age_s(1618884000000 + 60 * MIN) == 3600.0  # 2021-04-20 02:00 outage, an hour in


def test_the_index_read_side_by_side_is_the_one_read_file_by_file(store: Path) -> None:
    """`index_history` decodes the files on a thread per core: the same open times, bounds and
    union as reading them one after another."""
    index = index_history(store)
    files = HistoryStore(store)
    one_by_one = {s: _open_times(files.path(s, "1m"), s, whole=True) for s in files.symbols("1m", "USDT")}
    assert index.symbols == tuple(one_by_one)
    for s, ts in one_by_one.items():
        assert np.array_equal(index.opens[s], ts)
        assert (index.first_ms[s], index.last_ms[s]) == (int(ts[0]), int(ts[-1]))
    assert index.rows == sum(len(ts) for ts in one_by_one.values())
    assert np.array_equal(index.data_opens, np.unique(np.concatenate(list(one_by_one.values()))))


def test_the_first_bad_file_in_order_is_the_one_named(tmp_path: Path) -> None:
    """Read side by side, the files still fail in their order: an empty file before a damaged
    one is the error, as when they were read one by one."""
    _stored_file(tmp_path / "AAA_USDT-1m.parquet", {})
    prices = {c: pa.array([], pa.float64()) for c in ("open", "high", "low", "close", "volume")}
    pq.write_table(pa.table({"timestamp_ms": pa.array([], pa.int64()), **prices}), tmp_path / "BBB_USDT-1m.parquet")
    _stored_file(tmp_path / "CCC_USDT-1m.parquet", {})
    (tmp_path / "CCC_USDT-1m.parquet").write_bytes((tmp_path / "CCC_USDT-1m.parquet").read_bytes()[:200])
    with pytest.raises(MarketDataError, match=r"BBB_USDT-1m\.parquet: no candles"):
        index_history(tmp_path)
    (tmp_path / "BBB_USDT-1m.parquet").unlink()
    with pytest.raises(MarketDataError, match=r"CCC_USDT-1m\.parquet: cannot read its timestamp_ms column"):
        index_history(tmp_path)


def test_candles_between_counts_every_pair_exactly(store: Path) -> None:
    index = index_history(store)
    total = sum(len(HistoryStore(store).read(s, "1m")) for s in index.symbols)
    assert index.candles_between(T0, T0 + 10_000 * MIN) == total == index.rows
    # the hour around NEW's listing: 5 pairs x 60 minutes + NEW's first 30
    assert index.candles_between(T0 + (LISTING_AT - 30) * MIN, T0 + (LISTING_AT + 30) * MIN) == 5 * 60 + 30
    assert index.candles_between(T0 + GAP[0] * MIN, T0 + GAP[1] * MIN) == 0


def _write(path: Path, **overrides: pa.Array) -> None:
    n = 4
    cols: dict[str, pa.Array] = {
        "timestamp_ms": pa.array(np.arange(n, dtype=np.int64) * MIN + T0),
        "open": pa.array(np.ones(n)), "high": pa.array(np.ones(n) * 1.1), "low": pa.array(np.ones(n) * 0.9),
        "close": pa.array(np.ones(n)), "volume": pa.array(np.ones(n)),
    }  # fmt: skip
    cols.update(overrides)
    pq.write_table(pa.table(cols), path)


def test_missing_values_are_refused_with_the_file_named(tmp_path: Path) -> None:
    """A null price reads as NaN and fails the price check at its row; a null open time, or a
    file without the column, cannot be indexed at all and says so."""
    _write(tmp_path / "DOGE_USDT-1m.parquet", close=pa.array([1.0, None, 1.0, 1.0], pa.float64()))
    with pytest.raises(MarketDataError, match=r"DOGE_USDT-1m\.parquet: .*not positive and finite.*\(row 1\)"):
        HistoryStore(tmp_path).read("DOGE/USDT", "1m")
    _write(tmp_path / "DOGE_USDT-1m.parquet", timestamp_ms=pa.array([T0, None, T0 + 2 * MIN, T0 + 3 * MIN], pa.int64()))
    with pytest.raises(MarketDataError, match=r"DOGE_USDT-1m\.parquet: cannot read .*timestamp_ms has 1 missing"):
        index_history(tmp_path)
    pq.write_table(pa.table({"time": pa.array([T0])}), tmp_path / "DOGE_USDT-1m.parquet")
    with pytest.raises(MarketDataError, match=r"DOGE_USDT-1m\.parquet: cannot read its timestamp_ms column"):
        HistoryStore(tmp_path).last_ms("DOGE/USDT", "1m")


def test_columns_read_from_arrow_buffers_are_exact(tmp_path: Path) -> None:
    """A file as read, a table of several chunks, and a sliced one (an offset into the buffers)."""
    from engine.sim.parquet_source import column_array, read_columns

    ts = np.arange(1000, dtype=np.int64) * MIN + T0
    close = np.linspace(1.0, 2.0, 1000)
    path = tmp_path / "DOGE_USDT-1m.parquet"
    pq.write_table(pa.table({"timestamp_ms": ts, "close": close}), path)
    read = read_columns(path, ["timestamp_ms", "close"])
    view = column_array(read, "close", pa.float64())
    assert np.array_equal(view, close) and np.array_equal(view, read.column("close").to_pylist())
    assert not view.flags.writeable  # a view of the kept table, not a copy: nobody may write into it
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 0.0
    table = pa.concat_tables([read.slice(0, 300), read.slice(300, 300), read.slice(600)])
    assert table.column("close").num_chunks == 3
    assert np.array_equal(column_array(table, "timestamp_ms", pa.int64()), ts)
    assert np.array_equal(column_array(table, "close", pa.float64()), close)
    part = table.slice(250, 400)
    assert np.array_equal(column_array(part, "close", pa.float64()), close[250:650])
    assert np.array_equal(column_array(part, "timestamp_ms", pa.float64()), ts[250:650].astype(np.float64))
    narrow = pa.table({"t": pa.array([1, 2], pa.int32()), "v": pa.array([1.5, 2.25], pa.float32())})
    assert column_array(narrow, "t", pa.int64()).tolist() == [1, 2]  # other types are cast
    assert column_array(narrow, "v", pa.float64()).tolist() == [1.5, 2.25]


def test_sorted_union_is_the_distinct_values_in_order() -> None:
    rng = np.random.default_rng(3)
    runs = [np.unique(rng.integers(0, 500, size)) for size in (0, 1, 40, 300, 300)]
    runs.append(rng.integers(0, 500, 50))  # unsorted, with repeats: still right, only slower
    got = sorted_union(runs)
    assert got.tolist() == np.unique(np.concatenate(runs)).tolist()


@pytest.mark.parametrize(
    "shift",
    [0, MIN // 2],  # every value on the minute grid (the bitmap), or one pair off it (the merge)
)
def test_sorted_union_on_a_grid_is_the_merges_union(shift: int) -> None:
    """`sorted_union` with the timeframe marks a bitmap of the grid instead of sorting: the same
    values, in the same order and type, as `np.unique`; off the grid, or on one too sparse for
    a bitmap, it merges as without the timeframe."""
    rng = np.random.default_rng(5)
    runs = [T0 + MIN * np.unique(rng.integers(start, 3000, size)) for start, size in ((0, 2500), (700, 900), (2999, 1))]
    runs += [np.zeros(0, np.int64), T0 + MIN * rng.integers(0, 3000, 40) + shift]  # unsorted, with repeats
    want = np.unique(np.concatenate(runs))
    got = sorted_union(runs, MIN)
    assert got.dtype == want.dtype and got.tolist() == want.tolist()
    sparse = [np.array([T0, T0 + 10**6 * MIN]), np.array([T0 + MIN])]
    assert sorted_union(sparse, MIN).tolist() == [T0, T0 + MIN, T0 + 10**6 * MIN]


def test_append_refuses_a_batch_that_would_leave_a_hole(tmp_path: Path) -> None:
    """Two collects racing on one file could store candles 0-4 and then 2,000 later ones with
    nothing between, silently, and the replay reads the hole as an exchange outage. Candles are
    the exchange's answer from `since`: one that does not reach the stored end, or a batch of
    earlier ones that does not reach the stored start, is refused and nothing is written."""
    store = HistoryStore(tmp_path)
    store.append("DOGE/USDT", "1m", [_candle(i) for i in range(10, 15)])
    path = store.path("DOGE/USDT", "1m")
    before = path.read_bytes()
    with pytest.raises(MarketDataError, match=rf"^{path}: the candles to add .* would leave 5 candles from .* missing"):
        store.append("DOGE/USDT", "1m", [_candle(i) for i in range(20, 23)])  # since = their first: 15-19 never asked
    with pytest.raises(MarketDataError, match=r"would leave 5 candles from .* missing"):
        store.append("DOGE/USDT", "1m", [_candle(i) for i in range(20, 23)], since=T0 + 20 * MIN)
    with pytest.raises(MarketDataError, match=r"would leave 3 candles from .* missing"):
        store.append("DOGE/USDT", "1m", [_candle(i) for i in range(5)], since=T0, until=T0 + 7 * MIN)
    assert path.read_bytes() == before
    # the exchange's own gap (asked from 15, its answer starts at 18) is kept as a gap
    assert store.append("DOGE/USDT", "1m", [_candle(i) for i in range(18, 20)], since=T0 + 15 * MIN) == 2
    assert store.read("DOGE/USDT", "1m").gaps() == [(T0 + 15 * MIN, 3)]


def test_append_adds_an_earlier_range_before_the_stored_one(tmp_path: Path) -> None:
    """A backfill (`collect --days` longer than what is stored): the earlier candles join the
    file before the stored ones, one file, sorted, no duplicates, stored candles untouched."""
    store = HistoryStore(tmp_path)
    store.append("DOGE/USDT", "1m", [_candle(i) for i in range(10, 15)])
    earlier = [_candle(i, 2.0) for i in range(3, 12)]  # overlaps the stored start
    assert store.append("DOGE/USDT", "1m", earlier, since=T0 + 3 * MIN, until=T0 + 10 * MIN) == 7
    s = store.read("DOGE/USDT", "1m")
    assert s.ts.tolist() == [T0 + i * MIN for i in range(3, 15)]
    assert s.close.tolist() == [2.0] * 7 + [1.0] * 5


def test_each_write_has_a_temporary_file_of_its_own(tmp_path: Path) -> None:
    """Every writer used `{file}.parquet.tmp`: two at once renamed each other's half-written file
    into place or died with FileNotFoundError. A leftover at that name now changes nothing,
    and a write leaves no temporary file behind, nor a private (0600) store file."""
    (tmp_path / "DOGE_USDT-1m.parquet.tmp").mkdir()  # the shared name, taken
    store = HistoryStore(tmp_path)
    assert store.append("DOGE/USDT", "1m", [_candle(i) for i in range(3)]) == 3
    assert store.append("DOGE/USDT", "1m", [_candle(i) for i in range(3, 5)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DOGE_USDT-1m.parquet", "DOGE_USDT-1m.parquet.tmp"]
    assert store.path("DOGE/USDT", "1m").stat().st_mode & 0o777 == 0o644


def test_the_store_lock_refuses_a_second_writer_naming_folder_and_holder(tmp_path: Path) -> None:
    import os

    store = HistoryStore(tmp_path / "data")
    held = rf"^{tmp_path / 'data'} is being written by another `hotcoin collect` \(process {os.getpid()}\)"
    with store.lock(), pytest.raises(MarketDataError, match=held), HistoryStore(tmp_path / "data").lock():
        pass
    with HistoryStore(tmp_path / "data").lock():  # released when its holder is done
        pass
    assert HistoryStore(tmp_path / "data").symbols("1m") == []  # the lock file is no store file


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_timestamp_open_time_column_is_read_in_milliseconds(tmp_path: Path, unit: str) -> None:
    """A `timestamp[ns]` open-time column was cast raw to int64: nanoseconds read as ms put the
    pair in the year 53,000, where no replay reaches it (and a backtest without --to ran
    forever). Any timestamp unit is now converted to epoch ms."""
    ms = np.arange(5, dtype=np.int64) * MIN + T0
    stamps = pa.array(ms.astype("datetime64[ms]").astype(f"datetime64[{unit}]"))
    cols = {"timestamp_ms": stamps, "open": np.ones(5), "high": np.ones(5), "low": np.ones(5), "close": np.ones(5), "volume": np.ones(5)}
    pq.write_table(pa.table(cols), tmp_path / "DOGE_USDT-1m.parquet")
    assert HistoryStore(tmp_path).read("DOGE/USDT", "1m").ts.tolist() == ms.tolist()
    assert index_history(tmp_path).first_ms == {"DOGE/USDT": T0}


@pytest.mark.parametrize(("scale", "row"), [(1 / 1000, 0), (1000, 0)], ids=["seconds", "microseconds"])
def test_open_times_that_cannot_be_milliseconds_are_refused_with_the_file(tmp_path: Path, scale: float, row: int) -> None:
    ms = np.arange(5, dtype=np.int64) * MIN + T0
    cols = {"timestamp_ms": (ms * scale).astype(np.int64), "open": np.ones(5), "high": np.ones(5), "low": np.ones(5), "close": np.ones(5), "volume": np.ones(5)}
    path = tmp_path / "DOGE_USDT-1m.parquet"
    pq.write_table(pa.table(cols), path)
    what = rf"open time \d+ is not epoch milliseconds between 2010 and tomorrow .*\(row {row}\)"
    with pytest.raises(MarketDataError, match=rf"^{path}: {what}"):
        index_history(tmp_path)
    with pytest.raises(MarketDataError, match=rf"^{path}: {what}"):
        HistoryStore(tmp_path).read("DOGE/USDT", "1m")


def test_a_write_the_disk_refuses_names_the_file_and_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (or a file past the size limit) raised pyarrow's raw OSError, which ended
    `hotcoin collect` with a 69-line traceback naming neither the file nor what was kept. It is
    now a `StoreWriteError` (a `HotcoinError`): the store file, the OS's reason, and the file
    as it was, with no temporary file left."""
    import errno

    from engine.errors import StoreWriteError

    store = HistoryStore(tmp_path)
    store.append("DOGE/USDT", "1m", [_candle(i) for i in range(3)])
    path = store.path("DOGE/USDT", "1m")
    before = path.read_bytes()

    def full(table: pa.Table, where: str, **kwargs: object) -> None:
        Path(where).write_bytes(b"PAR1 half")  # what a write cut short leaves
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pq, "write_table", full)  # history imports pyarrow where it writes (a cached read never does)
    with pytest.raises(StoreWriteError, match=rf"^cannot write {path} \(No space left on device\); {path} keeps what it held$") as got:
        store.append("DOGE/USDT", "1m", [_candle(i) for i in range(3, 5)])
    assert isinstance(got.value, MarketDataError) and got.value.path == path and got.value.reason == "No space left on device"
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(StoreWriteError, match=r"XRP_USDT-1m\.parquet \(No space left on device\); .* was not made$"):
        store.append("XRP/USDT", "1m", [_candle(i) for i in range(3)])


def test_a_lock_file_the_user_cannot_open_names_it_its_owner_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `.collect.lock` this user cannot open (another user's, a chmod 000) raised a raw
    PermissionError traceback. It is now one line: the lock file, its owner and the fix.
    As root chmod denies nothing, so the refusal is then made by `os.open` itself."""
    import os
    import pwd

    import engine.backtest.history as history

    lock = tmp_path / history.LOCK_NAME
    lock.write_text("123\n")
    lock.chmod(0o000)
    if os.geteuid() == 0:
        real_open = os.open

        def denied(path: object, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
            if Path(str(path)) == lock:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, mode, dir_fd=dir_fd)  # type: ignore[arg-type]

        monkeypatch.setattr(history.os, "open", denied)
    owner = pwd.getpwuid(os.geteuid()).pw_name
    expected = (
        rf"^cannot open {lock}, the lock that keeps two `hotcoin collect` runs out of {tmp_path} \(Permission denied; "
        rf"it belongs to user {owner}\): if no collect is writing into {tmp_path}, remove it \(rm {lock}\), or make it "
        r"readable and writable for you \(chown or chmod u\+rw\)$"
    )
    try:
        with pytest.raises(MarketDataError, match=expected), HistoryStore(tmp_path).lock():
            pass
    finally:
        lock.chmod(0o644)
