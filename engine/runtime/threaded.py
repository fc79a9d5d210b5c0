"""Run an engine session on its own event loop in a background thread, for an in-process UI.

The engine still owns its state on one loop (no locks); what changes is that the UI's loop is
another one. A repaint that takes 100 ms of the UI loop then never holds up a market batch:
the two loops only meet through `ThreadedEngineClient`, which carries each `EngineClient`
call across with `run_coroutine_threadsafe`. Snapshots are immutable, so reading the latest
one from the UI thread needs no lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from engine.config import HotcoinConfig
from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult, EngineClient
from engine.runtime.headless import freeze_startup_heap
from engine.runtime.session import EngineSession, RunOptions, open_session
from engine.runtime.snapshot import EngineSnapshot

T = TypeVar("T")
ENGINE_SWITCH_INTERVAL_S = 0.001


class ThreadedEngineClient(EngineClient):
    """The engine thread's `EngineClient`, usable from the UI's event loop."""

    def __init__(self, inner: EngineClient, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`fn(*args)` awaited on the engine's loop.

        The awaitable is made there, by a plain callback, not here: a call that the engine's
        loop never gets to (the engine stopping as the console quits) then leaves nothing
        behind, where a coroutine made here and never started was reported as never awaited.
        A call the caller gives up on before it starts never starts; one already running runs
        to its end (a command half done is worse than a reply nobody reads)."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            if not result.set_running_or_notify_cancel():
                return
            try:
                task = asyncio.ensure_future(fn(*args))
            except BaseException as exc:
                result.set_exception(exc)
                return
            task.add_done_callback(lambda t: _settle(t, result))

        self._loop.call_soon_threadsafe(start)
        return await asyncio.wrap_future(result)

    def latest(self) -> EngineSnapshot | None:
        return self._inner.latest()

    async def updates(self) -> AsyncIterator[EngineSnapshot]:
        source = self._inner.updates()
        while True:
            try:
                yield await self._call(anext, source)
            except StopAsyncIteration:
                return

    async def send(self, command: Command, origin: str) -> CommandResult:
        return await self._call(self._inner.send, command, origin)

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return await self._call(self._inner.candles, symbol, timeframe, limit)

    async def fills(self, symbol: str) -> list[Fill]:
        return await self._call(self._inner.fills, symbol)

    async def trace(self, trace_id: str) -> list[JournalEvent]:
        return await self._call(self._inner.trace, trace_id)


def _settle(task: asyncio.Future[T], result: concurrent.futures.Future[T]) -> None:
    """The engine-side task's outcome into the caller's future."""
    if task.cancelled():
        result.set_exception(concurrent.futures.CancelledError())
    elif (exc := task.exception()) is not None:
        result.set_exception(exc)
    else:
        result.set_result(task.result())


class EngineThread:
    """`with EngineThread(config, options) as client:` an engine trading in the background.

    Leaving the block stops the engine cleanly (journal flushed) and joins the thread; an
    error that stopped the engine early is raised there.
    """

    def __init__(self, config: HotcoinConfig, options: RunOptions, duration_s: float | None = None) -> None:
        self._config = config
        self._options = options
        self._duration_s = duration_s
        self._ready: concurrent.futures.Future[tuple[EngineSession, asyncio.AbstractEventLoop]] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name="hotcoin-engine", daemon=True)
        self._session: EngineSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None

    def __enter__(self) -> ThreadedEngineClient:
        # The UI thread holds the GIL for long stretches while it renders; by default another
        # thread waits up to 5 ms for its turn at every switch. 1 ms keeps the engine's cycle
        # latency close to what it is with nobody watching (bench/bench_tui_engine.py).
        sys.setswitchinterval(ENGINE_SWITCH_INTERVAL_S)
        self._thread.start()
        self._session, self._loop = self._ready.result()
        return ThreadedEngineClient(self._session.client, self._loop)

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._session is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._session.engine.stop)
        self._thread.join()
        if self.error is not None:
            raise self.error

    @property
    def session(self) -> EngineSession:
        assert self._session is not None, "enter the EngineThread first"
        return self._session

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to the UI thread on exit (or at start)
            self.error = exc
            if not self._ready.done():
                self._ready.set_exception(exc)

    async def _serve(self) -> None:
        async with open_session(self._config, self._options) as session:
            self._ready.set_result((session, asyncio.get_running_loop()))
            freeze_startup_heap()
            await session.engine.run(self._duration_s)
