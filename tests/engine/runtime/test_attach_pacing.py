"""A reader that asks for a pace gets at most that many snapshots a second, never loses the
last one, and still gets close-all progress, pause and engine-state changes at once.

Counted on the wire (raw socket lines), since the client's own hub would coalesce too."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult
from engine.runtime.local_client import LocalEngineClient, SnapshotHub
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.snapshot import CloseAllProgress, EngineSnapshot
from engine.runtime.socket_server import serve_engine_socket
from tests.kit.snapshots import make_snapshot, make_status
from tests.kit.waiting import eventually


class Engine:
    """A hub the test publishes into by hand, behind a LocalEngineClient."""

    def __init__(self) -> None:
        self.hub = SnapshotHub()
        self.seq = 0
        self.client = LocalEngineClient(self.hub, self._command, self._candles, self._fills, self._trace)

    async def publish(self, **changes: Any) -> EngineSnapshot:
        self.seq += 1
        snap = dataclasses.replace(make_snapshot(seq=self.seq, ts_ms=1000 + self.seq), **changes)
        await self.hub.publish(snap)
        return snap

    async def _command(self, command: Command, origin: str) -> CommandResult:
        return CommandResult(True, "ok")

    async def _candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return []

    async def _fills(self, symbol: str) -> list[Fill]:
        return []

    async def _trace(self, trace_id: str) -> list[JournalEvent]:
        return []


class Wire:
    """A raw connection: every snapshot line received, with its arrival time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.snapshots: list[tuple[float, dict[str, Any]]] = []
        self.replies: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self.reader.readline():
            msg = orjson.loads(line)
            if msg["type"] == "snapshot":
                self.snapshots.append((time.monotonic(), msg["snapshot"]))
            elif msg["type"] == "reply":
                self.replies.append(msg)

    @property
    def seqs(self) -> list[int]:
        return [int(s["seq"]) for _, s in self.snapshots]

    async def pace(self, max_hz: float) -> None:
        self.writer.write(orjson.dumps({"id": 1, "op": "pace", "max_hz": max_hz}) + b"\n")
        await self.writer.drain()
        await eventually(lambda: any(r["id"] == 1 for r in self.replies))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._task


@pytest.fixture
async def engine() -> Engine:
    eng = Engine()
    await eng.publish()
    return eng


@contextlib.asynccontextmanager
async def wire(engine: Engine, path: Path) -> AsyncIterator[Wire]:
    async with serve_engine_socket(path, engine.client):
        reader, writer = await asyncio.open_unix_connection(str(path), limit=2**26)
        assert orjson.loads(await reader.readline())["type"] == "hello"
        w = Wire(reader, writer)
        try:
            yield w
        finally:
            await w.close()


async def test_a_paced_reader_gets_at_most_its_rate_and_always_the_last(engine: Engine, tmp_path: Path) -> None:
    async with wire(engine, tmp_path / "e.sock") as w:
        await w.pace(5)
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # ~500 snapshots a second, for a second
            await engine.publish()
            await asyncio.sleep(0.002)
        last = engine.seq
        await eventually(lambda: w.seqs[-1:] == [last], timeout=2)  # the final state is never dropped
        assert 4 <= len(w.snapshots) <= 8, w.seqs  # 5/s over ~1.2 s, not hundreds
        assert w.seqs == sorted(w.seqs)
        gaps = [b - a for (a, _), (b, _) in zip(w.snapshots, w.snapshots[1:], strict=False)]
        assert min(gaps) >= 0.15  # 0.2 s apart, with room for a slow machine's timer


async def test_an_unpaced_reader_gets_every_snapshot_as_before(engine: Engine, tmp_path: Path) -> None:
    async with wire(engine, tmp_path / "e.sock") as w:
        for _ in range(20):
            await engine.publish()
            await eventually(lambda: w.seqs[-1:] == [engine.seq])
        assert len(w.snapshots) == 20


@pytest.mark.parametrize("change", ["close_all", "paused", "state"])
async def test_what_an_operator_acts_on_is_not_held_back_by_the_pace(engine: Engine, tmp_path: Path, change: str) -> None:
    urgent: dict[str, Any] = {
        "close_all": {"close_all": CloseAllProgress(1000, 3, 3)},
        "paused": {"status": make_status(paused=True)},
        "state": {"status": make_status(state="blocked")},
    }[change]
    async with wire(engine, tmp_path / "e.sock") as w:
        await w.pace(0.5)  # one every 2 s
        await engine.publish()
        await eventually(lambda: w.seqs == [engine.seq])
        await engine.publish()  # routine: held for its turn
        sent = time.monotonic()
        snap = await engine.publish(**urgent)  # replaces it, and goes at once
        await eventually(lambda: w.seqs[-1:] == [snap.seq], timeout=1.5)
        assert w.snapshots[-1][0] - sent < 1.0
        assert len(w.snapshots) == 2


async def test_a_held_snapshot_goes_out_when_the_engine_stops(engine: Engine, tmp_path: Path) -> None:
    async with wire(engine, tmp_path / "e.sock") as w:
        await w.pace(0.2)  # one every 5 s
        await engine.publish()
        await eventually(lambda: len(w.snapshots) == 1)
        last = await engine.publish()
        await engine.hub.close()  # what a stopping engine does
        await eventually(lambda: w.seqs[-1:] == [last.seq], timeout=2)


async def test_a_bad_pace_is_an_error_reply(engine: Engine, tmp_path: Path) -> None:
    async with wire(engine, tmp_path / "e.sock") as w:
        w.writer.write(b'{"id": 7, "op": "pace", "max_hz": 0}\n')
        await w.writer.drain()
        await eventually(lambda: any(r["id"] == 7 for r in w.replies))
        reply = next(r for r in w.replies if r["id"] == 7)
        assert reply["ok"] is False and "max_hz must be > 0" in reply["error"]["message"]


async def test_the_remote_client_asks_for_its_pace(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    async with serve_engine_socket(path, engine.client), RemoteEngineClient(path, max_hz=2) as remote:
        seen: list[int] = []

        async def read() -> None:
            async for snap in remote.updates():
                seen.append(snap.seq)

        reader = asyncio.create_task(read())
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            await engine.publish()
            await asyncio.sleep(0.005)
        last = engine.seq
        await eventually(lambda: seen[-1:] == [last], timeout=2)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        assert len(seen) <= 5, seen  # the hello's, then 2/s over ~1.5 s
