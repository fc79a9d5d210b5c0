"""The trainer process on the GPU box: load, resume from the checkpoint, train epoch by epoch
(checkpointing each), evaluate out of sample, export. Its stdout is the job's `train.log`.

Log lines are for people and for the trading box's progress bar: `epoch N/M loss=... ...`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from gpu_jobs.remote import (
    EXIT_ENV,
    JobDir,
    environment,
    now_ms,
    read_status,
    update_status,
    write_json,
)


class Cancelled(BaseException):
    """SIGTERM from `cancel`: stop at once, keep the last checkpoint. A `BaseException`, as
    KeyboardInterrupt is: a cancel that lands inside code guarded by `except Exception` (torch's
    import and CUDA probing have such guards, and a cancel right after start lands in the imports)
    was swallowed, and the trainer went on to train all its epochs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Cancelled


def _save_atomic(obj: Any, path: Path) -> None:
    """Write to a temporary file renamed into place. A save that fails (a full disk) removes
    what it wrote: a half-written checkpoint would keep the space that recording the failure
    needs."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def run(job: JobDir) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        env = environment()  # seconds of imports: a cancel often lands here
        if not env["ok"]:
            print(f"cannot train: {env['error']}; {env['fix']}", flush=True)
            update_status(job, state="failed", message=env["error"], environment=env, finished_ms=now_ms())
            return EXIT_ENV
        update_status(job, state="running", environment=env, pid=os.getpid())
        return _run(job, env)
    except Cancelled:
        message = _cancelled_message(job)
        print(message, flush=True)
        update_status(job, state="cancelled", message=message, finished_ms=now_ms())
        return 1
    except Exception as exc:
        with contextlib.suppress(OSError):  # the log is on the same disk, which may be full
            traceback.print_exc()
        _record_failure(job, f"{type(exc).__name__}: {exc}")
        return 1


def _record_failure(job: JobDir, message: str) -> None:
    """Mark the job failed, if the disk lets us. On a full disk this write can fail like the one
    that stopped training; raising here would leave the status `running`, and the job would read
    as crashed (run again to resume) instead of failed for lack of space. The trading box then
    tells a full disk by measuring it."""
    try:
        update_status(job, state="failed", message=message, finished_ms=now_ms())
    except OSError as exc:
        with contextlib.suppress(OSError):
            print(f"cannot record the failure in {job.status.name}: {exc}", flush=True)


def _cancelled_message(job: JobDir) -> str:
    """What a cancel leaves: the checkpoint of the last finished epoch, or (cancelled before one
    finished) nothing to resume from."""
    if not job.checkpoint.is_file():
        return "cancelled before the first epoch finished (no checkpoint)"
    epoch = read_status(job).get("epoch")
    if isinstance(epoch, int) and epoch > 0:
        return f"cancelled after epoch {epoch} (its checkpoint is kept)"
    return "cancelled (the last finished epoch's checkpoint is kept)"


def _run(job: JobDir, env: dict[str, Any]) -> int:
    import numpy as np
    import torch

    from gpu_jobs.datasets import Dataset
    from gpu_jobs.models.base import Runtime
    from gpu_jobs.models.registry import build_task
    from gpu_jobs.spec import JobSpec

    spec = JobSpec.from_json(json.loads(job.spec.read_text()))
    epochs = int(spec.params["epochs"])
    rt = Runtime.pick()
    print(f"job {job.job_id} task={spec.task} interval={spec.interval} seed={spec.seed} device={rt.describe()}", flush=True)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed % 2**32)
    ds = Dataset.load(job.data)
    task = build_task(spec, ds, rt)
    first = 0
    # Each finished epoch's line; in the checkpoint, so a resumed run's metrics still cover
    # the epochs trained before the crash.
    history: list[dict[str, float]] = []
    if job.checkpoint.is_file():
        ckpt = torch.load(job.checkpoint, map_location=rt.device, weights_only=True)
        task.load_state_dict(ckpt["task"])
        first = int(ckpt["epoch"]) + 1
        history = list(ckpt["history"])
        print(f"resumed from checkpoint after epoch {first}/{epochs}", flush=True)
    update_status(job, state="running", epochs=epochs, epoch=first, device=rt.describe())
    for epoch in range(first, epochs):
        gen = torch.Generator().manual_seed(spec.seed * 1_000_003 + epoch)
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        stats = task.train_epoch(epoch, gen)
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        dt = max(time.perf_counter() - t0, 1e-9)
        rate = stats.samples / dt
        history.append({"epoch": epoch + 1, "loss": stats.loss, "samples": stats.samples, "samples_per_s": rate})
        _save_atomic({"epoch": epoch, "task": task.state_dict(), "history": history}, job.checkpoint)
        print(f"epoch {epoch + 1}/{epochs} loss={stats.loss:.6f} samples={stats.samples} samples_per_s={rate:.1f}", flush=True)
        update_status(job, epoch=epoch + 1, loss=stats.loss, samples_per_s=rate)
    metrics: dict[str, Any] = task.evaluate()
    metrics.update(
        task=spec.task,
        interval=spec.interval,
        job_id=job.job_id,
        epochs=epochs,
        history=history,
        device=rt.describe(),
        environment=env,
        label_definition=spec.label_definition(),
    )
    if rt.device.type == "cuda":
        metrics["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    job.out.mkdir(exist_ok=True)
    _save_atomic(task.export(), job.out / "model.pt")
    write_json(job.out / "metrics.json", metrics)
    oos = metrics["oos"]
    print(f"out-of-sample lift per fold {oos['fold_lifts']} over {oos['samples']} samples", flush=True)
    print("done: out/model.pt, out/metrics.json", flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # finished: a late cancel must not undo `done`
    update_status(job, state="done", finished_ms=now_ms())
    return 0
