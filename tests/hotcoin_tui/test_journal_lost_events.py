"""Events a journal's files do not hold, and what the reading commands say about them: seqs
missing from the middle or with an archive gone, events a failed writer saved to a spill file,
a damaged old archive, events of a newer version, and `--out` that is not a regular file."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from engine.errors import JournalError
from engine.journal.reader import JournalReader
from hotcoin_tui.cli import app
from tests.kit.domain import T0
from tests.kit.events import WrittenTrace, build_journal, entered_trace, filter_rejected_trace

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "400"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def journal(tmp_path: Path) -> tuple[Path, list[WrittenTrace]]:
    """Seqs 1..11 (an entered trade), 12 (a rejected candidate)."""
    path = tmp_path / "journal.sqlite"
    written = build_journal(
        path,
        [
            lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0),
            lambda s: filter_rejected_trace(s, symbol="PEPE/USDT", ts_ms=T0 + 60_000),
        ],
    )
    return path, written


def _archive(path: Path, first: int, last: int) -> Path:
    """Move seqs `first`..`last` of the main file into an archive, as a rotation does."""
    target = path.with_name(f"{path.stem}.archive") / f"{path.stem}-{first}-{last}.sqlite"
    target.parent.mkdir(exist_ok=True)
    with closing(sqlite3.connect(path)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.execute("DELETE FROM events WHERE seq < ? OR seq > ?", (first, last))
        dst.commit()
        dst.execute("VACUUM")
        src.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (first, last))
        src.commit()
    return target


def _sql(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()


def _exported(path: Path) -> list[int]:
    return [orjson.loads(line)["seq"] for line in path.read_bytes().splitlines()]


# -- 1: events missing from the middle ----------------------------------------------------------


def test_check_and_export_name_events_deleted_from_the_middle(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    _sql(path, "DELETE FROM events WHERE seq IN (6, 10)")
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 1
    assert orjson.loads(out)[0]["missing"] == [[6, 6], [10, 10]]
    assert f"journal {path} is missing 2 event(s) (seq 6, seq 10)" in err
    dest = tmp_path / "out.jsonl"
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(dest))
    assert code == 1 and "seq 6, seq 10" in err and "--skip-damaged" in err and not dest.exists()
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(dest), "--skip-damaged")
    assert code == 0 and "is missing 2 event(s) (seq 6, seq 10)" in err
    assert _exported(dest) == [s for s in range(1, 13) if s not in (6, 10)]


def test_a_missing_archive_between_others_is_lost_events(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, _ = journal
    _archive(path, 1, 3)
    gone = _archive(path, 4, 7)
    _archive(path, 8, 9)
    code, _, err = invoke("journal", "check", "-j", str(path))
    assert code == 0, err
    gone.unlink()
    code, _, err = invoke("journal", "check", "-j", str(path))
    assert code == 1 and "is missing 4 event(s) (seq 4..7)" in err
    code, _, err = invoke("journal", "export", "-j", str(path))
    assert code == 1 and "seq 4..7" in err


def test_events_retention_deleted_are_not_missing(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, _ = journal
    _sql(path, "DELETE FROM events WHERE seq <= 4")
    code, _, err = invoke("journal", "check", "-j", str(path))
    assert code == 1 and "(seq 1..4)" in err
    _sql(path, "INSERT INTO meta (key, value) VALUES ('pruned_through', '4')")
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 0, err
    assert orjson.loads(out)[0]["missing"] == []


def test_archives_retention_deleted_without_a_checkpoint_are_not_missing(tmp_path: Path) -> None:
    """Audit: a backtest's journal (no checkpoints) after retention: `journal check` said
    "missing 66885 event(s) ... restore it from a backup" and `journal export` refused. The
    deleted ranges are said as what they are, and the export goes on."""
    import asyncio

    from engine.config.sections.journal import JournalSection
    from engine.journal.writer import Journal

    path = tmp_path / "bt.sqlite"
    day = 86_400_000

    async def backtest() -> None:
        settings = JournalSection(rotate_max_age_days=1.0, retention_archives=1)
        async with Journal.open(path, settings) as j:
            for n in range(3):
                for i in range(4):
                    j.emit("risk_event", ts_ms=T0 + n * 2 * day + i, payload={"code": "tick", "level": "L1", "detail": "x"})
                await j.rotate(now_ms=T0 + (n * 2 + 2) * day + 10)

    asyncio.run(backtest())
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 0, err
    assert (orjson.loads(out)[0]["missing"], orjson.loads(out)[0]["deleted"]) == ([], [[1, 8]])
    assert "8 older event(s) (seq 1..8) were deleted on purpose, with their archives, by retention" in err
    assert "missing" not in err and "backup" not in err
    dest = tmp_path / "out.jsonl"
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(dest))
    assert code == 0, err
    assert _exported(dest) == [9, 10, 11, 12]


def test_check_names_a_rotation_that_cannot_write_its_archive(journal: tuple[Path, list[WrittenTrace]]) -> None:
    """Nothing is damaged (the main file holds every event), but the owner must give the
    archive folder's disk room: said, and the check still passes."""
    path, _ = journal
    archive = path.with_name("journal.archive") / "journal-1-10.sqlite"
    marker = {"archive": archive.name, "first": 1, "last": 10, "error": "database or disk is full", "fix": "free space there"}
    _sql(path, f"INSERT INTO meta (key, value) VALUES ('rotation', '{orjson.dumps(marker).decode()}')")
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 0, err
    assert orjson.loads(out)[0]["rotation"] == {
        "archive": str(archive), "first_seq": 1, "last_seq": 10, "error": "database or disk is full", "fix": "free space there"
    }  # fmt: skip
    assert f"the rotation of seq 1..10 cannot write its archive {archive}: database or disk is full; free space there" in err


