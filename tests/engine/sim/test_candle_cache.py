"""The decoded-candle cache: what it serves is what decoding the Parquet file gives, bit for bit,
and whatever goes wrong with it, the file is decoded as before."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.backtest.history import HistoryStore
from engine.config import HotcoinConfig, load_config
from engine.domain import Candle
from engine.sim import candle_cache, parquet_source
from engine.sim.candle_cache import CandleColumns
from engine.sim.parquet_source import (
    COLUMNS,
    TableCache,
    candle_columns,
    column_array,
    read_candles,
)

M = 60_000
G = 1_618_527_600_000  # 2021-04-15 23:00 UTC
REPO = Path(__file__).resolve().parents[3]


def candles(n: int, seed: int) -> np.ndarray:
    """(n, 5) OHLCV rows of valid candles, with values a decimal round trip would not keep."""
    rng = np.random.default_rng(seed)
    close = 1.0 + np.cumsum(rng.normal(0, 0.01, n)) ** 2
    open_ = np.r_[1.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, n))
    return np.column_stack([open_, high, low, close, rng.uniform(0, 1000, n)])


def write(path: Path, n: int = 50, seed: int = 1, **columns: pa.Array) -> Path:
    """A store file of `n` minutes from G (its columns replaced by `columns`), dated back past
    `TableCache.SETTLE_NS` as a file written earlier."""
    rows = candles(n, seed)
    table = {"timestamp_ms": np.arange(G, G + n * M, M, dtype=np.int64)}
    table |= {c: rows[:, k] for k, c in enumerate(COLUMNS[1:])}
    pq.write_table(pa.table(table | columns), path, compression="zstd")
    old = path.stat().st_mtime_ns - 10 * TableCache.SETTLE_NS
    os.utime(path, ns=(old, old))
    return path


def entries() -> list[Path]:
    where = candle_cache.folder()
    return sorted(where.iterdir()) if where.is_dir() else []


def decoded(path: Path) -> list[np.ndarray]:
    """The file's columns the straightforward way: pyarrow, no cache of any kind."""
    table = pq.read_table(path)
    return [table.column(c).to_numpy() for c in COLUMNS]


def same_bits(got: tuple[np.ndarray, ...] | list[np.ndarray], want: list[np.ndarray]) -> None:
    assert [a.dtype for a in got] == [np.dtype(np.int64)] + [np.dtype(np.float64)] * 5
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a.view(np.int64), b.view(np.int64))


def test_a_cached_read_is_the_decoded_one_bit_for_bit_as_read_only_views(tmp_path: Path) -> None:
    """The first read decodes and keeps the entry; a later process (a fresh `TableCache`) maps
    it: the same columns bit for bit (a NaN, -0.0 and denormals included), read-only views of
    the mapping that `column_array` hands on as they are."""
    close = candles(50, 1)[:, 3]
    close[[3, 4, 5]] = [np.nan, -0.0, 5e-324]
    path = write(tmp_path / "AAA_USDT-1m.parquet", close=pa.array(close))
    first = TableCache(1 << 20).read(path, list(COLUMNS))
    assert isinstance(first, pa.Table) and len(entries()) == 1
    kept = TableCache(1 << 20).read(path, list(COLUMNS))
    assert isinstance(kept, CandleColumns) and kept.num_rows == 50 and kept.nbytes == 6 * 8 * 50
    got = candle_columns(kept)
    same_bits(got, decoded(path))
    same_bits(candle_columns(first), decoded(path))
    for name, array in zip(COLUMNS, got, strict=True):
        assert not array.flags.writeable and not array.flags.owndata
        assert column_array(kept, name, pa.int64() if name == "timestamp_ms" else pa.float64()) is array
    as_float = column_array(kept, "timestamp_ms", pa.float64())  # another type: cast, as from Arrow
    assert np.array_equal(as_float, column_array(first, "timestamp_ms", pa.float64()))
    for table in (kept, first):
        with pytest.raises(pa.ArrowInvalid):  # prices are no integers
            column_array(table, "open", pa.int64())


