"""Candles to arrays to windows: no window spans a missing bar, no label leaks into the test
period, normalisation uses the training part only."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import HotcoinConfig
from engine.errors import MarketDataError
from engine.sim.parquet_source import read_candles
from gpu_jobs.datasets import (
    Dataset,
    DatasetError,
    check_enough_bars,
    load_candles,
    normalisation,
    normalise,
    time_folds,
    window_index,
    write_dataset,
)
from gpu_jobs.features import hot_feature_set
from gpu_jobs.register import register_fetched
from gpu_jobs.spec import DatasetInfo
from gpu_jobs.workflow import TrainRequest, prepare_job
from ml.governance.registry import ModelRegistry
from tests.gpu_jobs.kit import TINY_FEATURES, make_dataset, make_spec, synthetic_candles


def test_windows_never_span_a_missing_close() -> None:
    close = np.arange(1.0, 41.0).reshape(20, 2)
    close[10, 0] = np.nan
    t, s = window_index(close, seq_len=4, horizon=2)
    for ti, si in zip(t, s, strict=True):
        assert np.isfinite(close[ti - 3 : ti + 3, si]).all()
    assert set(t[s == 1]) == set(range(3, 18))  # the clean column keeps every window
    assert set(t[s == 0]) == set(range(3, 18)) - set(range(8, 14))  # [t-3, t+2] holds bar 10


def test_time_folds_purge_the_label_horizon() -> None:
    t = np.arange(100)
    train, folds = time_folds(t, 100, test_fraction=0.3, folds=3, purge=5)
    assert t[train].max() == 64  # windows ending at 65..69 would see labels in the test period
    covered = np.concatenate([t[f] for f in folds])
    assert covered.tolist() == list(range(70, 100))
    assert all(t[f].max() < t[g].min() for f, g in itertools.pairwise(folds))


def test_normalisation_uses_the_training_part_and_ignores_nan() -> None:
    x = np.zeros((10, 1, 3), np.float32)
    x[:, 0, 0] = np.arange(10)
    x[:, 0, 1] = np.nan  # a feature never seen (e.g. discovery's heat in candle-only data)
    x[8:, 0, 2] = 100.0  # only after the split
    mean, std = normalisation(x, upto=8)
    assert mean[0] == pytest.approx(3.5) and mean[1] == 0 and std[1] == 1 and std[2] == 1
    z = normalise(x, mean, std)
    assert np.isfinite(z).all() and (z[:, 0, 1] == 0).all() and z[9, 0, 2] == 10.0  # clipped


def _parquet(folder: Path, name: str, ts: list[int], close: list[float]) -> None:
    folder.mkdir(exist_ok=True)
    pd.DataFrame(
        {"timestamp_ms": ts, "open": close, "high": close, "low": close, "close": close, "volume": [1.0] * len(ts)}
    ).to_parquet(folder / name)


def test_load_candles_aligns_symbols_on_one_grid(tmp_path: Path) -> None:
    _parquet(tmp_path, "AAA_USDT-1m.parquet", [0, 60_000, 180_000], [1.0, 2.0, 4.0])  # 120_000 missing
    _parquet(tmp_path, "BBB_USDT-1m.parquet", [120_000, 180_000], [5.0, 6.0])  # listed later
    c = load_candles(tmp_path, "1m")
    assert c.symbols == ("AAA/USDT", "BBB/USDT")
    assert c.timestamps.tolist() == [0, 60_000, 120_000, 180_000]
    np.testing.assert_array_equal(c.close, [[1.0, np.nan], [2.0, np.nan], [np.nan, 5.0], [4.0, 6.0]])
    assert np.isnan(c.btc_close).all()
    with pytest.raises(DatasetError, match=r"no 1m candles for \['CCC/USDT'\]"):
        load_candles(tmp_path, "1m", ["CCC/USDT"])
    with pytest.raises(DatasetError, match=r"expected files like DOGE_USDT-5m\.parquet"):
        load_candles(tmp_path, "5m")


@pytest.mark.parametrize(
    ("ts", "message"),
    [
        pytest.param([0, 60_000, 150_000], r"AAA_USDT-1m\.parquet: row 2 opens at 150000 ms, not on the 1m grid", id="off-grid"),
        pytest.param([0, 60_000, 120_000, 60_000], r"AAA_USDT-1m\.parquet: row 3 repeats timestamp 60000 of row 1", id="duplicate"),
    ],
)
def test_load_candles_refuses_timestamps_it_would_have_to_drop_or_overwrite(tmp_path: Path, ts: list[int], message: str) -> None:
    _parquet(tmp_path, "AAA_USDT-1m.parquet", ts, [1.0] * len(ts))
    _parquet(tmp_path, "BBB_USDT-1m.parquet", [0, 60_000], [5.0, 6.0])
    with pytest.raises(DatasetError, match=message):
        load_candles(tmp_path, "1m")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        pytest.param("close", -1.0, "a price is not positive and finite", id="negative-price"),
        pytest.param("close", np.nan, "a price is not positive and finite", id="nan-price"),
        pytest.param("open", 0.0, "a price is not positive and finite", id="zero-price"),
        pytest.param("volume", -1e6, "a volume is negative or not finite", id="negative-volume"),
        pytest.param("high", 0.5, "a high is below its open or close", id="high-below-low"),
    ],
)
def test_load_candles_refuses_a_bar_the_backtest_refuses(tmp_path: Path, column: str, value: float, message: str) -> None:
    """`hotcoin train` used to learn from (and register a model on) candle files whose bars the
    backtest refuses; both now run one check (`candle_problem`), with the same message."""
    t0 = 1_617_235_200_000  # 2021-04-01: the backtest's reader refuses open times before 2010
    _parquet(tmp_path, "AAA_USDT-1m.parquet", [t0, t0 + 60_000, t0 + 120_000], [1.0, 2.0, 3.0])
    _parquet(tmp_path, "BBB_USDT-1m.parquet", [t0, t0 + 60_000], [5.0, 6.0])
    path = tmp_path / "AAA_USDT-1m.parquet"
    df = pd.read_parquet(path)
    df.loc[1, column] = value
    df.to_parquet(path)
    with pytest.raises(DatasetError, match=rf"AAA_USDT-1m\.parquet: {message} \(row 1\); fix or remove the file"):
        load_candles(tmp_path, "1m")
    with pytest.raises(MarketDataError, match=rf"AAA_USDT-1m\.parquet: {message} \(row 1\)"):
        read_candles(path, "1m")


def test_load_candles_refuses_a_pair_twice_or_one_without_bars_in_the_window(tmp_path: Path) -> None:
    _parquet(tmp_path, "AAA_USDT-1m.parquet", [0, 60_000, 120_000], [1.0, 2.0, 3.0])
    _parquet(tmp_path, "BBB_USDT-1m.parquet", [600_000, 660_000], [5.0, 6.0])
    with pytest.raises(DatasetError, match=r"symbols \['AAA/USDT'\] are given more than once"):
        load_candles(tmp_path, "1m", ["AAA/USDT", "BBB/USDT", "AAA/USDT"])
    with pytest.raises(DatasetError, match=r"\['BBB/USDT'\] have no 1m candles inside the requested window"):
        load_candles(tmp_path, "1m", ["AAA/USDT", "BBB/USDT"], end_ms=300_000)
    assert load_candles(tmp_path, "1m", end_ms=300_000).symbols == ("AAA/USDT",)  # all files: those with bars


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        pytest.param(lambda p: p.write_bytes(b"PAR1garbage" * 10), "Parquet magic bytes not found", id="corrupt"),
        pytest.param(lambda p: pd.DataFrame({"timestamp_ms": [0], "close": [1.0]}).to_parquet(p), "(no column open, high, low, volume)", id="no-column"),
    ],
)
def test_an_unreadable_candle_file_is_named(tmp_path: Path, write: Callable[[Path], object], reason: str) -> None:
    write(tmp_path / "AAA_USDT-1m.parquet")
    with pytest.raises(DatasetError, match=r"AAA_USDT-1m\.parquet is not a readable candle file") as info:
        load_candles(tmp_path, "1m")
    assert reason in str(info.value) and "re-collect or remove it" in str(info.value)


def test_dataset_round_trips_and_checks_the_feature_shape(tmp_path: Path) -> None:
    candles = synthetic_candles(n_bars=100, n_symbols=2)
    meta = write_dataset(candles, TINY_FEATURES, tmp_path / "ds", name="x")
    ds = Dataset.load(tmp_path / "ds")
    assert ds.features.shape == (100, 2, 3) and ds.features.dtype == np.float32
    assert meta["feature_schema_hash"] == TINY_FEATURES.schema_hash and len(str(meta["sha256"])) == 64
    assert meta["listing_min_bars"] is None and DatasetInfo.from_json(meta).listing_min_bars is None  # no listing windows
    bad = TINY_FEATURES.__class__("bad", ("a",), ("float32",), "h", lambda c: np.zeros((100, 2, 3)))
    with pytest.raises(DatasetError, match=r"returned shape \(100, 2, 3\), expected \(100, 2, 1\)"):
        write_dataset(candles, bad, tmp_path / "bad", name="x")


def test_the_dataset_records_the_listing_min_bars_of_its_features(tmp_path: Path) -> None:
    """Not in the schema hash, yet it changes a listing's first hour: the dataset's metadata
    carries it into job.json (`DatasetInfo`) and from there into the model's contract."""
    assert hot_feature_set().listing_min_bars == 15 and hot_feature_set(0).listing_min_bars == 0
    features = hot_feature_set(10)
    meta = write_dataset(synthetic_candles(n_bars=100, n_symbols=2), features, tmp_path / "ds", name="x")
    assert meta["listing_min_bars"] == 10
    info = DatasetInfo.from_json(meta)
    assert info.listing_min_bars == 10 and DatasetInfo.from_json(info.to_json()) == info
    old = {k: v for k, v in info.to_json().items() if k != "listing_min_bars"}  # a job packed before it was recorded
    assert DatasetInfo.from_json(old).listing_min_bars is None


