"""LightGBM training and evaluation: metrics, a planted signal found, no lift from shuffled
futures, and every training run leaving its dataset, metrics, contract and decision behind."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.config import HotcoinConfig
from engine.config.sections.ml import MlSection, PromotionGates
from engine.signals.features import FEATURE_NAMES, feature_schema_hash
from gpu_jobs.datasets import load_candles
from hotcoin_tui.cli import app
from ml.dataset import HotDataset, build_dataset, read_parquet
from ml.governance.contract import read_contract
from ml.governance.promotion import read_decision
from ml.governance.registry import ModelRegistry
from ml.labels import top_fraction_label
from ml.lgbm import (
    LgbmParams,
    TrainReport,
    TrainRequest,
    TrainSettings,
    auc,
    calibrate,
    precision_at_top,
    top_mask,
    train_and_register,
    walk_forward_train,
)
from tests.ml.synth import synth_frames, write_history

FAST = TrainSettings(folds=3, stride=1, params=LgbmParams(rounds=30, min_data_in_leaf=50, num_threads=1))
LENIENT = PromotionGates(min_oos_lift=0.01, min_worst_fold_lift=0.01, max_fold_cv=100.0, min_oos_samples=1, min_folds=2)
STRICT = PromotionGates(min_oos_lift=50.0)


@pytest.mark.parametrize(
    ("y", "s", "expected"),
    [
        pytest.param([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0, id="perfect"),
        pytest.param([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0, id="inverted"),
        pytest.param([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5, id="all-tied"),
        pytest.param([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8], 0.75, id="one-pair-wrong"),
    ],
)
def test_auc(y: list[float], s: list[float], expected: float) -> None:
    assert auc(np.array(y, np.float64), np.array(s, np.float64)) == pytest.approx(expected)


def test_auc_needs_both_classes() -> None:
    assert np.isnan(auc(np.ones(3), np.arange(3.0)))


def test_precision_at_top_is_per_bar() -> None:
    bar = np.array([0] * 10 + [1] * 10, np.int64)
    score = np.r_[np.arange(10.0), np.arange(10.0)[::-1]]
    y = np.zeros(20)
    y[9] = 1.0  # bar 0: the top score is a positive
    y[19] = 1.0  # bar 1: the lowest score is the positive
    assert top_mask(score, bar).nonzero()[0].tolist() == [9, 10]
    assert precision_at_top(y, score, bar) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history(tmp_path_factory.mktemp("hist"), synth_frames(n_symbols=16, n_bars=3000, seed=0))


@pytest.fixture(scope="module")
def dataset(history: Path) -> HotDataset:
    return build_dataset(load_candles(history, "1m"))


@pytest.fixture(scope="module")
def report(dataset: HotDataset) -> TrainReport:
    return walk_forward_train(dataset, FAST)[1]


def test_planted_signal_beats_the_baseline_out_of_sample(report: TrainReport) -> None:
    lifts = [f.lift for f in report.folds]
    assert len(report.folds) == 3 and min(lifts) > 1.2 and np.mean(lifts) > 1.5
    assert all(f.auc > max(0.65, f.baseline_auc + 0.05) for f in report.folds)
    assert all(f.base_rate == pytest.approx(2 / 16, abs=0.01) for f in report.folds)  # ceil(10% x 16) = 2
    assert "vol_ratio_20" in list(report.importance)[:3]  # the burst is what gives the pump away


@pytest.mark.parametrize("seed", [0, 1], ids=["perm0", "perm1"])
def test_shuffled_future_labels_give_no_lift(dataset: HotDataset, seed: int) -> None:
    """Leakage test: scramble which future belongs to which (bar, symbol). If features or splits
    leaked the label, the model would still 'predict' it; with no leak it cannot beat chance."""
    fwd = np.random.default_rng(seed).permutation(dataset.forward.ravel()).reshape(dataset.forward.shape)
    shuffled = dataclasses.replace(dataset, forward=fwd, label=top_fraction_label(fwd))
    _, rep = walk_forward_train(shuffled, FAST)
    assert abs(np.mean([f.auc for f in rep.folds]) - 0.5) < 0.025
    assert np.mean([f.lift for f in rep.folds]) < 1.2


def test_metrics_feed_the_promotion_gates(report: TrainReport, dataset: HotDataset) -> None:
    m = report.metrics(dataset)
    assert m["oos"]["fold_lifts"] == pytest.approx([f.lift for f in report.folds])
    assert m["oos"]["samples"] == sum(f.test_rows for f in report.folds) and m["oos"]["baseline"] == "rise_from_60_bar_low"
    assert {"auc", "precision", "baseline_precision", "lift", "test_start_ms"} <= set(m["folds"][0])
    for f in m["folds"]:  # the purge gap (30-bar horizon + 60-bar embargo) is on record
        assert f["test_start_ms"] - f["train_end_ms"] == 90 * 60_000
    json.dumps(m, allow_nan=False)  # strict JSON: no NaN anywhere


def test_calibrate_lets_through_the_label_s_top_fraction() -> None:
    scores = np.r_[np.arange(100.0) / 100.0, np.nan]
    cal = calibrate(scores)
    assert (cal.min_score, cal.oos_max, cal.oos_samples, cal.top_fraction) == (0.9, 0.99, 100, 0.1)
    assert (scores >= cal.min_score).sum() == 10  # ceil(10 % x 100), as the label cuts its top
    assert calibrate(np.full(7, 0.2)).min_score == 0.2  # ties at the cut pass, as in the label


def test_the_entry_threshold_is_calibrated_on_the_out_of_sample_scores(report: TrainReport, dataset: HotDataset) -> None:
    """On the model's own scale: a probability of a top-10 % move sits far under a fixed 0.55."""
    cal = report.calibration
    assert cal.oos_samples == sum(f.test_rows for f in report.folds) and cal.top_fraction == 0.1
    assert 0.0 < cal.min_score < cal.oos_max < 1.0 and cal.min_score < 0.55
    assert report.metrics(dataset)["score_calibration"] == dataclasses.asdict(cal)


