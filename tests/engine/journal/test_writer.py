from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config.sections.journal import JournalSection
from engine.errors import EventValidationError, JournalError
from engine.journal.files import spill_name
from engine.journal.writer import KNOWN_TRACES, Journal
from tests.kit.events import (
    close_all_trace,
    entered_trace,
    filter_rejected_trace,
    opened_trace,
    risk_rejected_trace,
    rule_rejected_trace,
)
from tests.kit.waiting import eventually

FILL = {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03}
HOLD = {"decision": "hold", "reason": "no signal exit fired", "rules": [], "features": {}}
CANDIDATE = {"heat": 50.0, "components": {}, "rank": 1, "price": 1.0, "filters": [], "accepted": True}


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


def settings(**overrides: Any) -> JournalSection:
    return JournalSection(**{"batch_size": 100, "flush_interval_ms": 20, "max_pending": 1000, **overrides})


async def test_events_are_written_in_batches_of_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(batch_size=100)) as j:
        seqs = [j.emit("fill", ts_ms=i, payload=FILL) for i in range(250)]
        await j.flush()
        assert j.last_flushed_seq == 250
        assert j.stats.batches == 3  # 100 + 100 + the 50 that flush() sealed
        assert j.stats.written == 250
    assert seqs == list(range(1, 251))
    assert rows(path, "SELECT COUNT(*), MIN(seq), MAX(seq) FROM events") == [(250, 1, 250)]


async def test_a_partial_batch_is_written_within_the_flush_interval(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite", settings(flush_interval_ms=10)) as j:
        j.emit("fill", ts_ms=1, payload=FILL)
        await eventually(lambda: j.last_flushed_seq == 1, timeout=5)
        assert j.stats.batches == 1


async def test_seq_continues_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        for i in range(5):
            j.emit("fill", ts_ms=i, payload=FILL)
    async with Journal.open(path, settings()) as j:
        assert j.last_flushed_seq == 5
        assert j.emit("fill", ts_ms=9, payload=FILL) == 6
    assert [r[0] for r in rows(path, "SELECT seq FROM events ORDER BY seq")] == [1, 2, 3, 4, 5, 6]


async def test_closing_flushes_everything(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(batch_size=1000, flush_interval_ms=60_000)) as j:
        for i in range(42):
            j.emit("fill", ts_ms=i, payload=FILL)
        assert j.last_flushed_seq == 0
    assert rows(path, "SELECT COUNT(*) FROM events") == [(42,)]


async def test_payload_is_stored_as_json_with_the_contract_columns(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        first = j.emit("fill", ts_ms=7, payload=FILL, trace_id="abc", symbol="DOGE/USDT")
        j.emit("order_result", ts_ms=8, payload={"client_order_id": "hc-1", "status": "filled", "error_class": None}, cause=first)
    got = rows(path, "SELECT seq, ts_ms, trace_id, cause, kind, symbol, json_extract(payload, '$.price'), v FROM events")
    assert got[0] == (1, 7, "abc", None, "fill", "DOGE/USDT", 0.3, 1)
    assert got[1][3] == 1


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("nonsense", {"payload": {}}, "unknown event kind"),
        ("fill", {"payload": {**FILL, "price": float("inf")}}, "not a finite number"),
        ("fill", {"payload": {k: v for k, v in FILL.items() if k != "side"}}, "lacks required field 'side'"),
        ("fill", {"payload": {**FILL, "extra": Decimal("1.5")}}, "not JSON-serialisable"),
        ("fill", {"payload": FILL, "cause": 99}, "cause must be the seq of an earlier event"),
        ("fill", {"payload": FILL, "trace_id": 12}, "trace_id must be a str"),
        ("fill", {"payload": FILL, "symbol": b"DOGE"}, "symbol must be a str"),
    ],
    ids=["unknown-kind", "infinite", "missing-field", "decimal", "future-cause", "int-trace-id", "bytes-symbol"],
)
async def test_malformed_events_raise_and_are_counted_per_kind(tmp_path: Path, kind: str, kwargs: dict[str, Any], message: str) -> None:
    async with Journal.open(tmp_path / "j.sqlite", settings()) as j:
        j.emit("fill", ts_ms=1, payload=FILL)
        with pytest.raises(EventValidationError, match=message):
            j.emit(kind, ts_ms=2, **kwargs)
        assert j.stats.rejected[kind] == 1
        assert j.emit("fill", ts_ms=3, payload=FILL) == 2  # a rejected event takes no seq


