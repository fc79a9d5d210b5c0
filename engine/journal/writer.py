"""The journal writer: the synchronous core emits, a background task persists in batches.

    async with Journal.open(path, settings) as journal:
        seq = journal.emit("signal_snapshot", ts_ms=now_ms, payload={...}, trace_id=t, cause=prev)
        ...
        await journal.wait_writable()   # the runtime, between cycles

`emit` is synchronous and cheap: it validates the event against the contract, serialises the
payload (orjson; an `encoded.Encoded` payload was both where it was made, and its text is
written as is), assigns the next `seq` from an in-memory counter (initialised on open from the
highest seq in the main file and every archive, so seqs never repeat across restarts) and
appends to the current batch. A malformed event raises `EventValidationError` and is counted in
`stats.rejected[kind]`; nothing is ever dropped silently.

One long-lived aiosqlite connection (WAL) is written by one background task: a batch is sealed
when it reaches `batch_size` events or has waited `flush_interval_ms`, then written with
`executemany` in one transaction together with the `traces` summary rows it touches. A crash
therefore loses at most the batches not yet committed (`last_flushed_seq` says how far the file
is), and never corrupts the file (a backtest's own new file, written as `scratch`, may be
damaged instead: see `open`).

Back-pressure: `emit` never blocks and never drops. `await wait_writable()` returns at once
while fewer than `max_pending` events are unwritten; above that it waits until the writer has
drained below the mark. The runtime calls it between cycles, so memory is bounded by
`max_pending` plus one cycle's events. `await flush()` returns once everything emitted so far
is committed.

A write lock another connection holds (an sqlite3 shell in a transaction, a backup) is waited
out: the batch is kept and tried again, for up to `BUSY_GIVE_UP_S` in all, while back-pressure
holds the engine as on a slow disk; nothing is lost and nothing fails. Any other writer failure
(disk full, a damaged file, a rotation the main file refuses), or a lock held past that, ends
the writes to SQLite for good; it is raised as `JournalError` by the next `flush` and by close, never
swallowed. Its unwritten events are not lost with it: they are appended, as JSON lines (the
`journal export` shape, each with the journal's identity: see `files`), to
`<stem>.<id>.unwritten-<seq>.jsonl` beside the journal, or in `spill_dir` when that fails too (the
journal's disk is full): at once, and from then on batch by batch as they seal, in seq order,
until close. An append that fails midway is cut back to where it began, so a later one that
succeeds does not leave half a line inside the file. While that works (`saving`), `failure` says what failed and
where the events go, `wait_writable` keeps its back-pressure against the spill file and
`secure` is the write-ahead an exchange order waits for: the engine goes on closing its
positions with every step on disk (exits-only) instead of leaving them unwatched. Once saving
fails too, `wait_writable` and `secure` raise as well: nothing could be recorded. The next
`open` takes the saved events back before anything else is written (or read for recovery: the
fill that opened a position may be among them), with their own seqs, and renames the files
`*.restored`; a file that does not continue the journal where it ends is refused by name
rather than guessed at. Only this journal's files are taken back (`files.find_spills`): another
journal's in a shared data dir are not its to take, nor to refuse a start over. A last line a
write cut short (the engine killed mid-append) is left out with a warning naming it; any other
line that does not read is refused, with its line number.

The journal is the file the path names when it opens: the path is resolved (symlinks
followed), so its lock (`lock`), its archives and its spill files are that file's, whatever
path named it. Before each batch the writer checks that the path still names that file
(`os.stat` of the path against the device and inode it opened, one system call): a journal
deleted (`rm j.sqlite*`) or replaced while the engine runs kept taking writes into a file no one
could open again, every event after it lost without a word. It is a writer failure like a full
disk: the batch and everything after go to the spill file, and the engine goes exits-only.

Before SQLite opens the file, `open` checks the -wal (see `wal`): SQLite drops, without a word,
every transaction after a damaged frame of it, and the first checkpoint then loses them for good.
A damaged -wal is copied beside it (`<journal>-wal.damaged-N`), the writer warns, and
`wal_damage` says what was lost, for the runtime to journal and tell the owner. A -wal that ends
in a write a crash interrupted is normal and only noted.

Rotation (see `rotation`) runs in the writer's connection when `rotation_check_s` seconds have
passed since the last check, checked after each batch it commits (a writer that always has
batches waiting still rotates), and when forced with `await journal.rotate(now_ms)`. With a `checkpointer` (set by the runtime:
the journal does not import it), each rotation first commits everything emitted, journals the
`checkpoint` it returns for that flushed history and moves only the seqs the checkpoint covers,
so retention may delete the archives below it (see `rotation.retention_plan`). One a crash interrupted is finished by the
next `open`, with a warning naming the seqs moved and the archive, and retention after it.
A rotation that cannot write its archive (the archive folder's disk full or read-only) ends
nothing: the main file keeps those events, a warning names the archive folder and the fix,
and the rotation stays pending, tried again at each check and at the next `open`, which goes
on opening meanwhile (it refused to, and the engine could not start to manage its positions
over an archive it had no need to write).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import sqlite3
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from engine.config.sections.journal import JournalSection
from engine.domain import OrderPurpose
from engine.errors import (
    ArchiveWriteError,
    EventValidationError,
    HotcoinError,
    JournalDamagedError,
    JournalError,
)
from engine.execution.client_ids import parse_client_order_id
from engine.journal import rotation, wal
from engine.journal.encoded import Encoded, dumps
from engine.journal.events import validate_event
from engine.journal.files import (
    IDENTITY_KEY,
    SPILL_DIR_KEY,
    PendingRotation,
    SpillFile,
    find_spills,
    list_archives,
    read_spill,
    spill_name,
)
from engine.journal.reader import damaged_file_message, json_line
from engine.journal.schema import (
    DDL,
    INSERT_EVENT,
    MIN_MAX,
    OUTCOME_RANK,
    PRAGMAS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SCRATCH_PRAGMAS,
    UPSERT_TRACE,
    WAL,
    bucket_in,
    check_schema_version,
)
from engine.journal.sqlite_errors import hint, is_corrupt, is_locked

log = logging.getLogger("hotcoin.journal")

Row = tuple[int, int, str | None, int | None, str, str | None, str, int]

# Traces remembered (id -> first_seq) so their later events update one `traces` row without a
# lookup. Most traces end within their bar; 20,000 holds hours of them, and a larger map kept
# RSS growing through a simulated week (bench_soak). A trace not remembered (from before a
# restart, or forgotten) that goes on is looked up in the file once (`_resolve`), so it keeps
# its one row; only a trace whose row a rotation archived gets a second one, in the main file
# (the reader merges them).
KNOWN_TRACES = 20_000
# How long, in all, a batch waits for a write lock another connection holds (an sqlite3 shell
# left in a transaction, a backup tool) before the writer fails for good. SQLite waits
# `busy_timeout` (5 s, `schema.PRAGMAS`) inside each try; the writer keeps the batch and tries
# again until this has passed. A lock held for seconds is someone's work that ends (failing at
# the first busy_timeout made the engine exits-only, then stopped it, over a lock released 3 s
# later); one held for a minute is a session left open, and waiting on would keep the engine
# behind back-pressure (`max_pending`) and its orders behind their write-ahead (`secure`) for
# as long: past this, the writer fails as on any other error and saves its events to a spill file.
BUSY_GIVE_UP_S = 60.0
# The same bound once the journal is closing (the engine is stopping): the console gives its
# engine `hotcoin_tui.child_engine.STOP_TIMEOUT_S` (30 s) to exit before it kills it, and a kill
# while the writer still waited on a lock lost every event it held. Past this the writer fails
# and saves them to the spill file (the next start takes them back), inside that allowance even
# with one more SQLite busy_timeout (5 s) on top.
CLOSING_BUSY_GIVE_UP_S = 10.0
# Between tries: each one already waited busy_timeout inside SQLite; this keeps a lock SQLite
# refuses at once (SQLITE_LOCKED, or a busy_timeout of 0) from spinning the writer.
BUSY_RETRY_PAUSE_S = 0.1
# Kinds that start a trace (discovery's candidate, a close-all's command): an unknown trace id
# on any other event is one that began before this writer remembered it.
_STARTS_TRACE = frozenset({"candidate_snapshot", "command"})

# Kinds whose payload moves a trace's outcome (see `_outcome_of`).
_OUTCOME_KINDS = frozenset(
    {"candidate_snapshot", "signal_snapshot", "risk_check", "order_attempt", "order_result", "fill", "command"}
)
# Signal decisions that are not a refusal: an entry, and a held position's exit or hold.
_NOT_REFUSED = frozenset({"enter", "exit", "hold"})
# An order's end without (necessarily) a fill; for an entry with no buy fill: not_filled.
_UNFILLED_ENDS = frozenset({"rejected", "expired", "canceled"})


@dataclass
class JournalStats:
    written: int = 0
    batches: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rotations: int = 0
    archives_deleted: int = 0


class _Batch:
    """Events of one transaction, and the `traces` rows they create or update."""

    __slots__ = ("rows", "traces")

    def __init__(self) -> None:
        self.rows: list[Row] = []
        # trace_id -> [first_seq, trace_id, ts_ms, symbol, outcome]: the UPSERT_TRACE parameters
        self.traces: dict[str, list[Any]] = {}


class Journal:
    """An `EventSink` that persists to SQLite. Create it with `Journal.open`."""

    keeps_payloads = True

    def __init__(
        self,
        path: Path,
        conn: aiosqlite.Connection,
        settings: JournalSection,
        last_seq: int,
        rotation_check_s: float,
        spill_dir: Path | None = None,
        journal_id: str = "",
    ) -> None:
        self.path = path
        self.journal_id = journal_id  # `files.IDENTITY_KEY`: ties the spill files to this journal
        self.settings = settings
        # Where a failed writer saves its unwritten events: beside the journal, else `spill_dir`.
        self.spill_dirs = [path.parent] + ([spill_dir] if spill_dir is not None and spill_dir != path.parent else [])
        self.spill_paths: list[Path] = []  # the files that hold them, once saved
        self._spilled_seq = last_seq  # events up to here are committed or saved to a spill file
        self._spill_errors: list[str] = []
        self._lost = False  # saving to a spill file failed: events may be lost, for good this run
        self.stats = JournalStats()
        self.last_flushed_seq = last_seq
        self._conn = conn
        self._seq = last_seq
        self._newest_ts = 0
        # trace_id -> first_seq of its `traces` row, for traces seen since open (bounded).
        self._known: dict[str, int] = {}
        # trace_id -> the first_seq `_known` guessed for it, until `_resolve` looks it up.
        self._unsure: dict[str, int] = {}
        self._batch = _Batch()
        self._sealed: deque[_Batch] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._db_lock = asyncio.Lock()
        self._rotate_lock = asyncio.Lock()
        self._rotation_check_s = rotation_check_s
        self._last_rotation_check = time.monotonic()
        self._rotation_error: str | None = None  # why the pending rotation could not write its archive, once said
        self._told_no_vacuum = False
        self.busy_give_up_s = BUSY_GIVE_UP_S  # attributes so a test need not wait a minute
        self.closing_busy_give_up_s = CLOSING_BUSY_GIVE_UP_S
        self._closing = False
        self._closed = False
        # (st_dev, st_ino) of the file opened: the path must still name it (`_check_file`).
        self.file_id: tuple[int, int] | None = None
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        # seq X -> the `checkpoint` payload of the journal's history through X, built from disk.
        # Blocking (it reads the journal): called off the event loop, at each rotation.
        self.checkpointer: Callable[[int], Mapping[str, Any]] | None = None
        # What a damaged -wal found at open took from the journal, in one line (`_keep_damaged_wal`);
        # None when it had nothing to take. The runtime journals it as a `risk_event` and tells the owner.
        self.wal_damage: str | None = None
        # Written as a run's own new file (`open(scratch=True)`), until close puts it back in WAL.
        self.scratch = False

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path | str,
        settings: JournalSection | None = None,
        *,
        rotation_check_s: float = 60.0,
        spill_dir: Path | None = None,
        scratch: bool = False,
    ) -> AsyncIterator[Journal]:
        """Open (creating if needed) the journal at `path`; closing flushes everything.
        `spill_dir`: where unwritten events go if the writer fails and the journal's own
        folder cannot take them either. `scratch`: the caller made this file for one run that
        only it writes (a backtest's, which refuses a journal holding events): found empty, it
        is written without a -wal or syncs (`schema.SCRATCH_PRAGMAS`: a crash mid-run may
        damage this file alone) and put back in WAL on close. A journal holding events is
        never written so, scratch or not."""
        path = await asyncio.to_thread(_real, Path(path))  # the file, not the link or the words that named it
        spill_dir = None if spill_dir is None else await asyncio.to_thread(_real, spill_dir)
        settings = settings or JournalSection()
        wal_damage = await asyncio.to_thread(_keep_damaged_wal, path)  # before SQLite reads the -wal, or checkpoints it
        conn = await _connect(path)
        try:
            for stmt in (*PRAGMAS, *DDL):
                await conn.execute(stmt)
            await _claim_schema_version(conn, path)
            journal_id = await _claim_identity(conn, spill_dir)
            await conn.commit()
            stuck: ArchiveWriteError | None = None
            try:
                resumed = await rotation.resume(conn, path, asyncio.Lock())
            except ArchiveWriteError as exc:  # the events are all still in the main file: open on
                resumed, stuck = None, exc
            last = await _highest_seq(conn, path)
            scratch = scratch and last == 0
            for stmt in SCRATCH_PRAGMAS if scratch else ():
                await conn.execute(stmt)
            file_id = await asyncio.to_thread(_file_id, path)  # SQLite made the file; it holds it open from here on
        except sqlite3.Error as exc:
            await conn.close()
            if is_corrupt(exc):
                raise JournalDamagedError(damaged_file_message(path, str(exc)), reason=str(exc)) from exc
            raise JournalError(f"cannot open journal {path}: {exc}{hint(exc, path, writing=True)}") from exc
        except BaseException:
            await conn.close()
            raise
        journal = cls(path, conn, settings, last, rotation_check_s, spill_dir, journal_id)
        journal.wal_damage = wal_damage
        journal.file_id = file_id
        journal.scratch = scratch
        journal._task = asyncio.create_task(journal._run(), name=f"journal-writer:{path.name}")
        try:
            if stuck is not None:
                await journal._rotation_failed(stuck)
            if resumed is not None:
                await journal._resumed(resumed)
            await journal._take_back_spills()
            yield journal
        finally:
            await journal._close()

    @property
    def next_seq(self) -> int:
        return self._seq + 1

    @property
    def unwritten(self) -> int:
        """Events emitted but not yet committed."""
        return self._seq - self.last_flushed_seq

    @property
    def saving(self) -> bool:
        """The writer failed, and every event it could not write is being saved to a spill file."""
        return self._error is not None and not self._lost

    @property
    def failure(self) -> str | None:
        """Once the writer failed: what failed and where the events go, in one line (the engine's
        blocked reason); None while it writes."""
        if self._error is None:
            return None
        if self._lost:
            return f"journal write failed: {self._error}; saving the events failed too ({'; '.join(self._spill_errors)})"
        where = " and ".join(map(str, self.spill_paths)) or "a spill file beside it, from the next event on"
        return f"journal write failed: {self._error}; events saved to {where}"

    def emit(
        self,
        kind: str,
        *,
        ts_ms: int,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
        symbol: str | None = None,
        cause: int | None = None,
    ) -> int:
        """Validate, serialise and queue one event; returns its seq. Never blocks, never drops."""
        if self._closed or self._closing:
            raise JournalError(f"journal {self.path} is closed; open it again before emitting")
        try:
            if type(payload) is Encoded and payload.kind == kind:  # validated and serialised where it was made
                v, text = payload.v, payload.text
                if type(ts_ms) is not int or ts_ms < 0:
                    raise EventValidationError(f"{kind}: ts_ms must be a non-negative int (epoch ms), got {ts_ms!r}")
            else:
                v = validate_event(kind, ts_ms, payload)
                text = dumps(kind, payload)
            if trace_id is not None and type(trace_id) is not str:
                raise EventValidationError(f"{kind}: trace_id must be a str or None, got {type(trace_id).__name__}")
            if symbol is not None and type(symbol) is not str:
                raise EventValidationError(f"{kind}: symbol must be a str or None, got {type(symbol).__name__}")
            if cause is not None and (type(cause) is not int or not 0 < cause <= self._seq):
                raise EventValidationError(
                    f"{kind}: cause must be the seq of an earlier event (1..{self._seq}), got {cause!r}"
                )
        except EventValidationError:
            self.stats.rejected[kind] += 1
            raise
        self._seq = seq = self._seq + 1
        if ts_ms > self._newest_ts:
            self._newest_ts = ts_ms
        batch = self._batch
        rows = batch.rows
        rows.append((seq, ts_ms, trace_id, cause, kind, symbol, text, v))
        if trace_id is not None:
            entry = batch.traces.get(trace_id)
            if entry is None:
                first = self._known.get(trace_id)
                if first is None:
                    first = self._known[trace_id] = seq
                    if cause is not None or kind not in _STARTS_TRACE:
                        self._unsure[trace_id] = seq
                    if len(self._known) > KNOWN_TRACES:
                        self._forget(len(self._known) // 10)
                entry = batch.traces[trace_id] = [first, trace_id, ts_ms, symbol, "open"]
            elif entry[3] is None and entry[4] != "close_all":
                entry[3] = symbol
            if kind in _OUTCOME_KINDS:
                outcome = _outcome_of(kind, payload)
                if outcome is not None and OUTCOME_RANK[outcome] > OUTCOME_RANK.get(entry[4], 0):
                    entry[4] = outcome
                    if outcome == "close_all":  # it sells every coin held: no one symbol is its own
                        entry[3] = None
        if len(rows) >= self.settings.batch_size:
            self._seal()
            self._wake.set()
        elif len(rows) == 1:
            self._wake.set()  # start the flush-interval clock
        return seq

    async def flush(self) -> None:
        """Return once every event emitted so far is committed."""
        target = self._seq
        self._seal()
        self._wake.set()
        while self.last_flushed_seq < target:
            self._raise_if_failed()
            self._progress.clear()
            await self._progress.wait()
        self._raise_if_failed()

    async def wait_writable(self) -> None:
        """Return at once below `max_pending` events neither committed nor saved, else when the
        writer got there. After a writer failure its events go to the spill file instead (see
        `failure`): this raises `JournalError` only once saving them fails too."""
        while self._seq - max(self.last_flushed_seq, self._spilled_seq) >= self.settings.max_pending:
            self._raise_if_lost()
            self._seal()
            self._wake.set()
            self._progress.clear()
            await self._progress.wait()
        self._raise_if_lost()

    async def secure(self) -> None:
        """Return once every event emitted so far is committed or, after a writer failure, saved
        to a spill file: the write-ahead an exchange order waits for, so the exits an engine
        sends after its journal failed still have their attempts on disk first. Raises
        `JournalError` when neither holds."""
        try:
            await self.flush()
        except JournalError:
            if not self.saving:  # flush saved what it could before raising: all of it, or not
                raise

    async def rotate(self, now_ms: int | None = None) -> list[Path]:
        """Flush, then archive what is old or over size now; returns the archives written."""
        await self.flush()
        return await self._rotate(self._newest_ts if now_ms is None else now_ms)

    # -- the writer task ---------------------------------------------------------------------

    def _seal(self) -> None:
        if self._batch.rows:
            self._sealed.append(self._batch)
            self._batch = _Batch()

    def _forget(self, n: int) -> None:
        """Drop the `n` oldest remembered traces (dicts keep insertion order)."""
        for trace_id in list(itertools.islice(self._known, n)):
            del self._known[trace_id]
            self._unsure.pop(trace_id, None)

    async def _run(self) -> None:
        try:
            await self._drain(self._write_sealed)
        except Exception as exc:  # surfaced by flush / close and `failure`
            self._error = exc
            self._spill()
            self._progress.set()
            if not self._lost:  # no more SQLite: from now on each batch goes to the spill file
                await self._drain(self._save_sealed)

    async def _drain(self, store: Callable[[], Awaitable[bool]]) -> None:
        """Hand the sealed batches to `store` as they come: a batch seals at `batch_size` events
        or `flush_interval_ms` after its first. Returns once closing with nothing left, or when
        `store` says it cannot go on."""
        interval = self.settings.flush_interval_ms / 1000
        while True:
            if not self._sealed:
                if self._batch.rows:
                    self._wake.clear()
                    with suppress(TimeoutError):
                        async with asyncio.timeout(interval):
                            await self._wake.wait()
                    self._seal()
                elif self._closing:
                    return
                else:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
            if not await store():
                return

    async def _write_sealed(self) -> bool:
        """Commit the sealed batches, rotating after any of them once a check is due; raises
        when SQLite fails. The check follows each batch, not the end of the queue: an engine
        that always emits faster than one batch commits keeps the queue from ever emptying,
        and a check waiting for that never came (a main file of 699 MB with
        rotate_max_bytes=1 MB)."""
        while self._sealed:
            await self._write(self._sealed[0])
            self._sealed.popleft()
            if self._rotation_due():
                await self._rotate(self._newest_ts)
        return True

    def _rotation_due(self) -> bool:
        """`rotation_check_s` has passed since the last check, and no rotation runs: one already
        running (`rotate`) may be waiting for this task to write its checkpoint."""
        return time.monotonic() - self._last_rotation_check >= self._rotation_check_s and not self._rotate_lock.locked()

    async def _save_sealed(self) -> bool:
        """After a failure: append the sealed batches to the spill file; False once that fails."""
        self._spill()
        self._progress.set()
        return not self._lost

    async def _write(self, batch: _Batch) -> None:
        """Commit one batch. A write lock another connection holds (`is_locked`) is waited out,
        the batch kept and tried again, for up to `busy_give_up_s` (see `BUSY_GIVE_UP_S`; once
        closing, `closing_busy_give_up_s`: `CLOSING_BUSY_GIVE_UP_S`), said
        in the log when it starts and when it ends; any other SQLite error, or a lock held past
        that, raises `JournalError`: the end of SQLite writes (`_run`)."""
        self._check_file(batch.rows[0][0])
        started = time.monotonic()
        locked = False
        while True:
            try:
                await self._try_write(batch)
                break
            except sqlite3.Error as exc:
                first = batch.rows[0][0]
                if not is_locked(exc):
                    raise JournalError(f"journal write to {self.path} failed at seq {first}: {exc}") from exc
                waited = time.monotonic() - started
                bound = min(self.busy_give_up_s, self.closing_busy_give_up_s) if self._closing else self.busy_give_up_s
                if waited >= bound:
                    raise JournalError(
                        f"journal write to {self.path} failed at seq {first}: {exc}; it was locked by another connection "
                        f"for {bound:g} s or more (an sqlite3 shell left in a transaction, a backup): close "
                        "that connection, and start the engine again"
                    ) from exc
                if not locked:
                    locked = True
                    log.warning(
                        "journal %s is locked by another connection (an sqlite3 shell in a transaction, a backup): "
                        "%d event(s) from seq %d wait, tried again until %g s have passed, then the journal fails; "
                        "close that connection",
                        self.path, self.unwritten, first, self.busy_give_up_s,
                    )
                await asyncio.sleep(BUSY_RETRY_PAUSE_S)
        if locked:
            log.warning(
                "journal writes resumed: %s was locked by another connection for %.1f s; no event was lost",
                self.path, time.monotonic() - started,
            )
        self.last_flushed_seq = batch.rows[-1][0]
        self.stats.written += len(batch.rows)
        self.stats.batches += 1
        self._progress.set()

    def _check_file(self, first: int) -> None:
        """Raise `JournalError` when the journal's path no longer names the file this writer
        opened: deleted, or replaced by another (SQLite would go on writing into the one it
        holds open, which no reader, no restart and no backup can reach). One `stat`, before
        each batch, so no batch goes into a deleted file unnoticed."""
        if self.file_id is None:
            return
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            now = "no longer exists"
        except OSError as exc:
            log.debug("journal %s: could not check the file is still there: %s", self.path, exc)
            return
        else:
            if (found.st_dev, found.st_ino) == self.file_id:
                return
            now = "now names another file"
        raise JournalError(
            f"journal {self.path} was deleted or replaced while the engine ran (the path {now}): the events from "
            f"seq {first} on cannot be written to it; if that was not meant, stop the engine and restore the journal "
            "from a backup"
        )

    async def _try_write(self, batch: _Batch) -> None:
        """One transaction of the batch's events and traces rows; rolled back on error, so a try
        again starts from nothing written (and `_resolve`'s lookups are kept: they only move
        the batch's trace rows to the ones already on file)."""
        conn = self._conn
        async with self._db_lock:
            try:
                if self._unsure:
                    await self._resolve(batch)
                await conn.executemany(INSERT_EVENT, batch.rows)
                if batch.traces:
                    await conn.executemany(UPSERT_TRACE, list(batch.traces.values()))
                await conn.commit()
            except sqlite3.Error:
                with suppress(sqlite3.Error):
                    await conn.rollback()
                raise

    async def _resolve(self, batch: _Batch) -> None:
        """Point the batch's unsure traces at the row they already have in the main file, if
        any: a position held across a restart (or past `KNOWN_TRACES` newer traces) goes on
        updating the row its trace started, rather than adding one that says "open" beside it.
        Rare (held positions and orders in flight), and one index seek per seq bucket each.
        The batches after this one, sealed with the guess, are corrected too."""
        for trace_id in [t for t, entry in batch.traces.items() if self._unsure.get(t) == entry[0]]:
            guess = self._unsure.pop(trace_id)
            found = await _first_row(self._conn, trace_id, guess)
            if found is None:
                continue  # it starts here, or its row was archived: this row is its main-file part
            if self._known.get(trace_id) == guess:
                self._known[trace_id] = found
            for later in (*self._sealed, self._batch):
                entry = later.traces.get(trace_id)
                if entry is not None and entry[0] == guess:
                    entry[0] = found
            batch.traces[trace_id][0] = found

    async def _rotate(self, now_ms: int) -> list[Path]:
        """Finish the pending rotation if there is one (it could not write its archive before),
        then archive what is old or over size now; returns the archives written. Nothing new is
        planned while the pending one cannot finish: a second rotation would move the seqs
        after it into an archive of its own while the first still waits for them. A failure
        of the archive (`ArchiveWriteError`) is said and leaves the rotation pending; one of
        the main file raises `JournalError`."""
        async with self._rotate_lock:
            self._last_rotation_check = time.monotonic()
            archives: list[Path] = []
            span: tuple[int, int] | None = None
            try:
                finished = await rotation.resume(self._conn, self.path, self._db_lock)
                if finished is not None:
                    self._moved(finished.first, finished.last)
                    archives.append(finished.archive)
                    self._rotation_finished(finished)
                settings = self.settings
                async with self._db_lock:
                    state = await rotation.measure(self._conn, now_ms=now_ms, max_age_days=settings.rotate_max_age_days)
                span = rotation.plan(state, max_bytes=settings.rotate_max_bytes)
                if span is not None:
                    through = await self._checkpoint(now_ms)
                    if through is not None:
                        span = (span[0], min(span[1], through))
                    archives.append(await rotation.move_range(self._conn, self.path, span[0], span[1], self._db_lock))
                    self._moved(*span)
            except ArchiveWriteError as exc:
                await self._rotation_failed(exc)
            except sqlite3.Error as exc:
                which = f" of seq {span[0]}..{span[1]}" if span is not None else ""
                raise JournalError(f"journal rotation{which} failed: {exc}{hint(exc, self.path, writing=True)}") from exc
            if archives:
                await self._reclaim()
                await self._retain()
            return archives

    def _moved(self, first: int, last: int) -> None:
        """Count a rotation of seqs `first`..`last` and forget the traces whose rows it moved:
        one that goes on gets a row in the main file (the reader merges them)."""
        self.stats.rotations += 1
        self._forget_rows(first, last)

    def _forget_rows(self, first: int, last: int) -> None:
        """Forget the traces remembered with a `traces` row in `first`..`last`, so one that goes
        on looks its row up in the main file (`_resolve`) rather than writing one there again
        at a first_seq a rotation moved (or, when it failed midway, may have moved)."""
        self._known = {t: seq for t, seq in self._known.items() if not first <= seq <= last}
        self._unsure = {t: guess for t, guess in self._unsure.items() if t in self._known}

    async def _rotation_failed(self, exc: ArchiveWriteError) -> None:
        """A rotation could not write its archive: record why beside it (`hotcoin doctor` and
        `journal check` say it), and warn, once per cause and run (it is tried again at every
        check). The journal goes on: the main file holds every event it did not move."""
        await rotation.note_failure(self._conn, self._db_lock, exc)
        self._forget_rows(exc.first, exc.last)
        if str(exc) != self._rotation_error:
            self._rotation_error = str(exc)
            log.warning("%s", exc)
        else:
            log.debug("%s", exc)

    def _rotation_finished(self, done: PendingRotation) -> None:
        """Say that a rotation left pending finished: a crash interrupted it, or (`error`) it
        could not write its archive before, which the owner was told of."""
        self._rotation_error = None
        if done.error is None:
            log.warning(
                "journal %s: finished a rotation a crash had interrupted: moved seq %d..%d to %s",
                self.path, done.first, done.last, done.archive,
            )
        else:
            log.warning(
                "journal %s: finished the rotation of seq %d..%d into %s, which could not write its archive before (%s)",
                self.path, done.first, done.last, done.archive, done.error,
            )

    async def _checkpoint(self, now_ms: int) -> int | None:
        """Commit everything emitted, then journal a checkpoint of it; returns the seq it covers
        (None without a `checkpointer`, or when it failed: the rotation goes on without, and
        retention keeps what recovery replays, as it always did)."""
        if self.checkpointer is None:
            return None
        await self._commit_all()
        through = self.last_flushed_seq
        try:
            payload = await asyncio.to_thread(self.checkpointer, through)
            self.emit("checkpoint", ts_ms=self._newest_ts or now_ms, payload=payload)  # beside the history it covers
        except (HotcoinError, sqlite3.Error, OSError) as exc:
            log.warning("journal %s: no checkpoint at this rotation (%s); archives recovery replays are kept", self.path, exc)
            return None
        await self._commit_all()
        async with self._db_lock:
            await self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('checkpoint_through', ?)", (str(through),))
            await self._conn.commit()
        return through

    async def _commit_all(self) -> None:
        """Commit every event emitted so far: directly in the writer task (a rotation it runs),
        else by waiting for it."""
        if asyncio.current_task() is not self._task:
            await self.flush()
            return
        self._seal()
        while self._sealed:
            await self._write(self._sealed[0])
            self._sealed.popleft()

    async def _reclaim(self) -> None:
        """Shrink the main file after a rotation; a file made without auto_vacuum is named once
        per run, with the one-off command that lets it shrink (see `rotation`)."""
        try:
            shrinks = await rotation.reclaim(self._conn, self._db_lock)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: reclaiming the space a rotation freed failed: {exc}") from exc
        if not shrinks and not self._told_no_vacuum:
            self._told_no_vacuum = True
            log.warning(
                "journal %s was made before hotcoin reclaimed rotated space, so it keeps its largest size; "
                "to let it shrink, stop the engine and run once: sqlite3 %s 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;'",
                self.path, self.path,
            )

    async def _resumed(self, done: PendingRotation) -> None:
        """Say that open finished a rotation a crash interrupted (or that could not write its
        archive before), then apply the retention that rotation did not get to: an operator
        finds out why an archive appeared at start."""
        self._rotation_finished(done)
        await self._retain()

    async def _retain(self) -> None:
        """Apply `retention_archives`, saying which archives it keeps beyond it, and why. What a
        deletion takes from recovery (seqs up to `pruned_through`) is recorded first, so
        recovery never builds on a checkpoint older than that, or on a history missing it; so
        is the seq range of every archive it deletes (`rotation.note_deleted`), checkpoint or
        not, so `journal check` and `export` know those seqs were deleted on purpose."""
        async with self._db_lock:
            found = await rotation.meta_int(self._conn, "checkpoint_through")
        doomed, needed, pruned = await asyncio.to_thread(
            rotation.retention_plan, self.path, self.settings.retention_archives, found
        )
        if doomed:
            async with self._db_lock:
                if pruned:
                    await self._conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('pruned_through', ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                        (str(pruned),),
                    )
                await rotation.note_deleted(self._conn, [(a.first_seq, a.last_seq) for a in doomed])
                await self._conn.commit()
        await asyncio.to_thread(rotation.delete_archives, [a.path for a in doomed])
        self.stats.archives_deleted += len(doomed)
        if needed:
            log.info(
                "journal %s: keeping %d archive(s) beyond retention_archives=%d (%s): they hold fills or "
                "orders after the latest checkpoint, which restart recovery replays",
                self.path, len(needed), self.settings.retention_archives, ", ".join(p.name for p in needed),
            )

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            self._spill()  # so the note below says where every event emitted so far is
            raise JournalError(
                f"journal writer stopped: {self._error}; {self.unwritten} events are not written "
                f"(last written seq {self.last_flushed_seq}); {self._spill_note()}"
            ) from self._error

    def _raise_if_lost(self) -> None:
        """Raise the writer's failure once saving its events failed too (`saving` no more)."""
        if self._lost:
            self._raise_if_failed()

    def _spill(self) -> None:
        """Append the events neither committed nor saved yet to a spill file; the first folder
        of `spill_dirs` that takes them wins (a file already in use first). Saved events leave
        memory (an engine closing positions exits-only may run for hours); if no folder takes
        them they stay, for the next try, and the journal counts as losing events (`_lost`)."""
        rows = [row for batch in (*self._sealed, self._batch) for row in batch.rows if row[0] > self._spilled_seq]
        if not rows:
            return
        name = spill_name(self.path, self.journal_id, self.last_flushed_seq + 1)
        targets = [*self.spill_paths, *(d / name for d in self.spill_dirs)]
        data = b"".join(json_line(row, journal_id=self.journal_id) for row in rows)
        for target in dict.fromkeys(targets):
            try:
                _append(target, data)
            except OSError as exc:
                error = f"{target}: {exc.strerror or exc}"
                if error not in self._spill_errors:  # each retry meets the same wall: say it once
                    self._spill_errors.append(error)
                continue
            if target not in self.spill_paths:
                self.spill_paths.append(target)
            self._spilled_seq = rows[-1][0]
            self._sealed.clear()
            self._batch = _Batch()
            return
        self._lost = True

    async def _take_back_spills(self) -> None:
        """Emit again, with their seqs, the events a failed writer of this journal saved: in
        the files named with its identity, and in older files with none beside it (`files`)."""
        found = await asyncio.to_thread(find_spills, self.path, self.journal_id, self.spill_dirs)
        if found.unsure:
            log.warning(
                "journal %s: %s hold(s) events a failed writer saved without naming its journal (an older hotcoin), "
                "away from this journal: they may be another journal's, so they are left alone; if they are this "
                "journal's, move them beside it (into %s) and start again",
                self.path, ", ".join(map(str, found.unsure)), self.path.parent,
            )
        spills = [await asyncio.to_thread(read_spill, f, self.journal_id) for f in found.ours]
        for spill in spills:
            if spill.other_id is not None:
                log.warning(
                    "journal %s: %s holds events another journal (id %s, this one's is %s) saved: left alone",
                    self.path, spill.path, spill.other_id, self.journal_id,
                )
            elif spill.torn_line is not None:
                log.warning("journal %s: %s", self.path, spill.torn())
        spills = [spill for spill in spills if spill.other_id is None]
        if not spills:
            return
        files = [spill.path for spill in spills]
        events = _merged(spills)
        todo = [seq for seq in sorted(events) if seq > self._seq]
        if todo != list(range(self._seq + 1, self._seq + 1 + len(todo))):
            raise JournalError(
                f"journal {self.path} ends at seq {self._seq}, and the unwritten events saved in "
                f"{', '.join(map(str, files))} do not continue it (seqs {todo[0]}..{todo[-1]}, with gaps or "
                "a hole before them); move those files aside to start, after checking positions on the exchange"
            )
        for seq in todo:
            ev = events[seq]
            self.emit(
                ev["kind"], ts_ms=ev["ts_ms"], payload=ev["payload"], trace_id=ev.get("trace_id"),
                symbol=ev.get("symbol"), cause=ev.get("cause"),
            )  # fmt: skip
        await self.flush()
        _mark_restored(files)
        log.warning("journal %s: took back %d event(s) a failed writer saved in %s", self.path, len(todo), ", ".join(map(str, files)))

    async def _back_to_wal(self) -> None:
        """A scratch journal, written, in WAL as every journal is: readers open it as any other.
        A writer that failed may have left SQLite unable to switch; the file then stays in
        rollback mode, which every reader reads as well (its events are on disk or spilled)."""
        try:
            await self._conn.execute(WAL)
        except sqlite3.Error as exc:
            log.warning("journal %s: left in rollback mode (%s); it reads the same", self.path, exc)

    def _spill_note(self) -> str:
        """Where the unwritten events are, for the error: the spill files, or why there are none."""
        if self._spilled_seq >= self._seq:
            where = " and ".join(str(p) for p in self.spill_paths)
            return f"they are saved in {where} (JSON lines, as `hotcoin journal export` writes them)" if where else "none are lost"
        return f"saving them failed too ({'; '.join(self._spill_errors)}); they are lost when this process ends"

    async def _close(self) -> None:
        self._seal()
        self._closing = True
        self._wake.set()
        try:
            if self._task is not None:
                await self._task
            if self.scratch:
                await self._back_to_wal()
        finally:
            self._closed = True
            await self._conn.close()
        if self._error is not None:
            self._spill()  # what was emitted after the failure (run_stop among it)
        self._raise_if_failed()


def _file_id(path: Path) -> tuple[int, int]:
    """The device and inode of the file at `path`: which file it is, whatever names it later."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _real(path: Path) -> Path:
    """The file or folder `path` names: `~` expanded, symlinks followed, absolute."""
    return path.expanduser().resolve()


def _merged(spills: list[SpillFile]) -> dict[int, dict[str, Any]]:
    """seq -> event, from spill files oldest first (a seq in two files is the same event, saved twice)."""
    events: dict[int, dict[str, Any]] = {}
    for spill in spills:
        for seq, event in spill.events.items():
            events.setdefault(seq, event)
    return events


def _append(target: Path, data: bytes) -> None:
    """Append `data` to the spill file `target` (made private, as the journal is), whole or not
    at all: a write that fails midway (the disk filled) is cut back to where it began, so the
    next append, to this file once there is room, does not follow half a line. Half a line
    inside the file, not at its end, reads as damage and refuses the next start."""
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            with suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _mark_restored(files: list[Path]) -> None:
    for f in files:
        f.rename(f.with_name(f.name + ".restored"))


def _outcome_of(kind: str, payload: Mapping[str, Any]) -> str | None:
    """How an event moves its trace's outcome (ranked in `schema.OUTCOME_RANK`): 'rejected'
    when discovery, the signal or risk said no; 'ordered' on an entry order; 'not_filled' when
    an entry order ended unfilled (a buy fill, if any, outranks it); 'entered' on a buy fill;
    'close_all' on the close-all command that starts its trace."""
    if kind == "order_attempt":
        return "ordered" if payload["purpose"] == "entry" else None
    if kind == "order_result":
        ours = parse_client_order_id(str(payload["client_order_id"]))
        is_entry = ours is not None and ours[1] is OrderPurpose.ENTRY
        return "not_filled" if is_entry and payload["status"] in _UNFILLED_ENDS else None
    if kind == "fill":
        return "entered" if payload["side"] == "buy" else None
    if kind == "command":
        return "close_all" if payload["command"] == "close_all" else None
    if kind == "signal_snapshot":
        return None if payload["decision"] in _NOT_REFUSED else "rejected"
    if kind == "risk_check":
        return None if payload["approved"] else "rejected"
    return None if payload["accepted"] else "rejected"  # candidate_snapshot


async def _first_row(conn: aiosqlite.Connection, trace_id: str, below: int) -> int | None:
    """The first_seq of the trace's `traces` row in the main file that starts before `below`."""
    async with conn.execute(MIN_MAX.format(column="first_seq", table="traces")) as cur:
        row = await cur.fetchone()
    if row is None or row[0] is None:
        return None
    sql = f"SELECT MIN(first_seq) FROM traces WHERE {bucket_in('first_seq', row[0], row[1])} AND trace_id = ? AND first_seq < ?"
    async with conn.execute(sql, (trace_id, below)) as cur:
        found = await cur.fetchone()
    return None if found is None or found[0] is None else int(found[0])


async def _highest_seq(conn: aiosqlite.Connection, path: Path) -> int:
    """The highest seq ever assigned: main file, the rotation high-water mark, archive names."""
    candidates = [a.last_seq for a in list_archives(path)]
    async with conn.execute("SELECT MAX(seq) FROM events") as cur:
        row = await cur.fetchone()
    if row and row[0] is not None:
        candidates.append(int(row[0]))
    async with conn.execute("SELECT value FROM meta WHERE key = 'rotated_through'") as cur:
        row = await cur.fetchone()
    if row:
        candidates.append(int(row[0]))
    return max(candidates, default=0)


async def _connect(path: Path) -> aiosqlite.Connection:
    """A connection to the journal file, its folder made; a path SQLite cannot open gets the
    reason and the fix in one line rather than its bare "unable to open database file"."""
    try:
        await asyncio.to_thread(_prepare_folder, path)
        return await aiosqlite.connect(path)
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise JournalError(
            f"cannot open journal {path}: {reason}; check that its folder exists or can be made and is writable"
        ) from exc


def _keep_damaged_wal(path: Path) -> str | None:
    """Check the journal's -wal before SQLite opens it (see `wal`): a damaged one is copied
    beside it (`<journal>-wal.damaged-N`) and said loudly; returns what it took, or None.

    SQLite would go on without the transactions after the damage, and the first checkpoint
    would then restart the -wal over them: the copy keeps them for whoever salvages the file.
    The -wal is then cut to what SQLite reads back, which changes nothing SQLite sees but keeps
    the frames after the damage (still in the file until the -wal restarts, under the new
    frames) from being found, and copied, again at every open. A copy that cannot be made (a
    full disk) stops the open: starting would lose those transactions for good.

    A -wal that only ends in an unfinished transaction (a kill -9 in the middle of a write) is
    what a crash leaves, and loses nothing committed: an info line, no copy."""
    try:
        found = wal.inspect(path)
    except OSError as exc:  # SQLite's own open says what is wrong with the folder or the file
        log.debug("journal %s: -wal not checked: %s", path, exc)
        return None
    if found is None:
        return None
    if not found.damaged:
        if found.unfinished_frames:
            log.info(
                "journal %s: SQLite leaves out the last %d frame(s) of its -wal, which no commit completes: "
                "a write a crash interrupted, holding nothing that was committed",
                path, found.unfinished_frames,
            )
        return None
    try:
        copy = wal.keep_copy(found)
    except OSError as exc:
        raise JournalError(
            f"journal {path}: {found.describe()}, and keeping a copy of it failed ({exc.strerror or exc}): starting on "
            f"it would lose them for good at the first checkpoint; free {found.size:,} bytes beside it (or copy "
            f"{found.path} somewhere safe by hand first), then start again"
        ) from exc
    try:
        os.truncate(found.path, found.kept_bytes)
    except OSError as exc:
        log.warning("journal %s: could not cut the damaged -wal to what SQLite reads back (%s)", path, exc)
    detail = (
        f"{found.describe()}; a copy of the -wal as found is kept at {copy}. Positions and cash rebuilt from the "
        "journal miss whatever those events held: check them against the exchange, keep the copy, and check the "
        "disk (`dmesg`)"
    )
    log.warning("journal %s: %s", path, detail)
    return detail


def _prepare_folder(path: Path) -> None:
    """Run off the loop: a folder given as the journal is named as such (SQLite would only say
    it cannot open it), and the journal's own folder is made, as `--journal` promises.

    A folder made here is 0700 and a new journal is created 0600 before SQLite opens it: SQLite
    gives the -wal and -shm files the main file's mode, so the whole trading record is private
    whatever the umask. A folder or file that already exists is the user's choice and is left as is
    (`hotcoin doctor` warns when it is readable by others)."""
    if path.is_dir():
        raise JournalError(
            f"journal {path} is a directory; point --journal (or journal.path, HOTCOIN_JOURNAL) at a file, "
            f"e.g. {path / 'journal.sqlite'}"
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


async def _claim_identity(conn: aiosqlite.Connection, spill_dir: Path | None) -> str:
    """The journal's identity (`files.IDENTITY_KEY`), made on its first open by this version;
    and the folder its spill files may go to besides its own (`files.SPILL_DIR_KEY`), so a
    reader given only the journal looks there too."""
    async with conn.execute("SELECT value FROM meta WHERE key = ?", (IDENTITY_KEY,)) as cur:
        row = await cur.fetchone()
    if row is not None and str(row[0]):
        journal_id = str(row[0])
    else:
        journal_id = secrets.token_hex(6)
        await conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (IDENTITY_KEY, journal_id))
    if spill_dir is not None:
        await conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (SPILL_DIR_KEY, str(spill_dir)))
    return journal_id


async def _claim_schema_version(conn: aiosqlite.Connection, path: Path) -> None:
    """Refuse a journal of a newer schema; stamp ours on a new one (or an older one without it)."""
    async with conn.execute("SELECT value FROM meta WHERE key = ?", (SCHEMA_VERSION_KEY,)) as cur:
        row = await cur.fetchone()
    check_schema_version(None if row is None else str(row[0]), path)
    if row is None:
        await conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (SCHEMA_VERSION_KEY, str(SCHEMA_VERSION)))
