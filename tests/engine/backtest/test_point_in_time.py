"""Point in time: what the backtest decides before T cannot depend on data after T."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.backtest.runner import MINUTE_MS, BacktestRunner
from engine.config import HotcoinConfig
from engine.journal.events import JournalEvent
from tests.engine.backtest.conftest import PUMPS, START, T0, write_store
from tests.kit.events import RecordingSink

CUT = T0 + (PUMPS["PUMP/USDT"] + 60) * MINUTE_MS  # after the first pump's trade, before the second


def _run(config: HotcoinConfig, root: Path) -> list[JournalEvent]:
    sink = RecordingSink()
    asyncio.run(BacktestRunner(config, root, sink, run_id="pit").run(START, None))
    return sink.events


def _before(events: list[JournalEvent], t: int) -> list[tuple[object, ...]]:
    return [(e.seq, e.ts_ms, e.kind, e.symbol, e.trace_id, e.cause, e.payload) for e in events if e.ts_ms < t and e.kind != "run_stop"]


def test_cutting_the_data_after_t_changes_no_decision_before_t(
    config: HotcoinConfig, store: Path, tmp_path: Path
) -> None:
    full = _run(config, store)
    cut = _run(config, write_store(tmp_path / "cut", cut_ms=CUT))
    before = _before(full, CUT)
    assert any(e[2] == "fill" for e in before), "a trade must happen before the cut for this to mean anything"
    assert any(e.kind == "fill" and e.ts_ms >= CUT for e in full), "and one after it, in the full data only"
    assert _before(cut, CUT) == before
    assert max(e.ts_ms for e in cut) <= CUT


def test_a_pair_is_unknown_before_its_first_candle(config: HotcoinConfig, store: Path) -> None:
    events = _run(config, store)
    first_new = min(e.ts_ms for e in events if e.symbol == "NEW/USDT")
    assert first_new > T0 + 1500 * MINUTE_MS  # NEW lists at minute 1500
