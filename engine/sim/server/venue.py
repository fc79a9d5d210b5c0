"""The simulated venue: a market source, the sim clock and the matching engine, kept in step.

The server owns the sim clock: sim time = start + wall time elapsed x speed. `sync()`
advances the market source to that time and lets resting orders fill against the new
book; the REST layer syncs before every order call (so an order meets the current
price), and the server's tick loop syncs continuously between calls.

Two clocks, on purpose: market data, orders and trades carry *sim* time, while the
freshness check of signed requests (recvWindow) uses the *wall* clock, because ccxt stamps
requests with its own wall clock. At speed 1 the two agree; at higher speeds a client that
syncs to `/api/v3/time` (ccxt's `adjustForTimeDifference`) would fail recvWindow.

The `clock_skew_ms` fault moves both alike: it is the exchange's clock that is off from ours,
and on Binance its time, the event times it stamps and its recvWindow check are one clock. So
`SimClock` carries the skew (`/api/v3/time`, the market it advances, every event, order and
trade time) and the REST and WS-API checks add it to the wall. Skewing only the time and the check
had a client that read the time at start (the engine's clock) find every event time the skew
behind its clock: market data that looked stale for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from decimal import Decimal
from typing import Any, Protocol

from engine.domain import Candle, Market, TickerBatch
from engine.sim.matching import BookTop, MatchingEngine, UserEvent, invalid_symbol
from engine.sim.server.codec import TickerRows

KLINE_PUSH_MAX = 5  # at most this many candles per kline stream per push (catch-up at high speed)


class MarketSource(Protocol):
    """What the server needs from a market generator (`engine.sim.market.SimMarket` is one).

    Symbols are ccxt-style (`DOGE/USDT`); `Market.market_id` gives the exchange id.
    """

    @property
    def now_ms(self) -> int: ...

    def markets(self) -> list[Market]: ...

    def advance_to(self, now_ms: int) -> None: ...

    def tickers(self) -> TickerBatch: ...

    def book(self, symbol: str) -> tuple[float, float, float, float]: ...

    def klines(
        self,
        symbol: str,
        timeframe: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Candle]: ...

    @property
    def ground_truth(self) -> Sequence[object]: ...

    @property
    def listings(self) -> Sequence[object]: ...


class SimClock:
    """Sim time from wall time: `start_ms + elapsed_wall x speed`, plus `skew_ms()` (the
    `clock_skew_ms` fault: the exchange's clock off from ours, module docstring). A skew set
    mid-run moves the clock at once: ahead, the market catches up in one step; back, it waits
    for the clock (a market never runs backwards)."""

    def __init__(
        self,
        start_ms: int,
        speed: float,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        skew_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        if not 1 <= speed <= 1000:
            raise ValueError(f"speed must be between 1 and 1000 (sim seconds per wall second), got {speed}")
        self.start_ms = start_ms
        self.speed = speed
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._skew_ms = skew_ms

    def now_ms(self) -> int:
        return self.start_ms + int((self._monotonic() - self._t0) * 1000.0 * self.speed) + self._skew_ms()


def wall_ms() -> int:
    return int(time.time() * 1000)


class SimVenue:
    def __init__(
        self,
        source: MarketSource,
        clock: SimClock,
        *,
        start_balance: Decimal,
        fee_rate: Decimal = Decimal("0.001"),
    ) -> None:
        self.source = source
        self.clock = clock
        self.fee_rate = fee_rate
        self._markets: dict[str, Market] = {}
        self._by_symbol: dict[str, str] = {}
        self._lower: dict[str, str] = {}
        self.engine = MatchingEngine([], start_balance=start_balance, fee_rate=fee_rate, book_of=self.book)
        self.refresh_markets()
        self._rows: TickerRows | None = None
        self._rows_at = -1

    # ---- markets -------------------------------------------------------------------

    def refresh_markets(self) -> None:
        """Pick up markets the source listed since the last look."""
        fresh = [m for m in self.source.markets() if m.market_id not in self._markets]
        for m in fresh:
            self._markets[m.market_id] = m
            self._by_symbol[m.symbol] = m.market_id
            self._lower[m.market_id.lower()] = m.market_id
        if fresh:
            self.engine.add_markets(fresh)

    def markets(self) -> list[Market]:
        return list(self._markets.values())

    def market(self, market_id: str) -> Market:
        try:
            return self._markets[market_id]
        except KeyError:
            raise invalid_symbol() from None

    def resolve_lower(self, lower_id: str) -> str | None:
        return self._lower.get(lower_id)

    # ---- time and matching ---------------------------------------------------------

    def now_ms(self) -> int:
        return self.source.now_ms

    def sync(self) -> list[tuple[str, UserEvent]]:
        """Advance the market to sim-now, fill resting orders it crosses; returns user events."""
        now = self.clock.now_ms()
        if now > self.source.now_ms:
            self.source.advance_to(now)
        market_now = self.source.now_ms
        for market_id in self.engine.symbols_with_open_orders():
            self.engine.on_book(market_id, self.book(market_id), market_now)
        return self.engine.drain_events()

    def book(self, market_id: str) -> BookTop:
        return BookTop.of(*self.source.book(self.market(market_id).symbol))

    def avg_price(self, market_id: str) -> Decimal | None:
        """The average price PERCENT_PRICE_BY_SIDE measures from (None: the market has no such
        filter): 1m closes weighted by volume over the last `avgPriceMins` minutes, the running
        one included, standing in for Binance's average of trades; 0 minutes, the last price."""
        market = self.market(market_id)
        f = market.filters
        if not f.has_percent_price:
            return None
        candles = self.source.klines(market.symbol, "1m", limit=max(1, f.avg_price_mins))
        if not candles:
            return None
        volume = sum(c.volume for c in candles)
        if f.avg_price_mins == 0 or volume <= 0:
            return Decimal(repr(candles[-1].close))
        return Decimal(repr(sum(c.close * c.volume for c in candles) / volume))

    # ---- market data ---------------------------------------------------------------

    def ticker_rows(self) -> TickerRows:
        """Every symbol's ticker at the source's current time (cached until it advances)."""
        now = self.source.now_ms
        if self._rows is None or self._rows_at != now:
            batch = self.source.tickers()
            if any(s not in self._by_symbol for s in batch.symbols):
                self.refresh_markets()
            ids = [self._by_symbol[s] for s in batch.symbols]
            books = []
            for s in batch.symbols:
                _, bid_qty, _, ask_qty = self.source.book(s)
                books.append((bid_qty, ask_qty))
            self._rows = TickerRows(batch, ids, books, event_ms=now)
            self._rows_at = now
        return self._rows

    def klines(
        self, market_id: str, timeframe: str, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Candle]:
        return self.source.klines(
            self.market(market_id).symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit
        )

    def stream_klines(self, market_id: str, timeframe: str, since_ms: int | None) -> list[Candle]:
        """Candles a kline stream pushes: the current one, or everything since the last push."""
        if since_ms is None:
            return self.klines(market_id, timeframe, start_ms=None, end_ms=None, limit=1)
        candles = self.klines(market_id, timeframe, start_ms=since_ms, end_ms=None, limit=1000)
        return candles[-KLINE_PUSH_MAX:]

    def ground_truth(self) -> dict[str, Any]:
        return {
            "now_ms": self.source.now_ms,
            "pumps": [_plain(e) for e in self.source.ground_truth],
            "listings": [_plain(e) for e in self.source.listings],
        }


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value
