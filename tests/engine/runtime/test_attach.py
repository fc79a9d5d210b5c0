"""Attach mode: a RemoteEngineClient across the engine's Unix socket behaves like the
in-process client, and readers come and go without the engine noticing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.domain import Candle, Fill
from engine.errors import TraceNotFoundError
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.local_client import LocalEngineClient, SnapshotHub
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.snapshot import CloseAllProgress, EngineSnapshot, EventRow, Mode
from engine.runtime.socket_server import (
    PROTOCOL,
    AnswerLost,
    AttachError,
    decode_snapshot,
    encode,
    serve_engine_socket,
)
from tests.kit.domain import make_candle, make_fill
from tests.kit.snapshots import make_snapshot, make_status
from tests.kit.waiting import eventually

TRACE = "4f2a1c0b9e8d7a65"


@dataclass
class FakeEngine:
    """A LocalEngineClient over a SnapshotHub, publishing like an engine until stopped."""

    hub: SnapshotHub = field(default_factory=SnapshotHub)
    commands: list[tuple[Command, str]] = field(default_factory=list)
    published: int = 0
    client: LocalEngineClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = LocalEngineClient(self.hub, self.on_command, self.candles, self.fills, self.trace)

    async def on_command(self, command: Command, origin: str) -> CommandResult:
        self.commands.append((command, origin))
        return CommandResult(True, f"{command.value} done")

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return [make_candle(symbol, open_ms=60_000 * i) for i in range(limit)]

    async def fills(self, symbol: str) -> list[Fill]:
        return [make_fill(symbol)]

    async def trace(self, trace_id: str) -> list[JournalEvent]:
        if not TRACE.startswith(trace_id):
            raise TraceNotFoundError(f"no trace {trace_id!r}", [TRACE])
        return [JournalEvent(7, 1000, "signal_snapshot", {"decision": "enter", "rules": [{"name": "heat"}]}, TRACE, "DOGE/USDT", 6)]

    async def publish(self) -> None:
        self.published += 1
        await self.hub.publish(make_snapshot(seq=self.published, ts_ms=1000 + self.published))

    async def run(self) -> None:
        while True:
            await self.publish()
            await asyncio.sleep(0.002)


@pytest.fixture
async def engine() -> AsyncIterator[FakeEngine]:
    eng = FakeEngine()
    await eng.publish()
    task = asyncio.create_task(eng.run())
    yield eng
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "engine.sock"


async def test_the_socket_is_0600_and_listening_from_the_moment_its_path_exists(
    engine: FakeEngine, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound under a 0177 umask, before the server starts listening: never a moment in which
    another local user could connect (bind, then chmod, left one). And the path appears only
    once the socket listens: a console attaching as the engine starts was refused (bind, then
    listen, left that moment; a CI run met it). The process umask is back as it was."""
    seen: list[tuple[int, bool]] = []  # (mode of the bound socket, whether the path exists) as listening starts
    start = asyncio.start_unix_server

    def look(bound: str) -> tuple[int, bool]:
        return stat.S_IMODE(os.stat(bound).st_mode), sock.exists()

    async def spy(*args: Any, **kwargs: Any) -> asyncio.AbstractServer:
        seen.append(look(kwargs["sock"].getsockname()))
        return await start(*args, **kwargs)

    monkeypatch.setattr(asyncio, "start_unix_server", spy)
    before = os.umask(0o022)
    try:
        async with serve_engine_socket(sock, engine.client):
            assert seen == [(0o600, False)]
            assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
            assert list(sock.parent.iterdir()) == [sock]  # the private name is gone
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


