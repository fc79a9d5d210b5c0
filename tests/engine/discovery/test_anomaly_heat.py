"""AnomalyDetector (robust z-scores) and HeatRanker (components, weights)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from engine.config.sections.discovery import AnomalySection, HeatSection, WindowsSection
from engine.discovery import anomaly as anomaly_module
from engine.discovery import rolling_robust
from engine.discovery.anomaly import (
    AnomalyDetector,
    AnomalyScores,
    ScoreBlock,
    _center_scale_in_chunks,
    _window_counts,
    robust_center_scale,
)
from engine.discovery.heat import RANK_TOP, HeatRanker, count_higher, saturate
from engine.discovery.windows import TickerWindows
from tests.engine.discovery.test_robust_center_scale import same_bits
from tests.kit.discovery import DAY_MS, TickerFeed


@pytest.mark.parametrize(
    "nan_share", [pytest.param(0.0, id="no-nan"), pytest.param(0.3, id="some-nan"), pytest.param(1.0, id="all-nan")]
)
def test_robust_center_scale_matches_numpy(nan_share: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_t(3, size=(50, 37))
    x[rng.random(x.shape) < nan_share] = np.nan
    x[0, :] = np.nan  # one row always empty
    x[1, :] = np.nan
    x[1, 3] = 2.0  # one row with a single value
    med, mad, n = robust_center_scale(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's all-NaN-slice warning
        exp_med = np.nanmedian(x, axis=1)
        exp_mad = np.nanmedian(np.abs(x - exp_med[:, None]), axis=1)
    np.testing.assert_allclose(med, exp_med, equal_nan=True)
    np.testing.assert_allclose(mad, exp_mad, equal_nan=True)
    assert list(n[:2]) == [0, 1]


def test_robust_center_scale_in_place_is_the_same_and_leaves_x_alone_otherwise() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_t(3, size=(40, 33))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[0, :] = np.nan
    kept = x.copy()
    copied = robust_center_scale(x)
    np.testing.assert_array_equal(x, kept)  # not overwritten
    in_place = robust_center_scale(x, overwrite=True)
    for a, b in zip(copied, in_place, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("first", "last"), [(2, 63), (1, 63), (0, 7), (3, 3)])
def test_window_counts_count_each_window_known_values(first: int, last: int) -> None:
    """`_window_counts` from one cumulative sum is each window's non-NaN count, window by window."""
    rng = np.random.default_rng(3)
    k = 60
    line = rng.standard_normal((7, 64 + k))
    line[rng.random(line.shape) < 0.3] = np.nan
    line[2] = np.nan
    expected = [np.count_nonzero(~np.isnan(line[row, j + first : j + last + 1])) for j in range(k) for row in range(7)]
    assert _window_counts(line, k, first, last).tolist() == expected


