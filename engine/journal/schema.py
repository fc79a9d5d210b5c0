"""SQLite layout of a journal file (main or archive: the same table in both)."""

from __future__ import annotations

SCHEMA_VERSION = 1

# WAL: readers (replay, TUI) never block the writer; synchronous=NORMAL under WAL loses at most
# the last commits on power loss and nothing on a process crash (SIGKILL), which is our case.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA busy_timeout=5000",
)

DDL = (
    """CREATE TABLE IF NOT EXISTS events (
        seq      INTEGER PRIMARY KEY,
        ts_ms    INTEGER NOT NULL,
        trace_id TEXT,
        cause    INTEGER,
        kind     TEXT NOT NULL,
        symbol   TEXT,
        payload  TEXT NOT NULL,
        v        INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_trace ON events(trace_id) WHERE trace_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_ts ON events(ts_ms)",
    # One row per trace, so `hotcoin traces` lists newest first without scanning millions of events.
    """CREATE TABLE IF NOT EXISTS traces (
        trace_id  TEXT PRIMARY KEY,
        first_seq INTEGER NOT NULL,
        ts_ms     INTEGER NOT NULL,
        symbol    TEXT,
        outcome   TEXT NOT NULL DEFAULT 'open'
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS traces_seq ON traces(first_seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)
