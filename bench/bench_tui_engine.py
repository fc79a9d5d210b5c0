"""Does the console starve the engine? Engine cycle latency with the UI running vs without.

The engine runs as `hotcoin tui` runs it: in-process, on its own thread and event loop
(`engine.runtime.threaded.EngineThread`), on the demo market (300 symbols) at x60. Two runs
of the same length and seed: one with nobody watching, one with the Textual console
attached (headless, 160x48, repainting as snapshots arrive). Compared: the engine's cycle
time (market batch -> decisions made and orders handed to the broker), p50 and p99.

    .venv/bin/python -m bench.bench_tui_engine [--seconds 20] [--speed 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from engine.config import load_config
from engine.runtime.session import RunOptions
from engine.runtime.threaded import EngineThread


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _watch(client: object, seconds: float, settings: object) -> int:
    from hotcoin_tui.app import HotcoinApp

    app = HotcoinApp(client, settings)  # type: ignore[arg-type]
    async with app.run_test(size=(160, 48)):
        await asyncio.sleep(seconds)
        return app.snapshots_applied


def run(seconds: float, speed: float, with_ui: bool, tmp: Path) -> dict[str, float]:
    config = load_config(
        env={},
        cli={"journal.path": str(tmp / f"j-{with_ui}.sqlite"), "sim.seed": 11, "ops.http_enabled": False},
    ).config
    engine = EngineThread(config, RunOptions(speed=speed, attach_socket=False))
    applied = 0
    with engine as client:
        if with_ui:
            applied = asyncio.run(_watch(client, seconds, config.tui))
        else:
            time.sleep(seconds)
    cycles = list(engine.session.engine.stats.cycle_ms)[20:]  # skip the first cycles (warm caches)
    return {
        "cycles": len(cycles),
        "p50": statistics.median(cycles),
        "p99": _pct(cycles, 0.99),
        "repaints": applied,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = run(args.seconds, args.speed, False, Path(tmp))
        ui = run(args.seconds, args.speed, True, Path(tmp))
    for name, r in (("engine alone", base), ("engine + console", ui)):
        print(f"{name:18} cycles {r['cycles']:5.0f}  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  repaints {r['repaints']:.0f}")
    print(f"p99 ratio (with UI / without): {ui['p99'] / base['p99']:.2f}   p50 ratio: {ui['p50'] / base['p50']:.2f}")


if __name__ == "__main__":
    main()
