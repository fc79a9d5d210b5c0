"""Fees paid in BNB, end to end: the sim charges every commission of an account with "use BNB
for fees" in BNB, the real ccxt.pro client reports it, and the engine values it at the BNB/USDT
price it knows and books it into PnL (it used to book those fills as fee-free)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from engine.domain import OrderIntent, OrderPurpose, OrderType, Side
from engine.execution.client_ids import client_order_id
from engine.journal.reader import JournalReader
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.exchange_clock import ExchangeClock
from engine.runtime.recovery import Recovery, read_journal
from engine.sim.matching import BNB
from tests.kit.engine import plain_alts
from tests.kit.exchange_rig import SPEED, exchange_config, exchange_rig
from tests.kit.sim_exchange import API_KEY, SECRET
from tests.kit.waiting import eventually


async def test_commissions_paid_in_bnb_are_valued_and_booked_into_pnl(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with exchange_rig(path) as rig:
        account = rig.account()
        account.fees_in_bnb = True
        account.balance(BNB).free = Decimal(50)
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        try:
            await eventually(
                lambda: task.done() or (engine.stats.fills >= 2 and engine.core is not None and not engine.core.book.holdings),
                timeout=60,
            )
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)
        await rig.journal.flush()
    assert rig.pump_symbol is not None
    market_id, base = rig.pump_symbol.replace("/", ""), rig.pump_symbol.split("/")[0]
    trades = [t for t in account.trades if t.symbol == market_id]
    assert trades and {t.commission_asset for t in trades} == {BNB}
    charged = sum((t.commission for t in trades), Decimal(0))
    assert account.free(BNB) == Decimal(50) - charged
    with JournalReader(path) as reader:
        fills = [e.payload for e in reader.events(kinds=["fill"]) if e.symbol == rig.pump_symbol]
        closes = [e.payload for e in reader.events(kinds=["position_update"]) if e.payload["action"] == "close"]
        unpriced = [e for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "fee_unpriced"]
    assert not unpriced
    # Each fill journals the asset, amount and rate of its commission, and its value is in fee_quote.
    assert all(f["fee_asset"] == BNB and f["fee_rate"] > 100 for f in fills)
    assert sum(Decimal(str(f["fee_other"])) for f in fills) == charged
    for f in fills:
        assert f["fee_quote"] == pytest.approx(f["fee_other"] * f["fee_rate"])
    fees = sum(f["fee_quote"] for f in fills)
    assert fees > 0
    # PnL is proceeds - cost - every fee, BNB ones included.
    proceeds = sum(f["price"] * f["quantity"] for f in fills if f["side"] == "sell")
    cost = sum(f["price"] * f["quantity"] for f in fills if f["side"] == "buy")
    assert closes[-1]["total_realised_pnl"] == pytest.approx(proceeds - cost - fees, abs=1e-6)
    # No coins were taken for fees: the position held all it bought, and its exit sold it all.
    step = rig.server.venue.market(market_id).filters.step_size
    assert account.free(base) < step


async def test_a_fill_made_while_the_engine_was_down_books_the_bnb_the_exchange_took(tmp_path: Path) -> None:
    """The engine journaled a market buy and died before its reply; the sim filled it, charging
    its commission in BNB. The restart's lookup (GET /order) carries no fees: recovery booked it
    at an estimated taker fee taken in coins (the position then held coins the account never
    lost). It now books the BNB of the order's trades (GET /myTrades), once."""
    path = tmp_path / "j.sqlite"
    async with exchange_rig(path, pump_after_ms=None) as rig:
        account = rig.account()
        account.fees_in_bnb = True
        account.balance(BNB).free = Decimal(50)
        engine, gateway = rig.engine, rig.gateway
        symbol = plain_alts(rig.market)[0]
        price = (await gateway.fetch_candles(symbol, "1m", limit=1))[-1].close
        trace = "b0b0b0b0b0b0b0b0"
        intent = OrderIntent(
            client_order_id(trace, OrderPurpose.ENTRY, 1), trace, symbol, Side.BUY, OrderType.MARKET,
            OrderPurpose.ENTRY, Decimal(str(round(20 / price))), reference_price=price,
        )  # fmt: skip
        now = rig.server.venue.clock.now_ms()
        rig.journal.emit("run_start", ts_ms=now, payload={"run_id": "before", "config_hash": "x", "mode": "SIM"})
        rig.journal.emit(
            "order_attempt", ts_ms=now, trace_id=trace, symbol=symbol,
            payload={"client_order_id": intent.client_order_id, "side": "buy", "order_type": "market",
                     "purpose": "entry", "quantity": str(intent.quantity)},
        )  # fmt: skip
        await rig.journal.flush()
        # The process that sent it (its own gateway, which saw the reply's trades) died before
        # journaling the reply; the order filled.
        section = exchange_config().exchange.model_copy(
            update={"endpoint": rig.server.base_url, "api_key": SecretStr(API_KEY), "api_secret": SecretStr(SECRET)}
        )
        dead = CcxtGateway(section, clock=ExchangeClock(now, SPEED))
        try:
            await dead.create_order(intent)
        finally:
            await dead.close()
        engine.recovery = Recovery(read_journal(path, engine.config.trading.capital.active.capital))
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: task.done() or (engine.core is not None and symbol in engine.core.book.holdings), timeout=60)
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)
        await rig.journal.flush()
    market_id = symbol.replace("/", "")
    trades = [t for t in account.trades if t.symbol == market_id]
    assert trades and {t.commission_asset for t in trades} == {BNB}
    bought = sum((t.qty for t in trades), Decimal(0))
    with JournalReader(path) as reader:
        fills = [e for e in reader.events(kinds=["fill"]) if e.payload["client_order_id"] == intent.client_order_id]
        assert len(fills) == 1, "booked once"
        (opened,) = [e.payload for e in reader.events(kinds=["position_update"]) if e.cause == fills[0].seq]
    fill = fills[0].payload
    assert Decimal(repr(fill["quantity"])) == bought
    assert (fill["fee_asset"], fill["fee_base"]) == (BNB, 0.0)
    assert Decimal(repr(fill["fee_other"])) == sum((t.commission for t in trades), Decimal(0))
    assert opened["quantity"] == pytest.approx(float(bought)), "no coins were taken for the fee"
