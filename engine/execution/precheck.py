"""Pre-check: turn a wanted order into one the exchange will accept, or say why not.

Runs before anything is sent. Quantity is floored to stepSize (never more than we can afford or
hold), a limit price is rounded to tickSize on the side that cannot cost us (buys down, sells
up), then each filter is checked with the value it saw and its limit, in the journal's `check`
shape. An approved order always passes `Market.check_order` (a property test holds us to it).

A MARKET order larger than one order may be (MARKET_LOT_SIZE or LOT_SIZE maxQty) is cut to that
size, not refused: an exit refused for its size would leave the position unsold. The core keeps
one exit in flight per position, so the rest is sold by the next cycle's exit (the cut leaves a
rest the exchange will take). An entry is cut the same way and buys only that much: no later
order buys the rest. A LIMIT price outside PERCENT_PRICE_BY_SIDE is refused, not moved:
a buy moved under the band rests below the market the entry was meant to meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any

from engine.domain import Market, OrderIntent, OrderPurpose, OrderType, Side, TimeInForce
from engine.domain.market import to_decimal
from engine.journal.events import check


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the core wants before rounding: side, size in base units, a reference price."""

    client_order_id: str
    trace_id: str
    symbol: str
    side: Side
    order_type: OrderType
    purpose: OrderPurpose
    quantity: float
    reference_price: float  # best ask for buys, best bid for sells: what the order should cost
    limit_price: float | None = None
    expires_ms: int | None = None


@dataclass(frozen=True, slots=True)
class PrecheckResult:
    approved: bool
    checks: list[dict[str, Any]]
    intent: OrderIntent | None

    @property
    def failed(self) -> list[str]:
        return [c["name"] for c in self.checks if not c["passed"]]


