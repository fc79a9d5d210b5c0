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
    """

    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(0)
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)


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

    def round_qty(self, qty: float | Decimal) -> Decimal:
        """Quantity floored to stepSize: never more than the caller can afford or holds."""
        return _quantize(to_decimal(qty), self.filters.step_size, ROUND_DOWN)

    def check_order(self, qty: Decimal, price: Decimal) -> str | None:
        """Why the exchange would reject (qty, price) under its filters, or None if it passes.

        `price` is the limit price, or the reference price for a market order's notional.
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