def test_robust_center_scale_given_counts_is_the_same() -> None:
    """Counts the caller knows (`_window_counts`) give what counting the sorted rows gives."""
    rng = np.random.default_rng(4)
    x = rng.standard_t(3, size=(60, 64))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[0, :] = np.nan
    x[1, :] = np.nan
    x[1, 5] = 1.5
    counts = np.count_nonzero(~np.isnan(x), axis=1)
    for a, b in zip(robust_center_scale(x), robust_center_scale(x, counts=counts), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("nan", [False, True])
def test_count_higher_counts_each_row_strictly_higher_scores(nan: bool) -> None:
    """`count_higher` (sorted, or pair by pair where a NaN is) is the pairwise count: ties,
    -inf, signed zeros and NaN included."""
    rng = np.random.default_rng(5)
    score = rng.random((120, 34))
    score[:, 30:] = -np.inf
    score[rng.random(score.shape) < 0.3] = 0.0
    score[rng.random(score.shape) < 0.1] = -0.0
    score[:, 29] = np.inf
    score[1] = 0.5
    score[2, ::2] = 0.25  # ties among other values
    if nan:
        score[0, 3] = np.nan
    expected = np.count_nonzero(score[:, None, :] > score[:, :, None], axis=2)
    got = count_higher(score)
    assert got.dtype == np.intp and got.tolist() == expected.tolist()
    assert count_higher(score[:, :1]).tolist() == [[0]] * len(score)  # a batch of one row
    assert count_higher(score[:0]).shape == (0, score.shape[1])  # no batch


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])
def test_center_scale_in_chunks_is_the_whole_call(chunk_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows sorted and read a chunk at a time (the last one short, or all in one) give the
    figures of one call over them all, with and without the caller's counts."""
    rng = np.random.default_rng(3)
    x = rng.standard_t(3, size=(150, 64))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[4] = np.nan
    counts = np.count_nonzero(~np.isnan(x), axis=1).astype(np.intp)
    monkeypatch.setattr(anomaly_module, "SORT_CHUNK_BYTES", chunk_rows * 64 * 8)
    for given in (None, counts):
        expected = robust_center_scale(x.copy(), counts=given)
        got = _center_scale_in_chunks(x.copy(), given)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def detector() -> tuple[TickerWindows, AnomalyDetector, TickerFeed]:
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=15_000, history_slots=256))
    a = AnomalyDetector(AnomalySection(baseline_refresh_batches=1), w)
    feed = TickerFeed(["CALM/USDT", "HOT/USDT"], noise=0.002)
    return w, a, feed


def warm(w: TickerWindows, a: AnomalyDetector, feed: TickerFeed, n: int = 80) -> None:
    for _ in range(n):
        w.update(feed.batch())
        a.step()


def test_noise_scores_low_and_a_jump_scores_high() -> None:
    w, a, feed = detector()
    warm(w, a, feed)
    scores = a.step()
    assert abs(scores.price_z[0]) < 4 and abs(scores.price_z[1]) < 4
    feed.prices["HOT/USDT"] *= 1.06  # +6% in one slot on a 0.2% per-slot coin
    feed.rate["HOT/USDT"] *= 20
    w.update(feed.batch())
    scores = a.step()
    assert scores.price_z[1] > 10
    assert scores.volume_z[1] > 5
    assert scores.volume_surge[1] > 5
    assert scores.price_z[0] < 4


def test_a_symbol_without_enough_history_scores_zero() -> None:
    w, a, feed = detector()
    warm(w, a, feed, n=5)
    feed.prices["HOT/USDT"] *= 1.5
    w.update(feed.batch())
    scores = a.step()
    assert scores.price_z[1] == 0.0


def test_a_row_that_changes_owner_forgets_its_baseline() -> None:
    w, a, feed = detector()
    warm(w, a, feed)
    assert a.history[1] > 0
    a.reset_rows(np.array([1]))
    assert a.history[1] == 0 and np.isnan(a.ret_median[1])


def heat_inputs(n: int = 4) -> tuple[HeatRanker, AnomalyScores]:
    zeros = np.zeros(n)
    scores = AnomalyScores(
        extent=n,
        price_z=np.array([0.0, 8.0, 0.0, 30.0]),
        accel=zeros,
        volume_z=np.array([0.0, 0.0, 6.0, 30.0]),
        volume_surge=zeros,
        returns={k: np.array([0.0, 0.05, 0.0, 0.3]) for k in ("1m", "5m", "15m", "60m")},
        run_up=np.array([0.0, 0.05, 0.0, 0.3]),
        traded=np.ones(n, dtype=bool),
    )
    return HeatRanker(HeatSection(), 16, 60_000), scores


