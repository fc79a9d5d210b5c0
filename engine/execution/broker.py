"""The broker seam: where order intents go, and what comes back.

`PaperBroker` fills against the live book with the shared fill model; `ExchangeBroker` sends
through the exchange `Gateway`. Both answer with `OrderUpdate`s: the order as it now stands plus
the executions since the last update, so the core books fills the same way in either mode.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from engine.domain import Fill, Order, OrderIntent


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order's latest state and the fills that happened since its previous update."""

    order: Order
    fills: tuple[Fill, ...] = ()
    journal_seq: int | None = None  # seq of the order_result that journaled it (set by the router)


class Broker(abc.ABC):
    """Async order handling. Errors are `engine.errors.OrderError` subclasses (see `error_class`)."""

    @abc.abstractmethod
    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        """Send `intent`; returns the acknowledged (maybe already filled) order."""

    @abc.abstractmethod
    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        """Cancel an open order; cancelling a terminal order returns it unchanged (idempotent)."""

    @abc.abstractmethod
    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        """Progress since the last call: fills of resting orders, expiries, reconciliation."""

    @abc.abstractmethod
    async def open_orders(self) -> list[Order]:
        """Every order this broker knows to be open."""
