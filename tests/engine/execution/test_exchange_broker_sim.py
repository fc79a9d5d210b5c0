"""The exchange broker through the real ccxt.pro gateway against the simulated exchange:
a stale resting LIMIT is cancelled on the exchange at its expiry, an order the exchange's
filters refuse comes back as a non-retryable error with Binance's code, and fills learned from
a status lookup (which carries no commission on Binance) are booked with the commission the
exchange took. (Partial fills against a thin book: tests/engine/runtime/test_runtime_faults.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr

from engine.config.sections.exchange import ExchangeSection
from engine.domain import Market, Order, OrderIntent, OrderPurpose, OrderStatus, OrderType, Side
from engine.errors import NonRetryableOrderError, UnknownOrderError
from engine.execution.broker import Broker, OrderUpdate
from engine.execution.exchange_broker import LANDED_LATE, NEVER_REACHED, VANISHED, ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.errors import AUTH_FIX
from engine.market.gateway import REST_STREAM
from engine.portfolio.positions import PositionBook, as_booked
from engine.sim.server import SimExchangeServer
from engine.sim.server.faults import LostReply as LostReplyAs
from tests.kit.domain import make_intent
from tests.kit.events import RecordingSink
from tests.kit.sim_exchange import API_KEY, SECRET, FakeMarketSource, running_sim_exchange
from tests.kit.waiting import eventually


async def test_stale_limit_is_cancelled_on_the_exchange_and_filter_failures_are_refused() -> None:
    async with running_sim_exchange(speed=1.0) as sim:
        section = ExchangeSection(
            name="sim", api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET), enable_rate_limit=False
        )
        gateway = CcxtGateway(section, endpoint=sim.base_url)
        try:
            markets = await gateway.load_markets()
            doge = markets["DOGE/USDT"]
            broker = ExchangeBroker(gateway)
            now = sim.venue.clock.now_ms()
            resting = make_intent(
                order_type=OrderType.LIMIT,
                price=doge.round_price(0.15),  # half the market: it rests
                quantity=Decimal(100),
                expires_ms=now + 30_000,
            )
            placed = await broker.submit(resting, now)
            assert placed.order.status is OrderStatus.OPEN
            assert [o.client_order_id for o in await gateway.fetch_open_orders("DOGE/USDT")] == [resting.client_order_id]

            router = OrderRouter(broker, RecordingSink())
            assert await router.sync(now + 29_999) == []
            (expired,) = await router.sync(now + 30_000)
            assert expired.order.status is OrderStatus.CANCELED
            assert await gateway.fetch_open_orders("DOGE/USDT") == []
            on_exchange = await gateway.fetch_order("DOGE/USDT", resting.client_order_id)
            assert on_exchange.status is OrderStatus.CANCELED

            # Refused before it is sent: the gateway checks the market's filters itself.
            too_small = make_intent(client_order_id="hc-0123456789abcdef-e2", quantity=Decimal(1))  # 0.3 USDT
            with pytest.raises(NonRetryableOrderError, match="NOTIONAL"):
                await broker.submit(too_small, now + 30_001)
            # Refused by the exchange: 3 M USDT of DOGE on a 10,000 USDT account (-2010).
            too_big = make_intent(client_order_id="hc-0123456789abcdef-e3", quantity=Decimal(10_000_000))
            with pytest.raises(NonRetryableOrderError) as refused:
                await broker.submit(too_big, now + 30_002)
            assert str(refused.value.code) == "-2010"
            assert sim.venue.engine.account(API_KEY).balance("USDT").locked == 0
        finally:
            await gateway.close()


class LostReply(CcxtGateway):
    """The real gateway, except that every create's reply is lost after the exchange executed it."""

    async def create_order(self, intent: OrderIntent) -> Order:
        await super().create_order(intent)
        raise UnknownOrderError("create_order: RequestTimeout (reply lost)")


@pytest.fixture
async def sim_and_source() -> AsyncIterator[tuple[SimExchangeServer, FakeMarketSource]]:
    source = FakeMarketSource()
    async with running_sim_exchange(source, speed=1.0) as sim:
        yield sim, source


def _section(**settings: int) -> ExchangeSection:
    return ExchangeSection(
        name="sim", api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET), enable_rate_limit=False, **settings
    )


