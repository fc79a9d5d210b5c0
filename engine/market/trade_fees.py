"""`TradeFees`: each order's commissions, summed per trade id, exactly once, as exact decimals.

Binance reports a commission per trade (executionReport `n`/`N`, a create reply's `fills[]`,
myTrades); ccxt.pro sums an order's trades on the instance that saw them, in floats. A stream
that is reconnected or rotated gets a fresh instance, whose first report of a partly filled
order then carries only that trade's commission, while the broker reads an order's fees as
cumulative: the fees of the earlier trades were lost (booked 0 for the next fill). So the
gateway keeps the trades itself, across instances, and gives every order the sum of its trades
when they cover what it filled, and "fees unknown" when a stream report's do not (a trade sent
while the stream was down): the broker then estimates, and says so, rather than book ccxt's
partial sum. Floats summed per trade also drifted (0.09999999 for 0.1 in four parts).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from engine.domain import Order

TRADE_FEES_MAX = 5000  # orders whose trades are kept; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class TradeFee:
    """One trade of an order and the commission Binance took for it."""

    trade_id: str
    qty: Decimal
    price: Decimal
    commission: Decimal
    asset: str


def trade_fees_of(info: Mapping[str, Any]) -> list[TradeFee]:
    """The trades a raw Binance reply names with their commissions: an executionReport of a
    TRADE, a create reply's `fills[]`, or one myTrades row; none for anything else."""
    if info.get("e") == "executionReport":
        if info.get("x") != "TRADE" or info.get("N") is None:
            return []
        return [TradeFee(str(info["t"]), Decimal(str(info["l"])), Decimal(str(info["L"])), Decimal(str(info["n"])), str(info["N"]))]
    if "commissionAsset" in info and "id" in info:  # myTrades
        return [_trade(info, "id")]
    return [_trade(f, "tradeId") for f in info.get("fills") or () if "tradeId" in f]


def _trade(row: Mapping[str, Any], id_key: str) -> TradeFee:
    return TradeFee(
        str(row[id_key]), Decimal(str(row["qty"])), Decimal(str(row["price"])), Decimal(str(row["commission"])),
        str(row["commissionAsset"]),
    )


class TradeFees:
    """The trades seen of each order, by client order id, each counted once by its trade id."""

    def __init__(self, max_orders: int = TRADE_FEES_MAX) -> None:
        self.max_orders = max_orders
        self._trades: OrderedDict[str, dict[str, TradeFee]] = OrderedDict()

    def note(self, client_order_id: str, trades: list[TradeFee]) -> None:
        if not trades:
            return
        known = self._trades.setdefault(client_order_id, {})
        self._trades.move_to_end(client_order_id)
        for t in trades:
            known.setdefault(t.trade_id, t)
        while len(self._trades) > self.max_orders:
            self._trades.popitem(last=False)

    def apply(self, order: Order, *, from_stream: bool) -> Order:
        """`order` with the fees of its trades when they cover what it filled. A stream report
        they do not cover has its fees marked unknown: ccxt's figure is then a partial sum."""
        trades = self._trades.get(order.client_order_id, {}).values()
        if order.filled_qty <= 0:
            return order
        if sum(t.qty for t in trades) < order.filled_qty:
            return replace(order, fees_reported=False) if from_stream else order
        base, quote = order.symbol.split("/", 1)
        fee_quote = fee_base = fee_other = Decimal(0)
        other_asset = ""
        for t in trades:
            if t.asset == quote:
                fee_quote += t.commission
            elif t.asset == base:
                fee_base += t.commission
                fee_quote += t.commission * t.price
            else:
                fee_other += t.commission
                other_asset = t.asset
        return replace(
            order, fee_quote=float(fee_quote), fee_base=float(fee_base), fee_other=float(fee_other),
            fee_asset=other_asset, fees_reported=True,
        )
