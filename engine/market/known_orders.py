"""What the gateway has seen of our orders and balances, for the re-check after a stream gap.

Binance's user-data stream loses every event sent while it is down. The only way to know
what happened meanwhile is to ask REST and compare with what we last knew; this module
holds "what we last knew" (bounded: finished orders are forgotten first) and does the
comparison. It also maps the exchange's order ids back to our client order ids, because
`myTrades` carries only the former.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from engine.domain import Order, OrderIntent, OrderPurpose
from engine.market.gateway import Balance

KNOWN_ORDERS_MAX = 5000  # orders remembered; beyond it the oldest finished ones are dropped
_ZERO = Balance(Decimal(0), Decimal(0))


class KnownOrders:
    """Latest state of each order we have seen, by client order id, plus each intent's trace."""

    def __init__(self, max_orders: int = KNOWN_ORDERS_MAX) -> None:
        self.max_orders = max_orders
        self._orders: OrderedDict[str, Order] = OrderedDict()
        self._intents: dict[str, tuple[str, OrderPurpose]] = {}
        self._client_ids: dict[str, str] = {}  # exchange order id -> client order id

    def __len__(self) -> int:
        return len(self._orders)

    def note_intent(self, intent: OrderIntent) -> None:
        """Remember an order's trace and purpose before sending it (the exchange does not echo them)."""
        self._intents[intent.client_order_id] = (intent.trace_id, intent.purpose)

    def meta(self, client_order_id: str) -> tuple[str, OrderPurpose]:
        """(trace_id, purpose) of one of our intents; ('', ENTRY) for an order we did not send."""
        return self._intents.get(client_order_id, ("", OrderPurpose.ENTRY))

    def client_id(self, exchange_order_id: str) -> str | None:
        return self._client_ids.get(exchange_order_id)

    def remember(self, order: Order) -> None:
        if order.exchange_order_id:
            self._client_ids[order.exchange_order_id] = order.client_order_id
        self._orders[order.client_order_id] = order
        self._orders.move_to_end(order.client_order_id)
        if len(self._orders) > self.max_orders:
            finished = [c for c, o in self._orders.items() if o.status.is_terminal]
            for cid in finished[: max(1, len(self._orders) // 10)]:
                gone = self._orders.pop(cid)
                self._intents.pop(cid, None)
                if gone.exchange_order_id:
                    self._client_ids.pop(gone.exchange_order_id, None)

    def forget(self, client_order_id: str) -> None:
        """Drop an order the exchange no longer knows at all ("Order does not exist"): the
        re-check after a gap would otherwise look it up again, and fail, after every gap."""
        gone = self._orders.pop(client_order_id, None)
        if gone is not None and gone.exchange_order_id:
            self._client_ids.pop(gone.exchange_order_id, None)

    def snapshot(self) -> dict[str, Order]:
        return dict(self._orders)


def vanished(before: dict[str, Order], open_now: list[Order]) -> list[Order]:
    """Orders we knew as unfinished that are no longer open: filled or cancelled meanwhile."""
    open_ids = {o.client_order_id for o in open_now}
    return [o for cid, o in before.items() if not o.status.is_terminal and cid not in open_ids]


def changed_orders(before: dict[str, Order], now: list[Order]) -> list[Order]:
    """Orders whose current state differs from (or is missing in) `before`."""
    return [o for o in now if before.get(o.client_order_id) != o]


def changed_balances(before: dict[str, Balance] | None, now: dict[str, Balance]) -> dict[str, Balance]:
    """Assets whose balance differs (an asset gone to zero appears as zero); all, if none was known."""
    if before is None:
        return dict(now)
    assets = set(before) | set(now)
    return {a: now.get(a, _ZERO) for a in sorted(assets) if now.get(a, _ZERO) != before.get(a, _ZERO)}
