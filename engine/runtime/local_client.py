"""The in-process `EngineClient`: the TUI and the engine share one event loop, and the
client is the only door between them (snapshots out of the engine, commands into it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult, EngineClient
from engine.runtime.snapshot import EngineSnapshot


class SnapshotHub:
    """Latest-value broadcast: publishers overwrite, readers wake and read the newest.

    A slow reader never builds a queue: it skips straight to the latest snapshot.
    """

    def __init__(self) -> None:
        self._latest: EngineSnapshot | None = None
        self._changed = asyncio.Condition()
        self._closed = False

    @property
    def latest(self) -> EngineSnapshot | None:
        return self._latest

    async def publish(self, snap: EngineSnapshot) -> None:
        async with self._changed:
            self._latest = snap
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def subscribe(self) -> AsyncIterator[EngineSnapshot]:
        """The latest snapshot, then each one published, until the hub closes. A reader gets
        a snapshot published just before the close; one that starts reading a closed hub gets
        nothing: its latest snapshot is then the last known state, not a live feed."""
        if self._closed:
            return
        seen = -1

        def fresh() -> bool:
            return self._closed or (self._latest is not None and self._latest.seq != seen)

        while True:
            async with self._changed:
                await self._changed.wait_for(fresh)
                if self._latest is None or self._latest.seq == seen:
                    return
                snap = self._latest
            seen = snap.seq
            yield snap


CommandHandler = Callable[[Command, str], Awaitable[CommandResult]]
CandleSource = Callable[[str, str, int], Awaitable[list[Candle]]]
FillSource = Callable[[str], Awaitable[list[Fill]]]
TraceSource = Callable[[str], Awaitable[list[JournalEvent]]]


class LocalEngineClient(EngineClient):
    def __init__(
        self,
        hub: SnapshotHub,
        on_command: CommandHandler,
        candles: CandleSource,
        fills: FillSource,
        trace: TraceSource,
    ) -> None:
        self._hub = hub
        self._on_command = on_command
        self._candles = candles
        self._fills = fills
        self._trace = trace

    def latest(self) -> EngineSnapshot | None:
        return self._hub.latest

    def updates(self) -> AsyncIterator[EngineSnapshot]:
        return self._hub.subscribe()

    async def send(self, command: Command, origin: str) -> CommandResult:
        return await self._on_command(command, origin)

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return await self._candles(symbol, timeframe, limit)

    async def fills(self, symbol: str) -> list[Fill]:
        return await self._fills(symbol)

    async def trace(self, trace_id: str) -> list[JournalEvent]:
        return await self._trace(trace_id)
