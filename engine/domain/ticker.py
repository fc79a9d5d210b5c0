"""Tickers, one symbol at a time or the whole market at once.

A full-market update (`!ticker@arr`, ~2,000 symbols a second) is a `TickerBatch`: a struct
of numpy arrays, so discovery can update every symbol with a handful of vector operations
instead of 2,000 Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import MarketDataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Ticker:
    """Rolling 24 h statistics for one symbol, as the exchange reports them."""

    symbol: str
    ts_ms: int
    last: float
    bid: float
    ask: float
    open_24h: float
    high_24h: float
    low_24h: float
    base_volume_24h: float
    quote_volume_24h: float
    trade_count_24h: int = -1


_FLOAT_FIELDS = ("last", "bid", "ask", "open_24h", "high_24h", "low_24h", "base_volume_24h", "quote_volume_24h")
_ARRAY_FIELDS = ("event_ms", *_FLOAT_FIELDS, "trade_count_24h")


@dataclass(frozen=True, slots=True)
class TickerBatch:
    """Many tickers at one moment, column-wise. Row i of every array is `symbols[i]`.

    Arrays are made read-only on construction: a batch is a value, shared by readers.
    Missing values are NaN (floats) or -1 (trade counts); consumers decide what they mean.
    """

    ts_ms: int
    symbols: tuple[str, ...]
    event_ms: IntArray
    last: FloatArray
    bid: FloatArray
    ask: FloatArray
    open_24h: FloatArray
    high_24h: FloatArray
    low_24h: FloatArray
    base_volume_24h: FloatArray
    quote_volume_24h: FloatArray
    trade_count_24h: IntArray

    def __post_init__(self) -> None:
        shape = (len(self.symbols),)
        arrays = (
            self.event_ms, self.last, self.bid, self.ask, self.open_24h, self.high_24h, self.low_24h,
            self.base_volume_24h, self.quote_volume_24h, self.trade_count_24h,
        )  # fmt: skip
        for name, arr in zip(_ARRAY_FIELDS, arrays, strict=True):  # attributes, not getattr: a batch a minute
            if arr.shape != shape:
                raise MarketDataError(f"TickerBatch.{name} has shape {arr.shape}, expected {shape}")
            arr.setflags(write=False)

    def __len__(self) -> int:
        return len(self.symbols)

    @classmethod
    def trusted(
        cls, ts_ms: int, symbols: tuple[str, ...], event_ms: IntArray, last: FloatArray, bid: FloatArray,
        ask: FloatArray, open_24h: FloatArray, high_24h: FloatArray, low_24h: FloatArray,
        base_volume_24h: FloatArray, quote_volume_24h: FloatArray, trade_count_24h: IntArray,
    ) -> TickerBatch:  # fmt: skip
        """A batch from arrays its producer has already shaped and made read-only: a replay
        run's rows (`TickerRun.batch`: views of the tape's day tables, frozen when computed; the
        checks were ~15 us a batch), and a `DayRowBatch` pickled. `tests/engine/sim/
        test_parquet_source.py` holds the tape to what this skips."""
        batch = object.__new__(cls)
        put = object.__setattr__
        put(batch, "ts_ms", ts_ms)
        put(batch, "symbols", symbols)
        put(batch, "event_ms", event_ms)
        put(batch, "last", last)
        put(batch, "bid", bid)
        put(batch, "ask", ask)
        put(batch, "open_24h", open_24h)
        put(batch, "high_24h", high_24h)
        put(batch, "low_24h", low_24h)
        put(batch, "base_volume_24h", base_volume_24h)
        put(batch, "quote_volume_24h", quote_volume_24h)
        put(batch, "trade_count_24h", trade_count_24h)
        return batch

    @classmethod
    def from_tickers(cls, ts_ms: int, tickers: Sequence[Ticker]) -> TickerBatch:
        """Column-wise batch from row-wise tickers (tests, slow paths)."""
        return cls(
            ts_ms=ts_ms,
            symbols=tuple(t.symbol for t in tickers),
            event_ms=np.fromiter((t.ts_ms for t in tickers), np.int64, len(tickers)),
            trade_count_24h=np.fromiter((t.trade_count_24h for t in tickers), np.int64, len(tickers)),
            **{f: np.fromiter((getattr(t, f) for t in tickers), np.float64, len(tickers)) for f in _FLOAT_FIELDS},
        )

    def row(self, i: int) -> Ticker:
        """Row i as a `Ticker` (for display and journaling, not hot paths)."""
        return Ticker(
            symbol=self.symbols[i],
            ts_ms=int(self.event_ms[i]),
            trade_count_24h=int(self.trade_count_24h[i]),
            **{f: float(getattr(self, f)[i]) for f in _FLOAT_FIELDS},
        )

    def tickers(self) -> list[Ticker]:
        return [self.row(i) for i in range(len(self))]


def _day_row(k: int) -> property:
    """Field `k` of a `DayRowBatch`: row `_i`'s first `_n` entries of its day table `k`."""

    def get(self: DayRowBatch) -> npt.NDArray[Any]:
        return self._tables[k][self._i, : len(self.symbols)]

    return property(get)


