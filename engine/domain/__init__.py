"""Value types the engine speaks.

Immutable (frozen, slotted dataclasses), typed, cheap to build. Floats in the core for
speed; `Decimal` only at the exchange boundary, where `Market` rounds prices and
quantities to the exchange's filters without float artefacts.
"""

from engine.domain.candle import Bars, Candle
from engine.domain.discovery import Candidate, HeatComponents, Signal, SignalDecision
from engine.domain.market import Market, MarketFilters, MarketStatus
from engine.domain.state import EngineState, StateReason
from engine.domain.ticker import MinuteVolumes, Ticker, TickerBatch, TickerRun
from engine.domain.trading import (
    Fill,
    Order,
    OrderIntent,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)

__all__ = [
    "Bars",
    "Candidate",
    "Candle",
    "EngineState",
    "Fill",
    "HeatComponents",
    "Market",
    "MarketFilters",
    "MarketStatus",
    "MinuteVolumes",
    "Order",
    "OrderIntent",
    "OrderPurpose",
    "OrderStatus",
    "OrderType",
    "Position",
    "Side",
    "Signal",
    "SignalDecision",
    "StateReason",
    "Ticker",
    "TickerBatch",
    "TickerRun",
    "TimeInForce",
]
