"""`RemoteEngineClient`: the same `EngineClient` as in-process, across the engine's Unix socket.

    async with RemoteEngineClient(path) as client:   # attach
        snap = client.latest()
        async for snap in client.updates(): ...
    # leaving the block detaches; the engine goes on

A background task reads the socket: snapshots go into a local latest-value hub (so `latest()`
is a plain read and a slow `updates()` reader skips, as in-process), replies resolve their
request's future. When the engine goes away, `updates()` iterators end and pending and later
requests raise `AttachError`, until `reconnect()` attaches again (an engine restarted on the
same socket).

A command (`send`) is waited for as long as the connection lives: the engine carries out a
command it took to its end whatever this side does (a close-all against a slow exchange can
take minutes), so giving up after a while reported as failed a close-all that went on to
flatten the book. Only a lost connection fails it. Queries (candles, fills, trace, pace) have
no effect to misreport and fail after `request_timeout_s`; attaching itself after `connect`'s
`timeout_s`.

`max_hz` asks the engine for at most that many snapshots a second (a console that repaints
at 4 Hz has no use for 20, and each one costs the engine an encode and this process a
decode); close-all progress, pause and engine-state changes still arrive at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult, EngineClient
from engine.runtime.local_client import SnapshotHub
from engine.runtime.snapshot import EngineSnapshot
from engine.runtime.socket_server import (
    MAX_LINE,
    PROTOCOL,
    AnswerLost,
    AttachError,
    check_path,
    decode_candle,
    decode_event,
    decode_fill,
    decode_snapshot,
    encode,
    raise_error,
)


class RemoteEngineClient(EngineClient):
    def __init__(self, path: Path | str, *, request_timeout_s: float = 30.0, max_hz: float | None = None) -> None:
        self.path = Path(path)
        self._timeout = request_timeout_s
        self.max_hz = max_hz
        self._hub = SnapshotHub()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._lost: str | None = None

    # -- attach / detach ------------------------------------------------------------------------

    async def connect(self, timeout_s: float = 5.0) -> None:
        """Attach: connect and wait for the engine's hello (with its latest snapshot)."""
        check_path(self.path)
        try:
            async with asyncio.timeout(timeout_s):
                self._reader, self._writer = await asyncio.open_unix_connection(str(self.path), limit=MAX_LINE)
                hello = orjson.loads(await self._reader.readline() or b"null")
        except (FileNotFoundError, ConnectionRefusedError):
            raise AttachError(
                f"no engine is serving {self.path}; start one with `hotcoin run` (it serves this socket)"
            ) from None
        except PermissionError:
            raise AttachError(f"permission denied on {self.path}: it belongs to another user") from None
        except TimeoutError:
            await self.close()
            raise AttachError(f"the engine at {self.path} did not answer within {timeout_s:g} s") from None
        if not isinstance(hello, dict) or hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL:
            await self.close()
            raise AttachError(f"{self.path} speaks another protocol ({hello!r:.80}); upgrade the older side")
        if hello.get("snapshot") is not None:
            await self._hub.publish(decode_snapshot(hello["snapshot"]))
        self._pump = asyncio.create_task(self._read_loop(), name="attach-reader")
        if self.max_hz is not None:
            try:
                await self._request({"op": "pace", "max_hz": self.max_hz}, self._timeout)
            except AttachError:
                if not self.connected:
                    raise
                # an engine from before `pace` answers "unknown op": it sends every snapshot

    async def reconnect(self, timeout_s: float = 5.0) -> None:
        """Attach again after losing the engine: a new connection and a new snapshot hub, as a
        fresh client would have (the old hub is closed; its readers have ended), so `latest()`
        is None until the engine's hello. Raises `AttachError` while no engine answers (call it
        again later); the last snapshot of the engine that went away is never handed out again."""
        await self.close()
        self._hub, self._pending, self._lost = SnapshotHub(), {}, None
        try:
            await self.connect(timeout_s)
        except (AttachError, OSError, ValueError) as exc:
            await self.close()
            self._lost = str(exc)
            raise

    async def close(self) -> None:
        """Detach. Only this reader's connection closes; the engine never notices beyond that."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await self._writer.wait_closed()
            self._writer = None
        await self._lose("detached")

    async def __aenter__(self) -> RemoteEngineClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._lost is None and self._writer is not None

    # -- EngineClient -----------------------------------------------------------------------------

    def latest(self) -> EngineSnapshot | None:
        return self._hub.latest

    def updates(self) -> AsyncIterator[EngineSnapshot]:
        return self._hub.subscribe()

    async def send(self, command: Command, origin: str) -> CommandResult:
        """The engine's answer, however long it takes while connected (see the module docstring)."""
        result = await self._request({"op": "send", "command": command.value, "origin": origin}, None)
        return CommandResult(bool(result["accepted"]), str(result["message"]))

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        rows = await self._request({"op": "candles", "symbol": symbol, "timeframe": timeframe, "limit": limit}, self._timeout)
        return [decode_candle(r) for r in rows]

    async def fills(self, symbol: str) -> list[Fill]:
        return [decode_fill(r) for r in await self._request({"op": "fills", "symbol": symbol}, self._timeout)]

    async def trace(self, trace_id: str) -> list[JournalEvent]:
        return [decode_event(r) for r in await self._request({"op": "trace", "trace_id": trace_id}, self._timeout)]

    # -- plumbing ---------------------------------------------------------------------------------

    async def _request(self, body: dict[str, Any], timeout_s: float | None) -> Any:
        """Send `body` and wait for its reply: up to `timeout_s`, or as long as the connection
        lives (None)."""
        if self._lost is not None or self._writer is None:
            raise AttachError(f"not attached to the engine at {self.path} ({self._lost or 'never connected'})")
        req_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            self._writer.write(encode({"id": req_id, **body}))
            await self._writer.drain()
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise AttachError(f"the engine did not answer {body['op']} within {timeout_s:g} s") from None
        except (ConnectionError, BrokenPipeError):
            raise AnswerLost(f"lost the engine at {self.path}") from None
        finally:
            self._pending.pop(req_id, None)
            if future.done() and not future.cancelled():
                # The engine went while this request was still being written: `_lose` gave the
                # future an error no one awaits any more, which asyncio would print at exit
                # ("Future exception was never retrieved"). The caller has its own error.
                future.exception()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "the engine closed the connection"
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                msg = orjson.loads(line)
                kind = msg.get("type")
                if kind == "snapshot":
                    await self._hub.publish(decode_snapshot(msg["snapshot"]))
                elif kind == "reply":
                    future = self._pending.get(msg.get("id"))
                    if future is not None and not future.done():
                        if msg.get("ok"):
                            future.set_result(msg.get("result"))
                        else:
                            try:
                                raise_error(msg.get("error") or {})
                            except Exception as exc:  # the error to hand to the waiting caller
                                future.set_exception(exc)
        except (ConnectionError, ValueError) as exc:
            reason = f"connection broken: {exc}"
        await self._lose(reason)

    async def _lose(self, reason: str) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AnswerLost(f"lost the engine at {self.path}: {reason}"))
        await self._hub.close()
