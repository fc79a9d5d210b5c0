"""A GPU box in trouble: a full disk (a real one: a small tmpfs, where mounting is allowed), a
profile python that cannot train, a Python error on the box. Each is one clear error, found
before the dataset is sent where it can be, and leaves the job usable once the cause is gone."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_jobs import boxshell, remote, training
from gpu_jobs.client import JobClient, JobEvent
from gpu_jobs.errors import (
    GpuJobError,
    JobFailedError,
    RemoteEnvironmentError,
    TransportError,
    WorkdirFullError,
)
from gpu_jobs.pack import PackedJob, pack_job
from gpu_jobs.profiles import make_client
from gpu_jobs.remote import JobDir, effective_status, read_status, update_status
from gpu_jobs.transport.base import CommandResult
from gpu_jobs.transport.local import LocalTransport
from tests.gpu_jobs.conftest import SshBox, make_config
from tests.gpu_jobs.kit import make_dataset, make_spec
from tests.kit.waiting import eventually

FULL = r"the GPU box's workdir {} is full \({} MB free on local\); free space there and run the same command"
# A ship also says what the job needs there: the pack and, beside it while it unpacks, its files.
FULL_SHIP = (
    r"the GPU box's workdir {} is full \({} MB free on {}; this job needs \d+ KB there: its \d+ KB pack "
    r"and \d+ KB unpacked\); free space there and run the same command"
)


def _client(workdir: Path, python: str = sys.executable) -> JobClient:
    return JobClient(LocalTransport(), workdir=str(workdir), python=python)


def _packed(tmp_path: Path, **hyper: int) -> PackedJob:
    ds = make_dataset(tmp_path / "ds")
    return pack_job(make_spec("lstm_hot", ds, **hyper), tmp_path / "ds", tmp_path / "packs")


def _left_behind(box: Path) -> list[str]:
    return sorted(p.name for p in (box / "incoming").iterdir()) + sorted(p.name for p in (box / "jobs").iterdir())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs as the box's workdir."""
    mnt = tmp_path / "box"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a tmpfs, and mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(disk: Path, leave: int = 0) -> Path:
    """Take all but `leave` bytes of the disk's free space."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\1" * max(st.f_bavail * st.f_frsize - leave, 0))
    return filler


def _needs(packed: PackedJob, message: str) -> None:
    """The full-workdir message of a ship names what the job needs: its pack and, beside it
    while it unpacks, its files (KB, rounded up: a tiny job)."""
    pack, unpacked = packed.path.stat().st_size, packed.unpacked_bytes
    assert unpacked > pack  # the dataset compresses
    kb = [math.ceil(n / 1024) for n in (pack + unpacked, pack, unpacked)]
    assert f"this job needs {kb[0]} KB there: its {kb[1]} KB pack and {kb[2]} KB unpacked" in message


async def test_a_full_box_refuses_the_pack_with_its_free_space_and_keeps_nothing(tmp_path: Path, small_disk: Path) -> None:
    client = _client(small_disk)
    packed = _packed(tmp_path)
    await client.root()
    filler = _fill(small_disk, leave=packed.path.stat().st_size // 2)
    with pytest.raises(WorkdirFullError, match=FULL_SHIP.format(small_disk, 0, "local")) as info:
        await client.ship(packed)
    _needs(packed, str(info.value))
    assert _left_behind(small_disk) == []
    filler.unlink()
    assert await client.ship(packed) is True  # space freed: the same command works


async def test_a_full_box_over_ssh_is_a_full_workdir_though_scp_says_only_failure(
    tmp_path: Path, small_disk: Path, sshd: SshBox
) -> None:
    """OpenSSH 9's scp copies over SFTP, which has no "disk full": the box's ENOSPC arrives as
    "scp: write remote ...: Failure". The box's free space, measured, tells it apart."""
    client = make_client(make_config(tmp_path, box=sshd.profile(small_disk)), "box")
    packed = _packed(tmp_path)
    await client.root()
    filler = _fill(small_disk, leave=packed.path.stat().st_size // 2)
    with pytest.raises(WorkdirFullError, match=FULL_SHIP.format(small_disk, 0, "ssh gpubox")) as info:
        await client.ship(packed)
    assert isinstance(info.value.__cause__, TransportError) and "Failure" in str(info.value.__cause__)
    _needs(packed, str(info.value))
    assert _left_behind(small_disk) == []
    filler.unlink()
    assert await client.ship(packed) is True


class RefusingCopy(LocalTransport):
    """A box with room whose copy fails for another reason, in SFTP's words."""

    async def put(self, local: Path, remote: str) -> None:
        raise TransportError(f'copying {local.name} to the box failed (test): scp: write remote "{remote}": Failure')


async def test_a_copy_that_fails_on_a_box_with_room_is_not_called_a_full_workdir(tmp_path: Path) -> None:
    client = JobClient(RefusingCopy(), workdir=str(tmp_path / "box"), python=sys.executable)
    with pytest.raises(TransportError, match=r"failed \(test\): scp: write remote .*: Failure$") as info:
        await client.ship(_packed(tmp_path))
    assert not isinstance(info.value, WorkdirFullError)


async def test_an_unpack_that_fills_the_box_cleans_up_and_the_job_still_works(tmp_path: Path, small_disk: Path) -> None:
    client = _client(small_disk)
    packed = _packed(tmp_path)
    await client.root()
    filler = _fill(small_disk, leave=packed.path.stat().st_size * 3 // 2)  # room for the pack, not its contents
    with pytest.raises(WorkdirFullError, match=FULL_SHIP.format(small_disk, 0, "local")) as info:
        await client.ship(packed)
    _needs(packed, str(info.value))  # the pack fitted: how much more it takes is the news
    assert _left_behind(small_disk) == []  # neither the pack nor the half-unpacked folder
    filler.unlink()
    assert await client.ship(packed) is True

    filler = _fill(small_disk)
    with pytest.raises(WorkdirFullError, match=FULL.format(small_disk, 0)):
        await client.start(packed.job_id)  # its status cannot be written
    filler.unlink()
    assert (await client.status(packed.job_id))["state"] == "shipped"  # readable, not "marshal data too short"
    assert not any(small_disk.rglob("__pycache__"))  # noqa: ASYNC240 (a few files on a tmpfs)


async def test_a_disk_that_fills_during_training_is_a_full_workdir_and_the_same_command_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    """The trainer's checkpoint or log write finds the disk full, and so does the write of its
    own failure: the job must read as a full workdir, not as "crashed, run again to resume"."""
    client = _client(small_disk)
    packed = _packed(tmp_path, epochs=40)
    running = asyncio.create_task(client.run(packed, tmp_path / "fetched"))
    job = JobDir(small_disk / "jobs" / packed.job_id)
    await eventually(job.checkpoint.is_file, timeout=120)
    filler = _fill(small_disk)
    with pytest.raises(WorkdirFullError, match=FULL.format(small_disk, 0)):
        await running
    filler.unlink()
    fetched = await client.run(packed, tmp_path / "fetched")  # space freed: the same command resumes
    assert "resumed from checkpoint after epoch" in job.log.read_text()
    history = json.loads((fetched / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, 41))


class FullBox(LocalTransport):
    """A box whose `df` shows `available_kib` free, and whose trainer dies at once, after
    its first epoch's checkpoint, unable to write why: its status still says `running`."""

    def __init__(self, available_kib: int) -> None:
        super().__init__()
        self.available_kib = available_kib

    async def run(self, command: str) -> CommandResult:
        if command.startswith("df -Pk "):
            used = 4096 - self.available_kib
            df = f"Filesystem 1024-blocks Used Available Capacity Mounted on\ntmpfs 4096 {used} {self.available_kib} 100% /w\n"
            return CommandResult(0, df, "")
        if " -m gpu_jobs start " in command:
            job = JobDir(Path(shlex.split(command)[-1]))
            job.checkpoint.parent.mkdir()
            job.checkpoint.write_bytes(b"epoch 1")
            update_status(job, state="running", epoch=1, epochs=4)
            return CommandResult(0, json.dumps({**effective_status(job), "started": True}) + "\n", "")
        return await super().run(command)


@pytest.mark.parametrize(
    ("available_kib", "error", "message"),
    [
        pytest.param(0, WorkdirFullError, FULL.format(".*", 0), id="full"),
        pytest.param(
            2048,
            JobFailedError,
            r"^job \S+ ended crashed: the trainer is gone without finishing \(its last checkpoint is kept\); "
            r"run the same command again to resume from the last checkpoint$",
            id="space-left",
        ),
    ],
)
async def test_a_job_that_crashed_on_a_full_box_is_a_full_workdir(
    tmp_path: Path, available_kib: int, error: type[Exception], message: str
) -> None:
    events: list[JobEvent] = []
    client = JobClient(FullBox(available_kib), workdir=str(tmp_path / "box"), python=sys.executable, on_event=events.append)
    packed = _packed(tmp_path)
    with pytest.raises(error, match=message):
        await client.run(packed, tmp_path / "fetched")
    started = [e.message for e in events if e.kind == "started"]
    assert started == ["trainer started (state crashed, no pid recorded)"]  # not "(pid None)"


def test_a_trainer_that_cannot_record_its_failure_exits_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint save finds the disk full, and so does the status write that would record
    it: the trainer must still end (exit 1) with a line that says so, not die on a second
    traceback from its own error handler."""
    packed = _packed(tmp_path)
    asyncio.run(_client(tmp_path / "box").ship(packed))
    job = JobDir(tmp_path / "box" / "jobs" / packed.job_id)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    disk: dict[str, bool] = {"full": False}

    def save(obj: Any, path: Path) -> None:
        disk["full"] = True
        raise full

    def write_json(path: Path, data: dict[str, Any]) -> None:
        if disk["full"]:
            raise full
        real_write_json(path, data)

    real_write_json = remote.write_json
    monkeypatch.setattr(training, "_save_atomic", save)
    monkeypatch.setattr(remote, "write_json", write_json)
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert training.run(job) == 1  # in this process, so that its writes can be made to fail
    finally:
        signal.signal(signal.SIGTERM, before)
    assert read_status(job)["state"] == "running"  # the failure could not be written
    assert "cannot record the failure in status.json: [Errno 28] No space left on device" in capsys.readouterr().out


def test_a_cancel_during_the_trainers_imports_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI: a cancel sent right after start landed in torch's import, inside one of its
    `except Exception` guards, which swallowed it; the trainer trained all 500 epochs."""
    packed = _packed(tmp_path)
    asyncio.run(_client(tmp_path / "box").ship(packed))
    job = JobDir(tmp_path / "box" / "jobs" / packed.job_id)
    trained: list[bool] = []

    def guarded_imports() -> dict[str, Any]:
        with contextlib.suppress(Exception):  # as an optional import inside torch guards itself
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs as this call returns
        return {"ok": True}

    monkeypatch.setattr(training, "environment", guarded_imports)
    def train(job: JobDir, env: dict[str, Any]) -> int:
        trained.append(True)
        return 0

    monkeypatch.setattr(training, "_run", train)
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert training.run(job) == 1
    finally:
        signal.signal(signal.SIGTERM, before)
    assert trained == [] and read_status(job)["state"] == "cancelled"


def test_a_checkpoint_save_that_fails_leaves_no_partial_file(tmp_path: Path) -> None:
    """A half-written checkpoint would hold the space that recording the failure needs."""
    path = tmp_path / "ckpt" / "last.pt"
    with pytest.raises(Exception, match="pickle"):
        training._save_atomic({"unpicklable": lambda: 0}, path)
    assert list(path.parent.iterdir()) == []


async def test_commands_on_the_box_write_no_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .pyc cut short by a full disk would break every later command on the job for good."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    client = _client(tmp_path / "box")
    packed = _packed(tmp_path, epochs=1)
    await client.ship(packed)
    await client.start(packed.job_id)
    assert (await client.follow(packed.job_id))["state"] == "done"
    await client.list_jobs()
    assert not [p for p in (tmp_path / "box").rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]


@pytest.mark.parametrize(
    ("python", "message"),
    [
        pytest.param("no-such-python", r"local has no python '.*no-such-python'", id="no-python"),
        pytest.param("no-site", r"cannot train with python '.*no-site': .* cannot import numpy\. Fix: point the profile's `python`", id="no-numpy"),
    ],
)
async def test_a_python_that_cannot_train_is_found_before_the_dataset_is_sent(tmp_path: Path, python: str, message: str) -> None:
    if python == "no-site":  # this interpreter without its site-packages: no numpy, no torch
        shim = tmp_path / "no-site"
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
        shim.chmod(0o755)
    client = _client(tmp_path / "box", python=str(tmp_path / python))
    with pytest.raises(RemoteEnvironmentError, match=message):
        await client.ship(_packed(tmp_path))
    assert _left_behind(tmp_path / "box") == []


class TracebackBox(LocalTransport):
    """A box whose python dies with a traceback on every command."""

    async def run(self, command: str) -> CommandResult:
        if "gpu_jobs" not in command:
            return await super().run(command)
        return CommandResult(1, "", _TRACEBACK)


_TRACEBACK = """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/box/jobs/lstm_hot-4ea4398f9c2a1a52/code/gpu_jobs/__main__.py", line 21, in <module>
    from gpu_jobs import remote
  File "<frozen importlib._bootstrap_external>", line 729, in _compile_bytecode
EOFError: marshal data too short
"""


async def test_a_python_error_on_the_box_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    client = JobClient(TracebackBox(), workdir=str(tmp_path / "box"), python=sys.executable)
    (tmp_path / "box" / "jobs" / "lstm_hot-4ea4398f9c2a1a52").mkdir(parents=True)
    with pytest.raises(GpuJobError) as info:
        await client.status("lstm_hot-4ea4398f9c2a1a52")
    assert str(info.value) == (
        "reading the job status on local failed (exit 1): EOFError: marshal data too short "
        "(at <frozen importlib._bootstrap_external>:729)"
    )


@pytest.mark.parametrize(
    ("text", "full"),
    [
        pytest.param("OSError: [Errno 28] No space left on device: '/w/jobs/x/.status.json.tmp'", True, id="python"),
        pytest.param("tar: data/x.npy: Cannot write: No space left on device", True, id="tar"),
        pytest.param("scp: write remote \"/w/incoming/x.tar.gz\": Failure", False, id="other"),
    ],
)
def test_a_full_disk_is_recognised_in_what_the_box_says(text: str, full: bool) -> None:
    assert boxshell.is_no_space(text) is full


def test_free_space_is_read_from_posix_df() -> None:
    df = "Filesystem     1024-blocks  Used Available Capacity Mounted on\ntmpfs 4096 4096 2048 100% /w\n"
    assert boxshell.free_mb(df) == 2
    assert boxshell.free_mb("df: /nope: No such file or directory") is None
