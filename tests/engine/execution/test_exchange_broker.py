"""ExchangeBroker through the Gateway interface, against the market layer's FakeGateway."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal
from typing import Any

import pytest

from engine.domain import Fill, Order, OrderIntent, OrderStatus, OrderType, Side
from engine.errors import (
    ExchangeAuthError,
    NonRetryableOrderError,
    OrderError,
    RetryableOrderError,
    UnknownOrderError,
)
from engine.execution.broker import SyncIncomplete, counts_as_order_error
from engine.execution.exchange_broker import (
    LANDED_LATE,
    NEVER_REACHED,
    VANISHED,
    ExchangeBroker,
    OrderGateway,
)
from engine.execution.router import OrderRouter
from engine.market.fake import FakeGateway
from engine.market.gateway import Gateway
from tests.kit.domain import T0, make_intent, make_market
from tests.kit.events import RecordingSink


def gateway() -> FakeGateway:
    gw = FakeGateway({"DOGE/USDT": make_market()})
    gw.last_price["DOGE/USDT"] = 0.3
    return gw


def test_the_real_gateway_satisfies_the_broker_seam() -> None:
    def takes(_: OrderGateway) -> None: ...

    gw: Gateway = gateway()
    takes(gw)


async def test_market_order_filled_with_one_fill() -> None:
    broker = ExchangeBroker(gateway())
    update = await broker.submit(make_intent(), T0)
    assert update.order.status is OrderStatus.FILLED
    (fill,) = update.fills
    assert fill.quantity == 100.0 and fill.price == pytest.approx(0.3)
    assert fill.trace_id == "0123456789abcdef"


async def test_duplicate_is_refused_before_the_exchange() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    await broker.submit(make_intent(), T0)
    with pytest.raises(NonRetryableOrderError, match="duplicate"):
        await broker.submit(make_intent(), T0)
    assert gw.calls.count("create_order") == 1


async def test_partial_fills_become_fills_once_each() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"), client_order_id="hc-0123456789abcdef-e1")
    first = await broker.submit(intent, T0)
    assert first.order.status is OrderStatus.OPEN and first.fills == ()
    order = gw.orders[intent.client_order_id]
    gw.orders[intent.client_order_id] = dataclasses.replace(
        order, status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40), average_price=0.30, fee_quote=0.012
    )
    (u1,) = await broker.sync(T0 + 1000)
    assert [f.quantity for f in u1.fills] == [40.0]
    assert await broker.sync(T0 + 2000) == []  # nothing new: no fill twice
    gw.orders[intent.client_order_id] = dataclasses.replace(
        order, status=OrderStatus.FILLED, filled_qty=Decimal(100), average_price=0.295, fee_quote=0.0295
    )
    (u2,) = await broker.sync(T0 + 3000)  # gone from open orders: fetched by client id
    (f2,) = u2.fills
    assert f2.quantity == 60.0 and f2.price == pytest.approx((29.5 - 12.0) / 60.0)
    assert f2.fee_quote == pytest.approx(0.0295 - 0.012)
    assert u2.order.status is OrderStatus.FILLED and await broker.open_orders() == []


async def test_a_stale_limit_is_named_at_its_expiry_for_the_router_to_cancel() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"), expires_ms=T0 + 30_000)
    await broker.submit(intent, T0)
    assert broker.expired(T0 + 29_999) == [] and await broker.sync(T0 + 29_999) == []
    (stale,) = broker.expired(T0 + 30_000)
    assert stale.client_order_id == intent.client_order_id and gw.cancelled == []  # the broker cancels nothing itself
    (u,) = await OrderRouter(broker, RecordingSink()).sync(T0 + 30_000)
    assert u.order.status is OrderStatus.CANCELED and gw.cancelled == [intent.client_order_id]
    assert broker.expired(T0 + 30_000) == []


@pytest.mark.parametrize(
    "error",
    [RetryableOrderError("429 too many requests", code=-1003), RetryableOrderError("fetch_order: RequestTimeout")],
    ids=["rate-limited", "timed-out"],
)
async def test_a_failed_lookup_does_not_lose_the_fills_absorbed_before_it(error: OrderError) -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    a = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"), client_order_id="hc-aaaaaaaaaaaaaaaa-e1")
    b = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.28"), client_order_id="hc-bbbbbbbbbbbbbbbb-e1")
    await broker.submit(a, T0)
    await broker.submit(b, T0)
    # A part-fills and stays listed; B leaves the open list and looking it up fails.
    gw.orders[a.client_order_id] = dataclasses.replace(
        gw.orders[a.client_order_id], status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40), average_price=0.29
    )
    gw.orders[b.client_order_id] = dataclasses.replace(gw.orders[b.client_order_id], status=OrderStatus.CANCELED)
    gw.fail_next("fetch_order", error)
    with pytest.raises(SyncIncomplete) as raised:
        await broker.sync(T0 + 1000)
    assert raised.value.errors == [error]
    (u,) = raised.value.updates
    assert u.order.client_order_id == a.client_order_id and [f.quantity for f in u.fills] == [40.0]
    (again,) = await broker.sync(T0 + 2000)  # B is looked up again; A's fill is not repeated
    assert again.order.client_order_id == b.client_order_id and again.order.status is OrderStatus.CANCELED


async def test_an_expiry_cancel_reaches_the_caller_journaled_when_the_reconcile_before_it_fails() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    router = OrderRouter(broker, sink := RecordingSink())
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"), expires_ms=T0 + 30_000)
    await broker.submit(intent, T0)
    assert await router.sync(T0) == []
    gw.fail_next("fetch_open_orders", RetryableOrderError("429 too many requests", code=-1003))
    with pytest.raises(SyncIncomplete) as raised:
        await router.sync(T0 + 30_000)
    (u,) = raised.value.updates
    assert u.order.status is OrderStatus.CANCELED and await broker.open_orders() == []
    (result,) = sink.events
    assert u.journal_seq == result.seq and result.payload["reason"] == "expired"


async def test_cancel_of_an_order_that_filled_meanwhile_learns_the_fill() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"))
    await broker.submit(intent, T0)
    gw.fill_order(intent.client_order_id, 0.3)
    u = await broker.cancel("DOGE/USDT", intent.client_order_id, T0 + 5)
    assert u.order.status is OrderStatus.FILLED and u.fills[0].quantity == 100.0


@pytest.mark.parametrize(
    "refusal",
    [
        ExchangeAuthError("cancel_order: API key cannot trade", code=-2015),
        NonRetryableOrderError("cancel_order: Order was not canceled due to cancel restrictions.", code=-2011),
    ],
    ids=["key-cannot-trade", "refused-while-open"],
)
async def test_a_refused_cancel_of_an_order_still_resting_is_raised_never_reported_as_done(
    refusal: OrderError,
) -> None:
    """A refused key (-2015) is raised without a lookup; any other refusal is looked into, and
    raised too when the order still rests. Reported as a cancel, the order would be taken for
    gone while it can still fill; its fills stay for `sync` to book."""
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"))
    await broker.submit(intent, T0)
    gw.orders[intent.client_order_id] = dataclasses.replace(
        gw.orders[intent.client_order_id], status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40), average_price=0.3
    )
    gw.fail_next("cancel_order", refusal)
    with pytest.raises(type(refusal)) as raised:
        await broker.cancel("DOGE/USDT", intent.client_order_id, T0 + 5)
    assert raised.value is refusal
    looked = not isinstance(refusal, ExchangeAuthError)
    assert gw.calls.count("fetch_order") == int(looked)
    (still,) = await broker.open_orders()
    assert still.status is OrderStatus.OPEN and still.filled_qty == 0  # nothing booked on the side
    (u,) = await broker.sync(T0 + 6)
    assert [f.quantity for f in u.fills] == [40.0]


@pytest.mark.parametrize("filled", [0, 40], ids=["resting", "part-filled"])
async def test_a_resting_order_the_exchange_no_longer_knows_is_settled_once_as_vanished(filled: int) -> None:
    """The exchange lost an order we had seen resting (a restarted sim with a fresh account, an
    order Binance purged): not in the open list, and its lookup says -2013. It used to fail
    every reconcile (`SyncIncomplete`) for as long as the engine ran; it is settled once, as
    expired with what it had filled, and never asked about again."""
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    router = OrderRouter(broker, sink := RecordingSink())
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"), expires_ms=T0 + 60_000)
    await broker.submit(intent, T0)
    if filled:
        gw.orders[intent.client_order_id] = dataclasses.replace(
            gw.orders[intent.client_order_id], status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(filled), average_price=0.29
        )
        await router.sync(T0 + 1000)
    del gw.orders[intent.client_order_id]  # the exchange forgot it
    (u,) = await router.sync(T0 + 2000)
    assert u.order.status is OrderStatus.EXPIRED and u.detail == VANISHED and u.fills == ()
    assert u.order.filled_qty == filled and await broker.open_orders() == []
    result = sink.events[-1]
    assert result.payload["status"] == "expired" and result.payload["detail"] == VANISHED
    assert not counts_as_order_error(result.payload)
    lookups = gw.calls.count("fetch_order")
    assert await router.sync(T0 + 3000) == [] and await router.sync(T0 + 60_000) == []  # past its expiry too
    assert gw.calls.count("fetch_order") == lookups and gw.cancelled == []
    assert broker.watching_late() == [] and len(sink.events) == (2 if filled else 1)  # settled once


async def test_the_expiry_cancel_of_an_order_the_exchange_lost_settles_it_as_vanished() -> None:
    """The cancel at its expiry comes before the next reconcile: the cancel's "unknown order"
    (-2011) is looked into and the lookup's -2013 was raised, a `cancel_failed` counted as an
    order error at every sync until the engine blocked. It settles the order instead."""
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=3_600_000)
    router = OrderRouter(broker, sink := RecordingSink())
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"), expires_ms=T0 + 30_000)
    await broker.submit(intent, T0)
    assert await router.sync(T0) == []
    del gw.orders[intent.client_order_id]
    (u,) = await router.sync(T0 + 30_000)
    assert u.order.status is OrderStatus.EXPIRED and u.detail == VANISHED
    (result,) = sink.events
    assert result.payload["action"] == "cancel" and result.payload["reason"] == "expired"
    assert result.payload["status"] == "expired" and not counts_as_order_error(result.payload)
    assert await router.sync(T0 + 31_000) == [] and broker.expired(T0 + 31_000) == []
    assert len(sink.events) == 1


async def test_a_pending_order_the_exchange_does_not_know_yet_is_not_taken_for_vanished() -> None:
    """-2013 right after a create whose outcome was unknown proves nothing yet (it may land
    late): a cancel's lookup still raises it, and the reconcile keeps the order pending."""
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"))
    gw.fail_next("create_order", UnknownOrderError("timeout"))
    with pytest.raises(UnknownOrderError):
        await broker.submit(intent, T0)
    with pytest.raises(NonRetryableOrderError) as raised:
        await broker.cancel("DOGE/USDT", intent.client_order_id, T0 + 1)
    assert raised.value.code == -2013
    assert await broker.sync(T0 + 1000) == []
    assert [o.status for o in await broker.open_orders()] == [OrderStatus.PENDING]


