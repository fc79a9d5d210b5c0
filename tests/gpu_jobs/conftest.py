"""A real OpenSSH server on 127.0.0.1 for the job tests: throw-away host and user keys, an
authorized_keys file and a pid file, all in a temp folder; the client side gets its own ssh
config (-F) so nothing in ~/.ssh is read or written. Skips when OpenSSH is not installed
(Debian: apt-get install openssh-server openssh-client)."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.config import HotcoinConfig
from tests.kit.waiting import eventually_sync

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class SshBox:
    port: int
    client_config: Path
    process: subprocess.Popen[bytes]
    root: Path

    def profile(self, workdir: Path, **overrides: Any) -> dict[str, Any]:
        return {
            "transport": "ssh",
            "host": "gpubox",
            "ssh_options": ["-F", str(self.client_config)],
            "workdir": str(workdir),
            "python": sys.executable,
            "connect_timeout_s": 5,
            "keepalive_s": 1,
            **overrides,
        }

    def drop_connections(self) -> list[int]:
        """SIGKILL every process under the server (the per-connection sshd children and what
        runs in their sessions): a network drop as the client sees it. The listener stays."""
        victims = descendants(self.process.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return victims


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshBox]:
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("scp") is None:
        pytest.skip("OpenSSH is not installed (apt-get install openssh-server openssh-client)")
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shutil.copyfile(root / "user_key.pub", root / "authorized_keys")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPermitRootLogin yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n"
    )
    (root / "ssh_config").write_text(
        f"Host gpubox\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {root / 'user_key'}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    log = (root / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")], stderr=log, stdout=log)
    try:
        eventually_sync(lambda: _port_open(port) or proc.poll() is not None, timeout=10)
        if proc.poll() is not None:
            pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()}")
        yield SshBox(port, root / "ssh_config", proc, root)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def make_config(tmp_path: Path, **profiles: dict[str, Any]) -> HotcoinConfig:
    return HotcoinConfig.model_validate(
        {"paths": {"data_dir": str(tmp_path / "data")}, "ml": {"gates": {"min_oos_samples": 10}}, "gpu": profiles}
    )
