"""Buy and hold over a backtest's window, against prices worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from engine.backtest.benchmark import market_change, pair_change
from engine.backtest.history import CandleSeries

MIN = 60_000
START, END = 100 * MIN, 200 * MIN


def _series(symbol: str, minutes: list[int], closes: list[float], opens: list[float] | None = None) -> CandleSeries:
    ts = np.array(minutes, np.int64) * MIN
    c = np.array(closes, np.float64)
    o = np.array(opens if opens is not None else closes, np.float64)
    return CandleSeries(symbol, "1m", ts, o, np.maximum(o, c), np.minimum(o, c), c, np.ones(len(ts)))


def test_prices_are_the_last_closes_known_at_start_and_end() -> None:
    # The candle opening at 99 closes at START; the one opening at 199 closes at END (the one
    # opening at 200 is not closed by then).
    s = _series("A/USDT", [98, 99, 150, 199, 200], [9.0, 10.0, 11.0, 12.0, 99.0])
    assert pair_change(s, START, END) == pytest.approx(0.2)
    gap = _series("B/USDT", [90, 150, 190], [4.0, 5.0, 6.0])  # an outage over the start and the end
    assert pair_change(gap, START, END) == pytest.approx(0.5)


def test_listings_inside_the_window_are_bought_at_their_first_close_and_dead_pairs_are_left_out() -> None:
    listed = _series("NEW/USDT", [120, 121], [2.0, 3.0], opens=[0.1, 2.0])  # the listing's opening print: not for sale
    assert pair_change(listed, START, END) == pytest.approx(0.5)
    assert pair_change(_series("OLD/USDT", [10, 99], [1.0, 1.0]), START, END) is None  # nothing closed inside
    assert pair_change(_series("LATE/USDT", [200, 201], [1.0, 1.0]), START, END) is None  # listed after the end
    assert pair_change(_series("LAST/USDT", [199], [1.0]), START, END) == 0.0  # bought and sold on one candle


def test_mean_over_the_pairs_that_traded_and_the_reference_alone() -> None:
    series = [
        _series("BTC/USDT", [99, 199], [100.0, 90.0]),
        _series("A/USDT", [99, 199], [1.0, 1.5]),
        _series("OLD/USDT", [10, 20], [1.0, 2.0]),
        _series("EMPTY/USDT", [], []),
    ]
    m = market_change(series, START, END, "BTC/USDT")
    assert m.changes == pytest.approx({"BTC/USDT": -0.1, "A/USDT": 0.5})
    assert m.pairs == 2 and m.mean == pytest.approx(0.2) and m.reference_change == pytest.approx(-0.1)
    assert m.as_dict()["reference_change"] == pytest.approx(-0.1)
    none = market_change([], START, END, "BTC/USDT")
    assert (none.mean, none.pairs, none.reference_change) == (0.0, 0, None)
