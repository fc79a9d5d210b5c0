"""`hotcoin run` in a terminal that goes away (an SSH connection that drops) stops as it does on
SIGTERM: the journal flushed and `run_stop` written, exit status 0 (the console reads 0 as a
clean stop). Left to SIGHUP's default, the process died like a crash, the events of its last
batch lost with it."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from engine.journal.reader import JournalReader
from engine.runtime.socket_server import default_socket_path

ROOT = Path(__file__).resolve().parents[3]


def _own_terminal() -> None:
    """In the child, a session leader already (`start_new_session`): make its stdin, the pty,
    its controlling terminal, as a login shell's is, so closing the pty's master hangs it up."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _drain(fd: int, seconds: float) -> bytes:
    """Read what the child wrote to the pty for `seconds` (else its writes block once the pty's
    buffer is full)."""
    out = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], min(left, 0.1))
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


@pytest.mark.timeout(120)
def test_a_terminal_that_hangs_up_stops_the_engine_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "HOTCOIN_PATHS__DATA_DIR": str(data),
           "HOTCOIN_SIM__SYMBOLS": "40"}  # fmt: skip
    master, slave = os.openpty()
    engine = subprocess.Popen(
        [sys.executable, "-m", "hotcoin_tui.cli", "run", "--demo", "--speed", "60", "--no-http"], cwd=ROOT, env=env,
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=_own_terminal,
    )  # fmt: skip
    os.close(slave)
    said = b""
    try:
        deadline = time.monotonic() + 60
        while not default_socket_path(data).exists() and engine.poll() is None and time.monotonic() < deadline:
            said += _drain(master, 0.1)
        said += _drain(master, 2.0)  # a few cycles
        assert engine.poll() is None, said.decode(errors="replace")[-2000:]
        os.close(master)  # the SSH connection drops: the kernel sends the session SIGHUP
        master = -1
        engine.wait(timeout=60)
    finally:
        if master >= 0:
            os.close(master)
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    assert engine.returncode == 0, f"exit status {engine.returncode}"
    with JournalReader(data / "journal.sqlite") as reader:
        events = list(reader.events())
    assert events[-1].kind == "run_stop" and events[-1].payload["reason"] == "shutdown", events[-1]
