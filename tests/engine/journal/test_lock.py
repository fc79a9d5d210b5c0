"""The journal's writer lock: one engine per journal, readers never blocked, never stale."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import JournalInUseError
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
