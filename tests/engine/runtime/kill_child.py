"""The process `test_kill_restart` kills: an engine on the quiet simulated market, recovering from
and appending to one journal.

    python -m tests.engine.runtime.kill_child JOURNAL START_INDEX [MAX_CYCLES]

Each start reads the journal (`recovery.read_journal`), resumes the lockstep market 5 s of sim
time after the last journaled event (so time never runs backwards in the journal), scripts a
pump five minutes in on a different liquid coin each start (so there are positions to lose), and prints
`cycle N held K` (K: positions held) after every cycle so the parent can kill it at a chosen moment without sleeping.
It runs until killed or for MAX_CYCLES cycles, then stops cleanly.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import sys
from pathlib import Path

from engine.clock import SimClock
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.writer import Journal
from engine.runtime.engine import Engine
from engine.runtime.feed import SimFeed
from engine.runtime.recovery import Recovery, read_journal
from engine.runtime.session import WARMUP_MS
from engine.runtime.snapshot import Mode
from engine.sim.market import SimMarket
from engine.sim.scenario import Move
from tests.kit.engine import START_MS, plain_alts, quiet_config

STEP_MS = 5_000
MAX_CYCLES = 1_500


def _last_ts(journal_path: Path) -> int:
    with sqlite3.connect(f"{journal_path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT MAX(ts_ms) FROM events").fetchone()[0])


async def main(journal_path: Path, index: int, max_cycles: int = MAX_CYCLES) -> None:
    config = quiet_config(**{
        "journal.flush_interval_ms": 10,  # a kill finds most of the run on disk
        # Risk limits survive restarts: twelve short runs must keep trading through the day's
        # drawdown and losing streak to find positions open at their kills.
        "trading.risk.daily_loss_limit": 0.9,
        "trading.risk.level_thresholds": (0.5, 0.6, 0.7, 0.8),
        "trading.risk.max_consecutive_losses": 1000,
    })  # fmt: skip
    state = read_journal(journal_path, config.trading.capital.active.capital)
    start = START_MS if state.empty else (_last_ts(journal_path) // STEP_MS + 1) * STEP_MS
    market = SimMarket(config.sim, start - WARMUP_MS)
    batch = market.tickers()
    volume = {s: float(v) for s, v in zip(batch.symbols, batch.quote_volume_24h, strict=True)}
    liquid = sorted(plain_alts(market), key=lambda s: -volume[s])[:5]  # pass discovery's volume filter
    at = start + 5 * 60_000
    symbol = liquid[index % len(liquid)]
    market.script(Move(symbol, at, at + 20 * 60_000, at + 60 * 60_000, math.log1p(0.6), 0.4, 15.0, 120_000))
    feed = SimFeed(market, SimClock(start, 1.0), interval_ms=STEP_MS, lockstep=True)
    broker = PaperBroker(FillModel.from_settings(config.trading.execution))
    async with Journal.open(journal_path, config.journal) as journal:
        recovery = None if state.empty else Recovery(state)
        engine = Engine(config, feed, broker, journal, run_id=f"kill-{index}", mode=Mode.SIM, recovery=recovery)
        task = asyncio.create_task(engine.run())
        seen = 0
        while not task.done() and seen < max_cycles:
            if engine.stats.cycles != seen:
                seen = engine.stats.cycles
                held = 0 if engine.core is None else len(engine.core.book.holdings)
                sys.stdout.write(f"cycle {seen} held {held}\n")
                sys.stdout.flush()
            await asyncio.sleep(0.001)
        engine.stop()
        await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), *(int(a) for a in sys.argv[3:4])))