async def test_a_reply_under_an_id_that_is_not_ours_is_not_adopted() -> None:
    """A cancel reply filed under the cancel's own id (Binance's `clientOrderId`) names no order
    we placed: adopted, its executed quantity would be booked a second time."""

    class CancelIdReply(FakeGateway):
        async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
            order = await super().cancel_order(symbol, client_order_id)
            return dataclasses.replace(order, client_order_id="vk_DemtFZxbJdfYaM_3hKw")

    gw = CancelIdReply({"DOGE/USDT": make_market()})
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"))
    await broker.submit(intent, T0)
    gw.orders[intent.client_order_id] = dataclasses.replace(
        gw.orders[intent.client_order_id], status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40), average_price=0.3
    )
    u = await broker.cancel("DOGE/USDT", intent.client_order_id, T0 + 5)
    assert u.fills == () and u.order.client_order_id == intent.client_order_id
    (anomaly,) = broker.take_anomalies()  # no update carries it: nothing of ours changed
    assert anomaly.client_order_id == "vk_DemtFZxbJdfYaM_3hKw" and anomaly.trace_id is None
    assert "not our order" in anomaly.detail
    (synced,) = await broker.sync(T0 + 6)  # the order itself is reconciled, its fills booked once
    assert synced.order.status is OrderStatus.CANCELED and [f.quantity for f in synced.fills] == [40.0]


