"""Training throughput of a GPU job's task on this machine: samples/s and peak memory.

    .venv/bin/python -m bench.bench_gpu_job [--task lstm_hot] [--device auto|cpu|cuda]
        [--symbols 4] [--days 3] [--epochs 3] [--batch-size 512] [--data DIR]

Data: real 1m candles from ../shared/data/binance (or `--data`) through `features_hot` (the
first `--symbols` pairs, the first `--days` days), or synthetic candles when that folder is
absent.
The task is built exactly as the remote trainer builds it (same class, same runtime choice:
CUDA with bf16 autocast when available), minus the process and SSH around it. The first epoch
includes warm-up (allocations, kernel selection) and is reported apart.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gpu_job")
    parser.add_argument("--task", default="lstm_hot", choices=["lstm_hot", "tft_heat", "ppo_sizing"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of real *-1m.parquet candles")
    args = parser.parse_args(argv)

    import torch

    from gpu_jobs.datasets import Dataset, load_candles, write_dataset
    from gpu_jobs.features import hot_feature_set
    from gpu_jobs.models.base import Runtime
    from gpu_jobs.models.registry import build_task
    from gpu_jobs.spec import DatasetInfo, JobSpec

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu or on the GPU box", file=sys.stderr)
        return 2
    rt = Runtime.pick() if args.device == "auto" else Runtime(torch.device(args.device), args.device == "cuda")

    with tempfile.TemporaryDirectory() as tmp:
        if any(args.data.glob("*-1m.parquet")):
            names = sorted(p.name.split("-")[0].replace("_", "/") for p in args.data.glob("*-1m.parquet"))
            start = 1_617_321_600_000  # 2021-04-02 00:00 UTC, the 1m block's first bar
            candles = load_candles(args.data, "1m", names[: args.symbols], start_ms=start, end_ms=start + args.days * 86_400_000)
            source = f"real 1m candles, {len(candles.symbols)} pairs x {len(candles.timestamps)} bars"
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.gpu_jobs.kit import synthetic_candles

            candles = synthetic_candles(n_bars=args.days * 1440, n_symbols=args.symbols)
            source = f"synthetic candles, {args.symbols} pairs x {args.days * 1440} bars"
        t0 = time.perf_counter()
        features = hot_feature_set()
        meta = write_dataset(candles, features, Path(tmp), name="bench")
        build_s = time.perf_counter() - t0
        ds = Dataset.load(Path(tmp))
        hyper: dict[str, float | int] = {"epochs": args.epochs}
        if args.task != "ppo_sizing":
            hyper["batch_size"] = args.batch_size
        spec = JobSpec(task=args.task, interval="1m", dataset=DatasetInfo.from_json(meta), hyper=hyper, seed=0)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if rt.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(0)  # same weights every run, as the trainer seeds them
        task = build_task(spec, ds, rt)
        rates = []
        for epoch in range(args.epochs):
            gen = torch.Generator().manual_seed(epoch)
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            stats = task.train_epoch(epoch, gen)
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            rates.append(stats.samples / (time.perf_counter() - t1))
            print(f"epoch {epoch + 1}: {stats.samples} samples, {rates[-1]:,.0f} samples/s, loss {stats.loss:.4f}")
        t2 = time.perf_counter()
        metrics = task.evaluate()
        eval_s = time.perf_counter() - t2

    print(f"task            {args.task}  ({source})")
    print(f"device          {rt.describe()}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(f"dataset build   {build_s:.2f} s (features_hot, {len(features.names)} features)")
    steady = rates[1:] or rates
    print(f"train samples/s {np.mean(steady):,.0f} (epochs 2.. mean; first epoch {rates[0]:,.0f})")
    if rt.device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")
    print(f"peak RSS        {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (before task: {rss0 / 1024:,.0f} MiB)")
    print(f"evaluation      {eval_s:.2f} s, fold lifts {metrics['oos']['fold_lifts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
