"""Stub factories for domain objects: sensible defaults, override what the test is about."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.domain import (
    Candidate,
    Candle,
    Fill,
    HeatComponents,
    Market,
    MarketFilters,
    Order,
    OrderIntent,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Ticker,
    TickerBatch,
)

T0 = 1_618_531_200_000  # 2021-04-16 00:00 UTC


def make_market(symbol: str = "DOGE/USDT", **overrides: Any) -> Market:
    base, quote = symbol.split("/")
    filters = MarketFilters(
        tick_size=Decimal(overrides.pop("tick_size", "0.00001")),
        step_size=Decimal(overrides.pop("step_size", "1")),
        min_qty=Decimal(overrides.pop("min_qty", "1")),
        max_qty=Decimal(overrides.pop("max_qty", "90000000")),
        min_price=Decimal(overrides.pop("min_price", "0.00001")),
        max_price=Decimal(overrides.pop("max_price", "1000")),
        min_notional=Decimal(overrides.pop("min_notional", "5")),
        **{
            name: Decimal(overrides.pop(name))
            for name in (
                "market_min_qty", "market_max_qty", "market_step_size", "bid_multiplier_up", "bid_multiplier_down",
                "ask_multiplier_up", "ask_multiplier_down",
            )
            if name in overrides
        },
        avg_price_mins=int(overrides.pop("avg_price_mins", 0)),
    )
    return Market(symbol=symbol, market_id=f"{base}{quote}", base=base, quote=quote, filters=filters, **overrides)


def make_ticker(symbol: str = "DOGE/USDT", last: float = 0.3, **overrides: Any) -> Ticker:
    fields: dict[str, Any] = {
        "symbol": symbol,
        "ts_ms": T0,
        "last": last,
        "bid": last * 0.9995,
        "ask": last * 1.0005,
        "open_24h": last,
        "high_24h": last * 1.02,
        "low_24h": last * 0.98,
        "base_volume_24h": 1e7 / last,
        "quote_volume_24h": 1e7,
        "trade_count_24h": 10_000,
    }
    fields.update(overrides)
    return Ticker(**fields)


def make_batch(prices: dict[str, float], ts_ms: int = T0, **per_field: dict[str, float]) -> TickerBatch:
    """A batch with one ticker per symbol; `per_field={'quote_volume_24h': {'X/USDT': 1e6}}` overrides."""
    tickers = []
    for symbol, price in prices.items():
        overrides = {name: values[symbol] for name, values in per_field.items() if symbol in values}
        tickers.append(make_ticker(symbol, price, ts_ms=ts_ms, **overrides))
    return TickerBatch.from_tickers(ts_ms, tickers)


def make_candle(symbol: str = "DOGE/USDT", open_ms: int = T0, close: float = 0.3, **overrides: Any) -> Candle:
    fields: dict[str, Any] = {
        "symbol": symbol,
        "timeframe": "1m",
        "open_ms": open_ms,
        "open": close,
        "high": close * 1.001,
        "low": close * 0.999,
        "close": close,
        "volume": 1000.0,
    }
    fields.update(overrides)
    return Candle(**fields)


def make_candidate(symbol: str = "DOGE/USDT", heat: float = 80.0, **overrides: Any) -> Candidate:
    fields: dict[str, Any] = {
        "trace_id": "0123456789abcdef",
        "symbol": symbol,
        "ts_ms": T0,
        "heat": heat,
        "components": HeatComponents(momentum=0.8, volume_surge=0.7),
        "rank": 1,
        "price": 0.3,
        "quote_volume_24h": 5e7,
        "sources": ("ticker",),
        "returns": {"1m": 0.01, "5m": 0.04, "15m": 0.06, "60m": 0.1},
        "volume_surge": 4.0,
    }
    fields.update(overrides)
    return Candidate(**fields)


def make_intent(symbol: str = "DOGE/USDT", **overrides: Any) -> OrderIntent:
    fields: dict[str, Any] = {
        "client_order_id": "hc-0123456789abcdef-e1",
        "trace_id": "0123456789abcdef",
        "symbol": symbol,
        "side": Side.BUY,
        "order_type": OrderType.MARKET,
        "purpose": OrderPurpose.ENTRY,
        "quantity": Decimal("100"),
        "reference_price": 0.3,
    }
    fields.update(overrides)
    return OrderIntent(**fields)


def make_order(symbol: str = "DOGE/USDT", **overrides: Any) -> Order:
    fields: dict[str, Any] = {
        "client_order_id": "hc-0123456789abcdef-e1",
        "exchange_order_id": "1",
        "symbol": symbol,
        "side": Side.BUY,
        "order_type": OrderType.MARKET,
        "status": OrderStatus.FILLED,
        "quantity": Decimal("100"),
        "filled_qty": Decimal("100"),
        "average_price": 0.3,
        "created_ms": T0,
        "updated_ms": T0,
        "trace_id": "0123456789abcdef",
    }
    fields.update(overrides)
    return Order(**fields)


def make_fill(symbol: str = "DOGE/USDT", **overrides: Any) -> Fill:
    fields: dict[str, Any] = {
        "trade_id": "t1",
        "client_order_id": "hc-0123456789abcdef-e1",
        "symbol": symbol,
        "side": Side.BUY,
        "price": 0.3,
        "quantity": 100.0,
        "fee_quote": 0.03,
        "ts_ms": T0,
        "trace_id": "0123456789abcdef",
    }
    fields.update(overrides)
    return Fill(**fields)


def make_position(symbol: str = "DOGE/USDT", **overrides: Any) -> Position:
    fields: dict[str, Any] = {
        "symbol": symbol,
        "trace_id": "0123456789abcdef",
        "quantity": 100.0,
        "entry_price": 0.3,
        "opened_ms": T0,
        "entry_fees": 0.03,
    }
    fields.update(overrides)
    return Position(**fields)
