"""The order lifecycle table, exhaustively: every (status, event) pair either moves as the
table says or is refused."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

import pytest

from engine.domain import OrderStatus
from engine.execution.order_fsm import (
    TRANSITIONS,
    InvalidOrderTransition,
    OrderEvent,
    apply_update,
    event_for,
    fill_delta,
    transition,
)
from tests.kit.domain import make_order

PAIRS = list(itertools.product(OrderStatus, OrderEvent))


@pytest.mark.parametrize(("status", "event"), PAIRS, ids=[f"{s.value}-{e.value}" for s, e in PAIRS])
def test_every_pair(status: OrderStatus, event: OrderEvent) -> None:
    expected = TRANSITIONS.get((status, event))
    if expected is None:
        with pytest.raises(InvalidOrderTransition, match=status.value):
            transition(status, event)
    else:
        assert transition(status, event) is expected


def test_terminal_states_have_no_way_out() -> None:
    for (status, _), _nxt in TRANSITIONS.items():
        assert not status.is_terminal
    assert all(s.is_terminal for s in OrderStatus if not any(k[0] is s for k in TRANSITIONS))


def test_every_non_terminal_state_can_end() -> None:
    for status in OrderStatus:
        if not status.is_terminal:
            assert any(TRANSITIONS.get((status, e), status).is_terminal for e in OrderEvent)


def test_repeat_update_is_not_an_event() -> None:
    order = make_order(status=OrderStatus.OPEN, filled_qty=Decimal(0))
    assert event_for(order, order) is None
    assert apply_update(order, order) is order


def test_partial_then_fill_updates_and_deltas() -> None:
    open_ = make_order(status=OrderStatus.OPEN, filled_qty=Decimal(0), average_price=None, fee_quote=0.0)
    part = replace(open_, status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40), average_price=1.0, fee_quote=0.04)
    full = replace(open_, status=OrderStatus.FILLED, filled_qty=Decimal(100), average_price=1.06, fee_quote=0.106)
    assert apply_update(apply_update(open_, part), full) is full
    qty, price, fee = fill_delta(part, full)
    assert qty == Decimal(60)
    assert price == pytest.approx((106.0 - 40.0) / 60.0)
    assert fee == pytest.approx(0.066)


@pytest.mark.parametrize(
    ("current", "update"),
    [
        pytest.param(OrderStatus.CANCELED, OrderStatus.FILLED, id="fill-after-cancel"),
        pytest.param(OrderStatus.FILLED, OrderStatus.OPEN, id="reopen"),
        pytest.param(OrderStatus.OPEN, OrderStatus.PENDING, id="back-to-pending"),
    ],
)
def test_impossible_updates_are_refused(current: OrderStatus, update: OrderStatus) -> None:
    a = make_order(status=current, filled_qty=Decimal(0))
    b = make_order(status=update, filled_qty=Decimal(100) if update is OrderStatus.FILLED else Decimal(0))
    with pytest.raises(InvalidOrderTransition):
        apply_update(a, b)


def test_filled_quantity_going_back_is_refused() -> None:
    a = make_order(status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(50))
    b = make_order(status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40))
    with pytest.raises(InvalidOrderTransition, match="went back"):
        apply_update(a, b)
