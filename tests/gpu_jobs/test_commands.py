"""`hotcoin jobs list|status` as people read them (times in UTC, newest job first), and the
lock that keeps two `hotcoin train --task hot_lgbm` runs out of one artefact folder."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
