from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from engine.domain import EngineState, OrderPurpose, OrderStatus, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError
from tests.kit.domain import make_batch, make_candidate, make_candle, make_position


def test_values_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_candidate().heat = 1.0  # type: ignore[misc]


def test_ticker_batch_round_trips_rows_and_is_read_only() -> None:
    batch = make_batch({"A/USDT": 1.0, "B/USDT": 2.0}, quote_volume_24h={"B/USDT": 5.0})
    assert batch.row(1).quote_volume_24h == 5.0
    assert [t.symbol for t in batch.tickers()] == ["A/USDT", "B/USDT"]
    with pytest.raises(ValueError, match="read-only"):
        batch.last[0] = 3.0


def test_ticker_batch_rejects_ragged_columns() -> None:
    batch = make_batch({"A/USDT": 1.0})
    with pytest.raises(MarketDataError, match="shape"):
        dataclasses.replace(batch, last=np.array([1.0, 2.0]))


def test_empty_batch_is_valid() -> None:
    assert len(TickerBatch.from_tickers(0, [])) == 0


@pytest.mark.parametrize(
    "overrides",
    [{"close": math.nan}, {"low": 0.0}, {"volume": -1.0}, {"high": 0.1}],
    ids=["nan-close", "zero-low", "negative-volume", "high-below-close"],
)
def test_impossible_candles_are_rejected(overrides: dict[str, float]) -> None:
    with pytest.raises(MarketDataError):
        make_candle(**overrides).validate()


def test_candle_close_time_and_unknown_timeframe() -> None:
    assert make_candle().close_ms - make_candle().open_ms == 60_000
    with pytest.raises(MarketDataError, match="unknown timeframe '7m'"):
        timeframe_ms("7m")


def test_state_and_order_enums_say_what_they_allow() -> None:
    assert EngineState.TRADEABLE.allows_entries
    assert not EngineState.DEGRADED.allows_entries
    assert OrderPurpose.CLOSE_ALL.is_exit and not OrderPurpose.ENTRY.is_exit
    assert OrderStatus.FILLED.is_terminal and not OrderStatus.PARTIALLY_FILLED.is_terminal


def test_position_pnl() -> None:
    pos = make_position(quantity=100.0, entry_price=0.3, entry_fees=0.03)
    assert pos.unrealised_pnl(0.33) == pytest.approx(3.0 - 0.03)  # net of the entry fee, like realised PnL
    assert pos.notional(0.33) == pytest.approx(33.0)
