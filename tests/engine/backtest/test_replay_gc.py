"""The collector's settings while a backtest runs (`replay_gc`): tuned inside, as before after,
and the same backtest either way."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from pathlib import Path

import numpy as np
import pytest

from engine.backtest import api
from engine.backtest.api import REPLAY_GC_THRESHOLD, replay_gc, run_backtest
from engine.config import HotcoinConfig
from tests.engine.backtest.conftest import START, T0

END = T0 + (1440 + 420) * 60_000  # through the outage and the listing's pump


def test_the_collector_is_tuned_while_a_backtest_runs_and_restored_after() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    seen: list[tuple[tuple[int, ...], int]] = []

    def failing_backtest() -> None:
        with replay_gc():
            seen.append((gc.get_threshold(), gc.get_freeze_count()))
            raise RuntimeError("a backtest that fails")

    with pytest.raises(RuntimeError):
        failing_backtest()
    assert seen[0][0] == REPLAY_GC_THRESHOLD
    assert seen[0][1] > frozen  # what was alive at the start: walked no more
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)


def test_a_backtest_is_the_same_with_the_collector_tuned(
    config: HotcoinConfig, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tuned, _ = asyncio.run(run_backtest(config, store, START, END, run_id="gc"))
    monkeypatch.setattr(api, "replay_gc", contextlib.nullcontext)
    plain, _ = asyncio.run(run_backtest(config, store, START, END, run_id="gc"))
    assert tuned.trades and tuned.trades == plain.trades
    assert np.array_equal(tuned.equity, plain.equity)
