"""SQLite errors as SQLite raises them (with their result code), for the faults a test cannot
cause for real: a full disk, a failing disk, read-only media (root ignores file modes)."""

from __future__ import annotations

import sqlite3

CODES = {
    "SQLITE_ERROR": 1,
    "SQLITE_READONLY": 8,
    "SQLITE_IOERR": 10,
    "SQLITE_CORRUPT": 11,
    "SQLITE_FULL": 13,
    "SQLITE_CANTOPEN": 14,
    "SQLITE_NOTADB": 26,
    "SQLITE_READONLY_ROLLBACK": 776,
}

# What SQLite says for each, word for word.
MESSAGES = {
    "SQLITE_ERROR": "no such table: events",
    "SQLITE_READONLY": "attempt to write a readonly database",
    "SQLITE_IOERR": "disk I/O error",
    "SQLITE_CORRUPT": "database disk image is malformed",
    "SQLITE_FULL": "database or disk is full",
    "SQLITE_CANTOPEN": "unable to open database file",
    "SQLITE_NOTADB": "file is not a database",
    "SQLITE_READONLY_ROLLBACK": "attempt to write a readonly database",
}


def sqlite_error(name: str) -> sqlite3.Error:
    """The error SQLite raises for result code `name`, carrying its code and name as theirs do."""
    cls = sqlite3.DatabaseError if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") else sqlite3.OperationalError
    exc = cls(MESSAGES[name])
    exc.sqlite_errorcode = CODES[name]
    exc.sqlite_errorname = name
    return exc
