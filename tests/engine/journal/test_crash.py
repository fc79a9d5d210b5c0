"""A writer killed with SIGKILL mid-stream leaves a sound file with every flushed event."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def run_and_kill(path: Path, flushes_before_kill: int) -> int:
    """Start the writer, kill it after it reported `flushes_before_kill` flushes; returns the
    highest seq it reported as flushed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.journal.crash_writer", str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    reported = 0
    try:
        assert child.stdout is not None
        for _ in range(flushes_before_kill):
            line = child.stdout.readline()
            if not line:
                _, err = child.communicate(timeout=10)
                pytest.fail(f"writer exited early (rc {child.returncode}): {err[-2000:]}")
            reported = max(reported, int(line))
    finally:
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    for line in out.split():  # flushes reported before the kill landed
        reported = max(reported, int(line))
    return reported


@pytest.mark.slow
def test_sigkill_mid_stream_keeps_every_flushed_event_and_the_file_sound(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    for flushes in (3, 7, 5):
        reported = run_and_kill(path, flushes)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            count, first, last = conn.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM events").fetchone()
            assert conn.execute("SELECT COUNT(*) FROM events WHERE seq <= ?", (reported,)).fetchone()[0] == reported
            orphans = conn.execute("SELECT COUNT(*) FROM traces t WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = t.first_seq)")
            assert orphans.fetchone()[0] == 0  # a traces row commits with its first event
        assert first == 1
        assert count == last  # no gaps: seq resumes after the last committed event
        assert last >= reported
