"""Emergency close-all: cancels then exits, concurrently, idempotent, one trace."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from engine.config.sections.trading import CapitalProfile, CapitalSettings, TradingSection
from engine.domain import Order, OrderIntent, OrderStatus, OrderType
from engine.execution.broker import Broker, OrderUpdate
from engine.execution.close_all import close_all
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.trading import TradingCore
from tests.engine.signals import market_kit as mk
from tests.kit.domain import make_intent
from tests.kit.events import RecordingSink
from tests.kit.waiting import eventually

N = 4


class GatedBroker(Broker):
    """Paper broker whose exits wait until `width` of them are in flight at once: only a
    concurrent close-all gets through (a sequential one would time out)."""

    def __init__(self, inner: PaperBroker, width: int) -> None:
        self.inner = inner
        self.width = width
        self.in_flight = 0
        self.peak = 0
        self.gate = asyncio.Event()

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        if intent.purpose.is_exit:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.width:
                self.gate.set()
            await asyncio.wait_for(self.gate.wait(), 2.0)
            self.in_flight -= 1
        return await self.inner.submit(intent, now_ms)

    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        return await self.inner.cancel(symbol, client_order_id, now_ms)

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        return await self.inner.sync(now_ms)

    def expired(self, now_ms: int) -> list[Order]:
        return self.inner.expired(now_ms)

    async def open_orders(self) -> list[Order]:
        return await self.inner.open_orders()


class OneReplyHangs(GatedBroker):
    """Every exit executes at once; the reply of `slow`'s hangs until `release` (the audit's
    fault: the sim's `lost_order_replies` with a hang, a request waiting out its timeout)."""

    def __init__(self, inner: PaperBroker, slow: str) -> None:
        super().__init__(inner, width=1)
        self.slow = slow
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        update = await self.inner.submit(intent, now_ms)
        if intent.symbol == self.slow and intent.purpose.is_exit:
            self.hanging.set()
            await self.release.wait()
        return update


async def entered(broker_width: int = N) -> tuple[TradingCore, OrderRouter, GatedBroker, RecordingSink]:
    names = mk.symbols(N)
    settings = TradingSection(capital=CapitalSettings(profile="big", profiles={"big": CapitalProfile(capital=1000.0, max_concurrent=N)}))
    sink = RecordingSink()
    core = TradingCore(settings, mk.markets(names), sink)
    mk.feed_hot(core.history, names, mk.NOW)
    batch = mk.book(dict.fromkeys(names, 1.025), mk.NOW)
    paper = PaperBroker(FillModel())
    paper.update_book(batch)
    broker = GatedBroker(paper, broker_width)
    router = OrderRouter(broker, sink)
    intents = core.step(batch, mk.candidates(names, mk.NOW), mk.NOW)
    for update in await router.send_all(intents, mk.NOW, core.causes):
        core.on_order_update(update, mk.NOW)
    assert len(core.book) == N
    return core, router, broker, sink


async def test_close_all_cancels_then_exits_everything_concurrently_in_one_trace() -> None:
    core, router, broker, sink = await entered()
    resting = await router.send(
        make_intent("C000/USDT", order_type=OrderType.LIMIT, price=Decimal("0.5"), quantity=Decimal(20), client_order_id="hc-00000000000000ff-e1"),
        mk.NOW,
    )
    assert resting is not None and resting.order.status is OrderStatus.OPEN
    start = len(sink.events)
    report = await close_all(core, router, mk.NOW + 1000)
    assert report.exits_sent == N and report.exits_filled == N and report.cancelled == 1
    assert report.still_open == () and not core.book.holdings
    assert broker.peak == N  # every exit was in flight at once
    new = sink.events[start:]
    command = new[0]
    assert command.kind == "command" and command.payload["command"] == "close_all"
    assert {e.trace_id for e in new if e.kind in ("order_attempt", "order_result", "fill", "position_update")} == {report.trace_id}
    closes = [e for e in new if e.kind == "position_update"]
    # Each buy's fee was taken in coins: an exit sells what the lot step allows, and the crumbs
    # left are written off as dust (as live).
    assert [(e.payload["action"], e.payload["reason"]) for e in closes] == [("partial_close", "close_all"), ("close", "dust")] * N
    assert not core.close_all_active


