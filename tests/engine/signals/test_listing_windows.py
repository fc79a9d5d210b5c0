"""A new listing's first hour: its window features over the bars since listing (from
`listing_min_bars` on), the same in both feature paths; a gap or a late start keeps NaN; the
entry rules can pass and say the values are since listing."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from engine.config.sections.trading import SignalSettings
from engine.domain import SignalDecision
from engine.signals.bars import BarHistory
from engine.signals.features import (
    FEATURE_INDEX,
    BarMatrix,
    CandidateInfo,
    Listings,
    features_hot,
    features_hot_latest,
    since_listing,
)
from engine.signals.scorer import Scorer
from engine.signals.stage import SignalStage
from tests.engine.signals import market_kit as mk
from tests.engine.signals.test_features import random_bars, random_info
from tests.engine.signals.test_stage import FixedScorer
from tests.kit.events import RecordingSink

MIN = 60_000
DAY = 86_400_000
WINDOWED = ("ret_15", "ret_30", "ret_60", "vol_ratio_20", "vol_ratio_60", "vwap_dist_20", "vwap_dist_60",
            "atr_14", "range_atr", "volatility_20", "high_dist_60")  # fmt: skip


def listed_bars(n_bars: int, listed_at: int, seed: int = 5) -> tuple[BarMatrix, CandidateInfo, np.ndarray]:
    """Three symbols; the middle one's bars begin at row `listed_at` (NaN before: no such bars)."""
    rng = np.random.default_rng(seed)
    bars = random_bars(rng, n_bars, 3)
    for name in ("open", "high", "low", "close", "volume"):
        getattr(bars, name)[:listed_at, 1] = np.nan
    return bars, random_info(rng, bars.close.shape), random_bars(rng, n_bars, 1).close[:, 0]


def latest(bars: BarMatrix, t: int) -> BarMatrix:
    return BarMatrix(*(getattr(bars, f)[: t + 1] for f in ("open", "high", "low", "close", "volume")))


def test_a_listing_20_bars_old_gets_its_windows_since_listing() -> None:
    bars, info, btc = listed_bars(120, 100)
    x = features_hot(bars, info, btc, Listings.after_start(bars.close, 15))[-1, 1]
    h, lo, c, v = (getattr(bars, f)[100:, 1] for f in ("high", "low", "close", "volume"))
    vwap = ((h + lo + c) / 3 * v).sum() / v.sum()
    assert x[FEATURE_INDEX["ret_60"]] == pytest.approx(c[-1] / c[0] - 1, rel=1e-12)  # not from the auction's open
    assert x[FEATURE_INDEX["volatility_20"]] == pytest.approx(np.std(c[1:] / c[:-1] - 1), rel=1e-9)
    assert x[FEATURE_INDEX["vwap_dist_60"]] == pytest.approx(c[-1] / vwap - 1, rel=1e-12)
    assert x[FEATURE_INDEX["vol_ratio_20"]] == pytest.approx(v[-1] / v.mean(), rel=1e-12)  # 20 bars: the window itself
    assert x[FEATURE_INDEX["vol_ratio_60"]] == pytest.approx(v[-1] / v.mean(), rel=1e-12)
    assert x[FEATURE_INDEX["high_dist_60"]] == pytest.approx(c[-1] / h.max() - 1, rel=1e-12)
    assert np.isfinite([x[FEATURE_INDEX[n]] for n in WINDOWED]).all()
    plain = features_hot(bars, info, btc)[-1, 1]
    longer = [n for n in WINDOWED if since_listing(n, 20)]
    assert longer == ["ret_30", "ret_60", "vol_ratio_60", "vwap_dist_60", "volatility_20", "high_dist_60"]
    assert np.isnan([plain[FEATURE_INDEX[n]] for n in longer]).all()  # what they were: unknown for an hour
    assert np.array_equal([plain[FEATURE_INDEX[n]] for n in WINDOWED if n not in longer],
                          [x[FEATURE_INDEX[n]] for n in WINDOWED if n not in longer])  # 20 bars fill these
    # The symbols that are no listings are untouched, bit for bit.
    same = features_hot(bars, info, btc)
    np.testing.assert_array_equal(features_hot(bars, info, btc, Listings.after_start(bars.close, 15))[:, [0, 2]], same[:, [0, 2]])


