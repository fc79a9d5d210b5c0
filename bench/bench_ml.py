"""hot_lgbm on the real 1m block: out-of-sample lift over the baseline, and inference cost.

1. Trains exactly what `hotcoin train --task hot_lgbm --data ../shared/data/binance` trains
   (`ml.lgbm.train_and_register`): features_hot on all 34 pairs x 40,320 minutes, the top-10%
   forward-30-minute label, 4 expanding walk-forward folds with a 30-bar purge + 60-bar
   embargo, 60 rounds of 15-leaf trees. To fit a shared 2-core box it trains and judges on
   every 5th bar (`--stride`, ~270k of the 1.34M rows; neighbouring 1m rows are near-copies).
   The baseline is discovery's candle-computable momentum, the rise from the 60-bar low (heat
   itself needs live tickers and social data the candles do not hold), ranked per bar like the
   model. Lift = model precision at the top 10% / baseline precision at the top 10%.
2. Loads the registered model through `ml.runtime.load_scorer` (contract + hash verified) and
   times scoring 500 candidates of one bar: `score_many` (one LightGBM call) and the per-row
   `score` loop that `SignalStage._scores` runs today. Median of repeated runs; target <= 5 ms.

    .venv/bin/python -m bench.bench_ml              # ~40 s here
    .venv/bin/python -m bench.bench_ml --stride 10  # faster, fewer rows
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.config import HotcoinConfig
from engine.config.sections.ml import MlSection
from ml.governance.registry import ModelRegistry
from ml.lgbm import TrainRequest, TrainSettings, train_and_register
from ml.runtime import load_scorer

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance"
CANDIDATES = 500


def _median_ms(fn: object, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--stride", type=int, default=TrainSettings().stride)
    args = ap.parse_args()
    if not (args.data / "BTC_USDT-1m.parquet").is_file():
        raise SystemExit(f"no 1m candles in {args.data}; pass --data")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = HotcoinConfig(ml=MlSection(registry_dir=root / "models"))
        req = TrainRequest(args.data, root / "run", "1m", settings=TrainSettings(stride=args.stride), write_dataset=False)
        t = time.perf_counter()
        out = train_and_register(config, ModelRegistry(root / "models"), req, now_ms=0)
        train_s = time.perf_counter() - t
        print(f"hot_lgbm 1m, real block ({len(out.version.contract.training_window.symbols)} pairs), every {args.stride}th bar")
        print(f"training (dataset + 4 folds + final model): {train_s:.1f} s, final model on {out.report.final_rows} rows")
        print(f"{'fold':>4} {'test from (UTC)':>17} {'rows':>6} {'AUC':>6} {'base AUC':>8} {'prec@10%':>8} {'base':>6} {'rate':>6} {'lift':>6}")
        for f in out.report.folds:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(f.test_start_ms / 1000))
            print(
                f"{f.index + 1:>4} {when:>17} {f.test_rows:>6} {f.auc:>6.3f} {f.baseline_auc:>8.3f} {f.precision:>8.3f} "
                f"{f.baseline_precision:>6.3f} {f.base_rate:>6.3f} {f.lift:>6.3f}"
            )
        lifts = [f.lift for f in out.report.folds]
        print(f"mean out-of-sample lift over the baseline: {np.mean(lifts):.3f} (min {min(lifts):.3f}, max {max(lifts):.3f})")
        print(f"promotion decision with default gates: {out.decision.verdict} ({'; '.join(out.decision.reasons)})")

        load = load_scorer(config)
        if load.scorer is None:
            raise SystemExit(load.status)
        scorer = load.scorer
        rng = np.random.default_rng(0)
        from gpu_jobs.datasets import load_candles
        from ml.dataset import build_dataset

        ds = build_dataset(load_candles(args.data, "1m", end_ms=int(out.version.contract.training_window.start_ms) + 3 * 86_400_000))
        rows = ds.features[100:].reshape(-1, ds.features.shape[-1])
        x = rows[rng.choice(rows.shape[0], CANDIDATES, replace=False)].astype(np.float64)
        batch_ms = _median_ms(lambda: scorer.score_many(x), 200)
        per_row_ms = _median_ms(lambda: [scorer.score(r) for r in x], 5)
        print(f"inference, {CANDIDATES} candidates in one bar ({load.model}, {load.mode}):")
        print(f"  score_many (one call):      {batch_ms:.2f} ms median   target <= 5 ms")
        print(f"  score per row (stage today): {per_row_ms:.1f} ms median")


if __name__ == "__main__":
    main()
