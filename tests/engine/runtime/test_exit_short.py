"""An exit the exchange refuses for insufficient balance (-2010), on the simulated exchange: part
of the coins left the account outside the engine (sold in the Binance app) after the entry
filled. The engine learns the real balance, writes the missing coins down and sells the rest,
instead of resending the same exit every cycle until its order errors blocked all trading."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from engine.domain import EngineState
from engine.journal.reader import JournalReader
from engine.portfolio.positions import MISSING_REASON
from engine.runtime.recovery import read_journal
from tests.kit.exchange_rig import exchange_config, exchange_rig
from tests.kit.waiting import eventually


async def test_an_exit_refused_for_want_of_coins_sells_what_the_exchange_holds(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with exchange_rig(path, exchange_config()) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: engine.stats.fills >= 1, timeout=60)
            assert rig.pump_symbol is not None
            symbol, base = rig.pump_symbol, rig.pump_symbol.split("/")[0]
            account = rig.account()
            held = account.balance(base)
            gone = (held.free / 2).quantize(Decimal("0.1"))
            held.free -= gone  # sold in the Binance app
            core = engine.core
            assert core is not None
            await eventually(lambda: symbol not in core.book.holdings, timeout=60)
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)
        await rig.journal.flush()
        left = account.free(base)
        state = engine.state.state
    with JournalReader(path) as reader:
        refused = [e for e in reader.events(kinds=["order_result"]) if e.payload.get("code") == "-2010"]
        down = [e.payload for e in reader.events(kinds=["position_update"]) if e.payload["reason"] == MISSING_REASON]
        mismatch = [e.payload for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "balance_mismatch"]
        alerts = [e for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "exit_refused"]
        states = [e.payload["to"] for e in reader.events(kinds=["state_change"])]
    assert len(refused) == 1 and refused[0].payload["counted"] is False
    assert len(alerts) == 1
    assert [m["asset"] for m in mismatch] == [base]
    (written,) = down
    assert written["fill_quantity"] == float(gone)
    assert left < Decimal("0.1")  # the rest was sold: only crumbs under the step remain
    assert state is EngineState.TRADEABLE and EngineState.BLOCKED.value not in states
    assert symbol not in read_journal(path, 10_000.0).book.holdings  # a restart does not bring the coins back


async def test_coins_locked_on_the_exchange_are_kept_not_written_down(tmp_path: Path) -> None:
    """All the coins locked by an order placed in the Binance app: the exit is refused, but the
    coins are still there, so the position stays (no write-down, no L5 block) and the owner is
    told to free them; once freed, the exit sells them."""
    path = tmp_path / "j.sqlite"
    async with exchange_rig(path, exchange_config()) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: engine.stats.fills >= 1, timeout=60)
            assert rig.pump_symbol is not None
            symbol, base = rig.pump_symbol, rig.pump_symbol.split("/")[0]
            account = rig.account()
            held = account.balance(base)
            qty = held.free
            held.locked += qty  # an open order placed in the app
            held.free = Decimal(0)
            core = engine.core
            assert core is not None
            await eventually(lambda: core.book.holdings[symbol].locked_alerted is not None, timeout=60)
            assert engine.state.state is EngineState.TRADEABLE
            held.locked -= qty  # the owner cancels that order
            held.free += qty
            await eventually(lambda: symbol not in core.book.holdings, timeout=120)
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)
        await rig.journal.flush()
        left = account.free(base)
    with JournalReader(path) as reader:
        down = [e for e in reader.events(kinds=["position_update"]) if e.payload["reason"] == MISSING_REASON]
        mismatch = [e for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "balance_mismatch"]
        (locked,) = [e.payload for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "coins_locked"]
        states = [e.payload["to"] for e in reader.events(kinds=["state_change"])]
    assert down == [] and mismatch == []
    assert "coins locked on the exchange" in locked["detail"] and "cancel the order in the Binance app" in locked["detail"]
    assert EngineState.BLOCKED.value not in states
    assert left < Decimal("0.1")  # sold once freed

