"""Discovery settings for a replay that sees the market once a minute.

Live, discovery gets a full-market ticker batch every second and keeps 15 s slots. A replay of
1m candles has one batch a minute, so per-slot and per-batch settings lose their meaning:

- a 15 s slot is filled once in four; the other three are skipped, and the volume of the
  minute between two batches spans more than `volume_gap_slots` slots, so the windows
  (rightly, for a symbol that went silent) record it as unknown. Every symbol's volume
  baseline then stays empty and the volume-surge part of heat is 0 for the whole backtest;
- `min_history_slots` counts slots, `baseline_refresh_batches` counts batches: both stretch.

`replay_cadence` turns them back into what they mean in time: one-minute slots over the same
span of history, the same minimum history in minutes, and baselines refreshed every batch
(a replay batch is a minute, what sixty live batches are). Settings already coarse enough are
left alone, so a config written for minute data (the parity and point-in-time tests') is
replayed as it is. What changed is returned as lines, for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import HotcoinConfig

REPLAY_BATCH_MS = 60_000  # one batch per 1m candle
MIN_RETURN_SPAN_MS = 3_600_000  # the windows keep the 60 min return's history


@dataclass(frozen=True, slots=True)
class ReplayCadence:
    config: HotcoinConfig
    changes: tuple[str, ...]  # "key: old -> new", empty when the config fits as it is


def replay_cadence(config: HotcoinConfig) -> ReplayCadence:
    """`config` with discovery's slot and batch settings fitted to one batch a minute."""
    windows = config.discovery.windows
    anomaly = config.discovery.anomaly
    changes: list[str] = []
    w_update: dict[str, int] = {}
    a_update: dict[str, int] = {}
    if windows.slot_ms < REPLAY_BATCH_MS:
        span_ms = windows.slot_ms * windows.history_slots
        slots = max(math.ceil(span_ms / REPLAY_BATCH_MS), MIN_RETURN_SPAN_MS // REPLAY_BATCH_MS + 1)
        min_history = max(5, math.ceil(anomaly.min_history_slots * windows.slot_ms / REPLAY_BATCH_MS))
        w_update |= {"slot_ms": REPLAY_BATCH_MS, "history_slots": slots}
        a_update["min_history_slots"] = min_history
        changes += [
            f"discovery.windows.slot_ms: {windows.slot_ms} -> {REPLAY_BATCH_MS}",
            f"discovery.windows.history_slots: {windows.history_slots} -> {slots}",
            f"discovery.anomaly.min_history_slots: {anomaly.min_history_slots} -> {min_history}",
        ]
    if windows.volume_bucket_ms < REPLAY_BATCH_MS:
        w_update["volume_bucket_ms"] = REPLAY_BATCH_MS
        changes.append(f"discovery.windows.volume_bucket_ms: {windows.volume_bucket_ms} -> {REPLAY_BATCH_MS}")
    if anomaly.baseline_refresh_batches != 1:
        a_update["baseline_refresh_batches"] = 1
        changes.append(f"discovery.anomaly.baseline_refresh_batches: {anomaly.baseline_refresh_batches} -> 1")
    if not changes:
        return ReplayCadence(config, ())
    discovery = config.discovery.model_copy(
        update={  # validated again: the section checks (e.g. the 60 min return span) still hold
            "windows": type(windows).model_validate({**windows.model_dump(), **w_update}),
            "anomaly": type(anomaly).model_validate({**anomaly.model_dump(), **a_update}),
        }
    )
    return ReplayCadence(config.model_copy(update={"discovery": discovery}), tuple(changes))
