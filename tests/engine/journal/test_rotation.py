from __future__ import annotations

import io
import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from engine.config.sections.journal import JournalSection
from engine.errors import JournalError
from engine.journal.files import archive_dir, list_archives
from engine.journal.reader import JournalReader
from engine.journal.rotation import DAY_MS, MainFileState, plan
from engine.journal.schema import ddl
from engine.journal.trace import summarise
from engine.journal.writer import Journal
from engine.runtime.recovery import read_journal
from tests.engine.journal.rotation_killer import killed_mid_rotation
from tests.kit.domain import T0
from tests.kit.events import entered_trace, filter_rejected_trace, rule_rejected_trace
from tests.kit.sqlite_faults import sqlite_error
from tests.kit.waiting import eventually

FILL = {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03}
TICK = {"code": "tick", "level": "L1", "detail": "quiet minute", "value": None, "threshold": None}


def settings(**overrides: Any) -> JournalSection:
    base = {"batch_size": 500, "flush_interval_ms": 10, "rotate_max_age_days": 1.0, "retention_archives": 0}
    return JournalSection(**{**base, **overrides})


def count(path: Path, sql: str) -> Any:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (MainFileState(0, None, None, None), None),
        (MainFileState(500_000, 1, 100, None), None),
        (MainFileState(500_000, 1, 100, 40), (1, 40)),
        (MainFileState(4_000_000, 1, 100, None), (1, 75)),  # shrink to half of 2 MB: move 3/4
        (MainFileState(4_000_000, 1, 100, 90), (1, 90)),
        (MainFileState(500_000, 51, 100, 30), None),  # aged seq already archived
        (MainFileState(4_000_000, 1, 100, 500), (1, 100)),
    ],
    ids=["empty", "young-and-small", "aged", "oversize", "aged-wins", "stale-aged", "never-past-last"],
)
def test_plan_picks_the_old_end_of_the_file(state: MainFileState, expected: tuple[int, int] | None) -> None:
    assert plan(state, max_bytes=2_000_000) == expected


async def test_age_rotation_archives_old_events_and_the_reader_still_sees_a_split_trace(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    later = T0 + 2 * DAY_MS
    async with Journal.open(path, settings()) as j:
        filter_rejected_trace(j, ts_ms=T0)  # seq 1
        entered = entered_trace(j, ts_ms=T0, hold_ms=2 * DAY_MS)  # seqs 2..8 at T0, exit 9..12 two days later
        archives = await j.rotate(now_ms=later + 1)
        rule_rejected_trace(j, ts_ms=later)
        # the trade goes on after its start was archived: a second traces row, merged by the reader
        j.emit("fill", ts_ms=later + 5, trace_id=entered.trace_id, symbol=entered.symbol, payload=FILL)
    assert [a.name for a in archives] == ["j-1-8.sqlite"]
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(1, 8)]
    assert count(path, "SELECT MIN(seq) FROM events") == 9
    assert count(archives[0], "SELECT COUNT(*) FROM events") == 8
    with JournalReader(path) as reader:
        events = reader.trace(entered.trace_id)
        assert [e.seq for e in events] == [*range(2, 13), 15]
        summary = summarise(entered.trace_id, events)
        assert summary.verdict.outcome == "entered"
        assert summary.realised_pnl == pytest.approx(4.892)
        listed = {r.trace_id: r for r in reader.traces()}
        assert listed[entered.trace_id].first_seq == 2
        assert listed[entered.trace_id].outcome == "entered"
        assert len(listed) == 3
        assert [e.seq for e in reader.events()] == list(range(1, 16))


async def test_size_rotation_shrinks_the_main_file_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(rotate_max_bytes=1_000_000, rotate_max_age_days=3650)) as j:
        traces = [entered_trace(j, symbol=f"C{i}/USDT", ts_ms=T0 + i * 1000) for i in range(300)]
        total = j.next_seq - 1
        archives = await j.rotate()
        assert j.stats.rotations == 1
    assert len(archives) == 1
    with sqlite3.connect(path) as conn:
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size"))
    assert (pages - free) * size < 1_000_000
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.events()] == list(range(1, total + 1))
        assert len(reader.trace(traces[0].trace_id)) == 11
        assert len(reader.trace(traces[-1].trace_id)) == 11


async def test_the_writer_rotates_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(), rotation_check_s=0) as j:
        for i in range(10):
            j.emit("fill", ts_ms=T0 + i, payload=FILL)
        await j.flush()
        j.emit("fill", ts_ms=T0 + 3 * DAY_MS, payload=FILL)  # the old events are now 3 days old
        await eventually(lambda: j.stats.rotations == 1)
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(1, 10)]


