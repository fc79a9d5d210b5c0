"""Read a journal (main file and every archive) without ever writing to it.

Synchronous, read-only sqlite3 connections (`file:...?mode=ro`): `replay` and `traces` are short
command-line programs, and a reader must never take a write lock from the running engine (WAL
lets it read while the writer appends). Archives are opened lazily, newest first, since most
questions are about recent traces. The one write a reader may cause is SQLite's own crash
recovery of an archive a rotation was writing when the engine was killed (`_roll_back`):
without it no read-only connection can read that archive until the engine runs again.

Lookups go through indexes only: a trace's events by `events_trace` (one seek per seq bucket,
see `schema`), a prefix by a range on the same index (`trace_id >= p AND trace_id < p ||
U+10FFFF`), listings by the `traces` rowid (first_seq). Events duplicated by an interrupted
rotation (see `rotation`) are returned once. The archives are listed again at each read, and a
read in seq order checks that the main file continues where the archives ended: a reader open
across the engine's rotation reads the moved events from their new archive instead of losing them.

Damage is named, never a traceback: an event's text columns are read as bytes and decoded
here, so a row that no longer decodes (or whose payload is not a JSON object, or lacks a field
its kind requires: `events.check_stored`) raises `JournalDamagedError` with its file and seq,
and a file SQLite finds corrupt says so rather than "is it a hotcoin journal?". `check` decodes
every event to list the damaged ones.
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import orjson

from engine.errors import (
    EventValidationError,
    JournalDamagedError,
    JournalError,
    TraceNotFoundError,
)
from engine.journal.events import JournalEvent, check_stored, unknown_version
from engine.journal.files import (
    DELETED_KEY,
    IDENTITY_KEY,
    ROTATION_KEY,
    SPILL_DIR_KEY,
    SPILL_ID_FIELD,
    Archive,
    PendingRotation,
    deleted_spans,
    find_spills,
    is_blank,
    list_archives,
    pending_rotation,
    read_spill,
)
from engine.journal.schema import (
    BUCKET_SHIFT,
    MIN_MAX,
    OUTCOME_RANK,
    SCHEMA_VERSION_KEY,
    TRACE_COLUMNS,
    bucket_in,
    check_schema_version,
    rank_sql,
)
from engine.journal.sqlite_errors import hint, is_corrupt

Outcome = Literal["all", "entered", "rejected", "open", "ordered", "not_filled", "close_all"]
RawRow = tuple[int, int, str | None, int | None, str, str | None, str | bytes, int]

FULL_ID_LEN = 16  # `make_trace_id` length
_TOP = "\U0010ffff"  # sorts after every character a trace id can hold
_TRACE_PAGE = 500  # `traces` reads the index in pages of this many rows, newest first
# `EVENT_COLUMNS` with the text read as bytes: sqlite3 would fail a row that is not UTF-8 with
# "Could not decode to UTF-8 column", naming no seq; `_decoded` names it.
_RAW_COLUMNS = "seq, ts_ms, CAST(trace_id AS BLOB), cause, CAST(kind AS BLOB), CAST(symbol AS BLOB), CAST(payload AS BLOB), v"
# Traces per outcome in one file, each trace once with the furthest outcome its rows reached:
# a journal may hold two rows of one trace (see `schema.ddl`). SQLite's bare column beside MAX()
# comes from the row holding the maximum.
_OUTCOME_COUNTS = (
    f"SELECT CAST(outcome AS BLOB), COUNT(*) FROM (SELECT outcome, MAX({rank_sql('outcome')}) "
    "FROM traces GROUP BY trace_id) GROUP BY outcome"
)
_CLOSE_ALLS = "SELECT trace_id FROM traces WHERE outcome = 'close_all' AND first_seq > ?"
_SALVAGE = "`hotcoin journal check` lists the damaged events, `hotcoin journal export --skip-damaged` saves the others"
LISTED_DAMAGED = 10  # damaged seqs `check` lists per file (all are counted)
# Each file's runs of missing seqs: the pairs of neighbouring events whose seqs are not consecutive.
_EDGES = (
    "SELECT MIN(seq), (SELECT ts_ms FROM events ORDER BY seq LIMIT 1), MAX(seq), "
    "(SELECT ts_ms FROM events ORDER BY seq DESC LIMIT 1) FROM events"
)
_HOLES = (
    "SELECT seq, ts_ms, next_seq, next_ts FROM (SELECT seq, ts_ms, LEAD(seq) OVER (ORDER BY seq) AS next_seq, "
    "LEAD(ts_ms) OVER (ORDER BY seq) AS next_ts FROM events) WHERE next_seq > seq + 1"
)


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs `first`..`last` that no file of the journal holds: seqs come from one counter and
    are never skipped, so they are lost events (rows deleted, an archive gone). `before_ts` and
    `after_ts`: the times of the events either side (None where none is known)."""

    first: int
    last: int
    before_ts: int | None
    after_ts: int | None

    def overlaps(self, since_ms: int | None, until_ms: int | None) -> bool:
        """Whether the missing events may fall in the window (their neighbours bound their time)."""
        return (until_ms is None or self.before_ts is None or self.before_ts < until_ms) and (
            since_ms is None or self.after_ts is None or self.after_ts >= since_ms
        )

    def __str__(self) -> str:
        return f"seq {self.first}" if self.first == self.last else f"seq {self.first}..{self.last}"


@dataclass(frozen=True, slots=True)
class Unwritten:
    """Events a failed writer saved to a spill file (`<stem>.unwritten-<seq>.jsonl`, see
    `writer`) and no journal file holds yet: the owner's record until the engine's next start
    takes them back into the journal. It takes them back only when the saved events, all files
    together, continue the journal where it ends (`journal_end`) without a gap; else it refuses
    to start (`taken_back` False), and saying it would take them back sent the owner to a start
    that failed."""

    path: Path
    rows: tuple[RawRow, ...]
    journal_end: int = 0  # the highest seq the journal's files hold, or a rotation moved
    taken_back: bool = True
    torn_line: int | None = None  # a last line a write cut short, left out (`files.SpillFile`)

    @property
    def first(self) -> int:
        return self.rows[0][0]

    @property
    def last(self) -> int:
        return self.rows[-1][0]

    def describe(self) -> str:
        return (
            f"{len(self.rows)} event(s) (seq {self.first}..{self.last}) are not yet in the journal: a failed writer "
            f"saved them in {self.path}; {self.next_start()}"
        )

    def next_start(self) -> str:
        """What the engine's next start does with them, as the end of a sentence."""
        return next_start(self.taken_back, self.journal_end)


