"""What an SQLite error on a journal file means for its owner, and what to do about it.

SQLite's own words ("database or disk is full", "disk I/O error", "unable to open database
file") say neither what is wrong with the owner's disk nor what to do, and the reader and the
writer used to follow every one of them with "is it a hotcoin journal?": on a full disk or on
read-only media that sent the owner looking for another journal. The hint follows SQLite's
result code (`sqlite3.Error.sqlite_errorcode`; its low byte is the primary code, the rest the
extended one) rather than its message, which SQLite may word differently from one version to
the next. Only a file that is not SQLite at all (NOTADB) or an SQLite file without the journal's
tables is asked whether it is a journal; a corrupt one (`is_corrupt`) is damaged, said by the
caller with `reader.damaged_file_message`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Codes meaning SQLite could not open or write the file or its -wal/-shm/-journal beside it.
_NO_WRITE = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH})
_LOCKED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def primary_code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code for the error (0 when the exception carries none)."""
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_corrupt(exc: sqlite3.Error) -> bool:
    """SQLite's SQLITE_CORRUPT (any extended code): an SQLite file whose pages do not hold
    together, e.g. cut short. A file that is not SQLite at all is SQLITE_NOTADB instead."""
    return primary_code(exc) == sqlite3.SQLITE_CORRUPT


def is_locked(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds the lock this
    one needs, past SQLite's busy_timeout. Nothing is wrong with the file: trying again once it
    lets go succeeds."""
    return primary_code(exc) in _LOCKED


def hint(exc: sqlite3.Error, path: Path, *, writing: bool) -> str:
    """The cause and the fix to put after SQLite's message about `path`, starting "; " (empty
    when SQLite's words are all there is to say). `writing`: the engine's writer met it, rather
    than a command that only reads."""
    code = primary_code(exc)
    folder = path.parent
    if code == sqlite3.SQLITE_FULL:
        return f"; the disk holding {folder} is full: free space there, or point --journal (journal.path, HOTCOIN_JOURNAL) at a disk with room"
    if code == sqlite3.SQLITE_IOERR:
        return (
            "; the disk failed to read or write it (a failing disk, or a network or removable drive that went away): "
            f"check the disk (`dmesg`), and copy {folder} somewhere safe before anything else"
        )
    if code in _NO_WRITE:
        if writing:
            return (
                f"; the file or {folder} is read-only to this user (read-only media, or files of another user): "
                "point --journal (journal.path, HOTCOIN_JOURNAL) at a folder this user can write, or fix the permissions"
            )
        return (
            f"; SQLite could not open it or make the files it needs beside it: this user must be able to read it, and to "
            f"write {folder} while a -wal is left there (the engine is running, or did not close the journal); on "
            "read-only media, copy the journal's folder somewhere writable and read the copy"
        )
    if code in _LOCKED:
        return "; another connection is writing it (the engine rotating its journal, an open sqlite3 shell): try again in a moment"
    if code == sqlite3.SQLITE_NOTADB or (code == sqlite3.SQLITE_ERROR and "no such table" in str(exc)):
        return "; is it a hotcoin journal?"
    return ""
