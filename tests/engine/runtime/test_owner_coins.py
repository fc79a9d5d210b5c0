"""The account already held the coin the engine buys (the owner's own), on the simulated
exchange: the balance audit took the owner's coins for a fill we never booked and journaled a
`balance_mismatch` at every check whose numbers moved; close-all sold only the position."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from engine.journal.reader import JournalReader
from engine.market.gateway import Balance
from engine.runtime.client import Command
from engine.runtime.recovery import BalanceAudit, BalanceSource
from tests.kit.exchange_rig import exchange_config, exchange_rig
from tests.kit.waiting import eventually

OWNERS = Decimal(1000)
# Held until close-all: no take-profit, trail or stop fires on the scripted pump.
HOLD = {
    "trading.exits.take_profit": [{"gain": 5.0, "fraction": 1.0}],
    "trading.exits.trailing_activation": 5.0,
    "trading.exits.exit_on_signal": False,
    "trading.exits.stop_loss": 0.9,
}


class _Read:
    """The balances as the audit read them."""

    def __init__(self, source: BalanceSource) -> None:
        self.source = source
        self.reads: list[dict[str, Balance]] = []

    async def fetch_balance(self) -> dict[str, Balance]:
        balances = await self.source.fetch_balance()
        self.reads.append(balances)
        return balances


async def test_coins_the_account_held_before_the_entry_are_no_balance_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with exchange_rig(path, exchange_config(**HOLD)) as rig:
        engine = rig.engine
        assert rig.pump_symbol is not None
        symbol, base = rig.pump_symbol, rig.pump_symbol.split("/")[0]
        account = rig.account()
        account.balance(base).free = OWNERS
        read = _Read(rig.gateway)
        engine.audit = BalanceAudit(read, "USDT")
        task = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: engine.core is not None and symbol in engine.core.book.holdings, timeout=60)
            core = engine.core
            assert core is not None
            # An audit saw the account holding the position beside the owner's coins.
            await eventually(lambda: any(b[base].total > OWNERS for b in read.reads if base in b), timeout=60)
            assert symbol in core.book.holdings
            await engine.command(Command.CLOSE_ALL, "test")
            await eventually(lambda: symbol not in core.book.holdings, timeout=60)
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)
        await rig.journal.flush()
        left = account.free(base)
    with JournalReader(path) as reader:
        mismatch = [e.payload for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "balance_mismatch"]
    assert mismatch == []
    assert OWNERS <= left < OWNERS + Decimal("0.1")  # close-all sold ours; the owner's coins stay
