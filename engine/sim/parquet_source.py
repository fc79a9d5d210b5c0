"""A market replayed from real 1m candles, served through the same interface as `SimMarket`.

Input: a directory of `{BASE}_{QUOTE}-1m.parquet` files (columns timestamp_ms, open, high,
low, close, volume), as in ../shared/data/binance. A symbol is listed from its first candle, so
pairs that start inside the window (TKO, EPS, BTG) appear mid-run. A missing minute (an
exchange outage) prints no candle: the price holds and no volume trades.

Inside a minute, the price walks open -> low -> high -> close for an up candle and open ->
high -> low -> close for a down one, one leg per third of the minute, sampled every
`step_ms`; the running candle shows what that walk has reached and a pro-rata share of the
volume. When the minute closes, the file's candle is written exactly. The whole state is a
function of the time, so any sequence of `advance_to` calls reaching a time gives the same
market. The files carry no trade counts: tickers report -1 (missing).
"""

from __future__ import annotations

import csv
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config.sections.sim import SimSection
from engine.errors import ConfigError, MarketDataError
from engine.sim.base import RingMarket
from engine.sim.rings import MINUTE_MS, BoolArray, FloatArray, IntArray
from engine.sim.scenario import ListingEvent, PumpEvent

COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")
MAX_DECIMALS = 12


