"""The volume filter's exit band: a pool member leaves for low volume only below
`liquidity_exit_frac` of the minimum, a newcomer needs the whole minimum. Without it a hot coin
whose 24 h volume hovered at the minimum entered and left the pool every other minute."""

from __future__ import annotations

from engine.config.sections.discovery import FiltersSection
from engine.discovery.filters import CandidateFilters, FilterCode
from tests.kit.discovery import pumped_pepe

MINIMUM = 2_000_000.0  # discovery.filters.min_quote_volume_24h, by default


def test_a_hot_member_hovering_at_the_volume_minimum_stays_in_the_pool() -> None:
    d, f = pumped_pepe()
    moves = []
    for k in range(40):  # ten minutes, one below the minimum, one above, still climbing
        f.prices["PEPE/USDT"] *= 1.003
        qv = MINIMUM * (0.995 if (k // 4) % 2 else 1.005)
        cycle = d.on_batch(f.batch(quote_volume_24h={"PEPE/USDT": qv}))
        moves += [s for s in cycle.entered if s == "PEPE/USDT"] + [s for s, _ in cycle.left if s == "PEPE/USDT"]
    assert moves == []
    assert "PEPE/USDT" in d.pool
    cycle = d.on_batch(f.batch(quote_volume_24h={"PEPE/USDT": MINIMUM * 0.85}))  # below the band: out
    assert ("PEPE/USDT", "filtered: min_quote_volume_24h") in cycle.left


def test_the_exit_band_keeps_only_a_liquidity_failure_within_it() -> None:
    f = CandidateFilters(FiltersSection(min_quote_volume_24h=1e6, liquidity_exit_frac=0.9), "USDT", 8)
    assert f.keeps(FilterCode.MIN_VOLUME, 0.95e6, None)
    assert not f.keeps(FilterCode.MIN_VOLUME, 0.85e6, None)
    assert not f.keeps(FilterCode.MIN_VOLUME, float("nan"), None)
    assert f.keeps(FilterCode.LISTING_LIQUIDITY, 0.095e6, 0.1)  # a listing's minimum is 10 % of it
    assert not f.keeps(FilterCode.BLACKLIST, 5e6, None)
    checks = {c["name"]: c for c in f.explain("X/USDT", 0.95e6, None, member=True)}
    assert checks["min_quote_volume_24h"] == {"name": "min_quote_volume_24h", "passed": True, "value": 0.95e6, "threshold": 0.9e6}
