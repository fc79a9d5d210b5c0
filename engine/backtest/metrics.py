"""Backtest metrics from the equity curve (one point per cycle) and the closed trades.

Sharpe and Sortino are annualised from per-cycle returns (mean / std x sqrt(cycles per year),
risk-free rate 0); the replay's cycle is one minute at every timeframe, so that is sqrt(525,600)
(docs/backtest.md, "How the metrics are computed", says so where users read). Max drawdown is
the largest fall from a running peak of equity, as a fraction. Exposure is the share of cycles
with any position or entry in flight. Win rate and profit factor (gross profit / gross loss, inf with
no loss) are None with no closed trade: a run whose only position is still open has neither,
and 0 read as "every trade lost". JSON has no infinity, so an infinite profit factor is `null`
there too, with `no_losing_trade` true to tell it from no trade at all.

`by_exit_reason` splits the closed trades' realised PnL by the exit that realised it: each sell
fill by its order's purpose, and the crumbs written off as dust apart. A strategy's total hides
how it makes and loses money: on the real April 2021 month the default settings' signal exits
closed three trades in four within minutes, at a loss, while trailing stops and take-profits
made money; the split shows that at a glance. Crediting a trade's whole PnL to its last exit
(what it did first) gave a take-profit tier's gain to the trailing stop or signal exit that sold
the rest: take-profits showed +19.19 on that month for +51.81 made, trailing stops +40.59 for
+15.85, and the 213 write-offs' -10.08 hid inside the others.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class Metrics:
    total_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    win_rate: float | None  # None: no closed trade
    profit_factor: float | None  # None: no closed trade; inf: no losing one
    exposure: float
    trades: int
    final_equity: float

    @property
    def no_losing_trade(self) -> bool:
        """Trades closed and none lost: the profit factor is infinite."""
        return self.profit_factor is not None and math.isinf(self.profit_factor)

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-safe: infinities become None, so `no_losing_trade` tells an infinite profit factor
        (trades, none lost) from none at all (no closed trade), which both read `null`."""
        out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}
        return {**out, "no_losing_trade": self.no_losing_trade}


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
    pf: float | None
    if not pnls:
        pf = None
    elif not losses:
        pf = math.inf
    else:
        pf = sum(wins) / sum(losses)
    return Metrics(
        total_return=float(curve[-1] / initial_equity - 1.0),
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_dd,
        win_rate=len(wins) / len(pnls) if pnls else None,
        profit_factor=pf,
        exposure=float(np.mean(np.asarray(exposure) > 0)) if len(exposure) else 0.0,
        trades=len(pnls),
        final_equity=float(curve[-1]),
    )


class ExitShare(Protocol):
    """What one exit took of a position (`engine.backtest.runner.ExitPart`)."""

    @property
    def reason(self) -> str: ...

    @property
    def rules(self) -> tuple[str, ...]: ...

    @property
    def ts_ms(self) -> int: ...

    @property
    def pnl(self) -> float: ...

    @property
    def fees(self) -> float: ...


class ClosedTrade(Protocol):
    """What the split reads of a round trip (`engine.backtest.runner.Trade`)."""

    @property
    def exit_reason(self) -> str: ...

    @property
    def exits(self) -> Sequence[ExitShare]: ...

    @property
    def exit_rules(self) -> tuple[str, ...]: ...

    @property
    def pnl(self) -> float: ...

    @property
    def fees(self) -> float: ...

    @property
    def opened_ms(self) -> int: ...

    @property
    def closed_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ExitStats:
    """What one exit made across the closed trades: the sell fills of one purpose (with the rules
    of a signal exit, `exit_label`), or the dust written off (`dust`)."""

    reason: str
    trades: int  # trades it sold some or all of (a take-profit tier and the trailing stop after it: one each)
    wins: int  # of those, the trades where its fills made money in all
    pnl: float  # its fills' realised PnL, fees included: the rows add up to the trades' PnL
    fees: float  # its fills' own fees and the entry fees of the coins they sold
    median_hold_ms: int  # from the trade's entry to its last fill of this exit
    fills: int = 0  # its sell fills (a write-off counts one)

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "win_rate": self.win_rate}


def exit_label(trade: ClosedTrade) -> str:
    """What closed a trade: its last sell's purpose, with the rules that fired for a signal exit
    ("signal_exit: momentum_fade"), since signal exits are most of the exits and the rules differ."""
    return f"{trade.exit_reason}: {', '.join(trade.exit_rules)}" if trade.exit_rules else trade.exit_reason


def share_label(share: ExitShare) -> str:
    """`exit_label` of one exit's share."""
    return f"{share.reason}: {', '.join(share.rules)}" if share.rules else share.reason


def by_exit_reason(trades: Iterable[ClosedTrade]) -> list[ExitStats]:
    """The closed trades' exits grouped by reason, most trades first (then by reason, for a
    stable order): each trade's PnL split among the exits that realised it, fill by fill."""
    groups: dict[str, list[tuple[ClosedTrade, list[ExitShare]]]] = {}
    for t in trades:
        mine: dict[str, list[ExitShare]] = {}
        for share in t.exits:
            mine.setdefault(share_label(share), []).append(share)
        for label, shares in mine.items():
            groups.setdefault(label, []).append((t, shares))
    out = [
        ExitStats(
            reason=reason,
            trades=len(group),
            wins=sum(sum(s.pnl for s in shares) > 0 for _, shares in group),
            pnl=sum(s.pnl for _, shares in group for s in shares),
            fees=sum(s.fees for _, shares in group for s in shares),
            median_hold_ms=int(statistics.median(max(s.ts_ms for s in shares) - t.opened_ms for t, shares in group)),
            fills=sum(len(shares) for _, shares in group),
        )
        for reason, group in groups.items()
    ]
    return sorted(out, key=lambda e: (-e.trades, e.reason))
