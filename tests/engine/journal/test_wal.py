"""A damaged or cut -wal: SQLite drops the transactions after the damage without a word. The
writer finds it before SQLite opens the file, keeps a copy and says so; `journal check` reports
it; what a crash leaves (an unfinished write) is not taken for damage."""

from __future__ import annotations

import asyncio
import logging
import mmap
import shutil
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config.sections.journal import JournalSection
from engine.errors import JournalError
from engine.journal import wal
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from hotcoin_tui.cli import app
from tests.kit.domain import T0

EVENTS = 400
TICK = {"code": "tick", "level": "L1", "detail": "quiet minute " * 20, "value": None, "threshold": None}
FRAME = wal.FRAME_HEADER + 4096


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal as a crash leaves it: every event committed in its -wal, none checkpointed
    into the main file, the -shm as the writer left it. Made once; tests take copies."""
    folder = tmp_path_factory.mktemp("crashed")
    (folder / "copy").mkdir()
    asyncio.run(_write_and_keep_the_wal(folder / "live" / "journal.sqlite", folder / "copy"))
    return folder / "copy" / "journal.sqlite"


async def _write_and_keep_the_wal(live: Path, copy: Path) -> None:
    """Journal EVENTS events in many commits while another connection holds a read open: the
    writer's close can then neither checkpoint nor delete the -wal, which is copied as it is."""
    async with Journal.open(live, JournalSection(batch_size=10, flush_interval_ms=5)) as journal:
        with closing(sqlite3.connect(live)) as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT COUNT(*) FROM events").fetchone()
            for i in range(EVENTS):
                journal.emit("risk_event", ts_ms=T0 + i, payload=TICK)
                if i % 10 == 9:
                    await journal.flush()
            await journal.flush()
            for suffix in ("", "-wal", "-shm"):
                shutil.copyfile(f"{live}{suffix}", f"{copy / live.name}{suffix}")


def _take(crashed: Path, folder: Path, *, shm: bool = False) -> Path:
    """A copy of the crashed journal (without its -shm unless asked: a -shm SQLite rebuilds)."""
    folder.mkdir()
    for suffix in ("", "-wal", "-shm") if shm else ("", "-wal"):
        shutil.copyfile(f"{crashed}{suffix}", f"{folder / crashed.name}{suffix}")
    return folder / crashed.name