def test_the_regime_features_come_from_the_configured_pair_and_it_reaches_the_contract(tmp_path: Path) -> None:
    """Training read BTC/USDT for the regime columns (btc_*) whatever the engine's
    trading.signals.regime_symbol was: now the configured pair is read, and job.json carries it
    into the model's contract, which an engine on another pair refuses."""
    _parquet(tmp_path / "c", "AAA_USDT-1m.parquet", [0, 60_000], [1.0, 2.0])
    _parquet(tmp_path / "c", "BBB_USDT-1m.parquet", [0, 60_000], [5.0, 6.0])
    assert np.isnan(load_candles(tmp_path / "c", "1m", ["AAA/USDT"]).btc_close).all()  # BTC/USDT: no file here
    c = load_candles(tmp_path / "c", "1m", ["AAA/USDT"], regime_symbol="BBB/USDT")
    assert c.regime_symbol == "BBB/USDT" and c.btc_close.tolist() == [5.0, 6.0] and c.symbols == ("AAA/USDT",)

    config = HotcoinConfig.model_validate({"paths": {"data_dir": str(tmp_path / "data")}, "trading": {"signals": {"regime_symbol": "C1/USDT"}}})
    candles = synthetic_candles(n_bars=700, n_symbols=2, seed=3)
    (tmp_path / "hist").mkdir()
    for j, sym in enumerate(candles.symbols):
        frame = {"timestamp_ms": candles.timestamps, **{f: getattr(candles, f)[:, j] for f in ("open", "high", "low", "close", "volume")}}
        pd.DataFrame(frame).dropna().to_parquet(tmp_path / "hist" / f"{sym.replace('/', '_')}-1m.parquet")
    packed = prepare_job(config, TrainRequest("lstm_hot", "here", tmp_path / "hist", symbols=("C0/USDT",)), TINY_FEATURES)
    assert packed.spec.dataset.regime_symbol == "C1/USDT"
    old = {k: v for k, v in packed.spec.dataset.to_json().items() if k != "regime_symbol"}  # packed before it was recorded
    assert DatasetInfo.from_json(old).regime_symbol == "BTC/USDT"

    fetched = tmp_path / "fetched"  # what the box sends back, as far as registering reads it
    fetched.mkdir()
    (fetched / "job.json").write_text(packed.spec.dumps())
    (fetched / "metrics.json").write_text(json.dumps({"oos": {"fold_lifts": [1.2, 1.3, 1.25], "samples": 500, "baseline": "b"}}))
    (fetched / "model.pt").write_bytes(b"weights")
    version = register_fetched(fetched, ModelRegistry(tmp_path / "models"), config.ml.gates, now_ms=1).version
    assert version.contract.regime_symbol == "C1/USDT" and version.contract.youngest_listing_bars is None


