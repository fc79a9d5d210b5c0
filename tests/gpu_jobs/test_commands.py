"""`hotcoin jobs list|status` as people read them (times in UTC, newest job first), and the
lock that keeps two `hotcoin train --task hot_lgbm` runs out of one artefact folder."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.config import HotcoinConfig
from engine.errors import HotcoinError
from gpu_jobs import remote
from gpu_jobs.pack import pack_job
from gpu_jobs.profiles import make_client
from hotcoin_tui.cli import app
from tests.gpu_jobs.conftest import make_config
from tests.gpu_jobs.kit import make_dataset, make_spec

NOV_14 = 1_700_000_000  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOTCOIN_GPU__HERE__TRANSPORT", "local")
    monkeypatch.setenv("HOTCOIN_GPU__HERE__WORKDIR", str(tmp_path / "box"))
    monkeypatch.setenv("HOTCOIN_GPU__HERE__PYTHON", sys.executable)
    monkeypatch.setenv("COLUMNS", "200")  # the whole table, not ellipses
    return {"transport": "local", "workdir": str(tmp_path / "box"), "python": sys.executable}


def test_jobs_list_shows_when_each_job_was_shipped_newest_first(tmp_path: Path, here: dict[str, str]) -> None:
    client = make_client(make_config(tmp_path, here=here), "here")
    ds = make_dataset(tmp_path / "ds")
    ids = []
    for seed in (1, 2, 3):
        packed = pack_job(make_spec("lstm_hot", ds, seed=seed), tmp_path / "ds", tmp_path / "packs")
        asyncio.run(client.ship(packed))
        ids.append(packed.job_id)
    for age, job_id in enumerate(sorted(ids, reverse=True)):  # the highest id shipped last: not the id order
        os.utime(tmp_path / "box" / "jobs" / job_id / ".unpacked", (NOV_14 - 60 * age, NOV_14 - 60 * age))

    listed = CliRunner().invoke(app, ["jobs", "list", "--gpu", "here", "--json"])
    assert [j["job_id"] for j in json.loads(listed.output)] == sorted(ids, reverse=True)
    table = CliRunner().invoke(app, ["jobs", "list", "--gpu", "here"]).output
    assert "shipped (UTC)" in table and "updated (UTC)" in table
    assert "2023-11-14 22:13:20" in table and "2023-11-14 22:11:20" in table
    assert table.index(max(ids)) < table.index(min(ids))


@pytest.mark.parametrize("columns", [None, "40", "80", "120"], ids=["piped", "40", "80", "120"])
def test_jobs_list_shows_every_job_id_whole_at_any_width(
    tmp_path: Path, here: dict[str, str], monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    """The id is what status, logs, cancel and fetch take: a column is left out before it is cut."""
    client = make_client(make_config(tmp_path, here=here), "here")
    ds = make_dataset(tmp_path / "ds")
    ids = []
    for task in ("lstm_hot", "tft_heat", "ppo_sizing"):
        packed = pack_job(make_spec(task, ds), tmp_path / "ds", tmp_path / "packs")
        asyncio.run(client.ship(packed))
        ids.append(packed.job_id)
        job = remote.JobDir(tmp_path / "box" / "jobs" / packed.job_id)
        remote.update_status(job, state="running", epoch=3, epochs=100, device="cuda:0 NVIDIA H100 80GB HBM3")
    if columns is None:
        monkeypatch.delenv("COLUMNS")  # not a terminal and no COLUMNS: rich's 80
    else:
        monkeypatch.setenv("COLUMNS", columns)

    shown = CliRunner().invoke(app, ["jobs", "list", "--gpu", "here"])
    assert shown.exit_code == 0, shown.output
    assert all(job_id in shown.output for job_id in ids), shown.output
    assert "…" not in shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= int(columns or 80)
    if columns == "80":
        assert "left out at this width: task, device (see --json)" in shown.output


def test_jobs_status_shows_start_update_and_finish_in_utc(tmp_path: Path, here: dict[str, str]) -> None:
    client = make_client(make_config(tmp_path, here=here), "here")
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds, epochs=1), tmp_path / "ds", tmp_path / "packs")

    async def train() -> None:
        await client.ship(packed)
        await client.start(packed.job_id)
        await client.follow(packed.job_id)

    asyncio.run(train())

    shown = CliRunner().invoke(app, ["jobs", "status", packed.job_id, "--gpu", "here"])
    assert shown.exit_code == 0, shown.output
    lines = dict(line.split(None, 1) for line in shown.output.splitlines())
    assert lines["job"] == packed.job_id and lines["state"] == "done" and lines["epoch"] == "1/1"
    for name in ("started", "updated", "finished"):
        assert lines[name].endswith(" UTC") and lines[name].startswith("20"), lines
    assert "_ms" not in shown.output
    raw = json.loads(CliRunner().invoke(app, ["jobs", "status", packed.job_id, "--gpu", "here", "--json"]).output)
    assert raw["started_ms"] <= raw["finished_ms"] and raw["state"] == "done"


def test_a_second_hot_lgbm_run_is_refused_while_one_uses_the_artefact_folder(tmp_path: Path, here: dict[str, str]) -> None:
    folder = tmp_path / "data" / "training" / "hot_lgbm_1m"
    folder.parent.mkdir(parents=True)
    with (folder.parent / "hot_lgbm_1m.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first run, still training
        result = CliRunner().invoke(app, ["train", "--task", "hot_lgbm", "--data", str(tmp_path / "candles")])
    assert isinstance(result.exception, HotcoinError)
    assert str(result.exception) == (
        f"another training run is using {folder}; wait for it to finish, then run this command again"
    )
    after = CliRunner().invoke(app, ["train", "--task", "hot_lgbm", "--data", str(tmp_path / "candles")])
    assert "no 1m candles" in str(after.exception)  # the lock went with that run: this one gets as far as the data


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--set", "batchsize=128"],
            "--set batchsize: lstm_hot has no hyper-parameter 'batchsize'; lstm_hot takes batch_size, epochs, folds, hidden, "
            "horizon, layers, lr, max_train_samples, seq_len, test_fraction, threshold",
            id="unknown-key",
        ),
        pytest.param(["--set", "batch_size"], "--set 'batch_size' is not key=value (e.g. --set batch_size=256)", id="no-value"),
        pytest.param(["--set", "batch_size=12.5"], "--set batch_size=12.5: batch_size takes a whole number (default 512)", id="not-whole"),
        pytest.param(["--set", "batch_size=0"], "--set batch_size=0: batch_size must be at least 1 (default 512)", id="zero"),
        pytest.param(["--set", "lr=nan"], "--set lr=nan: lr must be a finite number, 0 or more (default 0.001)", id="nan"),
        pytest.param(["--set", "hidden=8", "--set", "hidden=16"], "--set hidden is given twice", id="twice"),
        pytest.param(["--epochs", "3", "--set", "epochs=4"], "--epochs 3 and --set epochs=4 disagree", id="epochs-twice"),
        pytest.param(["--task", "hot_lgbm", "--set", "rounds=5"], "hot_lgbm takes --epochs and --stride", id="lgbm"),
    ],
)
def test_train_set_refuses_what_the_task_does_not_take(args: list[str], message: str, here: dict[str, str]) -> None:
    """Checked before any candle is read; a wrong key lists the keys the task reads."""
    base = ["train", "--gpu", "here", "--data", "/nonexistent-hotcoin"]
    if "--task" not in args:
        base += ["--task", "lstm_hot"]
    result = CliRunner().invoke(app, [*base, *args])
    assert isinstance(result.exception, HotcoinError), result.output
    assert message in str(result.exception)


def test_train_set_reaches_the_job_spec_and_makes_a_new_job(tmp_path: Path, here: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`--set` feeds TrainRequest.hyper, which job.json carries: a changed setting is another job
    id (trained afresh), never a resume of the first one's checkpoint."""
    from gpu_jobs import workflow
    from gpu_jobs.workflow import TrainRequest, prepare_job
    from tests.gpu_jobs.kit import TINY_FEATURES, synthetic_candles

    asked: list[TrainRequest] = []

    async def train_on_gpu(config: object, req: TrainRequest, *args: object, **kwargs: object) -> None:
        asked.append(req)
        raise HotcoinError("stopped here")

    monkeypatch.setattr(workflow, "train_on_gpu", train_on_gpu)
    args = ["train", "--task", "lstm_hot", "--gpu", "here", "--set", "batch_size=128", "--set", "lr=5e-4", "--set", "epochs=2"]
    result = CliRunner().invoke(app, args)
    assert str(result.exception) == "stopped here"
    assert dict(asked[0].hyper) == {"batch_size": 128, "lr": 0.0005, "epochs": 2} and asked[0].epochs is None

    candles = synthetic_candles(n_bars=700, n_symbols=2, seed=3)
    (tmp_path / "hist").mkdir()
    for j, sym in enumerate(candles.symbols):
        frame = {"timestamp_ms": candles.timestamps, **{f: getattr(candles, f)[:, j] for f in ("open", "high", "low", "close", "volume")}}
        pd.DataFrame(frame).dropna().to_parquet(tmp_path / "hist" / f"{sym.replace('/', '_')}-1m.parquet")
    config = HotcoinConfig.model_validate({"paths": {"data_dir": str(tmp_path / "data")}, "trading": {"signals": {"regime_symbol": "C1/USDT"}}})
    plain = prepare_job(config, TrainRequest("lstm_hot", "here", tmp_path / "hist"), TINY_FEATURES)
    smaller = prepare_job(config, TrainRequest("lstm_hot", "here", tmp_path / "hist", hyper=asked[0].hyper), TINY_FEATURES)
    assert smaller.spec.params["batch_size"] == 128 and plain.spec.params["batch_size"] == 512
    assert smaller.job_id != plain.job_id
    again = prepare_job(config, TrainRequest("lstm_hot", "here", tmp_path / "hist", hyper={"lr": 0.0005, "epochs": 2, "batch_size": 128}), TINY_FEATURES)
    assert again.job_id == smaller.job_id  # the same settings, in any order: the same job (it resumes)
