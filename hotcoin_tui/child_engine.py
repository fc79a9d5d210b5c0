"""The console's own engine, in a child process it starts, watches through the engine socket
and shuts down on quit.

Why a process and not a thread: Textual repaints are 50-100 ms of Python, and two threads
share one interpreter lock, so an engine thread waits while the console paints (measured:
p99 cycle time x2). A child process has its own interpreter and core; the console reaches it
through the same `EngineClient` interface (`RemoteEngineClient` over the 0600 socket) that
`hotcoin tui --attach` uses, so there is one client path to maintain, not two.

The console also watches the process itself (`ChildEngine.wait`): a socket that stops answering
could be an engine that is slow or one that is gone, and only its exit status tells them
apart; an engine that died must be reported as dead (with its log), not retried for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.errors import ConfigError
from engine.ops.logs import open_private
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.socket_server import AttachError, default_socket_path
from hotcoin_tui.priority import lower_priority

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class EngineProcess(Protocol):
    """What the console watches of its engine's process (a `ChildEngine`, or a test's fake)."""

    @property
    def log_path(self) -> Path: ...

    async def wait(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ChildEngine:
    """The running child: its client, its log, and its exit status once it ends."""

    client: RemoteEngineClient
    log_path: Path
    process: asyncio.subprocess.Process

    async def wait(self) -> int:
        """Wait for the process to end; its return code (negative: the signal that killed it)."""
        return await self.process.wait()


def exit_text(code: int) -> str:
    """A return code as an operator reads it: `code 1`, `killed by SIGKILL`."""
    if code >= 0:
        return f"code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


async def _serving(path: Path) -> bool:
    """Whether an engine answers on `path` right now."""
    client = RemoteEngineClient(path)
    try:
        await client.connect(timeout_s=2.0)
    except (AttachError, OSError):
        return False
    await client.close()
    return True


@contextlib.asynccontextmanager
async def child_engine(
    run_args: list[str], data_dir: Path, log_path: Path, *, nice: int = 0, max_hz: float | None = None
) -> AsyncIterator[ChildEngine]:
    """Start `hotcoin run <run_args>`, attach to it, yield it; stop the child on exit.

    The child's output goes to `log_path` (the screen belongs to the console). If it dies
    before serving its socket, the error names the log and quotes its last lines. Once the
    child is running, this process lowers its own priority to `nice` (`tui.nice`): only now,
    because a child inherits its parent's niceness and the engine keeps the one the console
    was started with.
    `max_hz` is the most snapshots a second the client asks the engine for (`RemoteEngineClient`).
    """
    socket_path = default_socket_path(data_dir)
    if await _serving(socket_path):
        raise ConfigError(
            f"an engine is already running on {socket_path}; join it with `hotcoin tui --attach`, "
            "or stop it first (its console's `q`, or SIGTERM)"
        )
    with os.fdopen(open_private(log_path), "ab") as log:  # 0600: an engine log is the owner's alone
        started_at = os.fstat(log.fileno()).st_size  # what this start writes begins here (`_attach`)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hotcoin_tui.cli",
            "run",
            *run_args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C in the console is the console's, not the engine's
        )
    lower_priority(nice)
    try:
        client = await _attach(child, socket_path, log_path, max_hz, started_at)
        try:
            yield ChildEngine(client, log_path, child)
        finally:
            await client.close()
        with contextlib.suppress(TimeoutError):  # quitting asked it to shut down: let it finish
            await asyncio.wait_for(child.wait(), STOP_TIMEOUT_S)
    finally:
        if child.returncode is None:
            child.terminate()  # SIGTERM: the engine flushes its journal and stops cleanly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), STOP_TIMEOUT_S)
        if child.returncode is None:
            child.kill()
            await child.wait()


async def _attach(
    child: asyncio.subprocess.Process, socket_path: Path, log_path: Path, max_hz: float | None, started_at: int
) -> RemoteEngineClient:
    """Connect to the child once it serves its socket. A child that exits first is reported
    with the last lines it wrote, from `started_at` (the log's size before it started) on: the
    log is appended to across starts, and its last lines alone put an earlier attempt's error
    beside (or instead of) this one's."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if child.returncode is not None:
            written = await asyncio.to_thread(_written_since, log_path, started_at)
            tail = written.splitlines()[-5:] or ["(it wrote nothing to the log)"]
            raise ConfigError(
                f"the engine exited with code {child.returncode} before it was ready; see {log_path}:\n"
                + "\n".join(tail)
            )
        client = RemoteEngineClient(socket_path, max_hz=max_hz)
        try:
            await client.connect(timeout_s=2.0)
            return client
        except (AttachError, OSError):
            if time.monotonic() > deadline:
                raise ConfigError(f"the engine did not open {socket_path} within {START_TIMEOUT_S:.0f} s; see {log_path}") from None
            await asyncio.sleep(0.1)


def _written_since(log_path: Path, offset: int) -> str:
    """What the log holds past `offset`: what the child wrote (all of it, should the log have
    been cut shorter than `offset` meanwhile)."""
    with log_path.open("rb") as log:
        if os.fstat(log.fileno()).st_size >= offset:
            log.seek(offset)
        return log.read().decode(errors="replace")


def run_args(
    *,
    config: Path | None,
    demo: bool,
    exchange: str | None,
    live: bool,
    yes_really: bool,
    speed: float,
    journal: Path | None,
    endpoint: str | None,
    sim_seed: int | None,
    symbols: int | None,
    no_http: bool,
) -> list[str]:
    """`hotcoin run` flags for the same choices the console was given."""
    args = ["--speed", repr(speed)]
    for flag, value in (("--config", config), ("--exchange", exchange), ("--journal", journal), ("--endpoint", endpoint), ("--seed", sim_seed), ("--symbols", symbols)):
        if value is not None:
            args += [flag, str(value)]
    if demo:
        args.append("--demo")
    args.append("--live" if live else "--paper")
    if yes_really:
        args.append("--yes-really-trade-live")
    if no_http:
        args.append("--no-http")
    return args
