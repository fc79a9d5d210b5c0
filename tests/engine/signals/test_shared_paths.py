"""Shortcuts the per-bar path takes must not change a number.

- `SignalStage` reads the candidates and the regime symbol in one `BarHistory.window` gather;
  its features must be byte for byte those of a gather per use (the regime's closes alone).
- It asks `Listings.in_window` only where a symbol's first window row is missing (no listing
  can begin inside a window otherwise): the rows and ages must be those of always asking.
- `SignalRules` keeps its entry rules while `min_heat` stays the same; a new `min_heat` must
  rebuild them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.config.sections.trading import SignalSettings
from engine.domain import Candle
from engine.signals.bars import BarHistory
from engine.signals.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    CandidateInfo,
    Listings,
    features_hot_latest,
)
from engine.signals.rules import SignalRules
from engine.signals.stage import SignalStage
from tests.kit.events import RecordingSink

MIN = 60_000
REGIME = "BTC/USDT"


def history(symbols: list[str], bars: int, seed: int) -> BarHistory:
    """Random walks with missing bars (NaN in the window) and zero-volume bars (NaN VWAP)."""
    rng = np.random.default_rng(seed)
    h = BarHistory("1m", capacity=4)  # grows while filling
    for t in range(bars):
        for s in symbols:
            if rng.random() < 0.05:
                continue
            c = float(100 * np.exp(rng.normal(0, 0.05)))
            v = 0.0 if rng.random() < 0.1 else float(rng.random() * 1e3)
            h.add(Candle(s, "1m", t * MIN, c, c * 1.01, c * 0.99, c, v, True))
    return h


@pytest.mark.parametrize("n", [1, 2, 5, 9], ids=lambda n: f"{n}-symbols")
@pytest.mark.parametrize("last", [10, 60, 79], ids=["short", "just-enough", "full"])
def test_one_gather_equals_a_gather_per_use(n: int, last: int) -> None:
    names = [f"S{i}/USDT" for i in range(n)]
    h = history([*names, REGIME], 80, seed=n * 100 + last)
    stage = SignalStage(SignalSettings(regime_symbol=REGIME), h, RecordingSink())
    rng = np.random.default_rng(last)
    info = CandidateInfo(*(rng.random(n) for _ in range(10)))
    asked = [*names[:-1], "NEVER/USDT"]  # a symbol the history has never seen reads NaN
    got, _ = stage._features(asked, info, last * MIN)
    want = features_hot_latest(h.window(asked, last * MIN), info, h.closes(REGIME, last * MIN))
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("last", [70, 95, 120], ids=["listing-in-window", "listing-at-its-edge", "listing-past"])
def test_listings_are_looked_for_only_where_a_window_begins_with_a_hole(last: int) -> None:
    names = ["OLD/USDT", "NEW/USDT", "GAP/USDT"]
    h = history([names[0], names[2], REGIME], 130, seed=last)
    rng = np.random.default_rng(last)
    for t in range(40, 130):  # listed at bar 40
        c = float(100 * np.exp(rng.normal(0, 0.05)))
        h.add(Candle(names[1], "1m", t * MIN, c, c * 1.02, c * 0.98, c, float(rng.random() * 1e3), True))
    stage = SignalStage(SignalSettings(regime_symbol=REGIME), h, RecordingSink())
    info = CandidateInfo(*(rng.random(3) for _ in range(10)))
    listed = np.full(3, 40.0 * MIN)  # every one dated: only the one whose bars begin there is a listing
    got, ages = stage._features(names, info, last * MIN, listed)
    bars = h.window(names, last * MIN)
    listings = Listings.in_window(bars.close, listed, last * MIN, MIN, stage.settings.listing_min_bars)
    want = features_hot_latest(bars, info, h.closes(REGIME, last * MIN), listings)
    assert got.tobytes() == want.tobytes()
    assert np.array_equal(ages, listings.ages(bars.n_bars), equal_nan=True)


def test_the_regime_symbol_may_be_a_candidate_too() -> None:
    h = history(["ETH/USDT", REGIME], 70, seed=7)
    stage = SignalStage(SignalSettings(regime_symbol=REGIME), h, RecordingSink())
    info = CandidateInfo.unknown((2,))
    got, _ = stage._features(["ETH/USDT", REGIME], info, 69 * MIN)
    want = features_hot_latest(h.window(["ETH/USDT", REGIME], 69 * MIN), info, h.closes(REGIME, 69 * MIN))
    assert got.tobytes() == want.tobytes()


def test_entry_rules_follow_a_new_min_heat() -> None:
    x = np.zeros((1, len(FEATURE_NAMES)))
    x[0, FEATURE_INDEX["heat"]] = 60.0
    rules = SignalRules(SignalSettings())
    since = np.array([math.inf])
    decisions = [rules.entry(x, min_heat=m, since_last_action_ms=since)[0] for m in (50.0, 70.0, 50.0)]
    heat = [next(c for c in d.checks if c["name"] == "heat") for d in decisions]
    assert [(c["passed"], c["threshold"]) for c in heat] == [(True, 50.0), (False, 70.0), (True, 50.0)]