async def test_unknown_create_is_looked_up_by_client_id() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent()
    # The exchange took the order but the answer was lost.
    gw.orders[intent.client_order_id] = dataclasses.replace(
        (await FakeGateway({"DOGE/USDT": make_market()}, fill_market_orders=False).create_order(intent)),
    )
    gw.fail_next("create_order", UnknownOrderError("timeout"))
    update = await broker.submit(intent, T0)
    assert update.order.status is OrderStatus.OPEN
    assert gw.calls == ["create_order", "fetch_order"]


async def test_unknown_create_that_never_happened_is_reconciled_to_rejected_after_the_grace() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000, unknown_grace_ms=10_000)
    gw.fail_next("create_order", UnknownOrderError("timeout"))
    with pytest.raises(UnknownOrderError):
        await broker.submit(make_intent(), T0)
    assert [o.status for o in await broker.open_orders()] == [OrderStatus.PENDING]
    assert await broker.sync(T0 + 1) == []  # "does not exist" this soon proves nothing yet
    assert await broker.sync(T0 + 9_000) == []
    (u,) = await broker.sync(T0 + 10_000)
    assert u.order.status is OrderStatus.REJECTED and await broker.open_orders() == []


async def test_unknown_create_that_lands_late_is_found_by_reconcile_with_its_fill() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    intent = make_intent()
    gw.fail_next("create_order", UnknownOrderError("-1007 execution status unknown"))
    with pytest.raises(UnknownOrderError):
        await broker.submit(intent, T0)
    assert await broker.sync(T0 + 1000) == []  # not visible yet: still pending
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.03)  # the backend executed it after all
    (u,) = await broker.sync(T0 + 2000)
    assert u.order.status is OrderStatus.FILLED and [(f.quantity, f.fee_base) for f in u.fills] == [(100.0, 0.1)]