@dataclass(frozen=True, slots=True)
class _Minute:
    """One minute of the first `n` symbols: a candle each, `valid` where the file has one."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    valid: BoolArray

    @property
    def quote_volume(self) -> FloatArray:
        out: FloatArray = self.volume * (self.high + self.low + self.close) / 3.0
        return out


class ParquetMarket(RingMarket):
    """Real candles replayed minute by minute; see the module docstring."""

    def __init__(
        self, settings: SimSection, start_ms: int, *, data_dir: Path | None = None
    ) -> None:
        directory = data_dir if data_dir is not None else settings.data_dir
        if directory is None:
            raise ConfigError(
                "sim.data_dir is not set; point it at a directory of {BASE}_{QUOTE}-1m.parquet files"
            )
        quote = settings.quote_asset
        files = sorted(Path(directory).glob(f"*_{quote}-1m.parquet"))
        if not files:
            raise ConfigError(
                f"sim.data_dir {directory} holds no *_{quote}-1m.parquet files; check the path and quote"
            )
        loaded = sorted((_read(path, quote) for path in files), key=lambda s: (int(s[1][0]), s[0]))
        symbols = [name for name, *_ in loaded]
        self._first_minute = np.array([int(ts[0]) // MINUTE_MS for _, ts, _ in loaded], np.int64)
        self._grid_start = int(self._first_minute.min())
        self._grid = _Grid(loaded, self._grid_start)
        super().__init__(quote, settings.candle_ring_minutes, start_ms, capacity=len(symbols))
        self._has_trades = False
        self._step_ms = settings.step_ms
        self._all_symbols = symbols
        self._first_open = [float(prices[0, 0]) for _, _, prices in loaded]
        self._tick_exps = [_tick_exponent(prices) for _, _, prices in loaded]
        self._events = _read_events(Path(directory) / "events.csv", set(symbols))
        self._listings = tuple(
            ListingEvent(s, int(m) * MINUTE_MS, o)
            for s, m, o in zip(symbols, self._first_minute, self._first_open, strict=True)
            if m > self._grid_start
        )
        m0 = start_ms // MINUTE_MS
        while self._rings.n < len(symbols) and self._first_minute[self._rings.n] <= m0:
            self._list(self._rings.n)
        n = self._rings.n
        history = min(settings.history_minutes, max(0, m0 - self._grid_start))
        if history and n:
            rows = [self._minute(m, n) for m in range(m0 - history, m0)]
            block = {
                f: np.stack([getattr(r, f) for r in rows])
                for f in ("open", "high", "low", "close", "volume")
            }
            quote_volume = np.stack([r.quote_volume for r in rows])
            self._rings.load_history(
                block["open"], block["high"], block["low"], block["close"], block["volume"], quote_volume,
                np.zeros((history, n), np.int64), np.stack([r.valid for r in rows]),
            )  # fmt: skip
        self._open_minute(m0)
        self._show(start_ms)

    # -- the contract ----------------------------------------------------------------------

    def advance_to(self, now_ms: int) -> None:
        if now_ms < self._now_ms:
            raise MarketDataError(
                f"replay time cannot go back: at {self._now_ms}, asked for {now_ms}"
            )
        target = now_ms // MINUTE_MS
        rings = self._rings
        while rings.minute < target:
            closing = self._minute(rings.minute, rings.n)
            rings.set_current(
                closing.open, closing.high, closing.low, closing.close, closing.volume, closing.quote_volume,
                closing.valid,
            )  # fmt: skip
            self._open_minute(rings.minute + 1)
        self._show(now_ms)

    @property
    def ground_truth(self) -> tuple[PumpEvent, ...]:
        """Major pump episodes (+30% within an hour) from `events.csv` beside the files, if any:
        start = the labelled low, peak = the labelled high, end = peak."""
        return self._events

    @property
    def listings(self) -> tuple[ListingEvent, ...]:
        """Pairs whose first candle comes after the data's first minute."""
        return self._listings

    # -- internals -------------------------------------------------------------------------

    def _not_listed(self, symbol: str) -> str | None:
        if symbol not in self._all_symbols:
            return None
        first = int(self._first_minute[self._all_symbols.index(symbol)]) * MINUTE_MS
        return f"its first candle opens at {first} (now {self._now_ms})"

    def _list(self, i: int) -> None:
        self._list_symbol(
            self._all_symbols[i],
            self._first_open[i],
            int(self._first_minute[i]),
            tick_exp=self._tick_exps[i],
        )

    def _open_minute(self, minute: int) -> None:
        """Start `minute`: list pairs whose first candle it is, open every listed pair."""
        rings = self._rings
        while rings.n < len(self._all_symbols) and self._first_minute[rings.n] <= minute:
            self._list(rings.n)
        row = self._minute(minute, rings.n)
        rings.begin_minute(minute, row.open, valid=row.valid)

    def _show(self, now_ms: int) -> None:
        """The running minute as it stands at `now_ms` (rounded down to a sub-step)."""
        rings = self._rings
        n = rings.n
        row = self._minute(rings.minute, n)
        elapsed = (now_ms - rings.minute * MINUTE_MS) // self._step_ms * self._step_ms
        u = elapsed / MINUTE_MS
        up = row.close >= row.open
        first, second = np.where(up, row.low, row.high), np.where(up, row.high, row.low)
        if u < 1 / 3:
            price = row.open + (first - row.open) * (3 * u)
            seen = [row.open]
        elif u < 2 / 3:
            price = first + (second - first) * (3 * u - 1)
            seen = [row.open, first]
        else:
            price = second + (row.close - second) * (3 * u - 2)
            seen = [row.open, first, second]
        price = self._on_tick(price, n)
        high = np.maximum.reduce([*seen, price])
        low = np.minimum.reduce([*seen, price])
        volume = row.volume * u
        rings.set_current(
            row.open, high, low, price, volume, volume * (high + low + price) / 3.0, row.valid
        )
        self._price[:n] = price
        self._now_ms = now_ms

    def _minute(self, minute: int, n: int) -> _Minute:
        """Minute `minute` of the first `n` pairs; outside the files the last price holds."""
        g = self._grid
        r = minute - self._grid_start
        if r < 0:
            held = np.asarray(self._first_open[:n])
            return _Minute(held, held, held, held, np.zeros(n), np.zeros(n, np.bool_))
        if r >= g.minutes:
            held = g.last_close[:n]
            return _Minute(held, held, held, held, np.zeros(n), np.zeros(n, np.bool_))
        return g.row(r, n)


def read_columns(path: Path, columns: list[str]) -> pa.Table:
    """`columns` of one Parquet file, through `ParquetFile`, not `pq.read_table`: that one goes
    through `pyarrow.dataset`, which imports pandas (0.35 s) and costs ~15 ms a file more.
    Decoded tables are kept (`TABLES`): a backtest reads a file up to three times (index,
    replay market, candle series), and an optimize worker runs many backtests on the same files."""
    return TABLES.read(path, columns)


