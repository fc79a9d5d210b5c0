"""What a job leaves on the GPU box is the owner's alone: the workdir, the pack, the unpacked
dataset and code, the trainer's log, checkpoint and model. The box's session umask (022 from
sshd or PAM on most boxes) made every job folder world-readable: packs held 0644 entries, the
commands set no umask, and the workdir was made 0755. Every command now runs under umask 077."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_jobs import boxshell
from gpu_jobs.client import JobClient
from gpu_jobs.pack import PackedJob, pack_job
from gpu_jobs.profiles import make_client
from gpu_jobs.transport.local import LocalTransport
from tests.gpu_jobs.conftest import SshBox, make_config
from tests.gpu_jobs.kit import make_dataset, make_spec


@pytest.fixture(scope="module", autouse=True)
def open_umask() -> Iterator[None]:
    """The usual login umask, here and in the sshd this module starts (set up after this):
    what the box's commands are run under unless they set their own."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _packed(tmp_path: Path) -> PackedJob:
    ds = make_dataset(tmp_path / "ds")
    return pack_job(make_spec("lstm_hot", ds, epochs=1), tmp_path / "ds", tmp_path / "packs")


def open_to_others(box: Path) -> list[str]:
    """Everything under `box` (and `box` itself) that its group or others may read, write or
    enter, with its mode."""
    paths = [box, *box.rglob("*")]
    return [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p}" for p in paths if p.lstat().st_mode & 0o077]


async def test_a_job_run_through_the_local_transport_leaves_only_private_files(tmp_path: Path) -> None:
    box = tmp_path / "box"
    client = JobClient(LocalTransport(), workdir=str(box), python=sys.executable)
    packed = _packed(tmp_path)
    await client.run(packed, tmp_path / "fetched")
    job = box / "jobs" / packed.job_id
    assert (job / "out" / "model.pt").is_file() and (job / "train.log").is_file()  # the trainer's files are checked too
    assert stat.S_IMODE(box.stat().st_mode) == 0o700
    assert stat.S_IMODE((job / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((job / "job.json").stat().st_mode) == 0o600
    assert open_to_others(box) == []


async def test_a_job_shipped_over_ssh_is_private_on_the_box(tmp_path: Path, sshd: SshBox) -> None:
    box = tmp_path / "box"
    client = make_client(make_config(tmp_path, box=sshd.profile(box)), "box")
    packed = _packed(tmp_path)
    assert await client.ship(packed) is True
    assert (box / "jobs" / packed.job_id / "data" / "features.npy").is_file()
    assert open_to_others(box) == []


async def test_the_job_folders_an_earlier_version_left_open_are_made_private(tmp_path: Path) -> None:
    box = tmp_path / "box"
    for name in ("jobs", "incoming"):
        (box / name).mkdir(parents=True)
        (box / name).chmod(0o755)
    await JobClient(LocalTransport(), workdir=str(box), python=sys.executable).root()
    assert {name: stat.S_IMODE((box / name).stat().st_mode) for name in ("jobs", "incoming")} == {"jobs": 0o700, "incoming": 0o700}


def test_the_unpack_script_is_private_by_itself(tmp_path: Path) -> None:
    """Whatever shell runs it, under whatever umask: the script that makes the job's folder
    sets its own."""
    packed = _packed(tmp_path)
    (tmp_path / "jobs").mkdir()
    incoming = tmp_path / "incoming.tar.gz"
    shutil.copyfile(packed.path, incoming)
    jobdir = tmp_path / "jobs" / packed.job_id
    script = boxshell.unpack_script(incoming=str(incoming), staging=f"{jobdir}.tmp-1", jobdir=str(jobdir), sha256=packed.sha256)
    subprocess.run(["/bin/sh", "-c", "umask 022; { " + script + "\n}"], check=True)
    assert (jobdir / "data" / "features.npy").is_file()
    assert open_to_others(jobdir) == []
