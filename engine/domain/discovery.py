"""What discovery hands to signals: candidates with their heat, and the signals about them."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def direct_init(cls: type[T]) -> type[T]:
    """`cls` (a frozen, slotted dataclass) with an `__init__` that stores each field through its
    slot's descriptor: same parameters, defaults and default factories as the generated one,
    about half its cost (that one goes through `object.__setattr__` by name, field by field).
    Discovery and signals build tens of thousands of these a replayed month (candidates on each side of
    the backtest's pipe; `test_discovery_domain.py` holds both constructors to equal objects)."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not (params.frozen and params.init) or "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"direct_init is for frozen, slotted dataclasses without __post_init__; not {cls.__name__}")
    names, body = [], []
    scope: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only:
            raise TypeError(f"direct_init takes positional init fields only; {cls.__name__}.{f.name} is not")
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        value = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            names.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            names.append(f"{f.name}=_MISSING")
            value = f"_factory_{f.name}() if {f.name} is _MISSING else {f.name}"
        else:
            names.append(f.name)
        body.append(f"    _set_{f.name}(self, {value})\n")
    exec(f"def __init__(self, {', '.join(names)}):\n{''.join(body)}", scope)  # as dataclasses builds its own
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


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
