"""Markets and their exchange filters, and exact rounding to them.

Binance rejects an order whose price is not a multiple of `tickSize` or whose quantity
is not a multiple of `stepSize` (-1013 Filter failure). Rounding floats with `round()`
leaves artefacts such as 0.30000000000000004; so rounding goes through `Decimal` built
from the float's shortest repr, and the result is what we send.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

from engine.errors import NonRetryableOrderError


class MarketStatus(enum.StrEnum):
    TRADING = "TRADING"
    BREAK = "BREAK"
    HALT = "HALT"
    PRE_TRADING = "PRE_TRADING"
    END_OF_DAY = "END_OF_DAY"


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Exact decimal of a float's shortest repr (0.1 -> Decimal('0.1'), not 0.1000000000000000055...)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NonRetryableOrderError(f"non-finite number {value!r} cannot be sent to an exchange")
        return Decimal(repr(value))
    return Decimal(value)


def _quantize(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=rounding)
    return (units * step).quantize(step)


@dataclass(frozen=True, slots=True)
class MarketFilters:
    """The subset of Binance's symbol filters an order must pass.

    PRICE_FILTER(tickSize, minPrice, maxPrice), LOT_SIZE(stepSize, minQty, maxQty),
    NOTIONAL/MIN_NOTIONAL(minNotional). Zero means "no constraint", as on Binance.

    MARKET_LOT_SIZE(minQty, maxQty, stepSize) applies to MARKET orders on top of LOT_SIZE; on
    many real pairs its maxQty is far below LOT_SIZE's, so a big market exit must be cut.
    PERCENT_PRICE_BY_SIDE bounds a LIMIT price by the exchange's average price over
    `avg_price_mins` minutes (0: the last price): a buy within [avg x bidDown, avg x bidUp],
    a sell within [avg x askDown, avg x askUp]. Zero multipliers mean the filter is absent.
    """

    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(0)
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
    market_min_qty: Decimal = Decimal(0)
    market_max_qty: Decimal = Decimal(0)
    market_step_size: Decimal = Decimal(0)
    bid_multiplier_up: Decimal = Decimal(0)
    bid_multiplier_down: Decimal = Decimal(0)
    ask_multiplier_up: Decimal = Decimal(0)
    ask_multiplier_down: Decimal = Decimal(0)
    avg_price_mins: int = 0

    @property
    def market_order_max_qty(self) -> Decimal:
        """The largest quantity one MARKET order may have under LOT_SIZE and MARKET_LOT_SIZE (0: none)."""
        caps = [q for q in (self.max_qty, self.market_max_qty) if q > 0]
        return min(caps) if caps else Decimal(0)

    @property
    def has_percent_price(self) -> bool:
        return any(m > 0 for m in (self.bid_multiplier_up, self.bid_multiplier_down, self.ask_multiplier_up, self.ask_multiplier_down))

    def price_band(self, *, is_buy: bool, avg_price: Decimal) -> tuple[Decimal, Decimal]:
        """PERCENT_PRICE_BY_SIDE's [low, high] for a LIMIT price at `avg_price` (0 high: no cap)."""
        down, up = (self.bid_multiplier_down, self.bid_multiplier_up) if is_buy else (self.ask_multiplier_down, self.ask_multiplier_up)
        return avg_price * down, avg_price * up


@dataclass(frozen=True, slots=True)
class Market:
    """A spot market: `symbol` in ccxt form (`DOGE/USDT`), `market_id` in exchange form (`DOGEUSDT`)."""

    symbol: str
    market_id: str
    base: str
    quote: str
    filters: MarketFilters
    status: MarketStatus = MarketStatus.TRADING
    order_types: tuple[str, ...] = ("LIMIT", "MARKET")

    @property
    def active(self) -> bool:
        return self.status is MarketStatus.TRADING

    def round_price(self, price: float | Decimal, *, side_safe: str = "nearest") -> Decimal:
        """Price as a multiple of tickSize. `side_safe`: 'down' for buys that must not
        pay more, 'up' for sells that must not get less, else nearest."""
        rounding = {"down": ROUND_DOWN, "up": ROUND_UP}.get(side_safe, ROUND_HALF_UP)
        return _quantize(to_decimal(price), self.filters.tick_size, rounding)

    def round_qty(self, qty: float | Decimal, *, market_order: bool = False) -> Decimal:
        """Quantity floored to stepSize (and, for a MARKET order, to MARKET_LOT_SIZE's stepSize
        too): never more than the caller can afford or holds."""
        out = _quantize(to_decimal(qty), self.filters.step_size, ROUND_DOWN)
        if market_order and self.filters.market_step_size > 0:
            out = _quantize(out, self.filters.market_step_size, ROUND_DOWN)
        return out

    def check_order(
        self,
        qty: Decimal,
        price: Decimal,
        *,
        market_order: bool = False,
        is_buy: bool | None = None,
        avg_price: Decimal | None = None,
    ) -> str | None:
        """Why the exchange would reject (qty, price) under its filters, or None if it passes.

        `price` is the limit price, or the reference price for a market order's notional. A
        `market_order` also meets MARKET_LOT_SIZE; a LIMIT order given its side (`is_buy`) and
        the exchange's average price (`avg_price`) also meets PERCENT_PRICE_BY_SIDE.
        """
        f = self.filters
        if qty <= 0:
            return f"quantity {qty} must be positive"
        if f.step_size > 0 and (qty % f.step_size) != 0:
            return f"LOT_SIZE: quantity {qty} is not a multiple of stepSize {f.step_size}"
        if f.min_qty > 0 and qty < f.min_qty:
            return f"LOT_SIZE: quantity {qty} < minQty {f.min_qty}"
        if f.max_qty > 0 and qty > f.max_qty:
            return f"LOT_SIZE: quantity {qty} > maxQty {f.max_qty}"
        if market_order:
            if f.market_step_size > 0 and (qty % f.market_step_size) != 0:
                return f"MARKET_LOT_SIZE: quantity {qty} is not a multiple of stepSize {f.market_step_size}"
            if f.market_min_qty > 0 and qty < f.market_min_qty:
                return f"MARKET_LOT_SIZE: quantity {qty} < minQty {f.market_min_qty}"
            if f.market_max_qty > 0 and qty > f.market_max_qty:
                return f"MARKET_LOT_SIZE: quantity {qty} > maxQty {f.market_max_qty}"
        elif is_buy is not None and avg_price is not None and avg_price > 0 and f.has_percent_price:
            low, high = f.price_band(is_buy=is_buy, avg_price=avg_price)
            if price < low or (high > 0 and price > high):
                return f"PERCENT_PRICE_BY_SIDE: price {price} outside [{low}, {high}] around average price {avg_price}"
        if price <= 0:
            return f"price {price} must be positive"
        if f.tick_size > 0 and (price % f.tick_size) != 0:
            return f"PRICE_FILTER: price {price} is not a multiple of tickSize {f.tick_size}"
        if f.min_price > 0 and price < f.min_price:
            return f"PRICE_FILTER: price {price} < minPrice {f.min_price}"
        if f.max_price > 0 and price > f.max_price:
            return f"PRICE_FILTER: price {price} > maxPrice {f.max_price}"
        if f.min_notional > 0 and qty * price < f.min_notional:
            return f"NOTIONAL: {qty * price} < minNotional {f.min_notional}"
        return None