async def test_a_market_buy_whose_reply_was_lost_is_booked_with_the_coins_the_exchange_kept(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource],
) -> None:
    sim, _ = sim_and_source
    gateway = LostReply(_section(), endpoint=sim.base_url)
    try:
        await gateway.load_markets()
        broker = ExchangeBroker(gateway)
        update = await broker.submit(make_intent(quantity=Decimal(100)), sim.venue.clock.now_ms())
        (fill,) = update.fills
        held = sim.venue.engine.account(API_KEY).balance("DOGE").free
        assert fill.fee_base == pytest.approx(0.1)  # 0.1 % of 100 DOGE, in DOGE
        assert Decimal(repr(fill.quantity - fill.fee_base)) == held
        assert update.anomalies == () and broker.take_anomalies() == []
    finally:
        await gateway.close()


async def test_a_resting_limit_filled_while_unwatched_is_booked_with_its_commission_by_reconcile(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource],
) -> None:
    sim, source = sim_and_source
    gateway = CcxtGateway(_section(), endpoint=sim.base_url)
    try:
        await gateway.load_markets()
        broker = ExchangeBroker(gateway)
        intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"), quantity=Decimal(100))
        assert (await broker.submit(intent, sim.venue.clock.now_ms())).order.status is OrderStatus.OPEN
        source.set_price("DOGE/USDT", 0.28)  # the market falls through the limit: it fills resting

        async def filled() -> bool:
            return (await gateway.fetch_order("DOGE/USDT", intent.client_order_id)).status is OrderStatus.FILLED

        await eventually(filled)
        (update,) = await broker.sync(sim.venue.clock.now_ms())
        (fill,) = update.fills
        assert update.order.status is OrderStatus.FILLED and fill.price == pytest.approx(0.29)
        assert fill.fee_base == pytest.approx(0.1) and fill.fee_quote == pytest.approx(0.1 * 0.29)
        assert Decimal(repr(fill.quantity - fill.fee_base)) == sim.venue.engine.account(API_KEY).balance("DOGE").free
    finally:
        await gateway.close()


async def test_a_partly_filled_limit_cancelled_is_booked_once_under_its_own_id() -> None:
    """Binance answers a cancel under the cancel's own client id (the sim does too): the broker
    must take the reply as the order it cancelled, booking only what filled since it last looked,
    not adopt a stranger and book the whole executed quantity a second time."""
    source = FakeMarketSource(book_qty=10.0)  # 10 DOGE per book update: a big limit fills in parts
    async with running_sim_exchange(source, speed=1.0) as sim:
        gateway = CcxtGateway(_section(), endpoint=sim.base_url)
        try:
            await gateway.load_markets()
            broker = ExchangeBroker(gateway)
            intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.299"), quantity=Decimal(5000))
            cid = intent.client_order_id
            assert (await broker.submit(intent, sim.venue.clock.now_ms())).order.status is OrderStatus.OPEN
            source.set_price("DOGE/USDT", 0.29)  # the market falls through the limit: it fills in parts

            async def partly_filled() -> bool:
                return (await gateway.fetch_order("DOGE/USDT", cid)).filled_qty > 0

            await eventually(partly_filled)
            synced = await broker.sync(sim.venue.clock.now_ms())
            source.set_price("DOGE/USDT", 0.31)  # and recovers: no more fills
            cancelled = await broker.cancel("DOGE/USDT", cid, sim.venue.clock.now_ms())
            assert cancelled.order.client_order_id == cid and cancelled.order.status is OrderStatus.CANCELED
            fills = [f for u in synced for f in u.fills] + list(cancelled.fills)
            assert {f.client_order_id for f in fills} == {cid}
            executed = sum(Decimal(repr(t.quantity)) for t in await gateway.fetch_my_trades("DOGE/USDT"))
            assert 0 < executed < intent.quantity and cancelled.order.filled_qty == executed
            assert sum(Decimal(repr(f.quantity)) for f in fills) == executed  # booked once, no more
            assert await broker.open_orders() == [] and broker.take_anomalies() == []
            assert [a for u in [*synced, cancelled] for a in u.anomalies] == []
            assert await broker.sync(sim.venue.clock.now_ms() + 60_000) == []  # nothing left to reconcile
        finally:
            await gateway.close()


