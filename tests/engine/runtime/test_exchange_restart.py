"""The simulated exchange going away mid-run: the engine comes back to trading when a sim
restarted with a fresh clock serves again (its clock re-read, never run backwards), and the
outage itself logs our own lines, not asyncio's "Future exception was never retrieved", and
about one line per change of state, not one per redial, failed fetch or failed sync."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest

from engine.domain import EngineState
from engine.journal.reader import JournalReader
from engine.market.exchange_clock import DAY_MS
from engine.market.gateway import ORDERS_STREAM
from engine.runtime.gateway_feed import TICKER_STREAM
from engine.sim.market import SimMarket
from tests.kit.engine import START_MS
from tests.kit.exchange_rig import SPEED, exchange_config, exchange_rig
from tests.kit.sim_exchange import running_sim_exchange
from tests.kit.waiting import eventually

NEVER_RETRIEVED = "Future exception was never retrieved"


async def test_an_engine_trades_again_once_a_restarted_sim_exchange_serves_with_a_fresh_clock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first sim ran from 30 days after the second's origin: on the clock read at start, the
    second sim's data would look 30 days old (days of wall time at x300) and the engine stay
    blocked on `data_stale`. Re-read after the reconnect, it is fresh, and the engine's time
    has only moved forward (the journal's `ts_ms` never goes back)."""
    caplog.set_level(logging.WARNING, logger="hotcoin.feed")
    path = tmp_path / "journal.sqlite"
    config = exchange_config()
    async with exchange_rig(path, config, pump_after_ms=None, start_ms=START_MS + 30 * DAY_MS) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: engine.stats.cycles >= 5 and engine.state.state is EngineState.TRADEABLE, timeout=120)
            port = rig.server.port
            await rig.server.stop()
            await eventually(lambda: engine.state.state is EngineState.BLOCKED, timeout=60)
            async with running_sim_exchange(SimMarket(config.sim, START_MS), speed=SPEED, port=port):
                await eventually(lambda: engine.state.state is EngineState.TRADEABLE, timeout=60)
            assert not task.done()
        finally:
            engine.stop()
            await asyncio.wait_for(task, 30)
        await rig.journal.flush()
    with JournalReader(path) as reader:
        stamps = [e.ts_ms for e in reader.events()]
    assert stamps == sorted(stamps), "the journal's time went backwards"
    assert "the exchange's clock went back" in caplog.text


async def test_an_exchange_outage_logs_no_unretrieved_future_exceptions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The sim killed under a running engine at x300: every stream redials many times a second
    (the user-data stream's signature subscription included). Each failed dial used to leave a
    rejected ccxt future nobody awaited, and asyncio logged each one when it was collected."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    try:
        async with exchange_rig(tmp_path / "journal.sqlite", pump_after_ms=None) as rig:
            engine = rig.engine
            task = asyncio.create_task(engine.run())
            try:
                await eventually(lambda: engine.stats.cycles >= 3, timeout=120)
                await rig.server.stop()

                def redialled() -> bool:
                    health = rig.gateway.health()
                    return all(key in health and health[key].reconnects >= 8 for key in (TICKER_STREAM, ORDERS_STREAM))

                await eventually(redialled, timeout=60)
            finally:
                engine.stop()
                await asyncio.wait_for(task, 30)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert not [c for c in unhandled if NEVER_RETRIEVED in str(c.get("message"))], unhandled[:1]
    assert NEVER_RETRIEVED not in caplog.text


async def test_an_exchange_outage_logs_its_start_and_its_end_not_every_redial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sim stopped for dozens of redials per stream and restarted where its clock stood:
    each stream logs its drop and its recovery (how long, how many redials), the failed candle
    fetches and broker syncs their first failure and their recovery; a few lines in all where
    one per redial, fetch and sync was logged (418 lines for 20 s at x60). The counters still
    count every failure."""
    caplog.set_level(logging.WARNING, logger="hotcoin")
    async with exchange_rig(tmp_path / "journal.sqlite", pump_after_ms=None) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: engine.stats.cycles >= 5 and engine.state.state is EngineState.TRADEABLE, timeout=120)
            failed_syncs: list[int] = []
            record = engine.state.errors.record  # the failed syncs count here (`TradingCycle._sync`)
            monkeypatch.setattr(engine.state.errors, "record", lambda ts: (failed_syncs.append(ts), record(ts)))
            caplog.clear()
            port = rig.server.port
            await rig.server.stop()
            candle_errors = rig.feed.candle_errors

            def long_outage() -> bool:
                health = rig.gateway.health()
                redials = all(key in health and health[key].reconnects >= 20 for key in (TICKER_STREAM, ORDERS_STREAM))
                return redials and rig.feed.candle_errors >= candle_errors + 10 and len(failed_syncs) >= 3

            await eventually(long_outage, timeout=90)
            await eventually(lambda: engine.state.state is EngineState.BLOCKED, timeout=60)
            redials = {key: rig.gateway.health()[key].reconnects for key in (TICKER_STREAM, ORDERS_STREAM)}
            # Back where the engine's clock stands: this outage, not a clock that went back.
            async with running_sim_exchange(SimMarket(exchange_config().sim, rig.feed.now_ms()), speed=SPEED, port=port):
                await eventually(lambda: engine.state.state is EngineState.TRADEABLE, timeout=60)
                await eventually(lambda: rig.gateway.health()[ORDERS_STREAM].connected, timeout=30)
                lines = [r.getMessage() for r in caplog.records]
                engine.stop()
                await asyncio.wait_for(task, 30)
        finally:
            engine.stop()
            await asyncio.wait_for(task, 30)
    said = {s: [line for line in lines if line.startswith("exchange ") and s in line.split(":")[0]] for s in redials}
    candles = [line for line in lines if "fetch_candles" in line]
    syncs = [line for line in lines if line.startswith("broker sync")]
    for stream, redialled in redials.items():
        assert len(said[stream]) <= 4, f"{redialled} redials of {stream} logged as {len(said[stream])} lines: {said[stream][:4]}"
    assert candles and len(candles) <= 2, f"{len(candles)} lines of failed candle fetches: {candles[:4]}"
    assert syncs and "failed" in syncs[0] and len(syncs) <= 4, f"{len(syncs)} lines: {syncs[:6]}"
    assert len(lines) <= 30, lines
    for stream in redials:
        assert said[stream][0].startswith(f"exchange {stream} down: "), said[stream]
        back = [line for line in said[stream] if line.startswith(f"exchange {stream} back: ")]
        assert len(back) == 1 and "s down" in back[0], said[stream]
    assert any(line.startswith("market data: candle fetch works again") for line in lines)
    assert syncs[-1].startswith("broker sync works again"), syncs
