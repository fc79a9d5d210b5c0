"""The order lifecycle as a table: (status, event) -> next status, and nothing else.

An exchange can report an order late, twice, or skip a step (a market order we never saw
acknowledged comes back FILLED); the table allows exactly those paths and refuses the rest
with `InvalidOrderTransition`, so a bug or a bad exchange message is loud, not a silent
resurrection of a cancelled order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from decimal import Decimal

from engine.domain import Order, OrderStatus
from engine.errors import HotcoinError

S = OrderStatus


class OrderEvent(enum.StrEnum):
    ACK = "ack"  # the exchange accepted the order
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"  # fully filled
    CANCEL = "cancel"  # cancelled (by us, by expiry of our own timer, or by close-all)
    REJECT = "reject"
    EXPIRE = "expire"  # the exchange expired it (IOC/FOK remainder, EXPIRED status)


TRANSITIONS: dict[tuple[OrderStatus, OrderEvent], OrderStatus] = {
    (S.PENDING, OrderEvent.ACK): S.OPEN,
    (S.PENDING, OrderEvent.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PENDING, OrderEvent.FILL): S.FILLED,
    (S.PENDING, OrderEvent.CANCEL): S.CANCELED,
    (S.PENDING, OrderEvent.REJECT): S.REJECTED,
    (S.PENDING, OrderEvent.EXPIRE): S.EXPIRED,
    (S.OPEN, OrderEvent.ACK): S.OPEN,
    (S.OPEN, OrderEvent.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.OPEN, OrderEvent.FILL): S.FILLED,
    (S.OPEN, OrderEvent.CANCEL): S.CANCELED,
    (S.OPEN, OrderEvent.EXPIRE): S.EXPIRED,
    (S.PARTIALLY_FILLED, OrderEvent.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, OrderEvent.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, OrderEvent.CANCEL): S.CANCELED,
    (S.PARTIALLY_FILLED, OrderEvent.EXPIRE): S.EXPIRED,
}

_EVENT_OF_STATUS: dict[OrderStatus, OrderEvent] = {
    S.OPEN: OrderEvent.ACK,
    S.PARTIALLY_FILLED: OrderEvent.PARTIAL_FILL,
    S.FILLED: OrderEvent.FILL,
    S.CANCELED: OrderEvent.CANCEL,
    S.REJECTED: OrderEvent.REJECT,
    S.EXPIRED: OrderEvent.EXPIRE,
}


class InvalidOrderTransition(HotcoinError):
    """An order update the lifecycle does not allow (e.g. a fill on a cancelled order)."""


def transition(status: OrderStatus, event: OrderEvent) -> OrderStatus:
    nxt = TRANSITIONS.get((status, event))
    if nxt is None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is status)
        raise InvalidOrderTransition(
            f"order in {status.value} cannot take {event.value}; allowed: {', '.join(allowed) or 'nothing (terminal)'}"
        )
    return nxt


def event_for(current: Order, update: Order) -> OrderEvent | None:
    """The event that takes `current` to `update`, or None if the update says nothing new.

    Same status and same filled quantity is a repeat (None); a terminal order repeated is None too.
    """
    if update.status is current.status and update.filled_qty == current.filled_qty:
        return None
    if update.filled_qty < current.filled_qty:
        raise InvalidOrderTransition(
            f"order {current.client_order_id}: filled quantity went back from {current.filled_qty} "
            f"to {update.filled_qty}; reconcile with fetch_order before trusting either"
        )
    if update.status is S.PENDING:
        raise InvalidOrderTransition(f"order {current.client_order_id}: an update cannot return to pending")
    return _EVENT_OF_STATUS[update.status]


def apply_update(current: Order, update: Order) -> Order:
    """`update` if the lifecycle allows it from `current` (repeats return `current`)."""
    event = event_for(current, update)
    if event is None:
        return current
    transition(current.status, event)
    return update


def fill_delta(current: Order, update: Order) -> tuple[Decimal, float, float]:
    """(quantity, average price, fee) executed between two snapshots of one order.

    The price of the new part comes from the change in cumulative cost, so two partial fills
    at different prices are each valued right.
    """
    qty = update.filled_qty - current.filled_qty
    if qty <= 0:
        return Decimal(0), 0.0, 0.0
    cost_before = float(current.filled_qty) * (current.average_price or 0.0)
    cost_after = float(update.filled_qty) * (update.average_price or 0.0)
    price = (cost_after - cost_before) / float(qty)
    return qty, price, fee_delta(update.fee_quote, current.fee_quote)


def exact_sum(values: Iterable[float]) -> float:
    """Fees summed as the decimals they print as: in floats three commissions of 0.025 summed
    to 0.07500000000000001, and the fill after two booked 0.02500000000000001."""
    return float(sum((Decimal(repr(v)) for v in values), Decimal(0)))


def fee_delta(after: float, before: float) -> float:
    """The fee between two cumulative figures, subtracted as the decimals they print as: in
    floats, 0.075 - 0.05 booked 0.024999999999999994 of a 0.025 commission."""
    return max(0.0, float(Decimal(repr(after)) - Decimal(repr(before))))