async def test_a_resting_limit_a_restarted_sim_lost_is_settled_once_and_the_user_resync_goes_on() -> None:
    """The sim restarted with a fresh account under a resting LIMIT: it is in no open list and
    its lookup says -2013. The user-data re-check after the gap failed on it as a whole (so the
    order stream's recovery failed again and again); the reconcile raised it every time and the
    expiry's cancel failed on it, each counted as an order error, until the engine blocked."""
    async with running_sim_exchange(FakeMarketSource(), speed=1.0) as first:
        port = first.port
        gateway = CcxtGateway(_section(), endpoint=first.base_url)
        try:
            await gateway.load_markets()
            broker = ExchangeBroker(gateway)
            router = OrderRouter(broker, sink := RecordingSink())
            lost = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.25"), quantity=Decimal(100))
            assert (await broker.submit(lost, first.venue.clock.now_ms())).order.status is OrderStatus.OPEN
            await first.stop()
            async with running_sim_exchange(FakeMarketSource(), speed=1.0, port=port) as fresh:
                other = make_intent(
                    order_type=OrderType.LIMIT, price=Decimal("0.25"), quantity=Decimal(100),
                    client_order_id="hc-0123456789abcdef-e2",
                )  # fmt: skip
                await gateway.create_order(other)
                fresh.venue.engine.cancel_order(  # cancelled while the stream was down
                    API_KEY, "DOGEUSDT", order_id=None, client_order_id=other.client_order_id, now_ms=fresh.venue.clock.now_ms()
                )

                resync = await gateway.resync_user_data(1_000)  # the other order's change still comes
                assert [(o.client_order_id, o.status) for o in resync.orders] == [(other.client_order_id, OrderStatus.CANCELED)]
                assert (await gateway.resync_user_data(1_000)).orders == ()  # the lost one is not asked about again

                now = fresh.venue.clock.now_ms()
                (settled,) = await router.sync(now)
                assert settled.order.status is OrderStatus.EXPIRED and settled.detail == VANISHED
                assert await router.sync(now + 60_000) == [] and await broker.open_orders() == []
                assert [e.payload["status"] for e in sink.events] == ["expired"]
        finally:
            await gateway.close()


async def test_a_cancel_the_key_may_not_make_is_journaled_as_failed_with_the_fix(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource],
) -> None:
    """A key without trading permission gets -2015 on DELETE /order as on POST; ccxt raises it as
    DDoSProtection, a private call having worked. The order still rests and can fill: the cancel
    is journaled as failed, with the fix, not as done (and starts no rate-limit silence)."""
    sim, _ = sim_and_source
    gateway = CcxtGateway(_section(), endpoint=sim.base_url)
    try:
        await gateway.load_markets()
        broker = ExchangeBroker(gateway)
        sink = RecordingSink()
        router = OrderRouter(broker, sink)
        intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.15"), quantity=Decimal(100))
        placed = await broker.submit(intent, sim.venue.clock.now_ms())
        sim.faults.update({"key_cannot_trade": True})
        assert await router.cancel(placed.order, sim.venue.clock.now_ms()) is None
        (result,) = [e.payload for e in sink.events if e.kind == "order_result"]
        assert (result["action"], result["status"], result["error_class"]) == ("cancel", "cancel_failed", "non_retryable")
        assert AUTH_FIX in result["error"] and result["code"] == "-2015"
        assert result["counted"] is False  # the engine blocks on the refused key, under its own reason
        assert gateway.health()[REST_STREAM].rate_limited_until_ms == 0
        assert [o.client_order_id for o in await broker.open_orders()] == [intent.client_order_id]
        assert [o.client_order_id for o in await gateway.fetch_open_orders()] == [intent.client_order_id]

        sim.faults.update({"key_cannot_trade": False})  # the owner fixed the key: the next cancel works
        done = await router.cancel(placed.order, sim.venue.clock.now_ms())
        assert done is not None and done.order.status is OrderStatus.CANCELED
    finally:
        await gateway.close()