class TableCache:
    """Decoded Parquet columns by file identity, least recently used dropped past `max_bytes`.

    Sharing is safe: Arrow tables are immutable and `column_array` copies out of them. The key
    is the file's identity (resolved path, inode, size, modification time) and the columns, so
    a file rewritten or replaced (`HistoryStore.append`) is read again. A file modified in the
    last `SETTLE_NS` is read but not kept: file times tick coarsely (a few ms), and two
    same-size writes within one tick would otherwise look like one file."""

    SETTLE_NS = 2_000_000_000

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._tables: OrderedDict[tuple[str, int, int, int, tuple[str, ...]], pa.Table] = OrderedDict()
        self._lock = threading.Lock()  # a reader thread (e.g. a worker's) may share the process

    def read(self, path: Path, columns: list[str]) -> pa.Table:
        st = path.stat()
        key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, tuple(columns))
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
                return table
        with pq.ParquetFile(path) as file:
            table = file.read(columns=columns)
        if time.time_ns() - st.st_mtime_ns < self.SETTLE_NS:
            return table
        with self._lock:
            if key not in self._tables and table.nbytes <= self.max_bytes:
                self._tables[key] = table
                self.bytes += table.nbytes
                while self.bytes > self.max_bytes:
                    _, old = self._tables.popitem(last=False)
                    self.bytes -= old.nbytes
        return table


TABLES = TableCache(256 << 20)  # the shared month is ~70 MB decoded


_NUMPY_OF = {pa.int64(): np.dtype(np.int64), pa.float64(): np.dtype(np.float64)}


def column_array(table: pa.Table, name: str, dtype: pa.DataType) -> npt.NDArray[Any]:
    """Column `name` cast to `dtype` (int64 or float64) as a numpy array, read from the Arrow
    buffers: pyarrow's own `to_numpy` imports pandas (0.35 s) on first use. A missing float is
    NaN (through pyarrow's path, which only bad data pays for); a missing integer is a
    ValueError naming the column. A column already of `dtype` is not cast: casting imports
    pyarrow.compute (~65 ms a process)."""
    column = table.column(name)
    if column.type != dtype:
        column = column.cast(dtype)
    item = _NUMPY_OF[dtype]
    if column.null_count:
        if item.kind != "f":
            raise ValueError(f"column {name} has {column.null_count} missing values")
        return np.asarray(column.to_numpy(), dtype=item)
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=item, count=len(chunk), offset=chunk.offset * item.itemsize)
        for chunk in column.chunks
    ]
    return np.concatenate(parts) if len(parts) != 1 else parts[0].copy()


def _read(path: Path, quote: str) -> tuple[str, IntArray, FloatArray]:
    """(symbol, open times, (rows, 5) OHLCV) of one file, checked; bad data names the file and row."""
    base = path.name.removesuffix(f"_{quote}-1m.parquet")
    try:
        table = read_columns(path, list(COLUMNS))
        ts = column_array(table, "timestamp_ms", pa.int64())
        o, h, lo, c, v = (column_array(table, col, pa.float64()) for col in COLUMNS[1:])
    except (OSError, KeyError, ValueError) as exc:
        raise MarketDataError(f"{path}: cannot read {', '.join(COLUMNS)} ({exc})") from exc
    if len(ts) == 0:
        raise MarketDataError(f"{path}: no candles")
    problems = (
        (np.diff(ts) <= 0, "timestamps are not strictly increasing"),
        (ts % MINUTE_MS != 0, "a timestamp is not on a whole minute"),
        (~(priced(o) & priced(h) & priced(lo) & priced(c) & np.isfinite(v)), "a price is not positive and finite"),
        (v < 0, "a volume is negative"),
        (h < np.maximum(o, c), "a high is below its open or close"),
        (lo > np.minimum(o, c), "a low is above its open or close"),
    )
    for bad, what in problems:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise MarketDataError(f"{path}: {what} (row {row}); fix or remove the file")
    return f"{base}/{quote}", ts, np.column_stack([o, h, lo, c, v])


