"""Does the console starve the engine? Engine cycle latency with the console running vs without.

Two setups, each measured alone and with the Textual console rendering (headless, 160x48,
repainting as snapshots arrive) for the same time on the same seeded demo market (300 symbols,
x60):

- **child** (what `hotcoin tui` does): the engine in its own process (`hotcoin run`), started
  through `hotcoin_tui.child_engine` with the console's `[tui]` settings (its niceness, its
  snapshot pace). "Alone" detaches once the engine is up and re-attaches at the end only to
  read the result, so nothing is attached while it is measured (that is `hotcoin run` alone);
  "with console" keeps the console attached. Cycle time is read from the engine's own status
  (`cycle_p50_ms` / `cycle_p99_ms`, over its last 1,000 cycles).
- **thread** (`hotcoin tui --in-process`): the engine on a thread of the console's process,
  sharing its interpreter lock.

Every arm runs in a fresh process (nothing carried over: heap, imports, niceness), and the
arms alternate alone / with console, the order flipped each round, so a machine whose load
drifts does not favour one side. The summary is the median over rounds. On a small virtual machine the p99 of a few hundred
cycles swings by tens of per cent run to run, so the child setup also reports CPU time (Linux
/proc): the engine's and the console's, per second of the window, which is far steadier and
shows what the console costs the machine.
`--nice N` overrides `tui.nice` (0: the console keeps its priority) and `--unpaced` has the
console take every snapshot the engine publishes, to measure what each of the two brings.

Cycle time = market batch -> decisions made and orders handed to the broker.

    .venv/bin/python -m bench.bench_tui_engine [--rounds 3] [--seconds 30] [--speed 60] [--setups child,thread]
        [--nice N] [--unpaced]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.config import load_config
from engine.runtime.client import Command, EngineClient
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.session import RunOptions
from engine.runtime.socket_server import default_socket_path
from engine.runtime.threaded import EngineThread


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _watch(client: EngineClient, seconds: float, settings: Any) -> int:
    from hotcoin_tui.app import HotcoinApp

    app = HotcoinApp(client, settings)
    async with app.run_test(size=(160, 48)):
        await asyncio.sleep(seconds)
        return app.snapshots_applied


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _only_child() -> int:
    """The pid of this process's one child (the engine `child_engine` started)."""
    me = os.getpid()
    (pid,) = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    return int(pid)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _config(data_dir: Path) -> Any:
    return load_config(env={}, cli={"paths.data_dir": str(data_dir), "sim.seed": 11, "ops.http_enabled": False}).config


def thread_run(seconds: float, speed: float, with_ui: bool, data_dir: Path) -> dict[str, float]:
    config = _config(data_dir)
    engine = EngineThread(config, RunOptions(speed=speed, attach_socket=False))
    repaints = 0
    with engine as client:
        if with_ui:
            repaints = asyncio.run(_watch(client, seconds, config.tui))
        else:
            time.sleep(seconds)
    cycles = list(engine.session.engine.stats.cycle_ms)[20:]  # skip the first cycles (cold caches)
    return {"p50": statistics.median(cycles), "p99": _pct(cycles, 0.99), "repaints": repaints, "cycles": len(cycles)}


async def child_run(
    seconds: float, speed: float, with_ui: bool, data_dir: Path, nice: int | None, paced: bool
) -> dict[str, float]:
    from hotcoin_tui.child_engine import child_engine, run_args

    config = _config(data_dir)
    settings = config.tui
    nice = settings.nice if nice is None else nice
    args = run_args(
        config=None, demo=True, exchange=None, live=False, yes_really=False, speed=speed,
        journal=None, endpoint=None, sim_seed=11, symbols=None, no_http=True,
    )  # fmt: skip
    os.environ["HOTCOIN_PATHS__DATA_DIR"] = str(data_dir)  # the child's data dir (its socket)
    started = time.monotonic()
    max_hz = settings.refresh_hz if paced else None
    async with child_engine(args, data_dir, data_dir / "engine.log", nice=nice, max_hz=max_hz) as child:
        client = child.client
        engine_pid = _only_child()
        cpu0, own0, t0 = _cpu_s(engine_pid), _own_cpu_s(), time.monotonic()
        if with_ui:
            repaints = await _watch(client, seconds, settings)
        else:
            await client.close()  # detached: the engine runs with no reader at all
            await asyncio.sleep(seconds)
            repaints = 0
        window = time.monotonic() - t0
        engine_cpu, console_cpu = (_cpu_s(engine_pid) - cpu0) / window, (_own_cpu_s() - own0) / window
        async with RemoteEngineClient(default_socket_path(data_dir)) as reader:
            snap = reader.latest()
            assert snap is not None and time.monotonic() - started >= seconds
            await reader.send(Command.SHUTDOWN, "bench")
    status = snap.status
    # cycles: the engine publishes once a cycle, so its snapshot seq counts them (give or take
    # a command); the status percentiles cover the last 1,000
    return {
        "p50": status.cycle_p50_ms, "p99": status.cycle_p99_ms, "repaints": repaints, "cycles": snap.seq,
        "engine_cpu": engine_cpu, "console_cpu": console_cpu,
    }  # fmt: skip


def one(args: argparse.Namespace) -> dict[str, float]:
    """One arm, in this (fresh) process."""
    with tempfile.TemporaryDirectory(prefix="hc-tui-bench-") as tmp:
        if args.one == "child":
            return asyncio.run(child_run(args.seconds, args.speed, args.ui, Path(tmp), args.nice, not args.unpaced))
        return thread_run(args.seconds, args.speed, args.ui, Path(tmp))


def _arm(setup: str, with_ui: bool, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.bench_tui_engine", "--one", setup, "--seconds", str(args.seconds), "--speed", str(args.speed)]
    cmd += [*(["--nice", str(args.nice)] if args.nice is not None else []), *(["--unpaced"] if args.unpaced else [])]
    done = subprocess.run([*cmd, *(["--ui"] if with_ui else [])], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setups", default="child,thread")
    parser.add_argument("--nice", type=int, help="child: the console's niceness instead of tui.nice")
    parser.add_argument("--unpaced", action="store_true", help="child: the console takes every snapshot")
    parser.add_argument("--one", choices=("child", "thread"), help=argparse.SUPPRESS)
    parser.add_argument("--ui", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    for setup in args.setups.split(","):
        rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for i in range(args.rounds):
            for with_ui in (False, True) if i % 2 == 0 else (True, False):
                r = _arm(setup, with_ui, args)
                rows[with_ui].append(r)
                label = f"{setup} {'+ console' if with_ui else 'alone'}"
                cpu = f"  cpu engine {r['engine_cpu']:.0%} console {r['console_cpu']:.0%}" if "engine_cpu" in r else ""
                print(
                    f"round {i + 1} {label:16} p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
                    f"cycles {r['cycles']:.0f}  repaints {r['repaints']:.0f}{cpu}  load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        alone, ui = (statistics.median(r["p99"] for r in rows[k]) for k in (False, True))
        p50s = [statistics.median(r["p50"] for r in rows[k]) for k in (False, True)]
        per_round = ", ".join(f"{u['p99'] / a['p99']:.2f}" for a, u in zip(rows[False], rows[True], strict=True))
        print(
            f"{setup:6} median p99 {alone:.2f} -> {ui:.2f} ms: ratio (with console / without) {ui / alone:.2f} "
            f"(rounds: {per_round}); p50 ratio {p50s[1] / p50s[0]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
