"""Finished orders are forgotten past the last `FINISHED_KEPT`, by the brokers and the router:
an engine runs for months, and every order it ever placed used to stay in memory and be walked
at every sync. The recent ones still refuse their client id again and still take a late report."""

from __future__ import annotations

import dataclasses
from collections.abc import ItemsView, Iterator, ValuesView
from decimal import Decimal
from typing import Any

import pytest

from engine.domain import Order, OrderIntent, OrderStatus, OrderType
from engine.errors import NonRetryableOrderError, UnknownOrderError
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.finished import FINISHED_KEPT, Finished
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.market.fake import FakeGateway
from tests.kit.domain import T0, make_batch, make_intent, make_market
from tests.kit.events import RecordingSink

MANY = FINISHED_KEPT + 200


def _cid(n: int) -> str:
    return f"hc-{n:016x}-e1"


def _market(n: int) -> OrderIntent:
    return make_intent(client_order_id=_cid(n), trace_id=f"{n:016x}")


def _limit(n: int, price: str = "0.2", expires_ms: int | None = None) -> OrderIntent:
    return make_intent(
        client_order_id=_cid(n), trace_id=f"{n:016x}", order_type=OrderType.LIMIT, price=Decimal(price), expires_ms=expires_ms
    )


def _exchange() -> tuple[ExchangeBroker, FakeGateway]:
    gw = FakeGateway({"DOGE/USDT": make_market()})
    gw.last_price["DOGE/USDT"] = 0.3
    return ExchangeBroker(gw, reconcile_interval_ms=1000), gw


class _Walked(dict[str, Any]):
    """A map that counts the entries a caller walks through."""

    walked = 0

    def __iter__(self) -> Iterator[str]:
        for key in super().__iter__():
            self.walked += 1
            yield key

    def items(self) -> ItemsView[str, Any]:
        self.walked += len(self)
        return super().items()

    def values(self) -> ValuesView[Any]:
        self.walked += len(self)
        return super().values()


def _orders_held(holder: object) -> int:
    """How many orders (or intents) `holder` keeps, in whatever maps it keeps them."""
    maps = [m for m in vars(holder).values() if isinstance(m, dict | Finished)]
    return sum(len(m) for m in maps if any(isinstance(m.get(k), Order | OrderIntent) for k in m))


def _walk_counted(holder: object) -> list[_Walked]:
    """`holder`'s maps of orders, each swapped for one that counts the orders walked."""
    counted = []
    for name, value in list(vars(holder).items()):
        if type(value) is dict and any(isinstance(v, Order) for v in value.values()):
            setattr(holder, name, walked := _Walked(value))
            counted.append(walked)
    return counted


def test_the_finished_memory_forgets_the_oldest_first() -> None:
    kept: Finished[int] = Finished(size=3)
    for n in range(5):
        kept.add(str(n), n)
    assert list(kept) == ["2", "3", "4"] and kept.get("1") is None and "4" in kept
    kept.add("2", 2)  # finished again (a late fill): the newest now
    kept.add("5", 5)
    assert list(kept) == ["4", "2", "5"]
    with pytest.raises(ValueError, match="at least one"):
        Finished(size=0)


async def test_the_exchange_broker_keeps_the_last_finished_orders_only() -> None:
    broker, _ = _exchange()
    resting = await broker.submit(_limit(0, expires_ms=T0 + 60_000), T0)
    for n in range(1, MANY + 1):
        assert (await broker.submit(_market(n), T0 + n)).order.status is OrderStatus.FILLED
    assert _orders_held(broker) == FINISHED_KEPT + 1  # the resting one and the last finished
    assert list(broker._expires) == [resting.order.client_order_id]  # no expiry kept for a finished order
    assert broker.order(_cid(1)) is None  # finished FINISHED_KEPT orders ago: forgotten
    last = broker.order(_cid(MANY))
    assert last is not None and last.status is OrderStatus.FILLED
    assert [o.client_order_id for o in await broker.open_orders()] == [_cid(0)]


async def test_expiries_open_orders_and_the_reconcile_walk_the_open_orders_only() -> None:
    broker, gw = _exchange()
    await broker.submit(_limit(0, expires_ms=T0 + 60_000), T0)
    for n in range(1, MANY + 1):
        await broker.submit(_market(n), T0 + n)
    counted = _walk_counted(broker)

    def walked() -> int:
        return sum(c.walked for c in counted)

    assert [o.client_order_id for o in broker.expired(T0 + 60_000)] == [_cid(0)]
    assert walked() == 1
    assert [o.client_order_id for o in await broker.open_orders()] == [_cid(0)]
    assert walked() == 2
    lookups = gw.calls.count("fetch_order")
    assert await broker.sync(T0 + 100_000) == []  # still open on the exchange: nothing new
    assert walked() == 3 and gw.calls.count("fetch_order") == lookups


