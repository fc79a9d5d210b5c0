"""What the daily report costs on a busy journal.

Writes a journal of N events over two UTC days (95% candidate snapshots, the rest fills,
position updates and state changes, roughly as a running engine journals them), then times
`load_report` for the second day (twice): the previous day's look-back for the starting state plus
the day's own events, read through the `ts_ms` index with a kind filter. Wall seconds; the
file was just written, so it is in the OS page cache both times.

    .venv/bin/python -m bench.bench_report [--events 400000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import date
from pathlib import Path

from engine.config.sections.journal import JournalSection
from engine.journal.writer import Journal
from engine.ops.report import DAY_MS, day_bounds, load_report

DAY = date(2026, 11, 24)


async def write(path: Path, n: int) -> None:
    rng = random.Random(1)
    start = day_bounds(DAY)[0] - DAY_MS
    step = 2 * DAY_MS // n
    candidate = {"heat": 50.0, "components": {"momentum": 0.01}, "rank": 3, "price": 1.0, "filters": [], "accepted": True}
    async with Journal.open(path, JournalSection(batch_size=5000)) as j:
        for i in range(n):
            ts = start + i * step
            roll = rng.random()
            if roll < 0.95:
                j.emit("candidate_snapshot", ts_ms=ts, payload=candidate, symbol=f"C{i % 2000}/USDT", trace_id=f"{i:016x}")
            elif roll < 0.98:
                j.emit("fill", ts_ms=ts, payload={"client_order_id": "x", "side": "buy", "price": 1.0, "quantity": 10.0, "fee_quote": 0.01}, symbol="A/USDT")
            elif roll < 0.9995:
                action = rng.choice(["open", "close"])
                j.emit("position_update", ts_ms=ts, symbol=f"C{i % 50}/USDT",
                       payload={"action": action, "quantity": 10.0 if action == "open" else 0.0, "entry_price": 1.0,
                                "realised_pnl": rng.gauss(0, 1) if action == "close" else 0.0})  # fmt: skip
            else:
                j.emit("state_change", ts_ms=ts, payload={"from": "tradeable", "to": rng.choice(["degraded", "tradeable"]), "reasons": []})
            if i % 50_000 == 0:
                await j.wait_writable()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=400_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmp:
        path = Path(tmp) / "journal.sqlite"
        t0 = time.perf_counter()
        asyncio.run(write(path, args.events))
        print(f"wrote {args.events:,} events over 2 days in {time.perf_counter() - t0:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        for label in ("first", "second"):
            t0 = time.perf_counter()
            report = load_report(path, DAY)
            print(f"load_report ({label}): {time.perf_counter() - t0:.2f} s for {report.events:,} report events "
                  f"of ~{args.events // 2:,} that day; {report.trades} trades")  # fmt: skip


if __name__ == "__main__":
    main()
