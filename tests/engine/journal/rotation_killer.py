"""Child process for the mid-rotation crash tests: journals EVENTS events, rotates the first
half into an archive, then starts rotating the rest and is killed (SIGKILL, by itself) in the
middle of copying the first chunk into its new archive, its copy written but not committed:
as a kill -9 or a power cut during a rotation leaves it, with SQLite's rollback journal "hot"
beside that archive. The events are large (4 kB), so a chunk outgrows SQLite's page cache (2
MB) as the rotations of a busy journal do (20,000 events a chunk): SQLite then writes pages into
the archive before the commit, its rollback journal synced first with the header that makes it
hot. (A copy that fits in the cache leaves only a journal without that header: nothing to
roll back.)

    python -m tests.engine.journal.rotation_killer JOURNAL_PATH EVENTS
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiosqlite

from engine.config.sections.journal import JournalSection
from engine.journal import rotation
from engine.journal.writer import Journal
from tests.kit.domain import T0

TICK = {"code": "tick", "level": "L1", "detail": "quiet minute " * 330, "value": None, "threshold": None}


class _KilledBeforeTheCopyCommits:
    """The writer's connection, for `rotation.move_range`: its third commit (the first chunk's
    copy, after the rotation marker and the archive's tables) never happens; the process dies."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._commits = 0

    def execute(self, *args: Any) -> Any:
        return self._conn.execute(*args)

    async def commit(self) -> None:
        self._commits += 1
        if self._commits == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        await self._conn.commit()


async def main(path: Path, events: int) -> None:
    settings = JournalSection(batch_size=500, flush_interval_ms=10, retention_archives=0)
    async with Journal.open(path, settings) as journal:
        for i in range(events):
            journal.emit("risk_event", ts_ms=T0 + i, payload=TICK)
        await journal.flush()
        half = events // 2
        await rotation.move_range(journal._conn, path, 1, half, asyncio.Lock())
        conn: Any = _KilledBeforeTheCopyCommits(journal._conn)
        await rotation.move_range(conn, path, half + 1, events, asyncio.Lock())


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))


def killed_mid_rotation(folder: Path, events: int = 1200) -> Path:
    """Run this child into `folder` until it dies mid-rotation; returns the journal's path. The
    archive of seqs `events // 2 + 1 .. events` is left with its hot rollback journal beside it."""
    import subprocess

    repo = Path(__file__).resolve().parents[3]
    path = folder / "journal.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-m", "tests.engine.journal.rotation_killer", str(path), str(events)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    return path
