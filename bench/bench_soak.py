"""Soak: a simulated week of the real engine at high speed, ~300 symbols; is memory flat?

    .venv/bin/python -m bench.bench_soak [--symbols 300] [--days 7] [--interval-s 60]

The whole runtime (`Engine`: discovery, candles, state machine, `TradingCore`, router, paper
broker, snapshots) runs on the simulated market with its random pumps, dumps and listings, fed
in lockstep (no sleeping: each batch is `--interval-s` of sim time after the previous), into a
real SQLite journal in a temporary directory. A week of 1 s batches would be 604,800 cycles
(hours here); the default 60 s batches (10,080 cycles, about 100 s on the shared 2-core box)
keep every stage's per-cycle work identical and the journal's per-bar events the same (one
candidate snapshot per symbol per 1-minute bar); `--interval-s 30` doubles the cycles. The
price path and the pumps do not depend on the interval.

Reported: RSS (VmRSS) after a warm-up day and at the end, and the peak (VmHWM), with the growth
from warm-up to end (target <= 5 %); events journaled; cycles/s; decisions/s, as signal
evaluations (each a journaled `signal_snapshot`: enter/skip/hold/exit) and as orders decided
(entries and exits sent); trades; and the size of every cache that grows
with time or symbols, so a leak names itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.clock import SimClock
from engine.config import load_config
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.writer import Journal
from engine.runtime.engine import Engine
from engine.runtime.feed import SimFeed
from engine.runtime.session import WARMUP_MS
from engine.runtime.snapshot import Mode
from engine.signals.bars import BarHistory
from engine.sim.market import SimMarket

DAY_MS = 86_400_000
START_MS = 1_700_000_000_000 // DAY_MS * DAY_MS


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class _Counting:
    """The journal, counting events by kind on the way in (signal evaluations are decisions too)."""

    keeps_payloads = True

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.kinds: Counter[str] = Counter()

    def emit(
        self,
        kind: str,
        *,
        ts_ms: int,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
        symbol: str | None = None,
        cause: int | None = None,
    ) -> int:
        self.kinds[kind] += 1
        return self.journal.emit(kind, ts_ms=ts_ms, payload=payload, trace_id=trace_id, symbol=symbol, cause=cause)

    async def wait_writable(self) -> None:
        await self.journal.wait_writable()


def _caches(engine: Engine, journal: Journal) -> dict[str, int]:
    """Every container that could grow with run time: a leak shows up here by name."""
    core = engine.core
    assert core is not None
    return {
        "tap.candidate_seq": len(engine.tap.candidate_seq),
        "tap.last_signal": len(engine.tap.last_signal),
        "engine._fills(symbols)": len(engine._fills),
        "cycle._fed": len(engine.cycle._fed),
        "router._sent": len(engine.router._sent),
        "router._settled": len(engine.router._settled),
        "core.causes": len(core.causes),
        "core._last_action_ms": len(core._last_action_ms),
        "core._seen_trades": len(core._seen_trades),
        "core.book.closed": len(core.book.closed),
        "core.history(symbols)": len(core.history._cols) if isinstance(core.history, BarHistory) else 0,
        "broker._resting": len(getattr(engine.broker, "_resting", {})),
        "broker._finished": len(getattr(engine.broker, "_finished", ())),
        "journal._known": len(journal._known),
    }


async def soak(symbols: int, days: float, interval_s: int, journal_dir: Path) -> dict[str, Any]:
    config = load_config(env={}, cli={"sim.symbols": symbols, "ops.http_enabled": False}).config
    market = SimMarket(config.sim, START_MS - WARMUP_MS)
    feed = SimFeed(market, SimClock(START_MS, 1.0), interval_ms=interval_s * 1000, lockstep=True)
    broker = PaperBroker(FillModel.from_settings(config.trading.execution))
    end_ms = START_MS + int(days * DAY_MS)
    warm_ms = START_MS + int(min(DAY_MS, days * DAY_MS / 4))  # a day, or a quarter of a short run
    samples: list[tuple[float, int]] = []
    async with Journal.open(journal_dir / "soak.sqlite", config.journal) as journal:
        counting = _Counting(journal)
        engine = Engine(config, feed, broker, counting, run_id="soak", mode=Mode.SIM)
        t0 = time.perf_counter()
        task = asyncio.create_task(engine.run())
        next_day = START_MS + DAY_MS
        warm: tuple[float, int, int, int] | None = None  # wall, cycles, intents, rss after warm-up
        while engine._now < end_ms and not task.done():
            await asyncio.sleep(0.05)
            if engine._now >= next_day:
                gc.collect()
                samples.append(((engine._now - START_MS) / DAY_MS, _status_kb("VmRSS")))
                next_day += DAY_MS
            if warm is None and engine._now >= warm_ms:
                warm = (time.perf_counter(), engine.stats.cycles, engine.router.sent, _status_kb("VmRSS"))
        engine.stop()
        await task
        wall = time.perf_counter() - t0
        gc.collect()
        end_rss = _status_kb("VmRSS")
        caches = _caches(engine, journal)
        assert warm is not None, "the run ended before the warm-up day"
        cycles, intents = engine.stats.cycles, engine.router.sent
        after = time.perf_counter() - warm[0]
        await journal.flush()
        written = journal.stats.written
        trades = len(engine.core.book.closed) if engine.core is not None else 0
    return {
        "symbols": symbols,
        "sim_days": (engine._now - START_MS) / DAY_MS,
        "interval_s": interval_s,
        "wall_s": wall,
        "cycles": cycles,
        "cycles_per_s": cycles / wall,
        "cycles_per_s_after_warmup": (cycles - warm[1]) / after,
        "decisions": intents,
        "decisions_per_s": intents / wall,
        "signal_evaluations": counting.kinds["signal_snapshot"],
        "signal_evaluations_per_s": counting.kinds["signal_snapshot"] / wall,
        "risk_checks": counting.kinds["risk_check"],
        "fills": engine.stats.fills,
        "trades_closed": trades,
        "events_journaled": written,
        "rss_warm_kb": warm[3],
        "rss_end_kb": end_rss,
        "rss_peak_kb": _status_kb("VmHWM"),
        "rss_growth_pct": 100.0 * (end_rss - warm[3]) / warm[3],
        "rss_by_day_kb": samples,
        "caches": caches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--interval-s", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hotcoin-soak-") as tmp:
        r = asyncio.run(soak(args.symbols, args.days, args.interval_s, Path(tmp)))
    print(f"soak: {r['symbols']} symbols, {r['sim_days']:.2f} simulated days in {r['interval_s']} s lockstep batches")
    print(f"  wall {r['wall_s']:.1f} s; {r['cycles']} cycles = {r['cycles_per_s']:.0f} cycles/s "
          f"({r['cycles_per_s_after_warmup']:.0f}/s after the warm-up day)")
    print(f"  decisions: {r['signal_evaluations']} signal evaluations = {r['signal_evaluations_per_s']:.1f}/s, "
          f"{r['risk_checks']} risk checks, {r['decisions']} orders decided = {r['decisions_per_s']:.2f}/s")
    print(f"  fills {r['fills']}; trades closed {r['trades_closed']}; events journaled {r['events_journaled']}")
    print(f"  RSS after warm-up day {r['rss_warm_kb'] / 1024:.1f} MiB, end {r['rss_end_kb'] / 1024:.1f} MiB, "
          f"peak {r['rss_peak_kb'] / 1024:.1f} MiB; growth {r['rss_growth_pct']:+.2f} % (target <= 5 %)")
    print("  RSS by day (MiB): " + ", ".join(f"d{d:.0f} {kb / 1024:.1f}" for d, kb in r["rss_by_day_kb"]))
    print("  caches at the end: " + ", ".join(f"{k} {v}" for k, v in r["caches"].items()))


if __name__ == "__main__":
    main()