# -- 2: events a failed writer saved ------------------------------------------------------------


def _spill(path: Path) -> Path:
    """Seqs 11 and 12 taken out of the journal and saved as a failed writer saves them."""
    with JournalReader(path) as reader:
        lines = [line for line in _export_lines(reader) if orjson.loads(line)["seq"] >= 11]
    _sql(path, "DELETE FROM events WHERE seq >= 11")
    spill = path.with_name(f"{path.stem}.unwritten-11.jsonl")
    spill.write_bytes(b"".join(lines))
    return spill


def _export_lines(reader: JournalReader) -> list[bytes]:
    import io

    buf = io.BytesIO()
    reader.export_jsonl(buf)
    return buf.getvalue().splitlines(keepends=True)


def test_events_saved_by_a_failed_writer_are_named_and_exported(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, traces = journal
    spill = _spill(path)
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 1
    assert orjson.loads(out)[0]["unwritten"] == [
        {"path": str(spill), "events": 2, "first_seq": 11, "last_seq": 12, "error": None, "taken_back": True, "journal_end": 10, "torn_line": None}
    ]
    assert f"2 event(s) (seq 11..12) are not yet in the journal (in {spill})" in err
    dest = tmp_path / "out.jsonl"
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(dest))
    assert code == 0, err
    assert _exported(dest) == list(range(1, 13))
    assert f"included 2 event(s) (seq 11..12) not yet in the journal, from {spill}" in err
    for args in (["traces"], ["replay", traces[0].trace_id]):
        code, _, err = invoke(*args, "-j", str(path))
        assert code == 0 and f"a failed writer saved them in {spill}" in err, err


