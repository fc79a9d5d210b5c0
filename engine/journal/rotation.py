"""Move old events out of the main journal file into archives, and forget the oldest archives.

Why: the main file is what the writer appends to and what `replay` searches first; keeping it
bounded keeps both fast and lets an operator ship or delete old history by file.

How (inside the writer's own connection, so there is one writer per database):
1. `plan` (pure) picks a seq range `[first, last]` at the old end of the main file: once its
   oldest event is twice `rotate_max_age_days` old, everything older than `rotate_max_age_days`
   (before the newest event), and, past `rotate_max_bytes` of used pages, enough of the oldest
   events to bring the file down to half of that. The factor two is what makes age rotation
   write one archive per age period (each holding about `rotate_max_age_days` of history)
   rather than one per check: moving whatever just aged at every 60-s check made one-event
   archives, so `retention_archives` counted minutes of history instead of months.
2. `move_range` records the plan in `meta` ('rotation'), ATTACHes the archive file and, chunk by
   chunk, copies events and their `traces` rows (INSERT OR IGNORE) then deletes them from main.
   Copy and delete are separate commits: a crash between them leaves a duplicate (the reader
   de-duplicates by seq), never a loss, and `resume` finishes the job on the next open.
   The archive folder may sit on another disk (a link to it) that fills up or turns read-only
   while the journal's own disk is fine: a failure to write the archive raises
   `ArchiveWriteError`, and the rotation stays pending, its cause recorded beside it
   (`note_failure`, read back by `files.pending_rotation` for `hotcoin doctor` and `journal
   check`). Nothing is lost (what was not copied is still in the main file) and the journal
   goes on: the writer finishes the pending rotation (`resume`) at its next check, before it
   plans another, so no two rotations ever move the same seqs.
3. `retention_plan` picks the oldest archive files beyond `retention_archives` to delete:
   every one wholly covered by the latest `checkpoint` (recovery's state through a seq, which
   the writer journals before each rotation when the runtime gave it a `checkpointer`, see
   `engine.runtime.checkpoint`), and after it only those without an event restart recovery
   rebuilds money or orders from (`RECOVERY_KINDS`): recovery replays every fill after the
   checkpoint for the cash, realised PnL and held positions, so deleting one booked the wrong
   cash after a restart. The highest seq deleted under a checkpoint is kept in `meta`
   ('pruned_through', written before the files go), so recovery refuses, by name, to build on
   an older checkpoint or the full history should the latest one be unusable. Every archive
   it deletes, checkpoint or not, has its seq range added to `meta` ('deleted_archives',
   `note_deleted`, before the files go): a journal without checkpoints (a backtest's, or an
   engine whose checkpoint failed) deletes quiet archives too, and `journal check` and `export`
   then took those seqs for lost events.

4. `reclaim` then gives the emptied pages back to the file system (`PRAGMA incremental_vacuum`,
   a few thousand pages per lock hold, so the writer's batches go on in between): a DELETE only
   frees pages for reuse, and the main file kept its peak size for good. It needs the file's
   `auto_vacuum=INCREMENTAL`, which SQLite sets only when a file is created: a journal made
   before it says so at its first rotation, and shrinks after a one-off, with the engine
   stopped: `sqlite3 journal.sqlite 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;'` (it rewrites the
   file, needing as much free disk again; not done at start, where it would stall a restart for
   minutes on a large journal).

Archives hold the same trading record as the main file, so they are as private: a new archive
folder is 0700 and a new archive 0600 (SQLite gives its -journal the archive's mode), set
explicitly rather than left to the process umask, which only `hotcoin` itself tightens.

Age is measured against the newest event's time rather than the wall clock, so a backtest that
journals last year's candles does not archive everything it writes the moment it writes it.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from engine.errors import ArchiveWriteError
from engine.journal.files import (
    DELETED_KEY,
    ROTATION_KEY,
    Archive,
    PendingRotation,
    archive_path,
    deleted_spans,
    list_archives,
    merge_spans,
    pending_rotation,
)
from engine.journal.schema import MIN_MAX, ddl, indexes
from engine.journal.sqlite_errors import archive_fix

DAY_MS = 86_400_000
CHUNK_EVENTS = 20_000
VACUUM_PAGES = 2_000  # pages `reclaim` frees per lock hold (8 MB of 4-KiB pages)
# The kinds `engine.runtime.recovery.rebuild` books cash, positions, orders and the operator's
# pause from: an archive holding one is never deleted by retention.
RECOVERY_KINDS = ("fill", "order_attempt", "order_result", "position_update", "command")


@dataclass(frozen=True, slots=True)
class MainFileState:
    """What `plan` needs to know about the main file."""

    used_bytes: int  # pages in use (a DELETE frees pages for reuse; `reclaim` then shrinks the file)
    first_seq: int | None
    last_seq: int | None
    aged_seq: int | None  # seq of the newest event older than the age limit, once one is twice as old


def plan(state: MainFileState, *, max_bytes: int, keep_fraction: float = 0.5) -> tuple[int, int] | None:
    """The seq range to archive, or None. Past `max_bytes` the file shrinks to `keep_fraction`
    of it, so rotation does not fire again after every batch."""
    if state.first_seq is None or state.last_seq is None:
        return None
    first, last = state.first_seq, state.last_seq
    upto = first - 1
    if state.aged_seq is not None:
        upto = max(upto, state.aged_seq)
    if state.used_bytes > max_bytes:
        share = 1.0 - (max_bytes * keep_fraction) / state.used_bytes
        upto = max(upto, first + math.ceil((last - first + 1) * share) - 1)
    upto = min(upto, last)
    return (first, upto) if upto >= first else None


async def measure(conn: aiosqlite.Connection, *, now_ms: int, max_age_days: float) -> MainFileState:
    page_count = await _scalar(conn, "PRAGMA page_count")
    free = await _scalar(conn, "PRAGMA freelist_count")
    page_size = await _scalar(conn, "PRAGMA page_size")
    async with conn.execute(MIN_MAX.format(column="seq", table="events")) as cur:
        row = await cur.fetchone()
    first, last = (row[0], row[1]) if row else (None, None)
    age_ms = int(max_age_days * DAY_MS)
    cutoff = now_ms - age_ms
    oldest = await _scalar(conn, "SELECT MIN(ts_ms) FROM events")
    aged = None
    if oldest is not None and oldest <= cutoff - age_ms:  # one archive per age period, see the module doc
        # Newest event before the cutoff, found through the ts index without scanning the old ones.
        aged = await _scalar(conn, "SELECT seq FROM events WHERE ts_ms < ? ORDER BY ts_ms DESC LIMIT 1", (cutoff,))
    return MainFileState(((page_count or 0) - (free or 0)) * (page_size or 0), first, last, aged)


async def move_range(
    conn: aiosqlite.Connection,
    journal: Path,
    first: int,
    last: int,
    lock: asyncio.Lock,
    *,
    chunk: int = CHUNK_EVENTS,
) -> Path:
    """Move events `first..last` (and traces that start there) into a new archive file.

    The lock is taken per chunk, so the writer's batches interleave with a long rotation.
    Writing the archive (making its file, attaching it, its tables, each chunk's copy, its
    indexes) may fail where the main file does not: the archive folder may be on another disk,
    full or read-only. That raises `ArchiveWriteError`, the rotation left recorded in `meta`
    for `resume`: every event not yet copied is still in the main file, as each chunk's copy
    commits before its delete. A failure of the main file itself raises sqlite3.Error."""
    target = archive_path(journal, first, last)
    marker = orjson.dumps({"archive": target.name, "first": first, "last": last}).decode()
    async with lock:  # first, so a rotation that cannot even make its archive is pending too
        await conn.execute(f"INSERT OR REPLACE INTO meta (key, value) VALUES ('{ROTATION_KEY}', ?)", (marker,))
        await conn.commit()
    with _archive_writes(journal, target, first, last):
        await asyncio.to_thread(_create_private, target)
        async with lock:
            await conn.execute("ATTACH DATABASE ? AS arc", (str(target),))
    done = False
    try:
        async with lock:
            with _archive_writes(journal, target, first, last):
                for stmt in ddl("arc")[:3]:  # tables now, indexes after the bulk copy
                    await conn.execute(stmt)
                await conn.commit()
        lo = first
        while lo <= last:
            hi = min(lo + chunk - 1, last)
            async with lock:
                with _archive_writes(journal, target, first, last):
                    await _copy(conn, lo, hi)
                await conn.execute("DELETE FROM main.events WHERE seq BETWEEN ? AND ?", (lo, hi))
                await conn.execute("DELETE FROM main.traces WHERE first_seq BETWEEN ? AND ?", (lo, hi))
                await conn.commit()
            lo = hi + 1
        async with lock:
            with _archive_writes(journal, target, first, last):
                for stmt in indexes("arc"):
                    await conn.execute(stmt)
                await conn.commit()
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('rotated_through', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (str(last),),
            )
            await conn.execute(f"DELETE FROM meta WHERE key = '{ROTATION_KEY}'")
            await conn.commit()
        done = True
    finally:
        async with lock:
            if not done:  # a write that failed midway may leave its transaction open, and DETACH refuses then
                with suppress(sqlite3.Error):
                    await conn.rollback()
            try:
                await conn.execute("DETACH DATABASE arc")
            except sqlite3.Error:
                if done:
                    raise  # else the failure that got here is the one to tell
    return target


async def _copy(conn: aiosqlite.Connection, lo: int, hi: int) -> None:
    """Copy the events `lo..hi` and the traces that start there into the attached archive, and
    commit: the archive's side of a chunk (INSERT OR IGNORE: copying again after a crash or a
    failure is harmless)."""
    await conn.execute("INSERT OR IGNORE INTO arc.events SELECT * FROM main.events WHERE seq BETWEEN ? AND ?", (lo, hi))
    await conn.execute("INSERT OR IGNORE INTO arc.traces SELECT * FROM main.traces WHERE first_seq BETWEEN ? AND ?", (lo, hi))
    await conn.commit()


@contextmanager
def _archive_writes(journal: Path, target: Path, first: int, last: int) -> Iterator[None]:
    """Raise a failure to write the archive `target` as `ArchiveWriteError`, with the cause and
    the fix named on the archive folder's disk (`sqlite_errors.archive_fix`)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        fix = archive_fix(exc, target)
        raise ArchiveWriteError(
            f"journal {journal}: the rotation of seq {first}..{last} cannot write its archive {target}: {reason}; {fix}",
            target, first, last, reason=reason, fix=fix,
        ) from exc


