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

A rotation's archive lives in its own folder (`<stem>.archive`, which may be a link to another
disk): `archive_fix` names that folder and its disk, not the journal's. Naming the journal's
folder sent the owner of a full archive disk to free space on a disk with 67 GB free.
"""

from __future__ import annotations

import errno
import sqlite3
from contextlib import suppress
from pathlib import Path

# Codes meaning SQLite could not open or write the file or its -wal/-shm/-journal beside it.
_NO_WRITE = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH})
_LOCKED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# The same causes, as the file system reports them when the archive file itself is made.
_OS_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_OS_NO_WRITE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


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



def archive_fix(exc: sqlite3.Error | OSError, archive: Path) -> str:
    """The cause and the fix for a rotation that could not write `archive` (SQLite's error, or
    the file system's when the archive file was made), named on the archive folder's disk, and
    that nothing is lost meanwhile: the events stay in the main file, and the rotation is tried
    again at each check and start."""
    folder: Path | str = archive.parent
    with suppress(OSError):
        if archive.parent.is_symlink():  # the disk to free is the one the link leads to
            folder = f"{archive.parent} (a link to {archive.parent.resolve()})"
    damaged = False
    if isinstance(exc, OSError):
        full, ioerr, no_write = exc.errno in _OS_FULL, exc.errno == errno.EIO, exc.errno in _OS_NO_WRITE
    else:
        code = primary_code(exc)
        full, ioerr, no_write = code == sqlite3.SQLITE_FULL, code == sqlite3.SQLITE_IOERR, code in _NO_WRITE
        damaged = code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    if damaged:  # a half-written archive may hold events already moved out of the main file: kept
        cause = f"the archive file {archive} is damaged: keep a copy of it, and see `hotcoin journal check`"
    elif full:
        cause = f"the disk holding the archive folder {folder} is full: free space there, or give the folder a disk with room"
    elif ioerr:
        cause = f"the disk holding the archive folder {folder} failed to write it: check that disk (`dmesg`)"
    elif no_write:
        cause = (
            f"the archive folder {folder} is read-only to this user (read-only media, or a folder of another user): "
            "make it writable"
        )
    else:
        cause = f"check the archive folder {folder} and its disk"
    kept = "The events it has not moved yet stay" if damaged else "No event is lost: they stay"
    return (
        f"{cause}. {kept} in the journal's main file (which grows past journal.rotate_max_bytes meanwhile), "
        "and the engine tries the rotation again at each check and start"
    )
