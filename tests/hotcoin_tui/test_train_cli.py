"""`hotcoin train` on candles it cannot use: a one-line error naming the file (or the interval)
and the fix, never a traceback, and nothing registered; through LightGBM here and through the
GPU path (a local-transport profile) alike."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gpu_jobs import remote
from gpu_jobs.errors import TrainingDataError
from hotcoin_tui.cli import app
from ml.governance.registry import ModelRegistry
from tests.kit.waiting import eventually_sync
from tests.ml.synth import synth_frames, write_history

TRAIN_HERE = ["train", "--task", "hot_lgbm"]
TRAIN_ON_GPU = ["train", "--task", "lstm_hot", "--gpu", "here", "--epochs", "1"]


def _corrupt(folder: Path) -> None:
    (folder / "S001_USDT-1m.parquet").write_bytes(b"PAR1garbage" * 10)


def _no_volume(folder: Path) -> None:
    path = folder / "S001_USDT-1m.parquet"
    pd.read_parquet(path).drop(columns=["volume"]).to_parquet(path)


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOTCOIN_GPU__HERE__TRANSPORT", "local")
    monkeypatch.setenv("HOTCOIN_GPU__HERE__WORKDIR", str(tmp_path / "box"))
    monkeypatch.setenv("HOTCOIN_GPU__HERE__PYTHON", sys.executable)
    return write_history(tmp_path / "candles", synth_frames(n_symbols=6, n_bars=120, seed=2))


@pytest.mark.parametrize("command", [TRAIN_HERE, TRAIN_ON_GPU], ids=["hot_lgbm", "gpu"])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(_corrupt, "Parquet magic bytes not found", id="corrupt"),
        pytest.param(_no_volume, "(no column volume)", id="no-volume"),
    ],
)
def test_an_unreadable_candle_file_is_one_line_naming_it(
    history: Path, tmp_path: Path, command: list[str], damage: Callable[[Path], None], message: str
) -> None:
    damage(history)
    result = CliRunner().invoke(app, [*command, "--data", str(history)])
    assert isinstance(result.exception, TrainingDataError), result.output
    text = str(result.exception)
    assert text.startswith(f"{history / 'S001_USDT-1m.parquet'} is not a readable candle file") and message in text
    assert "re-collect or remove it" in text and "\n" not in text
    assert not (tmp_path / "data" / "models").exists()


def test_an_interval_the_label_cannot_use_fails_before_loading(history: Path, tmp_path: Path) -> None:
    # minute timestamps in 1h files: had the candles been read first, the grid check would have failed
    hourly = write_history(tmp_path / "hourly", synth_frames(n_symbols=6, n_bars=120, seed=2), interval="1h")
    result = CliRunner().invoke(app, [*TRAIN_HERE, "--data", str(hourly), "--interval", "1h"])
    assert isinstance(result.exception, TrainingDataError), result.output
    assert str(result.exception).startswith("1h candles cannot make the hot-coin label")
    assert "use 1m, 3m, 5m, 15m or 30m candles" in str(result.exception)


def test_retraining_the_same_model_under_other_gates_says_which_decision_stands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path / "data"))
    for key, value in {"MIN_OOS_LIFT": "0.01", "MIN_WORST_FOLD_LIFT": "0.01", "MAX_FOLD_CV": "100", "MIN_OOS_SAMPLES": "1", "MIN_FOLDS": "2"}.items():
        monkeypatch.setenv(f"HOTCOIN_ML__GATES__{key}", value)
    history = write_history(tmp_path / "candles", synth_frames(n_symbols=10, n_bars=1500, seed=5))
    args = [*TRAIN_HERE, "--data", str(history), "--epochs", "15", "--stride", "2"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "registered hot_lgbm_1m@v0001 (production)" in first.output and "note:" not in first.output
    monkeypatch.setenv("HOTCOIN_ML__GATES__MIN_OOS_LIFT", "50")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "identical model already registered as hot_lgbm_1m@v0001 (production)" in again.output
    assert "note: under the current [ml.gates] this model is research_only (median out-of-sample fold lift" in again.output
    assert "was registered as production and that decision stays on record" in again.output
    assert "it runs this one in shadow" in again.output


def test_a_torch_model_is_not_announced_as_one_the_engine_trades_on(
    history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine only loads hot_lgbm: a torch model that passes the gates is registered, but
    the message says nothing trades on it rather than a green "(production)"."""
    monkeypatch.setenv("HOTCOIN_ML__GATES__MIN_OOS_SAMPLES", "1")
    monkeypatch.setenv("HOTCOIN_ML__GATES__MIN_OOS_LIFT", "0.001")
    monkeypatch.setenv("HOTCOIN_ML__GATES__MIN_WORST_FOLD_LIFT", "0")  # a one-epoch model: a fold may miss every pick
    monkeypatch.setenv("HOTCOIN_ML__GATES__MAX_FOLD_CV", "1000")
    monkeypatch.setenv("HOTCOIN_ML__GATES__MIN_FOLDS", "2")
    longer = write_history(tmp_path / "longer", synth_frames(n_symbols=6, n_bars=400, seed=2))
    result = CliRunner().invoke(app, [*TRAIN_ON_GPU, "--data", str(longer)], color=True)
    assert result.exit_code == 0, result.output
    assert "registered lstm_hot_1m@v0001 (production)" in result.output
    assert "\x1b[32m" not in result.output  # no green: production here is not production in the engine
    assert "the engine does not load lstm_hot models" in result.output and "no trade depends on it" in result.output


