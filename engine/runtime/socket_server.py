"""Attach mode: the engine's `EngineClient` served on a Unix socket, so the TUI can come and go
(an SSH session ends, the engine keeps trading).

The socket lives in the data dir with mode 0600 (owner only); it is never a network port.
Messages are newline-delimited JSON (orjson), one object per line:

    server -> client  {"type": "hello", "protocol": 1, "snapshot": {...} | null}
                      {"type": "snapshot", "snapshot": {...}}        published snapshots
                      {"type": "reply", "id": n, "ok": true, "result": ...}
                      {"type": "reply", "id": n, "ok": false, "error": {"type", "message", "nearest"?}}
    client -> server  {"id": n, "op": "send", "command": "pause", "origin": "tui@host:pid"}
                      {"id": n, "op": "candles", "symbol": "DOGE/USDT", "timeframe": "1m", "limit": 200}
                      {"id": n, "op": "fills", "symbol": "DOGE/USDT"}
                      {"id": n, "op": "trace", "trace_id": "4f2a"}
                      {"id": n, "op": "pace", "max_hz": 4.0}          at most this many snapshots/s

Snapshots follow the in-process rule: a slow reader skips to the newest, never queues. A
reader that asked for a pace gets at most that many a second (the newest wins; the last one
is always sent; a change of close-all progress, pause or engine state goes at once): the
engine publishes one per cycle (~20/s at demo speed x60), a console repaints at 4 Hz, and
every snapshot encoded for a reader that only throws it away is the engine's loop time lost.
A detaching reader (EOF, a dropped SSH session, a crashed TUI) cancels only its own queries and
stream: the engine is never waited on or told, and a command it already sent runs to its end.
Requests run concurrently, so a slow chart query never holds up a close-all.

At start, a socket file left by a dead process is replaced; one that answers belongs to a
live engine, and the second engine is refused with `AttachError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import socket
import stat
import types
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import orjson

from engine.domain import Candle, Fill
from engine.errors import HotcoinError, MarketDataError, TraceNotFoundError
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, EngineClient
from engine.runtime.snapshot import EngineSnapshot

log = logging.getLogger("hotcoin.attach")

PROTOCOL = 1
SOCKET_NAME = "engine.sock"
MAX_LINE = 64 * 1024 * 1024  # a snapshot of a few thousand candidates is well under this
MAX_PATH = 107  # sun_path is 108 bytes with the terminating NUL on Linux
MAX_PACE_HZ = 100.0  # a reader asking for more than this gets every snapshot
CLOSE_GRACE_S = 1.0  # what is written to a closing connection gets this long to go out, then it is dropped


class AttachError(HotcoinError):
    """The engine socket cannot be served or reached (in use, too long a path, connection lost)."""


class AnswerLost(AttachError):
    """The connection went after a request was written and before its answer came: the engine
    may have taken it, and carries out a command it took to its end (a close-all flattens the
    book without the console), so the outcome is not known, not failed."""


# -- wire format ------------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    """One line of the protocol (dataclasses and enums serialise as plain JSON)."""
    return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)


def _decoder(tp: Any) -> Callable[[Any], Any] | None:
    """A converter from decoded JSON to `tp`, built once per type; None where the JSON value
    is already right (str, int, float, bool, plain mappings). The snapshot path is hot: a
    2,000-candidate pool is 2,000 rows a frame, so rows whose keys match the fields exactly
    are built straight from the dict, converting only the fields that need it."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        cls: type[Any] = tp
        hints = get_type_hints(cls)
        names = frozenset(f.name for f in dataclasses.fields(cls))
        convert = [(f.name, dec) for f in dataclasses.fields(cls) if (dec := _decoder(hints[f.name])) is not None]

        def build(data: Any) -> Any:
            # the same version on both ends: every key a field; else keep the known ones
            kwargs = dict(data) if data.keys() == names else {k: v for k, v in data.items() if k in names}
            for name, dec in convert:
                if name in kwargs:
                    kwargs[name] = dec(kwargs[name])
            return cls(**kwargs)

        return build
    origin = get_origin(tp)
    if origin is tuple:
        item = _decoder(get_args(tp)[0])
        if item is None:
            return tuple
        return lambda v: tuple(item(x) for x in v)
    if origin is Union or origin is types.UnionType:
        inner = [a for a in get_args(tp) if a is not type(None)]
        one = _decoder(inner[0]) if len(inner) == 1 else None
        if one is None:
            return None
        return lambda v: None if v is None else one(v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    return None


def _typed(tp: type[Any]) -> Callable[[Any], Any]:
    build = _decoder(tp)
    assert build is not None
    return build


decode_snapshot: Callable[[Any], EngineSnapshot] = _typed(EngineSnapshot)
decode_candle: Callable[[Any], Candle] = _typed(Candle)
decode_fill: Callable[[Any], Fill] = _typed(Fill)
decode_event: Callable[[Any], JournalEvent] = _typed(JournalEvent)


def error_doc(exc: BaseException) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, TraceNotFoundError):
        doc["nearest"] = list(exc.nearest)
    return doc