async def test_emit_after_close_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite", settings()) as j:
        pass
    with pytest.raises(JournalError, match="closed"):
        j.emit("fill", ts_ms=1, payload=FILL)


async def test_wait_writable_blocks_above_max_pending_and_resumes_when_the_writer_drains(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(max_pending=1000, batch_size=100)) as j:
        j.emit("fill", ts_ms=0, payload=FILL)
        await j.flush()
        blocker = sqlite3.connect(path, isolation_level=None)  # another process holding the write lock
        blocker.execute("BEGIN IMMEDIATE")
        try:
            for i in range(10):
                j.emit("fill", ts_ms=i, payload=FILL)
            await asyncio.wait_for(j.wait_writable(), 2)  # below the mark: returns at once
            for i in range(1000):
                j.emit("fill", ts_ms=i, payload=FILL)
            assert j.unwritten >= 1000
            waiter = asyncio.create_task(j.wait_writable())
            for _ in range(20):
                await asyncio.sleep(0)
            assert not waiter.done()
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        await asyncio.wait_for(waiter, 5)
        assert j.unwritten < 1000
    assert rows(path, "SELECT COUNT(*) FROM events") == [(1011,)]


async def test_a_writer_failure_surfaces_on_flush_and_close_and_keeps_the_events(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    opened = Journal.open(path, settings())
    j = await opened.__aenter__()
    j.emit("fill", ts_ms=0, payload=FILL)
    await j.flush()
    with sqlite3.connect(path) as other:  # e.g. the disk filled up
        other.execute("CREATE TRIGGER full BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    j.emit("fill", ts_ms=1, payload=FILL)
    with pytest.raises(JournalError, match=r"disk is full.*1 events are not written"):
        await j.flush()
    await j.wait_writable()  # saved to the spill file: the engine may go on closing positions
    assert j.saving and j.failure is not None and "disk is full" in j.failure
    with pytest.raises(JournalError, match="writer stopped"):
        await opened.__aexit__(None, None, None)
    assert rows(path, "SELECT COUNT(*) FROM events") == [(1,)]


def spill_files(folder: Path) -> list[Path]:
    return list(folder.glob("*.unwritten-*"))


async def shorten_busy_timeout(j: Journal, ms: int = 50) -> None:
    """SQLite's own wait for a lock (`busy_timeout`, 5 s in `schema.PRAGMAS`) cut short, so a
    lock held past it takes a fraction of a second here."""
    await j._conn.execute(f"PRAGMA busy_timeout={ms}")


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holding the journal's write lock (an sqlite3 shell in a transaction)."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


async def opened_with_one_event(path: Path) -> tuple[Journal, AbstractAsyncContextManager[Journal]]:
    """An open journal (and its context manager, to close it) with seq 1 written and a short
    busy_timeout, ready for another connection to take the lock."""
    opened = Journal.open(path, settings())
    j = await opened.__aenter__()
    await shorten_busy_timeout(j)
    j.emit("fill", ts_ms=0, payload=FILL)
    await j.flush()
    return j, opened


async def test_a_lock_held_past_busy_timeout_is_waited_out_and_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another connection (an sqlite3 shell in a transaction, a backup) holds the write lock
    longer than SQLite's busy_timeout: the writer keeps the batch and tries again rather than
    failing for good (which made the engine exits-only, then stopped it, though the lock went
    3 s later); once the lock goes every event is written, and nothing went to a spill file."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        await shorten_busy_timeout(j)
        j.emit("fill", ts_ms=0, payload=FILL)
        await j.flush()
        with write_lock_held(path):
            for i in range(1, 6):
                j.emit("fill", ts_ms=i, payload=FILL)
            with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
                await eventually(lambda: "locked by another connection" in caplog.text, timeout=5)
                await asyncio.sleep(0.5)  # ten busy_timeouts
            assert j.failure is None and j.unwritten == 5
            await asyncio.wait_for(j.wait_writable(), 1)  # below max_pending: the engine goes on
        with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
            await asyncio.wait_for(j.flush(), 5)
        assert j.failure is None and j.unwritten == 0
    assert rows(path, "SELECT seq FROM events ORDER BY seq") == [(s,) for s in range(1, 7)]
    assert not spill_files(tmp_path)
    assert "journal writes resumed" in caplog.text


async def test_a_lock_held_past_the_busy_bound_fails_the_writer_and_saves_the_events(tmp_path: Path) -> None:
    """Waiting has its bound (`BUSY_GIVE_UP_S`): past it the writer fails as on any other
    error, saying who holds the journal and what to do, and its events go to the spill file."""
    path = tmp_path / "j.sqlite"
    j, opened = await opened_with_one_event(path)
    j.busy_give_up_s = 0.3
    with write_lock_held(path):
        j.emit("fill", ts_ms=1, payload=FILL)
        with pytest.raises(JournalError, match=r"locked by another connection for 0\.3 s or more.*saved in "):
            await asyncio.wait_for(j.flush(), 5)
    spill = spill_of(j, 2)
    assert j.saving and spilled_seqs(spill) == [2]
    with pytest.raises(JournalError, match=r"JSON lines, as `hotcoin journal export` writes them"):
        await opened.__aexit__(None, None, None)


async def test_a_lock_still_held_when_the_journal_closes_is_waited_out_briefly_and_the_events_saved(tmp_path: Path) -> None:
    """Stopping while another connection holds the lock: the writer gives up on the shorter
    closing bound (`CLOSING_BUSY_GIVE_UP_S`), not the minute it waits while running, so its
    events reach the spill file before the console's stop allowance runs out and it kills the
    engine with them still in memory."""
    path = tmp_path / "j.sqlite"
    j, opened = await opened_with_one_event(path)
    j.closing_busy_give_up_s = 0.3  # busy_give_up_s stays at its 60 s
    with write_lock_held(path):
        j.emit("fill", ts_ms=1, payload=FILL)
        j.emit("fill", ts_ms=2, payload=FILL)
        with pytest.raises(JournalError, match=r"locked by another connection for 0\.3 s or more.*saved in "):
            await asyncio.wait_for(opened.__aexit__(None, None, None), 10)
    assert spilled_seqs(spill_of(j, 2)) == [2, 3]


def fail_writes(path: Path) -> None:
    """Every later insert fails as on a full disk (the writer sees a real sqlite3 error)."""
    with sqlite3.connect(path) as other:
        other.execute("CREATE TRIGGER full BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")


def spilled_seqs(path: Path) -> list[int]:
    return [orjson.loads(line)["seq"] for line in path.read_bytes().splitlines()]


def spill_of(j: Journal, first_seq: int, folder: Path | None = None) -> Path:
    """The spill file `j` saves its events from `first_seq` on to, in its own folder or `folder`."""
    return (folder or j.path.parent) / spill_name(j.path, j.journal_id, first_seq)


async def identity_of(path: Path) -> str:
    """The identity of the journal at `path`, made (with the journal) if it has none yet."""
    async with Journal.open(path, settings()) as j:
        return j.journal_id


async def failed_journal(path: Path, spill_dir: Path | None = None) -> tuple[Journal, AbstractAsyncContextManager[Journal]]:
    """An open journal (and its context manager, to close it) whose second event hit a full disk."""
    opened = Journal.open(path, settings(), spill_dir=spill_dir)
    j = await opened.__aenter__()
    j.emit("fill", ts_ms=0, payload=FILL)
    await j.flush()
    fail_writes(path)
    j.emit("fill", ts_ms=1, payload=FILL)
    return j, opened


async def test_a_failed_writer_saves_its_unwritten_events_beside_the_journal_and_says_where(tmp_path: Path) -> None:
    j, opened = await failed_journal(tmp_path / "j.sqlite")
    spill = spill_of(j, 2)
    with pytest.raises(JournalError, match=rf"saved in {spill}"):
        await j.flush()
    assert spilled_seqs(spill) == [2]  # saved at once, not only at close
    j.emit("run_stop", ts_ms=2, payload={"run_id": "r", "reason": "journal error"})
    with pytest.raises(JournalError, match=rf"2 events are not written .*saved in {spill}"):
        await opened.__aexit__(None, None, None)
    assert spilled_seqs(spill) == [2, 3]  # what came after the failure is appended at close


async def test_after_a_failure_every_batch_goes_on_to_the_spill_file_in_seq_order(tmp_path: Path) -> None:
    """An engine closing positions on a full disk: each batch reaches the spill file as it
    seals (not only at close), back-pressure and the write-ahead hold against that file, and
    the next open takes everything back in order."""
    path = tmp_path / "j.sqlite"
    j, opened = await failed_journal(path)
    spill = spill_of(j, 2)
    with pytest.raises(JournalError, match=rf"saved in {spill}"):
        await j.flush()
    assert j.failure == f"journal write failed: journal write to {path} failed at seq 2: database or disk is full; events saved to {spill}"
    for ts in range(3, 6):
        j.emit("fill", ts_ms=ts, payload=FILL)
    await eventually(lambda: spilled_seqs(spill) == [2, 3, 4, 5], timeout=10)
    await j.wait_writable()
    j.emit("run_stop", ts_ms=6, payload={"run_id": "r", "reason": "journal error"})
    await j.secure()  # what an exchange order waits for: on disk in the spill file
    assert spilled_seqs(spill) == [2, 3, 4, 5, 6]
    assert j.saving
    with pytest.raises(JournalError, match=rf"saved in {spill}"):
        await opened.__aexit__(None, None, None)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER full")
    async with Journal.open(path, settings()):
        pass
    assert rows(path, "SELECT seq FROM events ORDER BY seq") == [(s,) for s in range(1, 7)]


async def test_once_saving_fails_too_back_pressure_and_the_write_ahead_raise(tmp_path: Path) -> None:
    """Nothing could be recorded any more: the engine must stop rather than trade blind."""
    j, opened = await failed_journal(tmp_path / "j.sqlite")
    spill = spill_of(j, 2)
    with pytest.raises(JournalError):
        await j.flush()
    assert j.saving
    spill.unlink()
    spill.mkdir()  # the spill file's disk fails now too
    j.emit("fill", ts_ms=3, payload=FILL)
    await eventually(lambda: not j.saving, timeout=10)
    assert j.failure is not None and "saving the events failed too" in j.failure
    with pytest.raises(JournalError, match=r"saving them failed too \(.*Is a directory\); they are lost"):
        await j.wait_writable()
    with pytest.raises(JournalError, match="saving them failed too"):
        await j.secure()
    with pytest.raises(JournalError):
        await opened.__aexit__(None, None, None)


async def test_when_the_journal_folder_cannot_take_them_they_go_to_the_spill_dir(tmp_path: Path) -> None:
    name = spill_name(tmp_path / "j.sqlite", await identity_of(tmp_path / "j.sqlite"), 2)
    (tmp_path / name).mkdir()  # stands in for a full disk: writing there fails
    spill = tmp_path / "data" / name
    spill.parent.mkdir()
    _, opened = await failed_journal(tmp_path / "j.sqlite", spill.parent)
    with pytest.raises(JournalError, match=rf"saved in {spill}"):
        await opened.__aexit__(None, None, None)
    assert spilled_seqs(spill) == [2]


async def test_when_no_folder_takes_them_the_error_says_they_are_lost(tmp_path: Path) -> None:
    (tmp_path / spill_name(tmp_path / "j.sqlite", await identity_of(tmp_path / "j.sqlite"), 2)).mkdir()
    _, opened = await failed_journal(tmp_path / "j.sqlite")
    with pytest.raises(JournalError, match=r"saving them failed too \(.*j\.[0-9a-f]{12}\.unwritten-2\.jsonl: Is a directory\); they are lost"):
        await opened.__aexit__(None, None, None)


@pytest.mark.parametrize(
    ("factory", "outcome"),
    [(entered_trace, "entered"), (filter_rejected_trace, "rejected"), (rule_rejected_trace, "rejected"), (risk_rejected_trace, "rejected")],
    ids=["entered", "filter", "rule", "risk"],
)
async def test_traces_table_records_first_seq_symbol_and_outcome(tmp_path: Path, factory: Any, outcome: str) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(batch_size=3)) as j:  # small batches: a trace spans several
        trace = factory(j)
    assert rows(path, "SELECT trace_id, first_seq, ts_ms, symbol, outcome FROM traces") == [
        (trace.trace_id, 1, trace.ts_ms, trace.symbol, outcome)
    ]


async def test_entered_is_not_overridden_by_a_later_rejection(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        trace = entered_trace(j)
        await j.flush()
        j.emit("signal_snapshot", ts_ms=9, trace_id=trace.trace_id, payload={"decision": "hold", "reason": "", "rules": [], "features": {}})
    assert rows(path, "SELECT outcome FROM traces") == [("entered",)]


async def test_a_trace_continued_after_reopen_keeps_its_one_row(tmp_path: Path) -> None:
    """A position held across a restart: its events after it update the row its trace started
    (it got a second row saying "open", and `journal check` counted the trace twice). Batches
    of one event: those sealed before the first is written are pointed at the row too."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        trace = rule_rejected_trace(j)
        other = filter_rejected_trace(j)
    async with Journal.open(path, settings(batch_size=1)) as j:
        j.emit("fill", ts_ms=9, trace_id=trace.trace_id, payload=FILL)
        j.emit("signal_snapshot", ts_ms=10, trace_id=trace.trace_id, payload=HOLD, cause=3)
        j.emit("signal_snapshot", ts_ms=11, trace_id=other.trace_id, payload=HOLD, cause=1)
    assert rows(path, "SELECT trace_id, first_seq, outcome FROM traces ORDER BY first_seq") == [
        (trace.trace_id, 1, "entered"),  # a buy fill
        (other.trace_id, 3, "rejected"),
    ]


async def test_a_trace_forgotten_past_known_traces_keeps_its_one_row(tmp_path: Path) -> None:
    """A position held while more than `KNOWN_TRACES` newer traces came and went."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(batch_size=2000, max_pending=100_000)) as j:
        trace = opened_trace(j)
        for i in range(KNOWN_TRACES + 1):
            j.emit("candidate_snapshot", ts_ms=5, trace_id=f"c{i}", payload=CANDIDATE)
        j.emit("signal_snapshot", ts_ms=9, trace_id=trace.trace_id, payload=HOLD, cause=trace.seqs["opened"])
    assert rows(path, "SELECT first_seq FROM traces WHERE trace_id = ?", (trace.trace_id,)) == [(1,)]


def _entry(j: Journal, *statuses: str, buy: bool = False) -> None:
    cid = "hc-0123456789abcdef-e1"
    j.emit("order_attempt", ts_ms=1, trace_id="t", payload={
        "client_order_id": cid, "side": "buy", "order_type": "limit", "purpose": "entry", "quantity": "1",
    })  # fmt: skip
    for status in statuses:
        j.emit("order_result", ts_ms=2, trace_id="t", payload={"client_order_id": cid, "status": status, "error_class": None})
    if buy:
        j.emit("fill", ts_ms=3, trace_id="t", payload={**FILL, "client_order_id": cid})


@pytest.mark.parametrize(
    ("statuses", "buy", "outcome"),
    [
        ((), False, "ordered"),
        (("open",), False, "ordered"),
        (("rejected",), False, "not_filled"),
        (("open", "expired"), False, "not_filled"),
        (("open", "canceled"), False, "not_filled"),
        (("partially_filled", "canceled"), True, "entered"),
        (("filled",), True, "entered"),
    ],
    ids=["sent", "resting", "rejected", "expired", "canceled", "part-filled", "filled"],
)
async def test_an_entry_is_entered_only_once_a_buy_filled(tmp_path: Path, statuses: tuple[str, ...], buy: bool, outcome: str) -> None:
    """The traces table agrees with replay: an entry order the broker refused, or that ended
    unfilled, is not_filled; one still waiting is ordered; only a buy fill makes it entered.
    Each event in its own batch: the rows merge by rank whatever the batching."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(batch_size=1)) as j:
        _entry(j, *statuses, buy=buy)
    assert rows(path, "SELECT outcome FROM traces") == [(outcome,)]


async def test_a_close_all_trace_is_close_all_not_rejected(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        a = opened_trace(j, symbol="TOBB/USDT")
        ca = close_all_trace(j, [a])
    assert rows(path, "SELECT trace_id, outcome FROM traces ORDER BY first_seq") == [(a.trace_id, "entered"), (ca.trace_id, "close_all")]


async def test_a_file_that_is_not_a_journal_is_refused_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("just text, not sqlite " * 100)
    with pytest.raises(JournalError, match=r"cannot open journal .*notes\.sqlite"):
        async with Journal.open(path, settings()):
            pass


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("SQLITE_FULL", "database or disk is full; the disk holding .* is full: free space there"),
        ("SQLITE_IOERR", "disk I/O error; the disk failed to read or write it"),
        ("SQLITE_CANTOPEN", "unable to open database file; the file or .* is read-only to this user"),
        ("SQLITE_READONLY", "attempt to write a readonly database; the file or .* is read-only to this user"),
        ("SQLITE_NOTADB", "file is not a database; is it a hotcoin journal"),
        ("SQLITE_CORRUPT", r"is damaged: database disk image is malformed .*sqlite3 .* \.dump > "),
    ],
)
async def test_an_open_that_sqlite_refuses_says_the_cause_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: str, cause: str
) -> None:
    """Audit: `Journal.open` followed every SQLite error with "is it a hotcoin journal?", on a
    full disk too ("database or disk is full; is it a hotcoin journal?"). (Faked: a test cannot
    fill the disk or make root's files read-only.)"""
    from engine.journal import writer
    from tests.kit.sqlite_faults import sqlite_error

    async def failing(*_: object) -> int:
        raise sqlite_error(error)

    monkeypatch.setattr(writer, "_highest_seq", failing)
    path = tmp_path / "j.sqlite"
    with pytest.raises(JournalError, match=rf"journal {path}.*{cause}") as err:
        async with Journal.open(path, settings()):
            pass
    assert ("is it a hotcoin journal" in str(err.value)) == (error == "SQLITE_NOTADB")


async def test_a_directory_or_an_unmakeable_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match=rf"journal {tmp_path} is a directory; point --journal .* at a file, e.g. {tmp_path}/journal.sqlite"):
        async with Journal.open(tmp_path, settings()):
            pass
    (tmp_path / "a-file").write_text("")
    with pytest.raises(JournalError, match=r"cannot open journal .*a-file/j.sqlite: .*; check that its folder exists or can be made"):
        async with Journal.open(tmp_path / "a-file" / "j.sqlite", settings()):
            pass


async def test_a_reader_sees_flushed_events_while_the_writer_is_open(tmp_path: Path) -> None:
    from engine.journal.reader import JournalReader

    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        trace = entered_trace(j)
        await j.flush()
        with JournalReader(path) as reader:
            assert len(reader.trace(trace.trace_id)) == 11
        j.emit("fill", ts_ms=5, trace_id=trace.trace_id, payload=FILL)
        await j.flush()
        with JournalReader(path) as reader:
            assert len(reader.trace(trace.trace_id)) == 12


async def test_the_next_open_takes_back_what_a_failed_writer_saved(tmp_path: Path) -> None:
    """The events a full disk kept out go back in, with their own seqs, before anything else
    (recovery reads the journal after that: the fill that opened a position may be among them)."""
    path = tmp_path / "j.sqlite"
    j, opened = await failed_journal(path)
    spill = spill_of(j, 2)
    j.emit("run_stop", ts_ms=2, payload={"run_id": "r", "reason": "journal error"})
    with pytest.raises(JournalError):
        await opened.__aexit__(None, None, None)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER full")  # the disk has room again
    async with Journal.open(path, settings()) as j2:
        assert j2.next_seq == 4
        j2.emit("run_start", ts_ms=3, payload={"run_id": "r2", "config_hash": "c", "mode": "SIM"})
    assert rows(path, "SELECT seq, kind FROM events ORDER BY seq") == [(1, "fill"), (2, "fill"), (3, "run_stop"), (4, "run_start")]
    assert not spill.exists() and spill.with_name(spill.name + ".restored").is_file()


async def test_saved_events_that_do_not_continue_the_journal_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        j.emit("fill", ts_ms=0, payload=FILL)
    spill = tmp_path / "j.unwritten-5.jsonl"
    spill.write_bytes(orjson.dumps({"seq": 5, "ts_ms": 1, "trace_id": None, "cause": None, "kind": "fill", "symbol": None,
                                    "payload": FILL, "v": 1}) + b"\n")  # fmt: skip
    with pytest.raises(JournalError, match=rf"ends at seq 1, and the unwritten events saved in {spill} do not continue it"):
        async with Journal.open(path, settings()):
            pass
    assert spill.is_file()  # left for the owner to look at
