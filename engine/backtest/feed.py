"""`HistoryFeed`: the replayed market as the runtime sees it, with outages made visible.

A `SimFeed` in lockstep (one batch every `interval_ms` of sim time, no sleeping) over a market
replayed from the history store (`ParquetMarket`), with two differences:

- `data_age_s` is the age of the freshest candle rather than of the last batch: through an
  exchange-wide outage the clock keeps moving, prices hold, and the state machine sees the
  data go stale exactly as a live engine would.
- `candles()` at the replay's own timeframe are sliced straight from the stored arrays instead
  of being rebuilt from the market's minute rings (a third of a cycle's time on the real
  data). They are the same candles: the ring writes each file candle exactly when its minute
  closes, skips missing minutes, and holds candles back to `earliest_ms` (the market's loaded
  history) and at most `ring_minutes` old; this slice applies the same bounds (and the same
  `limit`, counting the running candle when there is one) and drops the running candle, which
  the core never uses. `tests/engine/backtest/test_feed.py` checks the
  two paths candle for candle, around outages and listings included.
- With `ahead` (the backtester's, when every candle the core reads is sliced), the market
  stops stepping its rings after the warm-up and computes its minutes a day at a time
  (`ParquetMarket.replay_ahead`): the same batches and quotes, bit for bit
  (`tests/engine/sim/test_parquet_source.py`), at about a quarter of the cost a minute.

The backtester and the runtime parity test both read the market through this one feed (the
parity test's runtime side without `ahead`, so it also checks the two against each other).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import numpy as np

from engine.backtest.history import CandleSeries, HistoryIndex, HistoryStore
from engine.backtest.stored_bars import StoredBars
from engine.clock import SimClock
from engine.domain import Bars, Candle, MinuteVolumes, TickerBatch, TickerRun
from engine.domain.candle import timeframe_ms
from engine.runtime.feed import SimFeed
from engine.signals.bars import BarStore
from engine.sim.base import RingMarket
from engine.sim.parquet_source import ParquetMarket, TapeLink
from engine.sim.rings import MINUTE_MS, WINDOW_MINUTES

if TYPE_CHECKING:
    from engine.runtime.snapshot import StreamRow


class CandleSlicer:
    """Candles at the replay's own timeframe, sliced from the stored arrays as the replay
    market's ring would show them at a given time (see the module docstring). Shared by
    `HistoryFeed` and the recorded market an optimize trial replays (`engine.backtest.reuse`)."""

    def __init__(self, index: HistoryIndex, store: HistoryStore, earliest_ms: int, ring_minutes: int) -> None:
        self.index = index
        self.store = store
        self.earliest_ms = earliest_ms
        self.ring_ms = ring_minutes * timeframe_ms(index.timeframe)
        self._series: dict[str, CandleSeries] = {}

    def covers(self, symbol: str, timeframe: str, now_ms: int) -> bool:
        """Whether `candles` can answer: the store's timeframe, a pair listed by `now_ms`."""
        first = self.index.first_ms.get(symbol)
        return timeframe == self.index.timeframe and first is not None and first <= now_ms

    def series(self, symbol: str) -> CandleSeries:
        """The pair's stored candles at the store's timeframe, read and checked once per run."""
        s = self._series.get(symbol)
        if s is None:
            s = self._series[symbol] = self.store.read(symbol, self.index.timeframe)
        return s

    def candles(self, symbol: str, timeframe: str, limit: int, after_ms: int | None, now_ms: int) -> list[Candle]:
        """The runtime feed's `candles(symbol, timeframe, limit, after_ms=...)` at `now_ms`
        (only when `covers`): only the candles after `after_ms` are built at all."""
        s = self.series(symbol)
        lo, hi = self._rows(s, timeframe, limit, after_ms, now_ms)
        rows = zip(
            s.ts[lo:hi].tolist(), s.open[lo:hi].tolist(), s.high[lo:hi].tolist(), s.low[lo:hi].tolist(),
            s.close[lo:hi].tolist(), s.volume[lo:hi].tolist(), strict=True,
        )  # fmt: skip
        return [Candle(symbol, timeframe, t, o, h, low, c, v, True) for t, o, h, low, c, v in rows]

    def bars(self, symbol: str, timeframe: str, limit: int, after_ms: int | None, now_ms: int) -> Bars:
        """`candles` as `Bars`: slices of the series, checked when it was read (`read_series`)."""
        s = self.series(symbol)
        lo, hi = self._rows(s, timeframe, limit, after_ms, now_ms)
        # [field, bar] in one np.array call, transposed (np.stack costs several times more)
        ohlcv = np.array((s.open[lo:hi], s.high[lo:hi], s.low[lo:hi], s.close[lo:hi], s.volume[lo:hi])).T
        return Bars(symbol, timeframe, s.ts[lo:hi], ohlcv)

    def _rows(self, s: CandleSeries, timeframe: str, limit: int, after_ms: int | None, now_ms: int) -> tuple[int, int]:
        """The series rows [lo, hi) of the closed candles `candles` returns."""
        tf = timeframe_ms(timeframe)
        current = now_ms // tf * tf  # the running candle opens here; it is not returned
        oldest = max(self.earliest_ms, current - self.ring_ms + tf)
        # Every bound in one search: open times are integers, so "right of t" is "left of t + 1".
        bounds = [oldest, current + 1, current]
        if after_ms is not None:
            bounds.append(after_ms + 1)
        found = s.ts.searchsorted(bounds).tolist()
        lo, end, hi = found[0], found[1], found[2]
        lo = max(lo, end - limit)  # the ring's last `limit` include the running candle (end)...
        if after_ms is not None:  # ...which is then left out (hi)
            lo = max(lo, found[3])
        return lo, max(lo, hi)


