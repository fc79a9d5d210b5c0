"""What attach mode costs: a snapshot across the engine's Unix socket, and a notification.

- codec: orjson encode + typed decode of one snapshot (CPU ms), for pools of 300 and 2,000
  candidates (20 positions, 200 events), i.e. what the engine and the TUI each spend per frame;
- wire: publish on the engine's hub -> snapshot decoded by a `RemoteEngineClient` in the same
  process (wall ms, p50/p99 over N snapshots published one at a time);
- command: `RemoteEngineClient.send(PAUSE)` round trip (wall ms);
- notify: `Dispatcher.notify()` cost to the caller (µs per call; delivery is in the background).

    .venv/bin/python -m bench.bench_attach [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import orjson

from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.ops.notify import Dispatcher, DispatchSettings, FakeNotifier, Notification
from engine.runtime.client import Command, CommandResult
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.local_client import LocalEngineClient, SnapshotHub
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.snapshot import EngineSnapshot
from engine.runtime.socket_server import decode_snapshot, encode, serve_engine_socket


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def codec(snap: EngineSnapshot, n: int) -> tuple[float, float, int]:
    enc, dec = [], []
    size = 0
    for _ in range(n):
        t0 = time.process_time()
        line = encode({"type": "snapshot", "snapshot": snap})
        t1 = time.process_time()
        decode_snapshot(orjson.loads(line)["snapshot"])
        t2 = time.process_time()
        enc.append((t1 - t0) * 1000)
        dec.append((t2 - t1) * 1000)
        size = len(line)
    return statistics.median(enc), statistics.median(dec), size


async def wire(snap: EngineSnapshot, n: int) -> tuple[list[float], list[float]]:
    hub = SnapshotHub()

    async def candles(symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return []

    async def fills(symbol: str) -> list[Fill]:
        return []

    async def trace(trace_id: str) -> list[JournalEvent]:
        return []

    async def on_command(command: Command, origin: str) -> CommandResult:
        return CommandResult(True, "ok")

    client = LocalEngineClient(hub, on_command, candles, fills, trace)
    await hub.publish(snap)
    latencies: list[float] = []
    commands: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmp:
        path = Path(tmp) / "engine.sock"
        async with serve_engine_socket(path, client), RemoteEngineClient(path) as remote:
            for i in range(n):
                target = snap.seq + 1 + i
                arrived = asyncio.Event()

                async def watch(target: int = target, arrived: asyncio.Event = arrived) -> None:
                    async for s in remote.updates():
                        if s.seq == target:
                            arrived.set()
                            return

                watcher = asyncio.create_task(watch())
                await asyncio.sleep(0)
                t0 = time.perf_counter()
                await hub.publish(replace(snap, seq=target))
                await arrived.wait()
                latencies.append((time.perf_counter() - t0) * 1000)
                await watcher
            for _ in range(n):
                t0 = time.perf_counter()
                await remote.send(Command.PAUSE, "bench")
                commands.append((time.perf_counter() - t0) * 1000)
    return latencies, commands


async def notify_cost(n: int) -> float:
    logging.getLogger("hotcoin.notify").setLevel(logging.ERROR)  # undelivered at close: expected here
    d = Dispatcher([FakeNotifier()], DispatchSettings(max_per_minute=600, queue_size=n + 1))
    notes = [Notification("t", f"m{i}") for i in range(n)]
    t0 = time.perf_counter()
    for note in notes:
        d.notify(note)
    cost = (time.perf_counter() - t0) / n * 1e6
    await d.aclose(drain_s=0)
    return cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    for pool in (300, 2000):
        snap = FakeEngineClient(candidates=pool, positions=20).step(3)
        enc, dec, size = codec(snap, 50)
        lat, cmd = asyncio.run(wire(snap, args.n))
        print(
            f"pool {pool:5d}: {size / 1024:7.1f} KiB/snapshot  encode {enc:5.2f} ms  decode {dec:5.2f} ms (CPU, median)  "
            f"publish->remote p50 {statistics.median(lat):5.2f} ms p99 {pct(lat, 0.99):5.2f} ms  "
            f"command round trip p50 {statistics.median(cmd):4.2f} ms p99 {pct(cmd, 0.99):4.2f} ms"
        )
    print(f"Dispatcher.notify(): {asyncio.run(notify_cost(20_000)):.2f} µs per call (caller side)")


if __name__ == "__main__":
    main()
