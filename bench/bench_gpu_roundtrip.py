"""A GPU box's whole job round trip, run on the box itself: pack -> ship -> train -> fetch,
through the `JobClient` that `hotcoin train --gpu` drives, over the local transport, with each
stage timed.

    python3 -m bench.bench_gpu_roundtrip [--data DIR] [--tasks lstm_hot,tft_heat,ppo_sizing]
        [--symbols 8] [--days 28] [--epochs N] [--workdir DIR]

Why on the box: `hotcoin train` reaches its box over SSH, which a box lent without an SSH
route cannot take; everything past the SSH hop (the job's archive, its checksum, unpacking,
`python -m gpu_jobs start`, the log followed to the end, the fetch) is the same code here. It
needs only what a GPU box has (python, numpy, pandas, pyarrow, torch), not the trading box's
libraries. The jobs stay in `WORKDIR/jobs/<id>`: copied to the trading box, they are fetched
and registered (contract and promotion decision) by `hotcoin jobs fetch ID --gpu PROFILE`,
with a `[gpu.PROFILE]` of `transport = "local"` whose `workdir` holds that copy.

Data: the real 1m candles in ../shared/data/binance (the first `--symbols` pairs, the first
`--days` days), or `--data`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from gpu_jobs.client import JobClient, JobEvent
from gpu_jobs.datasets import load_candles, write_dataset
from gpu_jobs.features import hot_feature_set
from gpu_jobs.pack import PackedJob, pack_job
from gpu_jobs.spec import TASKS, DatasetInfo, JobSpec
from gpu_jobs.transport.local import LocalTransport

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance"
FIRST_BAR_MS = 1_617_321_600_000  # 2021-04-02 00:00 UTC, the shared 1m block's first bar


def _pack(args: argparse.Namespace, out: Path) -> tuple[list[PackedJob], str, float]:
    """One packed job per task, all on one dataset; the data's description and the seconds taken."""
    names = sorted(p.name.split("-")[0].replace("_", "/") for p in args.data.glob("*-1m.parquet"))[: args.symbols]
    if not names:
        raise SystemExit(f"no *-1m.parquet candles in {args.data}; pass --data DIR")
    t0 = time.perf_counter()
    candles = load_candles(args.data, "1m", names, start_ms=FIRST_BAR_MS, end_ms=FIRST_BAR_MS + args.days * 86_400_000)
    with tempfile.TemporaryDirectory() as staging:
        meta = write_dataset(candles, hot_feature_set(), Path(staging), name=f"{args.data.name}-1m")
        info = DatasetInfo.from_json(meta)
        jobs = []
        for task in args.tasks:
            hyper: dict[str, float | int] = {} if args.epochs is None else {"epochs": args.epochs}
            jobs.append(pack_job(JobSpec(task=task, interval="1m", dataset=info, hyper=hyper, seed=0), Path(staging), out))
    source = f"{len(candles.symbols)} pairs x {len(candles.timestamps)} 1m bars"
    return jobs, source, time.perf_counter() - t0


def _client(workdir: Path, start: float) -> tuple[dict[str, float], JobClient]:
    """A local-transport client on `workdir` whose events are printed with their time since
    `start`; the times its events came, by `kind:job`."""
    marks: dict[str, float] = {}

    def on_event(ev: JobEvent) -> None:
        t = time.perf_counter() - start
        marks[f"{ev.kind}:{ev.job_id}"] = t
        if ev.kind != "log":
            print(f"{t:8.2f} s  {ev.kind:<12} {ev.job_id}  {ev.message}", flush=True)

    return marks, JobClient(LocalTransport(), workdir=str(workdir), python=sys.executable, on_event=on_event)


async def _round_trips(jobs: list[PackedJob], workdir: Path) -> list[dict[str, object]]:
    fetched = workdir / "fetched"
    rows: list[dict[str, object]] = []
    for packed in jobs:
        start = time.perf_counter()
        marks, client = _client(workdir, start)
        folder = await client.run(packed, fetched)
        total = time.perf_counter() - start
        metrics = json.loads((folder / "metrics.json").read_text())
        history = metrics.get("history") or [{}]
        rates = [h["samples_per_s"] for h in history[1:]] or [history[0].get("samples_per_s", 0.0)]
        rows.append({
            "job": packed.job_id,
            "archive_mib": packed.path.stat().st_size / 2**20,
            "ship_s": marks.get(f"shipped:{packed.job_id}", marks.get(f"ship_skipped:{packed.job_id}", 0.0)),
            "started_s": marks.get(f"started:{packed.job_id}", 0.0),
            "total_s": total,
            "device": metrics.get("device"),
            "epochs": metrics.get("epochs"),
            "samples_per_s": sum(rates) / len(rates),  # epochs 2.. (the first warms up)
            "first_epoch_samples_per_s": history[0].get("samples_per_s"),
            "peak_gpu_memory_mib": metrics.get("peak_gpu_memory_mib"),
            "oos_fold_lifts": (metrics.get("oos") or {}).get("fold_lifts"),
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gpu_roundtrip")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=None, help="default: each task's own")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hotcoin-roundtrip-"))
    try:
        jobs, source, pack_s = _pack(args, workdir / "packs")
        print(f"packed {len(jobs)} job(s) on {source} in {pack_s:.2f} s", flush=True)
        rows = asyncio.run(_round_trips(jobs, workdir))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for row in rows:
        print(json.dumps(row, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