def next_start(taken_back: bool, journal_end: int) -> str:
    """What the engine's next start does with saved events (`Unwritten`), as the end of a sentence."""
    if taken_back:
        return "the engine's next start (`hotcoin run`) takes them back"
    return (
        f"the engine's next start (`hotcoin run`) refuses them, as the saved events do not continue the journal "
        f"(it ends at seq {journal_end}): check positions on the exchange, then move the file aside to start"
    )


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One line of `hotcoin traces`."""

    trace_id: str
    first_seq: int
    ts_ms: int
    symbol: str | None
    outcome: str


class JournalReader:
    """Read-only view of a journal and its archives. Use as a context manager."""

    def __init__(self, path: Path | str, *, skip_damaged: bool = False, spill_dirs: Sequence[Path] = ()) -> None:
        """`skip_damaged`: pass over an archive SQLite cannot read (at open or midway) instead
        of raising, naming it in `notes` (`skipped`), so one damaged old archive does not take
        down every question about the rest; a read that needs that archive's events (`events`
        over a time its events may fall in) still raises. Restart recovery keeps the default:
        it may not build on part of the history. `spill_dirs`: folders besides the journal's own
        where a failed writer may have saved its unwritten events (the engine's data dir); the
        one its writer was last given (`files.SPILL_DIR_KEY`) is searched too.

        The journal is the file `path` names, symlinks followed (as the writer does): its
        archives and spill files are named after that file, not after the link."""
        given = Path(path)
        self.skip_damaged = skip_damaged
        self.skipped: dict[Path, str] = {}  # archive -> why it was passed over (`skip_damaged`)
        if given.is_dir():
            raise JournalError(f"{given} is a directory; point --journal at the journal's SQLite file in it")
        if not given.is_file():
            raise JournalError(f"no journal at {given}")
        self.path = given.expanduser().resolve()
        if is_blank(self.path):
            raise JournalError(
                f"journal {self.path}: the journal file is empty (no events yet); the engine writes its first "
                "events when it runs (`hotcoin run`)"
            )
        self.archives = list_archives(self.path)
        self._main = _connect_ro(self.path)
        try:
            check_schema_version(_schema_version(self._main), self.path)
        except JournalError:
            self._main.close()
            raise
        recorded = self.meta(SPILL_DIR_KEY)
        folders = [self.path.parent, *(Path(d).expanduser().resolve() for d in spill_dirs)]
        self.spill_dirs = list(dict.fromkeys([*folders, *([Path(recorded)] if recorded else [])]))
        self._archive_conns: dict[Path, sqlite3.Connection | None] = {}
        self._unwritten: list[Unwritten] | None = None
        self._spill_notes: list[str] = []

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._main.close()
        for conn in self._archive_conns.values():
            if conn is not None:
                conn.close()
        self._archive_conns.clear()

    # -- traces -------------------------------------------------------------------------------

    def resolve(self, ident: str) -> str:
        """The one trace id that is `ident` or starts with it; else `TraceNotFoundError`.

        Ids are lowercase hex (`make_trace_id`): one copied in capitals, from a spreadsheet or
        a chat, is the same id."""
        ident = ident.strip().lower()
        if not ident:
            raise TraceNotFoundError("empty trace id; `hotcoin traces` lists recent ones")
        found: set[str] = set()
        for path, conn in self._named_files():
            buckets = _event_buckets(conn)
            if buckets is None:
                continue
            sql = f"SELECT DISTINCT trace_id FROM events WHERE {buckets} AND trace_id >= ? AND trace_id < ? LIMIT 11"
            found.update(r[0] for r in self._read(path, conn, sql, (ident, ident + _TOP)))
            if ident in found:
                return ident
        if len(found) == 1:
            return found.pop()
        if found:
            shown = sorted(found)[:10]
            more = "" if len(found) <= 10 else " (and more)"
            raise TraceNotFoundError(
                f"trace id prefix {ident!r} is ambiguous: it matches {', '.join(shown)}{more}; "
                "give more characters",
                nearest=shown,
            )
        nearest = self.nearest(ident)
        hint = f"; nearest: {', '.join(nearest)}" if nearest else "; the journal has no traces yet"
        raise TraceNotFoundError(
            f"no trace {ident!r} in {self.path} or its {len(self.archives)} archive(s){hint}{self._not_searched()}", nearest
        )

    def _not_searched(self) -> str:
        """For a trace not found: the archives passed over as damaged, which may hold it."""
        if not self.skipped:
            return ""
        return "; not searched: " + "; ".join(f"{_archive_span(p)} ({why})" for p, why in self.skipped.items())

    def nearest(self, ident: str, n: int = 5) -> list[str]:
        """Ids next to `ident` in sort order, those sharing the longest prefix first."""
        pool: set[str] = set()
        for path, conn in self._named_files():
            for bucket in _buckets(conn, "events", "seq"):
                for sql in (
                    "SELECT trace_id FROM events WHERE seq >> ? = ? AND trace_id < ? ORDER BY trace_id DESC LIMIT ?",
                    "SELECT trace_id FROM events WHERE seq >> ? = ? AND trace_id >= ? ORDER BY trace_id LIMIT ?",
                ):
                    pool.update(r[0] for r in self._read(path, conn, sql, (BUCKET_SHIFT, bucket, ident, n)))
        ranked = sorted(pool, key=lambda t: (-_common_prefix(t, ident), t))
        return ranked[:n]

    def trace(self, ident: str) -> list[JournalEvent]:
        """Every event of the trace `ident` (a full id or a unique prefix), in seq order."""
        ident = ident.strip()
        # A full-length id is looked up directly (one pass over the index); a prefix, or an id
        # not found that way, goes through `resolve` for its one match or a clear error.
        trace_id = ident
        rows = self._trace_rows(ident) if len(ident) >= FULL_ID_LEN else {}
        if not rows:
            trace_id = self.resolve(ident)
            rows = self._trace_rows(trace_id)
        rows.update(self._position_rows(trace_id, [_event(*_decoded(*r)) for r in rows.values()]))
        return [_event(*_decoded(*rows[seq])) for seq in sorted(rows)]

    def _position_rows(self, trace_id: str, own: list[JournalEvent]) -> dict[int, tuple[Path, tuple[Any, ...]]]:
        """What happened to this trace's position under another trace (a close-all sells every
        position in its own trace): each `position_update` whose payload names this trace as
        `position_trace_id`, with the fills that caused it and their orders' attempt and
        results. Empty unless the trace opened a position it does not close itself.

        Only a close-all sells under another trace, and the traces table marks its traces
        (`close_all`): their events are read through the trace index, so a replay costs the
        close-alls since the opening, not a scan of the journal from there (a position still
        open, replayed from the console, would read every later event). A journal written
        before close-all traces had their outcome shows no such exits."""
        opened = next((e.seq for e in own if e.kind == "position_update" and e.payload["action"] == "open"), None)
        if opened is None or any(e.kind == "position_update" and e.payload["action"] == "close" for e in own):
            return {}
        rows: dict[int, tuple[Path, tuple[Any, ...]]] = {}
        closers = sorted({t for path, conn in self._named_files() for (t,) in self._read(path, conn, _CLOSE_ALLS, (opened,))})
        for other in closers:
            found = self._trace_rows(other)
            theirs = {seq: _decoded(*r) for seq, r in sorted(found.items())}
            updates = [
                (seq, raw[3]) for seq, (raw, payload) in theirs.items()
                if seq > opened and raw[4] == "position_update" and payload.get("position_trace_id") == trace_id
            ]  # fmt: skip
            cids = {theirs[c][1]["client_order_id"] for _, c in updates if c in theirs and theirs[c][0][4] == "fill"}
            rows.update((seq, found[seq]) for seq, _ in updates)
            rows.update(
                (seq, found[seq]) for seq, (raw, payload) in theirs.items()
                if raw[4] in {"order_attempt", "order_result", "order_anomaly", "fill"} and payload.get("client_order_id") in cids
            )  # fmt: skip
        return rows

    def _trace_rows(self, trace_id: str) -> dict[int, tuple[Path, tuple[Any, ...]]]:
        rows: dict[int, tuple[Path, tuple[Any, ...]]] = {}
        for path, conn in self._named_files():
            buckets = _event_buckets(conn)
            if buckets is not None:
                sql = f"SELECT {_RAW_COLUMNS} FROM events WHERE {buckets} AND trace_id = ?"
                for row in self._read(path, conn, sql, (trace_id,)):
                    rows.setdefault(row[0], (path, row))
        return rows

    def traces(
        self,
        *,
        symbol: str | None = None,
        outcome: Outcome = "all",
        since_ms: int | None = None,
        limit: int = 50,
    ) -> list[TraceRow]:
        """Traces, newest first: by the seq of their first event, the journal's order (one
        engine's runs journal in time order; a warm-up, which replays past minutes, journals
        nothing). A trace split over several rows (rotation, a restart) is
        merged into one first, then filtered and limited: its time and first seq are those of
        its start, its outcome the furthest any part reached. `symbol` is taken as a trader
        types it (`symbol_filter`): DOGE/USDT, doge, DOGEUSDT, doge-usdt. A close-all has no
        symbol (it sells every coin held); it is listed under each coin its events name, one
        look-up of its events each (close-alls are rare).

        The filters also go into SQL, where they only narrow which rows are read: every trace
        that passes has a row that does (its rows share its symbol, or its outcome is close_all;
        none is older than its start, and its outcome is one of its rows'). Rows are read
        newest first until the `limit`-th trace found starts above every row not read yet."""
        if limit <= 0:
            return []
        where: list[str] = ["1"]
        params: list[object] = []
        matches: tuple[str, tuple[str, ...]] | None = None
        if symbol is not None:
            clause, args = symbol_filter(symbol)
            where.append(f"({clause} OR outcome = 'close_all')")
            params.extend(args)
            matches = clause, args
        if outcome != "all":
            where.append("outcome = ?")
            params.append(outcome)
        if since_ms is not None:
            where.append("ts_ms >= ?")
            params.append(since_ms)
        sql = (
            f"SELECT {TRACE_COLUMNS} FROM traces WHERE {' AND '.join(where)} AND first_seq < ? "
            "ORDER BY first_seq DESC LIMIT ?"
        )

        named: dict[str, bool] = {}  # close-all -> whether its events name the symbol (asked once)

        def wanted(row: TraceRow) -> bool:
            if matches is not None and row.outcome == "close_all" and row.trace_id not in named:
                named[row.trace_id] = self._names(row.trace_id, *matches)
            return (
                (outcome == "all" or row.outcome == outcome)
                and (since_ms is None or row.ts_ms >= since_ms)
                and named.get(row.trace_id, True)
            )

        merged: dict[str, TraceRow] = {}
        below = 1 << 62  # rows not read yet start below this seq
        for path, conn in self._named_files():  # main, then archives newest first: seqs going down
            while page := [_trace_row(r) for r in self._read(path, conn, sql, (*params, below, _TRACE_PAGE))]:
                below = page[-1].first_seq
                fresh = list({r.trace_id: r for r in page if r.trace_id not in merged}.values())
                merged.update((r.trace_id, r) for r in self._merged(fresh))
                found = sorted((r for r in merged.values() if wanted(r)), key=lambda r: r.first_seq, reverse=True)
                # A trace not met yet has every row below `below`, so it starts below it too.
                if len(found) >= limit and found[limit - 1].first_seq >= below:
                    return found[:limit]
        found = sorted((r for r in merged.values() if wanted(r)), key=lambda r: r.first_seq, reverse=True)
        return found[:limit]

    def _merged(self, rows: list[TraceRow]) -> list[TraceRow]:
        """Join the rows one trace has in several places (its start was archived and it went
        on, or the writer restarted mid-trace): earliest start, strongest outcome."""
        if not rows:
            return []
        parts: dict[str, list[TraceRow]] = {r.trace_id: [] for r in rows}
        marks = ", ".join("?" * len(parts))
        for path, conn in self._named_files():
            buckets = _trace_buckets(conn)
            if buckets is None:
                continue
            sql = f"SELECT {TRACE_COLUMNS} FROM traces WHERE {buckets} AND trace_id IN ({marks})"
            for found in self._read(path, conn, sql, list(parts)):
                parts[found[1]].append(_trace_row(found))
        merged = []
        for row in rows:
            group = sorted(parts[row.trace_id] or [row], key=lambda r: r.first_seq)
            best = max((p.outcome for p in group), key=lambda o: OUTCOME_RANK.get(o, 0))
            # A close-all sells every coin held: an older writer filed its row under the first.
            symbol = None if best == "close_all" else next((p.symbol for p in group if p.symbol), None)
            merged.append(TraceRow(row.trace_id, group[0].first_seq, group[0].ts_ms, symbol, best))
        return merged

    def _names(self, trace_id: str, clause: str, args: tuple[str, ...]) -> bool:
        """Whether an event of `trace_id` is about a symbol `clause` (`symbol_filter`) matches:
        a close-all that sold the coin, or tried to."""
        for path, conn in self._named_files():
            buckets = _event_buckets(conn)
            if buckets is None:
                continue
            sql = f"SELECT 1 FROM events WHERE {buckets} AND trace_id = ? AND {clause} LIMIT 1"
            if next(self._read(path, conn, sql, (trace_id, *args)), None) is not None:
                return True
        return False

    # -- events and export --------------------------------------------------------------------

    def events(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        kinds: Sequence[str] | None = None,
        after_seq: int = 0,
    ) -> Generator[JournalEvent]:
        """Events in seq order over archives then the main file; `until_ms` is exclusive;
        `after_seq` skips the seqs up to it (and the archives that hold nothing later)."""
        for path, row in self._rows(since_ms, until_ms, kinds, after_seq):
            yield _event(*_decoded(path, row))

    def newest_first(self, kind: str) -> Iterator[tuple[int, JournalEvent | JournalDamagedError]]:
        """(seq, event) of every `kind` event, newest first over the main file then the archives;
        an event whose row cannot be decoded comes as its error, so the caller can pass over it
        (a damaged checkpoint must not hide the older ones)."""
        sql = f"SELECT {_RAW_COLUMNS} FROM events WHERE kind = ? ORDER BY seq DESC"
        below: int | None = None
        for path, conn in self._named_files():
            for row in self._read(path, conn, sql, (kind,)):
                if below is not None and row[0] >= below:  # an interrupted rotation's duplicate
                    continue
                below = row[0]
                try:
                    yield row[0], _event(*_decoded(path, row))
                except JournalDamagedError as exc:
                    yield row[0], exc

    def meta(self, key: str) -> str | None:
        """The main file's `meta` value for `key` (None when unset)."""
        row = self._main.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def pending_rotation(self) -> PendingRotation | None:
        """The rotation that has not finished, if any: under way, interrupted by a crash, or
        unable to write its archive (`error`), see `files.PendingRotation`."""
        return pending_rotation(self.path, self.meta(ROTATION_KEY))

    def deleted(self) -> list[tuple[int, int]]:
        """The seq ranges of the archives retention deleted, as the writer recorded them
        (`rotation.note_deleted`): deleted on purpose, not lost."""
        return deleted_spans(self.meta(DELETED_KEY))

    def last_event(self, *, until_ms: int, kinds: Sequence[str]) -> JournalEvent | None:
        """The last event (by seq) of one of `kinds` before `until_ms`, however long ago: a walk
        down the primary key, newest file first, that stops at the first match. (`+ts_ms` keeps
        SQLite off the `events_ts` index, which would visit every earlier event, then sort.)"""
        marks = ", ".join("?" * len(kinds))
        sql = f"SELECT {_RAW_COLUMNS} FROM events WHERE +ts_ms < ? AND kind IN ({marks}) ORDER BY seq DESC LIMIT 1"
        for path, conn in self._named_files():
            for row in self._read(path, conn, sql, (until_ms, *kinds)):
                return _event(*_decoded(path, row))
        return None

    def last_by_symbol(self, *, until_ms: int, kind: str) -> dict[str, JournalEvent]:
        """Per symbol, its last event (by seq) of `kind` before `until_ms`, however long ago
        (e.g. the positions held at a time: each symbol's last `position_update`). One pass over
        each file's rows with only the winners' payloads decoded; a newer file's event wins."""
        sql = (
            f"SELECT {_RAW_COLUMNS} FROM events WHERE seq IN "
            "(SELECT MAX(seq) FROM events WHERE kind = ? AND +ts_ms < ? AND symbol IS NOT NULL GROUP BY symbol)"
        )
        found: dict[str, JournalEvent] = {}
        for path, conn in self._named_files():
            for row in self._read(path, conn, sql, (kind, until_ms)):
                ev = _event(*_decoded(path, row))
                if ev.symbol is not None:
                    found.setdefault(ev.symbol, ev)
        return found

    def first_event(self, *, since_ms: int, kinds: Sequence[str]) -> JournalEvent | None:
        """The first event (by time) of one of `kinds` at or after `since_ms`: a walk up the
        `events_ts` index, oldest file first, that stops at the first match."""
        marks = ", ".join("?" * len(kinds))
        sql = f"SELECT {_RAW_COLUMNS} FROM events WHERE ts_ms >= ? AND kind IN ({marks}) ORDER BY ts_ms, seq LIMIT 1"
        for path, conn in (*self._archives_oldest_first(), (self.path, self._main)):
            for row in self._read(path, conn, sql, (since_ms, *kinds)):
                return _event(*_decoded(path, row))
        return None

    def headers_before(self, seq: int) -> Iterator[tuple[int, int, str]]:
        """(seq, ts_ms, kind) of the events before `seq`, newest first, over the main file then
        the archives. Payloads are neither read out nor decoded: walking back is cheap."""
        below = seq
        for path, conn in self._named_files():
            for found, ts, kind in self._read(path, conn, "SELECT seq, ts_ms, CAST(kind AS BLOB) FROM events WHERE seq < ? ORDER BY seq DESC", (below,)):
                below = found  # an archive's copy of a row already seen (interrupted rotation) is skipped
                yield found, ts, kind.decode(errors="replace")

    def export_jsonl(
        self,
        dest: Path | str | IO[bytes] | IO[str],
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        skipped: list[int] | None = None,
    ) -> int:
        """Write events as JSON lines (payload inlined as an object) in seq order, ending with
        the events a failed writer saved that no journal file holds yet (`unwritten`: the
        owner's record too); returns the count. A damaged event raises `JournalDamagedError`,
        unless `skipped` is given: then it is left out and its seq appended there, so what can
        be read is saved and what cannot is named. With `skip_damaged` an archive SQLite cannot
        read is passed over whole (`skipped` on the reader names it)."""
        if isinstance(dest, str | Path):
            with Path(dest).open("wb") as fh:
                return self._export(fh, since_ms, until_ms, skipped)
        return self._export(dest, since_ms, until_ms, skipped)

    def _export(self, fh: IO[bytes] | IO[str], since_ms: int | None, until_ms: int | None, skipped: list[int] | None) -> int:
        text = isinstance(fh, io.TextIOBase)
        count = 0
        last = 0
        saved = [(u.path, raw) for u in self.unwritten() for raw in u.rows]
        for path, raw in (*self._rows(since_ms, until_ms, None, skip_needed=skipped is not None), *saved):
            if raw[0] <= last or not _in_window(raw[1], since_ms, until_ms):  # a saved event the journal holds already
                continue
            last = raw[0]
            try:
                row, _ = _decoded(path, raw)
            except JournalDamagedError:
                if skipped is None:
                    raise
                skipped.append(raw[0])
                continue
            line = json_line(row)
            fh.write(line.decode() if text else line)  # type: ignore[arg-type]
            count += 1
        return count

    def _rows(
        self,
        since_ms: int | None,
        until_ms: int | None,
        kinds: Sequence[str] | None,
        after_seq: int = 0,
        *,
        skip_needed: bool = False,
    ) -> Iterator[tuple[Path, tuple[Any, ...]]]:
        where: list[str] = ["seq > ?"]
        params: list[object] = [after_seq]
        if since_ms is not None:
            where.append("ts_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            where.append("ts_ms < ?")
            params.append(until_ms)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        sql = f"SELECT {_RAW_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        last = after_seq
        for path, conn in self._archives_oldest_first(after=after_seq):
            for row in self._read(path, conn, sql, params):
                if row[0] > last:  # a rotation interrupted between copy and delete duplicates rows
                    last = row[0]
                    yield path, row
        if not skip_needed:
            self._refuse_needed(after_seq, since_ms, until_ms)
        # The main file last, in one read transaction: its snapshot cannot move while it is read.
        # Events it no longer holds below its first seq were moved by a rotation since the
        # archives were listed (their copy is committed before their delete): read them from
        # the archives listed now, or an export running across a rotation silently lost them.
        main = self._main
        began = not main.in_transaction
        if began:
            main.execute("BEGIN")
        try:
            (first,) = main.execute("SELECT MIN(seq) FROM events").fetchone()
            if first is None or first > last + 1:
                for path, conn in self._archives_oldest_first(after=last):
                    for row in self._read(path, conn, sql, params):
                        if last < row[0] and (first is None or row[0] < first):
                            last = row[0]
                            yield path, row
            for row in _scan(self.path, main, sql, params):
                if row[0] > last:
                    last = row[0]
                    yield self.path, row
        finally:
            # A caller that stops early leaves this generator to be closed later, perhaps after
            # the reader (`hotcoin run` refusing a newer event): the rollback then has nothing to end.
            if began and _open(main):
                main.rollback()

    def _refuse_needed(self, after_seq: int, since_ms: int | None, until_ms: int | None) -> None:
        """Raise for an archive passed over as damaged (`skip_damaged`) whose events a read in
        seq order may need: it holds seqs above `after_seq`, and its neighbours' times do not
        put it outside the window. Events missing from the middle of what a caller adds up
        (a report, recovery) would make its numbers wrong without a word."""
        for archive in list_archives(self.path):
            why = self.skipped.get(archive.path)
            if why is None or archive.last_seq <= after_seq or not self._may_hold(archive, since_ms, until_ms):
                continue
            raise JournalDamagedError(
                f"{damaged_file_message(archive.path, why)}; it holds seq {archive.first_seq}..{archive.last_seq}, "
                "which may fall in the time asked for",
                reason=why,
            )

    def _may_hold(self, archive: Archive, since_ms: int | None, until_ms: int | None) -> bool:
        """Whether events of `archive` (unreadable) may fall in the window: the last event
        before it and the first after it bound their times."""
        if since_ms is None and until_ms is None:
            return True
        files = [*(a.path for a in list_archives(self.path)), self.path]
        at = files.index(archive.path)
        before = next((ts for p in reversed(files[:at]) if (ts := self._edge_ts(p, "MAX")) is not None), None)
        after = next((ts for p in files[at + 1 :] if (ts := self._edge_ts(p, "MIN")) is not None), None)
        return Gap(archive.first_seq, archive.last_seq, before, after).overlaps(since_ms, until_ms)

    def _edge_ts(self, path: Path, edge: Literal["MIN", "MAX"]) -> int | None:
        conn = self._main if path == self.path else self._archive(path)
        if conn is None:
            return None
        found = next(self._read(path, conn, f"SELECT {edge}(ts_ms) FROM events", ()), (None,))[0]
        return None if found is None else int(found)

    def missing(self) -> list[Gap]:
        """The runs of seqs no file holds (rows deleted, an archive gone), oldest first. Seqs come
        from one counter and are never skipped, so each run is lost events. Below `pruned_through`
        and in the ranges of the archives retention deleted (`deleted`: on purpose, with or
        without a checkpoint) nothing is missing; an archive SQLite
        cannot read counts as holding the seqs its name gives (it is reported as damaged), and so
        do the events a failed writer saved (`unwritten`). One pass over each file's seqs."""
        pieces: list[tuple[int, int | None, int, int | None]] = []  # first seq, its time, last seq, its time
        self.archives = list_archives(self.path)
        for archive in (*self.archives, None):
            path = self.path if archive is None else archive.path
            try:
                conn = self._main if archive is None else self._archive(path)
                found = None if conn is None else next(_scan(path, conn, _EDGES, ()))
                holes = [] if conn is None else list(_scan(path, conn, _HOLES, ()))
            except (JournalError, sqlite3.DatabaseError):
                conn, found, holes = None, None, []
            if conn is None:  # unreadable (reported as such), or deleted or still empty
                if archive is not None and _size(path):
                    pieces.append((archive.first_seq, None, archive.last_seq, None))
                continue
            if found is None or found[0] is None:
                continue
            first, first_ts, last, last_ts = found
            for before, before_ts, after, after_ts in holes:
                pieces.append((first, first_ts, before, before_ts))
                first, first_ts = after, after_ts
            pieces.append((first, first_ts, last, last_ts))
        with suppress(JournalError):  # `notes` and `check` say why a spill file cannot be read
            pieces += [(u.first, u.rows[0][1], u.last, u.rows[-1][1]) for u in self.unwritten()]
        pieces += [(first, None, last, None) for first, last in self.deleted()]
        gaps: list[Gap] = []
        reached, reached_ts = int(self.meta("pruned_through") or 0), None
        for first, first_ts, last, last_ts in sorted(pieces, key=lambda p: p[0]):
            if first > reached + 1:
                gaps.append(Gap(reached + 1, first - 1, reached_ts, first_ts))
            if last > reached:
                reached, reached_ts = last, last_ts
        return gaps

    def unwritten(self) -> list[Unwritten]:
        """The events a failed writer of this journal saved to spill files (`writer`, see
        `files.find_spills`) that no journal file holds yet, per file, in seq order; read once.
        They stay out of `events` (restart recovery reads them when the writer takes them back);
        `export` includes them and the commands name them (`notes`), with what was left out of
        them (`spill_notes`). Raises `JournalError` for a spill file that cannot be read."""
        if self._unwritten is None:
            found = find_spills(self.path, self.meta(IDENTITY_KEY), self.spill_dirs)
            spills = [read_spill(f, self.meta(IDENTITY_KEY)) for f in found.ours]
            self._spill_notes = [
                f"{f} holds events a failed writer saved without naming its journal (an older hotcoin), away from this "
                f"journal: they may be another journal's, so the engine leaves them alone; if they are this journal's, "
                f"move them beside it (into {self.path.parent})"
                for f in found.unsure
            ]
            self._spill_notes += [spill.torn() for spill in spills if spill.torn_line is not None]
            spills = [spill for spill in spills if spill.other_id is None]
            # Where the writer's `_highest_seq` says the journal ends: its next start takes back
            # only saved events that go on from there.
            top = max((a.last_seq for a in list_archives(self.path)), default=0)
            (newest,) = self._main.execute("SELECT MAX(seq) FROM events").fetchone()
            top = max(top, newest or 0, int(self.meta("rotated_through") or 0))
            saved = sorted({seq for spill in spills for seq in spill.events if seq > top})
            taken_back = saved == list(range(top + 1, top + 1 + len(saved)))
            unwritten = []
            for spill in spills:
                rows = tuple(_spilled_row(spill.events[seq]) for seq in sorted(spill.events) if seq > top)
                if rows:
                    unwritten.append(Unwritten(spill.path, rows, top, taken_back, spill.torn_line))
            self._unwritten = unwritten
        return self._unwritten

    def spill_notes(self) -> list[str]:
        """What the spill files hold that `unwritten` leaves out, one line each: a last line a
        write cut short, and files of an older hotcoin that may be another journal's."""
        self.unwritten()
        return self._spill_notes

    def notes(self) -> list[str]:
        """What an answer may lack, one line each, for a command to print beside it: archives
        passed over as damaged (`skip_damaged`), and events a failed writer saved that no
        journal file holds yet (`unwritten`, `spill_notes`)."""
        found = [f"{damaged_file_message(p, why)}; passed over it ({_archive_span(p)})" for p, why in self.skipped.items()]
        try:
            found += [u.describe() for u in self.unwritten()]
            found += self.spill_notes()
        except JournalError as exc:
            found.append(str(exc))
        return found

    def last_ts_ms(self) -> int | None:
        """The newest event time in the journal (main file, else the newest archive with events);
        None if it has none. One index seek per file (`events_ts`)."""
        for path, conn in self._named_files():
            for (newest,) in self._read(path, conn, "SELECT MAX(ts_ms) FROM events", ()):
                if newest is not None:
                    return int(newest)
        return None

    # -- health -------------------------------------------------------------------------------

    def check(self) -> list[dict[str, Any]]:
        """Per file: integrity_check result, size, event counts, trace counts by outcome (each
        trace once, at the furthest outcome its rows in that file reached), seq and time range, and
        the events that do not decode or break their kind's contract (`damaged_events`, the
        first `damaged_seqs`). SQLite's integrity_check checks pages and indexes, not what a row
        holds: a flipped bit inside a payload passes it and then fails export and replay, and a
        payload edited into valid JSON without its fields crashed them, so every event is
        decoded and checked here.
        An archive SQLite cannot read is reported (`unreadable_file`), not raised. Events of a
        version or kind this hotcoin does not know are counted (`unknown_events`, the first
        `unknown_seqs`): `hotcoin run` refuses to start on them.
        The main file's line also gives the journal's lost events: `missing` (runs of seqs no file
        holds above `pruned_through`, see `missing`) and `unwritten` (spill files a failed writer
        left, see `unwritten`); what retention deleted on purpose (`deleted`: seq ranges), and
        the rotation that has not finished (`rotation`: None, or its archive, seqs, and why it
        could not write the archive when it could not).
        The main file's line also says what SQLite leaves out of its -wal (`wal`: None without
        one): SQLite stops at a damaged frame without a word, and the integrity_check of what it
        kept is ok."""
        report = []
        for path in (self.path, *(a.path for a in reversed(self.archives))):
            try:
                conn = self._main if path == self.path else self._archive(path)
                if conn is not None:
                    report.append(_health(path, conn))
            except JournalDamagedError as exc:
                report.append(unreadable_file(path, exc.reason))
            except sqlite3.DatabaseError as exc:
                if not is_corrupt(exc):
                    raise
                report.append(unreadable_file(path, str(exc)))
        if report and report[0]["path"] == str(self.path):
            report[0]["wal"] = wal_report(self.path)
            report[0]["missing"] = [[g.first, g.last] for g in self.missing()]
            report[0]["pruned_through"] = int(self.meta("pruned_through") or 0)
            report[0]["deleted"] = [[first, last] for first, last in self.deleted()]
            pending = self.pending_rotation()
            report[0]["rotation"] = None if pending is None else {
                "archive": str(pending.archive), "first_seq": pending.first, "last_seq": pending.last,
                "error": pending.error, "fix": pending.fix,
            }  # fmt: skip
            try:
                unwritten = self.unwritten()
            except JournalError as exc:
                report[0]["unwritten"] = [
                    {
                        "path": None, "events": None, "first_seq": None, "last_seq": None, "error": str(exc), "taken_back": None,
                        "journal_end": None, "torn_line": None,
                    }
                ]
            else:
                report[0]["unwritten"] = [
                    {
                        "path": str(u.path), "events": len(u.rows), "first_seq": u.first, "last_seq": u.last, "error": None,
                        "taken_back": u.taken_back, "journal_end": u.journal_end, "torn_line": u.torn_line,
                    }
                    for u in unwritten
                ]  # fmt: skip
        return report

    # -- files --------------------------------------------------------------------------------

    def _named_files(self) -> Iterator[tuple[Path, sqlite3.Connection]]:
        """Main file, then archives newest first; an archive deleted meanwhile is skipped. The
        archives are listed after the main file was read, so events a rotation moved out of it
        meanwhile are in one of them (a rotation creates its archive before it moves anything)."""
        yield self.path, self._main
        self.archives = list_archives(self.path)
        for archive in reversed(self.archives):
            conn = self._archive(archive.path)
            if conn is not None:
                yield archive.path, conn

    def _archives_oldest_first(self, after: int = 0) -> Iterator[tuple[Path, sqlite3.Connection]]:
        """The archives as listed now, oldest first, those holding seqs above `after`; an archive
        deleted meanwhile is skipped."""
        self.archives = list_archives(self.path)
        for archive in self.archives:
            if archive.last_seq <= after:
                continue
            conn = self._archive(archive.path)
            if conn is not None:
                yield archive.path, conn

    def _archive(self, path: Path) -> sqlite3.Connection | None:
        """The archive's connection, opened once; None for one deleted since it was listed, or
        still empty (a rotation just made it, or the crash that interrupted its first write was
        rolled back), asked again next time."""
        if path not in self._archive_conns:
            if not _size(path):
                return None
            try:
                self._archive_conns[path] = _connect_ro(path, archive=True)
            except sqlite3.Error:
                self._archive_conns[path] = None
            except JournalError as exc:
                if _size(path) == 0:
                    return None
                if not self.skip_damaged:
                    raise
                self._skip(path, exc.reason if isinstance(exc, JournalDamagedError) else str(exc))
        return self._archive_conns[path]

    def _read(self, path: Path, conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> Iterator[tuple[Any, ...]]:
        """`_scan`, passing over an archive found damaged midway when `skip_damaged`: the rows
        read before the damage stand, and the archive is read no more (`skipped`)."""
        try:
            yield from _scan(path, conn, sql, params)
        except JournalDamagedError as exc:
            if path == self.path or not self.skip_damaged:
                raise
            self._skip(path, exc.reason)

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.setdefault(path, reason)
        conn = self._archive_conns.get(path)
        if conn is not None:
            conn.close()
        self._archive_conns[path] = None


def _connect_ro(path: Path, *, archive: bool = False) -> sqlite3.Connection:
    """A read-only connection to a journal file that holds the journal's tables. An archive
    (written through SQLite's rollback journal, never a -wal: all its pages are in the file)
    shorter than its pages need was cut short: it is damaged, said here rather than by
    whichever read first reaches past its end."""
    try:
        conn = open_read_only(path)
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from exc
    try:
        conn.execute("SELECT 1 FROM events LIMIT 1")
        if archive:
            (pages,), (page_size,) = conn.execute("PRAGMA page_count").fetchone(), conn.execute("PRAGMA page_size").fetchone()
            size = _size(path)
            if pages * page_size > size:
                reason = f"the file is cut short: {size:,} bytes of the {pages * page_size:,} its pages need"
                raise JournalDamagedError(damaged_file_message(path, reason), reason=reason)
    except sqlite3.Error as exc:
        conn.close()
        raise _unreadable(path, exc) from exc
    except JournalError:
        conn.close()
        raise
    return conn


def _unreadable(path: Path, exc: sqlite3.Error) -> JournalError:
    if is_corrupt(exc):
        return _damaged_file(path, exc)
    return JournalError(f"cannot read journal {path}: {exc}{hint(exc, path, writing=False)}")


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an SQLite file of the journal (main file or archive), its first
    page read; raises sqlite3.Error. An archive a crash left in the middle of a rotation's write
    is rolled back first (`_roll_back`), or `JournalError` says why it cannot be and what to do."""
    try:
        return _read_only(path)
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) != sqlite3.SQLITE_READONLY_ROLLBACK:
            raise
    _roll_back(path)
    return _read_only(path)


def _read_only(path: Path) -> sqlite3.Connection:
    """Read-only; `immutable` for a journal in a folder this user cannot write that has no -wal
    (closed cleanly): SQLite would need to create its -shm there to read a WAL-mode file, and
    failed ("unable to open database file"). No engine can be writing it: it could not make its
    -wal either. With a -wal beside it, SQLite must read that, and `hint` says what to do."""
    resolved = path.resolve()
    immutable = not os.access(resolved.parent, os.W_OK) and not resolved.with_name(resolved.name + "-wal").exists()
    conn = sqlite3.connect(f"{resolved.as_uri()}?{'immutable=1' if immutable else 'mode=ro'}", uri=True)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # SQLite meets a hot journal at the first read
    except BaseException:
        conn.close()
        raise
    return conn


def _roll_back(path: Path) -> None:
    """Let SQLite roll back the write a crash interrupted in `path`, which a read-only
    connection may not do ("attempt to write a readonly database", READONLY_ROLLBACK).

    Only archives are written outside the WAL: a rotation writes one through SQLite's rollback
    journal, and a crash (kill -9, power loss) in the middle of a chunk's copy leaves that
    journal, `<archive>-journal`, "hot" beside it. Until something rolls it back, no read-only
    connection may read the archive: `traces`, `replay`, `journal check` and `doctor` all failed
    until the engine ran again. Rolling it back puts the archive back as it was before the
    unfinished copy, and loses nothing: a chunk is deleted from the main file only after its
    copy committed, so its events are still there, and the engine's next start copies them
    again (`rotation.resume`).

    A running engine is never raced: this is SQLite's own crash recovery, under SQLite's locks on
    the archive. SQLite calls a journal hot only while no connection holds the RESERVED lock a
    live writer holds through its whole transaction, and rolls it back under an EXCLUSIVE lock.
    The journal's writer lock (`lock`) is not taken: a reader holding it would refuse an engine
    starting at that moment. The connection reads one page and closes: it writes nothing but
    the rollback, and every read after it goes through a read-only connection again."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)) as conn:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise JournalError(
            f"cannot read journal {path}: a rotation a crash interrupted left it half-written (SQLite's rollback "
            f"journal {path.name}-journal is beside it), and rolling that back needs write access to {path.parent} "
            f"({exc}); start the engine once on this journal (`hotcoin run`), whose start finishes the rotation, or run "
            f"this command as a user who can write {path.parent}; on read-only media, copy the journal's folder "
            "somewhere writable and read the copy"
        ) from exc


def _damaged_file(path: Path, exc: sqlite3.Error) -> JournalDamagedError:
    return JournalDamagedError(damaged_file_message(path, str(exc)), reason=str(exc))


def damaged_file_message(path: Path, reason: str) -> str:
    """What to say about a journal file SQLite cannot read, and what to do about it."""
    return (
        f"journal {path} is damaged: {reason} (the file was cut short or overwritten); keep a copy, "
        f"and salvage the rows SQLite can still read with its own tools: `sqlite3 {path} .dump > salvaged.sql` "
        "writes them out as SQL, ending in `ROLLBACK; -- due to errors` for a damaged file: change that line to "
        "`COMMIT;`, then `sqlite3 salvaged.sqlite < salvaged.sql` (newer sqlite3 also has `.recover`; Debian 12's, "
        '3.40, fails it with "SQL logic error")'
    )


def _scan(path: Path, conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> Iterator[tuple[Any, ...]]:
    """The rows of `sql`, with SQLite's corruption errors midway turned into `JournalDamagedError`."""
    try:
        yield from conn.execute(sql, params)
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            raise _damaged_file(path, exc) from exc
        raise


def _health(path: Path, conn: sqlite3.Connection) -> dict[str, Any]:
    """One file's line of `check`."""
    integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    first, last, lo_ts, hi_ts, count = conn.execute(
        "SELECT MIN(seq), MAX(seq), MIN(ts_ms), MAX(ts_ms), COUNT(*) FROM events"
    ).fetchone()
    outcomes = conn.execute(_OUTCOME_COUNTS).fetchall()
    kinds = conn.execute("SELECT CAST(kind AS BLOB), COUNT(*) FROM events GROUP BY kind").fetchall()
    damaged = []
    unknown = []
    for row in _scan(path, conn, f"SELECT {_RAW_COLUMNS} FROM events ORDER BY seq", ()):
        try:
            (_, _, _, _, kind, _, _, v), _ = _decoded(path, row)
        except JournalDamagedError:
            damaged.append(row[0])
            continue
        if unknown_version(kind, v) is not None:
            unknown.append(row[0])
    return {
        "path": str(path),
        "integrity": integrity,
        "bytes": path.stat().st_size,
        "events": count,
        "first_seq": first,
        "last_seq": last,
        "first_ts_ms": lo_ts,
        "last_ts_ms": hi_ts,
        "kinds": {k.decode(errors="replace"): n for k, n in kinds},
        "traces": {o.decode(errors="replace"): n for o, n in outcomes},
        "damaged_events": len(damaged),
        "damaged_seqs": damaged[:LISTED_DAMAGED],
        "unknown_events": len(unknown),
        "unknown_seqs": unknown[:LISTED_DAMAGED],
        "wal": None,
    }


def wal_report(journal: Path) -> dict[str, Any] | None:
    """`check`'s account of the journal's -wal (see `wal`): what SQLite reads back of it, what it
    leaves out, and `damage`, one line, when that includes committed events; None without a -wal.
    (`wal` loads numpy: imported here, so `replay` and `traces` start without it.)"""
    from engine.journal import wal

    found = wal.inspect_settled(journal)
    if found is None:
        return None
    return {
        "path": str(found.path),
        "bytes": found.size,
        "frames_read": found.kept_frames,
        "unfinished_frames": found.unfinished_frames,
        "lost_frames": found.lost_frames,
        "lost_transactions": found.lost_commits,
        "damage": found.describe() if found.damaged else None,
    }


def unreadable_file(path: Path, reason: str) -> dict[str, Any]:
    """`check`'s line for a file SQLite cannot read at all: the reason in `integrity`, no counts."""
    size = path.stat().st_size if path.exists() else None
    return {
        "path": str(path),
        "integrity": reason,
        "bytes": size,
        "events": None,
        "first_seq": None,
        "last_seq": None,
        "first_ts_ms": None,
        "last_ts_ms": None,
        "kinds": {},
        "traces": {},
        "damaged_events": None,
        "damaged_seqs": [],
        "unknown_events": None,
        "unknown_seqs": [],
        "wal": None,
    }


def _size(path: Path) -> int:
    """The file's size; 0 for one deleted meanwhile."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _schema_version(conn: sqlite3.Connection) -> str | None:
    """The `meta` schema version; None for a journal from before it was kept (or before `meta`)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (SCHEMA_VERSION_KEY,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _buckets(conn: sqlite3.Connection, table: str, column: str) -> range:
    lo, hi = conn.execute(MIN_MAX.format(column=column, table=table)).fetchone()
    return range(0) if lo is None else range(lo >> BUCKET_SHIFT, (hi >> BUCKET_SHIFT) + 1)


def _event_buckets(conn: sqlite3.Connection) -> str | None:
    lo, hi = conn.execute(MIN_MAX.format(column="seq", table="events")).fetchone()
    return None if lo is None else bucket_in("seq", lo, hi)


def _trace_buckets(conn: sqlite3.Connection) -> str | None:
    lo, hi = conn.execute(MIN_MAX.format(column="first_seq", table="traces")).fetchone()
    return None if lo is None else bucket_in("first_seq", lo, hi)


def _trace_row(row: tuple[Any, ...]) -> TraceRow:
    first_seq, trace_id, ts_ms, symbol, outcome = row
    return TraceRow(trace_id, first_seq, ts_ms, symbol, outcome)


def _decoded(path: Path, row: tuple[Any, ...]) -> tuple[RawRow, dict[str, Any]]:
    """A row read through `_RAW_COLUMNS`, its text decoded and its payload parsed and checked
    against its kind's contract; one that fails any of these (not UTF-8, not a JSON object, a
    required field missing or mistyped) raises `JournalDamagedError` naming its seq."""
    seq, ts, trace_id, cause, kind, symbol, payload, v = row
    try:
        text = [None if b is None else b.decode() for b in (trace_id, kind, symbol)]
        parsed = orjson.loads(payload)
        if not isinstance(parsed, dict):
            raise ValueError(f"payload is a JSON {type(parsed).__name__}, not an object")
        check_stored(str(text[1]), v, ts, parsed)
    except (ValueError, TypeError, EventValidationError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise JournalDamagedError(f"journal {path}: event seq {seq} is damaged ({exc}); {_SALVAGE}") from exc
    return (seq, ts, text[0], cause, str(text[1]), text[2], payload, v), parsed


def _event(row: RawRow, payload: dict[str, Any]) -> JournalEvent:
    seq, ts, trace_id, cause, kind, symbol, _, v = row
    return JournalEvent(seq=seq, ts_ms=ts, kind=kind, payload=payload, trace_id=trace_id, symbol=symbol, cause=cause, v=v)


def json_line(row: RawRow, *, journal_id: str | None = None) -> bytes:
    """One event as a JSON line (payload inlined as an object): `export` writes these, and a
    failed writer saves its unwritten events in the same shape, with `journal_id`, the identity
    of the journal they belong to (`files.SPILL_ID_FIELD`)."""
    seq, ts, trace_id, cause, kind, symbol, payload, v = row
    line: dict[str, Any] = {
        "seq": seq,
        "ts_ms": ts,
        "trace_id": trace_id,
        "cause": cause,
        "kind": kind,
        "symbol": symbol,
        "payload": orjson.Fragment(payload),
        "v": v,
    }
    if journal_id is not None:
        line[SPILL_ID_FIELD] = journal_id
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


def _spilled_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """An event of a spill file (the `json_line` shape) as a row read through `_RAW_COLUMNS`."""

    def raw(text: object) -> bytes | None:
        return None if text is None else str(text).encode()

    return (
        int(event["seq"]), event["ts_ms"], raw(event.get("trace_id")), event.get("cause"), raw(event["kind"]),
        raw(event.get("symbol")), orjson.dumps(event["payload"]), int(event.get("v", 1)),
    )  # fmt: skip


def _in_window(ts_ms: int, since_ms: int | None, until_ms: int | None) -> bool:
    return (since_ms is None or ts_ms >= since_ms) and (until_ms is None or ts_ms < until_ms)


def _open(conn: sqlite3.Connection) -> bool:
    """Whether `conn` is still open."""
    try:
        conn.total_changes  # noqa: B018 (raises ProgrammingError once closed)
    except sqlite3.ProgrammingError:
        return False
    return True


def _archive_span(path: Path) -> str:
    """An archive's name and the seq range it gives (`j-632-1441.sqlite`: seq 632..1441)."""
    match = re.search(r"-(\d+)-(\d+)\.sqlite$", path.name)
    return f"{path.name}, seq {match[1]}..{match[2]}" if match else path.name


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def symbol_filter(text: str) -> tuple[str, tuple[str, ...]]:
    """A SQL condition on `symbol` for what a trader types: case and separators do not matter
    (doge-usdt, DOGE_USDT, "doge usdt" -> DOGE/USDT), and a pair without one matches either its
    base alone (doge: every DOGE pair) or base and quote written together (DOGEUSDT).

    Blank text names no symbol and raises ValueError: it matched nothing, so a script with an
    unset variable (`-s "$SYM"`) read "0 traces" as a quiet day."""
    words = text.split()
    if not words:
        raise ValueError(f"{text!r} names no symbol: give a pair (DOGE/USDT), a coin (doge) or a market id (DOGEUSDT)")
    s = "/".join(words).upper().replace("-", "/").replace("_", "/")
    if "/" in s:
        return "symbol = ?", (s,)
    escaped = s.replace("\\", "\\\\").replace("%", "\\%")
    return "(symbol LIKE ? ESCAPE '\\' OR replace(symbol, '/', '') = ?)", (escaped + "/%", s)
