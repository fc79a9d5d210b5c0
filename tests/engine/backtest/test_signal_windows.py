"""The bars the signal stage reads are the store's candles: a symbol that leaves the pool and
comes back gets every bar it missed (a hole would make its features NaN for an hour, and no
entry rule passes on NaN)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.backtest.history import HistoryStore
from engine.backtest.runner import BacktestRunner
from engine.config import HotcoinConfig
from engine.signals.features import WINDOW, CandidateInfo, FloatArray
from engine.signals.stage import SignalStage
from tests.engine.backtest.conftest import MIN, START


def test_every_window_holds_every_stored_candle(config: HotcoinConfig, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int, FloatArray]] = []
    original = SignalStage._features

    def recording(
        self: SignalStage, symbols: list[str], info: CandidateInfo, bar_ms: int, listed: FloatArray | None = None
    ) -> tuple[FloatArray, FloatArray]:
        window = self.history.window(list(symbols), bar_ms)
        seen.extend((s, bar_ms, window.close[:, j].copy()) for j, s in enumerate(symbols))
        return original(self, symbols, info, bar_ms, listed)

    monkeypatch.setattr(SignalStage, "_features", recording)
    asyncio.run(BacktestRunner(config, store).run(START, None))
    stored = {s: HistoryStore(store).read(s, "1m") for s in {s for s, _, _ in seen}}
    returns = 0  # evaluations of a symbol that was out of the pool for a while just before
    last: dict[str, int] = {}
    for symbol, bar_ms, closes in seen:
        series = stored[symbol]
        opens = np.arange(bar_ms - (WINDOW - 1) * MIN, bar_ms + MIN, MIN)
        at = np.searchsorted(series.ts, opens)
        found = (at < len(series.ts)) & (series.ts[np.minimum(at, len(series.ts) - 1)] == opens)
        want = np.where(found, series.close[np.minimum(at, len(series.ts) - 1)], np.nan)
        assert np.array_equal(closes, want, equal_nan=True), (symbol, bar_ms)
        if symbol in last and bar_ms - last[symbol] > 3 * MIN:
            returns += 1
        last[symbol] = bar_ms
    assert returns > 0, "no symbol came back to the pool: the test proves nothing"
