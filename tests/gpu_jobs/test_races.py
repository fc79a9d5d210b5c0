"""Two runs of one job at once: two `start`s must not run two trainers, two ships must not
unpack over each other, and two `hotcoin train` runs must both end with the one model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpu_jobs import remote
from gpu_jobs.client import JobClient, JobEvent
from gpu_jobs.pack import pack_job
from gpu_jobs.transport.base import CommandResult
from gpu_jobs.transport.local import LocalTransport
from tests.gpu_jobs.kit import make_dataset, make_spec
from tests.kit.waiting import eventually


def _trainers(job: remote.JobDir) -> list[int]:
    """Pids of live trainer processes (`python -m gpu_jobs run <job>`) of this job."""
    want = b"gpu_jobs\0run\0" + str(job.root).encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if want in cmdline and state not in ("Z", "X"):
                pids.append(int(entry.name))
    return pids


def _client(tmp_path: Path, transport: LocalTransport | None = None, events: list[JobEvent] | None = None) -> JobClient:
    return JobClient(
        transport or LocalTransport(), workdir=str(tmp_path / "box"), python=sys.executable,
        on_event=events.append if events is not None else None,
    )  # fmt: skip


# `start` runs in this process here, so the trainer's Popen outlives its caller, as it does on the
# box when the `start` process exits; Python warns about that when the object is collected.
@pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning")
async def test_two_starts_at_once_run_one_trainer_that_cancel_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(tmp_path)
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds, epochs=500), tmp_path / "ds", tmp_path / "packs")
    await client.ship(packed)
    job = remote.JobDir(tmp_path / "box" / "jobs" / packed.job_id)
    read = remote.effective_status

    def slow_read(j: remote.JobDir) -> dict[str, Any]:
        status = read(j)
        time.sleep(0.3)  # both `start`s look before either has spawned: the race, made certain
        return status

    monkeypatch.setattr(remote, "effective_status", slow_read)
    try:
        answers = await asyncio.gather(asyncio.to_thread(remote.start, job), asyncio.to_thread(remote.start, job))
        assert sorted(bool(a["started"]) for _, a in answers) == [False, True]
        assert next(a["state"] for _, a in answers if not a["started"]) in ("starting", "running")
        assert len(_trainers(job)) == 1
        assert remote.cancel(job)["cancel_sent"] is True
        await eventually(lambda: not _trainers(job), timeout=30)
    finally:
        for pid in _trainers(job):  # without the lock: the trainer nobody can cancel
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


class OneAtATime(LocalTransport):
    """Both packs are on the box before either is unpacked, and one unpack runs at a time: the
    order two ships of one job at once take, every time."""

    def __init__(self) -> None:
        super().__init__()
        self.copied = asyncio.Barrier(2)
        self.one = asyncio.Lock()

    async def put(self, local: Path, remote: str) -> None:
        await super().put(local, remote)
        await self.copied.wait()

    async def run(self, command: str) -> CommandResult:
        async with self.one:
            return await super().run(command)


async def test_two_ships_of_one_job_at_once_both_succeed_and_leave_nothing_behind(tmp_path: Path) -> None:
    events: list[JobEvent] = []
    client = _client(tmp_path, OneAtATime(), events)
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds), tmp_path / "ds", tmp_path / "packs")

    shipped = await asyncio.gather(client.ship(packed), client.ship(packed))

    assert sorted(shipped) == [False, True]
    assert "already unpacked by another ship; not shipped again" in [e.message for e in events if e.kind == "ship_skipped"]
    box = tmp_path / "box"
    assert (box / "jobs" / packed.job_id / ".unpacked").is_file()
    assert sorted(p.name for p in (box / "jobs").iterdir()) == [packed.job_id]  # no staging folder left
    assert sorted((box / "jobs" / packed.job_id).iterdir()) == sorted(
        box / "jobs" / packed.job_id / n for n in (".unpacked", "code", "data", "job.json")
    )  # nothing unpacked into the job a second time
    assert list((box / "incoming").iterdir()) == []


async def test_two_train_runs_of_one_job_at_once_both_end_with_the_model(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds")
    packed = pack_job(make_spec("lstm_hot", ds), tmp_path / "ds", tmp_path / "packs")
    first, second = _client(tmp_path), _client(tmp_path)

    fetched = await asyncio.gather(first.run(packed, tmp_path / "fetched"), second.run(packed, tmp_path / "fetched"))

    assert fetched[0] == fetched[1] == tmp_path / "fetched" / packed.job_id
    assert sorted(p.name for p in fetched[0].iterdir()) == ["job.json", "metrics.json", "model.pt", "status.json", "train.log"]
    assert [p.name for p in (tmp_path / "fetched").iterdir()] == [packed.job_id]
    log = (tmp_path / "box" / "jobs" / packed.job_id / "train.log").read_text()
    assert log.count("done: out/model.pt") == 1  # one trainer
