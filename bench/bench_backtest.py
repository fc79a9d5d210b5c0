"""Backtest speed on the real 1m block (../shared/data/binance: 34 pairs x 40,320 minutes).

Whole-process wall time of `hotcoin backtest --json` (interpreter start, imports, loading the
Parquet files, the replay, the report), run as a subprocess, with journaling off and on
(`--journal` to a fresh SQLite file). The config is the minute-cadence one the backtests use
(discovery windows of one slot per minute, 64-symbol arrays), written to a temporary TOML.

By default a `--days 7` slice is replayed so a run stays near a minute on a shared 2-core box;
`--days 28` replays the whole block. Candles/s counts the 1m candles inside the replayed
window (warm-up excluded). `--profile` adds an in-process cProfile of the same window,
grouped by stage, to show where the time goes.

    .venv/bin/python -m bench.bench_backtest              # 7 days, journal off and on
    .venv/bin/python -m bench.bench_backtest --days 28    # the whole block (~2 x 100 s here)
    .venv/bin/python -m bench.bench_backtest --days 2 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance"
START_MS = 1_617_321_600_000 + 65 * 60_000  # 2021-04-02 00:00 UTC + the warm-up
MIN = 60_000
CONFIG = """
[discovery.windows]
slot_ms = 60000
history_slots = 128
capacity = 64
volume_bucket_ms = 60000
[discovery.anomaly]
baseline_refresh_batches = 1
[discovery.pool]
bar_ms = 60000
"""
STAGES = {
    "discovery": "engine/discovery/pipeline.py:",
    "signals (features, rules)": "engine/signals/stage.py:",
    "candles to the core": "engine/backtest/feed.py:",
    "replay market (advance, tickers)": "engine/runtime/feed.py:",
    "loading Parquet": "engine/sim/parquet_source.py:",
}


def run_cli(config: Path, end_ms: int, journal: Path | None) -> tuple[float, dict[str, object]]:
    cmd = [
        sys.executable, "-m", "hotcoin_tui.cli", "backtest", "--data", str(DATA), "--config", str(config),
        "--from", str(START_MS), "--to", str(end_ms), "--json",
    ]  # fmt: skip
    if journal is not None:
        cmd += ["--journal", str(journal)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"hotcoin backtest failed ({proc.returncode}):\n{proc.stderr}")
    doc: dict[str, object] = json.loads(proc.stdout)
    return wall, doc


def profile(config_path: Path, end_ms: int) -> None:
    from engine.backtest.runner import BacktestRunner
    from engine.config import load_config

    cfg = load_config(config_path).config
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(BacktestRunner(cfg, DATA).run(START_MS, end_ms))
    prof.disable()
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in raw.values())
    print(f"\nprofile (cumulative, profiler overhead included; total {total:.1f} s):")
    for stage, where in STAGES.items():
        cum = max((v[3] for (f, line, name), v in raw.items() if where in f"{f}:" and name in (
            "on_batch", "evaluate_entries", "candles", "next_batch", "__init__")), default=0.0)  # fmt: skip
        print(f"  {stage:34s} {cum:7.2f} s  {100 * cum / total:5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=7.0, help="days replayed from 2021-04-02 01:05 (28 = the whole block)")
    ap.add_argument("--profile", action="store_true", help="also profile the replay in-process, by stage")
    args = ap.parse_args()
    if not (DATA / "BTC_USDT-1m.parquet").is_file():
        raise SystemExit(f"{DATA} is missing: the shared candles are needed")
    end_ms = START_MS + int(args.days * 1440) * MIN
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(CONFIG)
        print(f"hotcoin backtest on {DATA} ({args.days:g} days from 2021-04-02 01:05 UTC), whole process:")
        for label, journal in (("journal off", None), ("journal on ", Path(tmp) / "journal.sqlite")):
            wall, doc = run_cli(config, end_ms, journal)
            candles = int(doc["candles"])  # type: ignore[call-overload]
            inner = float(doc["wall_s"])  # type: ignore[arg-type]
            metrics = doc["metrics"]
            assert isinstance(metrics, dict)
            print(
                f"  {label}: {wall:6.1f} s wall ({inner:6.1f} s in the runner), {candles:,} candles, "
                f"{candles / wall:,.0f} candles/s, {doc['cycles']:,} cycles, {doc['events']:,} events, "
                f"{metrics['trades']} trades, return {metrics['total_return']:+.2%}"
            )
        if args.profile:
            profile(config, end_ms)


if __name__ == "__main__":
    main()
