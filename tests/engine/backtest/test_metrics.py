"""Metrics against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.backtest.metrics import YEAR_MS, by_exit_reason, compute, exit_label
from engine.backtest.runner import ExitPart, Trade

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
    [([], None, None), ([1.0, 2.0], math.inf, 1.0), ([-1.0], 0.0, 0.0)],
    ids=["no-trades", "no-losses", "only-losses"],
)
def test_profit_factor_edges(pnls: list[float], pf: float | None, win: float | None) -> None:
    """No closed trade: neither figure exists (None, not a 0 that reads as all trades lost)."""
    m = compute(100.0, np.array([100.0, 100.0]), np.zeros(2), pnls, STEP)
    assert m.profit_factor == pf
    assert m.win_rate == win
    assert m.sharpe == 0.0 and m.max_drawdown == 0.0
    assert m.as_dict()["profit_factor"] == (None if pf is None or math.isinf(pf) else pf)


@pytest.mark.parametrize(("pnls", "none_lost"), [([], False), ([1.0, 2.0], True), ([-1.0, 2.0], False)])
def test_json_tells_no_losing_trade_from_no_trade(pnls: list[float], none_lost: bool) -> None:
    """`profit_factor` is null in JSON both with no closed trade and with no losing one (an
    infinite factor JSON cannot hold): `no_losing_trade` tells which."""
    doc = compute(100.0, np.array([100.0, 101.0]), np.zeros(2), pnls, STEP).as_dict()
    assert doc["no_losing_trade"] is none_lost
    assert (doc["profit_factor"] is None) == (not pnls or none_lost)


def _trade(reason: str, pnl: float, held_min: int, fees: float = 0.1, rules: tuple[str, ...] = ()) -> Trade:
    part = ExitPart(reason, rules, held_min * 60_000, 1.0, pnl, fees)  # one exit sold it all
    return Trade("A/USDT", "t", 0, held_min * 60_000, 1.0, 10.0, 10.0 + pnl, fees, pnl, reason, rules, (part,))


def test_trades_split_by_exit_reason() -> None:
    trades = [
        _trade("signal_exit", -1.0, 5), _trade("trailing_stop", 2.0, 30), _trade("signal_exit", 0.5, 9),
        _trade("signal_exit", -0.25, 7), _trade("stop_loss", -2.0, 3), _trade("trailing_stop", 1.0, 10),
    ]  # fmt: skip
    split = by_exit_reason(trades)
    assert [(e.reason, e.trades, e.wins) for e in split] == [
        ("signal_exit", 3, 1), ("trailing_stop", 2, 2), ("stop_loss", 1, 0),
    ]  # fmt: skip
    sig = split[0]
    assert sig.pnl == pytest.approx(-0.75) and sig.fees == pytest.approx(0.3)
    assert sig.median_hold_ms == 7 * 60_000 and split[1].median_hold_ms == 20 * 60_000  # even count: the mean of the middle two
    assert all(type(e.as_dict()["median_hold_ms"]) is int for e in split)  # whole ms in --json, odd count or even
    assert sig.win_rate == pytest.approx(1 / 3)
    assert sum(e.trades for e in split) == len(trades)
    assert sig.as_dict()["win_rate"] == pytest.approx(1 / 3) and sig.as_dict()["reason"] == "signal_exit"
    assert by_exit_reason([]) == []


def test_signal_exits_split_by_the_rules_that_fired() -> None:
    fade, wick = ("momentum_fade",), ("momentum_fade", "reversal")
    trades = [
        _trade("signal_exit", -1.0, 5, rules=fade), _trade("signal_exit", 0.5, 9, rules=wick),
        _trade("signal_exit", -0.25, 7, rules=fade), _trade("take_profit", 1.0, 20),
    ]  # fmt: skip
    split = by_exit_reason(trades)
    assert [(e.reason, e.trades) for e in split] == [
        ("signal_exit: momentum_fade", 2), ("signal_exit: momentum_fade, reversal", 1), ("take_profit", 1),
    ]  # fmt: skip
    assert exit_label(trades[1]) == "signal_exit: momentum_fade, reversal" and exit_label(trades[3]) == "take_profit"


def test_each_exit_is_credited_with_what_its_own_fills_made() -> None:
    """A trade whose take-profit tier made +3 and whose trailing stop sold the rest for -1 (and
    left crumbs written off): the split credited all +1.9 to the trailing stop, its last exit;
    each exit now shows what its own fills realised, and the rows still add up to the trades."""
    m = 60_000
    tiered = Trade(
        "A/USDT", "t1", 0, 30 * m, 2.0, 10.0, 10.5, 0.3, 1.9, "trailing_stop", (),
        (ExitPart("take_profit", (), 5 * m, 1.0, 3.0, 0.1), ExitPart("take_profit", (), 9 * m, 0.5, 0.5, 0.05),
         ExitPart("trailing_stop", (), 30 * m, 0.49, -1.5, 0.15), ExitPart("dust", (), 30 * m, 0.01, -0.1, 0.0)),
    )  # fmt: skip
    faded = Trade(
        "B/USDT", "t2", 0, 8 * m, 1.0, 10.0, 9.0, 0.2, -1.2, "signal_exit", ("momentum_fade",),
        (ExitPart("signal_exit", ("momentum_fade",), 8 * m, 1.0, -1.2, 0.2),),
    )  # fmt: skip
    split = {e.reason: e for e in by_exit_reason([tiered, faded])}
    assert {r: (e.trades, e.fills, e.wins) for r, e in split.items()} == {
        "take_profit": (1, 2, 1), "trailing_stop": (1, 1, 0), "dust": (1, 1, 0), "signal_exit: momentum_fade": (1, 1, 0),
    }  # fmt: skip
    assert split["take_profit"].pnl == pytest.approx(3.5) and split["take_profit"].fees == pytest.approx(0.15)
    assert split["trailing_stop"].pnl == pytest.approx(-1.5) and split["dust"].pnl == pytest.approx(-0.1)
    assert split["take_profit"].median_hold_ms == 9 * m  # entry to its last fill, not to the trade's close
    assert sum(e.pnl for e in split.values()) == pytest.approx(tiered.pnl + faded.pnl)
    assert split["take_profit"].as_dict()["fills"] == 2


def test_the_docs_say_how_sharpe_sortino_and_exposure_are_computed() -> None:
    """docs/backtest.md, where a user reads the report, says what the code does: 1-minute
    equity returns, annualised with the factor `metrics_of` applies, risk-free rate 0, and
    exposure as a share of minutes; and the factor it names is the code's."""
    from pathlib import Path

    from engine.backtest import api

    docs = (Path(__file__).resolve().parents[3] / "docs" / "backtest.md").read_text()
    start = docs.find("### How the metrics are computed")
    assert start >= 0, "docs/backtest.md has no section on how the metrics are computed"
    section = " ".join(docs[start : docs.index("\n### ", start + 1)].split())
    minutes = YEAR_MS // api.MINUTE_MS
    assert f"sqrt({minutes:,})" in section and minutes == 525_600
    for said in ("1-minute equity returns", "risk-free rate 0", "downside deviation", "share of minutes"):
        assert said in section, said
    curve = np.array([101.0, 100.5, 102.0, 101.0])
    m = compute(100.0, curve, np.zeros(4), [], api.MINUTE_MS)  # as `metrics_of` calls it
    rets = np.diff(np.concatenate([[100.0], curve])) / np.concatenate([[100.0], curve])[:-1]
    assert m.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(525_600))
    assert m.sortino == pytest.approx(rets.mean() / math.sqrt(np.mean(np.minimum(rets, 0) ** 2)) * math.sqrt(525_600))