async def pending(conn: aiosqlite.Connection, journal: Path, lock: asyncio.Lock) -> PendingRotation | None:
    """The rotation recorded as not finished (see `files.PendingRotation`), or None."""
    async with lock:
        raw = await _scalar(conn, "SELECT value FROM meta WHERE key = ?", (ROTATION_KEY,))
    return pending_rotation(journal, None if raw is None else str(raw))


async def note_failure(conn: aiosqlite.Connection, lock: asyncio.Lock, exc: ArchiveWriteError) -> None:
    """Record in the pending rotation's `meta` why it could not write its archive, for `hotcoin
    doctor` and `hotcoin journal check` to say; best effort: the main file's disk may refuse it
    too, and then the writer's next batch says so."""
    marker = orjson.dumps(
        {"archive": exc.archive.name, "first": exc.first, "last": exc.last, "error": exc.reason, "fix": exc.fix}
    ).decode()
    async with lock:
        try:
            await conn.execute(f"UPDATE meta SET value = ? WHERE key = '{ROTATION_KEY}'", (marker,))
            await conn.commit()
        except sqlite3.Error:
            with suppress(sqlite3.Error):
                await conn.rollback()


async def note_deleted(conn: aiosqlite.Connection, spans: list[tuple[int, int]]) -> None:
    """Add the seq ranges of archives retention is about to delete to `meta`
    ('deleted_archives', see `files.deleted_spans`), uncommitted: the caller commits it before
    the files go, so the journal never lacks seqs it cannot account for."""
    known = deleted_spans(await _scalar(conn, "SELECT value FROM meta WHERE key = ?", (DELETED_KEY,)))
    value = orjson.dumps(merge_spans([*known, *spans])).decode()
    await conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (DELETED_KEY, value))