def test_events_saved_in_the_configured_data_dir_are_found_by_every_reader(
    journal: tuple[Path, list[WrittenTrace]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal on a disk of its own (`--journal`) filled up and the engine saved the rest in
    the data dir: `journal check` said ok and `export` left them out without a word, as the
    readers looked only beside the journal. Every reading command looks in the configured
    data dir too (here from HOTCOIN_PATHS__DATA_DIR; no writer recorded it in this journal)."""
    path, traces = journal
    data = tmp_path / "data"
    data.mkdir()
    beside = _spill(path)
    with JournalReader(path) as reader:
        journal_id = reader.meta("journal_id")
        assert journal_id is not None and reader.meta("spill_dir") is None
    spill = data / f"journal.{journal_id}.unwritten-11.jsonl"
    spill.write_bytes(b"".join(line.rstrip(b"}\n") + f',"journal_id":"{journal_id}"}}\n'.encode() for line in beside.read_bytes().splitlines(keepends=True)))
    beside.unlink()
    monkeypatch.setenv("HOTCOIN_PATHS__DATA_DIR", str(data))
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 1, err
    assert [(u["path"], u["first_seq"], u["last_seq"]) for u in orjson.loads(out)[0]["unwritten"]] == [(str(spill), 11, 12)]
    dest = tmp_path / "out.jsonl"
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(dest))
    assert code == 0, err
    assert _exported(dest) == list(range(1, 13))
    for args in (["traces"], ["replay", traces[0].trace_id]):
        code, _, err = invoke(*args, "-j", str(path))
        assert code == 0 and f"a failed writer saved them in {spill}" in err, err


def test_saved_events_the_next_start_refuses_are_not_said_to_come_back(journal: tuple[Path, list[WrittenTrace]]) -> None:
    """Saved events that do not continue the journal (seq 11 gone from both): the next start
    refuses them, so check must not say it takes them back."""
    import asyncio

    from engine.journal.writer import Journal

    path, _ = journal
    spill = _spill(path)
    spill.write_bytes(spill.read_bytes().splitlines(keepends=True)[1])  # seq 12 only
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 1
    assert [(u["taken_back"], u["journal_end"]) for u in orjson.loads(out)[0]["unwritten"]] == [(False, 10)]
    assert "takes them back" not in err
    assert "the engine's next start (`hotcoin run`) refuses them, as the saved events do not continue the journal (it ends at seq 10)" in err

    async def start() -> None:
        async with Journal.open(path):
            pass

    with pytest.raises(JournalError, match="do not continue it"):
        asyncio.run(start())


# -- 3: a damaged old archive -------------------------------------------------------------------


def test_a_damaged_old_archive_is_passed_over_unless_needed(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, traces = journal
    old = _archive(path, 1, 11)
    with old.open("r+b") as fh:
        fh.truncate(old.stat().st_size // 2)
    code, out, err = invoke("traces", "-j", str(path), "--json")
    assert code == 0, err
    assert {r["trace_id"] for r in orjson.loads(out)} == {t.trace_id for t in traces}  # the main file's traces table
    assert f"journal {old} is damaged" in err and "passed over it (journal-1-11.sqlite, seq 1..11)" in err
    assert f"sqlite3 {old} .dump > salvaged.sql" in err and "COMMIT;" in err
    code, _, err = invoke("replay", traces[1].trace_id, "-j", str(path))
    assert code == 0, err
    code, _, err = invoke("replay", traces[0].trace_id, "-j", str(path))  # its events are in the damaged archive
    assert code == 1 and "not searched: journal-1-11.sqlite, seq 1..11" in err
    dest = tmp_path / "out.jsonl"
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(dest))
    assert code == 1 and f"journal {old} is damaged" in err
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(dest), "--skip-damaged")
    assert code == 0, err
    assert _exported(dest) == [12] and f"left out the archive {old}" in err


def test_a_report_of_a_day_the_damaged_archive_may_hold_refuses(journal: tuple[Path, list[WrittenTrace]]) -> None:
    """Skipped in silence, a damaged archive's fills would be missing from the day's PnL."""
    from engine.errors import JournalDamagedError

    path, _ = journal
    old = _archive(path, 1, 11)
    with old.open("r+b") as fh:
        fh.truncate(old.stat().st_size // 2)
    with JournalReader(path, skip_damaged=True) as reader, pytest.raises(JournalDamagedError, match="may fall in the time asked for"):
        list(reader.events(since_ms=T0 - 1, until_ms=T0 + 86_400_000))
    with JournalReader(path, skip_damaged=True) as reader:  # a window after the archive's neighbours
        assert [e.seq for e in reader.events(since_ms=T0 + 3_600_000)] == []


# -- 4: events of a newer version ---------------------------------------------------------------


def test_events_of_a_newer_version_fail_check_and_are_marked_in_replay(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, traces = journal
    _sql(path, "UPDATE events SET v = 2 WHERE kind = 'fill'")
    code, out, err = invoke("journal", "check", "-j", str(path), "--json")
    assert code == 1
    assert (orjson.loads(out)[0]["unknown_events"], orjson.loads(out)[0]["unknown_seqs"]) == (2, [6, 10])
    assert "2 event(s) are of a version or kind this hotcoin does not know (seq 6, 10)" in err and "upgrade hotcoin" in err
    code, _, err = invoke("replay", traces[0].trace_id, "-j", str(path))
    assert code == 0 and "event seq 6: fill is version 2, this hotcoin knows version 1" in err


def test_recovery_refusing_a_newer_event_leaves_no_reader_open(
    journal: tuple[Path, list[WrittenTrace]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hotcoin run` printed "Exception ignored ... Cannot operate on a closed database" twice."""
    from engine.runtime.recovery import replay_journal

    path, _ = journal
    _sql(path, "UPDATE events SET v = 2 WHERE kind = 'fill'")
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(JournalError, match="version 2"):
        replay_journal(path, 1000.0)
    gc.collect()
    assert unraisable == []


# -- 5 and 6: where an export goes, and reading from a read-only folder -------------------------


def test_export_to_a_pipe_writes_into_it(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(fifo))
    reader.join(10)
    assert code == 0, err
    assert [orjson.loads(line)["seq"] for line in got[0].splitlines()] == list(range(1, 13))
    assert fifo.is_fifo()


def test_export_through_a_symlink_writes_its_target(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    (tmp_path / "target.txt").write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to("target.txt")
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(link))
    assert code == 2 and "already exists" in err  # the target holds something
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(link), "--force")
    assert code == 0, err
    assert link.is_symlink() and _exported(tmp_path / "target.txt") == list(range(1, 13))


def test_export_to_a_device_leaves_the_node(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))  # S_IFCHR: /dev/null
    except OSError as exc:
        pytest.skip(f"cannot make a device node here ({exc.strerror})")
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(null))
    assert code == 0, err
    assert null.is_char_device()