async def test_retryable_failure_leaves_nothing_tracked() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    gw.fail_next("create_order", RetryableOrderError("rate limited"))
    with pytest.raises(RetryableOrderError):
        await broker.submit(make_intent(), T0)
    assert (await broker.submit(make_intent(), T0)).order.status is OrderStatus.FILLED


async def test_reconcile_adopts_our_lost_orders_and_ignores_foreign_ones() -> None:
    gw = gateway()
    other = FakeGateway({"DOGE/USDT": make_market()}, fill_market_orders=False)
    ours = await other.create_order(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"), client_order_id="hc-00000000000000aa-e1"))
    foreign = await other.create_order(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"), client_order_id="x-manual-1"))
    gw.orders = {o.client_order_id: o for o in (ours, foreign)}
    broker = ExchangeBroker(gw)
    (u,) = await broker.sync(T0)
    assert u.order.client_order_id == "hc-00000000000000aa-e1" and u.order.status is OrderStatus.OPEN
    assert await broker.on_order(foreign, T0) is None


async def test_contradictory_exchange_update_is_recorded_and_fills_are_not_lost() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"), side=Side.BUY)
    await broker.submit(intent, T0)
    await broker.cancel("DOGE/USDT", intent.client_order_id, T0 + 1)
    filled = dataclasses.replace(gw.orders[intent.client_order_id], status=OrderStatus.FILLED, filled_qty=Decimal(100), average_price=0.3)
    u = await broker.on_order(filled, T0 + 2)
    assert u is not None and u.fills[0].quantity == 100.0
    (anomaly,) = u.anomalies
    assert "accepted exchange state" in anomaly and broker.take_anomalies() == []


@pytest.mark.parametrize(
    ("finished", "stale"),
    [
        ({"status": OrderStatus.CANCELED}, {"status": OrderStatus.OPEN}),
        (
            {"status": OrderStatus.FILLED, "filled_qty": Decimal(100), "average_price": 0.2},
            {"status": OrderStatus.PARTIALLY_FILLED},
        ),
    ],
    ids=["open-after-canceled", "same-quantity-partial-after-filled"],
)
async def test_a_stale_snapshot_does_not_reopen_a_finished_order(finished: dict[str, Any], stale: dict[str, Any]) -> None:
    broker = ExchangeBroker(gateway())
    placed = (await broker.submit(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2")), T0)).order
    done = dataclasses.replace(placed, **finished)
    assert await broker.on_order(done, T0 + 1) is not None
    assert await broker.on_order(dataclasses.replace(done, **stale), T0 + 2) is None
    assert await broker.open_orders() == []
    # Stamped no later than what we hold: one channel lagging another (the user stream's NEW
    # after a FILLED reply, every market order), ignored without an anomaly.
    assert broker.take_anomalies() == []
    later = dataclasses.replace(done, **stale, updated_ms=done.updated_ms + 1000)
    assert await broker.on_order(later, T0 + 3) is None and await broker.open_orders() == []
    (anomaly,) = broker.take_anomalies()  # stamped later, it contradicts the exchange's own word
    assert anomaly.detail.startswith("ignored") and anomaly.trace_id == "0123456789abcdef"


async def test_an_anomaly_is_logged_and_journaled_once_per_order_and_text(caplog: pytest.LogCaptureFixture) -> None:
    """A stream repeating a stale snapshot all day must not flood the log or the journal: the
    same anomaly of the same order is told once, with the order's id, symbol and trace."""
    gw = gateway()
    broker = ExchangeBroker(gw)
    router = OrderRouter(broker, sink := RecordingSink())
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"))
    assert await router.send(intent, T0) is not None
    cancelled = await router.cancel(gw.orders[intent.client_order_id], T0 + 1)
    assert cancelled is not None
    # Open again, by the exchange's clock after its cancel: a contradiction, not a lagging stream.
    stale = dataclasses.replace(cancelled.order, status=OrderStatus.OPEN, updated_ms=cancelled.order.updated_ms + 1)
    with caplog.at_level(logging.WARNING, logger="hotcoin.broker"):
        for n in range(3):
            assert await router.pushed([stale], T0 + 2 + n) == []
    (told,) = [r for r in caplog.records if r.name == "hotcoin.broker"]
    assert told.levelno == logging.WARNING
    assert all(w in told.getMessage() for w in (intent.client_order_id, "DOGE/USDT", intent.trace_id, "ignored: "))
    (journaled,) = [e for e in sink.events if e.kind == "order_anomaly"]
    assert (journaled.trace_id, journaled.symbol) == (intent.trace_id, "DOGE/USDT")
    assert journaled.payload["detail"].startswith("ignored: ")


async def test_a_late_partial_fill_of_a_cancelled_order_is_booked_and_the_order_stays_cancelled() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"))
    placed = (await broker.submit(intent, T0)).order
    await broker.cancel("DOGE/USDT", intent.client_order_id, T0 + 1)
    late = dataclasses.replace(placed, status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40), average_price=0.2)
    u = await broker.on_order(late, T0 + 2)
    assert u is not None and [f.quantity for f in u.fills] == [40.0]
    assert u.order.status is OrderStatus.CANCELED and await broker.open_orders() == []


def _filled_on_the_exchange(gw: FakeGateway, intent: OrderIntent, fee_base: float, fee_quote: float) -> None:
    """`intent` filled at 0.3 on the exchange with its trade (and commission) in myTrades, and
    looked up the way Binance's GET /order answers: no fills, no commission."""
    order = Order.from_intent(intent, OrderStatus.FILLED, T0, exchange_order_id="77")
    gw.orders[intent.client_order_id] = dataclasses.replace(
        order, filled_qty=intent.quantity, average_price=0.3, fees_reported=False
    )
    gw.fills.append(
        Fill("t77", intent.client_order_id, intent.symbol, intent.side, 0.3, float(intent.quantity), fee_quote, T0, fee_base=fee_base)
    )


async def test_a_fill_found_by_lookup_after_a_lost_reply_is_booked_with_its_trades_commission() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent()
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.03)  # 0.1 % of 100 DOGE, in DOGE
    gw.fail_next("create_order", UnknownOrderError("timeout"))
    update = await broker.submit(intent, T0)
    (fill,) = update.fills
    assert fill.quantity == 100.0 and fill.fee_base == pytest.approx(0.1) and fill.fee_quote == pytest.approx(0.03)
    assert gw.calls == ["create_order", "fetch_order", "fetch_my_trades"]
    assert update.anomalies == () and broker.take_anomalies() == []


async def test_a_resting_limit_filled_unseen_is_booked_with_its_commission_by_reconcile() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"))
    await broker.submit(intent, T0)
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.03)
    (u,) = await broker.sync(T0 + 1000)
    (fill,) = u.fills
    assert u.order.status is OrderStatus.FILLED and fill.fee_base == pytest.approx(0.1)


async def test_a_fill_pushed_without_its_commission_gets_its_trades_commission() -> None:
    """What the gateway's resync after a user-stream gap pushes is a REST snapshot, with no
    commission: booked from the order's trades like a lookup, not at an estimated fee."""
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"))
    await broker.submit(intent, T0)
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.03)
    u = await broker.on_order(gw.orders[intent.client_order_id], T0 + 1)
    assert u is not None
    (fill,) = u.fills
    assert fill.fee_base == pytest.approx(0.1) and fill.fee_quote == pytest.approx(0.03)
    assert u.anomalies == () and broker.take_anomalies() == [] and gw.calls[-1] == "fetch_my_trades"