async def reclaim(conn: aiosqlite.Connection, lock: asyncio.Lock, *, pages: int = VACUUM_PAGES) -> bool:
    """Give the main file's free pages back to the file system, `pages` per lock hold; False
    when the file has no `auto_vacuum=INCREMENTAL` (made before it: see the module doc)."""
    async with lock:
        if await _scalar(conn, "PRAGMA auto_vacuum") != 2:  # 2: INCREMENTAL
            return False
    while True:
        async with lock:
            if not await _scalar(conn, "PRAGMA freelist_count"):
                break
            # executescript steps the pragma to the end; a plain execute frees a single page
            await conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    async with lock:
        await conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the file shrinks at the checkpoint
    return True


async def resume(conn: aiosqlite.Connection, journal: Path, lock: asyncio.Lock) -> PendingRotation | None:
    """Finish a rotation that a crash interrupted, or that could not write its archive before
    (copying again is harmless: INSERT OR IGNORE); returns it, for the caller to say so. Raises
    `ArchiveWriteError` while its archive still cannot be written."""
    todo = await pending(conn, journal, lock)
    if todo is None:
        return None
    await move_range(conn, journal, todo.first, todo.last, lock)
    return todo


def _create_private(target: Path) -> None:
    """Make the archive folder (0700) and the empty archive (0600) before SQLite opens it, the
    modes set after creation because `mkdir`'s and `open`'s are masked by the umask. What
    already exists (a resumed rotation's file, a folder the owner made) is left as it is."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass
    else:
        folder.chmod(0o700)
    try:
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def retention_plan(journal: Path, keep: int, checkpoint_through: int | None) -> tuple[list[Archive], list[Path], int]:
    """The oldest archives beyond `keep` (0 keeps all) split into (to delete, kept because
    recovery needs them), and the highest seq recovery loses with them (0: none). An archive
    wholly covered by the latest checkpoint (last seq <= `checkpoint_through`) is never needed;
    one after it is, when it holds a `RECOVERY_KINDS` event. Blocking (each candidate after the
    checkpoint is searched, a scan when it has none): run it off the event loop."""
    if keep <= 0:
        return [], [], 0
    archives = list_archives(journal)
    beyond = archives[: max(0, len(archives) - keep)]
    covered = [a for a in beyond if checkpoint_through is not None and a.last_seq <= checkpoint_through]
    needed = [a.path for a in beyond if a not in covered and _recovery_needs(a.path)]
    doomed = [a for a in beyond if a.path not in needed]
    return doomed, needed, max((a.last_seq for a in covered), default=0)


def delete_archives(paths: list[Path]) -> None:
    """Delete archive files (and any -journal SQLite left beside them)."""
    for path in paths:
        for leftover in (path, path.with_name(path.name + "-journal")):
            leftover.unlink(missing_ok=True)


async def meta_int(conn: aiosqlite.Connection, key: str) -> int | None:
    """An integer `meta` value of the main file (None when unset)."""
    value = await _scalar(conn, "SELECT value FROM meta WHERE key = ?", (key,))
    return None if value is None else int(value)


def _recovery_needs(archive: Path) -> bool:
    """Whether the archive holds an event recovery reads (see `RECOVERY_KINDS`); an archive that
    cannot be read is kept too: deleting is the one step that cannot be undone."""
    marks = ", ".join("?" * len(RECOVERY_KINDS))
    try:
        with closing(sqlite3.connect(f"{archive.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            row = conn.execute(f"SELECT 1 FROM events WHERE kind IN ({marks}) LIMIT 1", RECOVERY_KINDS).fetchone()
    except sqlite3.Error:
        return True
    return row is not None


async def _scalar(conn: aiosqlite.Connection, sql: str, params: tuple[object, ...] = ()) -> Any:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]
