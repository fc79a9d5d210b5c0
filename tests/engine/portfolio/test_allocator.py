"""Allocator and clusters: sizes from equity, and exposure never above its caps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.sections.trading import CapitalSettings, RiskSettings
from engine.portfolio.allocator import Allocator
from engine.portfolio.clusters import Clusters

RISK = RiskSettings(max_exposure=0.9, max_cluster_exposure=0.4, max_positions_per_cluster=2, clusters={"A/USDT": "meme", "B/USDT": "meme", "C/USDT": "ai"})


def allocator(profile: str = "starter", capital: CapitalSettings | None = None) -> Allocator:
    return Allocator(capital or CapitalSettings(profile=profile), RISK, buy_cost_rate=0.001, max_order_quote=1000.0)


@pytest.mark.parametrize(
    ("profile", "max_concurrent", "size"),
    [pytest.param("starter", 2, 50.0, id="starter-100-max2"), pytest.param("growth", 3, 100.0, id="growth-300-max3"), pytest.param("full", 5, 100.0, id="full-500-max5")],
)
def test_staged_profiles(profile: str, max_concurrent: int, size: float) -> None:
    settings = CapitalSettings(profile=profile)
    a = allocator(capital=settings)
    equity = settings.active.capital
    sizing = a.size(equity=equity, exposure=0.0, cluster_room=equity, cash=equity, open_positions=0)
    assert a.max_concurrent == max_concurrent
    assert sizing.approved and sizing.quote == pytest.approx(size)


@pytest.mark.parametrize(
    ("kw", "failed"),
    [
        pytest.param({"open_positions": 2}, ["max_concurrent"], id="max-concurrent"),
        pytest.param({"exposure": 88.0}, ["exposure_room", "min_order"], id="no-exposure-room"),
        pytest.param({"cluster_room": 3.0}, ["cluster_room", "min_order"], id="no-cluster-room"),
        pytest.param({"cash": 4.0}, ["cash", "min_order"], id="no-cash"),
        pytest.param({"size_multiplier": 0.1}, ["min_order"], id="L2-halving-below-minimum"),
    ],
)
def test_sizing_rejections(kw: dict[str, float], failed: list[str]) -> None:
    args = {"equity": 100.0, "exposure": 0.0, "cluster_room": 100.0, "cash": 100.0, "open_positions": 0} | kw
    sizing = allocator().size(**args)  # type: ignore[arg-type]
    assert [c["name"] for c in sizing.checks if not c["passed"]] == failed


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="not one of"):
        CapitalSettings(profile="yolo")


def test_unmapped_symbol_is_its_own_cluster() -> None:
    c = Clusters(RISK)
    assert c.of("A/USDT") == c.of("B/USDT") == "meme" and c.of("Z/USDT") == "Z/USDT"
    checks = {x["name"]: x["passed"] for x in c.checks("B/USDT", {"A/USDT": 10.0, "C/USDT": 5.0}, 100.0)}
    assert checks == {"cluster_count:meme": True, "cluster_exposure:meme": True}
    full = {x["name"]: x["passed"] for x in c.checks("B/USDT", {"A/USDT": 10.0, "B2": 1.0, "B/USDT": 1.0}, 100.0)}
    assert not full["cluster_count:meme"]


SYMBOLS = ["A/USDT", "B/USDT", "C/USDT", "D/USDT", "E/USDT"]


@settings(max_examples=300, deadline=None)
@given(
    equity=st.floats(50.0, 10_000.0),
    steps=st.lists(st.tuples(st.sampled_from(SYMBOLS), st.floats(0.1, 3.0)), min_size=1, max_size=12),
    profile=st.sampled_from(["starter", "growth", "full"]),
)
def test_exposure_never_exceeds_its_caps(equity: float, steps: list[tuple[str, float]], profile: str) -> None:
    """Entries sized by the allocator, approved only when every check passes, never take total or
    cluster exposure above their caps, nor the position count above max_concurrent."""
    a = allocator(profile)
    clusters = Clusters(RISK)
    notionals: dict[str, float] = {}
    cash = equity
    for symbol, multiplier in steps:
        if symbol in notionals:
            continue
        exposure = sum(notionals.values())
        sizing = a.size(
            equity=equity,
            exposure=exposure,
            cluster_room=clusters.room(symbol, notionals, equity),
            cash=cash,
            open_positions=len(notionals),
            size_multiplier=min(multiplier, 1.0),
        )
        cluster_ok = all(c["passed"] for c in clusters.checks(symbol, notionals, equity))
        if not (sizing.approved and cluster_ok):
            continue
        notionals[symbol] = sizing.quote
        cash -= sizing.quote * 1.001
        assert sum(notionals.values()) <= equity * RISK.max_exposure * (1 + 1e-12)
        for name in {clusters.of(s) for s in notionals}:
            used = sum(v for s, v in notionals.items() if clusters.of(s) == name)
            assert used <= equity * RISK.max_cluster_exposure * (1 + 1e-12)
            assert sum(clusters.of(s) == name for s in notionals) <= RISK.max_positions_per_cluster
        assert len(notionals) <= a.max_concurrent
        assert cash >= -1e-9