async def test_pressing_twice_sends_nothing_twice() -> None:
    core, router, _broker, sink = await entered(broker_width=N)
    first, second = await asyncio.gather(close_all(core, router, mk.NOW + 1000), close_all(core, router, mk.NOW + 1001))
    attempts = [e for e in sink.events if e.kind == "order_attempt" and e.payload["purpose"] == "close_all"]
    assert len(attempts) == N and len({a.payload["client_order_id"] for a in attempts}) == N
    assert first.trace_id == second.trace_id and second.repeat
    assert not core.book.holdings
    third = await close_all(core, router, mk.NOW + 5000)  # nothing left: a no-op, journaled
    assert third.exits_sent == 0 and third.cancelled == 0 and not third.repeat
    assert sum(e.kind == "order_attempt" and e.payload["purpose"] == "close_all" for e in sink.events) == N


async def test_close_all_through_the_exchange_gateway_cancels_resting_orders() -> None:
    from engine.execution.exchange_broker import ExchangeBroker
    from engine.market.fake import FakeGateway

    names = mk.symbols(2)
    settings = TradingSection(capital=CapitalSettings(profile="big", profiles={"big": CapitalProfile(capital=1000.0, max_concurrent=2)}))
    sink = RecordingSink()
    core = TradingCore(settings, mk.markets(names), sink)
    mk.feed_hot(core.history, names, mk.NOW)
    gw = FakeGateway(mk.markets(names))
    batch = mk.book(dict.fromkeys(names, 1.025), mk.NOW)
    gw.push_tickers(batch)
    router = OrderRouter(ExchangeBroker(gw), sink)
    for update in await router.send_all(core.step(batch, mk.candidates(names[:1], mk.NOW), mk.NOW), mk.NOW, core.causes):
        core.on_order_update(update, mk.NOW)
    resting = make_intent(names[1], order_type=OrderType.LIMIT, price=Decimal("0.9"), quantity=Decimal(10), client_order_id="hc-00000000000000ee-e1")
    assert (await router.send(resting, mk.NOW)) is not None
    report = await close_all(core, router, mk.NOW + 1000)
    assert gw.cancelled == [resting.client_order_id]
    assert report.cancelled == 1 and report.exits_filled == 1 and report.still_open == ()
    assert [i.purpose.value for i in gw.created] == ["entry", "entry", "close_all"]


async def test_each_exits_fill_is_journaled_while_another_exits_reply_hangs() -> None:
    """Audit: the exits' fills were booked only once every reply was back, so while one hung the
    others' replies (filled) were journaled and their fills were not; a kill -9 then forgot those
    sales, and the restart sold the coins again (a false -100 USDT, the daily loss limit)."""
    core, router, broker, sink = await entered()
    slow, *fast = sorted(core.book.holdings)
    hangs = OneReplyHangs(broker.inner, slow)
    router.broker = hangs

    def sold() -> set[str | None]:
        return {e.symbol for e in sink.events if e.kind == "fill" and e.payload["side"] == "sell"}

    task = asyncio.create_task(close_all(core, router, mk.NOW + 1000))
    try:
        await asyncio.wait_for(hangs.hanging.wait(), 2.0)
        await eventually(lambda: sold() == set(fast), timeout=2.0)
        assert set(core.book.holdings) == {slow} and not task.done(), "booked while the slow reply still hangs"
    finally:
        hangs.release.set()
    report = await asyncio.wait_for(task, 2.0)
    assert report.exits_filled == N and report.still_open == () and sold() == {slow, *fast}
