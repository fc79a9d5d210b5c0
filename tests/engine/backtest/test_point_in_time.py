"""Point in time: what the backtest decides before T cannot depend on data after T."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

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


def _scored(config: HotcoinConfig, store: Path, start: int, end: int) -> dict[tuple[int, str], tuple[float, float]]:
    """(volume z, heat) of every candidate snapshot in [START, end], by (minute, symbol)."""
    sink = RecordingSink()
    asyncio.run(BacktestRunner(config, store, sink, run_id="pit").run(start, end))
    return {
        (e.ts_ms, e.symbol or ""): (e.payload["volume_z"], e.payload["heat"])
        for e in sink.events
        if e.kind == "candidate_snapshot" and e.ts_ms >= START
    }


def test_a_minutes_volume_z_does_not_depend_on_where_the_backtest_started(config: HotcoinConfig, store: Path) -> None:
    """Two backtests with full warm-ups, one from a day before the other: each minute they both
    replay scores the same volume z and heat. Discovery's first day used to guess the volume
    leaving the 24 h figures (at their average rate), although the replay market had loaded
    the day's candles that say what left: the later start scored its first day against made-up
    volume (the real data: DOGE/USDT's volume z 5.94 at 11:06 from a 10:00 start, 3.71 from
    the day before)."""
    end = START + 180 * MINUTE_MS  # through the first two pumps
    early = _scored(config, store, T0 + 100 * MINUTE_MS, end)  # warm-up from T0 + 35 min
    late = _scored(config, store, START, end)
    both = sorted(early.keys() & late.keys())
    assert len(both) > 30 and {s for _, s in both} >= {"PUMP/USDT", "ALT/USDT"}, "too few shared snapshots to compare"
    assert any(abs(late[k][0]) > 2.0 for k in both), "a volume surge should be among them"
    for i, what in enumerate(("volume_z", "heat")):
        mismatched = [(k, late[k][i], early[k][i]) for k in both if late[k][i] != pytest.approx(early[k][i], abs=2e-3)]
        assert not mismatched, f"{what} (minute, symbol, late start, early start): {mismatched[:5]}"
