"""The backtester honours a model's promotion decision exactly as the runtime does: a
production model decides, a research_only (shadow) model only watches."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.backtest.runner import BacktestRunner
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
