"""What the generated and the replayed market share: the listed symbols with Binance-like
filters, a top of book drawn from each symbol's liquidity, and tickers and klines read from
the minute rings.

Prices are kept on each symbol's tick: `k * mul / div` with `k` an integer and `mul`, `div`
exact powers of ten, so a price is the float nearest its decimal value and `repr` prints it
without artefacts (0.3, never 0.30000000000000004).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np

from engine.domain import Candle, Market, MarketFilters, MarketStatus, MinuteVolumes, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError
from engine.sim.rings import MINUTE_MS, FloatArray, IntArray, MinuteRings
from engine.sim.scenario import ListingEvent, PumpEvent

MIN_NOTIONAL = Decimal(5)
# MARKET_LOT_SIZE maxQty: one MARKET order may move about this much quote (USDT) at listing.
# Binance sets it per pair from liquidity, often far below LOT_SIZE's maxQty.
MARKET_MAX_QUOTE = Decimal(1_000_000)
# PERCENT_PRICE_BY_SIDE as on most Binance spot pairs: a LIMIT price within 0.2x..5x of the
# 5-minute average price, on either side.
BID_MULTIPLIERS = (Decimal("0.2"), Decimal(5))  # (down, up)
ASK_MULTIPLIERS = (Decimal("0.2"), Decimal(5))
AVG_PRICE_MINS = 5
# Spread = SPREAD_K / sqrt(24 h quote volume), clipped: ~1 bp for a 1e9 USDT/day coin, ~30 bp at 1e6.
SPREAD_K = 3.0
SPREAD_MIN, SPREAD_MAX = 1e-5, 5e-3
# Displayed top-of-book depth as a share of 24 h quote volume, clipped to a sane range (USDT).
DEPTH_SHARE, DEPTH_MIN, DEPTH_MAX = 2e-5, 50.0, 5e6


# Binance's finest tick, and the finest price its 8-decimal strings can carry: a coin priced
# under 1e-4 trades on it too (coarse as that is). A finer tick was served as "0.00000000", on
# which ccxt refuses every LIMIT before sending it (no precision to round the price to).
MIN_TICK_EXP = -8


def tick_exponent(price: float) -> int:
    """Binance-like tick: about 1e-4 of the price, as a power of ten (0.31 -> 1e-5, 58000 -> 1),
    never finer than `MIN_TICK_EXP` (1.2e-6 -> 1e-8)."""
    return max(MIN_TICK_EXP, math.floor(math.log10(price)) - 4)


def step_exponent(price: float) -> int:
    """Lot step worth 0.01..0.1 USDT, at most 1 (58000 -> 1e-6, 0.31 -> 0.1, 1e-5 -> 1)."""
    return min(0, math.ceil(math.log10(0.01 / price)))


def filters_for(price: float, tick_exp: int) -> MarketFilters:
    """Filters of a market first seen at `price` with tick 10**tick_exp."""
    step_exp = step_exponent(price)
    step = Decimal(10) ** step_exp
    max_qty = Decimal(10) ** max(step_exp, math.ceil(math.log10(1e8 / price)))
    market_max = (MARKET_MAX_QUOTE / Decimal(repr(price)) / step).to_integral_value(ROUND_DOWN) * step
    return MarketFilters(
        tick_size=Decimal(10) ** tick_exp,
        step_size=step,
        min_qty=step,
        max_qty=max_qty,
        min_price=Decimal(10) ** tick_exp,
        max_price=Decimal(10) ** (math.ceil(math.log10(price)) + 4),
        min_notional=MIN_NOTIONAL,
        market_min_qty=Decimal(0),
        market_max_qty=min(max_qty, max(step, market_max)),
        market_step_size=Decimal(0),
        bid_multiplier_down=BID_MULTIPLIERS[0],
        bid_multiplier_up=BID_MULTIPLIERS[1],
        ask_multiplier_down=ASK_MULTIPLIERS[0],
        ask_multiplier_up=ASK_MULTIPLIERS[1],
        avg_price_mins=AVG_PRICE_MINS,
    )


def _mul_div(exp: int) -> tuple[float, float]:
    return (10.0**exp, 1.0) if exp >= 0 else (1.0, 10.0**-exp)


class RingMarket(ABC):
    """Listed symbols, their filters, tickers, book and klines over `MinuteRings`.

    Subclasses move time (`advance_to`), set `_price` and feed the rings. Symbols are listed in
    time order, so the listed ones are always the first `n` columns of every array.
    """

    def __init__(self, quote: str, ring_minutes: int, now_ms: int, capacity: int) -> None:
        self._quote = quote
        self._now_ms = now_ms
        # Rings start on the minute before now: subclasses list their first symbols, then open now's minute.
        self._rings = MinuteRings(ring_minutes, now_ms // MINUTE_MS - 1, capacity)
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._markets: list[Market] = []
        self.markets_version = 0  # moves whenever `markets()` would answer differently
        self._symbols: tuple[str, ...] = ()
        self._price = np.zeros(capacity)
        self._tick_mul = np.ones(capacity)
        self._tick_div = np.ones(capacity)
        self._step_mul = np.ones(capacity)
        self._step_div = np.ones(capacity)
        self._has_trades = True  # False where the source has no trade counts (-1 in tickers)

    # -- the contract ----------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return self._now_ms

    @property
    def symbols(self) -> tuple[str, ...]:
        """Listed symbols, in listing order (the row order of `tickers()`)."""
        return self._symbols

    def footprint(self) -> int:
        """Bytes of candle history held: constant for a given symbol capacity, however long the run."""
        return self._rings.footprint()

    def markets(self) -> list[Market]:
        return list(self._markets)

    @abstractmethod
    def advance_to(self, now_ms: int) -> None: ...

    @property
    @abstractmethod
    def ground_truth(self) -> tuple[PumpEvent, ...]: ...

    @property
    @abstractmethod
    def listings(self) -> tuple[ListingEvent, ...]: ...

    def tickers(self) -> TickerBatch:
        n = self._rings.n
        stats = self._rings.stats()
        bid, _, ask, _ = self._quotes(slice(0, n), stats.quote_volume)
        return TickerBatch(
            ts_ms=self._now_ms,
            symbols=self._symbols,
            event_ms=self._event_times(n),
            last=self._price[:n].copy(),
            bid=bid,
            ask=ask,
            open_24h=stats.open,
            high_24h=stats.high,
            low_24h=stats.low,
            base_volume_24h=stats.base_volume,
            quote_volume_24h=stats.quote_volume,
            trade_count_24h=stats.trades if self._has_trades else np.full(n, -1, np.int64),
        )

    def _event_times(self, n: int) -> IntArray:
        """The event time of each listed symbol's ticker: now, as every symbol of a generated
        market trades at every step."""
        return np.full(n, self._now_ms, np.int64)

    def last_price(self, symbol: str) -> float:
        return float(self._price[self._index_of(symbol)])

    def book(self, symbol: str) -> tuple[float, float, float, float]:
        """Top of book (bid, bid_qty, ask, ask_qty): prices on tick around the last trade,
        spread and displayed size from the symbol's 24 h quote volume."""
        i = self._index_of(symbol)
        rings = self._rings
        bid, bid_qty, ask, ask_qty = self._quotes(i, rings.quote_volume_24h(i))
        return float(bid), float(bid_qty), float(ask), float(ask_qty)

    def books(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(bid, bid_qty, ask, ask_qty) of every listed symbol, rows as in `tickers()`: the
        same numbers as `book()`, for the whole market in one vector pass."""
        n = self._rings.n
        bid, bid_qty, ask, ask_qty = self._quotes(slice(0, n), self._rings.quote_volumes_24h())
        return bid, bid_qty, ask, ask_qty

    def klines(
        self,
        symbol: str,
        timeframe: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        """Candles by open time in [start_ms, end_ms], the running one last with closed=False.

        As Binance: with `start_ms` the first `limit` from there, else the last `limit` up to
        `end_ms` (or now). Higher timeframes are aggregated from 1m and aligned to UTC.
        """
        i = self._index_of(symbol)
        tf_ms = timeframe_ms(timeframe)
        if limit < 1:
            raise MarketDataError(f"klines limit must be at least 1, got {limit}")
        c = self._rings.candles(i, tf_ms, start_ms=start_ms, end_ms=end_ms)
        lo = 0 if start_ms is None else int(np.searchsorted(c.open_ms, start_ms, "left"))
        hi = len(c.open_ms) if end_ms is None else int(np.searchsorted(c.open_ms, end_ms, "right"))
        if hi - lo > limit:
            lo, hi = (lo, lo + limit) if start_ms is not None else (hi - limit, hi)
        rows = zip(
            c.open_ms[lo:hi].tolist(),
            c.open[lo:hi].tolist(),
            c.high[lo:hi].tolist(),
            c.low[lo:hi].tolist(),
            c.close[lo:hi].tolist(),
            c.volume[lo:hi].tolist(),
            c.closed[lo:hi].tolist(),
            strict=True,
        )
        return [
            Candle(symbol, timeframe, t, o, h, low, cl, v, closed)
            for t, o, h, low, cl, v, closed in rows
        ]

    def minute_volumes(self, end_ms: int, minutes: int) -> MinuteVolumes:
        """The quote volume of each listed symbol in each of the `minutes` closed minutes before
        `end_ms` (a minute boundary): the minutes its rolling 24 h figures were summed from."""
        if end_ms % MINUTE_MS:
            raise MarketDataError(f"minute volumes end on a minute, not at {end_ms}")
        try:
            volume = self._rings.closed_quote_volumes(end_ms // MINUTE_MS - minutes, minutes)
        except ValueError as exc:
            raise MarketDataError(f"minute volumes before {end_ms}: {exc}") from None
        return MinuteVolumes(self._symbols, end_ms, volume)

    # -- for subclasses --------------------------------------------------------------------

    def _not_listed(self, symbol: str) -> str | None:
        """Why a known symbol has no market yet (e.g. 'lists at ...'), or None if unknown."""
        return None

    def _index_of(self, symbol: str) -> int:
        i = self._index.get(symbol)
        if i is not None:
            return i
        why = self._not_listed(symbol)
        if why is not None:
            raise MarketDataError(f"{symbol} is not listed yet: {why}")
        raise MarketDataError(
            f"unknown symbol {symbol!r}: not one of the {len(self._names)} listed markets"
        )

    def _list_symbol(
        self,
        symbol: str,
        price: float,
        first_minute: int,
        *,
        tick_exp: int | None = None,
        high: float | None = None,
    ) -> int:
        """Add a market (TRADING from now on) whose first trade is at `price`; `high` is the
        first candle's wick when it lists in the current minute."""
        texp = tick_exponent(price) if tick_exp is None else tick_exp
        i = self._rings.add_symbol(self._tick_round(price, texp), first_minute, high=high)
        self._register(i, [symbol], [texp])
        return i

    def _list_symbols(self, symbols: list[str], prices: list[float], first_minute: int) -> None:
        """Add many markets at once (the starting universe), ticks chosen from their prices."""
        exps = [tick_exponent(p) for p in prices]
        rounded = np.array([self._tick_round(p, e) for p, e in zip(prices, exps, strict=True)])
        self._register(self._rings.add_symbols(rounded, first_minute), symbols, exps)

    @staticmethod
    def _tick_round(price: float, tick_exp: int) -> float:
        mul, div = _mul_div(tick_exp)
        return max(1.0, round(price * div / mul)) * mul / div

    def _register(self, first: int, symbols: list[str], tick_exps: list[int]) -> None:
        """Markets and per-symbol arrays for columns first.. just added to the rings."""
        if self._rings.capacity > len(self._price):
            self._grow(self._rings.capacity)
        for i, (symbol, texp) in enumerate(zip(symbols, tick_exps, strict=True), start=first):
            if symbol in self._index:
                raise MarketDataError(f"{symbol} is listed twice")
            price = float(self._rings.open[0, i])
            self._tick_mul[i], self._tick_div[i] = _mul_div(texp)
            self._step_mul[i], self._step_div[i] = _mul_div(step_exponent(price))
            self._price[i] = price
            self._names.append(symbol)
            self._index[symbol] = i
            base, quote = symbol.split("/")
            market_id = f"{base}{quote}"
            filters = filters_for(price, texp)
            self._markets.append(
                Market(symbol, market_id, base, quote, filters, status=MarketStatus.TRADING)
            )
        self._symbols = tuple(self._names)
        self.markets_version += 1

    def _halt(self, i: int) -> None:
        """Market `i` stops trading (BREAK) from now on: what Binance shows for a delisted pair.
        Its last price still shows, and no order is accepted on it."""
        self._markets[i] = replace(self._markets[i], status=MarketStatus.BREAK)
        self.markets_version += 1

    def _grow(self, capacity: int) -> None:
        """Widen per-symbol arrays to `capacity` columns; subclasses widen theirs too."""
        for name in ("_price", "_tick_mul", "_tick_div", "_step_mul", "_step_div"):
            old = getattr(self, name)
            wide = np.ones(capacity)
            wide[: len(old)] = old
            setattr(self, name, wide)

    def _on_tick(self, prices: FloatArray, n: int) -> FloatArray:
        """`prices` of the first `n` symbols rounded to their ticks (at least one tick)."""
        out: FloatArray = on_tick(prices, self._tick_mul[:n], self._tick_div[:n])
        return out

    def _quotes(self, idx: slice | int, quote_volume_24h: Any) -> tuple[Any, Any, Any, Any]:
        """(bid, bid_qty, ask, ask_qty) for a slice of symbols (arrays) or one (numpy scalars):
        both go through the one formula (`quotes`, `bid_ask_ticks`)."""
        return quotes(
            self._price[idx], self._tick_mul[idx], self._tick_div[idx], self._step_mul[idx], self._step_div[idx],
            quote_volume_24h,
        )  # fmt: skip


def on_tick(prices: Any, mul: Any, div: Any) -> Any:
    """`prices` rounded to their ticks (`mul / div` each), at least one tick; element-wise."""
    return tick_counts(prices, mul, div) * mul / div


def tick_counts(prices: Any, mul: Any, div: Any, out: FloatArray | None = None) -> Any:
    """How many ticks (`mul / div` each) `on_tick` puts `prices` at (at least one), as floats
    (arrays; into `out` where given): a replay tape's day keeps them to give `bid_ask_ticks`
    instead of recovering them."""
    k = np.divide(np.multiply(prices, div, out=out), mul, out=out)
    np.rint(k, out=k)
    np.maximum(k, 1.0, out=k)
    return k


def bid_ask(price: Any, mul: Any, div: Any, quote_volume_24h: Any) -> tuple[Any, Any]:
    """`quotes`' bid and ask alone, what a ticker shows, for one pair (numpy scalars) or many
    (arrays): the price's ticks, then `bid_ask_ticks`, the one place the spread is worked out."""
    k = np.rint(price * div / mul)
    if np.ndim(k) == 0:  # one pair's book: the same arithmetic on one-element arrays
        bid, ask = bid_ask_ticks(np.reshape(k, 1), np.reshape(mul, 1), np.reshape(div, 1), np.reshape(quote_volume_24h, 1))
        return bid[0], ask[0]
    return bid_ask_ticks(k, mul, div, np.broadcast_to(quote_volume_24h, k.shape))


def bid_ask_ticks(
    k: FloatArray, mul: FloatArray, div: FloatArray, quote_volume_24h: FloatArray,
    out: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray]:  # fmt: skip
    """Bid and ask around prices of `k` ticks (arrays; `k` and the volumes of one shape), the
    spread from the 24 h quote volume, in place in two arrays (`out` where given: a replay
    tape's day tables) instead of ~18 temporaries (a third of the time on a replay tape's day
    of tables, which outgrow the caches). The tape gives it the ticks `tick_counts` found: a
    price `on_tick` gives is k * mul / div, one or two roundings off k ticks, so `bid_ask`'s
    rint(price * div / mul) is k again (exact while k < 2**50, past 10**7 at the finest
    tick); `tests/engine/sim/test_market.py` pins the two paths bit for bit."""
    bid, half = out if out is not None else (np.empty(np.shape(k)), np.empty(np.shape(k)))
    np.maximum(quote_volume_24h, 1.0, out=half)  # becomes half the spread
    np.sqrt(half, out=half)
    np.divide(SPREAD_K, half, out=half)
    np.maximum(half, SPREAD_MIN, out=half)
    np.minimum(half, SPREAD_MAX, out=half)
    np.multiply(half, 0.5, out=half)
    np.subtract(1.0, half, out=bid)
    np.multiply(k, bid, out=bid)
    np.floor(bid, out=bid)
    np.maximum(bid, 1.0, out=bid)
    ask = np.add(1.0, half, out=half)
    np.multiply(k, ask, out=ask)
    np.ceil(ask, out=ask)
    np.maximum(ask, bid + 1.0, out=ask)
    for side in (bid, ask):
        np.multiply(side, mul, out=side)
        np.divide(side, div, out=side)
    return bid, ask


def quotes(price: Any, mul: Any, div: Any, smul: Any, sdiv: Any, quote_volume_24h: Any) -> tuple[Any, Any, Any, Any]:
    """(bid, bid_qty, ask, ask_qty) around `price` on tick (`mul / div`), lots of `smul / sdiv`:
    spread and displayed size from the 24 h quote volume; element-wise, any shape."""
    bid, ask = bid_ask(price, mul, div, quote_volume_24h)
    depth = np.minimum(np.maximum(quote_volume_24h * DEPTH_SHARE, DEPTH_MIN), DEPTH_MAX)
    bid_qty = np.maximum(np.floor(depth / bid * sdiv / smul), 1.0) * smul / sdiv
    ask_qty = np.maximum(np.floor(depth / ask * sdiv / smul), 1.0) * smul / sdiv
    return bid, bid_qty, ask, ask_qty