async def test_trades_found_by_lookup_sum_their_commissions_exactly() -> None:
    """Three commissions of 0.025 summed in floats to 0.07500000000000001, so the third fill,
    found by a lookup after two were booked from the stream, booked 0.02500000000000001 (seen
    in CI after a user-stream reconnect)."""
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"), quantity=Decimal(100))
    placed = (await broker.submit(intent, T0)).order
    two = dataclasses.replace(
        placed, status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(50), average_price=0.3, fee_base=0.05,
        fee_quote=0.015, fees_reported=True,
    )
    assert await broker.on_order(two, T0 + 1) is not None
    gw.orders[intent.client_order_id] = dataclasses.replace(two, filled_qty=Decimal(75), fees_reported=False)
    gw.fills.extend(
        Fill(f"t{i}", intent.client_order_id, intent.symbol, intent.side, 0.3, 25.0, 0.0075, T0, fee_base=0.025)
        for i in range(3)
    )
    (u,) = await broker.sync(T0 + 1000)
    (fill,) = u.fills
    assert fill.quantity == 25.0 and fill.fee_base == 0.025 and u.order.fee_base == 0.075


@pytest.mark.parametrize(
    ("side", "fee_base", "fee_quote"),
    [(Side.BUY, 0.1, 0.1 * 0.3), (Side.SELL, 0.0, 30.0 * 0.001)],
    ids=["buy-pays-in-coins", "sell-pays-in-quote"],
)
async def test_a_fill_whose_trades_cannot_be_fetched_gets_an_estimated_fee_and_an_anomaly(
    side: Side, fee_base: float, fee_quote: float
) -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, taker_fee_rate=0.001)
    intent = make_intent(side=side)
    _filled_on_the_exchange(gw, intent, fee_base=0.0, fee_quote=0.0)
    gw.fail_next("create_order", UnknownOrderError("timeout"))
    gw.fail_next("fetch_my_trades", RetryableOrderError("429 too many requests", code=-1003))
    update = await broker.submit(intent, T0)
    (fill,) = update.fills
    assert fill.fee_base == pytest.approx(fee_base) and fill.fee_quote == pytest.approx(fee_quote)
    (anomaly,) = update.anomalies
    assert anomaly.startswith("fee estimated")