async def test_archives_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Rotated history is as private as the journal: the archive folder 0700 and each archive
    (and SQLite's -journal beside it, which takes the archive's mode) 0600, set by rotation
    itself rather than left to the process umask (a library caller, or a test, keeps 022)."""
    path = tmp_path / "j.sqlite"
    old = os.umask(0o022)
    try:
        async with Journal.open(path, settings()) as j:
            for i in range(5):
                j.emit("fill", ts_ms=T0 + i, payload=FILL)
            (archive,) = await j.rotate(now_ms=T0 + 2 * DAY_MS)
    finally:
        os.umask(old)
    assert stat.S_IMODE(archive_dir(path).stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in archive_dir(path).iterdir()} == {archive.name: 0o600}


async def test_retention_deletes_the_oldest_archives_and_seq_survives_them(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(retention_archives=2)) as j:
        for day in range(4):
            for i in range(5):
                j.emit("risk_event", ts_ms=T0 + day * 2 * DAY_MS + i, payload=TICK)
            await j.rotate(now_ms=T0 + (day * 2 + 2) * DAY_MS + 10)  # everything written so far is old
        assert j.stats.archives_deleted == 2
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(11, 15), (16, 20)]
    assert count(path, "SELECT COUNT(*) FROM events") == 0
    async with Journal.open(path, settings()) as j:
        assert j.emit("fill", ts_ms=T0 + 9 * DAY_MS, payload=FILL) == 21
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.events()] == [*range(11, 22)]


async def test_an_interrupted_rotation_is_finished_on_open_and_never_shows_twice(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        trace = entered_trace(j)
    # Crash after copying seqs 1..5 into the archive, before deleting them from the main file.
    target = archive_dir(path) / "j-1-5.sqlite"
    target.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute("ATTACH DATABASE ? AS arc", (str(target),))
        for stmt in ddl("arc"):
            conn.execute(stmt)
        conn.execute("INSERT INTO arc.events SELECT * FROM events WHERE seq <= 5")
        conn.execute("""INSERT INTO meta VALUES ('rotation', '{"archive": "j-1-5.sqlite", "first": 1, "last": 5}')""")
        conn.commit()
        conn.execute("DETACH DATABASE arc")
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.trace(trace.trace_id)] == list(range(1, 12))
        assert [e.seq for e in reader.events()] == list(range(1, 12))
    async with Journal.open(path, settings()) as j:
        assert j.next_seq == 12
    assert count(path, "SELECT MIN(seq) FROM events") == 6
    assert count(path, "SELECT COUNT(*) FROM meta WHERE key = 'rotation'") == 0
    assert count(target, "SELECT COUNT(*) FROM events") == 5
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.trace(trace.trace_id)] == list(range(1, 12))


async def test_last_by_symbol_reads_archives_and_the_newest_file_wins(tmp_path: Path) -> None:
    """Each symbol's last position update before a time, wherever it lies: DOGE's only in an
    archive, PEPE's open archived and its close in the main file, SOL's after the time."""
    path = tmp_path / "j.sqlite"

    def update(j: Journal, symbol: str, ts: int, action: str, qty: float) -> None:
        j.emit("position_update", ts_ms=ts, symbol=symbol, payload={"action": action, "quantity": qty, "entry_price": 0.3, "realised_pnl": 0.0})

    later = T0 + 2 * DAY_MS
    async with Journal.open(path, settings()) as j:
        update(j, "DOGE/USDT", T0, "open", 100.0)
        update(j, "PEPE/USDT", T0, "open", 50.0)
        assert await j.rotate(now_ms=later + 1)
        update(j, "PEPE/USDT", later, "close", 0.0)
        update(j, "SOL/USDT", later + 10, "open", 1.0)
    with JournalReader(path) as reader:
        found = reader.last_by_symbol(until_ms=later + 10, kind="position_update")
    assert {s: (e.ts_ms, e.payload["quantity"]) for s, e in found.items()} == {
        "DOGE/USDT": (T0, 100.0),
        "PEPE/USDT": (later, 0.0),
    }


async def test_age_rotation_writes_one_archive_per_age_period_not_one_per_check(tmp_path: Path) -> None:
    """A quiet engine past the age limit, checked every 'minute': moving whatever had just aged
    at each check made one tiny archive per check, so retention kept minutes of history."""
    path = tmp_path / "j.sqlite"
    hour = DAY_MS // 24
    async with Journal.open(path, settings(), rotation_check_s=1e9) as j:
        for h in range(24 * 5):  # five days of one event an hour, a rotation check after each
            j.emit("risk_event", ts_ms=T0 + h * hour, payload=TICK)
            await j.rotate()
    # one archive a day (the age), each a day of events: at 2, 3 and 4 days, never in between
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(1, 24), (25, 48), (49, 72)]
    assert count(path, "SELECT MIN(seq) FROM events") == 73


async def test_retention_never_deletes_an_archive_recovery_replays(tmp_path: Path) -> None:
    """Recovery books cash and positions from every fill journaled: retention deleting the
    archive of an old buy booked the wrong cash after a restart and forgot the position."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(retention_archives=1)) as j:
        j.emit("fill", ts_ms=T0, symbol="DOGE/USDT", trace_id="t1", payload=FILL)  # a position still held
        for day in range(1, 4):
            for i in range(5):
                j.emit("risk_event", ts_ms=T0 + day * 2 * DAY_MS + i, payload=TICK)
            await j.rotate(now_ms=T0 + (day * 2 + 2) * DAY_MS + 10)
        assert j.stats.archives_deleted == 1
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(1, 6), (12, 16)]  # (7, 11) deleted, (1, 6) kept
    recovered = read_journal(path, 100.0)
    assert recovered.cash == pytest.approx(100.0 - 30.03)
    assert list(recovered.book.holdings) == ["DOGE/USDT"]


