"""The GPU box's side of a job: its folder, status file, environment check, the detached
training process, and the commands the trading box calls over SSH (`python -m gpu_jobs ...`).

A job folder (`<workdir>/jobs/<job_id>/`) holds what was shipped (`job.json`, `data/`, `code/`)
and what the job writes: `train.log`, `status.json`, `pid`, `.lock` (held while a `start` or a
`cancel` looks at the trainer), `ckpt/last.pt` (every epoch, so a crash or a reboot resumes) and
`out/` (`model.pt`, `metrics.json`). Training runs in its own session (`setsid`) with its output
going to `train.log`, so it keeps running when the SSH connection that started it drops; the
trading box re-attaches by tailing the log from an offset.

Standard library and numpy at import; torch only inside the functions that train.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TERMINAL = frozenset({"done", "failed", "cancelled", "crashed"})
EXIT_ENV = 3  # the environment cannot train (no torch, no numpy): the caller's error, not ours
EXIT_USAGE = 2
ENV_WAIT_S = 300.0  # how long `start` waits for the trainer's environment check


@dataclass(frozen=True)
class JobDir:
    root: Path

    @property
    def job_id(self) -> str:
        return self.root.name

    @property
    def spec(self) -> Path:
        return self.root / "job.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def pid(self) -> Path:
        return self.root / "pid"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def checkpoint(self) -> Path:
        return self.root / "ckpt" / "last.pt"

    @property
    def out(self) -> Path:
        return self.root / "out"


def now_ms() -> int:
    return int(time.time() * 1000)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_status(job: JobDir) -> dict[str, Any]:
    try:
        data = json.loads(job.status.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    return data if isinstance(data, dict) else {}


def update_status(job: JobDir, **fields: Any) -> dict[str, Any]:
    status = {"job_id": job.job_id, "state": "shipped", **read_status(job), **fields, "updated_ms": now_ms()}
    write_json(job.status, status)
    return status


def job_pid(job: JobDir) -> int | None:
    try:
        return int(job.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_running(job: JobDir) -> bool:
    """True when the recorded pid is alive and is this job's trainer: not a zombie (a killed
    trainer nobody reaped) and not a reused pid. A process between fork and exec can show an
    empty command line for a moment; that counts as alive."""
    pid = job_pid(job)
    if pid is None:
        return False
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): fall back to "does the pid exist"
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    if state in ("Z", "X"):
        return False
    return not cmdline or (b"gpu_jobs" in cmdline and str(job.root).encode() in cmdline)


def effective_status(job: JobDir) -> dict[str, Any]:
    """The status file, corrected by reality: 'running' with no live trainer is 'crashed'.
    `checkpoint` says whether a run of this job can resume (an epoch finished) or starts over.
    The crash message states what is left, not what to do: the caller knows which command
    starts the job again (`client.ended_message`)."""
    status = {"job_id": job.job_id, "state": "shipped", **read_status(job)}
    if status["state"] in ("running", "starting") and not is_running(job):
        # Read again: a trainer that wrote its final state and exited just now is not a crash.
        status = {"job_id": job.job_id, "state": "shipped", **read_status(job)}
    status["checkpoint"] = job.checkpoint.is_file()
    if status["state"] in ("running", "starting") and not is_running(job):
        status["state"] = "crashed"
        status["message"] = "the trainer is gone without finishing" + (
            " (its last checkpoint is kept)" if status["checkpoint"] else " and before its first epoch ended (no checkpoint)"
        )
    if status["checkpoint"] and "epoch" not in status:
        status["epoch"] = None
    return status


def environment() -> dict[str, Any]:
    """What this box can train with. `ok` is false (with `error` and `fix`) when torch or numpy
    cannot be imported; a box without CUDA is fine (it trains on CPU, slowly) and says so."""
    report: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable, "ok": True}
    for module in ("numpy", "torch"):
        try:
            mod = __import__(module)
            report[module] = str(mod.__version__)
        except ImportError as exc:
            report.update(
                ok=False,
                error=f"{sys.executable} cannot import {module}: {exc}",
                fix="point the profile's `python` at an interpreter that has torch and numpy, "
                "or activate one in `env_setup`",
            )
            return report
    import torch

    report["cuda"] = bool(torch.cuda.is_available())
    if report["cuda"]:
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = props.name
        report["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        report["bf16"] = bool(torch.cuda.is_bf16_supported())
    else:
        report["gpu"] = None
        report["note"] = "no CUDA device: the job trains on CPU"
    return report


@contextlib.contextmanager
def locked(job: JobDir) -> Iterator[None]:
    """Hold the job's lock for the block (waiting for another holder). `start` looks at the state,
    spawns the trainer and records its pid under it: two `start`s at once (two `hotcoin train`
    runs of one job) would otherwise both see "not running", both spawn a trainer, and the pid
    file would name only one of them, the only one `cancel` could stop. `flock`: the kernel
    drops it when the holder dies, so a killed `start` never leaves the job locked."""
    with job.lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def start(job: JobDir) -> tuple[int, dict[str, Any]]:
    """Start the trainer detached, unless it is running or done. Idempotent: a second `start`,
    even one at the same moment, re-reports the running job; after a crash it resumes from
    the checkpoint."""
    if not job.spec.is_file():
        return EXIT_USAGE, {"error": f"{job.root} is not a shipped job (no job.json)"}
    with locked(job):
        status = effective_status(job)
        if status["state"] in ("done", "running", "starting"):
            return 0, {**status, "started": False}
        _spawn_trainer(job)
    # The trainer checks its environment (imports torch) first; wait for that verdict so a
    # box without torch is a clear error here, not a silently failed background job.
    deadline = time.monotonic() + ENV_WAIT_S
    while (status := effective_status(job))["state"] == "starting" and time.monotonic() < deadline:
        time.sleep(0.05)
    env = status.get("environment") or {}
    if env.get("ok") is False:
        return EXIT_ENV, env
    return 0, {**status, "started": True}


def _spawn_trainer(job: JobDir) -> None:
    """The detached trainer, its pid recorded (call with the job's lock held).

    A run after a failed, cancelled or crashed one appends to the same log (`jobs logs` shows
    every attempt): it first writes a line that opens the new attempt, and the status records
    where that line starts (`log_offset`), so that following the job shows this attempt, not
    the old one's traceback replayed as if it just happened. The status's `finished_ms` and
    `message` belong to the previous attempt and are cleared: a running job with a finish time
    reads as over."""
    pythonpath = os.pathsep.join(filter(None, [str(job.code), os.environ.get("PYTHONPATH", "")]))
    job.pid.unlink(missing_ok=True)
    attempt = int(read_status(job).get("attempt") or 1) + 1 if job.log.is_file() else 1
    started = now_ms()
    with job.log.open("ab") as log:
        offset = log.tell()
        if offset:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started / 1000))
            log.write(f"--- attempt {attempt} started {stamp} ---\n".encode())
    # Written before the trainer exists, so none of its own status writes can be overwritten.
    update_status(
        job,
        state="starting",
        pid=None,
        message="",
        environment=None,
        started_ms=started,
        finished_ms=None,
        attempt=attempt,
        log_offset=offset,
    )
    with job.log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpu_jobs", "run", str(job.root)],
            cwd=job.code,
            # No bytecode: a .pyc cut short by a full disk would break every later import.
            env={**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid: no SIGHUP when the SSH session that started it ends
            close_fds=True,
        )
    tmp = job.pid.with_name(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, job.pid)


def tail(job: JobDir, offset: int, follow: bool, poll_s: float = 0.2) -> int:
    """Copy the log from byte `offset` to stdout; with `follow`, until the job is over (or was
    never started) and the log is drained. Exit 0 means the caller has the whole log."""
    out = sys.stdout.buffer
    pos = offset
    while True:
        state = effective_status(job)["state"]
        over = state in TERMINAL or state == "shipped" or not follow  # "shipped": never started
        if job.log.is_file():
            with job.log.open("rb") as fh:
                fh.seek(pos)
                while chunk := fh.read(1 << 16):
                    out.write(chunk)
                    pos += len(chunk)
            out.flush()
        if over:
            return 0
        time.sleep(poll_s)


def cancel(job: JobDir) -> dict[str, Any]:
    """SIGTERM the trainer's process group; it records `cancelled` and exits at the next batch
    boundary it reaches (the checkpoint of the last finished epoch stays). Under the job's lock,
    so a trainer that a `start` is spawning right now is seen, not missed."""
    with locked(job):
        status = effective_status(job)
        if status["state"] not in TERMINAL and is_running(job):
            pid = job_pid(job)
            assert pid is not None
            os.killpg(pid, signal.SIGTERM)
            return {**effective_status(job), "cancel_sent": True}
    return {**status, "cancel_sent": False}


def list_jobs(jobs_root: Path) -> list[dict[str, Any]]:
    """Every unpacked job's status, with `shipped_ms` (when it was unpacked here) and its task."""
    if not jobs_root.is_dir():
        return []
    out = []
    for folder in sorted(jobs_root.iterdir()):
        marker = folder / ".unpacked"
        if marker.is_file():
            job = JobDir(folder)
            status = effective_status(job)
            with contextlib.suppress(OSError):
                status.setdefault("shipped_ms", int(marker.stat().st_mtime * 1000))
            try:
                spec = json.loads(job.spec.read_text())
                status.setdefault("task", spec.get("task"))
            except (OSError, json.JSONDecodeError):
                pass
            out.append(status)
    return out
