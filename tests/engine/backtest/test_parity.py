"""Parity: the same history through the live runtime (`Engine`, paper broker, lockstep feed)
and through the backtester gives the same decisions: same entries and exits (symbols, times,
sizes, prices), indeed the same journal, event for event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.backtest import discovery_process
from engine.backtest.cadence import replay_cadence
from engine.backtest.feed import HistoryFeed
from engine.backtest.history import index_history
from engine.backtest.runner import MINUTE_MS, BacktestRunner, utc_minute
from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.domain import TickerBatch
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.events import JournalEvent
from engine.runtime.engine import Engine
from engine.runtime.snapshot import Mode
from engine.sim.parquet_source import ParquetMarket
from tests.engine.backtest.conftest import START, T0, write_store
from tests.kit.events import RecordingSink

END = START + 7 * 60 * MINUTE_MS
RUN_ID = "parity"
SKIP = {"run_start", "run_stop"}  # mode and stop reason differ by design


class _StopAt(HistoryFeed):
    """Stops the engine after the batch at `end` (the backtest's last cycle)."""

    engine: Engine | None = None
    end_ms = END

    async def next_batch(self) -> TickerBatch:
        batch = await super().next_batch()
        if batch.ts_ms >= self.end_ms and self.engine is not None:
            self.engine.stop()
        return batch


async def _runtime(config: HotcoinConfig, store: Path, start: int = START, end: int = END) -> RecordingSink:
    config = replay_cadence(config).config  # fed once a minute, as the backtester fits it (a no-op here)
    index = index_history(store)
    sim = config.sim.model_copy(update={"data_dir": store, "history_minutes": config.backtest.initial_history_minutes})
    market = ParquetMarket(sim, max(index.start_ms, start - config.backtest.warmup_minutes * MINUTE_MS))
    feed = _StopAt(market, SimClock(start), index)
    feed.end_ms = end
    sink = RecordingSink()
    broker = PaperBroker(FillModel.from_settings(config.trading.execution))
    engine = Engine(config, feed, broker, sink, run_id=RUN_ID, mode=Mode.PAPER)
    feed.engine = engine
    await engine.run()
    return sink


def _decisions(events: list[JournalEvent]) -> list[tuple[object, ...]]:
    return [(e.ts_ms, e.kind, e.symbol, e.trace_id, e.cause, e.payload) for e in events if e.kind not in SKIP]


@pytest.fixture(scope="module")
def both(config: HotcoinConfig, store: Path) -> tuple[RecordingSink, RecordingSink]:
    runtime = asyncio.run(_runtime(config, store))
    backtest = RecordingSink()
    runner = BacktestRunner(config, store, backtest, run_id=RUN_ID)
    minutes = (END - START) // MINUTE_MS + runner.config.backtest.warmup_minutes
    # The backtest runs discovery ahead of its core, in blocks (`AheadDiscovery`: one process,
    # long enough); the engine batch by batch: the journals compare the two as well.
    assert not discovery_process.wanted(runner.config.backtest.discovery_process, minutes) and discovery_process.ahead(minutes)
    asyncio.run(runner.run(START, END))
    return runtime, backtest


def test_same_entries_and_exits(both: tuple[RecordingSink, RecordingSink]) -> None:
    runtime, backtest = both

    def fills(sink: RecordingSink) -> list[tuple[object, ...]]:
        return [
            (e.ts_ms, e.symbol, e.payload["side"], e.payload["quantity"], e.payload["price"])
            for e in sink.events
            if e.kind == "fill"
        ]

    got = fills(backtest)
    assert len({f[2] for f in got}) == 2, "the fixture must produce both entries and exits"
    want = fills(runtime)
    assert [f[:4] for f in got] == [f[:4] for f in want]
    for (*_, p_bt), (*_, p_rt) in zip(got, want, strict=True):
        assert p_bt == pytest.approx(p_rt, rel=1e-9)


def test_same_journal_event_for_event(both: tuple[RecordingSink, RecordingSink]) -> None:
    runtime, backtest = both
    assert _decisions(backtest.events) == _decisions(runtime.events)
    assert any(e.kind == "state_change" for e in backtest.events), "the outage must show in both"


def test_real_candles_through_a_listing_and_a_pump(config: HotcoinConfig, shared_data: Path) -> None:
    """April 16 2021, 06:45-13:00 UTC on the real block: BTG lists at 07:00, DOGE takes off."""
    start = 1_618_555_500_000
    end = start + 375 * MINUTE_MS
    runtime = asyncio.run(_runtime(config, shared_data, start, end))
    backtest = RecordingSink()
    asyncio.run(BacktestRunner(config, shared_data, backtest, run_id=RUN_ID).run(start, end))
    assert any(e.symbol == "BTG/USDT" for e in backtest.events)
    # Its listing is journaled (for restart recovery) at the same place on both paths: compared below.
    assert [(e.symbol, e.payload["reason"]) for e in backtest.events if e.kind == "listing"] == [("BTG/USDT", "new_symbol")]
    assert sum(e.kind == "fill" for e in backtest.events) >= 2
    assert _decisions(backtest.events) == _decisions(runtime.events)


def test_a_pair_whose_data_ends_is_halted_the_same_on_both_paths(config: HotcoinConfig, tmp_path: Path) -> None:
    """PUMP's file ends two minutes after the entry. Its last close used to be quoted on for
    hours and the take-profit and max-hold exits filled at it, a price that never was; it is
    halted (BREAK) after its last candle now: no order on it, the position held to the end,
    and the report says why. The live runtime over the same market does the same."""
    store = write_store(tmp_path / "store", ends={"PUMP/USDT": 1549})
    runtime = asyncio.run(_runtime(config, store))
    backtest = RecordingSink()
    result = asyncio.run(BacktestRunner(config, store, backtest, run_id=RUN_ID).run(START, END))
    assert _decisions(backtest.events) == _decisions(runtime.events)
    pump = [(e.ts_ms, e.payload["side"]) for e in backtest.events if e.kind == "fill" and e.symbol == "PUMP/USDT"]
    assert [side for _, side in pump] == ["buy"] and pump[0][0] < T0 + 1549 * MINUTE_MS
    assert "PUMP/USDT" in result.open_positions
    assert any(w.startswith(f"data ends: PUMP/USDT at {utc_minute(T0 + 1549 * MINUTE_MS)}: halted") for w in result.warnings)
    (refused,) = [
        e for e in backtest.events
        if e.kind == "signal_snapshot" and e.symbol == "PUMP/USDT" and e.payload.get("stage") == "exit_policy"
    ]  # fmt: skip
    assert refused.ts_ms >= T0 + 1549 * MINUTE_MS  # journaled once, then retried quietly
    assert {"name": "precheck:market_active", "passed": False, "value": "BREAK", "threshold": "TRADING"} in refused.payload["rules"]
