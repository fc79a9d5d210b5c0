"""What discovery hands to signals: candidates with their heat, and the signals about them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.domain.slots_init import direct_init


@direct_init
@dataclass(frozen=True, slots=True)
class HeatComponents:
    """Each component of the heat score in 0..1, kept so replay can show why a coin is hot."""

    momentum: float = 0.0
    volume_surge: float = 0.0
    listing_freshness: float = 0.0
    social_velocity: float = 0.0
    social_sentiment: float = 0.0
    rank_acceleration: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.__slots__}


@direct_init
@dataclass(frozen=True, slots=True)
class Candidate:
    """A symbol in the candidate pool at one moment, with the trace its decision chain carries."""

    trace_id: str
    symbol: str
    ts_ms: int
    heat: float  # 0..100
    components: HeatComponents
    rank: int
    price: float
    quote_volume_24h: float
    sources: tuple[str, ...] = ()  # "ticker", "listing", "social"
    coin_age_days: float | None = None
    returns: Mapping[str, float] = field(default_factory=dict)  # "1m", "5m", "15m", "60m"; NaN: unknown
    volume_surge: float = 0.0


class SignalDecision(enum.StrEnum):
    ENTER = "enter"
    SKIP = "skip"
    EXIT = "exit"
    HOLD = "hold"


@direct_init
@dataclass(frozen=True, slots=True)
class Signal:
    """One evaluation of the rules for one symbol at one bar."""

    trace_id: str
    symbol: str
    ts_ms: int
    decision: SignalDecision
    reason: str
    rules: Mapping[str, bool] = field(default_factory=dict)
    features: Mapping[str, float] = field(default_factory=dict)
    ml_score: float | None = None