def config_with(tmp: Path, gates: PromotionGates) -> HotcoinConfig:
    return HotcoinConfig(ml=MlSection(registry_dir=tmp / "models", gates=gates))


@pytest.mark.parametrize(
    ("gates", "verdict"), [(LENIENT, "production"), (STRICT, "research_only")], ids=["lenient-gates", "strict-gates"]
)
def test_training_run_writes_dataset_metrics_contract_and_decision(
    history: Path, tmp_path: Path, gates: PromotionGates, verdict: str
) -> None:
    config = config_with(tmp_path, gates)
    registry = ModelRegistry(tmp_path / "models")
    req = TrainRequest(history, tmp_path / "run", "1m", settings=FAST)
    out = train_and_register(config, registry, req, now_ms=1_700_000_000_000)
    run = tmp_path / "run"
    contract = read_contract(run / "runtime_contract_hot_lgbm_1m.json")
    decision = read_decision(run / "promotion_decision_hot_lgbm_1m.json")
    assert contract.feature_schema_hash == feature_schema_hash() and contract.feature_names == FEATURE_NAMES
    assert contract.model_format == "lightgbm_text" and contract.model_file == "model.txt"
    assert "top ceil(0.1 x n)" in contract.label_definition and "lightgbm" in contract.library_versions
    assert contract.score_calibration == out.report.calibration == out.version.contract.score_calibration
    assert contract.listing_min_bars == config.trading.signals.listing_min_bars == out.version.contract.listing_min_bars
    assert contract.regime_symbol == config.trading.signals.regime_symbol == "BTC/USDT"
    assert contract.youngest_listing_bars == out.report.youngest_listing_bars == 61  # no listing in these candles
    assert decision.verdict == verdict == out.version.decision.verdict
    assert decision.model_sha256 == contract.model_sha256 == out.version.contract.model_sha256
    if verdict == "research_only":
        assert any("median out-of-sample fold lift" in r for r in decision.reasons)
    df, _ = read_parquet(run / "dataset.parquet")
    assert len(df) > 1000 and (out.version.path / "metrics.json").is_file()
    assert registry.versions("hot_lgbm", "1m")[-1].version == out.version.version and not out.reused
    again = train_and_register(config, registry, req, now_ms=1_700_000_060_000)  # same data, seed, code
    assert again.reused and again.version.version == out.version.version
    assert again.version.contract.model_sha256 == out.version.contract.model_sha256