def test_heat_components_and_weights() -> None:
    ranker, scores = heat_inputs()
    active = np.ones(4, dtype=bool)
    ranker.listing_ms[3] = 10 * DAY_MS  # listed just now: with momentum and volume, over the cap
    frame = ranker.rank(scores, active, 10 * DAY_MS)
    cfg = HeatSection()
    assert frame.heat[0] == 0.0
    # row 1: z = momentum_z_half -> z part 0.5; run-up 5% of a 10% full -> 0.5
    assert frame.parts["momentum"][1] == pytest.approx(0.5)
    assert frame.heat[1] == pytest.approx(100 * cfg.w_momentum * 0.5)
    # row 2: volume z at its half point, price flat (not falling)
    assert frame.parts["volume_surge"][2] == pytest.approx(0.5)
    assert frame.heat[3] == 100.0  # capped
    for arr in frame.parts.values():
        assert ((arr >= 0) & (arr <= 1)).all()
    assert frame.components(1).momentum == pytest.approx(0.5)
    assert frame.sources(3) == ("ticker", "listing")
    assert frame.sources(1) == ("ticker",)


def test_listing_freshness_and_social_feed_heat() -> None:
    ranker, scores = heat_inputs()
    now = 10 * DAY_MS
    ranker.listing_ms[0] = now - DAY_MS // 2  # listed 12 h ago
    ranker.social_velocity[2] = 3.0  # at social_velocity_half
    ranker.social_sentiment[2] = 0.8
    frame = ranker.rank(scores, np.ones(4, dtype=bool), now)
    assert frame.parts["listing_freshness"][0] == pytest.approx(np.exp(-0.5))
    assert frame.parts["social_velocity"][2] == pytest.approx(0.5)
    assert frame.parts["social_sentiment"][2] == pytest.approx(0.8)
    assert frame.sources(0) == ("listing",)
    assert "social" in frame.sources(2)


def test_inactive_rows_have_no_heat() -> None:
    ranker, scores = heat_inputs()
    active = np.array([True, True, True, False])
    frame = ranker.rank(scores, active, DAY_MS)
    assert frame.heat[3] == 0.0


def test_rank_acceleration_rewards_a_climb_since_the_previous_bar() -> None:
    ranker, scores = heat_inputs()
    active = np.ones(4, dtype=bool)
    ranker.rank(scores, active, 0)  # bar 0: row 1 sits second
    quiet = dataclasses.replace(scores, price_z=np.array([5.0, 0.0, 0.0, 30.0]), run_up=np.array([0.05, 0.0, 0.0, 0.3]))
    ranker.rank(quiet, active, 60_000)  # bar 1 starts: row 1 has fallen to the bottom
    frame = ranker.rank(scores, active, 120_000)  # bar 2: row 1 is back, up from the bottom
    assert frame.parts["rank_acceleration"][1] > 0
    assert frame.parts["rank_acceleration"][0] == 0.0


@pytest.mark.parametrize("rows", [40, 200])  # below and above RANK_TOP
def test_rank_acceleration_matches_a_brute_force_ranking(rows: int) -> None:
    """At every batch, inside a bar or at its first: the climb from the previous bar's percentile
    to the percentile now, counting active rows that score strictly higher, over positive
    scores ranked among the top RANK_TOP (ties and inactive rows included)."""
    rng = np.random.default_rng(rows)
    ranker = HeatRanker(HeatSection(), rows, 60_000)
    bar_pct: list[np.ndarray] = []
    for step in range(40):
        now = step * 20_000  # three batches a bar
        score = np.round(rng.exponential(0.3, rows) - 0.15, 1)  # coarse: many ties, many <= 0
        active = rng.random(rows) > 0.1
        n = int(active.sum())
        live = np.where(active, score, -np.inf)
        higher = (live[None, :] > live[:, None]).sum(axis=1)
        if now % 60_000 == 0:
            bar_pct.append(higher / n)
        top = np.argsort(-live, kind="stable")[: min(RANK_TOP, rows)]
        cut = live[top[-1]]
        expected = np.zeros(rows)
        if len(bar_pct) > 1:
            for i in range(rows):
                if live[i] > 0 and live[i] >= cut:
                    rank_now = (live[top] > live[i]).sum() / n
                    expected[i] = np.clip(2.0 * (bar_pct[-2][i] - rank_now), 0.0, 1.0)
        got = ranker._rank_acceleration(score, active, now)
        np.testing.assert_array_equal(got[live > cut], expected[live > cut])
        assert not got[live < cut].any()
        ties = (live == cut) & (got != 0)  # rows tied at the cut: in the top or not, by partition
        np.testing.assert_array_equal(got[ties], expected[ties])