async def test_a_resting_limit_fill_is_a_makers_with_its_estimated_fee_at_the_maker_rate() -> None:
    """Binance reports a fill of an order that rested on the book as the maker's (`isMaker`),
    and charges the maker rate for it."""
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000, taker_fee_rate=0.001, maker_fee_rate=0.0005)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"))
    assert (await broker.submit(intent, T0)).order.status is OrderStatus.OPEN
    _filled_on_the_exchange(gw, intent, fee_base=0.0, fee_quote=0.0)
    gw.fail_next("fetch_my_trades", RetryableOrderError("429 too many requests", code=-1003))
    (u,) = await broker.sync(T0 + 1000)
    (fill,) = u.fills
    assert fill.is_maker and fill.fee_base == pytest.approx(100 * 0.0005)
    (anomaly,) = u.anomalies
    assert "maker rate 0.0005" in anomaly


@pytest.mark.parametrize("maker", [True, False], ids=["trades-say-maker", "trades-say-taker"])
async def test_a_fill_never_seen_resting_is_what_its_trades_say(maker: bool) -> None:
    gw = gateway()
    broker = ExchangeBroker(gw)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.3"))
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.03)
    gw.fills[-1] = dataclasses.replace(gw.fills[-1], is_maker=maker)
    gw.fail_next("create_order", UnknownOrderError("timeout"))  # found by lookup: filled, never seen open
    (fill,) = (await broker.submit(intent, T0)).fills
    assert fill.is_maker is maker


