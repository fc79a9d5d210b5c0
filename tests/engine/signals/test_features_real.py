"""features_hot on real Binance candles (../shared/data/binance): the live path, fed bar by bar
through `BarHistory`, equals the batch path; and the entry rules see DOGE's 2021-04-16 pump."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config.sections.trading import SignalSettings
from engine.domain import Candle, SignalDecision
from engine.signals.bars import BarHistory
from engine.signals.features import BarMatrix, CandidateInfo, features_hot, features_hot_latest
from engine.signals.rules import SignalRules

pytestmark = pytest.mark.shared_data
MINUTE = 60_000
PAIRS = ("DOGE/USDT", "WIN/USDT")


def load(shared: Path) -> tuple[np.ndarray, BarMatrix, np.ndarray]:
    frames = {p: pd.read_parquet(shared / f"{p.replace('/', '_')}-1m.parquet").set_index("timestamp_ms") for p in (*PAIRS, "BTC/USDT")}
    start = min(int(f.index.min()) for f in frames.values())
    end = max(int(f.index.max()) for f in frames.values())
    grid = np.arange(start, end + MINUTE, MINUTE)  # the exchange-wide outages become NaN rows
    full = {p: f.reindex(grid) for p, f in frames.items()}
    cols = {k: np.stack([full[p][k].to_numpy(np.float64) for p in PAIRS], axis=1) for k in ("open", "high", "low", "close", "volume")}
    return grid, BarMatrix(**cols), full["BTC/USDT"]["close"].to_numpy(np.float64)


def test_live_history_path_equals_batch_on_real_candles(shared_data: Path) -> None:
    grid, bars, btc = load(shared_data)
    info = CandidateInfo(*(np.full(bars.close.shape, v) for v in (80, 0.8, 0.7, 0, 0.1, 0.5, 0.2, 3, 1, 900)))
    batch = features_hot(bars, info, btc)
    history = BarHistory("1m")
    latest_info = CandidateInfo(*(a[0] for a in info.arrays()))
    checked = 0
    for t, open_ms in enumerate(grid.tolist()):
        for j, symbol in enumerate((*PAIRS, "BTC/USDT")):
            row = (bars.open[t, j], bars.high[t, j], bars.low[t, j], bars.close[t, j], bars.volume[t, j]) if j < 2 else None
            if row is None:
                if not np.isnan(btc[t]):
                    history.add(Candle(symbol, "1m", open_ms, btc[t], btc[t], btc[t], btc[t], 0.0))
            elif not np.isnan(row[3]):
                history.add(Candle(symbol, "1m", open_ms, *row))
        if t % 97 == 0 or 27_020 <= t <= 27_200:  # a sample, plus every bar around the 2021-04-20 outage
            live = features_hot_latest(history.window(PAIRS, open_ms), latest_info, history.closes("BTC/USDT", open_ms))
            np.testing.assert_allclose(live, batch[t], rtol=1e-9, atol=1e-12, err_msg=f"bar {t}")
            checked += 1
    assert checked > 500


def test_entry_rules_fire_early_in_dogecoins_pump(shared_data: Path) -> None:
    grid, bars, btc = load(shared_data)
    info = CandidateInfo(*(np.full(bars.close.shape, v) for v in (80, 0.8, 0.7, 0, 0.1, 0.5, 0.2, 3, 1, 900)))
    x = features_hot(bars, info, btc)[:, 0, :]
    pump = pd.Timestamp("2021-04-16 13:00", tz="UTC").value // 1_000_000
    window = (grid >= pump - 10 * MINUTE) & (grid <= pump + 30 * MINUTE)
    outs = SignalRules(SignalSettings()).entry(x[window], min_heat=70.0, since_last_action_ms=np.full(int(window.sum()), np.inf))
    enters = [int(grid[window][i]) for i, o in enumerate(outs) if o.decision is SignalDecision.ENTER]
    assert enters, "no entry signal during the pump"
    assert min(enters) <= pump + 15 * MINUTE