async def test_a_recently_finished_order_still_refuses_its_id_and_takes_a_late_report() -> None:
    broker, gw = _exchange()
    placed = (await broker.submit(_limit(0), T0)).order
    await broker.cancel("DOGE/USDT", _cid(0), T0 + 1)
    filled = (await broker.submit(_market(1), T0 + 2)).order
    for n in range(2, FINISHED_KEPT):  # 999 orders finished after the cancelled one, 998 after the fill
        await broker.submit(_market(n), T0 + n)
    with pytest.raises(NonRetryableOrderError, match="duplicate"):
        await broker.submit(_limit(0), T0 + 5_000)
    creates = gw.calls.count("create_order")
    with pytest.raises(NonRetryableOrderError, match="duplicate"):
        await broker.submit(_market(1), T0 + 5_000)
    assert gw.calls.count("create_order") == creates
    # A fill the exchange reports after our cancel: booked once, against what we hold, not adopted.
    late = dataclasses.replace(placed, status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(40), average_price=0.2)
    update = await broker.on_order(late, T0 + 6_000)
    assert update is not None and [f.quantity for f in update.fills] == [40.0]
    assert update.order.status is OrderStatus.CANCELED
    assert await broker.on_order(late, T0 + 6_001) is None  # the same report again: nothing twice
    # The stream's echo of a filled market order: nothing new, and not taken for a foreign order.
    assert await broker.on_order(filled, T0 + 6_002) is None
    assert broker.take_anomalies() == [] and await broker.open_orders() == []


async def test_an_order_watched_for_a_late_landing_is_not_forgotten_while_it_is_watched() -> None:
    broker, gw = _exchange()
    gw.fail_next("create_order", UnknownOrderError("create_order: RequestTimeout"))
    with pytest.raises(UnknownOrderError):
        await broker.submit(_market(0), T0)
    (rejected,) = await broker.sync(T0 + 10_000)  # never reached, as far as the exchange says
    assert rejected.order.status is OrderStatus.REJECTED and broker.watching_late() == [_cid(0)]
    for n in range(1, MANY + 1):
        await broker.submit(_market(n), T0 + 10_000 + n)
    held = broker.order(_cid(0))
    assert held is not None and held.status is OrderStatus.REJECTED and broker.watching_late() == [_cid(0)]


async def test_the_paper_broker_keeps_the_last_finished_orders_only() -> None:
    broker = PaperBroker(FillModel(slippage_bps=0.0))
    broker.update_book(make_batch({"DOGE/USDT": 0.3}))
    await broker.submit(_limit(0, price="0.1", expires_ms=T0 + 60_000), T0)  # rests, far under the book
    for n in range(1, MANY + 1):
        assert (await broker.submit(_market(n), T0 + n)).order.status is OrderStatus.FILLED
    assert _orders_held(broker) == FINISHED_KEPT + 1 and list(broker._resting) == [_cid(0)]
    with pytest.raises(NonRetryableOrderError, match="duplicate"):
        await broker.submit(_market(MANY), T0 + MANY + 1)  # a recent one: still refused
    done = await broker.cancel("DOGE/USDT", _cid(MANY), T0 + MANY + 2)  # filled just now: its final state
    assert done.order.status is OrderStatus.FILLED
    assert [o.client_order_id for o in broker.expired(T0 + 60_000)] == [_cid(0)]


async def test_the_router_guards_the_ids_in_flight_and_the_last_settled_only() -> None:
    broker, gw = _exchange()
    router = OrderRouter(broker, RecordingSink())
    router.remember([_cid(10**6 + n) for n in range(3)])  # sent before a restart: all of them kept
    gw.fail_next("create_order", UnknownOrderError("create_order: RequestTimeout"))
    assert await router.send(_market(0), T0) is not None  # unknown: in flight until it is settled
    for n in range(1, MANY + 1):
        assert await router.send(_market(n), T0 + n) is not None
    guarded = len(router._sent) + len(getattr(router, "_settled", ()))
    assert guarded == 1 + 3 + FINISHED_KEPT  # in flight, remembered, the last settled
    suppressed = router.suppressed
    for again in (_market(0), _market(MANY), make_intent(client_order_id=_cid(10**6 + 2))):
        assert await router.send(again, T0 + 5_000) is None
    assert router.suppressed == suppressed + 3