async def test_open_says_it_finished_an_interrupted_rotation_and_applies_retention(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings()) as j:
        for i in range(10):
            j.emit("risk_event", ts_ms=T0 + i, payload=TICK)
        (first,) = await j.rotate(now_ms=T0 + 2 * DAY_MS)  # seqs 1..10: a quiet archive
        for i in range(5):
            j.emit("risk_event", ts_ms=T0 + 2 * DAY_MS + i, payload=TICK)
    # Crash after copying seqs 11..15 into their archive, before deleting them from the main file.
    target = archive_dir(path) / "j-11-15.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("ATTACH DATABASE ? AS arc", (str(target),))
        for stmt in ddl("arc"):
            conn.execute(stmt)
        conn.execute("INSERT INTO arc.events SELECT * FROM events WHERE seq BETWEEN 11 AND 15")
        conn.execute("""INSERT INTO meta VALUES ('rotation', '{"archive": "j-11-15.sqlite", "first": 11, "last": 15}')""")
        conn.commit()
        conn.execute("DETACH DATABASE arc")
    with caplog.at_level("WARNING", logger="hotcoin.journal"):
        async with Journal.open(path, settings(retention_archives=1)) as j:
            assert j.stats.archives_deleted == 1
    assert [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()] == [
        f"journal {path}: finished a rotation a crash had interrupted: moved seq 11..15 to {target}"
    ]
    assert not first.exists()
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(11, 15)]


async def _ticks(path: Path, n: int, ts_ms: int) -> None:
    async with Journal.open(path, settings()) as j:
        for i in range(n):
            j.emit("risk_event", ts_ms=ts_ms + i, payload=TICK)


async def _rotate_all(path: Path, now_ms: int) -> None:
    async with Journal.open(path, settings()) as j:
        await j.rotate(now_ms=now_ms)


