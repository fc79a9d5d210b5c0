"""What hotcoin writes is its owner's alone, whatever the login umask."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from engine.errors import ConfigError
from hotcoin_tui import cli
from hotcoin_tui.child_engine import child_engine


def test_the_hotcoin_command_runs_under_a_private_umask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files others create for us (SQLite's -wal/-shm, model files, job folders) came out 0644
    and 0755 under umask 022; the command sets 0077 before any subcommand runs."""
    monkeypatch.setattr(sys, "argv", ["hotcoin", "config", "path"])
    old = os.umask(0o022)
    try:
        with pytest.raises(SystemExit) as done:
            cli.main()
        assert done.value.code == 0
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(old)


async def test_the_console_engine_log_is_created_0600(tmp_path: Path) -> None:
    """The console's engine log (journal.log) was 0644; an engine that exits at once still
    leaves its log, and that log is private."""
    log = tmp_path / "data" / "journal.log"
    old = os.umask(0o022)
    try:
        with pytest.raises(ConfigError, match="exited with code 2"):
            async with child_engine(["--no-such-flag"], tmp_path / "data", log):
                pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert "--no-such-flag" in log.read_text()
