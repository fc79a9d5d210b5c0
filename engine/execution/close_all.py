"""Emergency close-all: cancel every open order, then sell every position at market, concurrently.

One trace: the `command` event opens it, every cancel and exit order in it is caused by that
event. Pressing it again while it runs joins the same trace and sends nothing twice: the core
only plans an exit for a position with no exit in flight, and the router suppresses any client
order id it has already sent. Cancels go first so that a resting limit entry cannot fill after
its position was sold, and so that no balance stays locked in an open order.

Every update goes through `book` (the live engine passes `TradingCycle.book`): the engine's
fill hook behind it keeps the chart's fills, the run's fill count and the order metrics, so
booking straight into the core would leave close-all's sells out of all three. Its sells then
go through `short` (the live engine passes `TradingCycle.exits_short`), as a cycle's exits do:
one refused for insufficient balance has the exchange asked what it holds of the coin, so the
coins that are there are sold at the next price update. Without it the first refusal only
backed off, and the difference was written down after a second one, 30 s later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.domain import OrderStatus
from engine.execution.broker import OrderUpdate
from engine.execution.router import OrderRouter
from engine.trading import TradingCore


@dataclass(frozen=True, slots=True)
class CloseAllReport:
    trace_id: str
    repeat: bool
    cancelled: int  # orders now cancelled (or already terminal)
    cancel_failed: int
    exits_sent: int
    exits_filled: int
    still_open: tuple[str, ...]  # symbols still held afterwards (unfilled or failed exits)


Book = Callable[[list[OrderUpdate], int], None]
Short = Callable[[list[OrderUpdate], int], Awaitable[None]]


async def close_all(
    core: TradingCore,
    router: OrderRouter,
    now_ms: int,
    origin: str = "operator",
    book: Book | None = None,
    short: Short | None = None,
) -> CloseAllReport:
    """`book(updates, now_ms)` books the cancels and exits; without it they go straight into
    the core (a caller with no observers of its own). Each exit is booked as soon as its own
    reply is back, not once they all are: a sell that filled had its reply journaled and its
    fill nowhere while another exit's reply hung, and a kill then forgot the sale.
    `short(exits, now_ms)` settles the sells refused for want of coins (see the module doc)."""
    if book is None:
        book = _into(core)
    start = core.begin_close_all(now_ms, origin)
    open_orders = await router.broker.open_orders()
    cancels = await asyncio.gather(
        *(router.cancel(o, now_ms, trace_id=start.trace_id, cause=start.seq) for o in open_orders)
    )
    done = [u for u in cancels if u is not None]
    book(done, now_ms)
    intents = core.close_all_intents(now_ms)
    exits: list[OrderUpdate] = await router.send_all(intents, now_ms, core.causes, book=lambda u: book([u], now_ms))
    if short is not None:
        await short(exits, now_ms)
    return CloseAllReport(
        trace_id=start.trace_id,
        repeat=start.repeat,
        cancelled=sum(1 for u in done if u.order.status.is_terminal),
        cancel_failed=len(cancels) - len(done),
        exits_sent=len(exits),
        exits_filled=sum(1 for u in exits if u.order.status is OrderStatus.FILLED),
        still_open=tuple(core.close_all_left()),
    )


def _into(core: TradingCore) -> Book:
    def book(updates: list[OrderUpdate], now_ms: int) -> None:
        for update in updates:
            core.on_order_update(update, now_ms)

    return book
