"""End to end, as an operator over SSH: the real `hotcoin tui --fake` in a tmux pane at
120x40, driven with send-keys and read back with capture-pane. Pause, emergency close-all to
flat, and a clean quit (the engine told to shut down, exit code 0).

A private tmux server (`-L`) is started for the test, so it inherits this process's
environment (the network guard, the temporary XDG homes) and is killed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.waiting import eventually_sync

REPO = Path(__file__).resolve().parents[2]
TMUX = shutil.which("tmux")

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux)")


class Pane:
    def __init__(self, socket: str, session: str) -> None:
        self.socket, self.session = socket, session

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        # COLUMNS/LINES (pytest may export them) would override the pane's real size.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        done = subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=10, check=True, env=env
        )
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def wait_for(self, *texts: str, timeout: float = 20.0) -> str:
        try:
            eventually_sync(lambda: all(t in self.screen() for t in texts), timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"never saw {texts!r}; screen was:\n{self.screen()}") from None
        return self.screen()

    def wait_match(self, pattern: str, timeout: float = 20.0) -> str:
        try:
            eventually_sync(lambda: re.search(pattern, self.screen()) is not None, timeout=timeout, interval=0.2)
        except AssertionError:
            raise AssertionError(f"never saw /{pattern}/; screen was:\n{self.screen()}") from None
        return self.screen()

    def wait_gone(self, text: str, timeout: float = 10.0) -> None:
        try:
            eventually_sync(lambda: text not in self.screen(), timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"{text!r} stayed; screen was:\n{self.screen()}") from None


@pytest.fixture
def pane() -> Iterator[Pane]:
    socket = f"hotcoin-e2e-{os.getpid()}"
    p = Pane(socket, "console")
    command = f"{sys.executable} -m hotcoin_tui.cli tui --fake --step-s 0.2 --positions 6; echo EXITED $?; sleep 60"
    p.tmux("new-session", "-d", "-s", "console", "-x", "120", "-y", "40", "-c", str(REPO), command)
    try:
        yield p
    finally:
        p.tmux("kill-server")


def test_operator_pauses_closes_everything_and_quits(pane: Pane) -> None:
    screen = pane.wait_for("PAPER", "Candidates", "Positions (6)", "Engine", "Events", "Chart", timeout=40)
    assert "pos 6" in screen and "Close ALL" in screen  # the emergency key is always on screen

    pane.keys("p")
    pane.wait_for("PAUSED")

    pane.keys("C-x")
    screen = pane.wait_for("EMERGENCY CLOSE-ALL", "Press Y to close all")
    assert "6 position(s)" in screen

    pane.keys("Y")
    pane.wait_for("FLAT: all 6 position(s) closed", "pos 0")

    pane.keys("Escape")  # then wait: ESC followed at once by a key reads as alt+key
    pane.wait_gone("CLOSE-ALL DONE")
    pane.wait_for("Positions (0)")

    pane.keys("q")  # flat: no warning, the engine is told to shut down and the app exits
    pane.wait_for("EXITED 0")


@pytest.fixture
def engine_pane(tmp_path: Path) -> Iterator[Pane]:
    """The plain `hotcoin tui`: its own engine in a child process, on the demo market at x120,
    with exits that never fire on their own (only close-all sells)."""
    socket = f"hotcoin-e2e-engine-{os.getpid()}"
    p = Pane(socket, "console")
    hold = (
        "HOTCOIN_TRADING__EXITS__TAKE_PROFIT='[{\"gain\": 50, \"fraction\": 1}]' "
        "HOTCOIN_TRADING__EXITS__STOP_LOSS=0.9 HOTCOIN_TRADING__EXITS__TRAILING_ACTIVATION=50 "
        "HOTCOIN_TRADING__EXITS__EXIT_ON_SIGNAL=false HOTCOIN_TRADING__EXITS__MAX_HOLD_MS=2592000000 "
        f"HOTCOIN_PATHS__DATA_DIR={tmp_path}"
    )
    command = f"{hold} {sys.executable} -m hotcoin_tui.cli tui --speed 120 --symbols 40 --no-http; echo EXITED $?; sleep 60"
    p.tmux("new-session", "-d", "-s", "console", "-x", "120", "-y", "40", "-c", str(REPO), command)
    try:
        yield p
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test may have killed it already
            p.tmux("kill-server")
        # The engine child outlives a killed console by design: a failed test must not leave it.
        _terminate_engines_on(tmp_path)


def test_operator_closes_the_real_engine_flat_and_quits(engine_pane: Pane, tmp_path: Path) -> None:
    from engine.journal.reader import JournalReader

    engine_pane.wait_for("SIM", "Candidates", timeout=60)
    # Usually the demo pump, bought within the first minute. When its coin is already extended
    # as the pump starts (the start time is the wall clock, so the path differs run to run),
    # the entry rules rightly skip it and a later pump is bought instead: wait for any position.
    engine_pane.wait_match(r"pos [1-9]", timeout=150)
    engine_pane.keys("C-x")
    engine_pane.wait_for("EMERGENCY CLOSE-ALL", "Press Y to close all")
    engine_pane.keys("Y")
    engine_pane.wait_for("FLAT", timeout=30)
    engine_pane.keys("Escape")
    engine_pane.wait_gone("CLOSE-ALL DONE")
    engine_pane.wait_for("Positions (0)")
    engine_pane.keys("q")
    engine_pane.wait_for("EXITED 0", timeout=60)
    with JournalReader(tmp_path / "journal.sqlite") as reader:
        exits = [e for e in reader.events(kinds=["order_attempt"]) if e.payload["purpose"] == "close_all"]
        kinds = [e.kind for e in reader.events(kinds=["run_start", "run_stop"])]
    assert exits, "close-all sold nothing"
    assert kinds == ["run_start", "run_stop"]  # the console's engine was shut down cleanly


def test_a_dropped_ssh_session_leaves_the_engine_trading_and_attachable(engine_pane: Pane, tmp_path: Path) -> None:
    """The SSH session dies (tmux's server goes, the console gets SIGHUP and never runs its
    quit path): its engine, in a session of its own, keeps running, so open positions keep
    their exits. A new console refuses to start a second engine on the same data; the socket
    `--attach` joins still serves it; a shutdown over that socket stops it cleanly."""
    import asyncio

    from engine.journal.reader import JournalReader
    from engine.runtime.client import Command
    from engine.runtime.remote_client import RemoteEngineClient
    from engine.runtime.socket_server import default_socket_path

    engine_pane.wait_for("SIM", "Candidates", timeout=60)

    async def engine_alive_then_shut_down() -> bool:
        client = RemoteEngineClient(default_socket_path(tmp_path))
        await client.connect(timeout_s=10)
        try:
            updates = aiter(client.updates())
            first = await anext(updates)
            later = await anext(updates)
            assert later.ts_ms > first.ts_ms, "the engine stopped cycling"
            result = await client.send(Command.SHUTDOWN, "test")
        finally:
            await client.close()
        return result.accepted

    engine_pane.tmux("kill-server")  # the hangup
    env = {**os.environ, "HOTCOIN_PATHS__DATA_DIR": str(tmp_path)}
    again = subprocess.run(
        [sys.executable, "-m", "hotcoin_tui.cli", "tui", "--no-http"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert again.returncode != 0 and "already running" in again.stderr + again.stdout, again.stderr[-2000:]
    assert asyncio.run(engine_alive_then_shut_down())
    socket_path = default_socket_path(tmp_path)
    eventually_sync(lambda: not socket_path.exists(), timeout=60, interval=0.2)

    def run_kinds() -> list[str]:
        with JournalReader(tmp_path / "journal.sqlite") as reader:
            return [e.kind for e in reader.events(kinds=["run_start", "run_stop"])]

    # The socket closes before the journal's last batch is written (the session unwinds its
    # sources, then the journal): wait for the engine's final flush.
    eventually_sync(lambda: len(run_kinds()) >= 2, timeout=30, interval=0.2)
    assert run_kinds() == ["run_start", "run_stop"]


def _terminate_engines_on(data_dir: Path) -> None:
    """SIGTERM every process of ours started with `HOTCOIN_PATHS__DATA_DIR=data_dir` (the
    orphaned engine, when the test failed before shutting it down), found through /proc."""
    marker = f"HOTCOIN_PATHS__DATA_DIR={data_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)