async def test_a_reader_opened_before_a_rotation_still_exports_every_event(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    await _ticks(path, 20, T0)
    with JournalReader(path) as reader:  # e.g. `hotcoin journal export` starting
        await _rotate_all(path, T0 + 2 * DAY_MS)  # the engine moves seqs 1..20 to an archive
        assert count(path, "SELECT COUNT(*) FROM events") == 0
        lines = io.BytesIO()
        assert reader.export_jsonl(lines) == 20
        assert [e.seq for e in reader.events()] == list(range(1, 21))


async def test_a_rotation_in_the_middle_of_a_read_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    await _ticks(path, 10, T0)
    await _rotate_all(path, T0 + 2 * DAY_MS)  # seqs 1..10 in an archive
    await _ticks(path, 10, T0 + 2 * DAY_MS)  # seqs 11..20 in the main file
    with JournalReader(path) as reader:
        events = reader.events()
        seen = [next(events).seq]  # reading the archive
        await _rotate_all(path, T0 + 4 * DAY_MS)  # seqs 11..20 move to a new archive meanwhile
        seen += [e.seq for e in events]
    assert seen == list(range(1, 21))


async def test_size_rotation_gives_the_space_back_to_the_file_system(tmp_path: Path) -> None:
    """A DELETE only frees pages for reuse: the main file kept its peak size for good."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(rotate_max_bytes=1_000_000, rotate_max_age_days=3650)) as j:
        for i in range(1000):
            entered_trace(j, symbol=f"C{i}/USDT", ts_ms=T0 + i * 1000)
        await j.flush()
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        peak = path.stat().st_size
        assert peak > 3_000_000
        await j.rotate()
        assert count(path, "PRAGMA freelist_count") == 0
        assert path.stat().st_size < peak / 2


async def test_a_journal_made_without_auto_vacuum_names_the_one_off_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite"
    with sqlite3.connect(path) as conn:  # a journal as earlier releases made it
        for stmt in ddl():
            conn.execute(stmt)
    with caplog.at_level("WARNING", logger="hotcoin.journal"):
        async with Journal.open(path, settings()) as j:
            for day in range(2):
                j.emit("risk_event", ts_ms=T0 + day * 2 * DAY_MS, payload=TICK)
                await j.rotate(now_ms=T0 + (day * 2 + 2) * DAY_MS)
            assert j.stats.rotations == 2
    told = [r.getMessage() for r in caplog.records if "VACUUM" in r.getMessage()]
    assert len(told) == 1  # once per run
    assert "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;" in told[0]


KILLED_EVENTS = 1200  # seqs 1..600 archived, 601..1200 being copied into their archive at the kill


@pytest.fixture(scope="module")
def killed_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal whose writer was killed (SIGKILL) while copying a chunk into a new archive,
    made once: each test reads a copy of it."""
    return killed_mid_rotation(tmp_path_factory.mktemp("killed"), KILLED_EVENTS)


def _copy(journal: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of the killed journal in `folder`: its path and the archive the kill left mid-write."""
    shutil.copytree(journal.parent, folder / "copy")
    path = folder / "copy" / journal.name
    half = archive_dir(path) / f"{path.stem}-{KILLED_EVENTS // 2 + 1}-{KILLED_EVENTS}.sqlite"
    hot = half.with_name(half.name + "-journal")
    assert hot.exists() and hot.read_bytes()[:8] == bytes.fromhex("d9d505f920a163d7")  # SQLite's hot-journal magic
    return path, half


def test_a_rotation_killed_mid_copy_is_readable_at_once_and_loses_nothing(killed_journal: Path, tmp_path: Path) -> None:
    """Audit: kill -9 during a rotation left `<archive>-journal` beside an archive, and every
    read command (traces, replay, journal check) failed with "attempt to write a readonly
    database" until the engine was started again. The reader lets SQLite roll the crash's
    write back; the events of the unfinished copy are still in the main file."""
    path, half = _copy(killed_journal, tmp_path)
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.events()] == list(range(1, KILLED_EVENTS + 1))
        assert reader.last_ts_ms() == T0 + KILLED_EVENTS - 1
        report = {Path(r["path"]).name: r for r in reader.check()}
    assert {name: (r["integrity"], r["events"]) for name, r in report.items()} == {
        path.name: ("ok", KILLED_EVENTS // 2),
        half.name: ("ok", 0),
        f"{path.stem}-1-{KILLED_EVENTS // 2}.sqlite": ("ok", KILLED_EVENTS // 2),
    }
    assert not half.with_name(half.name + "-journal").exists()


async def test_the_engine_still_finishes_a_rotation_whose_crash_a_reader_rolled_back(killed_journal: Path, tmp_path: Path) -> None:
    path, half = _copy(killed_journal, tmp_path)
    with JournalReader(path) as reader:
        assert len(list(reader.events())) == KILLED_EVENTS
    async with Journal.open(path, settings()) as j:
        assert j.next_seq == KILLED_EVENTS + 1
    assert count(half, "SELECT COUNT(*) FROM events") == KILLED_EVENTS // 2
    assert count(path, "SELECT COUNT(*) FROM events") == 0
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.events()] == list(range(1, KILLED_EVENTS + 1))


def test_an_archive_that_cannot_be_rolled_back_names_the_crash_and_the_fix(
    killed_journal: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On read-only media (or in a folder the user cannot write) SQLite cannot roll the crash
    back: the command says that a crash interrupted a rotation, and what finishes it. (Faked as
    SQLite fails there: root writes whatever the modes say.)"""
    path, half = _copy(killed_journal, tmp_path)
    real = sqlite3.connect

    def read_only_media(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        if str(database) == f"{half.resolve().as_uri()}?mode=rw":
            raise sqlite_error("SQLITE_READONLY_ROLLBACK")
        return real(database, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", read_only_media)
    with JournalReader(path) as reader, pytest.raises(JournalError) as err:
        list(reader.events())
    said = str(err.value)
    assert said.startswith(f"cannot read journal {half}: a rotation a crash interrupted left it half-written")
    assert f"needs write access to {half.parent}" in said and "start the engine once on this journal (`hotcoin run`)" in said
    assert "is it a hotcoin journal" not in said
    assert half.with_name(half.name + "-journal").exists()  # nothing was changed


async def test_a_reader_leaves_a_live_writers_archive_transaction_alone(tmp_path: Path) -> None:
    """The reader rolls back only what SQLite calls hot: a journal beside an archive whose
    writer is alive (it holds its lock) is the writer's, and its transaction commits."""
    path = tmp_path / "j.sqlite"
    await _ticks(path, 10, T0)
    await _rotate_all(path, T0 + 3 * DAY_MS)
    (archive,) = list_archives(path)
    with sqlite3.connect(archive.path, isolation_level=None) as live:
        live.execute("BEGIN IMMEDIATE")
        live.execute("DELETE FROM events WHERE seq > 5")
        assert archive.path.with_name(archive.path.name + "-journal").exists()
        with JournalReader(path) as reader:
            assert [e.seq for e in reader.events()] == list(range(1, 11))
        live.execute("COMMIT")
    assert count(archive.path, "SELECT COUNT(*) FROM events") == 5


async def test_retention_without_checkpoints_records_what_it_deletes(tmp_path: Path) -> None:
    """A backtest's journal has no checkpointer: retention deleted its quiet archives without
    a record, and `journal check` then called 66,885 seqs lost ("restore it from a backup"),
    `journal export` refused. Each deleted archive's range is recorded, apart from the
    checkpoint-bound `pruned_through` recovery reads; one kept for recovery stays between."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(retention_archives=1)) as j:
        for day in range(4):
            for i in range(5):
                if day == 1 and i == 0:
                    j.emit("fill", ts_ms=T0 + day * 2 * DAY_MS, symbol="DOGE/USDT", payload=FILL)  # recovery replays it
                else:
                    j.emit("risk_event", ts_ms=T0 + day * 2 * DAY_MS + i, payload=TICK)
            await j.rotate(now_ms=T0 + (day * 2 + 2) * DAY_MS + 10)
        assert j.stats.archives_deleted == 2
    assert [(a.first_seq, a.last_seq) for a in list_archives(path)] == [(6, 10), (16, 20)]
    with JournalReader(path) as reader:
        assert reader.deleted() == [(1, 5), (11, 15)]
        assert reader.missing() == []
        assert reader.meta("pruned_through") is None  # no checkpoint: recovery's record is untouched
        assert reader.check()[0]["deleted"] == [[1, 5], [11, 15]]
        buf = io.BytesIO()
        assert reader.export_jsonl(buf) == 10
    async with Journal.open(path, settings(retention_archives=1)) as j:  # and the record grows, merged
        j.emit("risk_event", ts_ms=T0 + 9 * DAY_MS, payload=TICK)
        await j.rotate(now_ms=T0 + 11 * DAY_MS)
    with JournalReader(path) as reader:
        assert reader.deleted() == [(1, 5), (11, 20)]
        assert reader.missing() == []


async def test_the_writer_rotates_while_its_queue_never_empties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine emitting faster than the writer commits: the rotation check waited for the
    queue of sealed batches to empty, which never came (702,000 events, a 699 MB main file
    with rotate_max_bytes at 1 MB). It follows each committed batch once due."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(batch_size=10), rotation_check_s=0) as j:
        for i in range(10):
            j.emit("risk_event", ts_ms=T0 + i, payload=TICK)  # one old batch
        real = j._try_write
        backlog: list[int] = []  # rotations seen at each write, while a batch still waits behind it

        async def busy(batch: Any) -> None:
            if len(backlog) < 20:  # the engine seals another batch while each one is written
                for i in range(10):
                    j.emit("risk_event", ts_ms=T0 + 3 * DAY_MS + i, payload=TICK)
                backlog.append(j.stats.rotations)
            await real(batch)

        monkeypatch.setattr(j, "_try_write", busy)
        await eventually(lambda: len(backlog) == 20)
        await j.flush()
    assert backlog[-1] >= 1, backlog
    assert list_archives(path)[0].first_seq == 1
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.events()] == list(range(1, 211))
