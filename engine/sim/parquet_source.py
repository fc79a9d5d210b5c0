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

A ticker's event time is when the pair last traded: now while its running minute trades, else
the end of its last minute with volume (its listing, before any). A pair that prints no candle
(an outage) or a candle of no volume shows the ticker it showed before, as an exchange sends
no new ticker for a pair that did not trade; its 24 h figure still drains, but discovery reads
no volume from a ticker that did not change (`engine.discovery.windows`).

A backtest that only ever looks at whole minutes and reads its candles from the store switches
the market to `replay_ahead` after its warm-up: the same tickers and quotes, computed a day of
minutes at a time instead of through the candle rings (`_Tape`). A backtest whose discovery
runs in a forked process computes those days once: the discovery process computes each day as
it reaches it and puts it into shared memory (`SharedDays`), and the trading process's tape
copies it out instead of computing it again. That way round because the trading process is the
critical path (~100% busy over the month, while discovery runs ahead of it and idles ~0.2-0.3 s):
the work (~3.5-4 ms a day, `_DayMaker`) leaves the critical path, which only pays the copy
(~0.7 ms a day).
"""

from __future__ import annotations

import csv
import functools
import mmap
import multiprocessing as mp
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.config.sections.sim import SimSection
from engine.domain import Candle, MinuteVolumes, TickerBatch, TickerRun
from engine.domain.candle import candle_problem, timeframe_ms
from engine.domain.ticker import DayRowBatch
from engine.errors import ConfigError, MarketDataError
from engine.sim import candle_cache
from engine.sim.base import (
    MIN_TICK_EXP,
    RingMarket,
    _mul_div,
    bid_ask_ticks,
    quotes,
    step_exponent,
    tick_counts,
)
from engine.sim.candle_cache import CandleColumns
from engine.sim.rings import MINUTE_MS, WINDOW_MINUTES, BoolArray, FloatArray, IntArray
from engine.sim.scenario import ListingEvent, PumpEvent

if TYPE_CHECKING:
    from multiprocessing.synchronize import Semaphore

    import pyarrow as pa

COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")
Floats = npt.NDArray[np.floating[Any]]  # float64, or float32 (a ring's quote volumes)
ComplexArray = npt.NDArray[np.complex128]

CLOSED_ROWS = 8 * WINDOW_MINUTES  # a tape's closed minutes kept: the last day's and a week's more
MAX_DECIMALS = -MIN_TICK_EXP  # Binance's finest tick: prices are replayed on it at the finest


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
        files = replay_files(directory, quote)
        if not files:
            raise ConfigError(
                f"sim.data_dir {directory} holds no *_{quote}-1m.parquet files; check the path and quote"
            )
        loaded = sorted((_read(path, quote) for path in files), key=lambda s: (int(s[1][0]), s[0]))
        symbols = [name for name, *_ in loaded]
        self._first_minute = np.array([int(ts[0]) // MINUTE_MS for _, ts, _ in loaded], np.int64)
        self._grid_start = int(self._first_minute.min())
        self._grid = _Grid(loaded, self._grid_start)
        # A pair whose candles end before the others' is halted (BREAK) the minute after its
        # last candle: whether Binance delisted it or it was collected over a shorter span,
        # there is no price to trade at from then on, and a frozen last close would fill
        # exits hours later at a price that never was. Sorted by that minute.
        data_end = self._grid_start + self._grid.minutes
        halts = ((int(ts[-1]) // MINUTE_MS + 1, i) for i, (_, ts, _) in enumerate(loaded))
        self._halts = sorted((m, i) for m, i in halts if m < data_end)
        self._tape: _Tape | None = None
        super().__init__(quote, settings.candle_ring_minutes, start_ms, capacity=len(symbols))
        self._traded_ms = self._first_minute * MINUTE_MS  # when each pair last traded (its listing, before any)
        self._has_trades = False
        self._step_ms = settings.step_ms
        self._all_symbols = symbols
        self._first_open = [float(columns[0][0]) for _, _, columns in loaded]
        self._tick_exps = [_tick_exponent(columns) for _, _, columns in loaded]
        self._events_csv = Path(directory) / "events.csv"
        self._listings = tuple(
            ListingEvent(s, int(m) * MINUTE_MS, o)
            for s, m, o in zip(symbols, self._first_minute, self._first_open, strict=True)
            if m > self._grid_start
        )
        m0 = start_ms // MINUTE_MS
        while self._rings.n < len(symbols) and self._first_minute[self._rings.n] <= m0:
            self._list(self._rings.n)
        self._halt_due(m0)
        n = self._rings.n
        history = min(settings.history_minutes, max(0, m0 - self._grid_start))
        if history and n:
            rows = [self._minute(m, n) for m in range(m0 - history, m0)]
            block = {
                f: np.stack([getattr(r, f) for r in rows])
                for f in ("open", "high", "low", "close", "volume")
            }
            quote_volume = np.stack([r.quote_volume for r in rows])
            ends = np.arange(m0 - history + 1, m0 + 1, dtype=np.int64) * MINUTE_MS
            self._traded_ms[:n] = np.where(block["volume"] > 0.0, ends[:, None], self._traded_ms[None, :n]).max(axis=0)
            self._rings.load_history(
                block["open"], block["high"], block["low"], block["close"], block["volume"], quote_volume,
                np.zeros((history, n), np.int64), np.stack([r.valid for r in rows]),
            )  # fmt: skip
        self._open_minute(m0)
        self._show(start_ms)

    # -- the contract ----------------------------------------------------------------------

    def advance_to(self, now_ms: int) -> None:
        tape = self._tape
        if tape is not None and self._now_ms < now_ms < tape.until_ms and not now_ms % MINUTE_MS:
            tape.show(now_ms)  # a minute of the shown day, nothing else changing by then
            return
        if now_ms < self._now_ms:
            raise MarketDataError(
                f"replay time cannot go back: at {self._now_ms}, asked for {now_ms}"
            )
        if tape is not None:
            tape.advance_to(now_ms)
            return
        target = now_ms // MINUTE_MS
        rings = self._rings
        while rings.minute < target:
            closing = self._minute(rings.minute, rings.n)
            rings.set_current(
                closing.open, closing.high, closing.low, closing.close, closing.volume, closing.quote_volume,
                closing.valid,
            )  # fmt: skip
            self._traded_ms[: rings.n][closing.volume > 0.0] = (rings.minute + 1) * MINUTE_MS
            self._open_minute(rings.minute + 1)
        self._show(now_ms)
        self._halt_due(target)

    def replay_ahead(self, link: TapeLink | None = None) -> None:
        """From now on, replay whole minutes only, computed a day at a time (`_Tape`): the same
        tickers and quotes, minute for minute, without the rings. Candles then come from the
        store (`engine.backtest.feed.CandleSlicer`): `klines` refuses. Only from the start of a
        minute (else a later call switches). With `link`, the days are computed and shared, or
        taken from the process that computes them (`SharedDays`)."""
        if self._tape is None and self._now_ms == self._rings.minute * MINUTE_MS:
            self._tape = _Tape(self, link)

    @property
    def ahead(self) -> bool:
        """Whether `replay_ahead` switched this market to its tape (for good)."""
        return self._tape is not None

    def tickers(self) -> TickerBatch:
        return super().tickers() if self._tape is None or not self._tape.moved else self._tape.batch

    def run(self, now_ms: int, limit: int) -> TickerRun | None:
        """Up to `limit` whole minutes from `now_ms` on as one `TickerRun` (`_Tape.run`), the
        market left at the last of them; None before `replay_ahead` switched the tape on."""
        if self._tape is None:
            return None
        return self._tape.run(now_ms, limit)

    def last_price(self, symbol: str) -> float:
        if self._tape is None or not self._tape.moved:
            return super().last_price(symbol)
        return self._tape.last_price(self._index_of(symbol))

    def book(self, symbol: str) -> tuple[float, float, float, float]:
        if self._tape is None or not self._tape.moved:  # the rings still hold the switch's minute
            return super().book(symbol)
        return self._tape.book(self._index_of(symbol))

    def books(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        if self._tape is None or not self._tape.moved:
            return super().books()
        return self._tape.books()

    def klines(
        self, symbol: str, timeframe: str, *, start_ms: int | None = None, end_ms: int | None = None, limit: int = 500
    ) -> list[Candle]:
        if self._tape is not None:
            self._index_of(symbol)  # an unknown or unlisted symbol says so first
            raise MarketDataError(
                f"{symbol} {timeframe} candles: this replay computes its minutes ahead, without candle "
                "rings; read candles from the history store"
            )
        return super().klines(symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit)

    def minute_volumes(self, end_ms: int, minutes: int) -> MinuteVolumes:
        if self._tape is not None:  # the rings stopped at the switch
            raise MarketDataError("this replay computes its minutes ahead, without candle rings: no minute volumes")
        return super().minute_volumes(end_ms, minutes)

    @property
    def ground_truth(self) -> tuple[PumpEvent, ...]:
        """Major pump episodes (+30% within an hour) from `events.csv` beside the files, if any:
        start = the labelled low, peak = the labelled high, end = peak."""
        return self._events

    @functools.cached_property
    def _events(self) -> tuple[PumpEvent, ...]:
        """`events.csv` read when first asked for: a backtest never asks (~2 ms of each of its
        processes' markets)."""
        return _read_events(self._events_csv, set(self._all_symbols))

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

    def _halt_due(self, minute: int) -> None:
        """Halt the pairs whose data ended before `minute` (listed ones: the rest halt once they list)."""
        while self._halts and self._halts[0][0] <= minute and self._halts[0][1] < self._rings.n:
            self._halt(self._halts.pop(0)[1])

    def _event_times(self, n: int) -> IntArray:
        """When each pair last traded (see the module docstring): now where the running minute
        has shown volume, else the end of its last minute that traded."""
        running = self._rings.volume[self._rings.slot, :n] > 0.0
        return np.where(running, self._now_ms, self._traded_ms[:n])

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


class _Tape:
    """A `ParquetMarket`'s whole minutes from the time it was switched on, a day at a time.

    Stepping a replay a minute at a time costs ~0.3 ms a minute in per-call overhead (rings,
    24 h stats, quotes), paid by both processes of a backtest. At a minute boundary the
    running candle has only opened, so what `advance_to` + `tickers()` show is a function of
    the file's candles and the rings' closed minutes: the price is the open on tick, the
    current candle's high and low are the open and that price, its volume is 0. The tape
    computes those for a day of minutes at once (`_DayMaker`), or takes each day from the
    process that computes it (`SharedDays`). `tests/engine/sim/test_parquet_source.py`
    compares the two paths batch for batch, across listings and outages.

    A minute inside the shown day before anything else changes (the day's end, the next
    listing, the next halt: `until_ms`) is shown by `show` alone, which `ParquetMarket.advance_to`
    calls straight: a backtest's trading process moves the tape once a minute, or by a jump of
    several minutes, ~40,000 times a month."""

    def __init__(self, market: ParquetMarket, link: TapeLink | None = None) -> None:
        self.market = market
        self.link = link
        n_all = len(market._all_symbols)
        self.first_minute = market._first_minute
        mul_div = [_mul_div(e) for e in market._tick_exps]
        self.tick_mul = np.array([m for m, _ in mul_div])
        self.tick_div = np.array([d for _, d in mul_div])
        listing = np.array([market._tick_round(p, e) for p, e in zip(market._first_open, market._tick_exps, strict=True)])
        steps = [_mul_div(step_exponent(float(p))) for p in listing]
        self.step_mul = np.array([m for m, _ in steps])
        self.step_div = np.array([d for _, d in steps])
        self.minute = market._rings.minute  # the minute shown last (the switch's own, by the rings)
        # a tape that takes its days from the process computing them carries no rolling state
        taker = link is not None and link.alive is not None
        self._maker = None if taker else _DayMaker(market, self.tick_mul, self.tick_div, listing)
        self._day: dict[str, FloatArray] = {}
        self._day_start = self.minute + 1  # first minute of the day shown
        self._day_len = 0
        self._no_count = np.full(n_all, -1, np.int64)
        self._no_count.setflags(write=False)  # batches share it (and the day tables below) read-only
        self._event_ms = np.zeros((0, n_all), np.int64)  # the shown day's ticker event times, by minute and pair
        self._tables: tuple[npt.NDArray[np.generic], ...] = (np.zeros(0),)  # the shown day's, once read (`_row_tables`)
        self.until_ms = 0  # `show` alone moves the tape to any minute before this one
        self.moved = False  # until the first minute it shows, the rings answer
        self.batch: TickerBatch  # the minute shown, once moved

    def advance_to(self, now_ms: int) -> None:
        """Show the start of the minute at `now_ms` (a tape moves in whole minutes only), with
        the market's listings and halts due by then."""
        minute = now_ms // MINUTE_MS
        if now_ms % MINUTE_MS or minute < self.minute:
            raise MarketDataError(
                f"a replay computed ahead shows whole minutes, forwards: at {self.minute * MINUTE_MS}, "
                f"asked for {now_ms}"
            )
        if minute == self.minute:
            return
        while minute >= self._day_start + self._day_len:
            self._next_day()
        market = self.market
        while len(market._symbols) < len(market._all_symbols) and self.first_minute[len(market._symbols)] <= minute:
            market._list(len(market._symbols))
        market._halt_due(minute)
        if self._tables[0] is not self._event_ms:  # a new day shown
            self._tables = self._row_tables()
        self.until_ms = self._until(minute) * MINUTE_MS
        self.show(now_ms)

    def show(self, now_ms: int) -> None:
        """Show the minute at `now_ms`, a row of the shown day, with nothing else to change
        (`until_ms`). Its prices are read from the day's table where asked for (`book`,
        `books`, `last_price`), not copied into the market's every minute."""
        self.market._now_ms = now_ms
        self.minute = minute = now_ms // MINUTE_MS
        self.moved = True
        # its rows cut only when read
        self.batch = DayRowBatch.of(now_ms, self.market._symbols, self._tables, minute - self._day_start)

    def _until(self, minute: int) -> int:
        """The first minute after `minute` at which more than the shown row changes: the shown
        day's end, the next listing, the next halt (one due already waits for its pair to list)."""
        market = self.market
        until = self._day_start + self._day_len
        listed = len(market._symbols)
        if listed < len(market._all_symbols):
            until = min(until, int(self.first_minute[listed]))
        if market._halts and market._halts[0][0] > minute:
            until = min(until, market._halts[0][0])
        return until

    def _row_tables(self) -> tuple[npt.NDArray[np.generic], ...]:
        """The shown day's tables in `DayRowBatch`'s order, frozen already: a replay has no trade
        counts (-1 for every pair, every minute)."""
        d = self._day
        counts = np.broadcast_to(self._no_count, self._event_ms.shape)
        return (
            self._event_ms, d["price"], d["bid"], d["ask"], d["open_24h"], d["high_24h"], d["low_24h"],
            d["base_volume_24h"], d["quote_volume_24h"], counts,
        )  # fmt: skip

    def run(self, now_ms: int, limit: int) -> TickerRun:
        """The whole minutes from `now_ms` on, up to `limit` of them, as one run of views of the
        day tables: cut at the computed day's end and before the next listing or halt (a run
        names the same symbols and markets throughout). The tape is left as `advance_to` the
        run's last minute leaves it. `tests/engine/sim/test_parquet_source.py` compares a run
        with minute-by-minute batches."""
        self.advance_to(now_ms)  # lists and halts what does so at the first minute, computes its day if needed
        market, first = self.market, self.minute
        i0 = first - self._day_start
        end = min(first + limit, self.until_ms // MINUTE_MS)
        i1, n, d = end - self._day_start, len(market._symbols), self._day
        ts = np.arange(first, end, dtype=np.int64) * MINUTE_MS
        price = d["price"][i0:i1, :n]
        run = TickerRun(
            ts, market._symbols, self._event_ms[i0:i1, :n], price, d["bid"][i0:i1, :n], d["ask"][i0:i1, :n],
            d["open_24h"][i0:i1, :n], d["high_24h"][i0:i1, :n], d["low_24h"][i0:i1, :n],
            d["base_volume_24h"][i0:i1, :n], d["quote_volume_24h"][i0:i1, :n],
            np.broadcast_to(self._no_count[:n], price.shape),
        )  # fmt: skip
        if end - 1 > first:
            self.show(int(ts[-1]))
        return run

    def last_price(self, i: int) -> float:
        return float(self._day["price"][self.minute - self._day_start, i])

    def book(self, i: int) -> tuple[float, float, float, float]:
        k = self.minute - self._day_start
        bid, bid_qty, ask, ask_qty = quotes(
            self._day["price"][k, i], self.tick_mul[i], self.tick_div[i], self.step_mul[i], self.step_div[i],
            self._day["quote_volume_24h"][k, i],
        )  # fmt: skip
        return float(bid), float(bid_qty), float(ask), float(ask_qty)

    def books(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        n = len(self.market._symbols)
        k = self.minute - self._day_start
        out: tuple[FloatArray, FloatArray, FloatArray, FloatArray] = quotes(
            self._day["price"][k, :n], self.tick_mul[:n], self.tick_div[:n], self.step_mul[:n], self.step_div[:n],
            self._day["quote_volume_24h"][k, :n],
        )  # fmt: skip
        return out

    def _next_day(self) -> None:
        """Show the day after the one shown: computed here (and put for the other process, where
        this tape writes a `SharedDays`), or taken from the process that computes it. Every day
        is shared, the first included: the writer computes a day when its tape reaches it,
        needing nothing of the taker to get there (`SharedDays` says why neither waits forever)."""
        link = self.link
        if self._maker is None:  # a taker
            assert link is not None and link.alive is not None
            day = link.days.take(self._day_start + self._day_len, len(self.first_minute), link.alive)
        else:
            day = self._maker.day(WINDOW_MINUTES)
            if link is not None:
                link.days.put(day)
        self._day, self._event_ms, self._day_start, self._day_len = day.tables, day.event_ms, day.start, day.count


class _DayMaker:
    """A computing tape's days (`_Tape`): what it carries from one day to the next, and the
    day's working arrays, allocated once.

    Carried: the closed minutes' candles (open, high, low, volume) and quote volumes, a day
    behind the next day and each day computed since (from the rings as they were at the
    switch, exact, then from the files: what the rings would have been written with, the
    candle when a pair is listed, its listing price and no volume before); the 24 h running
    sums; when each pair last traded. A day's 24 h extremes are sliding maxima and minima over
    the closed minutes (`_sliding`, exact in any order); its 24 h volume sums the rings' own
    additions in the rings' order (`_running_sums`), so they round the same.

    The working arrays are kept because fresh memory is paid in page faults (~1-2 us a 4 KB
    page on this kind of box): a day's first use of ~10 MB of new arrays cost ~7 ms on top of
    the ~4 ms of its arithmetic. Only the day's tables are new every day: the minutes' batches
    are views of them, kept as long as their readers like."""

    def __init__(self, market: ParquetMarket, tick_mul: FloatArray, tick_div: FloatArray, listing: FloatArray) -> None:
        rings = market._rings
        n_all = len(market._all_symbols)
        self.grid, self.grid_start, self.first_minute = market._grid, market._grid_start, market._first_minute
        self.tick_mul, self.tick_div, self.listing = tick_mul, tick_div, listing
        m, n = rings.minute, rings.n
        rows = np.arange(m - WINDOW_MINUTES, m) % rings.ring_minutes  # closed minutes m-1440 .. m-1
        # rows 0 .. end-1 hold the closed minutes; one row more, the opening minute after a day's last
        self.closed = np.empty((4, CLOSED_ROWS + 1, n_all))
        self.quote = np.zeros((CLOSED_ROWS, n_all), np.float32)
        self.end = WINDOW_MINUTES
        self.closed[:3, :WINDOW_MINUTES] = listing
        self.closed[3, :WINDOW_MINUTES] = 0.0
        for mine, theirs in ((self.closed[0], rings.open), (self.closed[1], rings.high), (self.closed[2], rings.low),
                             (self.closed[3], rings.volume), (self.quote, rings.quote_volume)):  # fmt: skip
            mine[:WINDOW_MINUTES, :n] = theirs[rows, :n]
        self.sums = np.zeros((2, n_all))  # the 24 h base and quote volume sums of the closed minutes
        self.sums[0, :n] = rings._sum_volume[:n]
        self.sums[1, :n] = rings._sum_quote[:n]
        self.traded_ms = market._traded_ms.copy()  # when each pair last traded, as of the last minute computed
        self.next_start = m + 1  # first minute of the next day to compute
        self._rows = np.empty((5, n_all, WINDOW_MINUTES + 1))  # a day's candles as read, pair-major (`_read`)
        self._work = np.empty((2, WINDOW_MINUTES, n_all))  # a day's ticks, and a table's part
        self._steps = np.empty((2 * WINDOW_MINUTES + 1, n_all), np.complex128)  # `_running_sums`
        self._passes = np.empty((2, 2 * WINDOW_MINUTES, n_all))  # `_sliding`

    def day(self, count: int) -> _Day:
        """The next `count` minutes (at most a day) as shown at their start; the rolling state
        moves on to their end."""
        first, end = self.next_start, self._room(count)
        self._read(first, end, count)
        self._unlisted(first, end, count)
        block = np.empty((len(DAY_TABLES), count, len(self.first_minute)))
        price, open_24h, high_24h, low_24h, base_volume, quote_volume, bid, ask = block
        # each minute's open, as it opens (a pair's listing price before it lists, never shown)
        shown = self.closed[0, end + 1 : end + count + 1]
        ticks = tick_counts(shown, self.tick_mul, self.tick_div, out=self._work[0, :count])
        np.divide(np.multiply(ticks, self.tick_mul, out=price), self.tick_div, out=price)  # `on_tick`'s, its ticks kept
        self._extremes(end, shown, price, (open_24h, high_24h, low_24h))
        self._volumes(end, count, base_volume, quote_volume)
        bid_ask_ticks(ticks, self.tick_mul, self.tick_div, quote_volume, out=(bid, ask))
        traded = self.closed[3, end : end + count] > 0.0
        event_ms = _event_times(traded, np.arange(first, first + count, dtype=np.int64) * MINUTE_MS, self.traded_ms)
        self.traded_ms = event_ms[-1].copy()
        block.setflags(write=False)  # the minutes' batches are views of these (`DayRowBatch`, `TickerRun`)
        event_ms.setflags(write=False)
        self.next_start = first + count
        return _Day(first, count, dict(zip(DAY_TABLES, block, strict=True)), event_ms)

    def _extremes(
        self, end: int, shown: FloatArray, price: FloatArray, out: tuple[FloatArray, FloatArray, FloatArray]
    ) -> None:
        """The day's 24 h open, high and low into `out`: the window's closed minutes (minute k
        sees k-1439 .. k-1, rows from end-1438 on), and the running candle, which has only
        opened (its open and its price on tick)."""
        o, h, lo, _ = self.closed
        open_24h, high_24h, low_24h = out
        w, count = WINDOW_MINUTES - 1, len(price)
        part = self._work[1, :count]
        np.copyto(open_24h, o[end - w + 1 : end - w + 1 + count])
        np.maximum(_sliding(h[end - w + 1 : end + count], w, np.maximum, high_24h, self._passes),
                   np.maximum(shown, price, out=part), out=high_24h)  # fmt: skip
        np.minimum(_sliding(lo[end - w + 1 : end + count], w, np.minimum, low_24h, self._passes),
                   np.minimum(shown, price, out=part), out=low_24h)  # fmt: skip

    def _volumes(self, end: int, count: int, base_volume: FloatArray, quote_volume: FloatArray) -> None:
        """The day's 24 h volume sums into `base_volume` and `quote_volume`, the rings' running
        sums: as minute first+k closes, the minute before it (row end+k) comes in and the one
        1440 before that (row end+k-1439) leaves; the running candle has traded nothing yet."""
        v, quote, gone = self.closed[3], self.quote, end - (WINDOW_MINUTES - 1)
        new, old = slice(end, end + count), slice(gone, gone + count)
        sums = _running_sums(self.sums, (v[new], quote[new]), (v[old], quote[old]), self._steps[: 2 * count + 1])
        for carried, day_sums, table in zip(self.sums, sums, (base_volume, quote_volume), strict=True):
            carried[:] = day_sums[-1]
            np.add(day_sums, 0.0, out=table)

    def _room(self, count: int) -> int:
        """The row the next `count` closed minutes start at: after the last, or, once the rows
        are full, after the last day moved to the front (a day's copy a week, not the last
        day's and the new one's concatenated each day)."""
        end = self.end
        if end + count > CLOSED_ROWS:
            self.closed[:, :WINDOW_MINUTES] = self.closed[:, end - WINDOW_MINUTES : end]
            self.quote[:WINDOW_MINUTES] = self.quote[end - WINDOW_MINUTES : end]
            end = WINDOW_MINUTES
        self.end = end + count
        return end

    def _read(self, first: int, end: int, count: int) -> None:
        """Minutes first-1 .. first+count-1 from the files into rows end .. end+count: the
        closed ones' candles and quote volumes (as `_Minute.quote_volume` gives them, rounded
        to float32 as the rings keep them), and the day's last shown open. Read pair-major
        (`_Grid.fill`), computed so, then turned into rows a field at a time."""
        rows = self._rows[:, :, : count + 1]
        self.grid.fill(first - 1 - self.grid_start, rows)
        o, h, lo, c, v = rows
        for mine, by_pair in zip(self.closed, (o, h, lo, v), strict=True):
            np.copyto(mine[end : end + count + 1], by_pair.T)
        quote = np.add(h, lo, out=h)  # the highs are in the rows already
        quote += c
        np.multiply(v, quote, out=quote)
        np.divide(quote, 3.0, out=quote)
        np.copyto(self.quote[end : end + count], quote[:, :count].T, casting="same_kind")

    def _unlisted(self, first: int, end: int, count: int) -> None:
        """The closed minutes first-1 .. first+count-2 (rows end ..) of the pairs not listed in
        them yet: the listing price and no volume, as the rings hold a pair before it lists."""
        for j in np.flatnonzero(self.first_minute > first - 1).tolist():
            rows = slice(end, end + min(int(self.first_minute[j]) - (first - 1), count))
            self.closed[:3, rows, j] = self.listing[j]
            self.closed[3, rows, j] = 0.0
            self.quote[rows, j] = 0.0


DAY_TABLES = ("price", "open_24h", "high_24h", "low_24h", "base_volume_24h", "quote_volume_24h", "bid", "ask")


@dataclass(frozen=True, slots=True)
class _Day:
    """A tape's day: minutes start .. start+count-1 as shown at their start, [minute, pair]
    tables (`DAY_TABLES`, float64) and the tickers' event times, all read-only."""

    start: int
    count: int
    tables: dict[str, FloatArray]
    event_ms: IntArray


class SharedDays:
    """A ring of `slots` tape days in memory shared with a forked process: the forked process
    (a backtest's discovery) computes each day once, when its tape reaches it, and puts it
    here; the process that made the ring before the fork (the trading process) takes it
    instead of computing it again (the module docstring says why that way round).

    Order and visibility: `put` waits for a free slot (`_free`, `slots` of them to start),
    writes it and posts `_ready`; `take` waits on `_ready`, checks the slot holds the day it
    expects (the two tapes must switch on the same minute), copies it out and only then frees
    the slot: a slot is never written while the taker may still read it, however far ahead
    the writer runs.

    Neither side waits forever, given how a backtest couples them: the writer's results reach
    the taker through a pipe in chunks of at most `CHUNK_BATCHES` minutes (480, far less than a
    day; engine.backtest.discovery_process), and the taker's tape reaches a day's first minute
    only once the core has taken the result of every minute before it.
    - The taker waits on day D only once it has taken every day before D; the writer, not
      having put D, has then put no more than that, so every slot is free. To put D, the
      writer only has to reach D's first minute, which needs nothing of the taker: not even
      room in the pipe, as the taker has read every result before that minute and the writer
      has none after it yet.
    - The writer waits for a free slot to put day D only while the taker has not taken day
      D - slots, i.e. the taker is before that day's first minute. The results it needs to get
      there are all sent: the writer's unsent partial chunk lies within the day before D, at
      least `slots - 1` >= 1 days after it. So the taker moves on, takes that day and frees its
      slot.
    In a backtest the writer (discovery) runs at most ~1.7 days ahead of the taker with the
    journal off (its pipe holds 1 MiB of results; far less with the journal on), so with 4
    slots it never waits at all.

    The writer computes each day only when its tape reaches it, not ahead of itself: it runs
    ahead of the taker anyway, and a day computed ahead is one it could wait on a free slot
    for while it has discovery's work to do.

    A side kept waiting checks every `POLL_S` that the other still runs (the taker through
    `alive`, given by the backtest: its discovery process's; the writer by its parent) and says
    so if it has gone, rather than waiting forever.

    The taker copies each day (~0.7 ms) rather than reading the slot in place: the trading
    core may keep views of a day (its batches) for as long as it likes, and the slot is reused."""

    POLL_S = 1.0  # how often a side kept waiting checks the other process still runs

    def __init__(self, pairs: int, slots: int = 4) -> None:
        if slots < 2:
            raise ValueError(f"SharedDays needs at least 2 slots, got {slots}")
        self.pairs, self.slots = pairs, slots
        self._items = (len(DAY_TABLES) + 1) * WINDOW_MINUTES * pairs  # 8-byte items a slot holds
        self._memory = mmap.mmap(-1, 8 * slots * (4 + self._items))  # anonymous: shared across a fork
        self._heads = np.frombuffer(self._memory, np.int64, 4 * slots).reshape(slots, 4)  # seq, start, count, pairs
        self._heads[:, 0] = -1
        ctx = mp.get_context("fork")
        self._ready, self._free = ctx.Semaphore(0), ctx.Semaphore(slots)
        self._maker = os.getpid()
        self._put = self._taken = 0

    def writer(self) -> TapeLink:
        """The computing process's end (the forked one)."""
        return TapeLink(self)

    def reader(self, alive: Callable[[], bool]) -> TapeLink:
        """The taking process's end; `alive` says whether the computing process still runs."""
        return TapeLink(self, alive)

    def put(self, day: _Day) -> None:
        """The next day, into its slot once the taker has copied what the slot held; then the
        taker may have it."""
        n = day.event_ms.shape[1]
        if n > self.pairs or day.count > WINDOW_MINUTES:
            raise MarketDataError(f"a tape day of {day.count} minutes x {n} pairs exceeds the shared slots' "
                                  f"{WINDOW_MINUTES} x {self.pairs}")  # fmt: skip
        self._wait(self._free, lambda: os.getppid() == self._maker, "the process taking the replay's days has gone")
        k = self._put % self.slots
        floats, ints = self._slot(k, day.count, n)
        for table, name in zip(floats, DAY_TABLES, strict=True):
            table[:] = day.tables[name]
        ints[:] = day.event_ms
        self._heads[k] = (self._put, day.start, day.count, n)
        self._put += 1
        self._ready.release()

    def take(self, start: int, pairs: int, alive: Callable[[], bool]) -> _Day:
        """The next day, which must start at minute `start` and hold `pairs` pairs, copied out
        of its slot; waits until the computing process has put it (`alive`: whether it still runs)."""
        self._wait(self._ready, alive, "the process computing the replay's days has gone")
        k = self._taken % self.slots
        seq, first, count, n = self._heads[k].tolist()
        if (seq, first, n) != (self._taken, start, pairs):
            raise MarketDataError(
                f"shared tape day {seq} starts at minute {first} with {n} pairs; this replay expected day "
                f"{self._taken} at {start} with {pairs}: the two replays diverged"
            )
        self._taken += 1
        floats, ints = self._slot(k, count, n)
        tables, event_ms = np.array(floats), np.array(ints)  # copies: the slot is reused
        self._free.release()
        tables.setflags(write=False)
        event_ms.setflags(write=False)
        return _Day(start, count, dict(zip(DAY_TABLES, tables, strict=True)), event_ms)

    def _wait(self, semaphore: Semaphore, running: Callable[[], bool], gone: str) -> None:
        """Acquire `semaphore`, checking every `POLL_S` that the process that would post it is
        `running`; a MarketDataError saying `gone` once it is not (and has not posted)."""
        while not semaphore.acquire(timeout=self.POLL_S):
            if not running():
                if semaphore.acquire(block=False):  # posted just before it ended
                    return
                raise MarketDataError(gone)

    def _slot(self, k: int, count: int, n: int) -> tuple[FloatArray, IntArray]:
        """Slot k as [table, minute, pair] floats and [minute, pair] event times."""
        offset = 8 * (4 * self.slots + k * self._items)
        size = count * n
        floats = np.frombuffer(self._memory, np.float64, len(DAY_TABLES) * size, offset)
        ints = np.frombuffer(self._memory, np.int64, size, offset + 8 * len(DAY_TABLES) * size)
        return floats.reshape(len(DAY_TABLES), count, n), ints.reshape(count, n)


@dataclass(frozen=True, slots=True)
class TapeLink:
    """One process's end of a `SharedDays`: without `alive`, the writer's (it computes the days
    and puts them); with it, the taker's (`alive`: whether the writing process still runs)."""

    days: SharedDays
    alive: Callable[[], bool] | None = None


def replay_files(directory: Path, quote: str) -> list[Path]:
    """The 1m files a `ParquetMarket` over `directory` replays, sorted."""
    return sorted(Path(directory).glob(f"*_{quote}-1m.parquet"))


def _running_sums(
    starts: FloatArray, added: tuple[Floats, Floats], dropped: tuple[Floats, Floats], steps: ComplexArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Two rings' running sums after each step k, each `s += added[k]; s -= dropped[k]; s =
    max(s, 0)` from its start (`starts` [2, pairs]), as [step, pair] arrays (views of `steps`
    where given, a [2 * steps + 1, pairs] complex array).

    One sequential accumulate over start, +added[0], -dropped[0], +added[1], ...: the same
    additions in the same order as stepping (x - y is x + -y exactly), so the same roundings,
    in a few numpy calls for a day instead of eight a minute. The two rings' steps are the
    real and imaginary parts of one complex accumulate, whose additions add each part on its
    own with the same rounding: an accumulate runs one value after another (~3.3 ns each here,
    each addition waiting on the one before), and a complex value carries two, so the pair
    costs what one sum did. Where a sum would fall below zero the clamp changes what follows,
    so that ring's day is stepped as the rings step it (`_stepped_sums`)."""
    count, n = added[0].shape
    if steps is None:
        steps = np.empty((2 * count + 1, n), np.complex128)
    parts = (steps.real, steps.imag)
    for part, start, plus, minus in zip(parts, starts, added, dropped, strict=True):
        part[0] = start
        part[1::2] = plus
        np.negative(minus, out=part[2::2])
    np.add.accumulate(steps, axis=0, out=steps)
    volume, quote = (
        _stepped_sums(start, plus, minus) if (part[2::2] < 0.0).any() else part[2::2]
        for part, start, plus, minus in zip(parts, starts, added, dropped, strict=True)
    )
    return volume, quote


def _stepped_sums(start: FloatArray, added: Floats, dropped: Floats) -> FloatArray:
    """A ring's running sums stepped as the rings step them, the clamp at zero included."""
    sums = np.empty(added.shape)
    s = start.copy()
    for k in range(len(added)):
        s += added[k]
        s -= dropped[k]
        np.maximum(s, 0.0, out=s)
        sums[k] = s
    return sums


def _event_times(traded: BoolArray, shown_ms: IntArray, before: IntArray) -> IntArray:
    """A tape's ticker event times, [minute, pair]: a pair's changes when a closed minute traded
    (`traded`; the running one has shown nothing yet), else holds, from `before`. The last
    traded time so far is a running maximum, needed only for the pairs with a minute that did
    not trade (a few a day): the others show each minute's own time, the largest so far."""
    event_ms: IntArray = np.empty(traded.shape, np.int64)
    event_ms[:] = shown_ms[:, None]
    idle = np.flatnonzero(~traded.all(axis=0))
    if len(idle):
        held = np.where(traded[:, idle], shown_ms[:, None], before[idle])
        event_ms[:, idle] = np.maximum.accumulate(held, axis=0)
    return event_ms


def _sliding(
    a: FloatArray, w: int, op: np.ufunc, out: FloatArray | None = None, passes: FloatArray | None = None
) -> FloatArray:
    """op (maximum or minimum) over every `w` consecutive rows of `a`: row i of the result covers
    rows i .. i+w-1 (into `out` where given; `passes`, [2, rows - 1, ...], holds the passes).

    A sparse table: after the pass of span s, row i holds op over rows i .. i+2s-1; spans double
    while they fit in a window, and two spans of the last, overlapping, cover each window. Each
    pass is one ufunc call across whole rows (~0.2 ns a value), where an accumulate runs down a
    column one value after another (~3.3 ns each): a tape's day's 24 h high ~0.22 ms against
    ~0.4 ms for van Herk / Gil-Werman's two accumulates (this function's former way). Exact, as
    max and min are in any order (a NaN in a window gives NaN either way)."""
    m = len(a) - w + 1
    if passes is None:
        passes = np.empty((2, max(len(a) - 1, 0), *a.shape[1:]))
    cur, span, k = a, 1, 0
    while 2 * span <= w:
        rows = len(cur) - span
        op(cur[:rows], cur[span:], out=passes[k, :rows])
        cur, span, k = passes[k, :rows], 2 * span, 1 - k
    result: FloatArray = op(cur[:m], cur[w - span : w - span + m], out=out)
    return result


def read_columns(path: Path, columns: list[str]) -> pa.Table | CandleColumns:
    """`columns` of one Parquet file, through `ParquetFile`, not `pq.read_table`: that one goes
    through `pyarrow.dataset`, which imports pandas (0.35 s) and costs ~15 ms a file more.
    Decoded tables are kept (`TABLES`): a backtest reads a file up to three times (index,
    replay market, candle series), and an optimize worker runs many backtests on the same files.
    A whole store file comes from the decoded-candle cache where it is there (`candle_cache`):
    its columns mapped from disk (`CandleColumns`), no decoding."""
    return TABLES.read(path, columns)


class TableCache:
    """Decoded Parquet columns by file identity, least recently used dropped past `max_bytes`.

    Sharing is safe: Arrow tables are immutable, and `column_array` views them read-only. The key
    is the file's identity (resolved path, inode, size, modification time) and the columns, so
    a file rewritten or replaced (`HistoryStore.append`) is read again. A file modified in the
    last `SETTLE_NS` is read but not kept: file times tick coarsely (a few ms), and two
    same-size writes within one tick would otherwise look like one file.

    Below it, a whole-file read (every one of `COLUMNS`) of a settled file goes through the
    decoded-candle cache on disk (`candle_cache`, keyed on the same identity): mapped from
    there when it holds the file, else decoded and, where the file is store-shaped, saved there
    for the next process."""

    SETTLE_NS = 2_000_000_000

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._tables: OrderedDict[tuple[str, int, int, int, tuple[str, ...]], pa.Table | CandleColumns] = OrderedDict()
        self._lock = threading.Lock()  # a reader thread (e.g. a worker's) may share the process

    def read(self, path: Path, columns: list[str]) -> pa.Table | CandleColumns:
        st = path.stat()
        ident = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
        key = (*ident, tuple(columns))
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
                return table
        if time.time_ns() - st.st_mtime_ns < self.SETTLE_NS:
            return _decode(path, columns)
        cached = tuple(columns) == COLUMNS and candle_cache.enabled()
        table = (candle_cache.load(ident) if cached else None) or _decode(path, columns, ident if cached else None)
        with self._lock:
            if key not in self._tables and table.nbytes <= self.max_bytes:
                self._tables[key] = table
                self.bytes += table.nbytes
                while self.bytes > self.max_bytes:
                    _, old = self._tables.popitem(last=False)
                    self.bytes -= old.nbytes
        return table


TABLES = TableCache(256 << 20)  # the shared month is ~70 MB decoded


def _decode(path: Path, columns: list[str], keep_as: candle_cache.Key | None = None) -> pa.Table:
    """`columns` of the Parquet file `path`, decoded; saved in the decoded-candle cache as
    `keep_as` where given and the file is store-shaped (`_store_columns`). pyarrow is imported
    here, not with the module: a backtest whose files all come from the cache never imports it
    (~50-80 ms of its start)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as file:
        table = file.read(columns=columns)
    if keep_as is not None:
        arrays = _store_columns(table)
        if arrays is not None:
            candle_cache.save(keep_as, arrays)
    return table


def _store_columns(table: pa.Table) -> list[npt.NDArray[Any]] | None:
    """The columns of a store-shaped table (`COLUMNS` in order, int64 open times and float64
    OHLCV, nothing missing), or None for anything else (a Parquet timestamp column, another
    type, a null), which is decoded every time as before rather than kept in a form that
    would have to repeat `column_array`'s conversions."""
    import pyarrow as pa

    types = [pa.int64()] + [pa.float64()] * (len(COLUMNS) - 1)
    if table.column_names != list(COLUMNS) or table.schema.types != types:
        return None
    if any(column.null_count for column in table.columns):
        return None
    return [column_array(table, name, dtype) for name, dtype in zip(COLUMNS, types, strict=True)]


_UNITS_PER_MS = {"s": (1, 1000), "ms": (1, 1), "us": (1000, 1), "ns": (1_000_000, 1)}  # unit -> (per ms, ms per)
EARLIEST_OPEN_MS = 1_262_304_000_000  # 2010-01-01: no exchange candle is older


def open_time_problem(ts: IntArray) -> tuple[int, str] | None:
    """(row, what) of the first open time that cannot be epoch milliseconds of a candle: before
    2010 or after tomorrow. Seconds or microseconds stored as plain integers (or any unit read
    wrongly) land there; read as they are, the pair silently vanishes from the replay's window
    and a backtest without --to runs towards year 50,000."""
    latest = time.time_ns() // 1_000_000 + 86_400_000
    bad = (ts < EARLIEST_OPEN_MS) | (ts > latest)
    if not bad.any():
        return None
    row = int(np.flatnonzero(bad)[0])
    return row, (
        f"open time {int(ts[row])} is not epoch milliseconds between 2010 and tomorrow "
        "(timestamp_ms must be the candle's open time in UTC milliseconds)"
    )


def column_array(table: pa.Table | CandleColumns, name: str, dtype: pa.DataType) -> npt.NDArray[Any]:
    """Column `name` cast to `dtype` (int64 or float64) as a numpy array, read from the Arrow
    buffers: pyarrow's own `to_numpy` imports pandas (0.35 s) on first use. A missing float is
    NaN (through pyarrow's path, which only bad data pays for); a missing integer is a
    ValueError naming the column. A column already of `dtype` is not cast: casting imports
    pyarrow.compute (~65 ms a process). A Parquet timestamp column read as int64 is converted
    by its unit to epoch milliseconds (a raw cast kept nanoseconds as they were).

    A column in one chunk (a store file's) is a read-only view of the table's buffer, not a
    copy: the tables are kept and shared (`TableCache`), and a backtest reads each file's
    columns three times (index, replay market, candle series): ~200 copies of 0.3 MB each,
    ~0.05 s of its start on the shared month. A file read from the decoded-candle cache
    (`CandleColumns`) gives its mapped column as it is (cast as above where `dtype` is not
    its own)."""
    import pyarrow as pa

    item = {pa.int64(): np.dtype(np.int64), pa.float64(): np.dtype(np.float64)}[dtype]
    if isinstance(table, CandleColumns):
        array = table.arrays[name]
        if array.dtype == item:
            return array
        table = pa.table({name: array})  # another type: Arrow's cast, as for a decoded file
    column = table.column(name)
    per_ms = _UNITS_PER_MS.get(column.type.unit) if pa.types.is_timestamp(column.type) and dtype == pa.int64() else None
    if per_ms is not None:
        # a timestamp column is read as epoch ms whatever its unit: cast raw, nanoseconds read as
        # milliseconds put the pair a million times later, where no replay ever reaches it
        raw = column_array(pa.table({name: column.cast(pa.int64())}), name, dtype)
        return raw * per_ms[1] // per_ms[0]
    if column.type != dtype:
        column = column.cast(dtype)
    if column.null_count:
        if item.kind != "f":
            raise ValueError(f"column {name} has {column.null_count} missing values")
        return np.asarray(column.to_numpy(), dtype=item)
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=item, count=len(chunk), offset=chunk.offset * item.itemsize)
        for chunk in column.chunks
    ]
    if len(parts) != 1:
        return np.concatenate(parts)
    parts[0].setflags(write=False)  # Arrow's decoded buffers are writable: the kept table must not be
    return parts[0]


def candle_columns(
    table: pa.Table | CandleColumns,
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """A whole-file read's (open times, open, high, low, close, volume): the mapped columns
    themselves for a cached file, with no pyarrow, else through `column_array`."""
    if isinstance(table, CandleColumns):
        ts, o, h, lo, c, v = (table.arrays[name] for name in COLUMNS)
        return ts, o, h, lo, c, v
    import pyarrow as pa

    ts = column_array(table, "timestamp_ms", pa.int64())
    o, h, lo, c, v = (column_array(table, col, pa.float64()) for col in COLUMNS[1:])
    return ts, o, h, lo, c, v


def read_candles(
    path: Path, timeframe: str, *, fix: str | None = None
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """One candle file's (open times, open, high, low, close, volume), checked, for the replay
    market and the history store alike: a file that cannot be read, holds no candles or holds a
    bad one is named, with the row and what is wrong with it. `fix` replaces the advice that
    ends the message where the reader knows a better one (`collect`, about to add to the file,
    cannot be told to re-collect it)."""
    try:
        table = read_columns(path, list(COLUMNS))
        ts, o, h, lo, c, v = candle_columns(table)
    except (OSError, KeyError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise MarketDataError(f"{path}: cannot read columns {', '.join(COLUMNS)} ({exc}); {fix or 're-collect it'}") from exc
    passed = (id(table), timeframe)
    if _PASSED.get(passed) is not table:
        _check_candles(path, timeframe, fix, ts, o, h, lo, c, v)
        _PASSED[passed] = table
    return ts, o, h, lo, c, v


# The kept tables (`TABLES`) whose candles passed `read_candles`' checks, by table and timeframe:
# a backtest reads each file three times (index, replay market, candle series), and the checks
# cost ~0.6 ms a file each time. Keyed on the table object itself (its id, its identity checked:
# an entry goes with its table), so a file read again (rewritten, or too fresh to be kept) is
# checked again; a file that failed is never entered, and fails again with its reader's advice.
_PASSED: weakref.WeakValueDictionary[tuple[int, str], pa.Table | CandleColumns] = weakref.WeakValueDictionary()


def _check_candles(
    path: Path, timeframe: str, fix: str | None, ts: IntArray, o: FloatArray, h: FloatArray, lo: FloatArray,
    c: FloatArray, v: FloatArray,
) -> None:  # fmt: skip
    """`read_candles`' checks: a file with no candles or a bad one is named, with the row."""
    if len(ts) == 0:
        raise MarketDataError(f"{path}: no candles; {fix or 'delete it or re-collect it'}")
    step = timeframe_ms(timeframe)
    problems = (  # (rows at fault, the first mask entry's row, what is wrong)
        # each open time against the one before (not `np.diff` with a prepended time: ~20x dearer)
        (ts[1:] <= ts[:-1], 1, "timestamps are not strictly increasing"),
        (ts % step != 0, 0, f"a timestamp is not aligned to {timeframe}"),
    )
    found = open_time_problem(ts)  # first: seconds stored as ms are misaligned too, and that says less
    found = found or next(
        ((int(np.flatnonzero(bad)[0]) + first, what) for bad, first, what in problems if bad.any()), None
    )
    found = found or candle_problem(o, h, lo, c, v)
    if found is not None:
        row, what = found
        raise MarketDataError(f"{path}: {what} (row {row}); {fix or 'fix or remove the file'}")


Columns = tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]  # open, high, low, close, volume


def _read(path: Path, quote: str) -> tuple[str, IntArray, Columns]:
    """(symbol, open times, its OHLCV columns) of one 1m file, checked (`read_candles`): the
    columns as they are read, views of the kept table (`column_array`), not stacked into a
    (rows, 5) copy, which cost 20-45 ms a process on the shared month."""
    ts, o, h, lo, c, v = read_candles(path, "1m")
    return f"{path.name.removesuffix(f'_{quote}-1m.parquet')}/{quote}", ts, (o, h, lo, c, v)


class _Grid:
    """Every pair on one minute grid; missing minutes hold the last close with no volume, and
    before its first candle a pair holds its first open.

    Built `chunk` minutes at a time as the replay reaches them, minute-major (the replay reads
    one minute across all pairs; the gap filling runs down the minute axis): a backtest of an
    hour builds an hour or two of grid, not the store's month (~0.15 s and 50 MB for the
    shared data), and a month's backtest builds each chunk once, in order."""

    def __init__(self, loaded: list[tuple[str, IntArray, Columns]], start: int, chunk: int = 1440) -> None:
        self.chunk = chunk
        self._start = start
        # Each pair's candles found by their open times as read (whole minutes, `read_candles`),
        # not converted to grid rows up front: 1.4 M divisions, ~2 ms of each replay's start.
        self._opens = [ts for _, ts, _ in loaded]
        self._columns = [columns for _, _, columns in loaded]
        self.minutes = max(int(ts[-1]) // MINUTE_MS for ts in self._opens) - start + 1
        self.last_close = np.array([columns[3][-1] for columns in self._columns])  # held past the last candle
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

    def fill(self, lo: int, out: FloatArray, valid: BoolArray | None = None) -> None:
        """Grid rows lo .. lo+length-1 of every pair, pair-major: into `out` [field, pair,
        row] (open, high, low, close, volume), and into `valid` [pair, row] where given (True
        where the pair has a candle). Rows before the grid or past its end are filled as the
        grid's own are: a pair holds its first open before its first candle and its last
        close after its last, with no volume.

        Pair-major, as the files are: each pair's row is its columns' slices copied whole,
        where a pair's column of a [row, pair] array is a write a cache line apart each (three
        times the cost on a day of rows). The chunks are built with it, and a replay tape reads
        its day of minutes with it, whatever chunks the day crosses."""
        length = out.shape[2]
        first = self._start + lo
        bounds = (first * MINUTE_MS, (first + length) * MINUTE_MS)
        for j, (opens, columns) in enumerate(zip(self._opens, self._columns, strict=True)):
            a, b = opens.searchsorted(bounds).tolist()
            if b - a == length:  # a candle every minute (open times are distinct): copied as they are
                for field, column in zip(out[:, j], columns, strict=True):
                    field[:] = column[a:b]
                if valid is not None:
                    valid[j] = True
                continue
            at = opens[a:b] // MINUTE_MS - first
            _fill_held(out[:, j], columns, at, a)
            if valid is not None:
                valid[j] = False
                valid[j, at] = True

    def _build(self, k: int) -> None:
        r0 = k * self.chunk
        length = min(self.chunk, self.minutes - r0)
        n = len(self._opens)
        rows, valid = np.empty((5, n, length)), np.empty((n, length), np.bool_)
        self.fill(r0, rows, valid)
        fields = np.empty((5, length, n))
        for field, by_pair in zip(fields, rows, strict=True):
            np.copyto(field, by_pair.T)
        self._k, self._fields, self._valid = k, fields, np.ascontiguousarray(valid.T)


def _fill_held(out: FloatArray, columns: Columns, at: IntArray, a: int) -> None:
    """`_Grid.fill`'s rows ([field, row]) of a pair missing some of them: its candles a, a+1,
    ... at rows `at`, every other row holding the last close before it (the close of candle
    a-1 before the first, the first open where the pair has no candle before) and no volume.
    Most days every pair has every minute and never comes here."""
    last = np.full(out.shape[1], a - 1)  # the pair's last candle at or before each row (-1: none yet)
    last[at] = np.arange(a, a + len(at))
    np.maximum.accumulate(last, out=last)
    held = columns[3][np.maximum(last, 0)]
    held[last < 0] = columns[0][0]
    out[:4] = held
    out[4] = 0.0
    for field, column in zip(out, columns, strict=True):
        field[at] = column[a : a + len(at)]


def _tick_exponent(columns: Columns) -> int:
    """The finest decimal the pair's first 5,000 prices use (Binance prints prices on its
    tick), at most `MAX_DECIMALS`: a finer one could not be served
    (`engine.sim.base.MIN_TICK_EXP`). Tried from the fewest decimals their first hundred
    need up (no fewer can hold for all of them): one or two roundings of the 20,000 instead
    of one for each decimal below (~7 ms of each backtest process's market, 34 pairs)."""
    head = np.concatenate([column[:100] for column in columns[:4]])
    sample = np.concatenate([column[:5000] for column in columns[:4]])
    return -_decimals(sample, _decimals(head, 0))


def _decimals(values: FloatArray, fewest: int) -> int:
    """The fewest decimals from `fewest` up to which `values` round as they are, at most
    `MAX_DECIMALS`."""
    for decimals in range(fewest, MAX_DECIMALS + 1):
        if np.array_equal(np.round(values, decimals), values):
            return decimals
    return MAX_DECIMALS


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