@pytest.mark.parametrize("lost_as", list(LostReplyAs), ids=[m.value for m in LostReplyAs])
async def test_an_order_executed_whose_reply_the_exchange_lost_is_found_and_booked_with_its_fee(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource], lost_as: LostReplyAs
) -> None:
    sim, _ = sim_and_source
    sim.faults.update({"hang_s": 1.5})  # "timeout": the reply comes after the client's 0.5 s
    gateway = CcxtGateway(_section(request_timeout_ms=500), endpoint=sim.base_url)
    try:
        await gateway.load_markets()
        broker = ExchangeBroker(gateway)
        sim.faults.lose_order_replies(1, lost_as)
        update = await broker.submit(make_intent(quantity=Decimal(100)), sim.venue.clock.now_ms())
        (fill,) = update.fills
        assert update.order.status is OrderStatus.FILLED and fill.quantity == 100.0
        assert fill.fee_base == pytest.approx(0.1) and sim.faults.snapshot()["injected"]["lost_reply"] == 1
    finally:
        await gateway.close()


async def test_a_market_buy_that_lands_after_it_was_taken_as_never_reached_is_booked_once_as_executed() -> None:
    """x20: the create's reply never comes (the client gives up after 0.5 s of wall time, 10
    exchange seconds), the exchange does not know the order when the broker looks, the sync
    after the grace journals it rejected; the exchange executes it 30 s after it arrived, and
    the watch finds it: filled, journaled once, its fill exactly what the account got."""
    async with running_sim_exchange(FakeMarketSource(), speed=20.0) as sim:
        gateway = CcxtGateway(_section(request_timeout_ms=500), endpoint=sim.base_url)
        try:
            await gateway.load_markets()
            broker = ExchangeBroker(gateway, reconcile_interval_ms=5_000, late_check_ms=5_000)
            router = OrderRouter(broker, sink := RecordingSink())
            sim.faults.update({"hang_s": 5.0})
            sim.faults.land_orders_late(1, after_s=30, as_=LostReplyAs.TIMEOUT)
            intent = make_intent(quantity=Decimal(100))
            sent = await router.send(intent, sim.venue.clock.now_ms())
            assert sent is not None and sent.order.status is OrderStatus.PENDING
            updates: list[OrderUpdate] = []

            async def landed() -> bool:
                updates.extend(await router.sync(sim.venue.clock.now_ms()))
                return any(u.order.status is OrderStatus.FILLED for u in updates)

            await eventually(landed, timeout=10, interval=0.05)
            for _ in range(5):  # the syncs after it report nothing more
                updates.extend(await router.sync(sim.venue.clock.now_ms() + 60_000))
        finally:
            await gateway.close()
    rejected, filled = updates
    assert (rejected.order.status, rejected.detail) == (OrderStatus.REJECTED, NEVER_REACHED)
    assert (filled.order.status, filled.detail) == (OrderStatus.FILLED, LANDED_LATE)
    results = [e.payload for e in sink.events if e.kind == "order_result"]
    assert [r["status"] for r in results] == ["unknown", "rejected", "filled"]
    account = sim.venue.engine.account(API_KEY)
    (fill,) = filled.fills
    (trade,) = account.trades
    assert Decimal(repr(fill.quantity)) == trade.qty and fill.price == pytest.approx(float(trade.price))
    assert fill.fee_base == pytest.approx(0.1) and Decimal(repr(fill.quantity - fill.fee_base)) == account.balance("DOGE").free
    assert Decimal(10_000) - account.balance("USDT").free == pytest.approx(Decimal(repr(fill.quantity * fill.price)))
    assert trade.time_ms - rejected.order.created_ms >= 30_000 and not broker.watching_late()


async def test_a_create_that_never_lands_stays_rejected_and_is_no_longer_looked_for_after_the_window(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource],
) -> None:
    sim, _ = sim_and_source
    gateway = CcxtGateway(_section(), endpoint=sim.base_url)
    try:
        await gateway.load_markets()
        broker = ExchangeBroker(gateway, reconcile_interval_ms=5_000)
        router = OrderRouter(broker, sink := RecordingSink())
        now = sim.venue.clock.now_ms()
        sim.faults.fail_with_5xx(1)  # the create never reaches the matching engine
        assert (sent := await router.send(make_intent(), now)) is not None and sent.order.status is OrderStatus.PENDING
        (rejected,) = await router.sync(now + 10_000)
        assert rejected.order.status is OrderStatus.REJECTED and broker.watching_late() == [rejected.order.client_order_id]
        assert await router.sync(now + 40_000) == [] and broker.watching_late()  # looked up: still unknown
        assert await router.sync(now + 600_000) == [] and broker.watching_late() == []  # 10 minutes on: given up
    finally:
        await gateway.close()
    assert [e.payload["status"] for e in sink.events if e.kind == "order_result"] == ["unknown", "rejected"]
    assert sim.venue.engine.account(API_KEY).orders == {}


