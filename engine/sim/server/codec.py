"""Domain values -> the JSON shapes Binance spot sends, field for field.

ccxt parses these with the same code it runs against api.binance.com, so the shapes follow
Binance's documented responses (numbers as 8-decimal strings, ids as ints, times in ms).
Where the market generator does not model a field, it is derived and the derivation is
named next to it (last trade size, taker-buy volume, kline quote volume).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from engine.domain import Candle, Market, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.domain.ticker import FloatArray
from engine.sim.matching import (
    Account,
    BalanceEvent,
    ExecType,
    ExecutionEvent,
    OrderKind,
    OrderSide,
    SimOrder,
    SimTrade,
)

Json = dict[str, Any]
DAY_MS = 86_400_000
ZERO = "0.00000000"
RATE_LIMITS: list[Json] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def num(value: float | Decimal) -> str:
    """A price or quantity as Binance writes it: fixed 8 decimals."""
    return f"{value:.8f}"


# ---- market data ---------------------------------------------------------------------


def exchange_info(markets: Iterable[Market], server_time_ms: int) -> Json:
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [symbol_info(m) for m in markets],
    }


def symbol_info(m: Market) -> Json:
    f = m.filters
    notional = num(f.min_notional)
    filters: list[Json] = [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": num(f.min_price),
            "maxPrice": num(f.max_price),
            "tickSize": num(f.tick_size),
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": num(f.min_qty),
            "maxQty": num(f.max_qty),
            "stepSize": num(f.step_size),
        },
        {"filterType": "MIN_NOTIONAL", "minNotional": notional, "applyToMarket": True, "avgPriceMins": 5},
        {
            "filterType": "NOTIONAL",
            "minNotional": notional,
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
    ]
    # Zero in the domain means "no such filter": a market without them is served without them.
    if f.market_min_qty > 0 or f.market_max_qty > 0 or f.market_step_size > 0:
        filters.append(
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": num(f.market_min_qty),
                "maxQty": num(f.market_max_qty),
                "stepSize": num(f.market_step_size),
            }
        )
    if f.has_percent_price:
        filters.append(
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": str(f.bid_multiplier_up),
                "bidMultiplierDown": str(f.bid_multiplier_down),
                "askMultiplierUp": str(f.ask_multiplier_up),
                "askMultiplierDown": str(f.ask_multiplier_down),
                "avgPriceMins": f.avg_price_mins,
            }
        )
    return {
        "symbol": m.market_id,
        "status": m.status.value,
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": list(m.order_types),
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": filters,
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _finite(values: FloatArray) -> list[float]:
    """Binance writes 0 where it has no value (a symbol without trades); a NaN would make
    ccxt's ticker parser raise and lose the whole message, so the codec never sends one
    (the NaN fault injects them on purpose, after this)."""
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).tolist()  # type: ignore[no-any-return]


class TickerRows:
    """One snapshot of every symbol's 24 h statistics, rendered to the three ticker shapes.

    Built once per push from a `TickerBatch` (columns -> Python lists once) so that
    `!ticker@arr`, `!miniTicker@arr` and per-symbol streams share the work.
    """

    def __init__(self, batch: TickerBatch, ids: Sequence[str], books: Sequence[tuple[float, float]], event_ms: int) -> None:
        self.ids = list(ids)
        self.event_ms = event_ms
        self._last = _finite(batch.last)
        self._bid = _finite(batch.bid)
        self._ask = _finite(batch.ask)
        self._open = _finite(batch.open_24h)
        self._high = _finite(batch.high_24h)
        self._low = _finite(batch.low_24h)
        self._base = _finite(batch.base_volume_24h)
        self._quote = _finite(batch.quote_volume_24h)
        self._count = batch.trade_count_24h.tolist()
        self._books = [(b if math.isfinite(b) else 0.0, a if math.isfinite(a) else 0.0) for b, a in books]
        self.index = {s: i for i, s in enumerate(self.ids)}

    def _derived(self, i: int) -> tuple[float, float, float, float, int]:
        last, open_, base, quote = self._last[i], self._open[i], self._base[i], self._quote[i]
        change = last - open_
        pct = 100.0 * change / open_ if open_ else 0.0
        wavg = quote / base if base else last
        count = max(int(self._count[i]), 0)
        last_qty = base / count if count else 0.0  # not modelled: the average trade size
        return change, pct, wavg, last_qty, count

    def ws_ticker(self, i: int) -> Json:
        change, pct, wavg, last_qty, count = self._derived(i)
        e = self.event_ms
        return {
            "e": "24hrTicker",
            "E": e,
            "s": self.ids[i],
            "p": num(change),
            "P": f"{pct:.3f}",
            "w": num(wavg),
            "x": num(self._open[i]),
            "c": num(self._last[i]),
            "Q": num(last_qty),
            "b": num(self._bid[i]),
            "B": num(self._books[i][0]),
            "a": num(self._ask[i]),
            "A": num(self._books[i][1]),
            "o": num(self._open[i]),
            "h": num(self._high[i]),
            "l": num(self._low[i]),
            "v": num(self._base[i]),
            "q": num(self._quote[i]),
            "O": e - DAY_MS,
            "C": e,
            "F": 1 if count else -1,
            "L": count if count else -1,
            "n": count,
        }

    def ws_mini_ticker(self, i: int) -> Json:
        return {
            "e": "24hrMiniTicker",
            "E": self.event_ms,
            "s": self.ids[i],
            "c": num(self._last[i]),
            "o": num(self._open[i]),
            "h": num(self._high[i]),
            "l": num(self._low[i]),
            "v": num(self._base[i]),
            "q": num(self._quote[i]),
        }

    def rest_ticker(self, i: int) -> Json:
        change, pct, wavg, last_qty, count = self._derived(i)
        e = self.event_ms
        return {
            "symbol": self.ids[i],
            "priceChange": num(change),
            "priceChangePercent": f"{pct:.3f}",
            "weightedAvgPrice": num(wavg),
            "prevClosePrice": num(self._open[i]),
            "lastPrice": num(self._last[i]),
            "lastQty": num(last_qty),
            "bidPrice": num(self._bid[i]),
            "bidQty": num(self._books[i][0]),
            "askPrice": num(self._ask[i]),
            "askQty": num(self._books[i][1]),
            "openPrice": num(self._open[i]),
            "highPrice": num(self._high[i]),
            "lowPrice": num(self._low[i]),
            "volume": num(self._base[i]),
            "quoteVolume": num(self._quote[i]),
            "openTime": e - DAY_MS,
            "closeTime": e,
            "firstId": 1 if count else -1,
            "lastId": count if count else -1,
            "count": count,
        }


def _kline_quote_volume(c: Candle) -> float:
    return c.volume * (c.open + c.close) / 2.0  # not modelled: volume at the bar's mean price


def kline_row(c: Candle) -> list[Any]:
    """A REST `klines` row (taker-buy volume not modelled: reported as half the volume)."""
    quote = _kline_quote_volume(c)
    return [
        c.open_ms,
        num(c.open),
        num(c.high),
        num(c.low),
        num(c.close),
        num(c.volume),
        c.open_ms + timeframe_ms(c.timeframe) - 1,
        num(quote),
        0,
        num(c.volume / 2.0),
        num(quote / 2.0),
        "0",
    ]


def ws_kline(c: Candle, market_id: str, event_ms: int) -> Json:
    quote = _kline_quote_volume(c)
    return {
        "e": "kline",
        "E": event_ms,
        "s": market_id,
        "k": {
            "t": c.open_ms,
            "T": c.open_ms + timeframe_ms(c.timeframe) - 1,
            "s": market_id,
            "i": c.timeframe,
            "f": -1,
            "L": -1,
            "o": num(c.open),
            "c": num(c.close),
            "h": num(c.high),
            "l": num(c.low),
            "v": num(c.volume),
            "n": 0,
            "x": c.closed,
            "q": num(quote),
            "V": num(c.volume / 2.0),
            "Q": num(quote / 2.0),
            "B": "0",
        },
    }


# ---- orders, trades, accounts -------------------------------------------------------


def _order_core(o: SimOrder) -> Json:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "price": num(o.price),
        "origQty": num(o.orig_qty),
        "executedQty": num(o.executed_qty),
        "origQuoteOrderQty": num(o.orig_quote_order_qty),
        "cummulativeQuoteQty": num(o.cumulative_quote_qty),
        "status": o.status.value,
        "timeInForce": o.time_in_force,
        "type": o.type.value,
        "side": o.side.value,
        "selfTradePreventionMode": "NONE",
    }


def new_order_response(o: SimOrder, fills: Sequence[SimTrade], resp_type: str) -> Json:
    """POST /order: ACK, RESULT or FULL (with `fills`)."""
    if resp_type == "ACK":
        return {
            "symbol": o.symbol,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": o.client_order_id,
            "transactTime": o.time_ms,
        }
    out = _order_core(o)
    out["transactTime"] = o.time_ms
    out["workingTime"] = o.time_ms if o.type is OrderKind.LIMIT else -1
    if resp_type == "FULL":
        out["fills"] = [
            {
                "price": num(t.price),
                "qty": num(t.qty),
                "commission": num(t.commission),
                "commissionAsset": t.commission_asset,
                "tradeId": t.id,
            }
            for t in fills
        ]
    return out


def order_query(o: SimOrder) -> Json:
    """GET /order and each row of GET /openOrders."""
    out = _order_core(o)
    out.update(
        {
            "stopPrice": ZERO,
            "icebergQty": ZERO,
            "time": o.time_ms,
            "updateTime": o.update_time_ms,
            "isWorking": o.type is OrderKind.LIMIT,
            "workingTime": o.time_ms if o.type is OrderKind.LIMIT else -1,
        }
    )
    return out


def cancel_response(o: SimOrder) -> Json:
    """DELETE /order, as Binance answers it: `clientOrderId` is the *cancel's* own id (random
    unless the request sent `newClientOrderId`), the cancelled order's id is `origClientOrderId`."""
    out = _order_core(o)
    out["origClientOrderId"] = o.client_order_id
    out["clientOrderId"] = o.cancel_client_order_id or o.client_order_id
    out["transactTime"] = o.update_time_ms
    return out


