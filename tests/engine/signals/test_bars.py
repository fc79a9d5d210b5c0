"""`Bars` and `BarHistory.add_bars`: closed, checked bars in one piece, stored as adding them one by one would."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.domain import Bars
from engine.errors import MarketDataError
from engine.signals.bars import BarHistory
from tests.kit.domain import T0, make_candle

MIN = 60_000


def test_bars_of_keeps_closed_checked_bars_in_time_order() -> None:
    candles = [
        make_candle(open_ms=T0 + 2 * MIN, close=1.2),
        make_candle(open_ms=T0, close=1.0),
        make_candle(open_ms=T0 + MIN, close=1.1),
        make_candle(open_ms=T0 + MIN, close=1.15),  # the same bar again: the later one counts
        make_candle(open_ms=T0 + 3 * MIN, close=1.3, closed=False),  # still running: left out
    ]
    bars = Bars.of("DOGE/USDT", "1m", candles)
    assert bars.open_ms.tolist() == [T0, T0 + MIN, T0 + 2 * MIN]
    assert bars.ohlcv[:, 3].tolist() == [1.0, 1.15, 1.2]
    assert bars.ohlcv.shape == (3, 5) and len(Bars.of("DOGE/USDT", "1m", [])) == 0


@pytest.mark.parametrize(
    ("candle", "message"),
    [
        (make_candle(close=math.nan), "non-finite price"),
        (make_candle(volume=-1.0), "bad volume"),
        (make_candle(low=0.5), "do not bound"),
        (make_candle(symbol="PEPE/USDT"), "a PEPE/USDT 1m bar among DOGE/USDT 1m bars"),
        (make_candle(timeframe="5m"), "a DOGE/USDT 5m bar among DOGE/USDT 1m bars"),
    ],
)
def test_bars_of_refuses_what_no_exchange_prints_and_foreign_bars(candle: object, message: str) -> None:
    with pytest.raises(MarketDataError, match=message):
        Bars.of("DOGE/USDT", "1m", [make_candle(open_ms=T0 - MIN), candle])  # type: ignore[list-item]


def test_add_bars_stores_what_adding_each_candle_stores() -> None:
    """More bars than the history is deep, with a hole: later bars take their slots, the hole
    reads NaN, as when the candles are added one at a time."""
    candles = [make_candle(open_ms=T0 + k * MIN, close=1.0 + k / 100) for k in range(70) if k != 40]
    one, many = BarHistory("1m", depth=61), BarHistory("1m", depth=61)
    for c in candles:
        one.add(c)
    many.add_bars(Bars.of("DOGE/USDT", "1m", candles[:5]))
    many.add_bars(Bars.of("DOGE/USDT", "1m", candles[5:]))
    assert np.array_equal(one._data, many._data, equal_nan=True) and np.array_equal(one._bar, many._bar)
    window = many.window(["DOGE/USDT"], T0 + 69 * MIN)
    assert np.isnan(window.close[40 - 9, 0]) and window.close[-1, 0] == pytest.approx(1.69)


def test_add_bars_refuses_another_timeframe() -> None:
    history = BarHistory("5m")
    with pytest.raises(MarketDataError, match="a 1m bar fed to a 5m history"):
        history.add_bars(Bars.of("DOGE/USDT", "1m", [make_candle()]))
