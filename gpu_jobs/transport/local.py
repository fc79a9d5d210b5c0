"""The same job steps on this machine: `sh -c` for commands, file copies for transfers.
For a box without SSH in between (the GPU is here), and as the fast path in tests."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from gpu_jobs.errors import TransportError
from gpu_jobs.transport.base import CommandResult, Transport, communicate, private, pump


class LocalTransport(Transport):
    def __init__(self, on_spawn: Callable[[int], None] | None = None) -> None:
        self.on_spawn = on_spawn

    def describe(self) -> str:
        return "local"

    async def run(self, command: str) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", private(command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        out, err = await communicate(proc)
        return CommandResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))

    async def stream(self, command: str, on_chunk: Callable[[bytes], None]) -> int:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", private(command), stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        )
        if self.on_spawn is not None:
            self.on_spawn(proc.pid)
        return await pump(proc, on_chunk)

    async def put(self, local: Path, remote: str) -> None:
        """A failed copy (a full disk) is a `TransportError` naming the OS's reason, as over SSH."""
        dest = Path(remote)
        try:
            await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copyfile, local, dest)
        except OSError as exc:
            raise TransportError(f"copying {local.name} to {remote} failed: {exc}") from exc

    async def get(self, remotes: Sequence[str], local_dir: Path) -> None:
        await asyncio.to_thread(_copy_files, [Path(r) for r in remotes], local_dir)


def _copy_files(sources: list[Path], local_dir: Path) -> None:
    local_dir.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if not src.is_file():
            raise TransportError(f"{src} does not exist on the box")
        shutil.copyfile(src, local_dir / src.name)
