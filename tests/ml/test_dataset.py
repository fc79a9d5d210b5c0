"""The hot-coin dataset: labels, the baseline, walk-forward splits, point-in-time features, Parquet."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

import ml.dataset
from engine.signals.features import (
    FEATURE_NAMES,
    LISTING_ORDINARY_BARS,
    WINDOW,
    BarMatrix,
    CandidateInfo,
    Listings,
    feature_schema_hash,
    features_hot_latest,
)
from gpu_jobs.datasets import DatasetError, load_candles
from ml.dataset import HotDataset, build_dataset, read_parquet, stride_mask, write_parquet
from ml.labels import (
    MIN_CROSS_SECTION,
    forward_return,
    horizon_bars,
    rise_from_low,
    top_fraction_label,
)
from ml.splits import Fold, check_no_leak, walk_forward
from tests.ml.synth import MINUTE, synth_frames, write_history

NAN = math.nan


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param(list(range(10)), [0] * 9 + [1], id="ten-symbols-one-positive"),
        pytest.param(list(range(20)), [0] * 18 + [1, 1], id="twenty-symbols-two-positives"),
        pytest.param(list(range(11)), [0] * 9 + [1, 1], id="eleven-symbols-ceil-two"),
        pytest.param([5, 1, 2, 5, 3, 0], [1, 0, 0, 1, 0, 0], id="tie-at-the-cut-both-positive"),
        pytest.param([1, NAN, 2, 3, 4, 5], [0, NAN, 0, 0, 0, 1], id="missing-value-unlabelled"),
        pytest.param([1, 2, 3, NAN, NAN, NAN], [NAN] * 6, id="thin-cross-section-unlabelled"),
    ],
)
def test_top_fraction_label(row: list[float], expected: list[float]) -> None:
    got = top_fraction_label(np.array([row], np.float64))
    np.testing.assert_array_equal(got[0], np.array(expected, np.float64))


def test_label_rows_with_different_counts_in_one_matrix() -> None:
    fwd = np.array([[*range(10), NAN], list(range(11))], np.float64)
    label = top_fraction_label(fwd)
    assert np.nansum(label[0]) == 1 and np.nansum(label[1]) == 2
    assert MIN_CROSS_SECTION == 5


def test_forward_return_never_bridges_a_gap_and_ends_unknown() -> None:
    close = np.array([[1.0], [2.0], [NAN], [4.0], [5.0]])
    fwd = forward_return(close, 1)
    np.testing.assert_array_equal(fwd[:, 0], [1.0, NAN, NAN, 0.25, NAN])


@pytest.mark.parametrize(("interval_ms", "bars"), [(MINUTE, 30), (5 * MINUTE, 6), (15 * MINUTE, 2)], ids=["1m", "5m", "15m"])
def test_horizon_bars(interval_ms: int, bars: int) -> None:
    assert horizon_bars(interval_ms) == bars


def test_horizon_rejects_an_interval_that_does_not_divide_it() -> None:
    with pytest.raises(ValueError, match="divides"):
        horizon_bars(7 * MINUTE)


def test_rise_from_low_is_point_in_time() -> None:
    close = np.array([[3.0], [1.0], [2.0], [4.0]])
    rise = rise_from_low(close, 2)
    np.testing.assert_allclose(rise[:, 0], [NAN, 0.0, 1.0, 1.0])


# ----------------------------------------------------------------------------- splits
def test_walk_forward_folds_purge_the_label_horizon_and_embargo() -> None:
    folds = walk_forward(1000, 4, horizon=30, embargo=60)
    assert [f.index for f in folds] == [0, 1, 2, 3]
    assert folds[0].test_start == 400 and folds[-1].test_end == 1000
    for a, b in itertools.pairwise(folds):
        assert a.test_end == b.test_start  # contiguous test blocks
    for f in folds:
        assert f.gap == 90
        check_no_leak(f, horizon=30)
        # the last training row's label window [t, t + 30] ends before the test block
        assert f.train_end - 1 + 30 < f.test_start


def test_check_no_leak_catches_a_gap_shorter_than_the_horizon() -> None:
    with pytest.raises(ValueError, match="purge gap must be at least the label horizon"):
        check_no_leak(Fold(index=0, train_end=100, test_start=110, test_end=200), horizon=30)


def test_walk_forward_rejects_too_little_history() -> None:
    with pytest.raises(ValueError, match="too few"):
        walk_forward(100, 4, horizon=30, embargo=60)


# ----------------------------------------------------------------------------- dataset
@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history(tmp_path_factory.mktemp("hist"), synth_frames(n_symbols=8, n_bars=600, seed=3))


@pytest.fixture(scope="module")
def dataset(history: Path) -> HotDataset:
    return build_dataset(load_candles(history, "1m"))


def test_dataset_shapes_labels_and_baseline(dataset: HotDataset) -> None:
    bars, n = dataset.n_bars, len(dataset.symbols)
    assert dataset.features.shape == (bars, n, len(FEATURE_NAMES)) and dataset.features.dtype == np.float32
    assert dataset.horizon == 30
    assert np.isnan(dataset.label[-30:]).all()  # no future, no label
    labelled = ~np.isnan(dataset.label[:-30])
    assert labelled.all()
    assert (np.nansum(dataset.label[:-30], axis=1) >= 1).all()  # ceil(10% x 8) = 1 per bar, more on ties
    assert np.isnan(dataset.baseline[:60]).all() and not np.isnan(dataset.baseline[60:]).any()
    heat = FEATURE_NAMES.index("heat")
    assert np.isnan(dataset.features[..., heat]).all()  # discovery's view is not in candles


def test_features_do_not_see_the_future(history: Path, dataset: HotDataset) -> None:
    """Rewriting every candle after bar t changes labels up to t but no feature up to t."""
    candles = load_candles(history, "1m")
    t = 400
    scrambled = dataclasses.replace(
        candles,
        close=np.r_[candles.close[: t + 1], candles.close[t + 1 :] * 3.0],
        high=np.r_[candles.high[: t + 1], candles.high[t + 1 :] * 3.0],
        volume=np.r_[candles.volume[: t + 1], candles.volume[t + 1 :][::-1]],
        btc_close=np.r_[candles.btc_close[: t + 1], candles.btc_close[t + 1 :] * 0.5],
    )
    other = build_dataset(scrambled)
    np.testing.assert_array_equal(other.features[: t + 1], dataset.features[: t + 1])
    assert not np.array_equal(np.nan_to_num(other.forward[t - 29 : t + 1]), np.nan_to_num(dataset.forward[t - 29 : t + 1]))


def test_a_listing_in_the_candles_gets_the_engine_s_since_listing_features(tmp_path: Path) -> None:
    """A pair whose candles start after the others' is a listing: its first hour's window
    features are the ones the engine computes live for a listing it knows of (the latest path
    over the same bars), not NaN; `listing_min_bars = 0` leaves them NaN, as before."""
    frames = synth_frames(n_symbols=8, n_bars=300, seed=4)
    frames["S007/USDT"] = frames["S007/USDT"].iloc[200:]  # listed at bar 200
    candles = load_candles(write_history(tmp_path, frames), "1m")
    j = candles.symbols.index("S007/USDT")
    ds = build_dataset(candles, listing_min_bars=15)
    ret60, vwap60 = FEATURE_NAMES.index("ret_60"), FEATURE_NAMES.index("vwap_dist_60")
    assert np.isnan(ds.features[:214, j, ret60]).all() and np.isfinite(ds.features[214:260, j, ret60]).all()
    t = 229  # 30 bars after listing: what the engine's signal stage sees then
    window = slice(t - WINDOW + 1, t + 1)
    bars = BarMatrix(*(getattr(candles, f)[window, j : j + 1] for f in ("open", "high", "low", "close", "volume")))
    listed = np.array([float(candles.timestamps[200] + MINUTE)])  # dated at its first candle's close
    listings = Listings.in_window(bars.close, listed, int(candles.timestamps[t]), MINUTE, 15)
    live = features_hot_latest(bars, CandidateInfo.unknown((1,)), candles.btc_close[window], listings)[0]
    np.testing.assert_allclose(ds.features[t, j], live.astype(np.float32), rtol=1e-6)
    assert np.isfinite(live[[ret60, vwap60]]).all()
    off = build_dataset(candles, listing_min_bars=0)
    assert np.isnan(off.features[200:260, j, ret60]).all() and ds.listing_min_bars == 15
    assert ds.schema()["listing_min_bars"] == 15


def test_no_listing_row_younger_than_61_bars_is_trained_on_and_the_dataset_says_so(tmp_path: Path) -> None:
    """The baseline needs 61 closes and a row is kept only with it, so a listing's first 60 bars,
    the since-listing values among them, never reach training: the model's contract records 61,
    and the signal stage puts no younger listing to it."""
    frames = synth_frames(n_symbols=8, n_bars=400, seed=4)
    frames["S007/USDT"] = frames["S007/USDT"].iloc[200:]  # listed at bar 200
    ds = build_dataset(load_candles(write_history(tmp_path, frames), "1m"), listing_min_bars=15)
    j = ds.symbols.index("S007/USDT")
    table = ds.table(np.ones(ds.n_bars, np.bool_))
    assert table.bar[table.symbol == j].min() == 200 + 60  # its 61st bar
    assert ds.youngest_listing_bars(table) == 61 == LISTING_ORDINARY_BARS
    young = dataclasses.replace(ds, baseline=np.where(np.isnan(ds.baseline), 0.0, ds.baseline))  # as if kept from bar 1
    assert young.youngest_listing_bars(young.table(np.ones(ds.n_bars, np.bool_))) == 1
    assert ds.youngest_listing_bars(ds.table(np.arange(ds.n_bars) < 200)) == 61  # no listing in the rows: none younger


def test_the_regime_features_come_from_the_configured_regime_symbol(history: Path) -> None:
    """Training read BTC/USDT for btc_* whatever the engine was set to; now the pair is chosen
    (the engine's trading.signals.regime_symbol) and recorded with the dataset."""
    btc = build_dataset(load_candles(history, "1m"))
    other = build_dataset(load_candles(history, "1m", regime_symbol="S003/USDT"))
    assert (btc.regime_symbol, other.regime_symbol, other.schema()["regime_symbol"]) == ("BTC/USDT", "S003/USDT", "S003/USDT")
    k = FEATURE_NAMES.index("btc_ret_60")
    assert not np.allclose(btc.features[100:, 0, k], other.features[100:, 0, k])
    np.testing.assert_array_equal(other.features[:, 0, k], other.features[:, 1, k])  # one regime for every symbol


def test_table_keeps_only_usable_rows_of_selected_bars(dataset: HotDataset) -> None:
    table = dataset.table(stride_mask(dataset.n_bars, 5))
    assert (table.bar % 5 == 0).all() and not np.isnan(table.y).any() and not np.isnan(table.baseline).any()
    assert np.array_equal(table.bar, np.sort(table.bar))  # time order
    with pytest.raises(DatasetError, match="bar mask"):
        dataset.table(np.ones(3, np.bool_))
    with pytest.raises(DatasetError, match="stride"):
        stride_mask(10, 0)


def test_parquet_round_trip_with_schema(dataset: HotDataset, tmp_path: Path) -> None:
    path = tmp_path / "ds.parquet"
    rows = write_parquet(dataset, path, stride_mask(dataset.n_bars, 3))
    df, schema = read_parquet(path)
    assert len(df) == rows == len(dataset.table(stride_mask(dataset.n_bars, 3)))
    assert list(df.columns) == ["timestamp_ms", "symbol", *FEATURE_NAMES, "forward_return", "baseline", "label"]
    assert schema["feature_schema_hash"] == feature_schema_hash() and schema["horizon_bars"] == 30
    assert "top ceil(0.1 x n)" in schema["label_definition"]
    assert path.with_suffix(".schema.json").is_file()
    first = df.iloc[0]
    t = int(np.searchsorted(dataset.timestamps, first["timestamp_ms"]))
    j = dataset.symbols.index(first["symbol"])
    assert first["ret_60"] == pytest.approx(float(dataset.features[t, j, FEATURE_NAMES.index("ret_60")]))
    assert first["label"] == dataset.label[t, j]


def test_parquet_from_other_feature_code_is_refused(dataset: HotDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ds.parquet"
    write_parquet(dataset, path, stride_mask(dataset.n_bars, 50))
    monkeypatch.setattr(ml.dataset, "feature_schema_hash", lambda: "0" * 64)
    with pytest.raises(DatasetError, match="rebuild the dataset"):
        read_parquet(path)


def test_missing_parquet_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="hot_lgbm"):
        read_parquet(tmp_path / "nope.parquet")


def test_too_little_history_is_refused(history: Path) -> None:
    candles = load_candles(history, "1m", end_ms=int(load_candles(history, "1m").timestamps[40]))
    with pytest.raises(DatasetError, match="too few"):
        build_dataset(candles)


def test_fewer_symbols_than_the_label_ranks_is_refused_as_such(history: Path) -> None:
    """Three symbols trained into "0 training rows without both classes; use more history or
    more symbols": the label ranks at least 5 symbols a bar, which is what to say."""
    candles = load_candles(history, "1m")
    with pytest.raises(DatasetError, match=r"^3 symbol\(s\): the label ranks .* needs at least 5; train on more symbols"):
        build_dataset(load_candles(history, "1m", candles.symbols[:3]))


# ----------------------------------------------------------------------------- real candles
def test_real_candles_dataset(shared_data: Path) -> None:
    """Two days of six real pairs, across the 2021-04-20 02:00-04:29 outage."""
    start = 1_618_790_400_000  # 2021-04-19 00:00 UTC
    symbols = ["BTC/USDT", "DOGE/USDT", "WIN/USDT", "ETH/USDT", "NKN/USDT", "CTSI/USDT"]
    ds = build_dataset(load_candles(shared_data, "1m", symbols, start_ms=start, end_ms=start + 2 * 86_400_000))
    gap = (ds.timestamps >= 1_618_884_000_000) & (ds.timestamps < 1_618_893_000_000)
    assert gap.sum() == 150 and np.isnan(ds.label[gap]).all()
    before_gap = np.flatnonzero(gap)[0] - 1
    assert np.isnan(ds.forward[before_gap]).all()  # its 30-minute window ends inside the outage
    labelled = ~np.isnan(ds.label).all(axis=1)
    assert labelled.sum() > 2500 and (np.nansum(ds.label[labelled], axis=1) >= 1).all()
    share = np.nanmean(ds.label)
    assert 1 / 6 <= share <= 0.25  # ceil(10% x 6) = 1 of 6 per bar, a little more on ties
    assert np.isfinite(ds.features[~np.isnan(ds.baseline), FEATURE_NAMES.index("ret_60")]).all()