async def test_after_a_restart_only_the_routers_guard_stops_a_filled_order_from_being_sent_again(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource],
) -> None:
    """Binance (and the sim) take the id of a finished order again, so a restarted process that
    re-decides the same entry would buy twice; the router's guard, seeded from the journal's
    attempts (`OrderRouter.remember`, as recovery does), is what refuses it."""
    sim, _ = sim_and_source
    gateway = CcxtGateway(_section(), endpoint=sim.base_url)
    try:
        await gateway.load_markets()
        intent = make_intent(quantity=Decimal(100))
        first = await OrderRouter(ExchangeBroker(gateway), RecordingSink()).send(intent, sim.venue.clock.now_ms())
        assert first is not None and first.order.status is OrderStatus.FILLED

        restarted = OrderRouter(ExchangeBroker(gateway), RecordingSink())  # a new process: nothing in memory
        restarted.remember([intent.client_order_id])
        assert await restarted.send(intent, sim.venue.clock.now_ms()) is None and restarted.suppressed == 1
        assert len(sim.venue.engine.account(API_KEY).orders) == 1

        unguarded = OrderRouter(ExchangeBroker(gateway), RecordingSink())  # the guard is what matters:
        again = await unguarded.send(intent, sim.venue.clock.now_ms())  # the exchange takes it again
        assert again is not None and again.order.status is OrderStatus.FILLED
        assert len(sim.venue.engine.account(API_KEY).orders) == 2
    finally:
        await gateway.close()


async def _buy_then_sell_all(broker: Broker, market: Market, now_ms: int) -> tuple[float, float, float]:
    """Buy 123.4 DOGE, then sell all the book holds as the core would (floored to the lot step),
    booking each fill as the core does: (held after the buy, left after the sell, cash moved)."""
    book, cash = PositionBook(), 0.0

    def booked(update: OrderUpdate) -> float:
        nonlocal cash
        for fill in update.fills:
            held, moved = as_booked(fill)
            book.apply(held)
            cash += moved
        holding = book.get("DOGE/USDT")
        return holding.position.quantity if holding is not None else 0.0

    held = booked(await broker.submit(make_intent(quantity=Decimal("123.4")), now_ms))
    sell = make_intent(
        client_order_id="hc-0123456789abcdef-s1", side=Side.SELL, purpose=OrderPurpose.STOP_LOSS,
        quantity=market.round_qty(held, market_order=True),
    )  # fmt: skip
    left = booked(await broker.submit(sell, now_ms + 1))
    return held, left, cash


async def test_paper_ends_a_buy_then_sell_all_with_the_coins_and_cash_the_exchange_leaves(
    sim_and_source: tuple[SimExchangeServer, FakeMarketSource],
) -> None:
    """The exchange takes a buy's commission from the coins bought: 123.4 DOGE bought leave
    123.2766, the sell of all of it floors to 123.2 (lot step 0.1) and 0.0766 stays, dust.
    Paper takes it the same way; it booked the fee in cash, held the whole 123.4, sold all of
    it and ended each round trip with more cash than the exchange's account."""
    sim, source = sim_and_source
    gateway = CcxtGateway(_section(), endpoint=sim.base_url)
    try:
        markets = await gateway.load_markets()
        account = sim.venue.engine.account(API_KEY)
        usdt = account.free("USDT")
        live = await _buy_then_sell_all(ExchangeBroker(gateway), markets["DOGE/USDT"], sim.venue.clock.now_ms())
        paper_broker = PaperBroker(FillModel(slippage_bps=0.0))  # the sim fills at the top of its book
        paper_broker.update_book(source.tickers())
        paper = await _buy_then_sell_all(paper_broker, markets["DOGE/USDT"], sim.venue.clock.now_ms())
        assert live == pytest.approx((123.2766, 0.0766, float(account.free("USDT") - usdt)), rel=1e-9)
        assert float(account.free("DOGE")) == pytest.approx(live[1], rel=1e-9)
        assert paper == pytest.approx(live, rel=1e-9)
    finally:
        await gateway.close()
