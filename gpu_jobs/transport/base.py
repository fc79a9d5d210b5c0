"""The one seam between job orchestration and the wire: run a shell command, stream one,
copy a file there, copy files back. Commands are POSIX shell lines run on the box."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# What every command on the box runs under: whatever it makes (the workdir, the packs, the
# unpacked jobs, the trainer's log, checkpoints and model) is the owner's alone, as on the
# trading box (`hotcoin_tui.cli`), whatever umask the box's sshd or PAM gives a session
# (usually 022: world-readable datasets and models on a shared GPU box).
PRIVATE_UMASK = "077"


def private(command: str) -> str:
    """`command` run under `PRIVATE_UMASK`; the detached trainer it starts inherits it."""
    return f"umask {PRIVATE_UMASK}; {command}"


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


class Transport(ABC):
    """`run` and `stream` report the remote exit code; an unreachable box raises
    `TransportError` instead. Both run the command under `private` (umask 077). `on_spawn`
    hands out the pid of the local helper process (e.g. the `ssh` client) while it runs, so
    callers can observe or stop it."""

    on_spawn: Callable[[int], None] | None = None

    @abstractmethod
    def describe(self) -> str:
        """Where commands run, for messages (e.g. `ssh gpu@h800:22`)."""

    @abstractmethod
    async def run(self, command: str) -> CommandResult:
        """Run `command` to completion (bound it with `asyncio.timeout`: cancelling kills it)."""

    @abstractmethod
    async def stream(self, command: str, on_chunk: Callable[[bytes], None]) -> int:
        """Run `command`, passing its stdout to `on_chunk` as it arrives; return its exit code."""

    @abstractmethod
    async def put(self, local: Path, remote: str) -> None: ...

    @abstractmethod
    async def get(self, remotes: Sequence[str], local_dir: Path) -> None:
        """Copy remote files (not folders) into `local_dir`, keeping their names."""


async def communicate(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """`proc.communicate()`, killing the process if the caller is cancelled (e.g. a timeout)."""
    try:
        return await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise


async def pump(proc: asyncio.subprocess.Process, on_chunk: Callable[[bytes], None]) -> int:
    """Feed a process's stdout to `on_chunk` until it ends; its exit code."""
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.read(1 << 16):
            on_chunk(chunk)
        return await proc.wait()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
