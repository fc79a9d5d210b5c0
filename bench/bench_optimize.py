"""`hotcoin optimize` on the real 1m block, with and without the trials sharing their window.

One process, one fold, the same seed, run twice in one process: once as shipped (later trials
replay the first trial's discovery and market and reuse its features: `engine.backtest.reuse`), once with
every trial recomputing everything (the recording is never marked complete). The two must pick
the same parameters with the same returns; the ratio of their wall times is the figure. Both
runs start warm (the decoded files are already cached by a first, untimed index scan).

    .venv/bin/python -m bench.bench_optimize                 # 6 trials over 2021-04-10 .. 04-13
    .venv/bin/python -m bench.bench_optimize --days 7 --trials 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.backtest.history import index_history
from engine.backtest.optimize import OptimizePlan, OptimizeResult, walk_forward
from engine.backtest.reuse import WindowReuse
from engine.config import HotcoinConfig

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance"
START_MS = 1_618_012_800_000  # 2021-04-10 00:00 UTC
DAY_MS = 86_400_000


def timed(plan: OptimizePlan) -> tuple[float, OptimizeResult]:
    t0 = time.perf_counter()
    result = walk_forward(HotcoinConfig(), plan)
    return time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=3.0, help="length of the window from 2021-04-10")
    ap.add_argument("--trials", type=int, default=6)
    args = ap.parse_args()
    if not (DATA / "BTC_USDT-1m.parquet").is_file():
        raise SystemExit(f"{DATA} is missing: the shared candles are needed")
    index_history(DATA)  # warm: both runs find the files decoded
    plan = OptimizePlan(DATA, START_MS, START_MS + int(args.days * DAY_MS), trials=args.trials, jobs=1, folds=1, oos_fraction=0.3)
    shared_s, shared = timed(plan)
    finished = WindowReuse.finished
    WindowReuse.finished = lambda self, key: None  # type: ignore[method-assign]  # never complete: every trial recomputes
    try:
        alone_s, alone = timed(plan)
    finally:
        WindowReuse.finished = finished  # type: ignore[method-assign]
    same = shared.folds == alone.folds
    print(f"optimize, {args.trials} trials, 1 process, {args.days:g} days from 2021-04-10 (in sample {1 - plan.oos_fraction:.0%}):")
    print(f"  trials sharing the window: {shared_s:6.1f} s")
    print(f"  every trial from scratch:  {alone_s:6.1f} s   ({alone_s / shared_s:.2f}x); same folds: {same}")
    if not same:
        raise SystemExit("the shared run chose differently: reuse changed a trial")


if __name__ == "__main__":
    main()
