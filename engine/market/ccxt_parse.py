"""ccxt's unified dicts -> the engine's value types. Pure functions, no I/O.

Exact numbers stay exact: quantities and prices of orders come from Binance's own decimal
strings in `info` when present (`origQty`/`q`, `executedQty`/`z`, `price`/`p`), filters
from exchangeInfo's strings; floats are only used where the domain type is a float.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from engine.domain import (
    Candle,
    Fill,
    Market,
    MarketFilters,
    MarketStatus,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Side,
    TickerBatch,
)
from engine.domain.candle import timeframe_ms
from engine.domain.market import to_decimal
from engine.errors import MarketDataError
from engine.market.gateway import Balance

CcxtDict = Mapping[str, Any]

_BINANCE_STATUS: dict[str, OrderStatus] = {
    "NEW": OrderStatus.OPEN,
    "PENDING_NEW": OrderStatus.PENDING,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.OPEN,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
_CCXT_STATUS: dict[str, OrderStatus] = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
    "expired": OrderStatus.EXPIRED,
}


def _dec(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return to_decimal(value) if isinstance(value, float | int | Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise MarketDataError(f"not a number: {value!r}") from None


def _first_dec(info: CcxtDict, keys: tuple[str, ...], fallback: object) -> Decimal | None:
    for key in keys:
        value = _dec(info.get(key))
        if value is not None:
            return value
    return _dec(fallback)


def market_from_ccxt(m: CcxtDict) -> Market:
    """A `Market` from one ccxt market; filters from the raw exchangeInfo `filters[]`."""
    info = m.get("info") or {}
    filters = {f.get("filterType"): f for f in info.get("filters", [])}
    price_f = filters.get("PRICE_FILTER", {})
    lot_f = filters.get("LOT_SIZE", {})
    notional_f = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
    market_lot_f = filters.get("MARKET_LOT_SIZE", {})
    band_f = filters.get("PERCENT_PRICE_BY_SIDE", {})
    zero = Decimal(0)
    try:
        status = MarketStatus(info.get("status", "TRADING"))
    except ValueError:
        # A status Binance adds later is not one we may trade in: treat it as a break.
        status = MarketStatus.BREAK
    return Market(
        symbol=str(m["symbol"]),
        market_id=str(m["id"]),
        base=str(m["base"]),
        quote=str(m["quote"]),
        filters=MarketFilters(
            tick_size=_dec(price_f.get("tickSize")) or zero,
            step_size=_dec(lot_f.get("stepSize")) or zero,
            min_qty=_dec(lot_f.get("minQty")) or zero,
            max_qty=_dec(lot_f.get("maxQty")) or zero,
            min_price=_dec(price_f.get("minPrice")) or zero,
            max_price=_dec(price_f.get("maxPrice")) or zero,
            min_notional=_dec(notional_f.get("minNotional")) or zero,
            market_min_qty=_dec(market_lot_f.get("minQty")) or zero,
            market_max_qty=_dec(market_lot_f.get("maxQty")) or zero,
            market_step_size=_dec(market_lot_f.get("stepSize")) or zero,
            bid_multiplier_up=_dec(band_f.get("bidMultiplierUp")) or zero,
            bid_multiplier_down=_dec(band_f.get("bidMultiplierDown")) or zero,
            ask_multiplier_up=_dec(band_f.get("askMultiplierUp")) or zero,
            ask_multiplier_down=_dec(band_f.get("askMultiplierDown")) or zero,
            avg_price_mins=int(_dec(band_f.get("avgPriceMins")) or 0),
        ),
        status=status,
        order_types=tuple(info.get("orderTypes") or ("LIMIT", "MARKET")),
    )


def _num(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _trade_count(info: CcxtDict) -> int:
    raw = info.get("n", info.get("count"))
    return -1 if raw is None else int(raw)


def tickers_to_batch(tickers: Mapping[str, CcxtDict], ts_ms: int, *, shift_ms: int = 0) -> TickerBatch:
    """A `TickerBatch` from ccxt's `{symbol: ticker}` (watch_tickers / fetch_tickers); `shift_ms`
    is added to the exchange's event times (`engine.market.exchange_clock`), not to `ts_ms`,
    which a ticker without one takes."""
    rows = list(tickers.values())
    n = len(rows)

    def col(key: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.fromiter((_num(t.get(key)) for t in rows), np.float64, n)

    return TickerBatch(
        ts_ms=ts_ms,
        symbols=tuple(str(t["symbol"]) for t in rows),
        event_ms=np.fromiter((t["timestamp"] + shift_ms if t.get("timestamp") else ts_ms for t in rows), np.int64, n),
        last=col("last"),
        bid=col("bid"),
        ask=col("ask"),
        open_24h=col("open"),
        high_24h=col("high"),
        low_24h=col("low"),
        base_volume_24h=col("baseVolume"),
        quote_volume_24h=col("quoteVolume"),
        trade_count_24h=np.fromiter((_trade_count(t.get("info") or {}) for t in rows), np.int64, n),
    )


NEWEST_FINAL_AFTER_MS = 60_000  # the newest bar of a reply, with no newer bar after it, is final this long past its end


def candles_from_ohlcv(
    symbol: str, timeframe: str, rows: list[list[Any]], now_ms: int, latest_open_ms: int | None = None
) -> list[Candle]:
    """Candles from ccxt OHLCV rows, oldest first.

    ccxt drops Binance's "bar closed" flag, so it is rebuilt: a bar older than the newest
    one the exchange has sent (`latest_open_ms`, default the last row) is closed, as the
    exchange opens the next bar the moment one ends on a pair that trades. The newest is
    taken as closed only `NEWEST_FINAL_AFTER_MS` past its end (`now_ms`, our clock of the
    exchange's): before that it may still be taking trades the reply did not carry yet (a
    request under way at the boundary, a clock ahead; the simulated exchange at x300 answers
    from a market up to 30 exchange seconds behind its clock). Taken as closed at its end, a
    half-made bar was fed to the core as final and never fetched again, and its features (the
    regime pair's too) were wrong for the next hour. A newest bar that old belongs to a pair
    that stopped trading (a halt): it is final.
    """
    bar = timeframe_ms(timeframe)
    newest = latest_open_ms if latest_open_ms is not None else (int(rows[-1][0]) if rows else 0)
    return [
        Candle(
            symbol=symbol,
            timeframe=timeframe,
            open_ms=int(r[0]),
            open=float(r[1]),
            high=float(r[2]),
            low=float(r[3]),
            close=float(r[4]),
            volume=float(r[5]),
            closed=int(r[0]) < newest or int(r[0]) + bar + NEWEST_FINAL_AFTER_MS <= now_ms,
        ).validate()
        for r in rows
    ]


def _status(o: CcxtDict, filled: Decimal) -> OrderStatus:
    info = o.get("info") or {}
    raw = info.get("X") or info.get("status")
    if isinstance(raw, str) and raw in _BINANCE_STATUS:
        return _BINANCE_STATUS[raw]
    status = _CCXT_STATUS.get(str(o.get("status")))
    if status is None:
        raise MarketDataError(f"order {o.get('clientOrderId')}: unknown status {o.get('status')!r}")
    if status is OrderStatus.OPEN and filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    return status


def _fee_quote(fees: list[CcxtDict], base: str, quote: str, price: float | None) -> float:
    """Fees valued in the quote asset: quote fees as is, base fees at `price`.

    Fees in a third asset (BNB) have no price here: `_fee_other` reports them apart, and the
    trading core values them when it books the fill.
    """
    total = 0.0
    for fee in fees:
        cost = fee.get("cost")
        if cost is None:
            continue
        if fee.get("currency") == quote:
            total += float(cost)
        elif fee.get("currency") == base and price:
            total += float(cost) * price
    return total


def _fee_base(fees: list[CcxtDict], base: str) -> float:
    """The part of the fees charged in the base asset (Binance: a buy's commission in coins)."""
    return sum(float(f["cost"]) for f in fees if f.get("cost") is not None and f.get("currency") == base)


def _fee_other(fees: list[CcxtDict], base: str, quote: str) -> tuple[float, str]:
    """The fees paid in a third asset (BNB, for an account that pays its fees in it) and that
    asset. Binance charges one asset per commission; should two third assets ever appear, the
    first is reported and the others would be lost, so that is refused instead."""
    other = [f for f in fees if f.get("cost") is not None and f.get("currency") not in (base, quote)]
    assets = {str(f.get("currency")) for f in other}
    if len(assets) > 1:
        raise MarketDataError(f"fees in more than one third asset: {sorted(assets)}")
    return sum(float(f["cost"]) for f in other), assets.pop() if assets else ""


def order_from_ccxt(
    o: CcxtDict, market: Market | None = None, *, trace_id: str = "", purpose: OrderPurpose = OrderPurpose.ENTRY
) -> Order:
    """An `Order` from a ccxt order (REST reply or WS executionReport)."""
    info = o.get("info") or {}
    quantity = _first_dec(info, ("origQty", "q"), o.get("amount"))
    filled = _first_dec(info, ("executedQty", "z"), o.get("filled")) or Decimal(0)
    price = _first_dec(info, ("price", "p"), o.get("price"))
    if quantity is None:
        raise MarketDataError(f"order {o.get('clientOrderId')}: no quantity")
    symbol = str(o["symbol"])
    base, quote = (market.base, market.quote) if market else tuple(symbol.split("/", 1))
    average = o.get("average")
    average_f = float(average) if average else None
    fees = list(o.get("fees") or ([o["fee"]] if o.get("fee") else []))
    fee_other, fee_asset = _fee_other(fees, base, quote)
    # Binance sends workingTime -1 for orders not (yet) working and ccxt may pick it up.
    created = int(o.get("timestamp") or 0)
    if created <= 0:
        created = int(info.get("transactTime") or info.get("updateTime") or info.get("T") or 0)
    return Order(
        client_order_id=str(o.get("clientOrderId") or ""),
        exchange_order_id=str(o["id"]) if o.get("id") is not None else None,
        symbol=symbol,
        side=Side(str(o["side"]).lower()),
        order_type=OrderType(str(o["type"]).lower()),
        status=_status(o, filled),
        quantity=quantity,
        filled_qty=filled,
        price=price if price else None,
        average_price=average_f,
        fee_quote=_fee_quote(fees, base, quote, average_f),
        fee_base=_fee_base(fees, base),
        fee_other=fee_other,
        fee_asset=fee_asset,
        fees_reported=any(f.get("cost") is not None for f in fees),
        created_ms=created,
        updated_ms=int(o.get("lastUpdateTimestamp") or o.get("lastTradeTimestamp") or created),
        trace_id=trace_id,
        purpose=purpose,
    )


def fill_from_ccxt(t: CcxtDict, client_order_id: str, *, trace_id: str = "") -> Fill:
    """A `Fill` from a ccxt trade (fetch_my_trades); myTrades has no client id, the caller knows it."""
    symbol = str(t["symbol"])
    base, quote = symbol.split("/", 1)
    price = float(t["price"])
    fee = t.get("fee")
    fees = list(t.get("fees") or ([fee] if fee else []))
    fee_other, fee_asset = _fee_other(fees, base, quote)
    return Fill(
        trade_id=str(t["id"]),
        client_order_id=client_order_id,
        symbol=symbol,
        side=Side(str(t["side"]).lower()),
        price=price,
        quantity=float(t["amount"]),
        fee_quote=_fee_quote(fees, base, quote, price),
        fee_base=_fee_base(fees, base),
        ts_ms=int(t.get("timestamp") or 0),
        trace_id=trace_id,
        is_maker=t.get("takerOrMaker") == "maker",
        fee_other=fee_other,
        fee_asset=fee_asset,
    )


def balances_from_ccxt(b: CcxtDict) -> dict[str, Balance]:
    """Non-zero balances; exact strings from `info.balances` (REST) when present, else ccxt's."""
    info = b.get("info") or {}
    raw = info.get("balances") if isinstance(info, Mapping) else None
    out: dict[str, Balance] = {}
    if isinstance(raw, list):
        for row in raw:
            free, locked = _dec(row.get("free")) or Decimal(0), _dec(row.get("locked")) or Decimal(0)
            if free or locked:
                out[str(row["asset"])] = Balance(free=free, locked=locked)
        return out
    free_map: Mapping[str, Any] = b.get("free") or {}
    used_map: Mapping[str, Any] = b.get("used") or {}
    for asset in set(free_map) | set(used_map):
        free, locked = _dec(free_map.get(asset)) or Decimal(0), _dec(used_map.get(asset)) or Decimal(0)
        if free or locked:
            out[asset] = Balance(free=free, locked=locked)
    return out
