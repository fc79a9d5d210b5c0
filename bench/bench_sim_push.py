"""How fast the sim exchange can push `!ticker@arr`, at 300 and 2,000 symbols.

    .venv/bin/python -m bench.bench_sim_push

For each size, `hotcoin sim-exchange` runs in its own process (as in use) on the generated
market at speed 100 with a 10 ms push interval, i.e. asked to push far faster than it can,
so the figure is its sustained ceiling. A raw aiohttp WebSocket client in this process
subscribes to `!ticker@arr` and only counts: messages/s, tickers/s and bytes per message
delivered, plus how many messages the server dropped for this client (its queue full).

A second table times the server's own work per push in-process, without sockets: the
ticker snapshot (`tickers()` plus one `book()` per symbol for the displayed sizes) and the
render (dicts + orjson) of one `!ticker@arr` payload.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson

from engine.config.sections.sim import SimSection
from engine.sim.market import SimMarket
from engine.sim.server.faults import FaultController
from engine.sim.server.streams import MarketStreams, StreamKind, StreamName
from engine.sim.server.venue import SimClock, SimVenue

REPO = Path(__file__).resolve().parent.parent
SIZES = (300, 2000)
MEASURE_S = 6.0
WARMUP_S = 1.0
T0 = 1_618_531_200_000


async def count_pushes(base_url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(base_url.replace("http://", "ws://") + "/ws/0", max_msg_size=0) as ws:
            await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": ["!ticker@arr"], "id": 1}).decode())
            messages = tickers = size = 0
            start = time.perf_counter()
            counting_from = start + WARMUP_S
            while (now := time.perf_counter()) < counting_from + MEASURE_S:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT or not msg.data.startswith("["):
                    continue
                if now >= counting_from:
                    messages += 1
                    tickers += msg.data.count('"e":"24hrTicker"')
                    size += len(msg.data)
        async with session.get(base_url + "/_sim/stats") as resp:
            stats = await resp.json()
    return {
        "msg_s": messages / MEASURE_S,
        "tickers_s": tickers / MEASURE_S,
        "bytes_msg": size / messages if messages else 0.0,
        "dropped": float(stats["stream_messages_dropped"]),
    }


def serve_and_count(symbols: int) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotcoin_tui.cli", "sim-exchange", "--symbols", str(symbols), "--speed", "100",
         "--push-interval", "0.01"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"sim-exchange did not start (first line {base_url!r})")
        return asyncio.run(count_pushes(base_url))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def server_work(symbols: int, repeat: int = 10) -> tuple[float, float, int]:
    """(snapshot ms, render ms, payload bytes) per push, best of 3 rounds."""
    market = SimMarket(SimSection(symbols=symbols), T0)
    venue = SimVenue(market, SimClock(market.now_ms, 100), start_balance=Decimal(1))
    streams = MarketStreams(FaultController(), venue.resolve_lower)
    stream = StreamName("!ticker@arr", StreamKind.TICKER_ARR)
    snap = render = float("inf")
    payload = b""
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            market.advance_to(market.now_ms + 1000)
            rows = venue.ticker_rows()
        t1 = time.perf_counter()
        for _ in range(repeat):
            (payload,) = streams._render(stream, rows, venue.stream_klines)
        t2 = time.perf_counter()
        snap = min(snap, (t1 - t0) / repeat)
        render = min(render, (t2 - t1) / repeat)
    return snap * 1000, render * 1000, len(payload)


def main() -> None:
    print("sim-exchange !ticker@arr push ceiling (server process + raw counting client, same box)")
    print(f"{'symbols':>8} {'msg/s':>8} {'tickers/s':>10} {'KB/msg':>8} {'dropped':>8}")
    for n in SIZES:
        r = serve_and_count(n)
        print(f"{n:>8} {r['msg_s']:>8.1f} {r['tickers_s']:>10.0f} {r['bytes_msg'] / 1024:>8.1f} {r['dropped']:>8.0f}")
    print()
    print("server work per push, in-process (advance 1 s + snapshot, then render one payload)")
    print(f"{'symbols':>8} {'snapshot ms':>12} {'render ms':>10} {'bytes':>9}")
    for n in SIZES:
        snap, render, size = server_work(n)
        print(f"{n:>8} {snap:>12.2f} {render:>10.2f} {size:>9}")


if __name__ == "__main__":
    main()