def _frames(path: Path) -> tuple[list[int], list[int]]:
    """The -wal's frames with a commit (numbered from 1), and the others."""
    data = wal.wal_path(path).read_bytes()
    commits, others = [], []
    for n in range(1, (len(data) - wal.WAL_HEADER) // FRAME + 1):
        at = wal.WAL_HEADER + (n - 1) * FRAME
        (commits if data[at + 4 : at + 8] != b"\0\0\0\0" else others).append(n)
    return commits, others


def _cut(path: Path, size: int) -> None:
    with wal.wal_path(path).open("r+b") as fh:
        fh.truncate(size)


def _flip(path: Path, frame: int) -> None:
    """Flip one byte in the page of frame `frame`, as a bad disk sector does."""
    at = wal.WAL_HEADER + (frame - 1) * FRAME + wal.FRAME_HEADER + 100
    with wal.wal_path(path).open("r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0x40]))


def _sqlite_keeps(path: Path, folder: Path) -> tuple[int, int]:
    """(frames SQLite reads back from the -wal, events it reads) on a throwaway copy: its own
    word for what `wal.inspect` must agree with."""
    copy = folder / "sqlite-says"
    shutil.copytree(path.parent, copy)
    with closing(sqlite3.connect(copy / path.name)) as conn:
        tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'events'").fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] if tables else 0
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames, events


def test_a_journal_left_by_a_crash_reads_as_sqlite_reads_it(crashed: Path, tmp_path: Path) -> None:
    path = _take(crashed, tmp_path / "j")
    found = wal.inspect(path)
    assert found is not None and not found.damaged
    commits, _ = _frames(path)
    assert (found.kept_frames, found.unfinished_frames, found.lost_frames) == (commits[-1], 0, 0)
    assert _sqlite_keeps(path, tmp_path) == (commits[-1], EVENTS)


def test_a_flipped_byte_mid_wal_is_damage_that_names_the_frame_and_what_it_drops(crashed: Path, tmp_path: Path) -> None:
    """Audit: a -wal with one damaged frame: SQLite stopped there, `journal check` said
    "integrity ok" over the events before it and the engine started on them."""
    path = _take(crashed, tmp_path / "j")
    commits, _ = _frames(path)
    bad = commits[len(commits) // 2] + 1  # the first frame of a transaction in the middle
    _flip(path, bad)
    found = wal.inspect(path)
    assert found is not None and found.damaged
    assert (found.kept_frames, found.lost_commits) == (bad - 1, len(commits) // 2)
    assert found.lost_frames == commits[-1] - (bad - 1)
    frames, events = _sqlite_keeps(path, tmp_path)
    assert frames == found.kept_frames and events < EVENTS
    assert found.describe().startswith(f"{wal.wal_path(path)}: frame {bad} does not read back")


@pytest.mark.parametrize(
    ("where", "damaged"),
    [
        ("after-a-frame-header", False),  # a kill between the header's write and the page's
        ("at-a-memory-page", False),  # a kill that stopped the page's write at a page-cache page
        ("after-whole-frames", False),  # a kill between two frames of a transaction
        ("inside-a-page", True),  # no crash stops there: the file was cut
    ],
)
def test_a_wal_cut_short_is_damage_only_where_no_crash_cuts_it(crashed: Path, tmp_path: Path, where: str, damaged: bool) -> None:
    """Audit: a -wal cut at half lost 116 of 606 events without a word. A crash also leaves an
    unfinished last transaction (frames with no commit after them, the last one cut short),
    which holds nothing committed: no false alarm there."""
    path = _take(crashed, tmp_path / "j")
    commits, others = _frames(path)
    middle = next(n for n in others if n > commits[len(commits) // 2])  # a frame that is not a commit
    start = wal.WAL_HEADER + (middle - 1) * FRAME
    size = {
        "after-a-frame-header": start + wal.FRAME_HEADER,
        "at-a-memory-page": next(s for s in range(start + wal.FRAME_HEADER + 1, start + FRAME) if s % mmap.PAGESIZE == 0),
        "after-whole-frames": start,
        "inside-a-page": next(s for s in range(start + 4000, start + FRAME) if s % mmap.PAGESIZE),
    }[where]
    _cut(path, size)
    found = wal.inspect(path)
    assert found is not None
    assert found.damaged is damaged
    kept = max(n for n in commits if n < middle)
    assert found.kept_frames == kept == _sqlite_keeps(path, tmp_path)[0]
    assert found.unfinished_frames == middle - kept - (where == "after-whole-frames")


def test_a_wal_cut_at_a_frame_is_damage_when_its_shm_counted_more(crashed: Path, tmp_path: Path) -> None:
    """A cut between two frames looks like a crash, unless the -shm the writer left (SQLite's
    index of the frames committed) counts more committed frames than read back."""
    path = _take(crashed, tmp_path / "j", shm=True)
    commits, _ = _frames(path)
    middle = commits[len(commits) // 2]
    _cut(path, wal.WAL_HEADER + middle * FRAME)
    found = wal.inspect(path)
    assert found is not None and found.damaged
    assert (found.kept_frames, found.indexed_frames) == (middle, commits[-1])
    assert "the -shm index counts" in found.describe()


def test_a_damaged_header_is_damage(crashed: Path, tmp_path: Path) -> None:
    path = _take(crashed, tmp_path / "j")
    with wal.wal_path(path).open("r+b") as fh:
        fh.write(b"\0\0\0\0")
    found = wal.inspect(path)
    assert found is not None and found.damaged and found.bad_header
    assert _sqlite_keeps(path, tmp_path) == (0, 0)


async def test_the_writer_keeps_a_copy_of_a_damaged_wal_and_says_so(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The dropped tail used to be gone at the first checkpoint. Now it is copied before SQLite
    opens the file, the writer warns, and `wal_damage` carries it to the runtime; the -wal is
    cut to what SQLite reads, so the next open does not find it again."""
    path = _take(crashed, tmp_path / "j")
    commits, _ = _frames(path)
    _flip(path, commits[3] + 1)
    damaged = wal.wal_path(path).read_bytes()
    with caplog.at_level(logging.INFO, logger="hotcoin.journal"):
        async with Journal.open(path) as journal:
            assert journal.wal_damage is not None
            assert journal.next_seq < EVENTS
        async with Journal.open(path) as again:
            assert again.wal_damage is None
    copy = path.with_name(path.name + "-wal.damaged-1")
    assert copy.read_bytes() == damaged
    assert oct(copy.stat().st_mode & 0o777) == oct(0o600)
    assert sorted(p.name for p in path.parent.glob("*.damaged-*")) == [copy.name]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert f"frame {commits[3] + 1} does not read back" in warned[0] and f"a copy of the -wal as found is kept at {copy}" in warned[0]
    assert "check them against the exchange" in warned[0]


async def test_the_writer_refuses_to_start_when_it_cannot_keep_the_copy(
    crashed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Going on without the copy would lose the transactions for good at the first checkpoint.
    (A full disk is faked: a test cannot fill one.)"""
    import errno
    import os

    path = _take(crashed, tmp_path / "j")
    _flip(path, _frames(path)[0][3] + 1)

    def disk_full(check: wal.WalCheck) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(wal, "keep_copy", disk_full)
    with pytest.raises(JournalError, match=r"does not read back .*keeping a copy of it failed \(No space left on device\)"):
        async with Journal.open(path):
            pass
    assert wal.inspect(path) is not None and wal.inspect(path).damaged  # type: ignore[union-attr]  # untouched


async def test_an_unfinished_write_is_no_alarm(crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _take(crashed, tmp_path / "j")
    commits, others = _frames(path)
    middle = next(n for n in others if n > commits[len(commits) // 2])
    _cut(path, wal.WAL_HEADER + (middle - 1) * FRAME + wal.FRAME_HEADER)
    with caplog.at_level(logging.INFO, logger="hotcoin.journal"):
        async with Journal.open(path) as journal:
            assert journal.wal_damage is None
    assert not list(path.parent.glob("*.damaged-*"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in caplog.records if "-wal" in r.getMessage()] == [
        f"journal {path}: SQLite leaves out the last {middle - max(n for n in commits if n < middle)} frame(s) of its "
        "-wal, which no commit completes: a write a crash interrupted, holding nothing that was committed"
    ]


def test_journal_check_reports_a_damaged_wal(crashed: Path, tmp_path: Path) -> None:
    """Audit: `hotcoin journal check` said "integrity ok" over what SQLite kept."""
    path = _take(crashed, tmp_path / "j")
    commits, _ = _frames(path)
    _flip(path, commits[3] + 1)
    result = CliRunner().invoke(app, ["journal", "check", "--journal", str(path), "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert f"frame {commits[3] + 1} does not read back" in said and "the engine's next start keeps a copy of the -wal" in said
    with JournalReader(path) as reader:
        (main,) = reader.check()
    assert main["integrity"] == "ok"
    assert main["wal"]["damage"] is not None and main["wal"]["lost_transactions"] == len(commits) - 4


def test_journal_check_of_a_sound_wal_says_nothing_about_it(crashed: Path, tmp_path: Path) -> None:
    path = _take(crashed, tmp_path / "j")
    with JournalReader(path) as reader:
        (main,) = reader.check()
    assert main["wal"]["damage"] is None and main["wal"]["frames_read"] == _frames(path)[0][-1]
    result = CliRunner().invoke(app, ["journal", "check", "--journal", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("page", [512, 4096, 65536])
def test_the_checksums_are_sqlites(page: int, tmp_path: Path) -> None:
    """The frame checksums computed all at once agree with SQLite's word-by-word fold, and with
    what SQLite reads back, whatever the page size."""
    path = tmp_path / "j.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA page_size={page}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT)")
        with closing(sqlite3.connect(path)) as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT COUNT(*) FROM events").fetchone()
            for i in range(30):
                conn.execute("INSERT INTO events (payload) VALUES (?)", ("x" * (i * 97),))
                conn.commit()
            shutil.copytree(tmp_path, tmp_path / "copy", ignore=shutil.ignore_patterns("copy"))
    copy = tmp_path / "copy" / "j.sqlite"
    data = wal.wal_path(copy).read_bytes()
    found = wal.inspect(copy)
    assert found is not None and not found.damaged
    frames = (len(data) - wal.WAL_HEADER) // (wal.FRAME_HEADER + page)
    seed = wal._header(data)
    assert seed is not None and seed[0] == page
    running = seed[2]
    for n in range(frames):
        at = wal.WAL_HEADER + n * (wal.FRAME_HEADER + page)
        running = wal._checksum(data[at : at + 8] + data[at + wal.FRAME_HEADER : at + wal.FRAME_HEADER + page], seed[1], running)
        assert running == tuple(int.from_bytes(data[at + o : at + o + 4], "big") for o in (16, 20))
    assert found.kept_frames == frames == _sqlite_keeps(copy, tmp_path / "s")[0]


async def test_the_engine_journals_the_loss_as_a_risk_event(crashed: Path, tmp_path: Path) -> None:
    """The writer's warning is a log line; the run's journal, its console and the owner's phone
    hear of it through a `risk_event` (journal_wal_damaged) at the engine's start."""
    from engine.ops.notify.base import Severity
    from engine.ops.notify.events import notification_for
    from tests.kit.engine import pump_rig
    from tests.kit.waiting import eventually

    path = _take(crashed, tmp_path / "j")
    _flip(path, _frames(path)[0][3] + 1)
    seen: list[tuple[str, dict[str, object]]] = []

    def observe(kind: str, payload: Mapping[str, object], symbol: str | None) -> None:
        seen.append((kind, dict(payload)))

    async with pump_rig(path) as rig:
        damage = rig.journal.wal_damage
        assert damage is not None
        rig.engine.observe(observe)
        task = asyncio.create_task(rig.engine.run())
        await eventually(lambda: any(p.get("code") == "journal_wal_damaged" for _, p in seen), timeout=30)
        rig.engine.stop()
        await asyncio.wait_for(task, 10)
    with JournalReader(path) as reader:
        (event,) = [e for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "journal_wal_damaged"]
        (start,) = reader.events(kinds=["run_start"])
    assert event.seq > start.seq
    assert event.payload == {"code": "journal_wal_damaged", "level": "L1", "detail": damage}
    note = notification_for("risk_event", event.payload)
    assert note is not None and (note.title, note.text, note.severity) == ("Journal lost events to a damaged -wal", damage, Severity.CRITICAL)


def test_doctor_fails_a_damaged_wal(crashed: Path, tmp_path: Path) -> None:
    from engine.ops.check import Status
    from engine.ops.doctor import check_journal

    path = _take(crashed, tmp_path / "j")
    sound = {c.name: c for c in check_journal(path, 2_000_000_000)}["journal.integrity"]
    assert sound.status is Status.OK
    _flip(path, _frames(path)[0][3] + 1)
    damaged = {c.name: c for c in check_journal(path, 2_000_000_000)}["journal.integrity"]
    assert damaged.status is Status.FAIL and "does not read back" in damaged.detail


def test_the_reader_loads_numpy_only_for_the_wal_check() -> None:
    """`replay` and `traces` start fast: the -wal check's numpy loads with `journal check` only."""
    import subprocess
    import sys

    code = "import sys, engine.journal.reader; print('numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
