"""`OrderRouter`: the async hand-off from the core's intents to a broker, journaled.

Every intent becomes one `order_attempt` and one `order_result` (with the error class when it
failed), in the intent's trace. An intent whose client order id was already sent is suppressed
here, before the broker: the core may re-decide the same thing, the exchange never sees it twice.
A *retryable* failure frees the id again (the order certainly did not happen); an *unknown* one
does not (it must be reconciled first). An id stays guarded while its order is not settled, then
among the last `FINISHED_KEPT` settled (`engine.execution.finished`, which says why that is
enough: ids are idempotent, and the same one comes back only within its bar or its exit);
kept for good, every id this process ever sent stayed in memory for as long as it ran.

What the broker learns later passes through here too and is journaled once, as an
`order_result` caused by the attempt: each update `sync` brings (a resting order filled, an
unknown outcome settled: `action` "sync"), each snapshot the exchange's user stream pushes
(`action` "push": a resting order filled, seen within a batch rather than at the next
reconcile) and each cancel (`action` "cancel"), including the
stale orders `sync` cancels at their expiry (`reason` "expired"). So an order's last
`order_result` is its state: replay and recovery never show an order open that has settled.
An order the broker settled as never reached (`NEVER_REACHED`) keeps its attempt's seq while the
broker still watches for it (`Broker.watching_late`): if it lands late, that result too is
caused by its attempt. After a restart, recovery hands back the attempts of the orders still
open or watched (`resume`), so their later results join their trees as well.

What the broker did not take as the exchange said it (`Anomaly`: a fee it estimated, an order
that landed late, the exchange's state taken over ours) is journaled as an `order_anomaly`
beside the update it explains, caused by that update's `order_result`, so `replay` shows it on
the order and it outlives the process. One with no update (a stale snapshot ignored, an order
not ours) is taken from the broker after each call (`Broker.take_anomalies`), caused by the
order's attempt while the router holds it, and traceless for an order not ours.

Write-ahead: with a `durable` hook (the runtime wires the journal's `flush` for a broker that
reaches a real exchange), every `order_attempt` is committed before its order leaves: a crash
right after the exchange accepted an order must still leave the attempt on disk, or recovery
never looks the order up and never guards its id. `send_all` emits all attempts first and waits
for one commit, then submits concurrently, so a bar's orders pay one flush, not one each. The
paper broker has no outside state to lose and backtests stay fast: no hook there.

Journal failed (`journal_failed`, asked after the write-ahead): the engine is exits-only, so an
entry is refused here, not sent, and journaled (to the spill file) as rejected with the reason.
The write-ahead returns normally once a failed writer has saved the attempts to its spill, and
the state machine only blocks at the next cycle: without this, the very entry whose attempt
failed to commit went out. Exits and close-all still leave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from engine.domain import Order, OrderIntent, OrderStatus
from engine.errors import (
    FAULT_ERRORS,
    ErrorClass,
    InsufficientBalanceError,
    NonRetryableOrderError,
    OrderError,
)
from engine.execution.broker import Broker, OrderUpdate, SyncIncomplete
from engine.execution.exchange_broker import NEVER_REACHED
from engine.execution.finished import Finished
from engine.journal.events import EventSink

# Awaited between emitting order attempts and submitting them; returns once they are on disk.
Durable = Callable[[], Awaitable[None]]
# What failed in the journal's writer, None while it works (`Journal.failure`): no entry leaves then.
JournalFailure = Callable[[], str | None]


class JournalFailedRefusal(NonRetryableOrderError):
    """An entry the router refused to send because the journal failed: the engine is exits-only."""


class OrderRouter:
    def __init__(
        self,
        broker: Broker,
        sink: EventSink,
        *,
        durable: Durable | None = None,
        journal_failed: JournalFailure | None = None,
    ) -> None:
        self.broker = broker
        self.sink = sink
        self.durable = durable
        self.journal_failed = journal_failed
        # Ids guarded against a second send: those of orders not settled (sent and unanswered,
        # open, unknown, watched for a late landing) and whatever a restart seeded (`remember`),
        # then, once settled, the last ones in `_settled`.
        self._sent: set[str] = set()
        self._settled: Finished[None] = Finished()
        # client id -> seq of its order_attempt, until it is settled (or, if it may land late, watched no more)
        self._attempts: dict[str, int] = {}
        self._late: set[str] = set()  # settled as never reached: attempts kept for a late landing
        self.suppressed = 0
        self.sent = 0  # orders handed to the broker, close-all's included: the run summary's count

    def remember(self, client_order_ids: Iterable[str]) -> None:
        """Ids sent before a restart (from the journal): the duplicate guard refuses them too.

        All of them, each until it is seen settled (then among the last settled): the journal
        names them in no order, so keeping only some could drop the very one the core decides
        again right after the restart. They are what the journal holds, a number fixed at the
        restart; what this process sends afterwards is what must not pile up."""
        self._sent.update(client_order_ids)

    def resume(self, attempts: Mapping[str, int], late: Iterable[str] = ()) -> None:
        """Attempt seqs (from the journal) of orders sent before a restart that are still open,
        or (`late`) settled as never reached and still watched: what they do next is caused by
        their attempt, as it would have been without the restart."""
        self._attempts.update(attempts)
        self._late.update(cid for cid in late if cid in attempts)

    async def send(self, intent: OrderIntent, now_ms: int, cause: int | None = None) -> OrderUpdate | None:
        """Send one intent; None if it was a duplicate. Failures come back as REJECTED (or, for an
        unknown outcome, PENDING) updates so the caller books them like any other answer."""
        seq = self._attempt(intent, now_ms, cause)
        if seq is None:
            return None
        if self.durable is not None:
            await self.durable()
        update = await self._submit(intent, now_ms, seq, self._failure())
        self.journal_unattached(now_ms)
        return update

    async def send_all(
        self,
        intents: Iterable[OrderIntent],
        now_ms: int,
        causes: Mapping[str, int] | None = None,
        book: Callable[[OrderUpdate], None] | None = None,
    ) -> list[OrderUpdate]:
        """Send concurrently; the answers of the ones not suppressed, in order. Every attempt is
        journaled (and, with a `durable` hook, committed) before the first order goes out.

        `book` takes each answer as soon as its `order_result` is journaled, while the others may
        still be out (the caller then books nothing of the list returned). The journal has a
        reply before its fills: booked only once the whole batch was back, one slow reply (a
        hung request, up to its timeout) kept the fills of the fast ones out of the journal while
        their replies were in it, and a kill then lost those fills (recovery settles such an
        order again, `recovery._short_of_reply`, but only with what the exchange still says)."""
        attempts = [(i, self._attempt(i, now_ms, None if causes is None else causes.get(i.client_order_id))) for i in intents]
        sent = [(i, seq) for i, seq in attempts if seq is not None]
        if sent and self.durable is not None:
            await self.durable()
        failure = self._failure() if sent else None

        async def answer(intent: OrderIntent, seq: int) -> OrderUpdate:
            update = await self._submit(intent, now_ms, seq, failure)
            if book is not None:
                book(update)
            return update

        updates = list(await asyncio.gather(*(answer(i, seq) for i, seq in sent)))
        self.journal_unattached(now_ms)
        return updates

    def _failure(self) -> str | None:
        return None if self.journal_failed is None else self.journal_failed()

    def _attempt(self, intent: OrderIntent, now_ms: int, cause: int | None) -> int | None:
        """Journal the `order_attempt` and claim its client id; None (and counted) if already sent."""
        cid = intent.client_order_id
        if cid in self._sent or cid in self._settled:
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
            "tier": intent.tier,
        }
        seq = self.sink.emit(
            "order_attempt", ts_ms=now_ms, payload=attempt, trace_id=intent.trace_id, symbol=intent.symbol, cause=cause
        )
        self._attempts[cid] = seq
        return seq

    async def _submit(self, intent: OrderIntent, now_ms: int, seq: int, journal_failure: str | None = None) -> OrderUpdate:
        """Hand an attempted intent (journaled as `seq`) to the broker; journal its answer. An
        entry is refused instead while the journal has failed (`journal_failure`)."""
        cid = intent.client_order_id
        try:
            if journal_failure is not None and not intent.purpose.is_exit:
                raise JournalFailedRefusal(f"not sent: the journal failed, the engine is exits-only ({journal_failure})")
            self.sent += 1
            update = await self.broker.submit(intent, now_ms)
        except OrderError as exc:
            if exc.error_class is ErrorClass.RETRYABLE:
                self._sent.discard(cid)
            status = OrderStatus.PENDING if exc.error_class is ErrorClass.UNKNOWN else OrderStatus.REJECTED
            if status.is_terminal:
                self._attempts.pop(cid, None)
                if exc.error_class is not ErrorClass.RETRYABLE:
                    self._settle(cid)
            payload: dict[str, Any] = {
                "client_order_id": cid,
                "status": "unknown" if status is OrderStatus.PENDING else status.value,
                "error_class": exc.error_class.value,
                "error": str(exc),
                "code": None if exc.code is None else str(exc.code),
            }
            if isinstance(exc, InsufficientBalanceError) and intent.purpose.is_exit:
                payload["counted"] = False  # see `counts_as_order_error`
            if isinstance(exc, FAULT_ERRORS):
                payload["counted"] = False  # the engine blocks on the fault itself, under its own reason
            if isinstance(exc, JournalFailedRefusal):
                payload["reason"] = "journal failed"
                payload["counted"] = False  # never reached the exchange: says nothing of its health
            result_seq = self.sink.emit(
                "order_result", ts_ms=now_ms, payload=payload, trace_id=intent.trace_id, symbol=intent.symbol, cause=seq
            )
            # the order a failed send leaves behind, so the core can release what it reserved for it
            return OrderUpdate(Order.from_intent(intent, status, now_ms), journal_seq=result_seq, error=exc)
        return replace(update, journal_seq=self._result(update, now_ms, {}, trace_id=intent.trace_id, cause=seq))

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        """The broker's progress, then its stale orders cancelled; each update journaled once.

        Expiries come after the broker's progress, so an order that filled meanwhile is not
        cancelled, and they are tried even when the progress was incomplete (`SyncIncomplete`
        is raised afterwards, carrying every update, journaled, for the caller to book). A
        broker at rest with no late landing watched has nothing to say (`at_rest`)."""
        if self.at_rest():
            return []
        incomplete: SyncIncomplete | None = None
        try:
            progress = await self.broker.sync(now_ms)
        except SyncIncomplete as exc:
            incomplete, progress = exc, exc.updates
        updates = [replace(u, journal_seq=self._result(u, now_ms, {"action": "sync"})) for u in progress]
        if self._late:  # else no late landing is watched for: nothing to forget
            self._forget_unwatched()
        for order in self.broker.expired(now_ms):
            cancelled = await self.cancel(order, now_ms, reason="expired")
            if cancelled is not None:
                updates.append(cancelled)
        self.journal_unattached(now_ms)
        if incomplete is not None:
            incomplete.updates = updates
            raise incomplete
        return updates

    def at_rest(self) -> bool:
        """Whether `sync` now would certainly return nothing and journal nothing: the broker is
        at rest (`Broker.at_rest`) and no late landing is watched. Asked without a coroutine, so
        the cycle skips the sync's two (a backtest's minutes with no order resting, nearly all:
        each coroutine cost more than the answer)."""
        return not self._late and self.broker.at_rest()

    async def pushed(self, orders: Iterable[Order], now_ms: int) -> list[OrderUpdate]:
        """Order snapshots the user stream pushed, through the broker; each one that says
        something new journaled once (`action` "push"), like a sync's. A fill pushed here and
        found again by the next sync is booked once: the broker keeps each order's filled
        quantity and reports only what grew."""
        updates: list[OrderUpdate] = []
        for order in orders:
            update = await self.broker.on_order(order, now_ms)
            if update is not None:
                updates.append(replace(update, journal_seq=self._result(update, now_ms, {"action": "push"})))
        self.journal_unattached(now_ms)
        return updates

    async def cancel(
        self,
        order: Order,
        now_ms: int,
        *,
        trace_id: str | None = None,
        cause: int | None = None,
        reason: str | None = None,
    ) -> OrderUpdate | None:
        """Cancel one order; journaled as an `order_result` with action `cancel` (and `reason`,
        e.g. "expired", when given), caused by `cause` or else the order's attempt. None if it failed."""
        payload: dict[str, Any] = {"client_order_id": order.client_order_id, "action": "cancel"}
        if reason is not None:
            payload["reason"] = reason
        try:
            update = await self.broker.cancel(order.symbol, order.client_order_id, now_ms)
        except OrderError as exc:
            payload |= {
                "status": "cancel_failed",
                "error_class": exc.error_class.value,
                "error": str(exc),
                "code": None if exc.code is None else str(exc.code),
            }
            if isinstance(exc, FAULT_ERRORS):
                payload["counted"] = False  # as for a create: the engine blocks on the fault itself
            self.sink.emit(
                "order_result", ts_ms=now_ms, payload=payload, trace_id=trace_id or order.trace_id or None,
                symbol=order.symbol, cause=cause if cause is not None else self._attempts.get(order.client_order_id),
            )
            self.journal_unattached(now_ms)
            return None
        self.journal_unattached(now_ms)
        return replace(update, journal_seq=self._result(update, now_ms, payload, trace_id=trace_id, cause=cause))

    def _forget_unwatched(self) -> None:
        """Drop the attempts kept for late landings the broker no longer looks for."""
        gone = self._late - set(self.broker.watching_late())
        for cid in gone:
            self._attempts.pop(cid, None)
            self._settle(cid)
        self._late -= gone

    def _settle(self, client_order_id: str) -> None:
        """An order is settled for good (and no late landing is looked for): its id moves from
        the guard of the orders in flight to the last settled, still refused while it is there."""
        self._sent.discard(client_order_id)
        self._settled.add(client_order_id, None)

    def _result(
        self,
        update: OrderUpdate,
        now_ms: int,
        extra: dict[str, Any],
        *,
        trace_id: str | None = None,
        cause: int | None = None,
    ) -> int:
        """Journal the order as `update` left it (status, filled quantity, average price, and
        the broker's `detail` when it settled the order itself); its seq. Caused by `cause`, or
        else the order's attempt, forgotten once the order is settled (and not watched for a late landing)."""
        order = update.order
        cid = order.client_order_id
        attempt = self._attempts.get(cid)
        if not order.status.is_terminal:
            self._late.discard(cid)  # landed late and rests: an open order again
            self._settled.pop(cid)
            self._sent.add(cid)
        elif update.detail == NEVER_REACHED:
            self._late.add(cid)  # the broker keeps looking for it
        else:
            self._attempts.pop(cid, None)
            self._late.discard(cid)
            self._settle(cid)
        payload: dict[str, Any] = extra | {
            "client_order_id": cid,
            "status": order.status.value,
            "error_class": None,
            "exchange_order_id": order.exchange_order_id,
            "filled_qty": str(order.filled_qty),
            "average_price": order.average_price,
        }
        if update.detail is not None:
            payload["detail"] = update.detail
        seq = self.sink.emit(
            "order_result",
            ts_ms=now_ms,
            payload=payload,
            trace_id=trace_id or order.trace_id or None,
            symbol=order.symbol,
            cause=cause if cause is not None else attempt,
        )
        self.journal_anomalies(update, seq, now_ms, trace_id=trace_id)
        return seq

    def journal_anomalies(self, update: OrderUpdate, result_seq: int, now_ms: int, *, trace_id: str | None = None) -> None:
        """Journal what the broker noted while taking `update` (`OrderUpdate.anomalies`), one
        `order_anomaly` each, caused by `result_seq` (the `order_result` that journaled the
        update) and in its trace (`trace_id`, or else the order's). Restart recovery journals
        the updates it settles itself, and calls this for theirs."""
        order = update.order
        for detail in update.anomalies:
            self.sink.emit(
                "order_anomaly",
                ts_ms=now_ms,
                payload={"client_order_id": order.client_order_id, "detail": detail},
                trace_id=trace_id or order.trace_id or None,
                symbol=order.symbol,
                cause=result_seq,
            )

    def journal_unattached(self, now_ms: int) -> None:
        """Journal the anomalies the broker noted with no update to carry them
        (`Broker.take_anomalies`): in the order's trace, caused by its attempt while the router
        holds it; traceless (and causeless) for an order not ours."""
        for anomaly in self.broker.take_anomalies():
            cid = anomaly.client_order_id
            self.sink.emit(
                "order_anomaly",
                ts_ms=now_ms,
                payload={"client_order_id": cid, "detail": anomaly.detail},
                trace_id=anomaly.trace_id,
                symbol=anomaly.symbol,
                cause=None if anomaly.trace_id is None else self._attempts.get(cid),
            )
