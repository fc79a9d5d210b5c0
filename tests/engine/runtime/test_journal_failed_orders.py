"""A journal that fails around an entry, on the simulated exchange: the engine turns exits-only
at once, so that entry never reaches the exchange, and exits-only lasts while an entry the
exchange may still take late could land (its coins need a stop)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from engine.errors import JournalError
from tests.kit.exchange_rig import exchange_config, exchange_rig
from tests.kit.waiting import eventually


def fail_entry_attempts(path: Path) -> None:
    """The disk fills as the entry's `order_attempt` is written: its write-ahead fails. Set up
    before the run (a second connection writing from the loop's thread can deadlock the writer)."""
    with sqlite3.connect(path, timeout=60) as other:
        other.execute(
            "CREATE TRIGGER full BEFORE INSERT ON events WHEN NEW.kind = 'order_attempt' "
            "AND json_extract(NEW.payload, '$.purpose') = 'entry' BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
        )


def spilled(folder: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for f in sorted(folder.glob("*.unwritten-*.jsonl")) for line in f.read_bytes().splitlines()]


async def test_an_entry_whose_write_ahead_failed_is_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    stack = contextlib.AsyncExitStack()
    rig = await stack.enter_async_context(exchange_rig(path, exchange_config()))
    fail_entry_attempts(path)
    task = asyncio.create_task(rig.engine.run())
    await eventually(lambda: rig.journal.failure is not None, timeout=90)
    with pytest.raises(JournalError, match="disk is full"):  # nothing held: exits-only ends at once
        await asyncio.wait_for(task, 60)
    orders = dict(rig.account().orders)
    with pytest.raises(JournalError, match="saved in"):  # the journal closes with its events in the spill
        await stack.aclose()
    assert orders == {}, orders  # no entry reached the exchange
    events = spilled(tmp_path)
    (refused,) = [e["payload"] for e in events if e["kind"] == "order_result"]
    assert refused["status"] == "rejected" and refused["reason"] == "journal failed", refused
    assert "exits-only" in str(refused["error"])


def fail_unknown_outcomes(path: Path) -> None:
    """The disk fills as the entry's unknown outcome (a create that timed out) is written: the
    entry went out, and the exchange may still take it late."""
    with sqlite3.connect(path, timeout=60) as other:
        other.execute(
            "CREATE TRIGGER full BEFORE INSERT ON events WHEN NEW.kind = 'order_result' "
            "AND json_extract(NEW.payload, '$.status') = 'unknown' BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
        )


async def test_exits_only_lasts_while_an_entry_may_still_land_late(tmp_path: Path) -> None:
    """The entry's create times out and the journal fails on it; the engine settles the order
    as never reached but still watches for it. Exits-only must not end then: the exchange takes
    the entry two minutes late, and its coins are a position the engine closes before it stops."""
    path = tmp_path / "j.sqlite"
    stack = contextlib.AsyncExitStack()
    rig = await stack.enter_async_context(exchange_rig(path, exchange_config()))
    fail_unknown_outcomes(path)
    rig.server.faults.update({"late_orders": 1, "late_order_s": 120.0})
    engine = rig.engine
    task = asyncio.create_task(engine.run())
    await eventually(lambda: rig.journal.failure is not None, timeout=90)
    with pytest.raises(JournalError, match="disk is full"):
        await asyncio.wait_for(task, 90)
    assert rig.pump_symbol is not None
    base = rig.pump_symbol.split("/")[0]
    account = rig.account()

    def filled() -> list[str]:
        return sorted(o.side.value for o in account.orders.values() if o.executed_qty > 0)

    await eventually(lambda: "BUY" in filled(), timeout=30)  # the exchange took the entry (late)
    sides, left = filled(), account.free(base)
    with pytest.raises(JournalError, match="saved in"):
        await stack.aclose()
    assert engine.core is not None and not engine.core.book.holdings
    assert sides == ["BUY", *["SELL"] * (len(sides) - 1)] and len(sides) > 1, sides  # ...and the engine sold it
    assert left < Decimal("0.1"), left  # not left on the exchange with no stop