async def test_a_fill_in_the_placement_reply_is_a_takers() -> None:
    (fill,) = (await ExchangeBroker(gateway()).submit(make_intent(), T0)).fills
    assert not fill.is_maker


# ---- orders that land after they were taken as never reached --------------------------------


async def _rejected_as_never_reached(broker: ExchangeBroker, gw: FakeGateway, intent: OrderIntent) -> None:
    """`intent`'s create times out, the exchange does not know it, and the reconcile after the
    grace settles it REJECTED (never reached), at T0 + 10 s."""
    gw.fail_next("create_order", UnknownOrderError("create_order: RequestTimeout"))
    with pytest.raises(UnknownOrderError):
        await broker.submit(intent, T0)
    (rejected,) = await broker.sync(T0 + 10_000)
    assert rejected.order.status is OrderStatus.REJECTED and rejected.detail == NEVER_REACHED


async def test_a_create_taken_as_never_reached_that_lands_late_is_reported_once_with_its_fill() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000, late_check_ms=30_000)
    intent = make_intent()
    await _rejected_as_never_reached(broker, gw, intent)
    assert broker.watching_late() == [intent.client_order_id] and await broker.open_orders() == []
    lookups = gw.calls.count("fetch_order")
    assert await broker.sync(T0 + 39_999) == [] and gw.calls.count("fetch_order") == lookups  # not due yet
    assert await broker.sync(T0 + 40_000) == [] and gw.calls.count("fetch_order") == lookups + 1  # not there yet
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.03)  # the backend executed it after all
    assert await broker.sync(T0 + 69_999) == []
    (landed,) = await broker.sync(T0 + 70_000)
    (fill,) = landed.fills
    assert landed.order.status is OrderStatus.FILLED and landed.detail == LANDED_LATE
    assert (fill.quantity, fill.fee_base, fill.fee_quote) == (100.0, pytest.approx(0.1), pytest.approx(0.03))
    assert broker.watching_late() == [] and await broker.sync(T0 + 200_000) == []  # reported once
    assert landed.anomalies == ("landed late: the exchange has it filled",) and broker.take_anomalies() == []


async def test_a_late_limit_found_resting_in_the_open_list_is_followed_again_until_it_fills() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"))
    await _rejected_as_never_reached(broker, gw, intent)
    gw.orders[intent.client_order_id] = Order.from_intent(intent, OrderStatus.OPEN, T0, exchange_order_id="77")
    (resting,) = await broker.sync(T0 + 11_000)  # the reconcile lists it before the watch looks it up
    assert resting.order.status is OrderStatus.OPEN and resting.detail == LANDED_LATE
    assert broker.watching_late() == [] and [o.client_order_id for o in await broker.open_orders()] == [intent.client_order_id]
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.029)
    (filled,) = await broker.sync(T0 + 12_000)
    assert filled.order.status is OrderStatus.FILLED and [f.quantity for f in filled.fills] == [100.0]