async def test_attach_detach_reattach_while_the_engine_keeps_publishing(engine: FakeEngine, sock: Path) -> None:
    async with serve_engine_socket(sock, engine.client) as server:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        async with RemoteEngineClient(sock) as remote:
            first = remote.latest()
            assert first is not None
            seen: list[int] = []
            async for snap in remote.updates():
                seen.append(snap.seq)
                if len(seen) == 3:
                    break
            assert seen == sorted(seen)
            assert seen[-1] > first.seq or seen[0] == first.seq
            assert await remote.send(Command.PAUSE, "tui@box") == CommandResult(True, "pause done")
            assert await remote.send(Command.CLOSE_ALL, "tui@box") == CommandResult(True, "close_all done")
            assert server.attached == 1
        assert engine.commands == [(Command.PAUSE, "tui@box"), (Command.CLOSE_ALL, "tui@box")]
        await eventually(lambda: server.attached == 0)
        after_detach = engine.published
        await eventually(lambda: engine.published > after_detach + 5)  # the engine never noticed
        async with RemoteEngineClient(sock) as again:
            reattached = again.latest()
            assert reattached is not None
            assert reattached.seq > after_detach
            await eventually(lambda: (s := again.latest()) is not None and s.seq > reattached.seq)
        assert server.served == 2


async def test_queries_round_trip_as_the_same_values(engine: FakeEngine, sock: Path) -> None:
    async with serve_engine_socket(sock, engine.client), RemoteEngineClient(sock) as remote:
        assert await remote.candles("DOGE/USDT", "1m", 3) == await engine.candles("DOGE/USDT", "1m", 3)
        assert await remote.fills("DOGE/USDT") == await engine.fills("DOGE/USDT")
        assert await remote.trace("4f2a") == await engine.trace(TRACE)
        with pytest.raises(TraceNotFoundError, match="no trace 'beef'") as info:
            await remote.trace("beef")
        assert info.value.nearest == [TRACE]


async def test_requests_run_concurrently(engine: FakeEngine, sock: Path) -> None:
    gate = asyncio.Event()

    async def slow_candles(symbol: str, timeframe: str, limit: int) -> list[Candle]:
        await gate.wait()
        return []

    client = LocalEngineClient(engine.hub, engine.on_command, slow_candles, engine.fills, engine.trace)
    async with serve_engine_socket(sock, client), RemoteEngineClient(sock) as remote:
        chart = asyncio.create_task(remote.candles("DOGE/USDT", "1m", 10))
        assert (await remote.send(Command.CLOSE_ALL, "tui")).accepted  # not stuck behind the chart
        assert not chart.done()
        gate.set()
        assert await chart == []


def test_snapshots_survive_the_wire_unchanged() -> None:
    snap = make_snapshot(
        status=make_status(mode=Mode.LIVE, reasons=("data_stale",), model_version="m1"),
        events=(EventRow(3, 1000, "fill", "DOGE/USDT", "abc", "buy 1 @ 0.3"), EventRow(4, 1001, "state_change", None, None, "x")),
        close_all=CloseAllProgress(1000, 3, 1, ("DOGE/USDT: still open",)),
    )
    assert decode_snapshot(orjson.loads(encode({"s": snap}))["s"]) == snap
    fake = FakeEngineClient(candidates=300, positions=6).latest()
    assert fake is not None
    assert decode_snapshot(orjson.loads(encode({"s": fake}))["s"]) == fake


def test_a_newer_or_older_engine_still_decodes() -> None:
    doc = orjson.loads(encode({"s": make_snapshot()}))["s"]
    doc["status"]["added_in_a_later_version"] = 1  # unknown keys are ignored
    del doc["close_all"]  # a field the sender does not know yet takes its default
    del doc["status"]["model_version"]
    snap = decode_snapshot(doc)
    assert snap == make_snapshot()
    assert snap.status.mode is Mode.SIM


