"""The bookkeeping behind the REST re-check after a user-data gap."""

from __future__ import annotations

from decimal import Decimal

from engine.domain import OrderPurpose, OrderStatus
from engine.market.gateway import Balance
from engine.market.known_orders import KnownOrders, changed_balances, changed_orders, vanished
from tests.kit.domain import make_intent, make_order


def test_intents_give_trace_and_purpose_and_exchange_ids_map_back() -> None:
    known = KnownOrders()
    known.note_intent(make_intent(client_order_id="c1", purpose=OrderPurpose.STOP_LOSS))
    known.remember(make_order(client_order_id="c1", exchange_order_id="77"))
    assert known.meta("c1") == ("0123456789abcdef", OrderPurpose.STOP_LOSS)
    assert known.meta("someone-else") == ("", OrderPurpose.ENTRY)
    assert known.client_id("77") == "c1" and known.client_id("78") is None


def test_memory_is_bounded_and_finished_orders_go_first() -> None:
    known = KnownOrders(max_orders=10)
    known.remember(make_order(client_order_id="open", exchange_order_id="0", status=OrderStatus.OPEN))
    for i in range(1, 30):
        known.remember(make_order(client_order_id=f"done{i}", exchange_order_id=str(i)))
    assert len(known) <= 10
    assert "open" in known.snapshot()
    assert known.client_id("1") is None


def test_vanished_and_changed_orders() -> None:
    open_a = make_order(client_order_id="a", status=OrderStatus.OPEN)
    open_b = make_order(client_order_id="b", status=OrderStatus.OPEN)
    done = make_order(client_order_id="c", status=OrderStatus.FILLED)
    before = {"a": open_a, "b": open_b, "c": done}
    partly = make_order(client_order_id="b", status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(5))
    new = make_order(client_order_id="d", status=OrderStatus.OPEN)
    assert vanished(before, [partly, new]) == [open_a]
    assert changed_orders(before, [partly, new, done]) == [partly, new]


def test_changed_balances() -> None:
    one = Balance(Decimal(1), Decimal(0))
    two = Balance(Decimal(2), Decimal(0))
    zero = Balance(Decimal(0), Decimal(0))
    assert changed_balances(None, {"USDT": one}) == {"USDT": one}
    assert changed_balances({"USDT": one, "DOGE": one}, {"USDT": two}) == {"DOGE": zero, "USDT": two}
    assert changed_balances({"USDT": one}, {"USDT": one}) == {}