def test_saturate_is_half_at_half_and_below_one() -> None:
    x = np.array([-1.0, 0.0, 2.0, 1e9])
    out = saturate(x, 2.0)
    assert list(out[:3]) == [0.0, 0.0, 0.5]
    assert out[3] < 1.0


def heat_block_inputs(seed: int, k: int = 120, e: int = 34) -> tuple[ScoreBlock, dict[str, np.ndarray]]:
    """A block's scores and heat inputs as a replay makes them, with what a replay rarely does:
    ties, NaN returns (no history), inactive rows and a batch with none, rows from a batch's
    extent up, untraded rows, fresh, future and unknown listings, social inputs out of range."""
    rng = np.random.default_rng(seed)
    ret = np.round(rng.standard_t(3, (k, 4, e)) * 0.02, 3) + 0.0  # coarse: ties, and +0.0 where rounded to zero
    ret[rng.random(ret.shape) < 0.05] = np.nan
    price_z = np.round(rng.standard_t(3, (k, e)) * 6, 1) + 0.0
    volume_z = np.round(rng.standard_t(3, (k, e)) * 5, 1) + 0.0
    run_up = np.round(rng.exponential(0.04, (k, e)), 2)
    run_up[rng.random(run_up.shape) < 0.05] = np.nan
    active = rng.random((k, e)) > 0.05
    active[7] = False  # a batch with no active row: unranked
    extents = np.full(k, e)
    extents[3:9] = e - 4
    active[3:9, e - 4 :] = False
    listing = np.where(rng.random((k, e)) < 0.3, DAY_MS * 10 - rng.integers(-DAY_MS, 3 * DAY_MS, (k, e)), np.nan)
    social_v = np.where(rng.random((k, e)) < 0.2, rng.normal(2, 3, (k, e)), 0.0)
    social_s = np.where(social_v != 0, rng.normal(0.3, 0.8, (k, e)), 0.0)
    scores = ScoreBlock(price_z, np.zeros((k, e)), volume_z, np.zeros((k, e)), ret, run_up, rng.random((k, e)) > 0.1)
    now = DAY_MS * 10 + np.arange(k, dtype=np.int64) * 60_000
    return scores, {"active": active, "listing_ms": listing, "social_velocity": social_v,
                    "social_sentiment": social_s, "now_ms": now, "extents": extents}  # fmt: skip


@pytest.mark.parametrize("min_return", [0.02, 0.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_block_in_compiled_code_is_numpys_bit_for_bit(
    seed: int, min_return: float, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """`heat_block` (rolling_robust.c) gives `rank_block`'s numpy figures to the last bit, over
    two blocks in a row (the second climbing from the first's stored percentiles), and leaves
    the stored percentiles and bar as numpy's path does."""
    if rolling_robust.load() is None:
        pytest.skip("the kernel is not built here (test_rolling_robust says why): only the numpy path runs")
    cfg = HeatSection(momentum_min_return=min_return)
    native, reference = HeatRanker(cfg, 48, 60_000), HeatRanker(cfg, 48, 60_000)
    for block in range(2):
        scores, inputs = heat_block_inputs(3 * seed + block)
        got = native.rank_block(scores, **inputs)
        with monkeypatch.context() as m:
            m.setattr(rolling_robust, "load", lambda: None)
            expected = reference.rank_block(scores, **inputs)
        assert same_bits(got[0], expected[0])
        assert list(got[1]) == list(expected[1])
        for name, part in expected[1].items():
            assert same_bits(got[1][name], part), name
        for stored in ("_pct_bar", "_pct_prev_bar"):
            assert same_bits(getattr(native, stored), getattr(reference, stored))
        assert native._bar == reference._bar
