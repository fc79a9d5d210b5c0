"""OrderRouter: order_attempt/order_result per intent, error classes, duplicate suppression."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain import OrderPurpose, OrderStatus, OrderType, Side
from engine.errors import (
    ClockSkewError,
    ExchangeAuthError,
    NonRetryableOrderError,
    OrderError,
    RetryableOrderError,
    UnknownOrderError,
)
from engine.execution.broker import counts_as_order_error
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.journal.writer import Journal
from engine.market.fake import FakeGateway
from tests.kit.domain import T0, make_batch, make_intent, make_market
from tests.kit.events import AttemptCheckingBroker, RecordingSink


def setup() -> tuple[OrderRouter, FakeGateway, RecordingSink]:
    gw = FakeGateway({"DOGE/USDT": make_market()})
    gw.last_price["DOGE/USDT"] = 0.3
    sink = RecordingSink()
    return OrderRouter(ExchangeBroker(gw), sink), gw, sink


async def test_attempt_and_result_in_the_intent_trace() -> None:
    router, _, sink = setup()
    update = await router.send(make_intent(), T0)
    assert update is not None and update.order.status is OrderStatus.FILLED
    attempt, result = sink.events
    assert (attempt.kind, result.kind) == ("order_attempt", "order_result")
    assert attempt.trace_id == result.trace_id == "0123456789abcdef"
    assert result.cause == attempt.seq and update.journal_seq == result.seq
    assert attempt.payload["quantity"] == "100" and result.payload["error_class"] is None


async def test_duplicate_intent_is_suppressed_before_the_broker() -> None:
    router, gw, sink = setup()
    await router.send(make_intent(), T0)
    assert await router.send(make_intent(), T0 + 1) is None
    assert router.suppressed == 1 and gw.calls.count("create_order") == 1 and len(sink.events) == 2


@pytest.mark.parametrize(
    ("error", "error_class", "status", "resend"),
    [
        pytest.param(RetryableOrderError("429", code=-1003), "retryable", "rejected", True, id="retryable-frees-the-id"),
        pytest.param(NonRetryableOrderError("filter", code=-1013), "non_retryable", "rejected", False, id="non-retryable"),
        pytest.param(UnknownOrderError("timeout"), "unknown", "unknown", False, id="unknown-must-reconcile"),
    ],
)
async def test_failures_carry_their_error_class(error: OrderError, error_class: str, status: str, resend: bool) -> None:
    router, gw, sink = setup()
    gw.fail_next("create_order", error)
    if isinstance(error, UnknownOrderError):
        gw.fail_next("fetch_order", NonRetryableOrderError("not found", code=-2013))
    update = await router.send(make_intent(), T0)
    assert update is not None
    result = sink.events[-1]
    assert result.payload["error_class"] == error_class and result.payload["status"] == status
    assert update.order.status is (OrderStatus.PENDING if status == "unknown" else OrderStatus.REJECTED)
    assert (await router.send(make_intent(), T0 + 1) is not None) is resend


async def test_cancel_is_journaled_and_failed_cancel_does_not_raise() -> None:
    router, gw, sink = setup()
    from decimal import Decimal

    from engine.domain import OrderType

    update = await router.send(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2")), T0)
    assert update is not None
    cancelled = await router.cancel(update.order, T0 + 1, trace_id="t" * 16)
    assert cancelled is not None and cancelled.order.status is OrderStatus.CANCELED
    assert sink.events[-1].payload["action"] == "cancel" and sink.events[-1].trace_id == "t" * 16
    gw.fail_next("cancel_order", RetryableOrderError("down"))
    other = await router.send(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"), client_order_id="c2"), T0)
    assert other is not None
    assert await router.cancel(other.order, T0 + 2) is None
    assert sink.events[-1].payload["status"] == "cancel_failed"


async def test_with_a_durable_hook_every_attempt_is_on_disk_before_its_order_leaves(tmp_path: Path) -> None:
    """A crash right after the exchange accepted an order must still leave its `order_attempt`
    in the file: recovery looks the order up and guards its id only if it knows it was sent."""
    path = tmp_path / "journal.sqlite"
    broker = AttemptCheckingBroker(path)
    flushes = 0
    async with Journal.open(path) as journal:

        async def durable() -> None:
            nonlocal flushes
            flushes += 1
            await journal.flush()

        router = OrderRouter(broker, journal, durable=durable)
        intents = [make_intent(client_order_id=f"hc-0123456789abcdef-e{n}") for n in (1, 2, 3)]
        updates = await router.send_all(intents, T0)
        assert await router.send(make_intent(client_order_id="hc-0123456789abcdef-e4"), T0) is not None
    assert len(updates) == 3 and broker.unjournaled == []
    assert flushes == 2  # one commit for the whole batch, one for the single send


async def test_a_failed_journal_refuses_entries_and_lets_exits_through() -> None:
    """Once the journal's writer failed, the engine is exits-only: an entry is refused here,
    before the broker (journaled as rejected for the journal failure, not counted as an order
    error), even though the write-ahead returned; exits and close-all still leave."""
    gw = FakeGateway({"DOGE/USDT": make_market()})
    gw.last_price["DOGE/USDT"] = 0.3
    sink = RecordingSink()
    router = OrderRouter(ExchangeBroker(gw), sink, journal_failed=lambda: "journal write failed: disk is full")
    entry = make_intent()
    exit_ = make_intent(client_order_id="hc-0123456789abcdef-x1", side=Side.SELL, purpose=OrderPurpose.STOP_LOSS)
    close = make_intent(client_order_id="hc-0123456789abcdef-c1", side=Side.SELL, purpose=OrderPurpose.CLOSE_ALL)
    refused, sold, closed = await router.send_all([entry, exit_, close], T0)
    assert [i.client_order_id for i in gw.created] == [exit_.client_order_id, close.client_order_id]
    assert refused.order.status is OrderStatus.REJECTED and isinstance(refused.error, NonRetryableOrderError)
    assert sold.order.status is closed.order.status is OrderStatus.FILLED
    (result,) = [e.payload for e in sink.events if e.kind == "order_result" and e.payload["client_order_id"] == entry.client_order_id]
    assert result["status"] == "rejected" and result["reason"] == "journal failed" and result["counted"] is False
    assert "disk is full" in result["error"] and "exits-only" in result["error"]
    assert not counts_as_order_error(result)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ExchangeAuthError("key refused", code=-2015), id="refused-key"),
        pytest.param(ClockSkewError("clock skew", code=-1021, skew_ms=8000), id="clock-skew"),
    ],
)
async def test_a_fault_a_human_must_fix_is_not_counted_as_an_order_error(error: OrderError) -> None:
    """The state machine blocks on the fault itself, under its own reason; counting it too said
    "order errors in window" instead of what to fix."""
    router, gw, sink = setup()
    gw.fail_next("create_order", error)
    update = await router.send(make_intent(), T0)
    assert update is not None and update.order.status is OrderStatus.REJECTED
    result = sink.events[-1].payload
    assert result["error_class"] == "non_retryable" and result["counted"] is False
    assert not counts_as_order_error(result)


async def test_a_router_at_rest_is_one_whose_sync_says_and_journals_nothing() -> None:
    """`at_rest` (the cycle then skips the sync's coroutines) holds only where the whole sync
    returns nothing and journals nothing: a paper broker with nothing resting and no late
    landing watched. A late landing watched, an order resting, or a broker that reaches an
    exchange (never at rest) each make the router ask."""
    sink = RecordingSink()
    router = OrderRouter(PaperBroker(FillModel()), sink)
    assert router.at_rest() and await router.sync(T0) == [] and sink.events == []
    router.resume({"late-1": 7}, late=["late-1"])
    assert not router.at_rest()
    resting = OrderRouter(PaperBroker(FillModel()), RecordingSink())
    assert isinstance(resting.broker, PaperBroker)
    resting.broker.update_book(make_batch({"DOGE/USDT": 0.2955}, ts_ms=T0, bid={"DOGE/USDT": 0.295}, ask={"DOGE/USDT": 0.296}))
    await resting.send(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29")), T0)
    assert not resting.at_rest()
    assert not setup()[0].at_rest()
