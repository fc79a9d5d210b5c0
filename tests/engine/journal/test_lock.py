"""The journal's writer lock: one engine per journal, readers never blocked, never stale."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.errors import JournalError, JournalInUseError
from engine.journal.lock import journal_lock, lock_path
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from tests.kit.events import entered_trace


def test_a_second_writer_is_refused_and_told_who_holds_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    refusal = rf"journal {journal} is in use by another engine \(pid {os.getpid()}\)"
    with journal_lock(journal), pytest.raises(JournalInUseError, match=refusal), journal_lock(journal):
        pass
    with journal_lock(journal):  # released when the holder stops
        pass


def test_a_lock_left_by_a_killed_process_does_not_block_a_restart(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    code = "import sys, os, signal; from pathlib import Path; from engine.journal.lock import journal_lock\n"
    code += "with journal_lock(Path(sys.argv[1])): os.kill(os.getpid(), signal.SIGKILL)"
    subprocess.run([sys.executable, "-c", code, str(journal)], check=False)
    assert lock_path(journal).exists()
    with journal_lock(journal):
        pass


async def test_readers_work_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    with journal_lock(journal):
        async with Journal.open(journal) as writer:
            trace_id = entered_trace(writer).trace_id
            await writer.flush()
            with JournalReader(journal) as reader:
                assert reader.trace(trace_id)


async def test_a_new_journal_and_its_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 022 the data dir came out 0755 and the journal, -wal and -shm 0644: every
    local user could read the positions, PnL and orders. A folder the user made keeps its mode."""
    old = os.umask(0o022)
    try:
        journal = tmp_path / "new" / "journal.sqlite"
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o1777)
        for path in (journal, shared / "j.sqlite"):
            with journal_lock(path):
                async with Journal.open(path) as writer:
                    entered_trace(writer)
                    await writer.flush()
                    made = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), lock_path(path)]
                    assert {f.name: oct(f.stat().st_mode & 0o777) for f in made} == {f.name: oct(0o600) for f in made}
    finally:
        os.umask(old)
    assert oct(journal.parent.stat().st_mode & 0o7777) == oct(0o700)
    assert oct(shared.stat().st_mode & 0o7777) == oct(0o1777)


@pytest.mark.parametrize(
    ("call", "code", "fix"),
    [
        ("open", errno.EROFS, "at a file in a folder this user can write"),
        ("open", errno.EACCES, "at a file in a folder this user can write"),
        ("write", errno.ENOSPC, "free space on that disk, or point --journal"),
        ("write", errno.EIO, "check that disk and folder"),
    ],
    ids=["read-only-media", "no-permission", "disk-full", "io-error"],
)
def test_a_lock_file_that_cannot_be_made_or_written_is_a_journal_error_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int, fix: str
) -> None:
    """Audit: on read-only media or a full disk `hotcoin run` died with a 40-line OSError
    traceback from the lock; it must be the one-line refusal the CLI prints for journal errors,
    naming the lock file, the reason and what to do. (Root ignores chmod, so the failure is faked.)"""
    journal = tmp_path / "journal.sqlite"
    lock = lock_path(journal)
    real = {"open": os.open, "write": os.write}

    def failing(target: Any, *args: Any) -> Any:
        ours = Path(target) == lock if call == "open" else os.fstat(target).st_ino == lock.stat().st_ino
        if ours:
            raise OSError(code, os.strerror(code))
        return real[call](target, *args)

    monkeypatch.setattr(os, call, failing)
    with pytest.raises(JournalError, match=rf"cannot take the journal's writer lock {lock}: {os.strerror(code)}; .*{fix}"), journal_lock(journal):
        pass


def test_a_symlink_to_a_held_journal_is_refused_like_the_journal_itself(tmp_path: Path) -> None:
    """Audit: engine B on a symlink to engine A's live journal took `link.sqlite.lock`, free,
    recovered A's journal and traded; A died with "UNIQUE constraint failed: events.seq". The
    lock is the file's, whatever path names it: a link, a `..` detour, either way round."""
    journal = tmp_path / "a" / "journal.sqlite"
    journal.parent.mkdir()
    journal.touch()
    (tmp_path / "b").mkdir()
    link = tmp_path / "b" / "link.sqlite"
    link.symlink_to(journal)
    detour = tmp_path / "b" / ".." / "a" / "journal.sqlite"
    assert lock_path(link) == lock_path(detour) == lock_path(journal) == journal.with_name("journal.sqlite.lock")
    for first, second in ((journal, link), (link, journal), (journal, detour)):
        named = f"journal {second}" if second == journal else f"journal {second} (the file {journal})"
        refusal = rf"{re.escape(named)} is in use by another engine \(pid {os.getpid()}\)"
        with journal_lock(first), pytest.raises(JournalInUseError, match=refusal), journal_lock(second):
            pass
    assert not (tmp_path / "b" / "link.sqlite.lock").exists()


async def test_a_journal_opened_through_a_symlink_is_the_file_it_names(tmp_path: Path) -> None:
    """Its archives, spill files and readers are the file's, not the link's: a second writer on
    the link would otherwise name its spill files and archives after `link`."""
    journal = tmp_path / "a" / "journal.sqlite"
    link = tmp_path / "link.sqlite"
    async with Journal.open(journal) as writer:
        trace_id = entered_trace(writer).trace_id
    link.symlink_to(journal)
    async with Journal.open(link) as writer:
        assert writer.path == journal
        assert writer.spill_dirs == [journal.parent]
    with JournalReader(link) as reader:
        assert reader.path == journal and reader.trace(trace_id)
