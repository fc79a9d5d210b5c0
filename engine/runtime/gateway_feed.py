"""`GatewayFeed`: the runtime's market data from an exchange, through a `Gateway`.

The engine cycles once per batch and reads its time from the batch, so this feed decides
what time it is, and it must keep the engine cycling when the exchange goes quiet:

- **Exchange time.** A batch's `ts_ms` is the exchange's own clock: the newest ticker event
  time in it (Binance's close time `C`), never the local wall clock. On Binance the two agree
  within network latency; on the simulated exchange at x300 only the exchange's clock moves
  at the market's pace, and the engine's bars, windows and thresholds must follow the market.
  `ts_ms` never goes backwards (a duplicated or reordered message gets `last + 1`), so an
  event time more than `MAX_AHEAD_MS` ahead of the batch's receive time (the gateway's
  clock) is not believed: one such row would hold the clock years ahead, every later batch
  stamped `last + 1` and `data_age_s` stuck at 0. With none left, the receive time is used.
- **An exchange clock that moves.** The simulated exchange's clock is read at start and
  extrapolated (`ExchangeClock`); a sim-exchange restarted mid-run starts its clock again
  from its own origin, and the extrapolation would keep the engine hours ahead of the market,
  every batch and candle stale, the engine blocked for as long as the first sim had run. So
  the clock is re-read (`GET /api/v3/time`) on the first batch after the ticker stream comes
  back from a drop, and whenever event times sit more than `MAX_AHEAD_MS` from it, and
  re-anchored: forward as is, backwards never (the engine's time, and so discovery's windows,
  timers and the journal, stays monotonic): the exchange's times are shown whole days later
  instead (`engine.market.exchange_clock`). Binance (`SystemClock`) is never re-read.
- **Heartbeats.** When no ticker arrives for `idle_s` wall seconds (a dropped WebSocket in
  backoff, a half-open socket, a stream error), `next_batch` returns an *empty* batch stamped
  with the exchange's time by the gateway's clock (`SystemClock` for Binance, `ExchangeClock`
  for the simulated exchange) instead of waiting: the engine then cycles on no data, its state
  machine sees `data_age_s` grow (degraded, then blocked), and a paper broker has no book to
  fill at (a fill at a minutes-old price would be fiction). The pending `watch_tickers` call is
  never cancelled for a heartbeat: cancelling a ccxt watch mid-message would cost the stream
  its state.
- **Bad data never stops the loop.** A batch the gateway could not decode (`MarketDataError`)
  or a stream error is counted and becomes a heartbeat; candle fetches that fail (429
  silence, 418 ban, 5xx, timeout) return no candles (counted, last error kept) and the engine
  fetches that symbol's recent bars again on the next bar. In an outage every symbol's fetch
  fails at every bar: the log says the first failure, then only a new kind of failure, a
  summary every few minutes, and the first fetch that works again (`RepeatedFailure`).

**Warm-up.** Discovery ranks against an hour of its own history; a feed that starts empty
trades on thin baselines for that hour. `warmup()` rebuilds the last `warmup_minutes` from 1m
klines (one REST call per symbol of the quote asset, skipped above `warmup_max_symbols`,
where it would cost too much request weight): one batch per discovery slot, the price the
minute's close, and the 24 h quote volume walked back from today's figure by each minute's
own volume (so the volume discovery reads per slot is that minute's, spread over its slots).

Candles go through the gateway's candle cache keyed on the exchange-time bar (`since_ms`
anchored to the current bar), so a bar is fetched once however often it is asked for and a
new bar is never answered from an old entry, whatever clock the cache itself reads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import numpy as np

from engine.domain import Candle, Market, StateReason, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import ErrorClass, HotcoinError, MarketDataError, OrderError
from engine.market.backoff import Clock, SystemClock
from engine.market.exchange_clock import DAY_MS, ExchangeClock
from engine.market.gateway import REST_STREAM, USER_STREAMS, Gateway, StreamHealth
from engine.runtime.feed import MarketFeed, minute_batches, newer_than
from engine.runtime.quiet_log import RepeatedFailure
from engine.runtime.snapshot import StreamRow

log = logging.getLogger("hotcoin.feed")

TICKER_STREAM = "tickers"  # the gateway's health key of the full-market ticker stream
STALE_ROW_MS = 10_000  # a connected stream silent this long shows as "stale" in the UI
REST_ERROR_SHOWN_MS = 60_000  # a REST error shows on the `rest` row for this long
MINUTE_MS = 60_000
FIRST_LOAD_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # wall seconds before each retry of a failed first market load
MAX_AHEAD_MS = 60_000  # an event time further ahead of the batch's receive time is not the exchange's time
RESYNC_EVERY_S = 5.0  # wall seconds between exchange clock reads prompted by disagreeing event times


def _empty_batch(ts_ms: int) -> TickerBatch:
    f = np.empty(0, np.float64)
    i = np.empty(0, np.int64)
    return TickerBatch(ts_ms, (), i, f, f, f, f, f, f, f, f, i.copy())


class GatewayFeed(MarketFeed):
    """Market data of one exchange account's `Gateway`; see the module docstring.

    `clock`: the gateway's clock (the exchange's time). `idle_s`: wall seconds without a ticker
    before a heartbeat batch. `markets_refresh_s`: wall seconds between market-info reloads (a
    failed reload keeps the last good copy). `first_load_delays_s`: the waits before each retry
    of a first load that failed transiently (`markets`). `warmup_minutes` (0: none),
    `warmup_max_symbols` and `quote_asset`: the warm-up (module docstring).
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        clock: Clock | None = None,
        idle_s: float = 1.0,
        markets_refresh_s: float = 3600.0,
        quote_asset: str = "USDT",
        warmup_minutes: int = 65,
        warmup_max_symbols: int = 600,
        first_load_delays_s: Sequence[float] = FIRST_LOAD_DELAYS_S,
    ) -> None:
        if idle_s <= 0 or markets_refresh_s <= 0:
            raise ValueError(f"idle_s and markets_refresh_s must be positive seconds, got {idle_s}, {markets_refresh_s}")
        self.gateway = gateway
        self._first_load_delays_s = tuple(first_load_delays_s)
        self._clock = clock or SystemClock()
        self._idle_s = idle_s
        self._refresh_s = markets_refresh_s
        self._quote = quote_asset
        self._warmup_minutes = warmup_minutes
        self._warmup_max_symbols = warmup_max_symbols
        self._pending: asyncio.Future[TickerBatch] | None = None
        self._book: TickerBatch | None = None
        self._index: dict[str, int] = {}
        self._markets: dict[str, Market] = {}
        self._markets_at: float | None = None
        self._last_data_ms: int | None = None  # exchange time of the newest data
        self._last_ts = 0  # the last ts_ms handed to the engine
        self._resynced_after = 0  # the ticker stream's reconnect count at the last exchange clock read
        self._resynced_at = -math.inf  # wall time (monotonic) of the last exchange clock read
        self.batches = 0
        self.heartbeats = 0
        self.bad_batches = 0
        self.stream_errors = 0
        self.candle_errors = 0
        self.markets_errors = 0
        self.last_error: str | None = None
        self._candle_log = RepeatedFailure(log, "market data: candle fetch")

    def error_counts(self) -> dict[str, int]:
        return {
            "bad_batch": self.bad_batches,
            "stream": self.stream_errors,
            "candles": self.candle_errors,
            "markets": self.markets_errors,
        }

    def _stamp(self, ts_ms: int) -> int:
        ts = max(ts_ms, self._last_ts + 1)
        self._last_ts = ts
        return ts

    # ------------------------------------------------------------------ warm-up
    async def warmup(self, step_ms: int) -> AsyncIterator[TickerBatch]:
        if self._warmup_minutes <= 0:
            return
        markets = await self.markets()
        symbols = sorted(m.symbol for m in markets.values() if m.quote == self._quote)
        if not symbols or len(symbols) > self._warmup_max_symbols:
            log.info("no discovery warm-up", extra={"symbols": len(symbols), "max": self._warmup_max_symbols})
            return
        try:
            batches = await self._warmup_batches(symbols, step_ms)
        except OrderError as exc:  # a warm-up is a head start, never a reason not to trade
            self._error(exc)
            return
        for batch in batches:
            yield batch
            await asyncio.sleep(0)

    async def _warmup_batches(self, symbols: list[str], step_ms: int) -> list[TickerBatch]:
        today = await self.gateway.fetch_tickers()
        end = self._clock.now_ms() // MINUTE_MS * MINUTE_MS
        start = end - self._warmup_minutes * MINUTE_MS
        fetched = await asyncio.gather(
            *(self.gateway.fetch_candles(s, "1m", since_ms=start, limit=self._warmup_minutes) for s in symbols)
        )
        return minute_batches(today, list(zip(symbols, fetched, strict=True)), start, end, step_ms, stamp=self._stamp)

    # ------------------------------------------------------------------ batches
    def now_ms(self) -> int:
        """The gateway's clock (the simulated exchange's pace, or the system clock)."""
        return self._clock.now_ms()

    async def next_batch(self) -> TickerBatch:
        while True:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self.gateway.watch_tickers())
            # The engine starts on real data (its first batch sets its clock): until then, wait.
            started = self._last_data_ms is not None
            done, _ = await asyncio.wait({self._pending}, timeout=self._idle_s if started else None)
            if not done:
                return self._heartbeat()
            pending, self._pending = self._pending, None
            try:
                return await self._accept(pending.result())
            except MarketDataError as exc:
                self.bad_batches += 1
                self._error(exc)
                if started:
                    return self._heartbeat()
            except HotcoinError as exc:
                # Not a drop (the gateway re-dials those itself): a refused subscription, bad keys.
                # Fatal before the first data; later, wait out one idle period before asking
                # again, so a hard error cannot spin the loop.
                self.stream_errors += 1
                self._error(exc)
                if not started:
                    raise
                await asyncio.sleep(self._idle_s)
                return self._heartbeat()

    async def _accept(self, batch: TickerBatch) -> TickerBatch:
        batch = await self._follow_exchange_clock(batch)
        exchange_ms = _exchange_time(batch)
        self._last_data_ms = max(exchange_ms, self._last_data_ms or 0)
        self.batches += 1
        if len(batch):
            self._book = batch
            self._index = {s: i for i, s in enumerate(batch.symbols)}
        return replace(batch, ts_ms=self._stamp(exchange_ms))

    async def _follow_exchange_clock(self, batch: TickerBatch) -> TickerBatch:
        """Re-read an `ExchangeClock` (module docstring, "Exchange time") on the first batch
        after the ticker stream came back from a drop, or on one whose event times sit more than
        `MAX_AHEAD_MS` from the clock; at most every `RESYNC_EVERY_S` wall seconds, so a time
        endpoint that fails is not asked at every batch. `batch` comes back re-stamped on the
        clock as it now stands. A failed read keeps the clock (logged) and is tried again later."""
        clock = self._clock
        if not isinstance(clock, ExchangeClock):
            return batch
        health = self.gateway.health().get(TICKER_STREAM)
        reconnects = 0 if health is None else health.reconnects
        events = batch.event_ms[batch.event_ms > 0]
        newest = int(events.max()) if len(events) else batch.ts_ms
        reconnected = reconnects != self._resynced_after
        disagrees = abs(newest - batch.ts_ms) > MAX_AHEAD_MS
        wall = time.monotonic()
        if not (reconnected or disagrees) or wall - self._resynced_at < RESYNC_EVERY_S:
            return batch
        self._resynced_at = wall
        shift = clock.shift_ms
        try:
            stepped = await clock.resync()
        except (HotcoinError, OSError, TimeoutError) as exc:
            self._error(exc)
            return batch
        self._resynced_after = reconnects
        moved = clock.shift_ms - shift
        if stepped:
            log.warning(
                "exchange clock re-read %s: ours stepped %.0f s forward to the exchange's%s",
                "after the ticker stream reconnected" if reconnected else "as its event times disagreed with ours",
                stepped / 1000,
                f" (the exchange's clock went back: its times are shown {clock.shift_ms // DAY_MS} day(s) later)" if moved else "",
            )  # fmt: skip
        event_ms = np.where(batch.event_ms > 0, batch.event_ms + moved, batch.event_ms) if moved else batch.event_ms
        return replace(batch, ts_ms=clock.now_ms(), event_ms=event_ms)

    def _heartbeat(self) -> TickerBatch:
        self.heartbeats += 1
        return _empty_batch(self._stamp(self._clock.now_ms()))

    def _error(self, exc: BaseException, quiet: RepeatedFailure | None = None) -> None:
        """Keep `exc` as the last error, and log it: through `quiet` where it repeats (candles)."""
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if quiet is not None:
            quiet.failed(self.last_error)
        else:
            log.warning("market data: %s", self.last_error)

    # ------------------------------------------------------------------ markets, candles, book
    async def markets(self) -> dict[str, Market]:
        """Loaded once, then reloaded every `markets_refresh_s`; a failed reload keeps the last
        good markets. Nothing can be traded without their filters, so the first load is retried
        through transient failures (a timeout, a 5xx, a dropped connection: `RETRYABLE`) after
        each of `first_load_delays_s` (~15 s in all), and is fatal after the last, or at once
        for a failure no retry can mend (keys refused, the request rejected)."""
        wall = time.monotonic()
        if self._markets_at is not None and wall - self._markets_at < self._refresh_s:
            return self._markets
        if not self._markets:
            self._markets = await self._first_load()
        else:
            try:
                self._markets = dict(await self.gateway.load_markets(reload=True))
            except OrderError as exc:
                self.markets_errors += 1
                self._error(exc)
        self._markets_at = time.monotonic()
        return self._markets

    async def _first_load(self) -> dict[str, Market]:
        delays = iter(self._first_load_delays_s)
        while True:
            try:
                return dict(await self.gateway.load_markets(reload=self._markets_at is not None))
            except OrderError as exc:
                delay = next(delays, None)
                if delay is None or exc.error_class is not ErrorClass.RETRYABLE:
                    raise
                self.markets_errors += 1
                self._error(exc)
                log.warning("markets: the first load failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)  # wall time: the exchange's pace has nothing to do with its network

    async def candles(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> list[Candle]:
        tf = timeframe_ms(timeframe)
        bar = self._last_ts // tf * tf if self._last_ts else None
        since = None if bar is None else bar - (limit - 1) * tf
        try:
            candles = await self.gateway.fetch_candles(symbol, timeframe, since_ms=since, limit=limit)
        except OrderError as exc:
            self.candle_errors += 1
            self._error(exc, self._candle_log)
            return []
        self._candle_log.ok()
        return newer_than(candles, after_ms)

    def book(self, symbol: str) -> tuple[float, float]:
        i = self._index.get(symbol)
        if self._book is None or i is None:
            return math.nan, math.nan
        return float(self._book.bid[i]), float(self._book.ask[i])

    # ------------------------------------------------------------------ health
    def data_age_s(self, now_ms: int) -> float | None:
        if self._last_data_ms is None:
            return None
        return max(0.0, (now_ms - self._last_data_ms) / 1000)

    def ws_down_s(self, now_ms: int) -> float:
        """How long the ticker stream has been disconnected (0 while it is connected).

        Counted from the drop, not from the last data: silence is `data_age_s`'s rule, and a
        stream that went quiet before it dropped has not been down for all of its silence. Both
        ends are read on the gateway's clock, which stamped the drop: `now_ms` is a batch's
        exchange event time, which an `ExchangeClock` (read once, at x300) can trail by seconds."""
        health = self.gateway.health().get(TICKER_STREAM)
        if health is None or health.connected or not health.down_since_ms:
            return 0.0
        return max(0.0, (self._clock.now_ms() - health.down_since_ms) / 1000)

    def exchange_fault(self) -> StateReason | None:
        """The REST side's fault (`ExchangeFault`: a refused key, clock skew) as a state reason."""
        rest = self.gateway.health().get(REST_STREAM)
        fault = None if rest is None else rest.fault
        return None if fault is None else StateReason(fault.code, fault.detail)

    def streams(self, now_ms: int) -> tuple[StreamRow, ...]:
        rows = [_row(h, now_ms) for _, h in sorted(self.gateway.health().items())]
        if self.last_error is not None and not any(r.name == TICKER_STREAM for r in rows):
            rows.append(StreamRow(TICKER_STREAM, "error", None, self.last_error))
        return tuple(rows)

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
            self._pending = None
        await self.gateway.close()


def _exchange_time(batch: TickerBatch) -> int:
    """The newest event time that is not more than `MAX_AHEAD_MS` ahead of the receive time
    (`batch.ts_ms`), else the receive time: see the module docstring, "Exchange time"."""
    events = batch.event_ms
    believable = events[(events > 0) & (events <= batch.ts_ms + MAX_AHEAD_MS)]
    return int(believable.max()) if len(believable) else batch.ts_ms


def _row(h: StreamHealth, now_ms: int) -> StreamRow:
    """One stream's status for the UI: rate-limit silence and errors say why it is not live.

    Gateway health is stamped by the gateway's clock, which keeps the exchange's time
    (`SystemClock` on Binance, `ExchangeClock` on the simulated exchange), as `now_ms` does."""
    last = h.last_message_ms or None
    if h.rate_limited_until_ms > now_ms:
        left = (h.rate_limited_until_ms - now_ms) / 1000
        return StreamRow(h.stream, "error", last, f"rate limited for {left:.0f} s more: {h.last_error or ''}".strip())
    if h.stream == REST_STREAM:
        clock = "" if h.clock_offset_ms is None else f"exchange clock {h.clock_offset_ms:+,d} ms from ours"
        if h.fault is not None:
            return StreamRow(h.stream, "error", last, h.fault.detail)
        recent = h.last_error is not None and now_ms - h.last_error_ms < REST_ERROR_SHOWN_MS
        detail = "; ".join(d for d in ((h.last_error or "") if recent else "", clock) if d)
        return StreamRow(h.stream, "error" if recent else "connected", last, detail)
    if not h.connected:
        detail = f"reconnecting (attempt {h.reconnects})" + (f": {h.last_error}" if h.last_error else "")
        return StreamRow(h.stream, "down", last, detail)
    stale = h.stale_ms(now_ms)
    if h.stream in USER_STREAMS:  # quiet while we do not trade: its silence is no fault
        quiet = "no event yet" if stale is None else f"last event {stale / 1000:.0f} s ago"
        return StreamRow(h.stream, "connected", last, f"{quiet}; {h.reconnects} reconnects, {h.rotations} rotations")
    if stale is not None and stale > STALE_ROW_MS:
        return StreamRow(h.stream, "stale", last, f"no message for {stale / 1000:.0f} s")
    return StreamRow(h.stream, "connected", last, f"{h.reconnects} reconnects, {h.rotations} rotations")
