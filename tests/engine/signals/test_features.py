"""features_hot: one definition, two paths (batch and latest) that must agree bar by bar."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from engine.errors import MarketDataError
from engine.signals.bars import BarHistory
from engine.signals.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    WINDOW,
    BarMatrix,
    CandidateInfo,
    Listings,
    _assemble,
    _latest_window,
    _LatestReducer,
    _pairwise_bars,
    feature_dict,
    feature_dicts,
    feature_schema_hash,
    features_hot,
    features_hot_latest,
    features_hot_windows,
    regime_windows,
    with_info,
)
from tests.kit.domain import T0, make_candidate, make_candle


def random_bars(rng: np.random.Generator, n_bars: int, n_symbols: int) -> BarMatrix:
    steps = rng.normal(0.0, 0.01, (n_bars, n_symbols))
    close = 0.5 * np.exp(np.cumsum(steps, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, close.shape))
    volume = rng.lognormal(10, 1, close.shape)
    return BarMatrix(open_, high, low, close, volume)


def random_info(rng: np.random.Generator, shape: tuple[int, ...]) -> CandidateInfo:
    arrays = [rng.uniform(0, 100, shape)] + [rng.uniform(0, 1, shape) for _ in range(6)]
    arrays += [rng.integers(1, 50, shape).astype(float), rng.normal(0, 3, shape), rng.uniform(0, 900, shape)]
    return CandidateInfo(*arrays)


def test_feature_names_are_about_thirty_and_unique() -> None:
    assert 25 <= len(FEATURE_NAMES) <= 40
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_schema_hash_is_stable_and_sha256() -> None:
    h = feature_schema_hash()
    assert h == feature_schema_hash()
    assert len(h) == 64
    int(h, 16)


def test_batch_equals_latest_bar_by_bar() -> None:
    """The parity guard: every bar of the batch path equals the latest path fed the history up to it."""
    rng = np.random.default_rng(7)
    bars = random_bars(rng, 150, 6)
    bars.close[40, 2] = np.nan  # a missing bar: both paths must turn the windows touching it to NaN
    bars.open[40, 2] = bars.high[40, 2] = bars.low[40, 2] = bars.volume[40, 2] = np.nan
    info = random_info(rng, bars.close.shape)
    btc = random_bars(rng, 150, 1).close[:, 0]
    batch = features_hot(bars, info, btc)
    assert batch.shape == (150, 6, len(FEATURE_NAMES))
    for t in range(150):
        past = BarMatrix(*(getattr(bars, f)[: t + 1] for f in ("open", "high", "low", "close", "volume")))
        row_info = CandidateInfo(*(a[t] for a in info.arrays()))
        latest = features_hot_latest(past, row_info, btc[: t + 1])
        np.testing.assert_allclose(latest, batch[t], rtol=1e-9, atol=1e-12, err_msg=f"bar {t}")
    # Enough history gives finite features; the hole at bar 40 poisons exactly the windows over it.
    assert np.isfinite(batch[WINDOW:, [0, 1, 3, 4, 5]]).all()
    assert np.isnan(batch[40:100, 2, FEATURE_INDEX["vol_ratio_60"]]).all()
    assert np.isfinite(batch[100:, 2, FEATURE_INDEX["vol_ratio_60"]]).all()
    ret60 = batch[WINDOW:, 2, FEATURE_INDEX["ret_60"]]
    assert np.flatnonzero(np.isnan(ret60)).tolist() == [100 - WINDOW]  # only the bar looking back at 40


@pytest.mark.parametrize("n_symbols", [1, 2, 7])
def test_fused_latest_window_is_assemble_bit_for_bit(n_symbols: int) -> None:
    """`_latest_window` restates `_assemble`'s latest path in stacked calls: every bit must
    agree, on the stage's strided [bars, symbols] views (one field of a [bars, symbols, 5] read),
    through holes, zero volume, flat bars and a zero close, for one symbol (pairwise sums) and
    for several (bar-by-bar sums)."""
    rng = np.random.default_rng(11 + n_symbols)
    for _ in range(40):
        plain = random_bars(rng, WINDOW, n_symbols)
        block = np.stack([plain.open, plain.high, plain.low, plain.close, plain.volume], axis=-1)
        block[rng.random(block.shape[:2]) < 0.05] = np.nan
        block[rng.random(block.shape[:2]) < 0.05, 4] = 0.0
        flat = rng.random(block.shape[:2]) < 0.05
        block[flat, :4] = block[flat, 3:4]
        block[rng.integers(0, WINDOW), rng.integers(0, n_symbols), 3] = 0.0
        bars = BarMatrix(*(block[..., k] for k in range(5)))
        info = random_info(rng, (n_symbols,))
        btc = random_bars(rng, WINDOW, 1).close[:, 0]
        btc[rng.integers(0, WINDOW)] = np.nan
        expected = np.empty((len(FEATURE_NAMES), n_symbols))
        fused = np.empty_like(expected)
        with np.errstate(divide="ignore", invalid="ignore"):
            for k, column in enumerate(_assemble(_LatestReducer(), bars, info, btc)):
                expected[k] = column
            _latest_window(bars, info, btc, fused)
        assert expected.tobytes() == fused.tobytes()


@pytest.mark.parametrize("n_bars", [8, 14, 20, 60, 61, 127])
def test_pairwise_bars_add_each_column_as_numpy_adds_one(n_bars: int) -> None:
    """`_pairwise_bars` restates numpy's pairwise sum of a lone column for many columns at once:
    every column's bits are numpy's sum of that column alone (magnitudes spread over ten decades,
    where the order of the additions shows), in a [quantities, bars, columns] block."""
    rng = np.random.default_rng(n_bars)
    x = rng.standard_normal((3, n_bars, 9)) * 10.0 ** rng.uniform(-5, 5, (3, n_bars, 9))
    x[0, :, 0] = -0.0  # a column of negative zeros sums to +0 either way
    alone = np.array([[np.add.reduce(np.ascontiguousarray(x[q, :, j])) for j in range(9)] for q in range(3)])
    assert _pairwise_bars(x).tobytes() == alone.tobytes()
    assert np.add.reduce(x, axis=-2).tobytes() != alone.tobytes()  # numpy's own many-column sum differs


def test_a_symbol_s_features_are_its_own_whoever_is_asked_beside_it() -> None:
    """`features_hot_latest` of a symbol asked alone, or beside others in any order: the same bits
    (numpy would add several columns bar by bar, one alone pairwise), for a full window, a
    short history and a listing's since-listing values."""
    rng = np.random.default_rng(31)
    for n_bars in (WINDOW, 30, 90):
        bars = random_bars(rng, n_bars, 5)
        bars.close[: n_bars // 3, 4] = np.nan  # a listing: its bars begin inside the window
        for field in ("open", "high", "low", "volume"):
            getattr(bars, field)[: n_bars // 3, 4] = np.nan
        info = random_info(rng, (5,))
        btc = random_bars(rng, n_bars, 1).close[:, 0]
        listings = Listings(np.array([np.nan, np.nan, np.nan, np.nan, n_bars // 3]), 5)
        together = features_hot_latest(bars, info, btc, listings)
        for order in ([4], [2], [1, 4], [4, 0, 3], [3, 2, 1, 0]):
            cols = np.array(order)
            part = features_hot_latest(
                bars.columns(cols), CandidateInfo(*(a[cols] for a in info.arrays())), btc,
                Listings(listings.first_row[cols], listings.min_bars),
            )  # fmt: skip
            assert part.tobytes() == together[cols].tobytes(), (n_bars, order)


def test_windows_are_each_window_alone_bit_for_bit() -> None:
    """`features_hot_windows` gives every window the bits `features_hot_latest` gives it (no info),
    whatever windows sit beside it: holes, zero volume, flat bars, a zero close, a missing
    regime bar; and `with_info` adds the info as the latest path does. The regime's columns
    (`regime_windows`) are their own bits however many are computed at once."""
    rng = np.random.default_rng(23)
    for _ in range(20):
        plain = random_bars(rng, WINDOW, 16)
        block = np.stack([plain.open, plain.high, plain.low, plain.close, plain.volume], axis=-1)
        block[rng.random(block.shape[:2]) < 0.05] = np.nan
        block[rng.random(block.shape[:2]) < 0.05, 4] = 0.0
        flat = rng.random(block.shape[:2]) < 0.05
        block[flat, :4] = block[flat, 3:4]
        block[rng.integers(0, WINDOW), rng.integers(0, 16), 3] = 0.0
        btc = random_bars(rng, WINDOW, 16).close
        btc[rng.random(btc.shape) < 0.02] = np.nan
        regime = regime_windows(btc)
        cut = int(rng.integers(1, 16))  # the regime of fewer windows: each column's bits its own
        assert regime[:, cut:].tobytes() == regime_windows(btc[:, cut:]).tobytes()
        rows = features_hot_windows(BarMatrix(*(block[..., k] for k in range(5))), regime)
        for j in range(16):
            info = random_info(rng, (1,))
            alone = features_hot_latest(BarMatrix(*(block[:, j : j + 1, k] for k in range(5))), info, btc[:, j])
            assert with_info([rows[j]], info).tobytes() == alone.tobytes()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("ret_1", 1.10 / 1.00 - 1, id="ret_1"),
        pytest.param("ret_60", 1.10 / 1.00 - 1, id="ret_60"),
        pytest.param("vol_ratio_20", 5000 / ((19 * 1000 + 5000) / 20), id="vol_ratio_20"),
        pytest.param("bar_range", (1.12 - 1.00) / 1.10, id="bar_range"),
        pytest.param("upper_wick", (1.12 - 1.10) / (1.12 - 1.00), id="upper_wick"),
        pytest.param("close_pos", (1.10 - 1.00) / (1.12 - 1.00), id="close_pos"),
        pytest.param("high_dist_60", 1.10 / 1.12 - 1, id="high_dist_60"),
        pytest.param("heat", 80.0, id="heat"),
        pytest.param("rank_change", 2.0, id="rank_change"),
    ],
)
def test_known_values(name: str, expected: float) -> None:
    n = WINDOW
    close = np.full((n, 1), 1.0)
    close[-1] = 1.10
    open_ = np.full((n, 1), 1.0)
    high = np.full((n, 1), 1.0)
    high[-1] = 1.12
    low = np.full((n, 1), 1.0)
    volume = np.full((n, 1), 1000.0)
    volume[-1] = 5000.0
    bars = BarMatrix(open_, high, low, close, volume)
    cand = make_candidate(heat=80.0, rank=3)
    info = CandidateInfo.from_candidates([cand], {"DOGE/USDT": 5})
    row = features_hot_latest(bars, info, np.full(n, 30_000.0))[0]
    assert row[FEATURE_INDEX[name]] == pytest.approx(expected, rel=1e-12)


def test_short_history_is_nan_not_a_guess() -> None:
    rng = np.random.default_rng(1)
    bars = random_bars(rng, 10, 2)
    row = features_hot_latest(bars, random_info(rng, (2,)), np.full(10, 1.0))
    assert np.isnan(row[:, FEATURE_INDEX["ret_60"]]).all()
    assert np.isfinite(row[:, FEATURE_INDEX["ret_5"]]).all()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("btc", id="btc-misaligned"),
        pytest.param("info", id="info-wrong-shape"),
        pytest.param("shape", id="ohlc-shapes-differ"),
    ],
)
def test_bad_input_is_rejected_with_a_named_problem(bad: str) -> None:
    rng = np.random.default_rng(2)
    bars = random_bars(rng, 20, 3)
    info = random_info(rng, (3,))
    btc = np.ones(20)
    calls: dict[str, Callable[[], object]] = {
        "btc": lambda: features_hot_latest(bars, info, np.ones(19)),
        "info": lambda: features_hot(bars, info, btc),
        "shape": lambda: BarMatrix(bars.open, bars.high[:, :2], bars.low, bars.close, bars.volume),
    }
    with pytest.raises(MarketDataError):
        calls[bad]()


def test_feature_dict_names_every_column_and_nulls_nan() -> None:
    row = np.arange(len(FEATURE_NAMES), dtype=float)
    row[0] = np.nan
    d = feature_dict(row)
    assert list(d) == list(FEATURE_NAMES)
    assert d["ret_1"] is None
    assert d["ret_3"] == 1.0


def test_feature_dicts_are_the_numpy_boxing_s() -> None:
    """`feature_dicts` tests each value in Python: the same floats (signed zeros, infinities
    too) and the same None for each NaN as boxing the matrix to objects and masking its NaNs."""
    rng = np.random.default_rng(5)
    for rows in (1, 2, 7):
        x = rng.normal(size=(rows, len(FEATURE_NAMES)))
        x[rng.random(x.shape) < 0.2] = np.nan
        x[0, :3] = (-0.0, np.inf, -np.inf)
        boxed = x.astype(object)
        boxed[np.isnan(x)] = None
        want = [dict(zip(FEATURE_NAMES, row, strict=True)) for row in boxed.tolist()]
        got = feature_dicts(x)
        assert [list(d.items()) for d in got] == [list(d.items()) for d in want]
        assert [[type(v) for v in d.values()] for d in got] == [[type(v) for v in d.values()] for d in want]
        zero = got[0]["ret_1"]
        assert zero == 0.0 and math.copysign(1.0, zero) == -1.0  # -0.0 kept


def test_bar_history_window_matches_fed_candles_and_marks_gaps() -> None:
    hist = BarHistory("1m", depth=5)
    for k in range(7):
        if k == 5:
            continue  # DOGE misses bar 5
        hist.add(make_candle("DOGE/USDT", T0 + k * 60_000, close=1.0 + k))
    hist.add(make_candle("BTC/USDT", T0 + 6 * 60_000, close=30_000.0))
    w = hist.window(["DOGE/USDT", "BTC/USDT", "NEW/USDT"], T0 + 6 * 60_000)
    assert w.close.shape == (5, 3)
    assert w.close[:, 0].tolist()[:3] == [3.0, 4.0, 5.0]
    assert np.isnan(w.close[3, 0])
    assert w.close[4, 0] == 7.0
    assert np.isnan(w.close[:4, 1]).all() and w.close[4, 1] == 30_000.0
    assert np.isnan(w.close[:, 2]).all()


def test_bar_history_grows_past_its_capacity() -> None:
    hist = BarHistory("1m", depth=3, capacity=2)
    symbols = [f"C{i}/USDT" for i in range(9)]
    for i, s in enumerate(symbols):
        hist.add(make_candle(s, T0, close=1.0 + i))
    assert hist.window(symbols, T0).close[-1].tolist() == [1.0 + i for i in range(9)]


@pytest.mark.parametrize(
    ("candle_kw", "match"),
    [
        pytest.param({"closed": False}, "still open", id="open-bar"),
        pytest.param({"timeframe": "5m"}, "keep one BarHistory", id="wrong-timeframe"),
        pytest.param({"high": 0.1}, "high/low", id="impossible-bar"),
    ],
)
def test_bar_history_refuses_bad_bars(candle_kw: dict[str, object], match: str) -> None:
    with pytest.raises(MarketDataError, match=match):
        BarHistory("1m").add(make_candle(**candle_kw))  # type: ignore[arg-type]


def test_candidate_info_of_none_is_unknown() -> None:
    """A symbol discovery says nothing about (None) reads NaN, the others as on their own."""
    cand = make_candidate(heat=80.0, rank=3)
    both = CandidateInfo.from_candidates([None, cand], {"DOGE/USDT": 5})
    alone = CandidateInfo.from_candidates([cand], {"DOGE/USDT": 5})
    for got, unknown, want in zip(both.arrays(), CandidateInfo.unknown((1,)).arrays(), alone.arrays(), strict=True):
        assert np.isnan(got[0]) and np.isnan(unknown[0])
        assert got[1:].tobytes() == want.tobytes()