class DayRowBatch(TickerBatch):
    """A `TickerBatch` that is row `i` of [minute, pair] day tables (a replay tape's minute),
    its arrays cut from the tables only when read.

    The trading process of a backtest takes a batch a minute and reads little of it (its
    symbols, a few pairs' bid and ask); cutting the eleven rows and setting the twelve fields
    up front was ~4 us a minute, ~0.16 s of its month. The tables are frozen by their
    producer, so a row read later is the row read now; each read cuts a fresh view of it.
    Pickled, it is the plain batch of its rows. `tests/engine/domain/test_ticker.py` compares
    it field by field with `TickerBatch.trusted` of the same rows."""

    __slots__ = ("_i", "_tables")
    _tables: tuple[npt.NDArray[np.generic], ...]
    _i: int

    event_ms = _day_row(0)
    last = _day_row(1)
    bid = _day_row(2)
    ask = _day_row(3)
    open_24h = _day_row(4)
    high_24h = _day_row(5)
    low_24h = _day_row(6)
    base_volume_24h = _day_row(7)
    quote_volume_24h = _day_row(8)
    trade_count_24h = _day_row(9)

    @classmethod
    def of(cls, ts_ms: int, symbols: tuple[str, ...], tables: tuple[npt.NDArray[np.generic], ...], i: int) -> DayRowBatch:
        """Row `i` of `tables` (read-only [minute, pair] arrays, in the order of `TickerBatch`'s
        arrays: event_ms, last, bid, ask, open/high/low 24 h, base and quote volume, trade
        count) for the first `len(symbols)` pairs."""
        batch = object.__new__(cls)
        put = object.__setattr__
        put(batch, "ts_ms", ts_ms)
        put(batch, "symbols", symbols)
        put(batch, "_tables", tables)
        put(batch, "_i", i)
        return batch

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        fields = (getattr(self, name) for name in _ARRAY_FIELDS)
        return TickerBatch.trusted, (self.ts_ms, self.symbols, *fields)


@dataclass(frozen=True, slots=True)
class TickerRun:
    """Consecutive full-market batches naming the same symbols, row j of every [batch, symbol]
    array being batch j: what a replay's tape shows minute after minute, handed to discovery
    at once (`Discovery.push_run`) instead of a `TickerBatch` a minute. Built only by a
    producer whose arrays are shaped and read-only already (the tape's day tables)."""

    ts_ms: IntArray  # [batch]
    symbols: tuple[str, ...]
    event_ms: IntArray
    last: FloatArray
    bid: FloatArray
    ask: FloatArray
    open_24h: FloatArray
    high_24h: FloatArray
    low_24h: FloatArray
    base_volume_24h: FloatArray
    quote_volume_24h: FloatArray
    trade_count_24h: IntArray

    def __len__(self) -> int:
        return len(self.ts_ms)

    def batch(self, j: int) -> TickerBatch:
        """Batch j (views of the run's rows)."""
        return TickerBatch.trusted(
            int(self.ts_ms[j]), self.symbols, self.event_ms[j], self.last[j], self.bid[j], self.ask[j],
            self.open_24h[j], self.high_24h[j], self.low_24h[j], self.base_volume_24h[j], self.quote_volume_24h[j],
            self.trade_count_24h[j],
        )  # fmt: skip

    def part(self, lo: int, hi: int) -> TickerRun:
        """Batches lo .. hi-1 as a run."""
        return TickerRun(
            self.ts_ms[lo:hi], self.symbols, self.event_ms[lo:hi], self.last[lo:hi], self.bid[lo:hi],
            self.ask[lo:hi], self.open_24h[lo:hi], self.high_24h[lo:hi], self.low_24h[lo:hi],
            self.base_volume_24h[lo:hi], self.quote_volume_24h[lo:hi], self.trade_count_24h[lo:hi],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class MinuteVolumes:
    """The quote volume each symbol traded in each minute before `end_ms`, oldest minute first:
    what a market that holds its candles knows of the day behind a rolling 24 h figure (the
    figure says how much traded, not when within the day, so not what leaves the window next).

    A replay holds that day (its market loads it before the first batch) where an exchange's
    ticker does not: the backtest hands it to discovery with its first warm-up batch
    (`DiscoveryDriver.warmup`), so the volume leaving the window is read, not guessed."""

    symbols: tuple[str, ...]
    end_ms: int  # the last minute opens at end_ms - 60_000
    quote_volume: FloatArray  # [minute, symbol]

    def __post_init__(self) -> None:
        if self.quote_volume.ndim != 2 or self.quote_volume.shape[1] != len(self.symbols):
            raise MarketDataError(
                f"MinuteVolumes.quote_volume has shape {self.quote_volume.shape}, expected (minutes, {len(self.symbols)})"
            )
        self.quote_volume.setflags(write=False)

    @property
    def start_ms(self) -> int:
        """Open time of the first minute."""
        return self.end_ms - len(self.quote_volume) * 60_000
