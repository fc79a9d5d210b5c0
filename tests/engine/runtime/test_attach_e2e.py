"""An engine started with `hotcoin run` keeps trading while a console attaches, detaches and
re-attaches through its local socket; only an explicit shutdown stops it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.journal.reader import JournalReader
from engine.runtime.client import Command
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.socket_server import default_socket_path
from tests.kit.waiting import eventually, eventually_sync


@pytest.fixture
def headless_engine(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`hotcoin run --demo` in its own process, with its data dir in tmp; killed if still running."""
    data = tmp_path / "data"
    env = {**os.environ, "HOTCOIN_PATHS__DATA_DIR": str(data), "HOTCOIN_SIM__SYMBOLS": "40"}
    exe = Path(sys.executable).parent / "hotcoin"
    engine = subprocess.Popen(
        [str(exe), "run", "--demo", "--speed", "60", "--no-http"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually_sync(lambda: default_socket_path(data).exists() or engine.poll() is not None, timeout=60)
        yield engine, data
    finally:
        if engine.poll() is None:
            engine.kill()
        engine.communicate()


async def test_engine_outlives_its_consoles(headless_engine: tuple[subprocess.Popen[str], Path]) -> None:
    engine, data = headless_engine
    socket_path = default_socket_path(data)
    assert engine.poll() is None, "the engine did not start"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    seen: list[int] = []
    for _ in range(2):  # attach, watch, detach; then again
        async with RemoteEngineClient(socket_path) as console:
            await eventually(lambda c=console: c.latest() is not None, timeout=30)
            first = console.latest()
            assert first is not None
            await eventually(lambda c=console, f=first: (c.latest() or f).seq > f.seq, timeout=30)
            latest = console.latest()
            assert latest is not None
            seen.append(latest.seq)
        assert engine.poll() is None, "detaching stopped the engine"
    assert seen[1] > seen[0], "the engine did not go on between the two attachments"

    async with RemoteEngineClient(socket_path) as console:
        result = await console.send(Command.SHUTDOWN, "test")
        assert result.accepted
    await eventually(lambda: engine.poll() is not None, timeout=30)
    assert engine.returncode == 0
    with JournalReader(data / "journal.sqlite") as reader:
        kinds = [e.kind for e in reader.events(kinds=["run_start", "run_stop", "command"])]
    assert kinds[0] == "run_start"
    assert kinds[-2:] == ["command", "run_stop"]


async def test_console_refuses_to_start_a_second_engine_on_a_served_socket(
    headless_engine: tuple[subprocess.Popen[str], Path],
) -> None:
    from engine.errors import ConfigError
    from hotcoin_tui.child_engine import child_engine

    _, data = headless_engine
    with pytest.raises(ConfigError, match=r"already running.*hotcoin tui --attach"):
        async with child_engine(["--demo"], data, data / "engine.log"):
            pass


async def test_console_says_why_its_engine_did_not_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import ConfigError
    from hotcoin_tui.child_engine import child_engine

    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"exited with code 2 before it was ready(.|\n)*sim.symbols"):
        async with child_engine(["--demo", "--symbols", "99999"], tmp_path, tmp_path / "engine.log"):
            pass


async def test_console_quotes_only_what_this_start_wrote_to_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit: the log is appended to across starts, and its last five lines put an earlier
    attempt's error beside this one's."""
    from engine.errors import ConfigError
    from hotcoin_tui.child_engine import child_engine

    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(tmp_path))
    log = tmp_path / "engine.log"
    log.write_text("hotcoin: an earlier attempt's error\n")
    with pytest.raises(ConfigError, match=r"exited with code 2 before it was ready") as refused:
        async with child_engine(["--demo", "--symbols", "99999"], tmp_path, log):
            pass
    assert "sim.symbols" in str(refused.value)
    assert "earlier attempt" not in str(refused.value)
    assert log.read_text().startswith("hotcoin: an earlier attempt's error\n")  # the log keeps it


def test_a_second_engine_on_the_same_journal_is_refused_while_readers_still_read(
    headless_engine: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    """Another data dir (so another attach socket) naming the running engine's journal: it
    must not recover that engine's positions and trade them beside it."""
    engine, data = headless_engine
    journal = data / "journal.sqlite"
    exe = Path(sys.executable).parent / "hotcoin"
    env = {**os.environ, "HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "other"), "HOTCOIN_SIM__SYMBOLS": "40"}
    second = subprocess.run(
        [str(exe), "run", "--demo", "--duration", "5", "--no-http", "--journal", str(journal)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert second.returncode == 2
    assert f"journal {journal} is in use by another engine (pid {engine.pid})" in second.stderr
    traces = subprocess.run(
        [str(exe), "traces", "--journal", str(journal)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert traces.returncode == 0, traces.stderr
    assert engine.poll() is None, "the refused engine disturbed the running one"
    with JournalReader(journal) as reader:
        assert len(list(reader.events(kinds=["run_start"]))) == 1
