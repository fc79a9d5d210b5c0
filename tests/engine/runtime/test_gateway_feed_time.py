"""`GatewayFeed`'s clock: one ticker with an impossible event time cannot move it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.market.fake import FakeGateway, ManualClock
from engine.runtime.gateway_feed import MAX_AHEAD_MS, GatewayFeed
from tests.kit.domain import T0, make_batch, make_market


def feed_on_fake() -> tuple[FakeGateway, GatewayFeed]:
    gateway = FakeGateway({"DOGE/USDT": make_market("DOGE/USDT")}, clock=ManualClock(T0))
    return gateway, GatewayFeed(gateway, clock=gateway.clock, idle_s=0.01, warmup_minutes=0)


async def test_a_far_future_event_time_does_not_move_the_engine_clock() -> None:
    gateway, feed = feed_on_fake()
    poisoned = make_batch({"DOGE/USDT": 0.3, "PEPE/USDT": 1e-5}, ts_ms=T0)
    gateway.push_tickers(replace(poisoned, event_ms=np.array([T0, T0 * 1000], np.int64)))  # microseconds
    assert (await feed.next_batch()).ts_ms == T0
    for k in range(1, 4):
        gateway.push_tickers(make_batch({"DOGE/USDT": 0.3 + k / 100}, ts_ms=T0 + k * 1000))
        assert (await feed.next_batch()).ts_ms == T0 + k * 1000  # the clock follows the market
    assert feed.data_age_s(T0 + 600_000) == pytest.approx(597.0)  # and staleness is seen
    await feed.close()


async def test_a_batch_with_only_early_event_times_is_stamped_at_its_receive_time() -> None:
    gateway, feed = feed_on_fake()
    early = make_batch({"DOGE/USDT": 0.3}, ts_ms=T0)
    gateway.push_tickers(replace(early, event_ms=np.array([T0 + MAX_AHEAD_MS + 1], np.int64)))
    assert (await feed.next_batch()).ts_ms == T0
    within = make_batch({"DOGE/USDT": 0.3}, ts_ms=T0 + 1000)
    gateway.push_tickers(replace(within, event_ms=np.array([T0 + 1000 + MAX_AHEAD_MS], np.int64)))
    assert (await feed.next_batch()).ts_ms == T0 + 1000 + MAX_AHEAD_MS  # a tolerated skew is believed
    await feed.close()
