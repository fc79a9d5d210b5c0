"""The simulated exchange in tests: start it on port 0, point a real ccxt.pro client at it.

    async with running_sim_exchange() as sim:          # FakeMarketSource, fast clock
        ex = make_binance_client(sim.base_url)
        try:
            await ex.load_markets()
            sim.faults.rate_limit(2)                    # the next 2 REST calls answer 429
        finally:
            await ex.close()

`FakeMarketSource` is a small deterministic market (prices move only when a test moves
them) for tests that need exact numbers; pass a real `engine.sim.market.SimMarket` as
`source` for a realistic one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

from engine.domain import Candle, Market, MarketFilters, Ticker, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.market.ccxt_client import rewrite_urls
from engine.sim.server import FaultPlan, MarketSource, SimExchangeServer

T0 = 1_618_531_200_000  # 2021-04-16 00:00 UTC
DEFAULT_PRICES = {"BTC/USDT": 60_000.0, "ETH/USDT": 2_400.0, "DOGE/USDT": 0.3}
API_KEY = "sim-test-key"
SECRET = "sim-test-secret"


def _filters_for(price: float) -> MarketFilters:
    """Binance-like filters scaled to the price: ~6 significant digits of price."""
    tick = Decimal(1).scaleb(math.floor(math.log10(price)) - 5)
    step = Decimal(1).scaleb(min(0, -math.floor(math.log10(price)) - 2))
    return MarketFilters(
        tick_size=tick,
        step_size=step,
        min_qty=step,
        max_qty=Decimal(90_000_000),
        min_price=tick,
        max_price=Decimal(1_000_000),
        min_notional=Decimal(5),
    )


class FakeMarketSource:
    """A deterministic `MarketSource`: fixed prices unless a test calls `set_price`, a fixed
    spread and displayed quantity, flat 1m history with a small deterministic wiggle."""

    def __init__(
        self,
        prices: dict[str, float] | None = None,
        *,
        start_ms: int = T0,
        spread: float = 0.001,
        book_qty: float | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> None:
        """`filters`: `MarketFilters` fields every market gets on top of the price-scaled
        defaults (e.g. `market_max_qty`, the PERCENT_PRICE_BY_SIDE multipliers)."""
        self._filters = dict(filters or {})
        self._prices = dict(prices or DEFAULT_PRICES)
        self._now = start_ms
        self._start = start_ms
        self._spread = spread
        self._book_qty = book_qty
        self._markets = {s: self._make_market(s, p) for s, p in self._prices.items()}

    def _make_market(self, symbol: str, price: float) -> Market:
        base, quote = symbol.split("/")
        filters = replace(_filters_for(price), **self._filters)
        return Market(symbol=symbol, market_id=base + quote, base=base, quote=quote, filters=filters)

    # ---- test controls ---------------------------------------------------------------

    def set_price(self, symbol: str, price: float) -> None:
        self._prices[symbol] = price

    def list_symbol(self, symbol: str, price: float) -> None:
        """A new listing: the symbol starts trading now."""
        self._markets[symbol] = self._make_market(symbol, price)
        self._prices[symbol] = price

    # ---- MarketSource ----------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return self._now

    def markets(self) -> list[Market]:
        return list(self._markets.values())

    def advance_to(self, now_ms: int) -> None:
        self._now = max(self._now, now_ms)

    def tickers(self) -> TickerBatch:
        rows = []
        for symbol, price in self._prices.items():
            bid, _, ask, _ = self.book(symbol)
            rows.append(
                Ticker(
                    symbol=symbol,
                    ts_ms=self._now,
                    last=price,
                    bid=bid,
                    ask=ask,
                    open_24h=price / 1.05,
                    high_24h=price * 1.01,
                    low_24h=price / 1.06,
                    base_volume_24h=1e7 / price,
                    quote_volume_24h=1e7,
                    trade_count_24h=50_000,
                )
            )
        return TickerBatch.from_tickers(self._now, rows)

    def last_price(self, symbol: str) -> float:
        return self._prices[symbol]

    def book(self, symbol: str) -> tuple[float, float, float, float]:
        price = self._prices[symbol]
        qty = self._book_qty if self._book_qty is not None else 20_000 / price
        return price * (1 - self._spread / 2), qty, price * (1 + self._spread / 2), qty

    def klines(
        self,
        symbol: str,
        timeframe: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        tf = timeframe_ms(timeframe)
        current = self._now - self._now % tf
        first = current - 1000 * tf if start_ms is None else start_ms - start_ms % tf
        last = current if end_ms is None else min(current, end_ms - end_ms % tf)
        opens = range(first, last + 1, tf)
        picked: Sequence[int] = opens[:limit] if start_ms is not None else opens[-limit:]
        price = self._prices[symbol]
        out = []
        for open_ms in picked:
            k = open_ms // tf
            o = price * (1 + 0.001 * math.sin(k))
            c = price * (1 + 0.001 * math.sin(k + 1))
            out.append(
                Candle(
                    symbol=symbol,
                    timeframe=timeframe,
                    open_ms=open_ms,
                    open=o,
                    high=max(o, c) * 1.0005,
                    low=min(o, c) * 0.9995,
                    close=c,
                    volume=1000.0 + (k % 7),
                    closed=open_ms + tf <= self._now,
                )
            )
        return out

    @property
    def ground_truth(self) -> tuple[object, ...]:
        return ()

    @property
    def listings(self) -> tuple[object, ...]:
        return ()


@asynccontextmanager
async def running_sim_exchange(
    source: MarketSource | None = None,
    *,
    speed: float = 60.0,
    push_interval_s: float = 0.05,
    tick_s: float = 0.02,
    faults: FaultPlan | None = None,
    **kwargs: Any,
) -> AsyncIterator[SimExchangeServer]:
    """A started server on 127.0.0.1:0 (fast pushes for tests); stopped on exit.
    The yielded server is the fault handle: `.faults`, `.drop_websockets()`, `.base_url`."""
    server = SimExchangeServer(
        source if source is not None else FakeMarketSource(),
        speed=speed,
        push_interval_s=push_interval_s,
        tick_s=tick_s,
        faults=faults,
        **kwargs,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def loopback_urls(urls: Any, base_url: str) -> Any:
    """Every URL under ccxt's `urls['api']` moved to the sim's host and port, paths kept,
    so an option left at its default reaches the sim (and 404s) instead of Binance: the
    gateway's own endpoint override, applied to a bare ccxt.pro client."""
    return rewrite_urls(urls, base_url)


def make_binance_client(
    base_url: str,
    *,
    api_key: str = API_KEY,
    secret: str = SECRET,
    options: dict[str, Any] | None = None,
    **config: Any,
) -> Any:
    """An unmodified ccxt.pro binance client configured for the sim (the notes' recipe):
    loopback URLs, spot-only market loading, no client-side rate limiter, `!ticker@arr`.
    The caller must `await client.close()`."""
    import ccxt.pro as ccxtpro

    opts: dict[str, Any] = {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "watchTickers": {"name": "ticker"},
        "fetchOpenOrders": {"warnWithoutSymbol": False},
    }
    opts.update(options or {})
    client = ccxtpro.binance({"apiKey": api_key, "secret": secret, "enableRateLimit": False, "options": opts, **config})
    client.urls["api"] = loopback_urls(client.urls["api"], base_url)
    return client