def precheck(
    request: OrderRequest,
    market: Market,
    *,
    quote_free: float,
    base_free: float,
    buy_cost_rate: float,
    max_order_quote: float | None,
    avg_price: float | None = None,
) -> PrecheckResult:
    """Round `request` to `market`'s filters and check it against filters, balance and size caps.
    A buy needs its notional plus `buy_cost_rate` of it (fee, and slippage for a market buy).
    `avg_price`: the exchange's average price PERCENT_PRICE_BY_SIDE is measured from; without
    it the reference price stands in (the best price the core knows)."""
    f = market.filters
    checks: list[dict[str, Any]] = [check("market_active", market.active, market.status.value, "TRADING")]
    order_type_name = request.order_type.value.upper()
    checks.append(check("order_type", order_type_name in market.order_types, order_type_name, list(market.order_types)))

    is_market = request.order_type is OrderType.MARKET
    is_buy = request.side is Side.BUY
    price: Decimal | None = None
    if not is_market:
        raw = request.limit_price if request.limit_price is not None else request.reference_price
        notional_price = _round(market, raw, "down" if is_buy else "up")
        price = notional_price
    else:
        # A market order is valued at the reference price as the exchange will see it (on the tick grid).
        notional_price = _round(market, request.reference_price, "nearest")
    # A non-finite quantity (NaN, inf) becomes 0, which fails `quantity_positive`.
    finite = 0 < request.quantity < float("inf")
    wanted = market.round_qty(request.quantity, market_order=is_market) if finite else Decimal(0)
    qty = wanted
    if is_market:
        cap = f.market_order_max_qty
        if cap > 0 and qty > cap:
            qty = cap_market_qty(market, qty, notional_price)

    checks.append(check("quantity_positive", qty > 0, str(qty), str(f.step_size)))
    checks.append(check("min_qty", f.min_qty <= 0 or qty >= f.min_qty, str(qty), str(f.min_qty)))
    checks.append(check("max_qty", f.max_qty <= 0 or qty <= f.max_qty, str(qty), str(f.max_qty)))
    if is_market:
        checks.append(check("market_min_qty", f.market_min_qty <= 0 or qty >= f.market_min_qty, str(qty), str(f.market_min_qty)))
        shown = str(qty) if qty == wanted else _cut(qty, wanted, request.purpose)
        cap = f.market_order_max_qty
        checks.append(check("market_max_qty", cap <= 0 or qty <= cap, shown, str(cap)))
    checks.append(check("price_positive", notional_price > 0, str(notional_price), "> 0"))
    checks.append(check("min_price", f.min_price <= 0 or notional_price >= f.min_price, str(notional_price), str(f.min_price)))
    checks.append(check("max_price", f.max_price <= 0 or notional_price <= f.max_price, str(notional_price), str(f.max_price)))
    if not is_market and f.has_percent_price:
        avg_raw = avg_price if avg_price is not None else request.reference_price
        avg = to_decimal(avg_raw) if 0 < avg_raw < float("inf") else Decimal(0)
        low, high = f.price_band(is_buy=is_buy, avg_price=avg)
        inside = avg > 0 and low <= notional_price and (high <= 0 or notional_price <= high)
        band = f"[{low.normalize():f}, {high.normalize():f}] = avg {avg} x {'bid' if is_buy else 'ask'} multipliers"
        checks.append(check("percent_price_by_side", inside, str(notional_price), band))
    notional = qty * notional_price
    checks.append(check("min_notional", f.min_notional <= 0 or notional >= f.min_notional, str(notional), str(f.min_notional)))
    if max_order_quote is not None:  # exits sell what is held, whatever its size
        cap_quote = to_decimal(max_order_quote)
        checks.append(check("max_order_size", notional <= cap_quote, str(notional), str(cap_quote)))
    if is_buy:
        need = float(notional) * (1.0 + buy_cost_rate)
        checks.append(check("balance", need <= quote_free, need, quote_free))
    else:
        checks.append(check("balance", float(qty) <= base_free, float(qty), base_free))

    approved = all(c["passed"] for c in checks)
    intent = None
    if approved:
        intent = OrderIntent(
            client_order_id=request.client_order_id,
            trace_id=request.trace_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            purpose=request.purpose,
            quantity=qty,
            price=price,
            reference_price=request.reference_price,
            time_in_force=TimeInForce.GTC,
            expires_ms=request.expires_ms if request.order_type is OrderType.LIMIT else None,
        )
    return PrecheckResult(approved, checks, intent)


def cap_market_qty(market: Market, qty: Decimal, price: Decimal) -> Decimal:
    """`qty` (on the step grid) cut to the largest quantity one MARKET order may have, leaving a
    rest the exchange will still take in the next order: at least the minimum quantity and, at
    `price`, the minimum notional. Where no such cut exists the plain cap is kept."""
    f = market.filters
    top = market.round_qty(f.market_order_max_qty, market_order=True)
    step = max(f.step_size, f.market_step_size)
    least = max(f.min_qty, f.market_min_qty, step)
    if f.min_notional > 0 and price > 0:
        by_notional = f.min_notional / price
        least = max(least, (by_notional / step).to_integral_value(ROUND_UP) * step if step > 0 else by_notional)
    rest = qty - top
    if 0 < rest < least:
        smaller = market.round_qty(qty - least, market_order=True)
        if smaller >= max(f.min_qty, f.market_min_qty) and smaller > 0 and (price <= 0 or smaller * price >= f.min_notional):
            return smaller
    return top


def _cut(qty: Decimal, wanted: Decimal, purpose: OrderPurpose) -> str:
    """The journal's word on a cut MARKET order: an exit's rest is sold by the next cycle's exit,
    an entry's rest is never bought (no later order follows an entry)."""
    rest = "the rest in a later order" if purpose.is_exit else "cut to the maximum, the rest not bought"
    return f"{qty} of {wanted} ({rest})"


def _round(market: Market, price: float, side_safe: str) -> Decimal:
    """Price on the tick grid; a non-positive or non-finite price becomes 0 (which fails `price_positive`)."""
    if not price > 0 or price == float("inf"):
        return Decimal(0)
    return market.round_price(price, side_safe=side_safe)
