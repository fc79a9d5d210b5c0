"""`direct_init`: the discovery results (and the signals about them) built through their slots are the objects their
dataclass constructors build (both sides of the backtest's pipe build them that way)."""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any

import numpy as np
import pytest

from engine.discovery.pipeline import DiscoveryCycle
from engine.discovery.pool import PoolChange, PoolSnapshot
from engine.domain.discovery import Candidate, HeatComponents, Signal, SignalDecision
from engine.domain.slots_init import direct_init
from engine.runtime.cycle import CycleOutcome
from engine.signals.features import CandidateInfo


def generated(cls: type) -> type:
    """`cls` as plain `@dataclass(frozen=True, slots=True)` builds it: the reference constructor."""
    spec = [
        (f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, spec, frozen=True, slots=True)


def values(obj: object) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))  # type: ignore[arg-type]


HEAT = HeatComponents(0.5, 0.25, 0.0, 0.0, 0.0, 1.0)
CANDIDATE = Candidate("t1", "ABC/USDT", 60_000, 71.5, HEAT, 1, 0.012, 2.5e6)
SNAPSHOT = PoolSnapshot(60_000, (CANDIDATE,))
CASES: list[tuple[type, tuple[Any, ...], dict[str, Any]]] = [
    (HeatComponents, (), {}),
    (HeatComponents, (0.5, 0.25), {"rank_acceleration": math.nan}),
    (Candidate, ("t1", "ABC/USDT", 60_000, 71.5, HEAT, 1, 0.012, 2.5e6), {}),
    (
        Candidate,
        ("t1", "ABC/USDT", 60_000, 71.5, HEAT, 1, 0.012, math.nan, ("ticker",), 3.5),
        {"returns": types.MappingProxyType({"1m": 0.01, "5m": math.nan}), "volume_surge": 4.0},
    ),
    (PoolChange, (("ABC/USDT",), (("XYZ/USDT", "expired"),), SNAPSHOT), {}),
    (DiscoveryCycle, (60_000, True, SNAPSHOT), {}),
    (Signal, ("t1", "ABC/USDT", 60_000, SignalDecision.SKIP, "failed: heat"), {}),
    (Signal, ("t1", "ABC/USDT", 60_000, SignalDecision.ENTER, "ok"), {"rules": {"heat": True}, "ml_score": 0.7}),
    (DiscoveryCycle, (60_000, True, SNAPSHOT, ("ABC/USDT",), (("XYZ/USDT", "expired"),), 2), {}),
    (CandidateInfo, tuple(np.full(2, float(k)) for k in range(10)), {}),  # the signal stage's, per call
    (CycleOutcome, (DiscoveryCycle(60_000, True, SNAPSHOT), 2, 12.5), {}),  # the trading cycle's, per minute
    (CycleOutcome, (DiscoveryCycle(60_000, False, SNAPSHOT), 0, None), {}),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), CASES)
def test_direct_init_builds_what_the_dataclass_constructor_builds(
    cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    fast, reference = cls(*args, **kwargs), generated(cls)(*args, **kwargs)
    assert type(fast) is cls
    assert all(a is b for a, b in zip(values(fast), values(reference), strict=True)) or values(fast) == values(reference)
    assert repr(fast) == repr(reference)
    assert fast == cls(*args, **kwargs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(fast, dataclasses.fields(fast)[0].name, 0)


def test_a_default_factory_gives_each_object_its_own_value() -> None:
    a, b = Candidate("t", "A/USDT", 0, 0.0, HEAT, 1, 1.0, 1.0), Candidate("t", "A/USDT", 0, 0.0, HEAT, 1, 1.0, 1.0)
    assert a.returns == {} and a.returns is not b.returns


def test_the_signature_is_the_dataclass_one() -> None:
    with pytest.raises(TypeError):
        Candidate("t", "A/USDT", 0, 0.0, HEAT, 1, 1.0)  # type: ignore[call-arg]
    assert dataclasses.replace(CANDIDATE, rank=2) == Candidate("t1", "ABC/USDT", 60_000, 71.5, HEAT, 2, 0.012, 2.5e6)


def test_direct_init_refuses_what_it_cannot_build() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class KeywordOnly:
        x: int = dataclasses.field(kw_only=True)

    for cls in (Mutable, KeywordOnly):
        with pytest.raises(TypeError):
            direct_init(cls)