def trade_json(t: SimTrade) -> Json:
    return {
        "symbol": t.symbol,
        "id": t.id,
        "orderId": t.order_id,
        "orderListId": -1,
        "price": num(t.price),
        "qty": num(t.qty),
        "quoteQty": num(t.quote_qty),
        "commission": num(t.commission),
        "commissionAsset": t.commission_asset,
        "time": t.time_ms,
        "isBuyer": t.side is OrderSide.BUY,
        "isMaker": t.is_maker,
        "isBestMatch": True,
    }


def account_json(acct: Account, fee_rate: Decimal) -> Json:
    bps = int(fee_rate * 10_000)
    rate = num(fee_rate)
    return {
        "makerCommission": bps,
        "takerCommission": bps,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": rate, "taker": rate, "buyer": ZERO, "seller": ZERO},
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": acct.update_time_ms,
        "accountType": "SPOT",
        "balances": [{"asset": a, "free": num(b.free), "locked": num(b.locked)} for a, b in sorted(acct.balances.items())],
        "permissions": ["SPOT"],
        "uid": zlib.crc32(acct.api_key.encode()),
    }


def execution_report(ev: ExecutionEvent) -> Json:
    """A user-stream executionReport. A cancel's, as Binance sends it, carries the cancel's own
    id in `c` and the cancelled order's in `C` (empty for every other execution type)."""
    o, t = ev.order, ev.trade
    canceled = ev.exec_type is ExecType.CANCELED
    return {
        "e": "executionReport",
        "E": ev.event_ms,
        "s": o.symbol,
        "c": o.cancel_client_order_id if canceled and o.cancel_client_order_id else o.client_order_id,
        "S": o.side.value,
        "o": o.type.value,
        "f": o.time_in_force,
        "q": num(o.orig_qty),
        "p": num(o.price),
        "P": ZERO,
        "F": ZERO,
        "g": -1,
        "C": o.client_order_id if canceled else "",
        "x": ev.exec_type.value,
        "X": o.status.value,
        "r": "NONE",
        "i": o.order_id,
        "l": num(t.qty) if t else ZERO,
        "z": num(o.executed_qty),
        "L": num(t.price) if t else ZERO,
        "n": num(t.commission) if t else "0",
        "N": t.commission_asset if t else None,
        "T": ev.event_ms,
        "t": t.id if t else -1,
        "v": 0,
        "I": ev.event_ms,
        "w": o.status.is_open and o.type is OrderKind.LIMIT,
        "m": t.is_maker if t else False,
        "M": False,
        "O": o.time_ms,
        "Z": num(o.cumulative_quote_qty),
        "Y": num(t.quote_qty) if t else ZERO,
        "Q": num(o.orig_quote_order_qty),
        "W": o.time_ms,
        "V": "NONE",
    }


def account_position(ev: BalanceEvent) -> Json:
    return {
        "e": "outboundAccountPosition",
        "E": ev.event_ms,
        "u": ev.event_ms,
        "B": [{"a": a, "f": num(free), "l": num(locked)} for a, free, locked in ev.balances],
    }
