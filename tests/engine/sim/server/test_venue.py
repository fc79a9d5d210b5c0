"""The sim clock and the venue that keeps market, clock and matching in step."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.sim.matching import ExecutionEvent, OrderRequest, OrderState
from engine.sim.server import SimClock
from engine.sim.server.venue import SimVenue
from tests.kit.sim_exchange import T0, FakeMarketSource


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_sim_time_runs_at_speed() -> None:
    wall = FakeMonotonic()
    clock = SimClock(T0, speed=60, monotonic=wall)
    wall.t += 2.5
    assert clock.now_ms() == T0 + 150_000


@pytest.mark.parametrize("speed", [0.5, 1001])
def test_speed_outside_range_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be between 1 and 1000"):
        SimClock(T0, speed)


def test_sync_advances_the_market_and_fills_crossed_orders() -> None:
    wall = FakeMonotonic()
    source = FakeMarketSource()
    venue = SimVenue(source, SimClock(T0, 10, monotonic=wall), start_balance=Decimal(1000))
    req = OrderRequest("DOGEUSDT", "BUY", "LIMIT", quantity=Decimal(100), price=Decimal("0.25"), time_in_force="GTC")
    placed = venue.engine.place_order("k", req, venue.book("DOGEUSDT"), venue.now_ms())
    venue.engine.drain_events()
    wall.t += 1.0
    source.set_price("DOGE/USDT", 0.2)
    events = venue.sync()
    assert source.now_ms == T0 + 10_000
    fills = [ev for _, ev in events if isinstance(ev, ExecutionEvent)]
    assert [(ev.order.order_id, ev.order.status) for ev in fills] == [(placed.order.order_id, OrderState.FILLED)]


def test_new_listings_become_tradable_and_streamable() -> None:
    source = FakeMarketSource()
    venue = SimVenue(source, SimClock(T0, 1), start_balance=Decimal(1000))
    assert venue.resolve_lower("pepeusdt") is None
    source.list_symbol("PEPE/USDT", 0.00001)
    rows = venue.ticker_rows()  # a ticker for an unknown symbol makes the venue look again
    assert "PEPEUSDT" in rows.index
    assert venue.resolve_lower("pepeusdt") == "PEPEUSDT"
    assert venue.engine.market("PEPEUSDT").base == "PEPE"


def test_average_price_is_volume_weighted_over_the_filters_minutes() -> None:
    """What PERCENT_PRICE_BY_SIDE is measured from: the last `avgPriceMins` 1m closes weighted
    by volume; a market without the filter has none (the engine then skips the check)."""
    plain = SimVenue(FakeMarketSource(), SimClock(T0, 1), start_balance=Decimal(1000))
    assert plain.avg_price("DOGEUSDT") is None
    banded = FakeMarketSource(filters={"bid_multiplier_up": Decimal(5), "avg_price_mins": 3})
    venue = SimVenue(banded, SimClock(T0, 1), start_balance=Decimal(1000))
    candles = banded.klines("DOGE/USDT", "1m", limit=3)
    want = sum(c.close * c.volume for c in candles) / sum(c.volume for c in candles)
    assert venue.avg_price("DOGEUSDT") == Decimal(repr(want))
