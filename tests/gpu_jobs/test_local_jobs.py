"""The same job steps through the local transport: the other two tasks end to end, a trainer
killed mid-run resuming from its checkpoint, and the `hotcoin train` / `hotcoin jobs` commands."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gpu_jobs.client import JobClient, JobEvent, ended_message
from gpu_jobs.errors import TransportError
from gpu_jobs.pack import pack_job
from gpu_jobs.profiles import make_client
from gpu_jobs.register import register_fetched, registry_dir
from gpu_jobs.remote import JobDir, effective_status, job_pid, update_status
from gpu_jobs.transport.base import CommandResult
from gpu_jobs.transport.local import LocalTransport
from hotcoin_tui.cli import app
from ml.governance.registry import ModelRegistry
from tests.gpu_jobs.conftest import make_config
from tests.gpu_jobs.kit import make_dataset, make_spec, synthetic_candles
from tests.kit.waiting import eventually


def _local(tmp_path: Path) -> dict[str, str]:
    return {"transport": "local", "workdir": str(tmp_path / "box"), "python": sys.executable}


async def test_ppo_sizing_trains_locally_and_registers(tmp_path: Path) -> None:
    config = make_config(tmp_path, here=_local(tmp_path))
    client = make_client(config, "here")
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("ppo_sizing", ds), tmp_path / "ds", tmp_path / "packs")
    fetched = await client.run(packed, tmp_path / "fetched")
    metrics = json.loads((fetched / "metrics.json").read_text())
    assert len(metrics["oos"]["fold_lifts"]) == 3 and all(v > 0 for v in metrics["oos"]["fold_lifts"])
    assert [f["bars"] for f in metrics["folds"]] == [89, 90, 90]
    version = register_fetched(fetched, ModelRegistry(registry_dir(config)), config.ml.gates, now_ms=1).version
    assert version.name == "ppo_sizing_1m@v0001"
    assert "weights over 3 coins + cash" in version.contract.label_definition
    assert version.contract.training_window.symbols == ("C0/USDT", "C1/USDT", "C2/USDT")


async def test_a_killed_trainer_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    config = make_config(tmp_path, here=_local(tmp_path))
    events: list[JobEvent] = []
    client = make_client(config, "here", on_event=events.append)
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds, epochs=3), tmp_path / "ds", tmp_path / "packs")
    await client.ship(packed)
    await client.start(packed.job_id)
    job = JobDir(tmp_path / "box" / "jobs" / packed.job_id)
    await eventually(job.checkpoint.is_file, timeout=60)
    pid = job_pid(job)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # a crash (OOM kill, reboot) mid-training
    await eventually(lambda: effective_status(job)["state"] == "crashed", timeout=10)
    assert (await client.status(packed.job_id))["state"] == "crashed"

    resumed = await client.start(packed.job_id)
    assert resumed["started"] is True
    final = await client.follow(packed.job_id)
    assert final["state"] == "done"
    log = job.log.read_text()
    resumed_after = re.search(r"resumed from checkpoint after epoch (\d)/3", log)
    assert resumed_after is not None and 1 <= int(resumed_after[1]) < 3
    metrics = json.loads((job.out / "metrics.json").read_text())
    # The epochs trained before the kill are in the history too, as the log reported them.
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    before = log.split("resumed from checkpoint")[0]
    for h in metrics["history"][: int(resumed_after[1])]:
        assert f"epoch {h['epoch']}/3 loss={h['loss']:.6f} samples={h['samples']}" in before


async def test_cancel_stops_a_running_job_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    client = make_client(make_config(tmp_path, here=_local(tmp_path)), "here")
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds, epochs=500), tmp_path / "ds", tmp_path / "packs")
    await client.ship(packed)
    await client.start(packed.job_id)
    job = JobDir(tmp_path / "box" / "jobs" / packed.job_id)
    await eventually(job.checkpoint.is_file, timeout=60)
    assert (await client.cancel(packed.job_id))["cancel_sent"] is True
    final = await client.follow(packed.job_id)
    assert final["state"] == "cancelled" and job.checkpoint.is_file()
    assert final["checkpoint"] is True and final["message"].startswith("cancelled after epoch ")
    assert final["message"] in job.log.read_text() and "(its checkpoint is kept)" in final["message"]
    said = ended_message(packed.job_id, final)
    assert said.endswith("(its checkpoint is kept); run the same command again to resume from the last checkpoint")


async def test_a_job_cancelled_before_its_first_epoch_says_it_starts_over(tmp_path: Path) -> None:
    client = make_client(make_config(tmp_path, here=_local(tmp_path)), "here")
    ds = make_dataset(tmp_path / "ds", synthetic_candles(n_bars=40_000))  # a first epoch of many seconds
    packed = pack_job(make_spec("lstm_hot", ds, epochs=500), tmp_path / "ds", tmp_path / "packs")
    await client.ship(packed)
    await client.start(packed.job_id)
    assert (await client.cancel(packed.job_id))["cancel_sent"] is True
    final = await client.follow(packed.job_id)
    job = JobDir(tmp_path / "box" / "jobs" / packed.job_id)
    assert final["state"] == "cancelled" and not job.checkpoint.is_file() and final["checkpoint"] is False
    assert "checkpoint is kept" not in job.log.read_text()
    assert ended_message(packed.job_id, final) == (
        f"job {packed.job_id} ended cancelled: cancelled before the first epoch finished (no checkpoint); "
        "run the same command again to train it from the start"
    )


@pytest.mark.parametrize(
    ("status", "said"),
    [
        pytest.param({"state": "cancelled", "message": ""}, "ended cancelled; run the same command again to resume", id="box-said-nothing"),
        pytest.param({"state": "crashed", "checkpoint": False}, "ended crashed; run the same command again to train it from the start", id="no-checkpoint"),
        pytest.param({"state": "failed", "message": "ValueError: x"}, "ended failed: ValueError: x; see `hotcoin jobs logs j`", id="failed"),
    ],
)
def test_an_ended_job_message_has_no_empty_reason_and_the_right_hint(status: dict[str, object], said: str) -> None:
    assert said in ended_message("j", status)


@pytest.mark.parametrize(
    ("checkpoint", "said"),
    [
        pytest.param(
            True,
            "the trainer is gone without finishing (its last checkpoint is kept); "
            "run the same command again to resume from the last checkpoint",
            id="checkpoint",
        ),
        pytest.param(
            False,
            "the trainer is gone without finishing and before its first epoch ended (no checkpoint); "
            "run the same command again to train it from the start",
            id="no-checkpoint",
        ),
    ],
)
def test_a_crashed_job_says_what_to_do_once(tmp_path: Path, checkpoint: bool, said: str) -> None:
    job = JobDir(tmp_path / "lstm_hot-0123456789abcdef")
    job.root.mkdir()
    update_status(job, state="running", epoch=1)  # no trainer alive: crashed
    if checkpoint:
        job.checkpoint.parent.mkdir()
        job.checkpoint.write_bytes(b"epoch 1")
    assert ended_message(job.job_id, effective_status(job)) == f"job {job.job_id} ended crashed: {said}"


async def test_a_job_that_fails_says_why(tmp_path: Path) -> None:
    from gpu_jobs.errors import JobFailedError

    client = make_client(make_config(tmp_path, here=_local(tmp_path)), "here")
    ds = make_dataset(tmp_path / "ds", synthetic_candles(n_bars=100))
    packed = pack_job(make_spec("lstm_hot", ds, seq_len=64, folds=6), tmp_path / "ds", tmp_path / "packs")
    with pytest.raises(JobFailedError, match=r"ended failed: DatasetError: not enough bars.*hotcoin jobs logs") as info:
        await client.run(packed, tmp_path / "fetched")
    assert info.value.state == "failed"
    assert "Traceback" in await client.logs(packed.job_id)


async def test_a_rerun_of_a_failed_job_follows_only_its_own_attempt(tmp_path: Path) -> None:
    """The second run appends to the first one's log: following it from byte 0 replayed the
    old traceback as if the new run had just failed so. It shows the new attempt only, opened
    by a line in the log that `jobs logs` shows between the two."""
    from gpu_jobs.errors import JobFailedError

    events: list[JobEvent] = []
    client = make_client(make_config(tmp_path, here=_local(tmp_path)), "here", on_event=events.append)
    ds = make_dataset(tmp_path / "ds", synthetic_candles(n_bars=100))
    packed = pack_job(make_spec("lstm_hot", ds, seq_len=64, folds=6), tmp_path / "ds", tmp_path / "packs")
    with pytest.raises(JobFailedError):
        await client.run(packed, tmp_path / "fetched")
    first = [e.message for e in events if e.kind == "log"]
    assert sum(line.startswith("Traceback") for line in first) == 1
    events.clear()

    with pytest.raises(JobFailedError):
        await client.run(packed, tmp_path / "fetched")
    second = [e.message for e in events if e.kind == "log"]
    assert re.fullmatch(r"--- attempt 2 started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ---", second[0]), second
    assert sum(line.startswith("Traceback") for line in second) == 1  # this run's, not the first one's too
    whole = (await client.logs(packed.job_id)).splitlines()
    assert whole == [*first, *second]  # the log keeps both attempts, in order
    assert (await client.status(packed.job_id))["attempt"] == 2


async def test_a_resumed_job_shows_no_finish_time_while_it_runs(tmp_path: Path) -> None:
    """`jobs status` of a job cancelled and started again showed the cancel's time as its
    finish, before its start: the running job read as over."""
    from hotcoin_tui.commands.jobs_cmd import status_lines

    client = make_client(make_config(tmp_path, here=_local(tmp_path)), "here")
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds, epochs=500), tmp_path / "ds", tmp_path / "packs")
    await client.ship(packed)
    job = JobDir(tmp_path / "box" / "jobs" / packed.job_id)
    update_status(job, state="cancelled", message="cancelled after epoch 1 (its checkpoint is kept)", finished_ms=1_700_000_000_000)
    try:
        assert (await client.start(packed.job_id))["started"] is True
        status = await client.status(packed.job_id)
        assert status["state"] in ("starting", "running") and status["finished_ms"] is None
        assert "finished -" in status_lines(status) and "message  -" in status_lines(status)
    finally:
        await client.cancel(packed.job_id)
        final = await client.follow(packed.job_id)
    assert final["state"] == "cancelled" and final["finished_ms"] >= final["started_ms"]


class OomBox(LocalTransport):
    """A box whose trainer runs out of GPU memory in its first batch."""

    async def run(self, command: str) -> CommandResult:
        if " -m gpu_jobs start " in command:
            job = JobDir(Path(shlex.split(command)[-1]))
            message = "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total capacity)"
            job.log.write_text(f"Traceback (most recent call last):\n{message}\n")
            update_status(job, state="failed", message=message, finished_ms=1)
            return CommandResult(0, json.dumps({**effective_status(job), "started": True}) + "\n", "")
        return await super().run(command)


@pytest.mark.parametrize(
    ("task", "levers"),
    [
        pytest.param("lstm_hot", "`--set batch_size=128` (this job used 256)", id="lstm"),
        pytest.param("ppo_sizing", "`--set minibatch=16` (this job used 32) or `--set envs=2` (this job used 4)", id="ppo"),
    ],
)
async def test_a_job_out_of_memory_names_the_setting_that_lowers_it(tmp_path: Path, task: str, levers: str) -> None:
    """Running the same job again fails the same way; the message says which `--set` helps."""
    from gpu_jobs.errors import JobFailedError

    client = JobClient(OomBox(), workdir=str(tmp_path / "box"), python=sys.executable)
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec(task, ds), tmp_path / "ds", tmp_path / "packs")
    with pytest.raises(JobFailedError) as info:
        await client.run(packed, tmp_path / "fetched")
    assert str(info.value) == (
        f"job {packed.job_id} ended failed: OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB "
        f"(GPU 0; 79.10 GiB total capacity); the box ran out of memory: run the same command with {levers}, "
        "or with fewer pairs in --symbols"
    )
    assert "`--set batch_size=<smaller>`" in ended_message("lstm_hot-0123456789abcdef", {"state": "failed", "message": "MemoryError"})


def _write_parquet(folder: Path, n_bars: int = 700) -> None:
    candles = synthetic_candles(n_bars=n_bars, n_symbols=2, seed=3)
    folder.mkdir()
    for j, sym in enumerate(candles.symbols):
        frame = pd.DataFrame(
            {
                "timestamp_ms": candles.timestamps,
                **{c: getattr(candles, c)[:, j] for c in ("open", "high", "low", "close", "volume")},
            }
        ).dropna()
        frame.to_parquet(folder / f"{sym.replace('/', '_')}-1m.parquet")


def test_train_and_jobs_commands_on_a_local_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.signals.features import FEATURE_NAMES, feature_schema_hash

    _write_parquet(tmp_path / "candles")
    monkeypatch.setenv("HOTCOIN_TRADING__SIGNALS__REGIME_SYMBOL", "C1/USDT")  # no BTC/USDT among the candles
    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOTCOIN_ML__GATES__MIN_OOS_SAMPLES", "10")
    monkeypatch.setenv("HOTCOIN_GPU__HERE__TRANSPORT", "local")
    monkeypatch.setenv("HOTCOIN_GPU__HERE__WORKDIR", str(tmp_path / "box"))
    monkeypatch.setenv("HOTCOIN_GPU__HERE__PYTHON", sys.executable)
    runner = CliRunner()
    args = ["train", "--task", "tft_heat", "--gpu", "here", "--data", str(tmp_path / "candles"), "--epochs", "1", "--seed", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "registered tft_heat_1m@v0001" in result.output
    assert "oos_median_lift" in result.output and "oos_worst_fold_lift" in result.output and "fold_stability_cv" in result.output

    version = ModelRegistry(tmp_path / "data" / "models").versions("tft_heat", "1m")[0]
    assert version.contract.feature_names == FEATURE_NAMES
    assert version.contract.feature_schema_hash == feature_schema_hash()
    job_id = version.contract.job_id
    assert job_id is not None

    listed = runner.invoke(app, ["jobs", "list", "--gpu", "here", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(j["job_id"], j["state"]) for j in json.loads(listed.output)] == [(job_id, "done")]
    status = runner.invoke(app, ["jobs", "status", job_id, "--gpu", "here", "--json"])
    assert json.loads(status.output)["state"] == "done"
    logs = runner.invoke(app, ["jobs", "logs", job_id, "--gpu", "here"])
    assert "epoch 1/1" in logs.output and "done: out/model.pt" in logs.output
    cancel = runner.invoke(app, ["jobs", "cancel", job_id, "--gpu", "here"])
    assert "not running (state done)" in cancel.output
    fetched = runner.invoke(app, ["jobs", "fetch", job_id, "--gpu", "here"])
    assert fetched.exit_code == 0 and "identical model already registered as tft_heat_1m@v0001" in fetched.output

    again = runner.invoke(app, args)  # same data, code and seed: same job, not shipped again
    assert again.exit_code == 0, again.output
    assert "already on the box" in again.output and "identical model already registered as tft_heat_1m@v0001" in again.output
    assert len(ModelRegistry(tmp_path / "data" / "models").versions("tft_heat", "1m")) == 1


def test_too_short_a_history_is_refused_before_anything_is_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's windows and folds need more bars than there are: said here, with a fix the
    command takes, not after an upload by a job that fails on the box."""
    from gpu_jobs.errors import TrainingDataError

    _write_parquet(tmp_path / "candles", n_bars=120)
    monkeypatch.setenv("HOTCOIN_TRADING__SIGNALS__REGIME_SYMBOL", "C1/USDT")
    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOTCOIN_GPU__HERE__TRANSPORT", "local")
    monkeypatch.setenv("HOTCOIN_GPU__HERE__WORKDIR", str(tmp_path / "box"))
    monkeypatch.setenv("HOTCOIN_GPU__HERE__PYTHON", sys.executable)
    args = ["train", "--task", "lstm_hot", "--gpu", "here", "--data", str(tmp_path / "candles"), "--epochs", "1"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, TrainingDataError)
    assert str(result.exception).startswith("not enough bars: 120 bars give ")
    assert str(result.exception).endswith(
        "use a longer history: more days of candles in --data, or pairs that go back further (--symbols)"
    )
    assert not (tmp_path / "box").exists()  # nothing was shipped


