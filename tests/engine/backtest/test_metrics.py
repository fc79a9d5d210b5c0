"""Metrics against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.backtest.metrics import YEAR_MS, compute

STEP = 60_000


def test_known_curve() -> None:
    equity = np.array([110.0, 99.0, 121.0])
    m = compute(100.0, equity, np.array([1.0, 0.0, 1.0]), [10.0, -5.0, 20.0], STEP)
    assert m.total_return == pytest.approx(0.21)
    assert m.max_drawdown == pytest.approx(0.1)  # 110 -> 99
    assert m.win_rate == pytest.approx(2 / 3)
    assert m.profit_factor == pytest.approx(30 / 5)
    assert m.exposure == pytest.approx(2 / 3)
    assert m.trades == 3
    rets = np.array([0.1, -0.1, 121 / 99 - 1])
    k = math.sqrt(YEAR_MS / STEP)
    assert m.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * k)
    assert m.sortino == pytest.approx(rets.mean() / math.sqrt(0.01 / 3) * k)


@pytest.mark.parametrize(
    ("pnls", "pf", "win"),
    [([], 0.0, 0.0), ([1.0, 2.0], math.inf, 1.0), ([-1.0], 0.0, 0.0)],
    ids=["no-trades", "no-losses", "only-losses"],
)
def test_profit_factor_edges(pnls: list[float], pf: float, win: float) -> None:
    m = compute(100.0, np.array([100.0, 100.0]), np.zeros(2), pnls, STEP)
    assert m.profit_factor == pf
    assert m.win_rate == win
    assert m.sharpe == 0.0 and m.max_drawdown == 0.0
    assert m.as_dict()["profit_factor"] == (None if math.isinf(pf) else pf)
