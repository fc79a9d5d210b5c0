"""The engine listens to the exchange's user stream (`Engine(order_stream=...)`): a resting
order's fill is booked at the next batch, not at the next reconcile (`reconcile_interval_ms`,
15 s by default), so a LIMIT entry that filled is a position the exits watch at once. Without
it, the fill stayed unknown until the reconcile: 15 s of a momentum coin with no stop on it.
Against the simulated exchange's real executionReports: `test_cycle_order_results`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain import Order, OrderIntent, OrderPurpose, OrderStatus, OrderType, Side
from engine.execution.broker import OrderUpdate
from engine.execution.exchange_broker import ExchangeBroker
from engine.journal.reader import JournalReader
from engine.market.fake import FakeGateway
from engine.runtime import engine as engine_module
from engine.runtime.engine import OrderStream
from tests.kit.domain import T0, make_fill, make_intent, make_market
from tests.kit.engine import EngineRig, pump_rig, quiet_config
from tests.kit.waiting import eventually

DAY_MS = 86_400_000


class LimitsFillOnTheBook(FakeGateway):
    """A LIMIT order rests when placed, then fills on the book a moment later: the fill is
    announced on `watch_orders` only, as Binance's executionReport announces it."""

    async def create_order(self, intent: OrderIntent) -> Order:
        order = await super().create_order(intent)
        if intent.order_type is OrderType.LIMIT:
            asyncio.get_running_loop().call_soon(self.fill_order, intent.client_order_id)
        return order


@dataclasses.dataclass
class Held:
    rig: EngineRig
    gateway: LimitsFillOnTheBook
    broker: ExchangeBroker
    run: asyncio.Task[None]


@asynccontextmanager
async def holding_a_limit_entry(
    path: Path, stream: Callable[[LimitsFillOnTheBook], OrderStream] | None = None
) -> AsyncIterator[Held]:
    """The pump traded with LIMIT entries on `LimitsFillOnTheBook`, the engine listening to
    `stream` (the gateway's `watch_orders` by default); yields once the entry's fill is booked,
    with the engine still running, and stops it on exit. Limits do not expire and the reconcile
    never runs here: only the stream can book the fill."""
    config = quiet_config(**{
        "trading.execution.entry_order_type": "limit",
        "trading.execution.limit_expiry_ms": DAY_MS,
        "trading.execution.reconcile_interval_ms": DAY_MS,
    })  # fmt: skip
    gateway = LimitsFillOnTheBook({})
    broker = ExchangeBroker(gateway, reconcile_interval_ms=DAY_MS)
    order_stream = gateway.watch_orders if stream is None else stream(gateway)
    async with pump_rig(path, config, broker=broker, order_stream=order_stream) as rig:
        gateway.markets[rig.pump_symbol] = make_market(rig.pump_symbol)
        run = asyncio.create_task(rig.engine.run())
        try:
            await eventually(lambda: rig.engine.core is not None and rig.pump_symbol in rig.engine.core.book.holdings)
            yield Held(rig, gateway, broker, run)
        finally:
            rig.engine.stop()
            await run