async def test_an_unknown_job_is_a_clear_error(tmp_path: Path) -> None:
    from gpu_jobs.errors import GpuJobError

    client = make_client(make_config(tmp_path, here=_local(tmp_path)), "here")
    for call in (client.status, client.follow, client.start, client.cancel, client.logs):
        with pytest.raises(GpuJobError, match=r"no job lstm_hot-0000000000000000 in .*; see `hotcoin jobs list`"):
            await call("lstm_hot-0000000000000000")
    assert await client.list_jobs() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["train", "--task", "lstm_hot", "--gpu", "nope"], "no GPU profile 'nope' (known: none configured)", id="unknown-profile"),
        pytest.param(["train", "--task", "lstm_hot"], "pass --gpu <profile>", id="no-gpu"),
        pytest.param(["train", "--task", "xgb", "--gpu", "x"], "unknown task 'xgb'; known: lstm_hot", id="unknown-task"),
        pytest.param(["jobs", "status", "not-a-job", "--gpu", "x"], "no GPU profile 'x'", id="jobs-unknown-profile"),
        pytest.param(["train", "--task", "hot_lgbm", "--data", "/nonexistent-hotcoin"], "no 1m candles in /nonexistent-hotcoin", id="no-candles"),
    ],
)
def test_command_errors_name_the_fix(args: list[str], message: str) -> None:
    from engine.errors import HotcoinError

    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, HotcoinError)
    assert message in str(result.exception)