def priced(x: FloatArray) -> BoolArray:
    """0 < x < inf (NaN fails): a usable price. Checked column by column: the row-wise
    reductions over a [rows, 5] block it replaces were most of a file's load time."""
    out: BoolArray = x > 0.0
    out &= x < np.inf
    return out


class _Grid:
    """Every pair on one minute grid; missing minutes hold the last close with no volume, and
    before its first candle a pair holds its first open.

    Built `chunk` minutes at a time as the replay reaches them, minute-major (the replay reads
    one minute across all pairs; the gap filling runs down the minute axis): a backtest of an
    hour builds an hour or two of grid, not the store's month (~0.15 s and 50 MB for the
    shared data), and a month's backtest builds each chunk once, in order."""

    def __init__(self, loaded: list[tuple[str, IntArray, FloatArray]], start: int, chunk: int = 1440) -> None:
        self.chunk = chunk
        self._rows = [ts // MINUTE_MS - start for _, ts, _ in loaded]  # grid rows of each pair's candles
        self._values = [values for _, _, values in loaded]
        self.minutes = max(int(rows[-1]) for rows in self._rows) + 1
        self.last_close = np.array([values[-1, 3] for values in self._values])  # held past the last candle
        self._k = -1
        self._fields = np.zeros((5, 0, 0))
        self._valid = np.zeros((0, 0), np.bool_)

    def row(self, r: int, n: int) -> _Minute:
        """Grid row `r` (0 <= r < minutes) of the first `n` pairs, as views of its chunk."""
        k, i = divmod(r, self.chunk)
        if k != self._k:
            self._build(k)
        f, valid = self._fields, self._valid
        return _Minute(f[0, i, :n], f[1, i, :n], f[2, i, :n], f[3, i, :n], f[4, i, :n], valid[i, :n])

    def _build(self, k: int) -> None:
        r0 = k * self.chunk
        length = min(self.chunk, self.minutes - r0)
        n = len(self._rows)
        fields = np.zeros((5, length, n))
        valid = np.zeros((length, n), np.bool_)
        carry = np.empty(n)  # what each pair holds from before the chunk: its last close, or first open
        for j, (rows, values) in enumerate(zip(self._rows, self._values, strict=True)):
            lo, hi = np.searchsorted(rows, (r0, r0 + length)).tolist()
            if hi > lo:
                at = rows[lo:hi] - r0
                fields[:, at, j] = values[lo:hi].T
                valid[at, j] = True
            carry[j] = values[lo - 1, 3] if lo else values[0, 0]
        idx = np.where(valid, np.arange(length)[:, None], -1)
        np.maximum.accumulate(idx, axis=0, out=idx)
        held = np.take_along_axis(fields[3], np.maximum(idx, 0), axis=0)
        before = idx < 0  # no candle yet in this chunk
        held[before] = np.broadcast_to(carry[None, :], held.shape)[before]
        gaps = ~valid
        for c in range(4):
            np.copyto(fields[c], held, where=gaps)
        fields[4][gaps] = 0.0
        self._k, self._fields, self._valid = k, fields, valid


def _tick_exponent(values: FloatArray) -> int:
    """The finest decimal the pair's prices use (Binance prints prices on its tick)."""
    sample = values[:5000, :4].ravel()
    for decimals in range(MAX_DECIMALS + 1):
        if np.array_equal(np.round(sample, decimals), sample):
            return -decimals
    return -MAX_DECIMALS


def _read_events(path: Path, symbols: set[str]) -> tuple[PumpEvent, ...]:
    if not path.is_file():
        return ()
    events = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if (
                row.get("kind") != "major"
                or row.get("timeframe") != "1m"
                or row.get("pair") not in symbols
            ):
                continue
            low_ms, peak_ms = int(row["low_ms"]), int(row["peak_ms"])
            size = float(row["peak"]) / float(row["low"]) - 1.0
            events.append(PumpEvent(row["pair"], low_ms, peak_ms, peak_ms, size, "pump"))
    return tuple(sorted(events, key=lambda e: (e.start_ms, e.symbol)))