async def test_a_limit_entry_filled_on_the_book_is_booked_from_the_user_stream(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with holding_a_limit_entry(path):
        pass
    with JournalReader(path) as reader:
        entry = next(e for e in reader.events(kinds=["order_attempt"]) if e.payload["purpose"] == OrderPurpose.ENTRY.value)
        results = [e for e in reader.events(kinds=["order_result"]) if e.payload["client_order_id"] == entry.payload["client_order_id"]]
        fills = [e for e in reader.events(kinds=["fill"]) if e.trace_id == entry.trace_id]
    assert [(r.payload["status"], r.payload.get("action")) for r in results] == [("open", None), ("filled", "push")]
    assert results[-1].cause == entry.seq
    assert len(fills) == 1 and fills[0].payload["is_maker"]


async def test_a_failing_user_stream_is_asked_again_and_its_pushes_still_booked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream that raises (a refused key, an exchange down past the gateway's reconnects) is
    logged and asked again after a wait; the engine trades on, and what it pushes later counts."""
    monkeypatch.setattr(engine_module, "ORDER_STREAM_RETRY_S", (0.01, 0.02))
    failures = [RuntimeError("stream refused"), RuntimeError("stream refused again")]

    def flaky(gateway: LimitsFillOnTheBook) -> OrderStream:
        async def stream() -> list[Order]:
            if failures:
                raise failures.pop(0)
            return await gateway.watch_orders()

        return stream

    with caplog.at_level(logging.WARNING, logger="hotcoin.engine"):
        async with holding_a_limit_entry(tmp_path / "journal.sqlite", flaky):
            pass
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("order stream failed")]
    assert len(failed) == 2 and "RuntimeError: stream refused" in failed[0]
    assert "fills are still found by the reconcile" in failed[0]


async def test_pushed_orders_of_another_client_with_ids_like_ours_are_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another hotcoin on the same API key makes ids of our format. Pushed, its filled MARKET
    buy became our position (its cash spent from ours) and its sell of coins we do not hold
    raised out of the loop: the engine stopped with every position unwatched. Each such order
    is logged and journaled once (traceless: it is not ours), with the fix (one API key per engine)."""
    path = tmp_path / "journal.sqlite"
    async with holding_a_limit_entry(path) as held:
        engine, symbol = held.rig.engine, held.rig.pump_symbol
        core = engine.core
        assert core is not None
        cash, quantity = core.cash, core.book.holdings[symbol].position.quantity
        for side, cid in ((Side.BUY, "hc-abcdefabcdefabcd-e1"), (Side.SELL, "hc-abcdefabcdefabcd-x1")):
            other = Order.from_intent(
                make_intent(symbol=symbol, side=side, client_order_id=cid, quantity=Decimal(50)),
                OrderStatus.FILLED, T0, exchange_order_id=f"other-{side.value}",
            )
            for _ in range(2):  # NEW, then FILLED: told once
                held.gateway.push_order_update(dataclasses.replace(other, filled_qty=Decimal(50), average_price=0.3))
        await eventually(lambda: len([r for r in caplog.records if "this engine did not place" in r.getMessage()]) == 2)
        cycles = engine.stats.cycles
        await eventually(lambda: engine.stats.cycles > cycles + 2)
        assert not held.run.done(), "the engine stopped"
        assert core.cash == cash and core.book.holdings[symbol].position.quantity == quantity
    with JournalReader(path) as reader:
        assert not [e for e in reader.events(kinds=["order_result", "fill"]) if "abcdefabcdefabcd" in str(e.payload)]
        journaled = [e for e in reader.events(kinds=["order_anomaly"]) if "abcdefabcdefabcd" in e.payload["client_order_id"]]
    assert [(e.payload["client_order_id"], e.trace_id) for e in journaled] == [
        ("hc-abcdefabcdefabcd-e1", None), ("hc-abcdefabcdefabcd-x1", None),
    ]  # fmt: skip
    told = [r.getMessage() for r in caplog.records if "this engine did not place" in r.getMessage()]
    assert len(told) == 2 and all("give each engine its own API key" in m for m in told)


async def test_a_fill_the_book_refuses_is_a_risk_event_not_the_end_of_the_engine(tmp_path: Path) -> None:
    """A sell fill of coins not held (sold by hand, an order the exchange and our records
    disagree on) raised `PositionError` out of the cycle and stopped the engine. It is journaled
    as `fill_refused`, and the updates after it are booked."""
    path = tmp_path / "journal.sqlite"
    async with pump_rig(path) as rig:
        run = asyncio.create_task(rig.engine.run())
        try:
            await eventually(lambda: rig.engine.core is not None)
        finally:
            rig.engine.stop()
            await run
        core = rig.engine.core
        assert core is not None
        sell = Order.from_intent(
            make_intent(symbol=rig.pump_symbol, side=Side.SELL, purpose=OrderPurpose.STOP_LOSS, quantity=Decimal(10)),
            OrderStatus.FILLED, T0,
        )
        refused = OrderUpdate(sell, (make_fill(symbol=rig.pump_symbol, side=Side.SELL, quantity=10.0),), journal_seq=None)
        buy = Order.from_intent(make_intent(symbol=rig.pump_symbol, client_order_id="hc-0123456789abcdef-e9"), OrderStatus.FILLED, T0)
        booked = OrderUpdate(buy, (make_fill(symbol=rig.pump_symbol, side=Side.BUY, quantity=10.0, trade_id="t-buy", client_order_id=buy.client_order_id),))
        rig.engine.cycle.book([refused, booked], T0)
        assert rig.pump_symbol in core.book.holdings  # the buy after the refused sell was booked
        await rig.journal.flush()
    with JournalReader(path) as reader:
        (alert,) = [e for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "fill_refused"]
    assert "not held" in alert.payload["detail"] and alert.symbol == rig.pump_symbol
