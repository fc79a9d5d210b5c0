"""`OrderRouter`: the async hand-off from the core's intents to a broker, journaled.

Every intent becomes one `order_attempt` and one `order_result` (with the error class when it
failed), in the intent's trace. An intent whose client order id was already sent is suppressed
here, before the broker: the core may re-decide the same thing, the exchange never sees it twice.
A *retryable* failure frees the id again (the order certainly did not happen); an *unknown* one
does not (it must be reconciled first).

Write-ahead: with a `durable` hook (the runtime wires the journal's `flush` for a broker that
reaches a real exchange), every `order_attempt` is committed before its order leaves: a crash
right after the exchange accepted an order must still leave the attempt on disk, or recovery
never looks the order up and never guards its id. `send_all` emits all attempts first and waits
for one commit, then submits concurrently, so a bar's orders pay one flush, not one each. The
paper broker has no outside state to lose and backtests stay fast: no hook there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from engine.domain import Order, OrderIntent, OrderStatus
from engine.errors import ErrorClass, OrderError
from engine.execution.broker import Broker, OrderUpdate
from engine.journal.events import EventSink

# Awaited between emitting order attempts and submitting them; returns once they are on disk.
Durable = Callable[[], Awaitable[None]]


class OrderRouter:
    def __init__(self, broker: Broker, sink: EventSink, *, durable: Durable | None = None) -> None:
        self.broker = broker
        self.sink = sink
        self.durable = durable
        self._sent: set[str] = set()
        self.suppressed = 0

    def remember(self, client_order_ids: Iterable[str]) -> None:
        """Ids sent before a restart (from the journal): the duplicate guard refuses them too."""
        self._sent.update(client_order_ids)

    async def send(self, intent: OrderIntent, now_ms: int, cause: int | None = None) -> OrderUpdate | None:
        """Send one intent; None if it was a duplicate. Failures come back as REJECTED (or, for an
        unknown outcome, PENDING) updates so the caller books them like any other answer."""
        seq = self._attempt(intent, now_ms, cause)
        if seq is None:
            return None
        if self.durable is not None:
            await self.durable()
        return await self._submit(intent, now_ms, seq)

    async def send_all(
        self, intents: Iterable[OrderIntent], now_ms: int, causes: Mapping[str, int] | None = None
    ) -> list[OrderUpdate]:
        """Send concurrently; the answers of the ones not suppressed, in order. Every attempt is
        journaled (and, with a `durable` hook, committed) before the first order goes out."""
        attempts = [(i, self._attempt(i, now_ms, None if causes is None else causes.get(i.client_order_id))) for i in intents]
        sent = [(i, seq) for i, seq in attempts if seq is not None]
        if sent and self.durable is not None:
            await self.durable()
        return list(await asyncio.gather(*(self._submit(i, now_ms, seq) for i, seq in sent)))

    def _attempt(self, intent: OrderIntent, now_ms: int, cause: int | None) -> int | None:
        """Journal the `order_attempt` and claim its client id; None (and counted) if already sent."""
        cid = intent.client_order_id
        if cid in self._sent:
            self.suppressed += 1
            return None
        self._sent.add(cid)
        attempt: dict[str, Any] = {
            "client_order_id": cid,
            "side": intent.side.value,
            "order_type": intent.order_type.value,
            "purpose": intent.purpose.value,
            "quantity": str(intent.quantity),
            "price": None if intent.price is None else str(intent.price),
            "reference_price": intent.reference_price,
            "expires_ms": intent.expires_ms,
        }
        return self.sink.emit(
            "order_attempt", ts_ms=now_ms, payload=attempt, trace_id=intent.trace_id, symbol=intent.symbol, cause=cause
        )

    async def _submit(self, intent: OrderIntent, now_ms: int, seq: int) -> OrderUpdate:
        """Hand an attempted intent (journaled as `seq`) to the broker; journal its answer."""
        cid = intent.client_order_id
        try:
            update = await self.broker.submit(intent, now_ms)
        except OrderError as exc:
            if exc.error_class is ErrorClass.RETRYABLE:
                self._sent.discard(cid)
            status = OrderStatus.PENDING if exc.error_class is ErrorClass.UNKNOWN else OrderStatus.REJECTED
            result_seq = self.sink.emit(
                "order_result",
                ts_ms=now_ms,
                payload={
                    "client_order_id": cid,
                    "status": "unknown" if status is OrderStatus.PENDING else status.value,
                    "error_class": exc.error_class.value,
                    "error": str(exc),
                    "code": None if exc.code is None else str(exc.code),
                },
                trace_id=intent.trace_id,
                symbol=intent.symbol,
                cause=seq,
            )
            # the order a failed send leaves behind, so the core can release what it reserved for it
            return OrderUpdate(Order.from_intent(intent, status, now_ms), journal_seq=result_seq)
        order = update.order
        result_seq = self.sink.emit(
            "order_result",
            ts_ms=now_ms,
            payload={
                "client_order_id": cid,
                "status": order.status.value,
                "error_class": None,
                "exchange_order_id": order.exchange_order_id,
                "filled_qty": str(order.filled_qty),
                "average_price": order.average_price,
            },
            trace_id=intent.trace_id,
            symbol=intent.symbol,
            cause=seq,
        )
        return replace(update, journal_seq=result_seq)

    async def cancel(
        self, order: Order, now_ms: int, *, trace_id: str | None = None, cause: int | None = None
    ) -> OrderUpdate | None:
        """Cancel one order; journaled as an `order_result` with action `cancel`. None if it failed."""
        payload: dict[str, Any] = {"client_order_id": order.client_order_id, "action": "cancel"}
        try:
            update = await self.broker.cancel(order.symbol, order.client_order_id, now_ms)
        except OrderError as exc:
            payload |= {"status": "cancel_failed", "error_class": exc.error_class.value, "error": str(exc)}
            self.sink.emit(
                "order_result", ts_ms=now_ms, payload=payload, trace_id=trace_id or order.trace_id,
                symbol=order.symbol, cause=cause,
            )
            return None
        payload |= {"status": update.order.status.value, "error_class": None}
        seq = self.sink.emit(
            "order_result", ts_ms=now_ms, payload=payload, trace_id=trace_id or order.trace_id,
            symbol=order.symbol, cause=cause,
        )
        return replace(update, journal_seq=seq)