def test_cli_trains_and_registers(history: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n[ml.gates]\nmin_oos_lift = 50.0\n')
    result = CliRunner().invoke(
        app,
        ["train", "--task", "hot_lgbm", "--data", str(history), "--config", str(config), "--epochs", "10", "--stride", "3"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "prec@10%" in result.output and "registered hot_lgbm_1m@v0001 (research_only)" in result.output
    assert "FAIL  oos_median_lift" in result.output
    assert 'entry threshold (trading.signals.ml_min_score = "auto"): 0.' in result.output
    assert (tmp_path / "data" / "models" / "hot_lgbm_1m" / "v0001" / "model.txt").is_file()
    assert (tmp_path / "data" / "training" / "hot_lgbm_1m" / "dataset.parquet").is_file()


def test_training_the_same_model_again_repairs_its_damaged_version(history: Path, tmp_path: Path) -> None:
    """A refused model's advice is "re-register it"; re-running the same `hotcoin train` said
    "identical model already registered as hot_lgbm_1m@v0001" and left its corrupt (or
    deleted) file as it was, the model refused (or passed over) at every start."""
    config = tmp_path / "config.toml"
    config.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n')
    command = ["train", "--task", "hot_lgbm", "--data", str(history), "--config", str(config), "--epochs", "5", "--stride", "3"]
    first = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert first.exit_code == 0, first.output
    model = tmp_path / "data" / "models" / "hot_lgbm_1m" / "v0001" / "model.txt"
    registered = model.read_bytes()
    model.write_bytes(registered + b"# bit rot\n")
    again = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert again.exit_code == 0, again.output
    assert "identical model already registered as hot_lgbm_1m@v0001" in again.output
    assert f"repaired hot_lgbm_1m@v0001: model file {model} was changed or corrupted: its sha256 is " in again.output
    assert model.read_bytes() == registered
    model.unlink()
    third = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert third.exit_code == 0, third.output
    assert f"repaired hot_lgbm_1m@v0001: model file {model} is missing; restored from " in third.output
    assert model.read_bytes() == registered
    fourth = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert "identical model already registered as hot_lgbm_1m@v0001" in fourth.output and "repaired" not in fourth.output
    assert [v.version for v in ModelRegistry(tmp_path / "data" / "models").versions("hot_lgbm", "1m")] == [1]


def test_cli_refuses_gpu_for_lightgbm(history: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--task", "hot_lgbm", "--gpu", "box", "--data", str(history)])
    assert result.exit_code != 0
    assert "drop --gpu" in (result.output + str(result.exception))


def test_real_candles_short_training(shared_data: Path, tmp_path: Path) -> None:
    """Four days of eight real pairs, every 5th bar: the pipeline runs on exchange data."""
    start = 1_618_531_200_000  # 2021-04-16 00:00 UTC (DOGE's +44% hour is inside)
    symbols = ["BTC/USDT", "DOGE/USDT", "WIN/USDT", "ETH/USDT", "NKN/USDT", "CTSI/USDT", "WRX/USDT", "HOT/USDT"]
    req = TrainRequest(
        shared_data,
        tmp_path / "run",
        "1m",
        symbols=symbols,
        start_ms=start,
        end_ms=start + 4 * 86_400_000,
        settings=TrainSettings(folds=3, stride=5, params=LgbmParams(rounds=20, min_data_in_leaf=50, num_threads=1)),
        write_dataset=False,
    )
    out = train_and_register(config_with(tmp_path, PromotionGates()), ModelRegistry(tmp_path / "models"), req, now_ms=1)
    assert len(out.report.folds) == 3
    for f in out.report.folds:
        assert 0.3 < f.auc < 0.95 and f.test_rows > 500 and 0 <= f.precision <= 1
    assert out.version.contract.training_window.symbols == tuple(symbols)