def test_export_to_an_ascii_stdout_writes_utf8(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, _ = journal
    _sql(path, """UPDATE events SET payload = json_set(payload, '$.note', 'café') WHERE seq = 12""")
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "HOME": str(path.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "hotcoin_tui.cli", "journal", "export", "-j", str(path)], capture_output=True, env=env, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert orjson.loads(done.stdout.splitlines()[-1])["payload"]["note"] == "café"


@pytest.fixture
def read_only_copy(journal: tuple[Path, list[WrittenTrace]]) -> Iterator[Path]:
    """The journal, closed cleanly (no -wal), in a folder only root can write."""
    path, _ = journal
    folder = Path(tempfile.mkdtemp(prefix="hotcoin-ro-"))
    shutil.copy(path, folder / "journal.sqlite")
    folder.chmod(0o755)
    (folder / "journal.sqlite").chmod(0o644)
    yield folder / "journal.sqlite"
    shutil.rmtree(folder)


def test_a_closed_journal_in_a_read_only_folder_is_read(read_only_copy: Path) -> None:
    """Run as a user who cannot write the folder (root can: then as `nobody`, through setpriv)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to read as another user")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = {**os.environ, "HOME": "/tmp"}
    importing = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import engine.journal.reader"
    can = subprocess.run([*prefix, sys.executable, "-c", importing], capture_output=True, text=True, env=env, check=False)
    if can.returncode != 0:  # a checkout or interpreter under a folder only root may enter (a 0700 home or temp dir)
        pytest.skip(f"`nobody` cannot load this checkout: {can.stderr.strip()[-200:]}")
    code = f"{importing}; r = engine.journal.reader.JournalReader({str(read_only_copy)!r}); print(len(list(r.events())))"
    done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "12"


def test_a_journal_in_a_folder_this_user_cannot_write_is_opened_immutable(
    journal: tuple[Path, list[WrittenTrace]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same choice in this process, where root's writes cannot be refused: told the folder is
    not writable, the reader opens the closed journal `immutable` and makes no -shm beside it
    (SQLite needs one for `mode=ro` on a WAL file, and could not create it there)."""
    path, _ = journal
    folder = Path(tempfile.mkdtemp(prefix="hotcoin-ro-"))
    try:
        copy = folder / "journal.sqlite"
        shutil.copy(path, copy)
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder.resolve() else real_access(p, mode))
        assert len(list(JournalReader(copy).events())) == 12
        assert not copy.with_name("journal.sqlite-shm").exists()
    finally:
        shutil.rmtree(folder)