@pytest.mark.parametrize(
    ("env_setup", "stderr"),
    [
        pytest.param("source /nonexistent/bin/activate", "source: not found", id="bash-only-source"),
        pytest.param("true; false", "no message", id="last-of-several-steps"),
    ],
)
async def test_a_failing_env_setup_is_named_not_blamed_on_python(tmp_path: Path, env_setup: str, stderr: str) -> None:
    from gpu_jobs.errors import RemoteEnvironmentError

    client = make_client(make_config(tmp_path, here={**_local(tmp_path), "env_setup": env_setup}), "here")
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds), tmp_path / "ds", tmp_path / "packs")
    with pytest.raises(RemoteEnvironmentError, match=r"the profile's env_setup .* failed on ") as info:
        await client.ship(packed)  # found before the dataset is sent
    assert stderr in str(info.value) and "`. /opt/venv/bin/activate`, not `source`" in str(info.value)
    assert "has no python" not in str(info.value)


async def test_a_posix_env_setup_runs_before_python(tmp_path: Path) -> None:
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text(f'PATH="{Path(sys.executable).parent}:$PATH"; export PATH\n')
    profile = {**_local(tmp_path), "python": Path(sys.executable).name, "env_setup": f". {venv / 'activate'}"}
    client = make_client(make_config(tmp_path, here=profile), "here")  # python found only through the activated PATH
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds), tmp_path / "ds", tmp_path / "packs")
    await client.ship(packed)
    assert (await client.status(packed.job_id))["job_id"] == packed.job_id


class DroppingTransport(LocalTransport):
    """A link that drops mid-fetch, after the first file's bytes were only partly written."""

    async def get(self, remotes: Sequence[str], local_dir: Path) -> None:
        (local_dir / "model.pt").write_bytes(b"")
        raise TransportError("connection to the GPU box (test) lost while fetching job files; run the same command again")


async def test_a_fetch_cut_short_leaves_no_fetched_folder(tmp_path: Path) -> None:
    client = JobClient(DroppingTransport(), workdir=str(tmp_path / "box"), python=sys.executable)
    with pytest.raises(TransportError, match="lost while fetching"):
        await client.fetch("lstm_hot-0000000000000000", tmp_path / "fetched")
    assert list((tmp_path / "fetched").iterdir()) == []  # no folder with a 0-byte model.pt, no partial folder