def raise_error(doc: Mapping[str, Any]) -> None:
    """Re-raise a server-side error on the client as the same kind of error where it matters."""
    kind, message = str(doc.get("type", "")), str(doc.get("message", ""))
    if kind == "TraceNotFoundError":
        raise TraceNotFoundError(message, list(doc.get("nearest") or []))
    if kind == "MarketDataError":
        raise MarketDataError(message)
    raise AttachError(f"engine answered {kind}: {message}")


# -- the socket file --------------------------------------------------------------------------


def default_socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


def check_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_PATH:
        raise AttachError(
            f"socket path {path} is {len(os.fsencode(path))} bytes; Unix sockets allow {MAX_PATH}. "
            "Use a shorter paths.data_dir"
        )


def is_served(path: Path) -> bool:
    """True when something accepts connections on `path` (a live engine)."""
    check_path(path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        raise AttachError(f"cannot probe {path}: {exc.strerror}") from None
    else:
        return True
    finally:
        probe.close()


def served_status(path: Path, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The status the engine serving `path` greets a reader with (its hello's snapshot: run id,
    config hash, state), read and let go at once; None where no engine serves it, {} where it
    serves but has published no snapshot yet. For `hotcoin doctor`, which must not attach."""
    check_path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        try:
            probe.connect(str(path))
            with probe.makefile("rb") as stream:
                line = stream.readline(MAX_LINE)
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except OSError as exc:
            raise AttachError(f"cannot read the engine's greeting on {path}: {exc.strerror or exc}") from None
    try:
        hello = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise AttachError(f"the engine on {path} greeted with something that is not its protocol") from None
    snapshot = hello.get("snapshot") if isinstance(hello, dict) else None
    status = snapshot.get("status") if isinstance(snapshot, dict) else None
    return status if isinstance(status, dict) else {}


def claim(path: Path) -> None:
    """Make `path` free for a new server: refuse a live one, remove a dead one's leftover."""
    check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AttachError(f"{path} exists and is not a socket; move it away (hotcoin will not delete it)")
    if is_served(path):
        raise AttachError(
            f"another hotcoin engine is already serving {path}; stop it first "
            "(or attach to it with `hotcoin tui --attach`), or give this one another paths.data_dir"
        )
    log.info("replacing a stale engine socket", extra={"path": str(path)})
    path.unlink(missing_ok=True)


# -- the server -------------------------------------------------------------------------------


class EngineSocketServer:
    """Serves one `EngineClient` to any number of attached readers. See the module docstring."""

    def __init__(self, path: Path, client: EngineClient) -> None:
        self.path = Path(path)
        self._client = client
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._sessions: dict[_Session, asyncio.Task[Any]] = {}
        self._commands: set[asyncio.Task[Any]] = set()  # commands outlive the reader that sent them
        self.attached = 0  # readers connected now
        self.served = 0  # readers ever connected

    async def start(self) -> None:
        claim(self.path)
        # Born 0600: binding under a 0177 umask leaves no moment (as bind-then-chmod did) in
        # which another local user could connect and send commands such as close-all. Bound
        # under a private name and linked to the real one once listening: a console that finds
        # the path never meets a socket that refuses it (bind-then-listen left that moment).
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        staging.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(staging))
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        try:
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
            try:
                os.link(staging, self.path)  # fails if another engine took the path since `claim`
            except FileExistsError:
                self._server.close()
                raise AttachError(
                    f"another hotcoin engine took {self.path} as this one started; stop it first, "
                    "or give this one another paths.data_dir"
                ) from None
        finally:
            staging.unlink(missing_ok=True)
        self._inode = self.path.lstat().st_ino
        log.info("engine socket listening", extra={"path": str(self.path)})

    async def stop(self) -> None:
        """Close the listener and every attached reader; remove the socket file if still ours.

        Commands in flight finish and their replies are written first (up to 5 s, then 1 s):
        the shutdown command that stops the engine must still answer its console, which would
        otherwise report that the engine never confirmed. Then each reader's connection is
        closed, so its session ends as on a detach (EOF): what was written to it gets
        CLOSE_GRACE_S to go out, then the connection is dropped. A console that stopped
        reading (Ctrl-Z'd, a hung SSH session) never takes it, and waiting for it kept a
        SIGTERM'd engine from ever exiting (journal lock held, a restart refused). A session
        still running a second after that is cancelled (it cannot be, short of a bug)."""
        if self._server is not None:
            self._server.close()
        if self._commands:
            await asyncio.wait(list(self._commands), timeout=5.0)
        replies = [task for session in self._sessions for task in session.requests]
        if replies:
            await asyncio.wait(replies, timeout=1.0)
        for session in list(self._sessions):
            session.hang_up()
        if self._sessions:
            _, late = await asyncio.wait(list(self._sessions.values()), timeout=CLOSE_GRACE_S + 1.0)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if self.path.lstat().st_ino == self._inode:
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One reader's connection (asyncio runs it as its own task)."""
        session = _Session(self._client, reader, writer, self._commands)
        task = asyncio.current_task()
        assert task is not None
        self._sessions[session] = task
        self.attached += 1
        self.served += 1
        try:
            await session.run()
        finally:
            self.attached -= 1
            del self._sessions[session]


class _Session:
    """One attached reader: a snapshot stream plus concurrent request handlers."""

    def __init__(
        self,
        client: EngineClient,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        commands: set[asyncio.Task[Any]],
    ) -> None:
        self._client = client
        self._commands = commands
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._interval = 0.0  # shortest time between two snapshots sent (0: every one)
        self._hanging_up: asyncio.Task[None] | None = None

    async def run(self) -> None:
        stream: asyncio.Task[None] | None = None
        try:
            latest = self._client.latest()
            await self._write({"type": "hello", "protocol": PROTOCOL, "snapshot": latest})
            stream = asyncio.create_task(self._stream(latest))
            while True:
                try:
                    line = await self._reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._write({"type": "reply", "id": None, "ok": False, "error": {"type": "ProtocolError", "message": "request line too long"}})
                    break
                if not line:
                    break  # the reader detached
                task = asyncio.create_task(self._request(line))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            for task in [*self._tasks, *([stream] if stream else [])]:
                task.cancel()
            for task in [*self._tasks, *([stream] if stream else [])]:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            await self.hang_up()  # the one close, whoever started it (`stop` may have)

    @property
    def requests(self) -> list[asyncio.Task[None]]:
        """Requests being answered now (each task ends once its reply is written)."""
        return list(self._tasks)

    def hang_up(self) -> asyncio.Task[None]:
        """End the session from the engine's side: the connection closes (`_close`), so the
        read loop sees EOF and cleans up. The one close of the connection, however often asked."""
        if self._hanging_up is None:
            self._hanging_up = asyncio.ensure_future(self._close())
        return self._hanging_up

    async def _close(self) -> None:
        """Close the connection once what is written has gone out, or drop it with the rest
        unsent after CLOSE_GRACE_S. asyncio's own `close()` waits for buffered data to be
        taken, for good when the reader stopped reading; this is never left waiting on a reader."""
        transport = self._writer.transport
        if not transport.is_closing():
            try:
                transport.set_write_buffer_limits(high=0)  # drain() returns once every byte is out
                async with asyncio.timeout(CLOSE_GRACE_S):
                    await self._writer.drain()
            except OSError:  # not all sent in time (TimeoutError), or the reader went
                pass
            finally:  # an empty buffer closes at once; abort drops a full one (cancelled too)
                if transport.get_write_buffer_size():
                    transport.abort()
                else:
                    transport.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _write(self, message: Mapping[str, Any]) -> None:
        async with self._lock:
            self._writer.write(encode(message))
            await self._writer.drain()

    async def _stream(self, sent: EngineSnapshot | None) -> None:
        """Published snapshots at the reader's pace, the newest winning (see the module docstring).

        The hub's iterator is awaited through one pending task that is never cancelled on a
        timeout (cancelling it would end the iterator); a held snapshot goes out when its
        turn comes, when something urgent replaces it, or when the engine stops publishing."""
        loop = asyncio.get_running_loop()
        updates = aiter(self._client.updates())  # `sent`: the hello's; anything newer goes
        held: EngineSnapshot | None = None
        due = loop.time()
        nxt: asyncio.Future[EngineSnapshot] = asyncio.ensure_future(anext(updates))
        try:
            while True:
                if held is not None and (loop.time() >= due or _urgent(sent, held)):
                    await self._write({"type": "snapshot", "snapshot": held})
                    sent, held = held, None
                    due = loop.time() + self._interval
                    continue
                await asyncio.wait({nxt}, timeout=None if held is None else due - loop.time())
                if not nxt.done():
                    continue  # the held snapshot's turn
                try:
                    snap = nxt.result()
                except StopAsyncIteration:  # the engine stopped: its last state still goes out
                    if held is not None:
                        await self._write({"type": "snapshot", "snapshot": held})
                    return
                nxt = asyncio.ensure_future(anext(updates))
                if sent is None or snap.seq != sent.seq:
                    held = snap
        finally:
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await nxt

    def pace(self, max_hz: float) -> None:
        """At most `max_hz` snapshots a second from the next one sent (above MAX_PACE_HZ: every one)."""
        if not max_hz > 0:
            raise ValueError(f"max_hz must be > 0, got {max_hz!r}")
        self._interval = 0.0 if max_hz > MAX_PACE_HZ else 1 / max_hz

    async def _request(self, line: bytes) -> None:
        req_id: Any = None
        try:
            req = orjson.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request must be a JSON object")
            req_id = req.get("id")
            result = await self._dispatch(req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is an answer; the connection stays up
            reply: dict[str, Any] = {"type": "reply", "id": req_id, "ok": False, "error": error_doc(exc)}
        else:
            reply = {"type": "reply", "id": req_id, "ok": True, "result": result}
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await self._write(reply)

    async def _dispatch(self, req: Mapping[str, Any]) -> Any:
        op = req.get("op")
        c = self._client
        if op == "send":
            try:
                command = Command(str(req.get("command")))
            except ValueError:
                raise ValueError(f"unknown command {req.get('command')!r}; one of {', '.join(c.value for c in Command)}") from None
            # A command runs to its end even if its reader detaches meanwhile (a dropped SSH
            # session must not half-cancel a close-all): it is the server's task, not ours.
            task = asyncio.ensure_future(c.send(command, str(req.get("origin") or "remote")))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)
            return await asyncio.shield(task)
        if op == "candles":
            return await c.candles(str(req["symbol"]), str(req["timeframe"]), int(req["limit"]))
        if op == "fills":
            return await c.fills(str(req["symbol"]))
        if op == "trace":
            return await c.trace(str(req["trace_id"]))
        if op == "pace":
            self.pace(float(req["max_hz"]))
            return None
        raise ValueError(f"unknown op {op!r}; one of send, candles, fills, trace, pace")


def _urgent(sent: EngineSnapshot | None, snap: EngineSnapshot) -> bool:
    """Whether `snap` must go out now, whatever the pace: the first one, or one that changes
    what an operator acts on (close-all progress, pause, engine state)."""
    if sent is None:
        return True
    return (
        snap.close_all != sent.close_all
        or snap.status.paused != sent.status.paused
        or snap.status.state != sent.status.state
    )


@contextlib.asynccontextmanager
async def serve_engine_socket(path: Path, client: EngineClient) -> AsyncIterator[EngineSocketServer]:
    """Serve `client` on `path` for the duration of the block (the runtime's entry point)."""
    server = EngineSocketServer(path, client)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