def history_streams(index: HistoryIndex, now_ms: int) -> tuple[StreamRow, ...]:
    """The replay's one stream, as the state machine and the UI see it: the candles' age."""
    # the UI's rows: a replay never asks (imported there)
    from engine.runtime.snapshot import StreamRow

    age = index.data_age_s(now_ms)
    state = "connected" if age < 90 else "stale"
    return (StreamRow("history", state, now_ms - int(age * 1000), f"candle replay, data {age:.0f} s old"),)


class HistoryFeed(SimFeed):
    def __init__(
        self,
        market: RingMarket,
        clock: SimClock,
        index: HistoryIndex,
        interval_ms: int = 60_000,
        *,
        slicer: CandleSlicer | None = None,
        ahead: bool = False,
        stored_bars: bool = False,
        tape: TapeLink | None = None,
    ) -> None:
        """`slicer` turns on the sliced candles; without it candles come from the market's rings.
        `ahead`: after the warm-up, a replay market computes its minutes a day at a time
        (`ParquetMarket.replay_ahead`), for a run whose candles all come from the slicer; `tape`
        shares those days with the other process of a backtest (`SharedDays`).
        `stored_bars`: the core reads its bars from the slicer's store in place (`bar_store`)."""
        super().__init__(market, clock, interval_ms, lockstep=True)
        self.index = index
        self.slicer = slicer
        self.ahead = ahead
        self._link = tape
        self.stored_bars = stored_bars
        self._opens: list[int] | None = None  # the index's data minutes as ints, for `data_age_s`
        self._open_set: frozenset[int] = frozenset()  # the same, as a set (filled with `_opens`)
        self._tf_ms = timeframe_ms(index.timeframe)
        self._switched: ParquetMarket | None = None  # the market, once its tape is on (`_tape`)

    def _tape(self) -> ParquetMarket | None:
        """The replay market, switched to computing its minutes ahead (`ahead`, one batch a
        minute); None where batches are stepped through the market's rings. Once switched it
        stays so (`ParquetMarket.replay_ahead` is then a no-op): kept, not asked every minute."""
        if self._switched is not None:
            return self._switched
        if self.ahead and self._interval_ms == MINUTE_MS and isinstance(self.market, ParquetMarket):
            self.market.replay_ahead(self._link)
            if self.market.ahead:
                self._switched = self.market
            return self.market
        return None

    async def warmup(self, step_ms: int) -> AsyncIterator[TickerBatch]:
        """The warm-up's batches, the last at the clock's start; the first trading batch is the
        one after it. A replay whose market starts at the clock's start (a --from at the store's
        first minute: no warm-up before it) has that one batch for its warm-up, so it too trades
        from the minute after --from: N minutes, N cycles, as everywhere else (it had one more,
        at --from itself, before any candle of the window had closed)."""
        if self.market.now_ms < self.clock.start_ms:
            async for batch in super().warmup(step_ms):
                yield batch
            return
        self._last_ms = self.market.now_ms
        yield self.market.tickers()

    def day_volumes(self, end_ms: int) -> MinuteVolumes:
        """The replay market's minute quote volumes of the day before `end_ms` (the first
        warm-up batch), from the candles it loaded before its first minute
        (`backtest.initial_history_minutes`; zeros where the data has none, as in its 24 h
        figures): what leaves those figures is then read from the first batch on."""
        return self.market.minute_volumes(end_ms, WINDOW_MINUTES)

    async def next_batch(self) -> TickerBatch:
        market = self._tape()
        if market is None or not self._lockstep or self.yields or self._last_ms is None:
            return await super().next_batch()
        # `SimFeed.next_batch`'s lockstep step, here where nothing yields (a backtest with its
        # journal off): a minute's batch without a second coroutine.
        now = self._last_ms + self._interval_ms
        market.advance_to(now)
        self._last_ms = now
        return market.tickers()

    async def next_run(self, limit: int) -> TickerRun | None:
        """Up to `limit` next batches at once (`ParquetMarket.run`: cut at a listing or at the
        end of the tape's day), for a reader that needs no batch's result before the next (the
        discovery process); None where batches come one at a time (`next_batch`)."""
        market = self._tape() if self._lockstep else None
        if market is None:
            return None
        now = self.clock.start_ms if self._last_ms is None else self._last_ms + self._interval_ms
        if self.yields:
            await asyncio.sleep(0)
        run = market.run(now, limit)
        if run is not None:
            self._last_ms = int(run.ts_ms[-1])
        return run

    def data_age_s(self, now_ms: int) -> float:
        """`HistoryIndex.data_age_s`, the same arithmetic on Python ints: the state machine asks
        once a minute, and a bisect of a list costs a fifth of a numpy search and its `.item()`.
        A minute whose bar before has data (nearly all) is 0 s old: the freshest open at or
        before `now - tf` is that bar's, and the bisect would find it; a set answers first."""
        opens = self._opens
        if opens is None:
            opens = self._opens = self.index.data_opens.tolist()
            self._open_set = frozenset(opens)
        tf = self._tf_ms
        if now_ms - tf in self._open_set:
            return 0.0
        i = bisect.bisect_right(opens, now_ms - tf)
        if i == 0:
            return 0.0
        return max(0.0, (now_ms - (opens[i - 1] + tf)) / 1000)

    def streams(self, now_ms: int) -> tuple[StreamRow, ...]:
        return history_streams(self.index, now_ms)

    async def candles(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> list[Candle]:
        """The runtime feed's `candles(symbol, timeframe, limit, after_ms=...)`, sliced from the
        store where the slicer covers the pair, else built from the market's rings."""
        now = self.market.now_ms
        if self.slicer is None or not self.slicer.covers(symbol, timeframe, now):
            return await super().candles(symbol, timeframe, limit, after_ms=after_ms)
        return self.slicer.candles(symbol, timeframe, limit, after_ms, now)

    def bar_store(self, timeframe: str) -> BarStore | None:
        if not self.stored_bars or self.slicer is None or timeframe != self.index.timeframe:
            return None
        return StoredBars(self.slicer)

    async def closed_bars(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> Bars:
        now = self.market.now_ms
        if self.slicer is None or not self.slicer.covers(symbol, timeframe, now):
            return await super().closed_bars(symbol, timeframe, limit, after_ms=after_ms)
        return self.slicer.bars(symbol, timeframe, limit, after_ms, now)