def test_a_listing_10_bars_old_stays_unknown_below_min_bars() -> None:
    bars, info, btc = listed_bars(110, 100)
    x = features_hot(bars, info, btc, Listings.after_start(bars.close, 15))[-1, 1]
    assert np.isnan([x[FEATURE_INDEX[n]] for n in WINDOWED]).all()
    assert np.isfinite(x[FEATURE_INDEX["ret_5"]])  # a 5-bar return needs no listing rule
    with_ten = features_hot(bars, info, btc, Listings.after_start(bars.close, 10))[-1, 1]
    assert np.isfinite(with_ten[FEATURE_INDEX["ret_60"]])


def test_min_bars_zero_keeps_the_first_hour_unknown() -> None:
    bars, info, btc = listed_bars(140, 100)
    off = features_hot(bars, info, btc, Listings.after_start(bars.close, 0))
    assert off.tobytes() == features_hot(bars, info, btc).tobytes()


def test_both_paths_agree_bar_by_bar_across_a_listing_and_a_hole_after_it() -> None:
    """The parity guard for listings: the latest path, fed the history up to each bar, equals
    the batch path; a missing bar after the listing turns its since-listing windows to NaN."""
    bars, info, btc = listed_bars(190, 60)
    for name in ("open", "high", "low", "close", "volume"):
        getattr(bars, name)[100, 1] = np.nan
    listings = Listings.after_start(bars.close, 15)
    batch = features_hot(bars, info, btc, listings)
    for t in range(190):
        row_info = CandidateInfo(*(a[t] for a in info.arrays()))
        got = features_hot_latest(latest(bars, t), row_info, btc[: t + 1], listings)
        np.testing.assert_allclose(got, batch[t], rtol=1e-9, atol=1e-12, err_msg=f"bar {t}")
    ret60 = batch[:, 1, FEATURE_INDEX["ret_60"]]
    assert np.isnan(ret60[:74]).all() and np.isfinite(ret60[74:100]).all()  # from the 15th bar on
    assert np.isnan(ret60[100:120]).all()  # a hole since listing: not the return since listing
    assert np.isfinite(ret60[120:160]).all() and np.isnan(ret60[160])  # the ordinary one: 61 bars, then the hole's
    vwap = batch[:, 1, FEATURE_INDEX["vwap_dist_60"]]
    assert np.isfinite(vwap[74:100]).all() and np.isnan(vwap[100:160]).all() and np.isfinite(vwap[160:]).all()


def test_a_gap_or_a_late_start_is_not_a_listing() -> None:
    """The window's first bar is the listing only when discovery dated one and the history
    begins no later than the bar after that date."""
    close = np.full((61, 3), 1.0)
    close[:41, :] = np.nan  # each history begins 20 bars ago
    last = 1_000 * MIN
    first_open = last - 19 * MIN
    listed = np.array([first_open + 30_000, np.nan, first_open - 60 * MIN])  # listed then; unknown; an hour earlier
    rows = Listings.in_window(close, listed, last, MIN, 15).first_row
    assert rows[0] == 41 and np.isnan(rows[1:]).all()
    # Discovery dates a listing at the market-info refresh after its first trade: a minute or more late.
    late = Listings.in_window(close, np.array([first_open + 4 * MIN, np.nan, np.nan]), last, MIN, 15)
    assert late.first_row[0] == 41
    # A window that begins with a bar does not reach before the listing: nothing to do.
    full = Listings.in_window(np.ones((61, 1)), np.array([float(last - 60 * MIN)]), last, MIN, 15)
    assert np.isnan(full.first_row).all()


