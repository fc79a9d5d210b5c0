"""The engine listens to the exchange's user stream (`Engine(order_stream=...)`): a resting
order's fill is booked at the next batch, not at the next reconcile (`reconcile_interval_ms`,
15 s by default), so a LIMIT entry that filled is a position the exits watch at once. Without
it, the fill stayed unknown until the reconcile: 15 s of a momentum coin with no stop on it.
Against the simulated exchange's real executionReports: `test_cycle_order_results`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from engine.domain import Order, OrderIntent, OrderPurpose, OrderType
from engine.execution.exchange_broker import ExchangeBroker
from engine.journal.reader import JournalReader
from engine.market.fake import FakeGateway
from engine.runtime import engine as engine_module
from tests.kit.domain import make_market
from tests.kit.engine import pump_rig, quiet_config
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


async def test_a_limit_entry_filled_on_the_book_is_booked_from_the_user_stream(tmp_path: Path) -> None:
    config = quiet_config(**{
        "trading.execution.entry_order_type": "limit",
        "trading.execution.limit_expiry_ms": DAY_MS,  # no expiry races the push
        "trading.execution.reconcile_interval_ms": DAY_MS,  # the reconcile never finds it in this test
    })  # fmt: skip
    gateway = LimitsFillOnTheBook({})
    broker = ExchangeBroker(gateway, reconcile_interval_ms=DAY_MS)
    path = tmp_path / "journal.sqlite"
    async with pump_rig(path, config, broker=broker, order_stream=gateway.watch_orders) as rig:
        gateway.markets[rig.pump_symbol] = make_market(rig.pump_symbol)
        run = asyncio.create_task(rig.engine.run())
        try:
            await eventually(lambda: rig.engine.core is not None and rig.pump_symbol in rig.engine.core.book.holdings)
        finally:
            rig.engine.stop()
            await run
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
    config = quiet_config(**{
        "trading.execution.entry_order_type": "limit",
        "trading.execution.limit_expiry_ms": DAY_MS,
        "trading.execution.reconcile_interval_ms": DAY_MS,
    })  # fmt: skip
    gateway = LimitsFillOnTheBook({})
    failures = [RuntimeError("stream refused"), RuntimeError("stream refused again")]

    async def flaky_stream() -> list[Order]:
        if failures:
            raise failures.pop(0)
        return await gateway.watch_orders()

    path = tmp_path / "journal.sqlite"
    broker = ExchangeBroker(gateway, reconcile_interval_ms=DAY_MS)
    with caplog.at_level(logging.WARNING, logger="hotcoin.engine"):
        async with pump_rig(path, config, broker=broker, order_stream=flaky_stream) as rig:
            gateway.markets[rig.pump_symbol] = make_market(rig.pump_symbol)
            run = asyncio.create_task(rig.engine.run())
            try:
                await eventually(lambda: rig.engine.core is not None and rig.pump_symbol in rig.engine.core.book.holdings)
            finally:
                rig.engine.stop()
                await run
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("order stream failed")]
    assert len(failed) == 2 and "RuntimeError: stream refused" in failed[0]
    assert "fills are still found by the reconcile" in failed[0]