async def test_a_stale_socket_from_a_dead_process_is_replaced(engine: FakeEngine, sock: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()  # the file stays behind, nobody listens: what a killed engine leaves
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    async with serve_engine_socket(sock, engine.client), RemoteEngineClient(sock) as remote:
        assert remote.latest() is not None
    with pytest.raises(FileNotFoundError):  # removed on a clean stop
        os.lstat(sock)


async def test_a_second_engine_on_the_same_path_is_refused(engine: FakeEngine, sock: Path) -> None:
    async with serve_engine_socket(sock, engine.client):
        with pytest.raises(AttachError, match="another hotcoin engine is already serving"):
            async with serve_engine_socket(sock, engine.client):
                pass
        async with RemoteEngineClient(sock) as remote:  # the first one is untouched
            assert (await remote.send(Command.RESUME, "t")).accepted


async def test_a_file_that_is_not_a_socket_is_never_deleted(engine: FakeEngine, sock: Path) -> None:
    fd = os.open(sock, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    with pytest.raises(AttachError, match="is not a socket"):
        async with serve_engine_socket(sock, engine.client):
            pass
    assert stat.S_ISREG(os.lstat(sock).st_mode)


async def test_attaching_with_no_engine_says_how_to_start_one(sock: Path) -> None:
    with pytest.raises(AttachError, match=r"no engine is serving .*hotcoin run"):
        await RemoteEngineClient(sock).connect()


async def test_a_path_too_long_for_a_unix_socket_is_named(engine: FakeEngine, tmp_path: Path) -> None:
    long_path = tmp_path / ("x" * 120)
    with pytest.raises(AttachError, match="Unix sockets allow 107"):
        await RemoteEngineClient(long_path).connect()
    with pytest.raises(AttachError, match=r"Use a shorter paths\.data_dir"):
        async with serve_engine_socket(long_path, engine.client):
            pass


async def test_when_the_engine_goes_away_readers_end_and_requests_fail(engine: FakeEngine, sock: Path) -> None:
    server_cm = serve_engine_socket(sock, engine.client)
    await server_cm.__aenter__()
    remote = RemoteEngineClient(sock)
    await remote.connect()
    try:
        reader_done = asyncio.Event()

        async def read_all() -> None:
            async for _ in remote.updates():
                pass
            reader_done.set()

        task = asyncio.create_task(read_all())
        await server_cm.__aexit__(None, None, None)
        await asyncio.wait_for(reader_done.wait(), 5)
        await task
        assert not remote.connected
        with pytest.raises(AttachError, match="not attached"):
            await remote.send(Command.PAUSE, "t")
    finally:
        await remote.close()


async def test_reconnect_attaches_to_an_engine_restarted_on_the_same_socket(engine: FakeEngine, sock: Path) -> None:
    remote = RemoteEngineClient(sock)
    async with serve_engine_socket(sock, engine.client):
        await remote.connect()
    try:
        assert [s async for s in remote.updates()] == []  # the old engine's last snapshot is not news
        with pytest.raises(AttachError, match="no engine is serving"):
            await remote.reconnect(timeout_s=1)
        with pytest.raises(AttachError, match=r"not attached .*no engine is serving"):
            await remote.send(Command.PAUSE, "t")
        restarted = FakeEngine()
        await restarted.publish()
        async with serve_engine_socket(sock, restarted.client):
            await remote.reconnect(timeout_s=1)
            assert remote.connected
            first = await anext(remote.updates())
            assert first.seq == 1  # the new engine's snapshot
            assert await remote.send(Command.PAUSE, "t") == CommandResult(True, "pause done")
            assert restarted.commands == [(Command.PAUSE, "t")]
    finally:
        await remote.close()


async def test_bad_requests_get_error_replies_and_the_connection_stays(engine: FakeEngine, sock: Path) -> None:
    async with serve_engine_socket(sock, engine.client):
        reader, writer = await asyncio.open_unix_connection(str(sock), limit=2**26)
        try:
            hello = orjson.loads(await reader.readline())
            assert (hello["type"], hello["protocol"]) == ("hello", 1)

            async def reply_to(line: bytes) -> dict[str, object]:
                writer.write(line)
                await writer.drain()
                while True:
                    msg = orjson.loads(await reader.readline())
                    if msg["type"] == "reply":
                        return dict(msg)

            bad_json = await reply_to(b"{not json\n")
            assert bad_json["ok"] is False
            unknown = await reply_to(b'{"id": 1, "op": "launch"}\n')
            assert unknown == {"type": "reply", "id": 1, "ok": False, "error": {"type": "ValueError", "message": "unknown op 'launch'; one of send, candles, fills, trace, pace"}}
            bad_command = await reply_to(b'{"id": 2, "op": "send", "command": "sell_everything"}\n')
            assert "unknown command 'sell_everything'" in str(bad_command["error"])
            ok = await reply_to(b'{"id": 3, "op": "send", "command": "pause", "origin": "nc"}\n')
            assert ok == {"type": "reply", "id": 3, "ok": True, "result": {"accepted": True, "message": "pause done"}}
        finally:
            writer.close()
            await writer.wait_closed()


async def test_a_reader_that_never_reads_does_not_hold_up_the_engine(engine: FakeEngine, sock: Path) -> None:
    async with serve_engine_socket(sock, engine.client):
        reader, writer = await asyncio.open_unix_connection(str(sock))  # connects, then never reads
        try:
            big = dataclasses.replace(make_snapshot(), candidates=make_snapshot().candidates * 2000)
            for i in range(200):
                await engine.hub.publish(dataclasses.replace(big, seq=10_000 + i))
            assert engine.hub.latest is not None
            assert engine.hub.latest.seq == 10_199
        finally:
            writer.close()
            await writer.wait_closed()
        del reader
        async with RemoteEngineClient(sock) as remote:
            snap: EngineSnapshot | None = remote.latest()
            assert snap is not None


async def test_a_command_completes_even_if_its_reader_detaches(engine: FakeEngine, sock: Path) -> None:
    started, gate = asyncio.Event(), asyncio.Event()
    done: list[Command] = []

    async def slow_command(command: Command, origin: str) -> CommandResult:
        started.set()
        await gate.wait()
        done.append(command)
        return CommandResult(True, "flat")

    client = LocalEngineClient(engine.hub, slow_command, engine.candles, engine.fills, engine.trace)
    async with serve_engine_socket(sock, client) as server:
        remote = RemoteEngineClient(sock)
        await remote.connect()
        pending = asyncio.create_task(remote.send(Command.CLOSE_ALL, "tui"))
        await asyncio.wait_for(started.wait(), 5)
        await remote.close()  # the SSH session drops mid close-all
        with pytest.raises(AttachError):
            await pending
        await eventually(lambda: server.attached == 0)
        gate.set()
        await eventually(lambda: done == [Command.CLOSE_ALL])


async def test_a_request_cut_off_as_it_is_sent_leaves_no_error_unretrieved(
    engine: FakeEngine, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit: quitting printed `Future exception was never retrieved ... AttachError: ... the
    engine closed the connection`: the engine went while SHUTDOWN was still being written,
    `_lose` failed the request's future, and the request raised its own error instead."""
    loop = asyncio.get_running_loop()
    unretrieved: list[str] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(str(context.get("message"))))
    try:
        async with serve_engine_socket(sock, engine.client):
            remote = RemoteEngineClient(sock)
            await remote.connect()

            async def engine_gone_mid_write() -> None:
                await remote._lose("the engine closed the connection")
                raise BrokenPipeError(32, "Broken pipe")

            monkeypatch.setattr(remote._writer, "drain", engine_gone_mid_write)
            with pytest.raises(AttachError, match="lost the engine"):
                await remote.send(Command.SHUTDOWN, "tui")
            await remote.close()
        gc.collect()  # an unretrieved error is reported as its future is collected
    finally:
        loop.set_exception_handler(None)
    assert unretrieved == []


async def test_a_command_that_stops_the_engine_still_gets_its_reply(engine: FakeEngine, sock: Path) -> None:
    stopping: list[asyncio.Task[object]] = []

    async def shutdown(command: Command, origin: str) -> CommandResult:
        # what `hotcoin run` does on SHUTDOWN: the engine starts closing its socket before
        # this command's reply is on its way
        stopping.append(asyncio.create_task(server_cm.__aexit__(None, None, None)))
        await asyncio.sleep(0.05)
        return CommandResult(True, "shutting down")

    server_cm = serve_engine_socket(sock, LocalEngineClient(engine.hub, shutdown, engine.candles, engine.fills, engine.trace))
    await server_cm.__aenter__()
    try:
        async with RemoteEngineClient(sock) as remote:
            assert await remote.send(Command.SHUTDOWN, "tui") == CommandResult(True, "shutting down")  # not "lost the engine"
    finally:
        await asyncio.gather(*stopping)


async def test_a_reader_that_stopped_reading_is_dropped_and_the_engine_stops(engine: FakeEngine, sock: Path) -> None:
    """Audit: a console that attached and then stopped reading (a Ctrl-Z'd `hotcoin tui
    --attach`, a hung SSH session) kept a SIGTERM'd engine from ever exiting: hanging up left
    its snapshots buffered, the close waited for them to be sent, and `stop` waited on that
    close for good (journal lock held, restart refused). It is dropped within about a second."""
    server_cm = serve_engine_socket(sock, engine.client)
    server = await server_cm.__aenter__()
    loop = asyncio.get_running_loop()
    console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # not a StreamReader: that reads on its own
    console.setblocking(False)
    try:
        await loop.sock_connect(console, str(sock))
        await loop.sock_sendall(console, b'{"id": 1, "op": "pace", "max_hz": 4}\n')
        hello = b""
        while not hello.endswith(b"\n"):
            hello += await loop.sock_recv(console, 1 << 20)
        assert orjson.loads(hello)["type"] == "hello"
        # and from here on it never reads again
        big = dataclasses.replace(make_snapshot(), candidates=make_snapshot().candidates * 2000)
        for i in range(20):  # more than the socket buffers hold: the server's writes back up
            await engine.hub.publish(dataclasses.replace(big, seq=10_000 + i, status=make_status(paused=i % 2 == 0)))
            await asyncio.sleep(0.01)
        errors: list[str] = []  # a session cancelled rather than ended logs one (Python 3.11)
        loop.set_exception_handler(lambda _loop, context: errors.append(str(context.get("message"))))
        started = loop.time()
        await asyncio.wait_for(server_cm.__aexit__(None, None, None), 6.0)  # hung for good before the fix
        assert loop.time() - started < 2.5
        assert server.attached == 0
        assert errors == []
    finally:
        loop.set_exception_handler(None)
        console.close()


async def test_a_slow_command_is_waited_for_while_connected_and_queries_still_time_out(engine: FakeEngine, sock: Path) -> None:
    """Audit: a close-all against a slow exchange (open orders, cancels and exits each up to
    10 s) took longer than the client's 30 s request timeout: the console was told it failed
    while the engine carried it out and flattened the book. A command is now waited for as
    long as the connection lives; a query, with nothing to misreport, still times out."""
    started, gate = asyncio.Event(), asyncio.Event()

    async def slow_command(command: Command, origin: str) -> CommandResult:
        started.set()
        await gate.wait()
        return CommandResult(True, "close-all: flat (3 exit(s) filled)")

    async def stuck_trace(trace_id: str) -> list[JournalEvent]:
        await asyncio.Event().wait()
        return []

    client = LocalEngineClient(engine.hub, slow_command, engine.candles, engine.fills, stuck_trace)
    async with serve_engine_socket(sock, client), RemoteEngineClient(sock, request_timeout_s=0.1) as remote:
        pending = asyncio.create_task(remote.send(Command.CLOSE_ALL, "tui"))
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.5)  # five times the request timeout
        assert not pending.done()
        with pytest.raises(AttachError, match="did not answer trace within"):
            await remote.trace(TRACE)
        gate.set()
        assert await asyncio.wait_for(pending, 5) == CommandResult(True, "close-all: flat (3 exit(s) filled)")


async def test_a_command_whose_engine_went_before_answering_is_outcome_unknown_not_failed(sock: Path) -> None:
    """A command written to an engine that then went (killed mid close-all) may have been
    carried out: the engine finishes a command it took. The client says so (`AnswerLost`), so
    the console does not call it failed and invite a second close-all on a flat book; a
    command sent with no connection at all is a plain `AttachError`."""
    taken = asyncio.Event()

    async def engine_that_dies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode({"type": "hello", "protocol": PROTOCOL, "snapshot": None}))
        await writer.drain()
        await reader.readline()  # the command
        taken.set()
        writer.transport.abort()

    server = await asyncio.start_unix_server(engine_that_dies, path=str(sock))
    try:
        async with RemoteEngineClient(sock, max_hz=None) as remote:
            with pytest.raises(AnswerLost, match="lost the engine"):
                await asyncio.wait_for(remote.send(Command.CLOSE_ALL, "tui"), 5)
            assert taken.is_set()
            with pytest.raises(AttachError) as refused:
                await remote.send(Command.CLOSE_ALL, "tui")
            assert not isinstance(refused.value, AnswerLost)
    finally:
        server.close()
        await server.wait_closed()
