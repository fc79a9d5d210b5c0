"""A rotation whose archive folder cannot take the archive: its disk full or read-only (the
folder may be a link to a disk of its own), while the journal's own disk is fine.

Audit: the rotation's failure ended the writer (the engine went exits-only), and every start
after it replayed the pending rotation first and refused to open ("cannot open journal ...:
the disk holding <the journal's folder> is full", a folder with 67 GB free), though no event
was lost: the copy commits before the delete, so the main file still held them all. Faults
are made by SQLite itself where a test can (`PRAGMA max_page_count` on the attached archive:
a real "database or disk is full"), else raised as SQLite raises them (root ignores modes).
"""

from __future__ import annotations

import errno
import io
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
import pytest

from engine.config.sections.journal import JournalSection
from engine.journal import rotation
from engine.journal.files import archive_dir, list_archives
from engine.journal.reader import JournalReader
from engine.journal.rotation import DAY_MS
from engine.journal.writer import Journal
from tests.kit.domain import T0
from tests.kit.sqlite_faults import MESSAGES, sqlite_error

TICK = {"code": "tick", "level": "L1", "detail": "quiet minute", "value": None, "threshold": None}


def settings(**overrides: Any) -> JournalSection:
    base = {"batch_size": 500, "flush_interval_ms": 10, "rotate_max_age_days": 1.0, "retention_archives": 0}
    return JournalSection(**{**base, **overrides})


@dataclass
class ArchiveDisk:
    """Switches the archive's side of a rotation between working and failing: `full` lets
    SQLite fill the archive for real (a page limit on the attached file), `error` raises that
    SQLite error at the copy instead; `copies` counts the chunks tried."""

    full: bool = False
    error: str | None = None
    fail_after: int = 0  # chunks copied before it fails
    copies: int = 0


@pytest.fixture
def archive_disk(monkeypatch: pytest.MonkeyPatch) -> ArchiveDisk:
    disk = ArchiveDisk()
    real = rotation._copy

    async def copy(conn: aiosqlite.Connection, lo: int, hi: int) -> None:
        disk.copies += 1
        failing = disk.copies > disk.fail_after
        if failing and disk.error is not None:
            raise sqlite_error(disk.error)
        # 2 pages: the tables the archive already has, and no room for a row more
        await conn.execute(f"PRAGMA arc.max_page_count = {2 if failing and disk.full else 1_000_000}")
        await real(conn, lo, hi)

    monkeypatch.setattr(rotation, "_copy", copy)
    return disk


async def ticks(j: Journal, first_ts: int, n: int) -> None:
    for i in range(n):
        j.emit("risk_event", ts_ms=first_ts + i, payload=TICK)
    await j.flush()


def marker(path: Path) -> dict[str, Any] | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'rotation'").fetchone()
    return None if row is None else dict(orjson.loads(row[0]))


def every_seq(path: Path) -> list[int]:
    """Each seq as often as the journal's files hold it (a duplicate shows twice)."""
    seqs = []
    for f in (path, *(a.path for a in list_archives(path))):
        with sqlite3.connect(f) as conn:
            seqs += [seq for (seq,) in conn.execute("SELECT seq FROM events")]
    return sorted(seqs)


