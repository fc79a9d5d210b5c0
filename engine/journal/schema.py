"""SQLite layout of a journal file (main or archive: the same tables in both).

`ddl(schema)` renders the same statements for an ATTACHed archive (`arc.events`, ...), so the
main file and its archives can never drift apart.

Why the trace indexes are keyed `(seq >> BUCKET_SHIFT, trace_id)` rather than `(trace_id)`:
trace ids are hashes, so a plain index on them takes every insert at a random leaf, and once
the index outgrows a commit each batch rewrites hundreds of scattered pages (measured: ~30k
events/s instead of >100k). Prefixing the seq bucket keeps all inserts inside the newest
bucket's small subtree. A lookup by id probes every bucket of the file
(`seq >> 14 IN (b0, ..., bn)`: one index seek each, ~300 for 5 M events), see `bucket_in`.
"""

from __future__ import annotations

from engine.errors import JournalError

# The layout's version, kept in `meta` as `schema_version`: written when a journal is created
# (or first opened by a writer that knows it); a journal of a newer version is refused, by the
# writer and the reader alike, rather than misread.
SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = "schema_version"

# WAL: readers (replay, TUI) never block the writer; synchronous=NORMAL under WAL loses at most
# the last commits on power loss and nothing on a process crash (SIGKILL), which is our case.
# auto_vacuum=INCREMENTAL (first: it only takes on a new, empty file) lets rotation hand the pages
# it emptied back to the file system (`rotation.reclaim`); without it the main file kept its peak
# size for good. A file made before it has none until a one-off VACUUM, see `rotation`.
PRAGMAS = (
    "PRAGMA auto_vacuum=INCREMENTAL",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA busy_timeout=5000",
)

# A journal a backtest made for itself (`Journal.open(scratch=True)`): a new file that one run
# writes and no one else needs while it does. Its rollback journal kept in memory and no syncs:
# the month's 160 MB went to disk once instead of twice (through the -wal, then checkpointed),
# half the writer's CPU. A crash mid-commit may leave that file damaged, which loses nothing but
# the run it was recording (run it again); a rollback still works, so a batch a lock held back
# is tried again as under WAL. The file is put back in WAL on close (`WAL`), as every journal is.
SCRATCH_PRAGMAS = ("PRAGMA journal_mode=MEMORY", "PRAGMA synchronous=OFF")
WAL = "PRAGMA journal_mode=WAL"

EVENT_COLUMNS = "seq, ts_ms, trace_id, cause, kind, symbol, payload, v"
TRACE_COLUMNS = "first_seq, trace_id, ts_ms, symbol, outcome"
BUCKET_SHIFT = 14  # 16,384 seqs per index bucket


def bucket_in(column: str, first_seq: int, last_seq: int) -> str:
    """SQL `(<column> >> 14) IN (...)` naming every bucket between two seqs (ints only: safe
    to inline), in the exact form the trace indexes are built on."""
    buckets = ", ".join(str(b) for b in range(first_seq >> BUCKET_SHIFT, (last_seq >> BUCKET_SHIFT) + 1))
    return f"{column} >> {BUCKET_SHIFT} IN ({buckets})"


def ddl(schema: str = "main") -> tuple[str, ...]:
    """CREATE statements for the journal tables in `schema` (main, or an attached archive)."""
    s = schema
    return (
        f"""CREATE TABLE IF NOT EXISTS {s}.events (
            seq      INTEGER PRIMARY KEY,
            ts_ms    INTEGER NOT NULL,
            trace_id TEXT,
            cause    INTEGER,
            kind     TEXT NOT NULL,
            symbol   TEXT,
            payload  TEXT NOT NULL,
            v        INTEGER NOT NULL
        )""",
        # One row per trace, keyed by the seq of its first event, so `hotcoin traces` lists newest
        # first without scanning millions of events. A trace that goes on after its row was
        # archived gets another row in the main file, and a journal written before the writer
        # looked a restarted trace up may hold several in one file; the reader merges them.
        f"""CREATE TABLE IF NOT EXISTS {s}.traces (
            first_seq INTEGER PRIMARY KEY,
            trace_id  TEXT NOT NULL,
            ts_ms     INTEGER NOT NULL,
            symbol    TEXT,
            outcome   TEXT NOT NULL DEFAULT 'open'
        )""",
        f"CREATE TABLE IF NOT EXISTS {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        *indexes(s),
    )


def indexes(schema: str = "main") -> tuple[str, ...]:
    """The secondary indexes; an archive gets them after its bulk copy (cheaper than during)."""
    s = schema
    return (
        f"CREATE INDEX IF NOT EXISTS {s}.events_trace ON events(seq >> {BUCKET_SHIFT}, trace_id) "
        "WHERE trace_id IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {s}.events_ts ON events(ts_ms)",
        f"CREATE INDEX IF NOT EXISTS {s}.traces_id ON traces(first_seq >> {BUCKET_SHIFT}, trace_id)",
    )


DDL = ddl()

# Two subqueries, not `SELECT MIN(x), MAX(x)`: that form defeats SQLite's min/max index shortcut
# and scans the whole table (62 ms on 300k events instead of microseconds).
MIN_MAX = "SELECT (SELECT MIN({column}) FROM {table}), (SELECT MAX({column}) FROM {table})"

INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

# A trace's outcome is the furthest it got, so the rows and batches that see parts of it merge
# by rank: a candidate refused (rejected), an entry order sent (ordered), that order finished
# with no fill (not_filled: rejected by the broker, expired, cancelled), a buy filled (entered).
# A close-all's own trace is none of these: close_all. An older journal has only open, rejected
# and entered, where entered meant an entry order was sent (and a close-all read rejected).
OUTCOME_RANK = {"open": 0, "rejected": 1, "ordered": 2, "not_filled": 3, "entered": 4, "close_all": 5}


def rank_sql(column: str) -> str:
    """SQL for an outcome column's rank in `OUTCOME_RANK` (unknown names rank as open)."""
    arms = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in OUTCOME_RANK.items())
    return f"(CASE {column} {arms} ELSE 0 END)"


# Merge a batch's view of a trace into its row: the higher-ranked outcome wins; the first
# symbol seen sticks, except on a close-all's row, which has none: it sells every coin held,
# and its later batches (one coin's fill, the next one's order) must not file it under one.
UPSERT_TRACE = f"""INSERT INTO traces ({TRACE_COLUMNS}) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (first_seq) DO UPDATE SET
        outcome = CASE
            WHEN {rank_sql("excluded.outcome")} > {rank_sql("traces.outcome")} THEN excluded.outcome
            ELSE traces.outcome END,
        symbol = CASE
            WHEN 'close_all' IN (traces.outcome, excluded.outcome) THEN NULL
            ELSE COALESCE(traces.symbol, excluded.symbol) END"""


def check_schema_version(found: str | None, path: object) -> None:
    """Refuse a journal written by a newer hotcoin (`found`: its `meta` value; None: older
    than the key, i.e. version 1)."""
    if found is not None and int(found) > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} was written by a newer hotcoin (journal schema {found}; this version knows "
            f"up to {SCHEMA_VERSION}); upgrade hotcoin to read or write it"
        )
