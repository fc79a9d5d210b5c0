"""Where the runtime's market data comes from: one small interface, two sources.

`SimFeed` runs the simulated market in-process on a sim clock (the offline demo);
`GatewayFeed` reads a real (or Binance-compatible) exchange through the gateway.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.clock import SimClock
from engine.domain import Bars, Candle, Market, MinuteVolumes, StateReason, TickerBatch
from engine.signals.bars import BarStore
from engine.sim.base import RingMarket
from engine.sim.rings import MINUTE_MS

if TYPE_CHECKING:
    from engine.runtime.snapshot import StreamRow


class MarketFeed(abc.ABC):
    @abc.abstractmethod
    async def next_batch(self) -> TickerBatch:
        """Wait for the next full-market ticker update."""

    async def warmup(self, step_ms: int) -> AsyncIterator[TickerBatch]:
        """Batches from before the start, `step_ms` apart, so discovery's windows (up to 60 min)
        are filled when trading begins instead of an hour later. None by default."""
        return
        yield  # pragma: no cover - makes this an async generator

    def day_volumes(self, end_ms: int) -> MinuteVolumes | None:
        """The quote volume each symbol traded in each minute of the day before `end_ms` (the
        first warm-up batch's time), where the feed holds it: discovery then reads what leaves
        the rolling 24 h figures from the start (`DiscoveryDriver.warmup`). None by default: an
        exchange's ticker gives the day's total only, and fetching a day of candles for every
        pair is not worth it live, where discovery's own estimates take over after a day."""
        return None

    def error_counts(self) -> dict[str, int]:
        """Market-data errors since start, by kind: what `/metrics` counts so a monitor can alarm
        on a feed that keeps failing while the engine itself still looks alive. None by default
        (an in-process market cannot fail)."""
        return {}

    def now_ms(self) -> int:
        """The time batches are stamped with, now: what /health measures staleness against (a
        simulated feed's clock runs at its own pace, so the wall clock would misjudge it)."""
        return int(time.time() * 1000)

    @abc.abstractmethod
    async def markets(self) -> dict[str, Market]:
        """Tradable markets with their filters, keyed by symbol."""

    @abc.abstractmethod
    async def candles(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> list[Candle]:
        """The last `limit` candles, the last possibly still open, less those opening at or
        before `after_ms` (what the caller already holds: a closed candle never changes)."""

    async def closed_bars(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> Bars:
        """`candles()`'s closed ones, checked, as `Bars`: what the core's bar history takes. A
        feed holding candles as checked columns (a backtest's store) answers without building
        a `Candle` per bar."""
        return Bars.of(symbol, timeframe, await self.candles(symbol, timeframe, limit, after_ms=after_ms))

    def bar_store(self, timeframe: str) -> BarStore | None:
        """Closed bars the core can read in place instead of being fed them (a backtest's
        store, `engine.backtest.stored_bars`), or None: the cycle feeds a `BarHistory`."""
        return None

    @abc.abstractmethod
    def book(self, symbol: str) -> tuple[float, float]:
        """Best bid and ask now, for paper fills."""

    @abc.abstractmethod
    def streams(self, now_ms: int) -> tuple[StreamRow, ...]:
        """Freshness of each stream, for the state machine and the UI."""

    @abc.abstractmethod
    def data_age_s(self, now_ms: int) -> float | None:
        """Seconds since the last market message."""

    def ws_down_s(self, now_ms: int) -> float:
        """Seconds the market-data connection has been down (0 while up, and for in-process feeds)."""
        return 0.0

    def exchange_fault(self) -> StateReason | None:
        """What the exchange refuses until a human acts (a refused key, clock skew), as the state
        reason that blocks the engine meanwhile; None when nothing (and for in-process feeds)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


class SimFeed(MarketFeed):
    """The simulated market, advanced to the sim clock's time on every batch.

    One batch per `interval_ms` of sim time, but never more often than `min_wall_s` of wall
    time: at x1000 the feed skips ahead instead of flooding the core with batches. A market
    that starts before the clock (`market.now_ms < clock.start_ms`) is fast-forwarded through
    `warmup()` in steps as fine as discovery's slots. A market that starts later than
    `warmup_ms` before the clock (one resumed where an earlier run left it) first replays, from
    its own 1m candles, the minutes of that span it already traded, as `GatewayFeed` does from
    an exchange's: discovery then starts on its full window either way.

    `lockstep=True` ignores the wall clock: every batch is exactly `interval_ms` of sim time
    after the previous one and nothing sleeps. Runs are then deterministic, which is what the
    runtime-vs-backtest parity test and fast soak runs need.
    """

    def __init__(
        self,
        market: RingMarket,
        clock: SimClock,
        interval_ms: int = 1000,
        min_wall_s: float = 0.05,
        *,
        lockstep: bool = False,
        warmup_ms: int = 0,
    ) -> None:
        self.market = market
        self.clock = clock
        self._warmup_ms = warmup_ms
        self._interval_ms = interval_ms
        self._min_wall_s = min_wall_s
        self._lockstep = lockstep
        # A lockstep batch yields to the event loop first (commands, the UI, the journal's
        # writer task); a process with nothing else on its loop (a backtest's discovery
        # process) turns this off and saves ~4 us a batch.
        self.yields = True
        self._last_ms: int | None = None
        self._markets: dict[str, Market] = {}
        self._markets_version = -1

    def now_ms(self) -> int:
        """The sim clock; in lockstep the last batch's time (sim time follows the batches)."""
        if self._lockstep and self._last_ms is not None:
            return self._last_ms
        return self.clock.now_ms()

    async def warmup(self, step_ms: int) -> AsyncIterator[TickerBatch]:
        for past in self._traded(step_ms):
            yield past
            await asyncio.sleep(0)
        t = self.market.now_ms
        while t + step_ms <= self.clock.start_ms:
            t += step_ms
            self.market.advance_to(t)
            self._last_ms = t
            yield self.market.tickers()
            await asyncio.sleep(0)  # let the UI breathe while we catch up

    def _traded(self, step_ms: int) -> list[TickerBatch]:
        """The warm-up's minutes the market has already traded, from its 1m candles, each batch
        before the market's time (the next batch, the first stepped one, comes after it)."""
        now = self.market.now_ms
        start = (self.clock.start_ms - self._warmup_ms) // MINUTE_MS * MINUTE_MS
        end = min(now, self.clock.start_ms) // MINUTE_MS * MINUTE_MS
        if end <= start:
            return []
        minutes = (end - start) // MINUTE_MS
        candles = [(s, self.market.klines(s, "1m", start_ms=start, end_ms=end - 1, limit=minutes)) for s in self.market.symbols]
        return [b for b in minute_batches(self.market.tickers(), candles, start, end, step_ms) if b.ts_ms < now]

    async def next_batch(self) -> TickerBatch:
        if self._lockstep:
            now = self.clock.start_ms if self._last_ms is None else self._last_ms + self._interval_ms
            if self.yields:
                await asyncio.sleep(0)  # a cycle still yields to the loop (commands, UI, journal)
            self.market.advance_to(now)
            self._last_ms = now
            return self.market.tickers()
        if self._last_ms is not None:
            target = self._last_ms + self._interval_ms
            wait = max(self._min_wall_s, self.clock.to_wall_seconds(target - self.clock.now_ms()))
            await asyncio.sleep(wait)
        now = max(self.clock.now_ms(), self.market.now_ms)
        self.market.advance_to(now)
        self._last_ms = now
        return self.market.tickers()

    async def markets(self) -> dict[str, Market]:
        if self._markets_version != self.market.markets_version:  # a listing appeared, or a pair halted
            self._markets = {m.symbol: m for m in self.market.markets()}
            self._markets_version = self.market.markets_version
        return self._markets

    async def candles(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> list[Candle]:
        return newer_than(self.market.klines(symbol, timeframe, limit=limit), after_ms)

    def book(self, symbol: str) -> tuple[float, float]:
        bid, _, ask, _ = self.market.book(symbol)
        return bid, ask

    def streams(self, now_ms: int) -> tuple[StreamRow, ...]:
        # the UI's rows: a replay never asks (imported there)
        from engine.runtime.snapshot import StreamRow

        return (StreamRow("sim-market", "connected", self._last_ms, "in-process simulated market"),)

    def data_age_s(self, now_ms: int) -> float | None:
        return None if self._last_ms is None else max(0.0, (now_ms - self._last_ms) / 1000)


def newer_than(candles: list[Candle], after_ms: int | None) -> list[Candle]:
    """The candles opening after `after_ms` (all of them for None): what `candles()` returns."""
    return candles if after_ms is None else [c for c in candles if c.open_ms > after_ms]


def minute_batches(
    today: TickerBatch,
    candles: Sequence[tuple[str, list[Candle]]],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    stamp: Callable[[int], int] = int,
) -> list[TickerBatch]:
    """Warm-up batches rebuilt from 1m candles: for the minutes from `start_ms`, one batch per
    `step_ms` slot stamped no later than `end_ms` (through `stamp`), the price the minute's
    close, and the 24 h quote volume walked back from `today`'s figure by each minute's own
    volume (so the volume discovery reads per slot is that minute's, spread over its slots).
    Symbols `today` does not list, or without candles, are left out."""
    row = {s: i for i, s in enumerate(today.symbols)}
    known = [(s, c) for s, c in candles if s in row and c]
    if not known:
        return []
    n, minutes = len(known), (end_ms - start_ms + MINUTE_MS - 1) // MINUTE_MS
    close = np.full((n, minutes), np.nan)
    volume = np.zeros((n, minutes))  # quote volume per minute
    for i, (_, bars) in enumerate(known):
        for c in bars:
            k = (c.open_ms - start_ms) // MINUTE_MS
            if 0 <= k < minutes:
                close[i, k], volume[i, k] = c.close, c.volume * c.close
    close = _forward_fill(close)
    idx = np.array([row[s] for s, _ in known])
    qv_now = today.quote_volume_24h[idx]
    after = np.cumsum(volume[:, ::-1], axis=1)[:, ::-1]  # quote volume from minute k to the end
    names = tuple(s for s, _ in known)
    per_minute = max(1, MINUTE_MS // step_ms)
    out = []
    for k in range(minutes):
        for j in range(per_minute):
            # Minute k's volume arrives over its slots; its close stands for the whole minute.
            done = (j + 1) / per_minute
            qv = qv_now - after[:, k] + volume[:, k] * done
            ts = start_ms + k * MINUTE_MS + (j + 1) * step_ms
            ok = ~np.isnan(close[:, k])
            if ts > end_ms or not ok.any():
                continue
            price = close[ok, k]
            out.append(
                TickerBatch(
                    ts_ms=stamp(ts),
                    symbols=tuple(s for s, keep in zip(names, ok, strict=True) if keep),
                    event_ms=np.full(len(price), ts, np.int64),
                    last=price,
                    bid=price,
                    ask=price,
                    open_24h=today.open_24h[idx][ok],
                    high_24h=today.high_24h[idx][ok],
                    low_24h=today.low_24h[idx][ok],
                    base_volume_24h=qv[ok] / price,
                    quote_volume_24h=qv[ok],
                    trade_count_24h=np.full(len(price), -1, np.int64),
                )
            )
    return out


def _forward_fill(a: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Each row's NaNs replaced by the last value before them (a minute without trades)."""
    idx = np.where(np.isnan(a), 0, np.arange(a.shape[1]))
    np.maximum.accumulate(idx, axis=1, out=idx)
    out: np.ndarray[Any, np.dtype[np.float64]] = a[np.arange(a.shape[0])[:, None], idx]
    return out
