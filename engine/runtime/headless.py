"""Run an engine session with nobody watching: until the duration, SIGINT, SIGTERM or SIGHUP."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

from engine.config import HotcoinConfig
from engine.runtime.session import RunOptions, open_session

log = logging.getLogger("hotcoin.run")

# Objects alive once the engine is set up (markets, configs, code) live for the whole run.
# Frozen, a full collection no longer walks them, and a larger gen-0 threshold makes
# collections rarer: without this, ~2 % of decision cycles took a 10-15 ms GC pause and the
# decision p99 doubled (bench/bench_decision_latency.py, with and without --gc-freeze).
GC_THRESHOLD = (50_000, 20, 100)

# The signals that stop a run as asked: Ctrl-C, SIGTERM (`kill`, a service stop, the console
# quitting its engine) and SIGHUP (the terminal went away: an SSH connection that dropped). Left
# to its default, SIGHUP killed the process like a crash: no `run_stop`, and the events of the
# batch not yet written were lost with it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def freeze_startup_heap() -> None:
    """Tune the collector for a long-running engine process; call once set-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _stop_on(sig: signal.Signals, stop: Callable[[], None]) -> None:
    """Stop the engine on `sig`, saying which: a run that ends on its own (SIGHUP from a closed
    terminal) should say why in its log, as one stopped by hand does."""
    log.info("stopping on %s", sig.name, extra={"signal": sig.name})
    stop()


async def run_headless(config: HotcoinConfig, options: RunOptions, duration_s: float | None) -> str:
    """Trade until done; returns a short human summary (run id, trades, this run's PnL and the
    journal's since it began, journal)."""
    async with open_session(config, options) as session:
        engine = session.engine
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, _stop_on, sig, engine.stop)
        log.info(
            "engine started",
            extra={"run_id": session.run_id, "journal": str(session.journal_path), "ops_port": session.ops_port},
        )
        freeze_startup_heap()
        try:
            await engine.run(duration_s)
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        snap = engine.hub.latest
        core = engine.core
        equity = None if core is None else core.equity()
        start = None if core is None else core.start_equity
        # This run's PnL, then the journal's: the journal's total alone read as this run's.
        this_run = 0.0 if equity is None or start is None else equity - start
        total = 0.0 if equity is None else equity - config.trading.capital.active.capital
        held = 0 if core is None else len(core.book.holdings)
        lines = [
            f"run {session.run_id}: {engine.stats.cycles} cycles, {engine.router.sent} orders sent, "
            f"{engine.stats.fills} fills, {held} open position(s), PnL this run {this_run:+.2f} "
            f"(since the journal began {total:+.2f})",
            f"state {snap.status.state if snap else 'starting'}; journal {session.journal_path}",
            f"explain: hotcoin traces --journal {session.journal_path}",
        ]
        warning = None if engine.recovery is None else engine.recovery.state.anomaly_warning()
        if warning is not None:
            lines.append(f"warning: {warning}")
        log.info("engine stopped", extra={"run_id": session.run_id, "cycles": engine.stats.cycles})
        return "\n".join(lines)
