"""The backtester honours a model's promotion decision exactly as the runtime does: a
production model decides, a research_only (shadow) model only watches."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from engine.backtest.runner import MINUTE_MS, BacktestRunner, utc_minute
from engine.config import HotcoinConfig
from tests.engine.backtest.conftest import START
from tests.kit.events import RecordingSink
from tests.kit.models import Load, loaded


def _trades(config: HotcoinConfig, store: Path, load: Load | None) -> tuple[list[tuple[str, int]], RecordingSink]:
    sink = RecordingSink()
    result = asyncio.run(BacktestRunner(config, store, sink, run_id="bt", model=load).run(START, None))
    return [(t.symbol, t.opened_ms) for t in result.trades], sink


def test_shadow_watches_and_production_decides(config: HotcoinConfig, store: Path) -> None:
    plain, _ = _trades(config, store, None)
    shadow = loaded("shadow")
    watched, sink = _trades(config, store, shadow)
    production = loaded("production")
    decided, _ = _trades(config, store, production)
    assert plain, "the store's pumps should be traded on rules alone"
    assert watched == plain
    assert any(e.kind == "model_shadow" for e in sink.events)
    assert decided == []  # a score of 0 fails the ml_score rule on every entry


@pytest.mark.parametrize("mode", ["production", "shadow"])
def test_a_replay_over_the_model_s_training_window_warns_of_look_ahead(config: HotcoinConfig, store: Path, mode: str) -> None:
    """A model scored on the bars it was trained on has seen their future: the report says so,
    with the overlap, instead of passing the result off as a test of the model."""
    end = START + 30 * MINUTE_MS
    trained = (START - 600 * MINUTE_MS, START + 10 * MINUTE_MS)
    load = dataclasses.replace(loaded(mode), training_window=trained)
    result = asyncio.run(BacktestRunner(config, store, run_id="bt", model=load).run(START, end))
    (warning,) = [w for w in result.warnings if w.startswith("look-ahead")]
    assert warning.startswith(
        f"look-ahead: model {load.model} ({mode}) was trained on {utc_minute(trained[0])} .. {utc_minute(trained[1])}, "
        f"which overlaps this replay from {utc_minute(START)} to {utc_minute(trained[1])}: its scores there are in-sample"
    )
    assert f"Replay after {utc_minute(trained[1])}" in warning
    before = dataclasses.replace(load, training_window=(trained[0], START - MINUTE_MS))
    clean = asyncio.run(BacktestRunner(config, store, run_id="bt", model=before).run(START, end))
    assert not any(w.startswith("look-ahead") for w in clean.warnings)


def test_a_replay_before_the_model_s_training_window_warns_it_was_trained_on_later_data(config: HotcoinConfig, store: Path) -> None:
    """A model trained wholly after the replay learned from how its market went on: the plainest
    look-ahead, which the overlap check let through without a word."""
    end = START + 30 * MINUTE_MS
    trained = (end + 60 * MINUTE_MS, end + 600 * MINUTE_MS)
    load = dataclasses.replace(loaded("production"), training_window=trained)
    result = asyncio.run(BacktestRunner(config, store, run_id="bt", model=load).run(START, end))
    (warning,) = [w for w in result.warnings if w.startswith("look-ahead")]
    assert warning == (
        f"look-ahead: model {load.model} (production) was trained on later data ({utc_minute(trained[0])} .. "
        f"{utc_minute(trained[1])}, after this replay ends at {utc_minute(end)}): it learned from how this market went "
        f"on, so its scores flatter it. Judge a model trained on data that ends before {utc_minute(START)}"
    )