@pytest.mark.parametrize("regime", ["missing", "outside-the-window"])
def test_training_without_the_regime_pairs_candles_is_refused(tmp_path: Path, regime: str) -> None:
    """Without them the btc_* features were NaN throughout, and the model's contract still said
    they came from BTC/USDT: the engine, which has BTC/USDT, would feed it values it never saw."""
    _parquet(tmp_path / "c", "AAA_USDT-1m.parquet", [0, 60_000], [1.0, 2.0])
    if regime == "outside-the-window":
        _parquet(tmp_path / "c", "BTC_USDT-1m.parquet", [600_000, 660_000], [5.0, 6.0])
    config = HotcoinConfig.model_validate({"paths": {"data_dir": str(tmp_path / "data")}})
    file = tmp_path / "c" / "BTC_USDT-1m.parquet"
    what = f"no {file}" if regime == "missing" else f"{file} has no candles in the window"
    with pytest.raises(DatasetError) as info:
        prepare_job(config, TrainRequest("lstm_hot", "here", tmp_path / "c", symbols=("AAA/USDT",)), TINY_FEATURES)
    assert str(info.value) == (
        f"{what}: the regime features (btc_*) come from trading.signals.regime_symbol = BTC/USDT, and without its "
        "candles the model would train on them empty while its contract names BTC/USDT; add BTC/USDT's 1m candles "
        "to --data (covering the same time), or set trading.signals.regime_symbol to a pair in it (the engine then "
        "runs with that pair too)"
    )
    assert not (tmp_path / "data" / "gpu_jobs" / "packs").exists()  # nothing was packed
    assert np.isnan(load_candles(tmp_path / "c", "1m", ["AAA/USDT"]).btc_close).all()  # reading alone (not training) allows it


