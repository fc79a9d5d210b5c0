"""`HistoryFeed.candles(..., after_ms=t)` is `candles(...)` less the candles opening at or before t, on both of its paths
(sliced from the store and rebuilt from the rings), across the outage and the listing; `closed_bars` is the same
candles as columns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.backtest.feed import CandleSlicer, HistoryFeed
from engine.backtest.history import HistoryStore, index_history
from engine.clock import SimClock
from engine.config.sections.sim import SimSection
from engine.domain import Bars
from engine.sim.parquet_source import ParquetMarket
from tests.engine.backtest.conftest import DAYS_MIN, GAP, LISTING_AT, MIN, T0


@pytest.mark.parametrize("sliced", [True, False], ids=["sliced", "rings"])
def test_after_ms_drops_exactly_the_candles_fed(store: Path, sliced: bool) -> None:
    index = index_history(store)
    start = T0 + 1200 * MIN
    market = ParquetMarket(SimSection(data_dir=store, history_minutes=90, candle_ring_minutes=1500), start)
    slicer = CandleSlicer(index, HistoryStore(store), start - 90 * MIN, 1500) if sliced else None
    feed = HistoryFeed(market, SimClock(start), index, slicer=slicer)

    async def check() -> int:
        compared = 0
        minutes = sorted({*range(1200, DAYS_MIN, 37), GAP[0] + 1, GAP[1] + 2, LISTING_AT, LISTING_AT + 3})
        for minute in minutes:
            market.advance_to(T0 + minute * MIN)
            for symbol in market.symbols:
                full = await feed.candles(symbol, "1m", 5)
                cuts = [None, T0 - MIN, *(c.open_ms for c in full), T0 + minute * MIN]
                for after in cuts:
                    want = [c for c in full if after is None or c.open_ms > after]
                    assert await feed.candles(symbol, "1m", 5, after_ms=after) == want, (symbol, minute, after)
                    bars = await feed.closed_bars(symbol, "1m", 5, after_ms=after)  # the core's columns
                    expected = Bars.of(symbol, "1m", want)
                    assert np.array_equal(bars.open_ms, expected.open_ms), (symbol, minute, after)
                    assert np.array_equal(bars.ohlcv, expected.ohlcv), (symbol, minute, after)
                    compared += len(want)
        return compared

    assert asyncio.run(check()) > 500