def test_a_backtests_reads_of_a_cached_file_check_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`read_candles` over a cached file: the decoded file's candles, checked once however
    often it is read (`_PASSED` keys on the kept `CandleColumns`)."""
    path = write(tmp_path / "AAA_USDT-1m.parquet")
    read_candles(path, "1m")  # decodes, keeps the entry
    monkeypatch.setattr(parquet_source, "TABLES", TableCache(1 << 20))  # a later process
    checked: list[Path] = []
    check = parquet_source._check_candles

    def counting(path: Path, *args: object) -> None:
        checked.append(path)
        check(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(parquet_source, "_check_candles", counting)
    reads = [read_candles(path, "1m") for _ in range(3)]
    assert checked == [path] and isinstance(parquet_source.TABLES.read(path, list(COLUMNS)), CandleColumns)
    for got in reads:
        same_bits(got, decoded(path))


def test_a_rewritten_or_appended_file_is_decoded_again(tmp_path: Path) -> None:
    path = write(tmp_path / "AAA_USDT-1m.parquet", seed=1)
    TableCache(1 << 20).read(path, list(COLUMNS))
    write(path, seed=2)  # same size and rows, other candles
    got = TableCache(1 << 20).read(path, list(COLUMNS))
    assert isinstance(got, pa.Table) and len(entries()) == 2
    same_bits(candle_columns(TableCache(1 << 20).read(path, list(COLUMNS))), decoded(path))
    store = HistoryStore(tmp_path)
    store.append("AAA/USDT", "1m", [Candle("AAA/USDT", "1m", G + 50 * M, 1.0, 1.0, 1.0, 1.0, 1.0)])
    old = path.stat().st_mtime_ns - 10 * TableCache.SETTLE_NS
    os.utime(path, ns=(old, old))
    appended = candle_columns(TableCache(1 << 20).read(path, list(COLUMNS)))
    assert len(appended[0]) == 51
    same_bits(appended, decoded(path))


@pytest.mark.parametrize("damage", ["truncated", "header", "empty", "longer"])
def test_a_damaged_entry_is_decoded_again_and_replaced(tmp_path: Path, damage: str) -> None:
    path = write(tmp_path / "AAA_USDT-1m.parquet")
    TableCache(1 << 20).read(path, list(COLUMNS))
    (entry,) = entries()
    whole = entry.read_bytes()
    data = bytearray(whole)
    if damage == "header":
        data[50] ^= 0xFF  # a byte of the source's path: another file's entry, as far as it can tell
    entry.write_bytes(bytes({"truncated": data[:-8], "header": data, "empty": b"", "longer": data + b"\0" * 8}[damage]))
    assert isinstance(TableCache(1 << 20).read(path, list(COLUMNS)), pa.Table)  # decoded again...
    assert entries() == [entry] and entry.read_bytes() == whole  # ...and the entry replaced
    again = TableCache(1 << 20).read(path, list(COLUMNS))
    assert isinstance(again, CandleColumns)
    same_bits(candle_columns(again), decoded(path))


def test_a_cache_folder_that_cannot_be_written_reads_the_file_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache home that is a file (the folder cannot be made), then a full disk: the file is
    decoded every time, nothing is left behind."""
    path = write(tmp_path / "AAA_USDT-1m.parquet")
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    for _ in range(2):
        got = TableCache(1 << 20).read(path, list(COLUMNS))
        assert isinstance(got, pa.Table)
        same_bits(candle_columns(got), decoded(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "full"))

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    assert isinstance(TableCache(1 << 20).read(path, list(COLUMNS)), pa.Table)
    assert entries() == []  # the temporary file removed


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`HOTCOIN_CANDLE_CACHE=off`, which the config's environment layer leaves alone (it took it
    for an unknown key, `candle_cache`, and refused to start)."""
    assert load_config(env={"HOTCOIN_CANDLE_CACHE": "off", "HOTCOIN_NO_NATIVE": "1"}).config == HotcoinConfig()
    path = write(tmp_path / "AAA_USDT-1m.parquet")
    monkeypatch.setenv("HOTCOIN_CANDLE_CACHE", "off")
    for _ in range(2):
        assert isinstance(TableCache(1 << 20).read(path, list(COLUMNS)), pa.Table)
    assert not candle_cache.folder().exists()
    monkeypatch.setenv("HOTCOIN_CANDLE_CACHE", "on")
    TableCache(1 << 20).read(path, list(COLUMNS))
    assert len(entries()) == 1


def test_only_settled_whole_store_shaped_reads_are_kept(tmp_path: Path) -> None:
    """A file just written, a read of some columns, a Parquet timestamp column or a null: read
    as before, no entry."""
    fresh = tmp_path / "NEW_USDT-1m.parquet"
    pq.write_table(pq.read_table(write(tmp_path / "AAA_USDT-1m.parquet")), fresh)
    assert isinstance(TableCache(1 << 20).read(fresh, list(COLUMNS)), pa.Table)
    TableCache(1 << 20).read(tmp_path / "AAA_USDT-1m.parquet", ["timestamp_ms", "close"])
    stamps = pa.array(np.arange(G, G + 50 * M, M) * 1000, pa.timestamp("us"))
    stamped = write(tmp_path / "TS_USDT-1m.parquet", timestamp_ms=stamps)
    volume = pa.array([None] + [1.0] * 49, pa.float64())
    holed = write(tmp_path / "NUL_USDT-1m.parquet", volume=volume)
    for _ in range(2):
        ts = column_array(TableCache(1 << 20).read(stamped, list(COLUMNS)), "timestamp_ms", pa.int64())
        assert ts.tolist() == list(range(G, G + 50 * M, M))
        v = column_array(TableCache(1 << 20).read(holed, list(COLUMNS)), "volume", pa.float64())
        assert np.isnan(v[0]) and v[1:].tolist() == [1.0] * 49
    assert entries() == []


def test_the_folder_is_held_under_its_bound_least_recently_used_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [write(tmp_path / f"{base}_USDT-1m.parquet", seed=i) for i, base in enumerate(("AAA", "BBB", "CCC"))]
    TableCache(1 << 20).read(paths[0], list(COLUMNS))
    (one,) = entries()
    monkeypatch.setattr(candle_cache, "MAX_BYTES", 2 * one.stat().st_size)
    TableCache(1 << 20).read(paths[1], list(COLUMNS))
    for i, entry in enumerate(sorted(entries(), key=lambda e: e != one)):  # AAA's oldest, BBB's newer
        os.utime(entry, ns=(i * 10**9, i * 10**9))
    assert isinstance(TableCache(1 << 20).read(paths[0], list(COLUMNS)), CandleColumns)  # used: AAA's now newest
    TableCache(1 << 20).read(paths[2], list(COLUMNS))  # a third: BBB's goes
    assert len(entries()) == 2
    assert isinstance(TableCache(1 << 20).read(paths[0], list(COLUMNS)), CandleColumns)
    assert isinstance(TableCache(1 << 20).read(paths[1], list(COLUMNS)), pa.Table)


def test_parallel_writers_of_one_entry_leave_it_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "AAA_USDT-1m.parquet")

    def reads() -> None:
        for _ in range(5):
            TableCache(1 << 20).read(path, list(COLUMNS))

    threads = [threading.Thread(target=reads) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(entries()) == 1  # no temporary file left
    same_bits(candle_columns(TableCache(1 << 20).read(path, list(COLUMNS))), decoded(path))


def test_an_index_of_a_cached_store_does_not_import_pyarrow(tmp_path: Path) -> None:
    """pyarrow's import (~50-80 ms) is what a warm start saves besides the decoding: the index,
    the replay market's and the candle series' reads of cached files never need it."""
    store = tmp_path / "store"
    store.mkdir()
    for i, base in enumerate(("AAA", "BBB")):
        write(store / f"{base}_USDT-1m.parquet", seed=i)
    probe = (
        "import sys; from pathlib import Path; from engine.backtest.history import index_history, read_series;"
        f"i = index_history(Path({str(store)!r})); read_series(Path({str(store / 'AAA_USDT-1m.parquet')!r}), 'AAA/USDT', '1m');"
        "print(i.rows, 'pyarrow' in sys.modules)"
    )
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cold, warm = (subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True) for _ in range(2))
    assert (cold.stdout.split(), warm.stdout.split()) == (["100", "True"], ["100", "False"])
