"""What the live broker did not take as the exchange said it (an estimated fee, a late landing)
reaches the journal of the order's trace and `hotcoin replay`: it used to live only in an
in-memory list of `ExchangeBroker` that nothing read, gone at restart."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from engine.domain import Fill, Order, OrderIntent, OrderStatus, OrderType
from engine.errors import RetryableOrderError, UnknownOrderError
from engine.execution.exchange_broker import LANDED_LATE, NEVER_REACHED, VANISHED, ExchangeBroker
from engine.execution.router import OrderRouter
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.market.fake import FakeGateway
from hotcoin_tui.cli import app
from tests.kit.domain import T0, make_intent, make_market

TRACE = "0123456789abcdef"  # make_intent's


def _filled_unpriced(gw: FakeGateway, intent: OrderIntent, *, trades: bool) -> None:
    """`intent` filled at 0.3 on the exchange, looked up as Binance's GET /order answers (no
    commission); its trade, with its commission, in myTrades when `trades`."""
    order = Order.from_intent(intent, OrderStatus.FILLED, T0, exchange_order_id="77")
    gw.orders[intent.client_order_id] = dataclasses.replace(
        order, filled_qty=intent.quantity, average_price=0.3, fees_reported=False
    )
    if trades:
        gw.fills.append(
            Fill("t77", intent.client_order_id, intent.symbol, intent.side, 0.3, float(intent.quantity), 0.03, T0, fee_base=0.1)
        )


def _replay(path: Path) -> str:
    result = CliRunner().invoke(app, ["replay", TRACE, "--journal", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


async def test_a_fill_booked_at_an_estimated_fee_says_so_in_its_trace_and_in_replay(tmp_path: Path) -> None:
    gw = FakeGateway({"DOGE/USDT": make_market()})
    intent = make_intent()
    _filled_unpriced(gw, intent, trades=False)
    gw.fail_next("create_order", UnknownOrderError("timeout"))  # found by lookup: no commission in it
    gw.fail_next("fetch_my_trades", RetryableOrderError("429 too many requests", code=-1003))
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as journal:
        update = await OrderRouter(ExchangeBroker(gw, taker_fee_rate=0.001), journal).send(intent, T0)
        assert update is not None and update.fills
    with JournalReader(path) as reader:
        events = reader.trace(TRACE)
    result = next(e for e in events if e.kind == "order_result")
    (anomaly,) = [e for e in events if e.kind == "order_anomaly"]
    assert anomaly.cause == result.seq and anomaly.symbol == "DOGE/USDT"
    assert anomaly.payload["client_order_id"] == intent.client_order_id
    assert anomaly.payload["detail"].startswith("fee estimated: the exchange reported no commission for a fill of 100")
    out = _replay(path)
    assert "anomaly: fee estimated: the exchange reported no commission for a fill of 100; booked 0.03 USDT at the taker rate" in out
    assert "order_anomaly  fee estimated" in out  # and in the tree, under the result it explains


async def test_an_order_that_landed_late_says_so_in_its_trace_and_in_replay(tmp_path: Path) -> None:
    gw = FakeGateway({"DOGE/USDT": make_market()})
    intent = make_intent()
    gw.fail_next("create_order", UnknownOrderError("create_order: RequestTimeout"))
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as journal:
        router = OrderRouter(ExchangeBroker(gw, reconcile_interval_ms=1000, late_check_ms=30_000), journal)
        await router.send(intent, T0)
        (rejected,) = await router.sync(T0 + 10_000)
        assert rejected.detail == NEVER_REACHED
        _filled_unpriced(gw, intent, trades=True)  # the backend executed it after all
        (landed,) = await router.sync(T0 + 40_000)
        assert landed.detail == LANDED_LATE and landed.order.status is OrderStatus.FILLED
    with JournalReader(path) as reader:
        events = reader.trace(TRACE)
    last_result = [e for e in events if e.kind == "order_result"][-1]
    (anomaly,) = [e for e in events if e.kind == "order_anomaly"]
    assert anomaly.cause == last_result.seq
    assert anomaly.payload["detail"] == "landed late: the exchange has it filled"
    out = _replay(path)
    assert "anomaly: landed late: the exchange has it filled" in out


async def test_an_entry_the_exchange_lost_says_so_in_replay_not_just_expired(tmp_path: Path) -> None:
    """A resting entry the exchange no longer knows is settled as expired with the broker's
    detail (`VANISHED`); replay read only the status, so it told a limit that timed out. The
    detail is in the order's line and in the verdict."""
    gw = FakeGateway({"DOGE/USDT": make_market()})
    intent = make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"), expires_ms=T0 + 60_000)
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as journal:
        router = OrderRouter(ExchangeBroker(gw, reconcile_interval_ms=1000), journal)
        await router.send(intent, T0)
        del gw.orders[intent.client_order_id]  # the exchange forgot it
        (gone,) = await router.sync(T0 + 2000)
        assert gone.detail == VANISHED
    out = " ".join(_replay(path).split())  # the verdict wraps
    assert f"-> expired ({VANISHED})" in out
    assert f"entry order expired ({VANISHED}); nothing was bought" in out