def _gates(monkeypatch: pytest.MonkeyPatch, min_oos_lift: str) -> None:
    gates = {"MIN_OOS_SAMPLES": "1", "MIN_OOS_LIFT": min_oos_lift, "MIN_WORST_FOLD_LIFT": "0", "MAX_FOLD_CV": "1000", "MIN_FOLDS": "2"}
    for key, value in gates.items():
        monkeypatch.setenv(f"HOTCOIN_ML__GATES__{key}", value)


def test_jobs_fetch_reports_what_it_registered_as_train_does(history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`jobs fetch` once said only "registered ...@v0002 (research_only)": no gates, no word that
    nothing trades on a torch model, and a new version's words for the one already there."""
    _gates(monkeypatch, min_oos_lift="50")
    longer = write_history(tmp_path / "longer", synth_frames(n_symbols=6, n_bars=400, seed=2))
    trained = CliRunner().invoke(app, [*TRAIN_ON_GPU, "--data", str(longer)])
    assert "registered lstm_hot_1m@v0001 (research_only)" in trained.output, trained.output
    job_id = ModelRegistry(tmp_path / "data" / "models").versions("lstm_hot", "1m")[0].contract.job_id
    fetch = ["jobs", "fetch", str(job_id), "--gpu", "here"]

    _gates(monkeypatch, min_oos_lift="0.001")  # today's gates pass it
    again = CliRunner().invoke(app, fetch)
    assert again.exit_code == 0, again.output
    assert "identical model already registered as lstm_hot_1m@v0001 (research_only)" in again.output
    assert "  FAIL  oos_median_lift: median out-of-sample fold lift" in again.output  # the decision on record
    assert "the engine does not load lstm_hot models" in again.output and "no trade depends on it" in again.output
    assert (
        "note: under the current [ml.gates] this model is production (every gate passed), but the identical model "
        "was registered as research_only and that decision stays on record"
    ) in again.output
    assert "a registered decision is never upgraded" in again.output
    assert len(ModelRegistry(tmp_path / "data" / "models").versions("lstm_hot", "1m")) == 1

    monkeypatch.setenv("HOTCOIN_ML__REGISTRY_DIR", str(tmp_path / "fresh"))
    fresh = CliRunner().invoke(app, fetch)
    assert fresh.exit_code == 0, fresh.output
    assert "registered lstm_hot_1m@v0001 (production)" in fresh.output and "  pass  oos_median_lift" in fresh.output
    assert "the engine does not load lstm_hot models" in fresh.output and "gpu_jobs.inference.load_scorer" in fresh.output
    assert "note:" not in fresh.output


def test_a_ppo_model_is_not_announced_as_one_inference_can_score(history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gpu_jobs.inference refuses ppo_sizing ("has no single score"): the message must not send
    the owner there."""
    _gates(monkeypatch, min_oos_lift="0.001")
    command = ["train", "--task", "ppo_sizing", "--gpu", "here", "--epochs", "1", "--data", str(history)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "registered ppo_sizing_1m@v0001" in result.output
    assert "gpu_jobs.inference)" not in result.output and "load_scorer" not in result.output
    assert "nothing in hotcoin runs a ppo_sizing model (gpu_jobs.inference scores lstm_hot and tft_heat only)" in result.output
    assert "its out-of-sample lift per fold in metrics.json beside it, and no trade depends on it" in result.output


def test_ctrl_c_while_training_on_the_box_says_the_job_keeps_running(history: Path, tmp_path: Path) -> None:
    """Ctrl-C stops `hotcoin train`, not the detached trainer on the (paid) GPU box: say so, and
    how to follow or stop it, rather than exit in silence. `hotcoin train` runs as its own
    process and gets the SIGINT: sent to pytest's own process it interrupted the whole test
    session whenever the timing went wrong."""
    box = tmp_path / "box" / "jobs"
    longer = write_history(tmp_path / "longer", synth_frames(n_symbols=6, n_bars=400, seed=2))
    command = ["train", "--task", "lstm_hot", "--gpu", "here", "--epochs", "100000", "--data", str(longer)]
    child = subprocess.Popen(
        [sys.executable, "-m", "hotcoin_tui.cli", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        eventually_sync(lambda: any("epoch 2/" in log.read_text() for log in box.glob("*/train.log")), timeout=240)
        child.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output, _ = child.communicate(timeout=120)
        (job_id,) = [p.name for p in box.iterdir()]
        assert child.returncode == 130, output
        assert (
            f"job {job_id} keeps running on here; follow with `hotcoin jobs logs {job_id} --gpu here -f` (then "
            f"`hotcoin jobs fetch {job_id} --gpu here` registers its model), stop with `hotcoin jobs cancel {job_id} --gpu here`"
        ) in " ".join(output.split())
        assert remote.effective_status(remote.JobDir(box / job_id))["state"] == "running"
        cancel = CliRunner().invoke(app, ["jobs", "cancel", job_id, "--gpu", "here"])  # the command it named
        assert "cancel sent" in cancel.output, cancel.output
    finally:  # never leave a trainer (or the command) behind, whatever failed above
        if child.poll() is None:
            child.kill()
            child.communicate()
        jobs = [remote.JobDir(path) for path in box.iterdir()] if box.exists() else []
        for job in jobs:
            remote.cancel(job)
        eventually_sync(lambda: not any(remote.is_running(job) for job in jobs), timeout=60)
