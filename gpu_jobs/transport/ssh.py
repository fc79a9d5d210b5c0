"""The GPU box over the system OpenSSH client (`ssh`, `scp`), run as asyncio subprocesses.

Using the real client means ~/.ssh/config, keys, the agent and jump hosts all work as they do
in the owner's shell. Every call is non-interactive (`BatchMode=yes`: a missing key fails
instead of prompting), bounded (`ConnectTimeout`), and notices a dead link
(`ServerAliveInterval` x `ServerAliveCountMax`). Exit code 255 is ssh's own failure; anything
else is the remote command's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from gpu_jobs.errors import TransportError
from gpu_jobs.transport.base import CommandResult, Transport, communicate, private, pump

SSH_FAILED = 255
# what scp prints when a link that was up goes away, as opposed to one that never came up
_LOST = ("connection closed", "closed by remote host", "lost connection", "connection reset", "broken pipe")
_UNREACHABLE = ("connection refused", "timed out", "permission denied", "could not resolve", "no route to host")


class SshTransport(Transport):
    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        identity_file: Path | None = None,
        extra_args: Sequence[str] = (),
        connect_timeout_s: int = 10,
        keepalive_s: int = 5,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self.host = host
        self.user = user
        self.port = port
        self.identity_file = identity_file
        self.extra_args = list(extra_args)
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.on_spawn = on_spawn

    def describe(self) -> str:
        who = f"{self.user}@{self.host}" if self.user else self.host
        return f"ssh {who}" + (f":{self.port}" if self.port else "")

    def _options(self) -> list[str]:
        opts = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={self.connect_timeout_s}",
            "-o", f"ServerAliveInterval={self.keepalive_s}",
            "-o", "ServerAliveCountMax=3",
        ]  # fmt: skip
        if self.identity_file is not None:
            opts += ["-i", str(self.identity_file.expanduser()), "-o", "IdentitiesOnly=yes"]
        return opts + self.extra_args

    def ssh_argv(self, command: str) -> list[str]:
        """The ssh command line running `command` on the box, under `private` (umask 077)."""
        argv = ["ssh", *self._options()]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.user is not None:
            argv += ["-l", self.user]
        return [*argv, "--", self.host, private(command)]

    def _scp_argv(self) -> list[str]:
        argv = ["scp", "-q", *self._options()]
        if self.port is not None:
            argv += ["-P", str(self.port)]
        return argv

    def _remote(self, path: str) -> str:
        return f"{self.user}@{self.host}:{path}" if self.user else f"{self.host}:{path}"

    def _unreachable(self, stderr: str) -> TransportError:
        """ssh's own last line, without its closing period: this message goes on after it
        ("Permission denied (publickey).. Check" read as a typo)."""
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        why = lines[-1].strip().rstrip(".") if lines else "ssh exited with 255 and said nothing"
        return TransportError(
            f"cannot reach the GPU box ({self.describe()}): {why}. Check the profile's host/port/"
            "user/identity_file, that sshd runs there, and `ssh` to it by hand"
        )

    async def run(self, command: str) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            *self.ssh_argv(command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await communicate(proc)
        stderr = err.decode(errors="replace")
        if proc.returncode == SSH_FAILED:
            raise self._unreachable(stderr)
        return CommandResult(proc.returncode or 0, out.decode(errors="replace"), stderr)

    async def stream(self, command: str, on_chunk: Callable[[bytes], None]) -> int:
        proc = await asyncio.create_subprocess_exec(
            *self.ssh_argv(command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if self.on_spawn is not None:
            self.on_spawn(proc.pid)
        return await pump(proc, on_chunk)

    async def _scp(self, argv: list[str], what: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await communicate(proc)
        if proc.returncode != 0:
            raise self.copy_error(what, err.decode(errors="replace"), proc.returncode or 0)

    def copy_error(self, what: str, stderr: str, rc: int) -> TransportError:
        """The error for a failed scp: a box that could not be reached (check the profile), a
        link lost mid-copy (nothing to fix: run again), or the copy itself failing."""
        text = stderr.lower()
        if any(s in text for s in _UNREACHABLE):
            return self._unreachable(stderr)
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"scp exited {rc}"
        if any(s in text for s in _LOST):
            return TransportError(f"connection to the GPU box ({self.describe()}) lost while {what} ({why}); run the same command again")
        return TransportError(f"{what} failed ({self.describe()}): {stderr.strip() or f'scp exited {rc}'}")

    async def put(self, local: Path, remote: str) -> None:
        await self._scp([*self._scp_argv(), str(local), self._remote(remote)], f"copying {local.name} to the box")

    async def get(self, remotes: Sequence[str], local_dir: Path) -> None:
        await asyncio.to_thread(local_dir.mkdir, parents=True, exist_ok=True)
        sources = [self._remote(r) for r in remotes]
        await self._scp([*self._scp_argv(), *sources, f"{local_dir}/"], "fetching job files")