@pytest.mark.shared_data
def test_real_candles_through_features_hot(shared_data: Path, tmp_path: Path) -> None:
    day = 1_618_531_200_000  # 2021-04-16 00:00 UTC: DOGE's +44% hour and BTG's listing
    candles = load_candles(shared_data, "1m", ["DOGE/USDT", "BTG/USDT"], start_ms=day, end_ms=day + 86_400_000)
    assert candles.close.shape == (1440, 2) and np.isfinite(candles.btc_close).all()
    assert np.isnan(candles.close[: 7 * 60, 1]).all() and np.isfinite(candles.close[7 * 60, 1])  # listed 07:00
    features = hot_feature_set()
    meta = write_dataset(candles, features, tmp_path / "ds", name="real")
    ds = Dataset.load(tmp_path / "ds")
    assert ds.features.shape == (1440, 2, len(features.names))
    assert meta["feature_schema_hash"] == features.schema_hash
    t, s = window_index(ds.close, seq_len=32, horizon=15)
    assert len(t) > 2000 and t[s == 1].min() >= 7 * 60 + 31
    # BTG is a listing in these candles: its first hour has the engine's since-listing windows,
    # from its 15th bar (`listing_min_bars`) on, as the engine computes them live.
    ret60 = ds.features[7 * 60 : 8 * 60, 1, features.names.index("ret_60")]
    assert np.isnan(ret60[:14]).all() and np.isfinite(ret60[14:]).all()
    assert np.isnan(hot_feature_set(0).compute(candles)[7 * 60 : 8 * 60, 1, features.names.index("ret_60")]).all()


@pytest.mark.parametrize(
    ("task", "too_few", "enough"),
    [
        pytest.param("lstm_hot", 25, 200, id="lstm_hot"),
        pytest.param("tft_heat", 25, 200, id="tft_heat"),
        pytest.param("ppo_sizing", 20, 200, id="ppo_sizing"),
    ],
)
def test_too_few_bars_for_the_task_say_to_use_more_history(tmp_path: Path, task: str, too_few: int, enough: int) -> None:
    spec = make_spec(task, make_dataset(tmp_path / "ds"))
    close = synthetic_candles().close
    check_enough_bars(spec, close[:enough])
    with pytest.raises(DatasetError, match=rf"^not enough bars: {too_few} bars .*; use a longer history: more days of candles in --data, or pairs that go back further \(--symbols\)$"):
        check_enough_bars(spec, close[:too_few])
