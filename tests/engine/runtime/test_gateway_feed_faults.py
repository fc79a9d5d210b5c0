"""`GatewayFeed` hands the REST side's fault to the state machine and shows it, and the measured
clock offset, on the `rest` row (the console's streams and /health)."""

from __future__ import annotations

from engine.domain import StateReason
from engine.market.fake import FakeGateway, ManualClock
from engine.market.gateway import REST_STREAM, ExchangeFault, StreamHealth
from engine.runtime.gateway_feed import GatewayFeed
from tests.kit.domain import T0, make_market

FIX = "API key cannot trade or IP not whitelisted: fix the key's permissions / IP whitelist"


def feed_with(rest: StreamHealth) -> GatewayFeed:
    gateway = FakeGateway({"DOGE/USDT": make_market("DOGE/USDT")}, clock=ManualClock(T0))
    gateway.set_health(rest)
    return GatewayFeed(gateway, clock=gateway.clock, idle_s=0.01, warmup_minutes=0)


def test_a_rest_fault_is_a_state_reason_and_the_rest_row_says_what_to_fix() -> None:
    fault = ExchangeFault("exchange_auth", f"{FIX} (create_order refused with -2015)", "create_order")
    feed = feed_with(StreamHealth(REST_STREAM, connected=True, last_message_ms=T0, fault=fault))
    assert feed.exchange_fault() == StateReason("exchange_auth", fault.detail)
    (row,) = feed.streams(T0 + 120_000)  # long after the last error: a fault still shows
    assert (row.status, row.detail) == ("error", fault.detail)


def test_the_measured_clock_offset_shows_on_the_rest_row() -> None:
    feed = feed_with(StreamHealth(REST_STREAM, connected=True, last_message_ms=T0, clock_offset_ms=8_012))
    assert feed.exchange_fault() is None
    (row,) = feed.streams(T0)
    assert (row.status, row.detail) == ("connected", "exchange clock +8,012 ms from ours")