async def test_a_full_archive_disk_leaves_the_rotation_pending_and_the_journal_writing(
    tmp_path: Path, archive_disk: ArchiveDisk, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite"
    archive = archive_dir(path) / "j-1-10.sqlite"
    archive_disk.full = True
    with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
        async with Journal.open(path, settings()) as j:
            await ticks(j, T0, 10)
            assert await j.rotate(now_ms=T0 + 2 * DAY_MS) == []
            assert j.failure is None  # the writer goes on: nothing is lost, nothing stops
            await ticks(j, T0 + 2 * DAY_MS, 5)  # seqs 11..15
            assert await j.rotate(now_ms=T0 + 2 * DAY_MS) == []  # tried again, no second rotation planned
            assert j.stats.rotations == 0
    said = [r.getMessage() for r in caplog.records if "cannot write its archive" in r.getMessage()]
    assert said == [  # once, not at every check
        f"journal {path}: the rotation of seq 1..10 cannot write its archive {archive}: database or disk is full; "
        f"the disk holding the archive folder {archive.parent} is full: free space there, or give the folder a disk "
        "with room. No event is lost: they stay in the journal's main file (which grows past "
        "journal.rotate_max_bytes meanwhile), and the engine tries the rotation again at each check and start"
    ]
    assert f"the disk holding {tmp_path} is full" not in said[0]
    assert marker(path) == {
        "archive": archive.name, "first": 1, "last": 10, "error": "database or disk is full",
        "fix": said[0].split("database or disk is full; ", 1)[1],
    }  # fmt: skip
    assert every_seq(path) == list(range(1, 16))


async def test_an_archive_folder_linked_to_another_disk_is_named_with_where_it_leads(
    tmp_path: Path, archive_disk: ArchiveDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit's archive folder was a link to a 1 MB disk: the disk to free is that one."""
    path = tmp_path / "j.sqlite"
    small = tmp_path / "small-disk"
    small.mkdir()
    archive_dir(path).symlink_to(small)
    archive_disk.full = True
    async with Journal.open(path, settings()) as j:
        await ticks(j, T0, 10)
        assert await j.rotate(now_ms=T0 + 2 * DAY_MS) == []
    assert f"the disk holding the archive folder {archive_dir(path)} (a link to {small}) is full" in caplog.text


async def test_the_pending_rotation_finishes_first_once_the_disk_has_room(
    tmp_path: Path, archive_disk: ArchiveDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """The rotation left pending is finished before another is planned: the seqs after it go
    to an archive of their own, none twice, none lost."""
    path = tmp_path / "j.sqlite"
    archive_disk.full = True
    async with Journal.open(path, settings()) as j:
        await ticks(j, T0, 10)
        assert await j.rotate(now_ms=T0 + 2 * DAY_MS) == []  # 1..10 pending
        await ticks(j, T0 + 2 * DAY_MS, 10)  # 11..20, old too by the next check
        archive_disk.full = False
        with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
            written = await j.rotate(now_ms=T0 + 5 * DAY_MS)
        assert [p.name for p in written] == ["j-1-10.sqlite", "j-11-20.sqlite"]
        assert j.stats.rotations == 2
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(1, 10), (11, 20)]
    assert marker(path) is None
    assert every_seq(path) == list(range(1, 21))
    assert (
        f"journal {path}: finished the rotation of seq 1..10 into {archive_dir(path) / 'j-1-10.sqlite'}, which could not "
        "write its archive before (database or disk is full)"
    ) in caplog.messages
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.events()] == list(range(1, 21))
        assert reader.missing() == []


async def test_a_rotation_that_failed_midway_finishes_without_a_duplicate_or_a_loss(tmp_path: Path, archive_disk: ArchiveDisk) -> None:
    """The disk fills after some chunks were copied and deleted: the rest stays in the main
    file, and finishing the rotation later moves it into the same archive."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        await ticks(j, T0, 30)
        archive_disk.full, archive_disk.fail_after = True, 2
        with pytest.raises(rotation.ArchiveWriteError):  # straight on the writer's connection, in chunks of 5
            await rotation.move_range(j._conn, path, 1, 20, j._db_lock, chunk=5)
        assert every_seq(path) == list(range(1, 31))  # 1..10 in the archive, 11..30 still in the main file
        assert (marker(path) or {})["first"] == 1
        archive_disk.full = False
        assert [p.name for p in await j.rotate(now_ms=T0 + 10)] == ["j-1-20.sqlite"]  # nothing else is old
    assert every_seq(path) == list(range(1, 31))
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(1, 20)]


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("SQLITE_FULL", "the disk holding the archive folder {folder} is full: free space there"),
        ("SQLITE_READONLY", "the archive folder {folder} is read-only to this user (read-only media, or a folder of another user): make it writable"),
        ("SQLITE_IOERR", "the disk holding the archive folder {folder} failed to write it: check that disk (`dmesg`)"),
        ("SQLITE_CORRUPT", "the archive file {folder}/j-1-10.sqlite is damaged: keep a copy of it, and see `hotcoin journal check`"),
    ],
)
async def test_a_start_over_a_pending_rotation_its_archive_disk_refuses_opens_and_says_why(
    tmp_path: Path, archive_disk: ArchiveDisk, caplog: pytest.LogCaptureFixture, error: str, cause: str
) -> None:
    """Every start replayed the pending rotation first and exited rc=2 naming the journal's
    folder; it opens, warns naming the archive folder and the fix, and keeps the rotation
    pending for the next check."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        await ticks(j, T0, 10)
        archive_disk.error = error
        assert await j.rotate(now_ms=T0 + 2 * DAY_MS) == []
    folder = archive_dir(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
        async with Journal.open(path, settings()) as j:
            assert j.next_seq == 11
            await ticks(j, T0 + 10, 2)
            assert j.failure is None
    (said,) = [m for m in caplog.messages if "cannot write its archive" in m]
    assert said.startswith(f"journal {path}: the rotation of seq 1..10 cannot write its archive {folder / 'j-1-10.sqlite'}: ")
    assert cause.format(folder=folder) in said and "stay in the journal's main file" in said
    assert str(tmp_path) + " is" not in said and f"the file or {tmp_path}" not in said
    assert (marker(path) or {}).get("first") == 1
    archive_disk.error = None
    caplog.clear()
    async with Journal.open(path, settings()):
        pass
    assert marker(path) is None
    assert [m for m in caplog.messages if "finished" in m] == [
        f"journal {path}: finished the rotation of seq 1..10 into {folder / 'j-1-10.sqlite'}, which could not write "
        f"its archive before ({MESSAGES[error]})"
    ]
    assert every_seq(path) == list(range(1, 13))


async def test_an_archive_file_the_folder_refuses_is_a_pending_rotation_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read-only media refuses the archive file itself (the file system's EROFS, before SQLite):
    the same pending rotation, the cause named on the archive folder."""

    def read_only(target: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        await ticks(j, T0, 10)
        with monkeypatch.context() as m:
            m.setattr(rotation, "_create_private", read_only)
            assert await j.rotate(now_ms=T0 + 2 * DAY_MS) == []
        assert (marker(path) or {}).get("error") == "Read-only file system"
        assert f"the archive folder {archive_dir(path)} is read-only" in (marker(path) or {}).get("fix", "")
        assert [p.name for p in await j.rotate(now_ms=T0 + 2 * DAY_MS)] == ["j-1-10.sqlite"]


async def test_a_start_whose_pending_rotation_cannot_make_its_archive_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit's start: a rotation pending (the engine stopped before it finished) and no
    room on the archive folder's disk for its file: `Journal.open` raised, and `hotcoin run`
    exited 2. It opens, and the rotation stays pending."""

    def no_room(target: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        await ticks(j, T0, 10)
    with sqlite3.connect(path) as conn:
        conn.execute("""INSERT INTO meta VALUES ('rotation', '{"archive": "j-1-5.sqlite", "first": 1, "last": 5}')""")
    monkeypatch.setattr(rotation, "_create_private", no_room)
    with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
        async with Journal.open(path, settings()) as j:
            assert j.next_seq == 11
    assert f"cannot write its archive {archive_dir(path) / 'j-1-5.sqlite'}: No space left on device; the disk holding the archive folder" in caplog.text
    assert (marker(path) or {}).get("error") == "No space left on device"
    assert every_seq(path) == list(range(1, 11))


async def test_events_a_failed_writer_saved_come_back_while_the_rotation_cannot_finish(
    tmp_path: Path, archive_disk: ArchiveDisk
) -> None:
    """`journal check` said the next start takes the saved events back, while every start
    failed on the pending rotation first: it starts, and takes them back."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        await ticks(j, T0, 12)
    with JournalReader(path) as reader:
        buf = io.BytesIO()
        reader.export_jsonl(buf)
    spill = tmp_path / "j.unwritten-11.jsonl"  # seqs 11 and 12, saved by a writer that failed
    spill.write_bytes(b"".join(line for line in buf.getvalue().splitlines(keepends=True) if orjson.loads(line)["seq"] >= 11))
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM events WHERE seq >= 11")
        conn.execute("""INSERT INTO meta VALUES ('rotation', '{"archive": "j-1-10.sqlite", "first": 1, "last": 10}')""")
    archive_disk.full = True
    with JournalReader(path) as reader:
        assert [u.describe() for u in reader.unwritten()] == [
            f"2 event(s) (seq 11..12) are not yet in the journal: a failed writer saved them in {spill}; "
            "the engine's next start (`hotcoin run`) takes them back"
        ]
    async with Journal.open(path, settings()) as j:
        assert j.next_seq == 13
    assert spill.with_name(spill.name + ".restored").exists()
    assert every_seq(path) == list(range(1, 13))
    assert (marker(path) or {}).get("error") == "database or disk is full"
