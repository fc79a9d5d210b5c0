"""Does the console starve the engine? Engine cycle latency with the console running vs without.

Two setups, each measured alone and with the Textual console rendering (headless, 160x48,
repainting as snapshots arrive) for the same time on the same seeded demo market (300 symbols,
x60):

- **child** (what `hotcoin tui` does): the engine in its own process (`hotcoin run`), the
  console attached through the engine socket. Cycle time is read from the engine's own status
  (`cycle_p50_ms` / `cycle_p99_ms`, over its last 1,000 cycles).
- **thread** (`hotcoin tui --in-process`): the engine on a thread of the console's process,
  sharing its interpreter lock.

Cycle time = market batch -> decisions made and orders handed to the broker.

    .venv/bin/python -m bench.bench_tui_engine [--seconds 20] [--speed 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.config import load_config
from engine.runtime.client import Command, EngineClient
from engine.runtime.session import RunOptions
from engine.runtime.threaded import EngineThread


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _watch(client: EngineClient, seconds: float, settings: Any, with_ui: bool) -> int:
    if not with_ui:
        await asyncio.sleep(seconds)
        return 0
    from hotcoin_tui.app import HotcoinApp

    app = HotcoinApp(client, settings)
    async with app.run_test(size=(160, 48)):
        await asyncio.sleep(seconds)
        return app.snapshots_applied


def _config(tmp: Path, tag: str) -> Any:
    return load_config(
        env={}, cli={"paths.data_dir": str(tmp / tag), "sim.seed": 11, "ops.http_enabled": False}
    ).config


def thread_run(seconds: float, speed: float, with_ui: bool, tmp: Path) -> dict[str, float]:
    config = _config(tmp, f"thread-{with_ui}")
    engine = EngineThread(config, RunOptions(speed=speed, attach_socket=False))
    with engine as client:
        repaints = asyncio.run(_watch(client, seconds, config.tui, with_ui))
    cycles = list(engine.session.engine.stats.cycle_ms)[20:]  # skip the first cycles (cold caches)
    return {"p50": statistics.median(cycles), "p99": _pct(cycles, 0.99), "repaints": repaints}


async def child_run(seconds: float, speed: float, with_ui: bool, tmp: Path) -> dict[str, float]:
    from hotcoin_tui.child_engine import child_engine, run_args

    config = _config(tmp, f"child-{with_ui}")
    args = run_args(
        config=None, demo=True, exchange=None, live=False, yes_really=False, speed=speed,
        journal=None, endpoint=None, sim_seed=11, symbols=None, no_http=True,
    )  # fmt: skip
    env_dir = config.paths.data_dir
    os.environ["HOTCOIN_PATHS__DATA_DIR"] = str(env_dir)  # the child's data dir (its socket)
    try:
        async with child_engine(args, env_dir, env_dir / "engine.log") as client:
            started = time.monotonic()
            repaints = await _watch(client, seconds, config.tui, with_ui)
            snap = client.latest()
            assert snap is not None and time.monotonic() - started >= seconds
            status = snap.status
            await client.send(Command.SHUTDOWN, "bench")
    finally:
        os.environ.pop("HOTCOIN_PATHS__DATA_DIR", None)
    return {"p50": status.cycle_p50_ms, "p99": status.cycle_p99_ms, "repaints": repaints}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "child, alone": asyncio.run(child_run(args.seconds, args.speed, False, Path(tmp))),
            "child + console": asyncio.run(child_run(args.seconds, args.speed, True, Path(tmp))),
            "thread, alone": thread_run(args.seconds, args.speed, False, Path(tmp)),
            "thread + console": thread_run(args.seconds, args.speed, True, Path(tmp)),
        }
    for name, r in rows.items():
        print(f"{name:18} p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  repaints {r['repaints']:.0f}")
    for setup in ("child", "thread"):
        alone, ui = rows[f"{setup}, alone"], rows[f"{setup} + console"]
        print(f"{setup:6} p99 ratio (with console / without): {ui['p99'] / alone['p99']:.2f}   p50 ratio: {ui['p50'] / alone['p50']:.2f}")


if __name__ == "__main__":
    main()
