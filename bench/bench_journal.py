"""Sustained journal write rate: `Journal.emit` (validate + orjson + seq + batch) through the
background writer to committed SQLite rows, end to end.

    .venv/bin/python -m bench.bench_journal [--events 1500000] [--path /tmp/bench_journal.sqlite]

The event mix mimics a live cycle (one simulated second): 12 candidate snapshots (3 fail a
filter), 9 signal snapshots (1 says enter), then a risk check, entry order, result, fill and
position update for that one, and a model_shadow score: 27 events, each trace linked by cause.
The runtime's back-pressure call (`wait_writable`) runs once per cycle, as in the engine.
Target: >= 100,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

from engine.config.sections.journal import JournalSection
from engine.journal.events import check, make_trace_id
from engine.journal.writer import Journal

SYMBOLS = [f"C{i:03d}/USDT" for i in range(300)]
FILTERS_OK = [check("min_quote_volume_24h", True, 5.2e7, 1e6), check("max_spread_bps", True, 8.0, 30.0), check("not_blacklisted", True, True, True)]
FILTERS_BAD = [check("min_quote_volume_24h", False, 4.0e5, 1e6), *FILTERS_OK[1:]]
RULES = [check("heat_min", True, 82.4, 60.0), check("ret_5m_min", True, 0.041, 0.02), check("volume_surge_min", True, 4.1, 3.0)]
RULES_BAD = [*RULES[:2], check("volume_surge_min", False, 1.8, 3.0)]
FEATURES = {"ret_1m": 0.006, "ret_5m": 0.041, "ret_15m": 0.066, "volume_surge": 4.1, "rsi_14": 68.2}
RISK = [check("engine_state", True, "tradeable", "tradeable"), check("max_concurrent_positions", True, 1, 3), check("daily_loss_pct", True, -0.4, -3.0)]


def candidate(i: int, ok: bool) -> dict[str, Any]:
    return {
        "heat": 60.0 + (i % 40), "components": {"momentum": 0.82, "volume_surge": 0.74, "listing_freshness": 0.0, "social_velocity": 0.1},
        "rank": i % 20 + 1, "price": 0.3 + i * 1e-4, "filters": FILTERS_OK if ok else FILTERS_BAD, "accepted": ok,
        "quote_volume_24h": 5.2e7, "returns": {"1m": 0.006, "5m": 0.041, "15m": 0.066, "60m": 0.12}, "sources": ["ticker"],
    }  # fmt: skip


async def run(total: int, path: Path) -> dict[str, float]:
    """Emit `total` events as the engine would; returns the timings."""
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    trace_ids = [make_trace_id("bench", i) for i in range(total * 12 // 27 + 12)]  # one per candidate, as live
    cands = [candidate(i, ok=i % 4 != 0) for i in range(64)]
    signal_skip = {"decision": "skip", "reason": "rule volume_surge_min failed", "rules": RULES_BAD, "features": FEATURES, "ml_score": 0.41}
    signal_enter = {"decision": "enter", "reason": "all rules passed", "rules": RULES, "features": FEATURES, "ml_score": 0.71}
    settings = JournalSection()
    emitted = 0
    cycle = 0
    main_cpu0 = time.thread_time()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    async with Journal.open(path, settings) as j:
        emit = j.emit
        while emitted < total:
            ts = 1_700_000_000_000 + cycle * 1000
            base = cycle * 12
            for k in range(12):
                tid = trace_ids[base + k]
                sym = SYMBOLS[(base + k) % len(SYMBOLS)]
                c = emit("candidate_snapshot", ts_ms=ts, payload=cands[(base + k) % 64], trace_id=tid, symbol=sym)
                if k % 4 == 0:
                    continue
                s = emit("signal_snapshot", ts_ms=ts + 1, payload=signal_enter if k == 1 else signal_skip, trace_id=tid, symbol=sym, cause=c)
                if k != 1:
                    continue
                coid = f"hc-{tid}-e1"
                r = emit("risk_check", ts_ms=ts + 2, payload={"approved": True, "checks": RISK}, trace_id=tid, symbol=sym, cause=s)
                o = emit("order_attempt", ts_ms=ts + 3, trace_id=tid, symbol=sym, cause=r, payload={"client_order_id": coid, "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "166"})
                o = emit("order_result", ts_ms=ts + 40, trace_id=tid, symbol=sym, cause=o, payload={"client_order_id": coid, "status": "filled", "error_class": None})
                f = emit("fill", ts_ms=ts + 41, trace_id=tid, symbol=sym, cause=o, payload={"client_order_id": coid, "side": "buy", "price": 0.3003, "quantity": 166.0, "fee_quote": 0.0498})
                emit("position_update", ts_ms=ts + 42, trace_id=tid, symbol=sym, cause=f, payload={"action": "open", "quantity": 166.0, "entry_price": 0.3003, "realised_pnl": 0.0})
                emit("model_shadow", ts_ms=ts + 2, trace_id=tid, symbol=sym, cause=s, payload={"model": "hot_lgbm@abc123", "score": 0.66})
            emitted = j.next_seq - 1
            cycle += 1
            await j.wait_writable()
        t_emit = time.perf_counter() - t0
        await j.flush()
        flushed = time.perf_counter() - t0
        stats = j.stats
    return {
        "events": emitted, "cycles": cycle, "emit_s": t_emit, "flushed_s": flushed, "batches": stats.batches,
        "cpu_s": time.process_time() - cpu0, "main_cpu_s": time.thread_time() - main_cpu0,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--path", type=Path, default=Path("/tmp/bench_journal.sqlite"))
    args = parser.parse_args()
    r = asyncio.run(run(args.events, args.path))
    cpu, n = r["cpu_s"], r["events"]
    print(f"events           {n:,.0f} ({r['cycles']:,.0f} cycles of 27) in {r['batches']:,.0f} transactions")
    print(f"emit loop        {r['emit_s']:.2f} s  ({n / r['emit_s']:,.0f} events/s offered, incl. back-pressure waits)")
    print(f"end to end       {r['flushed_s']:.2f} s wall -> {n / r['flushed_s']:,.0f} events/s committed (target >= 100,000)")
    print(f"CPU              {cpu:.2f} s process CPU (both threads) -> {cpu / n * 1e6:.2f} us/event, {n / cpu:,.0f} events per CPU-second")
    main_cpu = r["main_cpu_s"]
    print(f"  of which       {main_cpu / n * 1e6:.2f} us/event on the loop thread (emit: validate, orjson, seq, batch), "
          f"{(cpu - main_cpu) / n * 1e6:.2f} us/event elsewhere (SQLite writer thread)")  # fmt: skip
    print(f"file             {args.path.stat().st_size / 1e6:,.0f} MB;  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
