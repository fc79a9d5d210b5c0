from __future__ import annotations

import asyncio
import dataclasses

from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult
from engine.runtime.local_client import LocalEngineClient, SnapshotHub
from engine.runtime.snapshot import EngineSnapshot
from tests.kit.domain import make_candle, make_fill
from tests.kit.snapshots import make_snapshot


async def test_slow_reader_skips_to_the_newest_snapshot() -> None:
    hub = SnapshotHub()
    seen: list[int] = []

    async def reader() -> None:
        async for snap in hub.subscribe():
            seen.append(snap.seq)
            await asyncio.sleep(0.02)  # slower than the publisher

    task = asyncio.create_task(reader())
    base = make_snapshot()
    for seq in range(1, 11):
        await hub.publish(dataclasses.replace(base, seq=seq))
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    await hub.close()
    await asyncio.wait_for(task, 1)
    assert seen[0] == 1
    assert seen[-1] == 10
    assert len(seen) < 10  # it skipped, it did not queue
    assert seen == sorted(seen)


async def test_a_closed_hub_hands_its_last_snapshot_to_no_new_reader() -> None:
    """A console re-subscribing to a hub whose engine went away took the old snapshot for a
    live one (its feed-lost banner cleared, then came back)."""
    hub = SnapshotHub()
    await hub.publish(make_snapshot(seq=4))
    reader = hub.subscribe()
    assert (await anext(reader)).seq == 4
    await hub.publish(make_snapshot(seq=5))
    await hub.close()
    assert [s.seq async for s in reader] == [5]  # published before the close: still delivered
    assert [s.seq async for s in hub.subscribe()] == []
    assert hub.latest is not None and hub.latest.seq == 5  # still readable as the last known state


async def test_client_is_the_only_door() -> None:
    hub = SnapshotHub()
    commands: list[tuple[Command, str]] = []

    async def on_command(cmd: Command, origin: str) -> CommandResult:
        commands.append((cmd, origin))
        return CommandResult(True, "ok")

    async def candles(symbol: str, tf: str, limit: int) -> list[Candle]:
        return [make_candle(symbol)] * limit

    async def fills(symbol: str) -> list[Fill]:
        return [make_fill(symbol)]

    async def trace(trace_id: str) -> list[JournalEvent]:
        return [JournalEvent(1, 0, "run_start", {}, trace_id)]

    client = LocalEngineClient(hub, on_command, candles, fills, trace)
    assert client.latest() is None
    snap: EngineSnapshot = make_snapshot()
    await hub.publish(snap)
    assert client.latest() is snap
    assert (await client.send(Command.PAUSE, "test")).accepted
    assert commands == [(Command.PAUSE, "test")]
    assert len(await client.candles("X/USDT", "1m", 3)) == 3
    assert (await client.fills("X/USDT"))[0].symbol == "X/USDT"
    assert (await client.trace("abc"))[0].trace_id == "abc"
