"""The minute replay's discovery settings: slots and batches fitted to one batch a minute, so
the volume surge is seen (with live 15 s slots every minute's volume was recorded as unknown
and the volume part of heat stayed 0 for a whole backtest)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.backtest.cadence import REPLAY_BATCH_MS, replay_cadence
from engine.backtest.runner import MINUTE_MS, BacktestRunner
from engine.config import HotcoinConfig, load_config
from tests.engine.backtest.conftest import PUMPS, START, T0, minute_config
from tests.kit.events import RecordingSink


def test_live_settings_keep_their_meaning_in_time() -> None:
    live = load_config(env={}, cli={}).config
    w, a = live.discovery.windows, live.discovery.anomaly
    fitted = replay_cadence(live)
    fw, fa = fitted.config.discovery.windows, fitted.config.discovery.anomaly
    assert fw.slot_ms == REPLAY_BATCH_MS
    assert fw.slot_ms * fw.history_slots >= w.slot_ms * w.history_slots  # the same span of history
    assert fw.slot_ms * (fw.history_slots - 1) >= 3_600_000  # still covers the 60 min return
    assert fa.min_history_slots * fw.slot_ms >= a.min_history_slots * w.slot_ms  # the same minimum, in time
    assert fa.baseline_refresh_batches == 1
    assert fitted.changes and all("->" in line for line in fitted.changes)
    assert fitted.config.trading == live.trading  # nothing else moves
    assert replay_cadence(fitted.config).changes == ()  # fitting twice changes nothing more


def test_a_minute_config_is_replayed_as_written() -> None:
    config = minute_config()
    fitted = replay_cadence(config)
    assert fitted.config is config and fitted.changes == ()


def test_the_default_config_sees_the_volume_surge(store: Path) -> None:
    """The default (live) config on the test store: its pumps come with 8x volume, which now
    shows in the heat of candidate snapshots after the warm-up, and the result says what was
    fitted."""
    sink = RecordingSink()
    end = T0 + (PUMPS["ALT/USDT"] + 60) * MINUTE_MS
    result = asyncio.run(BacktestRunner(HotcoinConfig(), store, sink, run_id="cadence").run(START, end))
    assert result.adjusted == replay_cadence(HotcoinConfig()).changes
    surges = [
        e.payload["components"]["volume_surge"]
        for e in sink.events
        if e.kind == "candidate_snapshot" and e.ts_ms >= START
    ]
    assert surges and max(surges) > 0.3, "the volume surge never reached heat"