def hot_listing(bars: int, scorer: Scorer | None = None) -> tuple[SignalStage, RecordingSink, str]:
    """A listing `bars` bars old whose last 5 bars rise on rising volume (a pump), before `scorer`."""
    (name,) = mk.symbols(1)
    history = BarHistory("1m")
    last_open = (mk.NOW // MIN) * MIN - MIN
    for candle in mk.hot_bars(name, last_open, 1.0, bars=bars):
        history.add(candle)
    for candle in mk.hot_bars("BTC/USDT", last_open, 30_000.0, rising=0):
        history.add(candle)
    sink = RecordingSink()
    return SignalStage(SignalSettings(), history, sink, scorer), sink, name


def listing_candidate(name: str, age_ms: float | None) -> list:  # type: ignore[type-arg]
    (cand,) = mk.candidates([name], mk.NOW)
    return [replace(cand, coin_age_days=None if age_ms is None else age_ms / DAY)]


def test_a_pumping_listing_18_bars_old_is_entered_and_replay_says_since_listing() -> None:
    stage, sink, name = hot_listing(18)
    listed = mk.NOW - 18 * MIN + 30_000  # discovery's date: its first candle's close, 30 s late
    (entered,) = stage.evaluate_entries(listing_candidate(name, mk.NOW - listed), mk.NOW, min_heat=70.0, last_action_ms={})
    assert entered.signal.decision is SignalDecision.ENTER
    rules = {r["name"]: r for r in sink.events[-1].payload["rules"]}
    for rule in ("not_extended_60", "not_extended_vwap", "volume"):
        assert rules[rule]["passed"] and rules[rule]["detail"] == "since listing, 18 bars"
    assert "detail" not in rules["momentum_5"]  # a 5-bar return is an ordinary one at 18 bars
    assert rules["not_extended_60"]["value"] == pytest.approx(1.005**5 - 1)


def test_the_same_bars_without_a_listing_are_a_gap_and_refused() -> None:
    stage, sink, name = hot_listing(20)
    (skipped,) = stage.evaluate_entries(listing_candidate(name, None), mk.NOW, min_heat=70.0, last_action_ms={})
    assert skipped.signal.decision is SignalDecision.SKIP
    rules = {r["name"]: r for r in sink.events[-1].payload["rules"]}
    assert not rules["not_extended_60"]["passed"] and rules["not_extended_60"]["value"] is None
    assert all("detail" not in r for r in rules.values())


def test_a_listing_dated_before_its_history_began_is_a_late_start_and_refused() -> None:
    stage, _, name = hot_listing(20)
    (skipped,) = stage.evaluate_entries(listing_candidate(name, 2 * 3_600_000), mk.NOW, min_heat=70.0, last_action_ms={})
    assert skipped.signal.decision is SignalDecision.SKIP and "not_extended_60" in skipped.signal.reason


def test_a_listing_younger_than_min_bars_is_refused_and_says_why() -> None:
    stage, sink, name = hot_listing(10)
    (skipped,) = stage.evaluate_entries(listing_candidate(name, 10 * MIN), mk.NOW, min_heat=70.0, last_action_ms={})
    assert skipped.signal.decision is SignalDecision.SKIP
    rules = {r["name"]: r for r in sink.events[-1].payload["rules"]}
    assert rules["not_extended_60"]["value"] is None
    assert rules["not_extended_60"]["detail"] == "listing 10 bars old: unknown before 15 (signals.listing_min_bars)"


def test_listing_min_bars_zero_refuses_a_listing_as_before() -> None:
    stage, _, name = hot_listing(20)
    stage.settings = stage.rules.settings = SignalSettings(listing_min_bars=0)
    (skipped,) = stage.evaluate_entries(listing_candidate(name, 20 * MIN), mk.NOW, min_heat=70.0, last_action_ms={})
    assert skipped.signal.decision is SignalDecision.SKIP and not math.isfinite(skipped.signal.features["ret_60"])


def test_a_production_model_is_not_put_to_a_listing_younger_than_any_it_was_trained_on() -> None:
    """hot_lgbm's training rows start at a listing's 61st bar (the baseline needs 61 closes):
    its score on an 18-bar-old listing would be read off since-listing values it never saw. The
    rules decide that entry alone, and the ml_score check says why instead of a score."""
    blocking = FixedScorer(0.0, "production")  # a score of 0 fails ml_score wherever it is asked
    stage, sink, name = hot_listing(18, blocking)
    listed = mk.NOW - 18 * MIN + 30_000
    (entered,) = stage.evaluate_entries(listing_candidate(name, mk.NOW - listed), mk.NOW, min_heat=70.0, last_action_ms={})
    assert entered.signal.decision is SignalDecision.ENTER and entered.signal.ml_score is None
    payload = sink.events[-1].payload
    assert payload["ml_score"] is None and payload["model"] == blocking.version
    (check,) = [r for r in payload["rules"] if r["name"] == "ml_score"]
    assert check["passed"] and check["value"] is None
    assert check["detail"] == "listing 18 bars old, younger than any the model was trained on (61 bars): the rules decide alone"
    trained_young = FixedScorer(0.0, "production", youngest_listing_bars=15)  # it saw listings from 15 bars on
    stage, sink, name = hot_listing(18, trained_young)
    (skipped,) = stage.evaluate_entries(listing_candidate(name, mk.NOW - listed), mk.NOW, min_heat=70.0, last_action_ms={})
    assert skipped.signal.decision is SignalDecision.SKIP and skipped.signal.reason == "failed: ml_score"
    assert skipped.signal.ml_score == 0.0