async def test_a_create_that_never_lands_stays_rejected_and_leaves_the_watch_after_the_window() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000, late_watch_ms=60_000, late_check_ms=30_000)
    intent = make_intent()
    await _rejected_as_never_reached(broker, gw, intent)
    gw.fail_next("fetch_order", RetryableOrderError("429 too many requests", code=-1003))
    with pytest.raises(SyncIncomplete):  # a failed lookup is tried again at the next sync
        await broker.sync(T0 + 40_000)
    assert await broker.sync(T0 + 40_001) == [] and broker.watching_late() == [intent.client_order_id]
    assert await broker.sync(T0 + 70_001) == [] and broker.watching_late() == []  # 60 s after its create: given up
    lookups = gw.calls.count("fetch_order")
    assert await broker.sync(T0 + 700_000) == [] and gw.calls.count("fetch_order") == lookups
    assert (held := broker.order(intent.client_order_id)) is not None and held.status is OrderStatus.REJECTED


async def test_the_router_journals_a_late_landing_as_the_orders_real_result() -> None:
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000)
    router = OrderRouter(broker, sink := RecordingSink())
    intent = make_intent()
    gw.fail_next("create_order", UnknownOrderError("create_order: RequestTimeout"))
    assert (await router.send(intent, T0)) is not None
    assert len(await router.sync(T0 + 10_000)) == 1  # rejected
    _filled_on_the_exchange(gw, intent, fee_base=0.1, fee_quote=0.03)
    (landed,) = await router.sync(T0 + 40_000)
    results = [e.payload for e in sink.events if e.kind == "order_result"]
    assert [(r["status"], r.get("detail")) for r in results] == [
        ("unknown", None), ("rejected", NEVER_REACHED), ("filled", LANDED_LATE),
    ]  # fmt: skip
    late = [e for e in sink.events if e.kind == "order_result"][-1]
    assert results[-1]["filled_qty"] == "100" and landed.journal_seq == late.seq
    (attempt,) = [e for e in sink.events if e.kind == "order_attempt"]
    assert (late.trace_id, late.cause) == (intent.trace_id, attempt.seq)  # in the attempt's trace tree
    said = sink.events[-1]  # and beside it, what the broker noted: the order had been taken as never reached
    assert (said.kind, said.cause, said.payload["detail"]) == ("order_anomaly", late.seq, "landed late: the exchange has it filled")


async def test_a_late_limit_resting_then_filling_stays_in_its_attempts_trace_tree() -> None:
    """Each result of an order that landed late (resting, then filled) is caused by its
    attempt; once the broker gives up on one that never lands, the router forgets it too."""
    gw = gateway()
    broker = ExchangeBroker(gw, reconcile_interval_ms=1000, late_watch_ms=60_000, late_check_ms=30_000)
    router = OrderRouter(broker, sink := RecordingSink())
    resting = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"))
    lost = make_intent(client_order_id="hc-fedcba9876543210-e1", trace_id="fedcba9876543210")
    for intent in (resting, lost):
        gw.fail_next("create_order", UnknownOrderError("create_order: RequestTimeout"))
        await router.send(intent, T0)
    assert len(await router.sync(T0 + 10_000)) == 2  # both rejected as never reached
    gw.orders[resting.client_order_id] = Order.from_intent(resting, OrderStatus.OPEN, T0, exchange_order_id="77")
    await router.sync(T0 + 11_000)  # listed open: it landed
    _filled_on_the_exchange(gw, resting, fee_base=0.1, fee_quote=0.029)
    await router.sync(T0 + 12_000)
    attempts = {e.payload["client_order_id"]: e.seq for e in sink.events if e.kind == "order_attempt"}
    results = [e for e in sink.events if e.kind == "order_result" and e.payload["client_order_id"] == resting.client_order_id]
    assert [(r.payload["status"], r.cause, r.trace_id) for r in results] == [
        ("unknown", attempts[resting.client_order_id], resting.trace_id),
        ("rejected", attempts[resting.client_order_id], resting.trace_id),
        ("open", attempts[resting.client_order_id], resting.trace_id),
        ("filled", attempts[resting.client_order_id], resting.trace_id),
    ]
    await router.sync(T0 + 70_001)  # the other's watch ends: its attempt is forgotten
    assert broker.watching_late() == [] and router._attempts == {}
