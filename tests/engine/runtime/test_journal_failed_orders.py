"""A journal that fails around an entry, on the simulated exchange: the engine turns exits-only
at once, so that entry never reaches the exchange, and exits-only lasts while an entry the
exchange may still take late could land (its coins need a stop)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
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
