"""The sliced candles of `HistoryFeed` equal the market's ring candles (the runtime's path),
candle for candle: before and after an outage, across a listing, at the ring's edges."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.backtest.feed import CandleSlicer, HistoryFeed
from engine.backtest.history import HistoryStore, index_history
from engine.clock import SimClock
from engine.config.sections.sim import SimSection
from engine.domain import Candle
from engine.sim.parquet_source import ParquetMarket
from tests.engine.backtest.conftest import DAYS_MIN, GAP, LISTING_AT, MIN, T0

WINDOW = 63


@pytest.mark.parametrize("history", [0, 90, 1440], ids=["no-history", "short-history", "a-day"])
def test_sliced_candles_equal_ring_candles(store: Path, history: int) -> None:
    index = index_history(store)
    sim = SimSection(data_dir=store, history_minutes=history, candle_ring_minutes=1500)
    start = T0 + 1200 * MIN
    market = ParquetMarket(sim, start)
    sliced = HistoryFeed(
        market, SimClock(start), index, slicer=CandleSlicer(index, HistoryStore(store), start - history * MIN, 1500)
    )
    ring = HistoryFeed(market, SimClock(start), index)

    async def check() -> int:
        compared = 0
        times = sorted({*range(1200, DAYS_MIN, 7), GAP[0], GAP[0] + 1, GAP[1], GAP[1] + 1, LISTING_AT, LISTING_AT + 2})
        for minute in times:
            market.advance_to(T0 + minute * MIN + 20_000)  # mid-minute: a running candle exists
            for symbol in market.symbols:
                for limit in (3, WINDOW):
                    want: list[Candle] = [c for c in await ring.candles(symbol, "1m", limit) if c.closed]
                    got = await sliced.candles(symbol, "1m", limit)
                    assert got == want, (symbol, minute, limit)
                    compared += len(got)
        return compared

    assert asyncio.run(check()) > 1000


def test_other_timeframes_come_from_the_rings(store: Path) -> None:
    index = index_history(store)
    start = T0 + 1300 * MIN
    market = ParquetMarket(SimSection(data_dir=store, history_minutes=600), start)
    feed = HistoryFeed(market, SimClock(start), index, slicer=CandleSlicer(index, HistoryStore(store), start - 600 * MIN, 1500))
    five = asyncio.run(feed.candles("BTC/USDT", "5m", 10))
    assert [c.open_ms % (5 * MIN) for c in five] == [0] * len(five) and len(five) == 10


def test_data_age_is_the_index_s_through_an_outage(store: Path) -> None:
    """The feed's data age (a set of the data minutes as ints, then a bisect of them) is the
    index's, bit for bit: every 20 s from before the first candle to past the last, through
    the outage (the set answers at the minutes with data, the bisect between and in gaps)."""
    index = index_history(store)
    start = T0 + 1200 * MIN
    feed = HistoryFeed(ParquetMarket(SimSection(data_dir=store), start), SimClock(start), index)
    times = range(T0 - 2 * MIN, T0 + (DAYS_MIN + 3) * MIN, 20_000)
    ages = [feed.data_age_s(t) for t in times]
    assert ages == [index.data_age_s(t) for t in times]
    assert max(ages) >= (GAP[1] - GAP[0] - 1) * 60  # the outage shows


def test_a_batch_that_does_not_yield_is_the_one_that_does(store: Path) -> None:
    """A replay feed computing its minutes ahead that does not yield to the loop (a backtest
    with its journal off) steps its tape itself, without `SimFeed.next_batch`: the same
    batches, field for field, as one that yields, across the listing and the outage."""
    index = index_history(store)
    start = T0 + 1200 * MIN
    sim = SimSection(data_dir=store, history_minutes=600)

    def feed(yields: bool) -> HistoryFeed:
        slicer = CandleSlicer(index, HistoryStore(store), start - 600 * MIN, 1500)
        made = HistoryFeed(ParquetMarket(sim, start), SimClock(start), index, slicer=slicer, ahead=True)
        made.yields = yields
        return made

    async def batches(made: HistoryFeed) -> list[tuple[object, ...]]:
        out = []
        for _ in range(DAYS_MIN - 1200 - 2):
            b = await made.next_batch()
            out.append((b.ts_ms, b.symbols, *(getattr(b, f).tolist() for f in ("bid", "ask", "last", "quote_volume_24h"))))
        return out

    plain, direct = feed(True), feed(False)
    assert asyncio.run(batches(direct)) == asyncio.run(batches(plain))
    assert direct._switched is direct.market, "the direct path ran"
