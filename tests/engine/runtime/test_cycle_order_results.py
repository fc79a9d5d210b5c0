"""Every order outcome the cycle learns is journaled once as an `order_result`, whatever path
it came by: the placement reply (the router, once), a resting order filled or an unknown
outcome settled by the broker's sync, a stale order cancelled at its expiry. Against the
simulated exchange through the real gateway (exchange broker), and with the paper broker.

Without these, the journal kept settled orders open forever: recovery listed orders the
exchange no longer had, and replay read an expired entry as "entered; position still open"."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr

from engine.config import HotcoinConfig
from engine.config.sections.exchange import ExchangeSection
from engine.domain import Order, OrderIntent, OrderPurpose, OrderStatus, OrderType, Side
from engine.execution.broker import Broker
from engine.execution.exchange_broker import NEVER_REACHED, ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.events import JournalEvent
from engine.market.ccxt_gateway import CcxtGateway
from engine.runtime.cycle import TradingCycle
from engine.runtime.tap import Tap
from engine.sim.server import SimExchangeServer
from tests.kit.domain import T0, make_batch, make_intent
from tests.kit.events import RecordingSink
from tests.kit.sim_exchange import API_KEY, SECRET, FakeMarketSource, running_sim_exchange
from tests.kit.waiting import eventually


def _cycle(broker: Broker) -> tuple[TradingCycle, RecordingSink]:
    sink = RecordingSink()
    return TradingCycle(HotcoinConfig(), None, broker, Tap(sink, recent=0), run_id="results"), sink  # type: ignore[arg-type]


def _results(sink: RecordingSink, cid: str) -> list[JournalEvent]:
    return [e for e in sink.events if e.kind == "order_result" and e.payload["client_order_id"] == cid]


def _resting(price: str, expires_ms: int | None = None, cid: str = "hc-0123456789abcdef-e1") -> OrderIntent:
    return make_intent(
        order_type=OrderType.LIMIT, price=Decimal(price), quantity=Decimal(100), expires_ms=expires_ms,
        client_order_id=cid, trace_id=cid.split("-")[1],
    )


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimExchangeServer, FakeMarketSource, CcxtGateway]]:
    source = FakeMarketSource()  # DOGE/USDT at 0.30
    async with running_sim_exchange(source, speed=1.0) as server:
        section = ExchangeSection(
            name="sim", api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET), enable_rate_limit=False
        )
        gateway = CcxtGateway(section, endpoint=server.base_url)
        try:
            await gateway.load_markets()
            yield server, source, gateway
        finally:
            await gateway.close()


async def test_an_expired_limit_entry_is_journaled_cancelled_once(
    sim: tuple[SimExchangeServer, FakeMarketSource, CcxtGateway],
) -> None:
    server, _, gateway = sim
    cycle, sink = _cycle(ExchangeBroker(gateway))
    now = server.venue.clock.now_ms()
    intent = _resting("0.15", expires_ms=now + 30_000)  # half the market: it rests
    placed = await cycle.router.send(intent, now)
    assert placed is not None and placed.order.status is OrderStatus.OPEN
    assert await cycle._sync(now + 29_999) == []

    (expired,) = await cycle._sync(now + 30_000)
    assert await cycle._sync(now + 45_000) == []  # nothing new: nothing journaled twice
    attempt = next(e for e in sink.events if e.kind == "order_attempt")
    placement, cancel = _results(sink, intent.client_order_id)
    assert placement.payload["status"] == "open" and placement.cause == attempt.seq
    assert cancel.payload | {"exchange_order_id": None} == {
        "client_order_id": intent.client_order_id, "action": "cancel", "reason": "expired", "status": "canceled",
        "error_class": None, "exchange_order_id": None, "filled_qty": "0", "average_price": None,
    }  # fmt: skip
    assert cancel.cause == attempt.seq and cancel.trace_id == intent.trace_id and expired.journal_seq == cancel.seq
    on_exchange = await gateway.fetch_order("DOGE/USDT", intent.client_order_id)
    assert on_exchange.status is OrderStatus.CANCELED and on_exchange.filled_qty == 0


async def test_a_close_all_leg_lost_to_a_5xx_is_journaled_rejected_once_sync_finds_it_never_arrived(
    sim: tuple[SimExchangeServer, FakeMarketSource, CcxtGateway],
) -> None:
    server, _, gateway = sim
    cycle, sink = _cycle(ExchangeBroker(gateway))
    now = server.venue.clock.now_ms()
    leg = make_intent(side=Side.SELL, purpose=OrderPurpose.CLOSE_ALL, client_order_id="hc-0123456789abcdef-c1")
    server.faults.fail_with_5xx(1)  # the create never reaches the matching engine: its outcome is unknown
    sent = await cycle.router.send(leg, now)
    assert sent is not None and sent.order.status is OrderStatus.PENDING
    assert await cycle._sync(now + 1) == []  # "does not exist" this soon proves nothing yet

    (settled,) = await cycle._sync(now + 15_001)  # the next reconcile, past the grace period
    assert await cycle._sync(now + 30_002) == []
    unknown, rejected = _results(sink, leg.client_order_id)
    assert (unknown.payload["status"], unknown.payload["error_class"]) == ("unknown", "unknown")
    assert rejected.payload["status"] == "rejected" and rejected.payload["action"] == "sync"
    assert rejected.payload["detail"] == NEVER_REACHED and rejected.payload["filled_qty"] == "0"
    assert settled.order.status is OrderStatus.REJECTED and settled.journal_seq == rejected.seq
    assert leg.client_order_id not in server.venue.engine.account(API_KEY).by_client_id


async def test_a_resting_limit_filled_on_the_exchange_is_journaled_once_and_a_placement_reply_once(
    sim: tuple[SimExchangeServer, FakeMarketSource, CcxtGateway],
) -> None:
    server, source, gateway = sim
    cycle, sink = _cycle(ExchangeBroker(gateway))
    now = server.venue.clock.now_ms()
    market = make_intent(client_order_id="hc-0123456789abcdef-e1")
    limit = _resting("0.29", cid="hc-fedcba9876543210-e1")
    filled_now = await cycle.router.send(market, now)
    assert filled_now is not None and filled_now.order.status is OrderStatus.FILLED
    assert await cycle.router.send(limit, now) is not None
    source.set_price("DOGE/USDT", 0.28)  # the market falls through the limit: it fills resting

    async def filled() -> bool:
        return (await gateway.fetch_order("DOGE/USDT", limit.client_order_id)).status is OrderStatus.FILLED

    await eventually(filled)
    (update,) = await cycle._sync(server.venue.clock.now_ms())
    assert await cycle._sync(server.venue.clock.now_ms() + 20_000) == []
    (placement,) = _results(sink, market.client_order_id)  # the reply, journaled by the router only
    assert placement.payload["status"] == "filled" and filled_now.journal_seq == placement.seq
    opened, later = _results(sink, limit.client_order_id)
    assert opened.payload["status"] == "open"
    assert later.payload | {"exchange_order_id": None} == {
        "client_order_id": limit.client_order_id, "action": "sync", "status": "filled", "error_class": None,
        "exchange_order_id": None, "filled_qty": later.payload["filled_qty"], "average_price": pytest.approx(0.29),
    }  # fmt: skip
    assert Decimal(later.payload["filled_qty"]) == 100
    (fill,) = update.fills
    assert update.journal_seq == later.seq and fill.is_maker  # it rested on the book: Binance says maker


async def test_a_resting_limit_filled_on_the_exchange_is_pushed_by_the_user_stream_and_journaled_once(
    sim: tuple[SimExchangeServer, FakeMarketSource, CcxtGateway],
) -> None:
    """The executionReport of the fill, through ccxt.pro's user stream and the gateway, is
    booked as it comes (`action` "push"), with the commission the report names; the reconcile
    that finds the order filled afterwards journals nothing more."""
    server, source, gateway = sim
    cycle, sink = _cycle(ExchangeBroker(gateway))
    now = server.venue.clock.now_ms()
    limit = _resting("0.29")
    watching = asyncio.ensure_future(gateway.watch_orders())
    await asyncio.sleep(0.2)  # subscribed: what the stream sends from now on reaches us
    assert await cycle.router.send(limit, now) is not None
    source.set_price("DOGE/USDT", 0.28)  # the market falls through the limit: it fills resting
    pushed: list[Order] = []
    while not any(o.status is OrderStatus.FILLED for o in pushed):  # NEW, then TRADE
        pushed += await asyncio.wait_for(watching, timeout=10)
        watching = asyncio.ensure_future(gateway.watch_orders())
    watching.cancel()

    updates = await cycle.router.pushed(pushed, now + 1)
    assert [u.order.status for u in updates] == [OrderStatus.FILLED]  # the NEW said nothing new
    (fill,) = updates[0].fills
    assert fill.quantity == 100 and fill.is_maker and fill.fee_base == pytest.approx(0.1)  # 0.1 % of it, in DOGE
    assert await cycle.router.pushed(pushed, now + 2) == []  # pushed again (a resync): nothing new
    assert await cycle._sync(server.venue.clock.now_ms()) == []  # the reconcile finds nothing to add
    opened, push = _results(sink, limit.client_order_id)
    assert opened.payload["status"] == "open"
    assert (push.payload["action"], push.payload["status"]) == ("push", "filled")
    assert Decimal(push.payload["filled_qty"]) == 100
    assert push.cause == next(e.seq for e in sink.events if e.kind == "order_attempt")
    assert updates[0].journal_seq == push.seq


async def test_paper_resting_fills_and_expiries_are_journaled_once_each() -> None:
    broker = PaperBroker(FillModel())
    cycle, sink = _cycle(broker)
    broker.update_book(make_batch({"DOGE/USDT": 0.3, "PEPE/USDT": 0.3}))
    crossed = _resting("0.29", expires_ms=T0 + 30_000, cid="hc-0123456789abcdef-e1")
    stale = _resting("0.29", expires_ms=T0 + 30_000, cid="hc-fedcba9876543210-e1")
    stale = dataclasses.replace(stale, symbol="PEPE/USDT")
    await cycle.router.send_all([crossed, stale], T0)
    broker.update_book(make_batch({"DOGE/USDT": 0.28, "PEPE/USDT": 0.3}))
    fill, _ = await cycle._sync(T0 + 30_000)  # crossed at its expiry: it fills; the other expires
    assert [(e.payload["status"], e.payload.get("action")) for e in _results(sink, crossed.client_order_id)] == [
        ("open", None), ("filled", "sync"),
    ]
    assert [(e.payload["status"], e.payload.get("reason")) for e in _results(sink, stale.client_order_id)] == [
        ("open", None), ("canceled", "expired"),
    ]
    assert fill.order.client_order_id == crossed.client_order_id and fill.fills[0].is_maker
    assert await cycle._sync(T0 + 60_000) == [] and len([e for e in sink.events if e.kind == "order_result"]) == 4
