"""Fees paid in BNB, end to end: the sim charges every commission of an account with "use BNB
for fees" in BNB, the real ccxt.pro client reports it, and the engine values it at the BNB/USDT
price it knows and books it into PnL (it used to book those fills as fee-free)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from engine.journal.reader import JournalReader
from engine.sim.matching import BNB
from tests.kit.exchange_rig import exchange_rig
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
