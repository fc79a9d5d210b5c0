"""Backtest metrics from the equity curve (one point per cycle) and the closed trades.

Sharpe and Sortino are annualised from per-cycle returns (mean / std x sqrt(cycles per year),
risk-free rate 0); with a one-minute cycle that is sqrt(525,600). Max drawdown is the largest
fall from a running peak of equity, as a fraction. Exposure is the share of cycles with any
position or entry in flight. Profit factor is gross profit / gross loss (inf with no loss,
0 with no trade).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class Metrics:
    total_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    win_rate: float
    profit_factor: float
    exposure: float
    trades: int
    final_equity: float

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-safe: infinities become None."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def compute(
    initial_equity: float,
    equity: npt.NDArray[np.float64],
    exposure: npt.NDArray[np.float64],
    pnls: Sequence[float],
    step_ms: int,
) -> Metrics:
    """Metrics of one run; `equity` and `exposure` sampled every `step_ms` of sim time."""
    curve = np.concatenate([[initial_equity], np.asarray(equity, np.float64)])
    rets = curve[1:] / curve[:-1] - 1.0 if len(curve) > 1 else np.zeros(0)
    per_year = math.sqrt(YEAR_MS / step_ms)
    sharpe = sortino = 0.0
    if len(rets) > 1:
        sd = float(rets.std(ddof=1))
        mean = float(rets.mean())
        sharpe = mean / sd * per_year if sd > 0 else 0.0
        downside = float(np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2)))
        sortino = mean / downside * per_year if downside > 0 else 0.0
    peak = np.maximum.accumulate(curve)
    max_dd = float(np.max(1.0 - curve / peak)) if len(curve) else 0.0
    wins = [p for p in pnls if p > 0]
    losses = [-p for p in pnls if p < 0]
    if not pnls:
        pf = 0.0
    elif not losses:
        pf = math.inf
    else:
        pf = sum(wins) / sum(losses)
    return Metrics(
        total_return=float(curve[-1] / initial_equity - 1.0),
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_dd,
        win_rate=len(wins) / len(pnls) if pnls else 0.0,
        profit_factor=pf,
        exposure=float(np.mean(np.asarray(exposure) > 0)) if len(exposure) else 0.0,
        trades=len(pnls),
        final_equity=float(curve[-1]),
    )
