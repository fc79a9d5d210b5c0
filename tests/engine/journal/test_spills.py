"""A failed writer's spill files belong to one journal: found, taken back and reported only by it,
and read past a last line a kill cut short (see `files`: spill files, and `writer`)."""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config.sections.journal import JournalSection
from engine.errors import JournalError
from engine.journal import writer
from engine.journal.files import SPILL_ID_FIELD, spill_name
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal

FILL = {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03}


def settings() -> JournalSection:
    return JournalSection(batch_size=100, flush_interval_ms=20, max_pending=1000)


def seqs(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]


def line(seq: int, **extra: Any) -> bytes:
    """One spilled event, as a writer saves it (`json_line`)."""
    event = {"seq": seq, "ts_ms": seq, "trace_id": None, "cause": None, "kind": "fill", "symbol": None, "payload": FILL, "v": 1}
    return orjson.dumps({**event, **extra}) + b"\n"


async def journal_of(path: Path, events: int) -> str:
    """A journal at `path` holding seqs 1..`events`; returns its identity."""
    async with Journal.open(path, settings()) as j:
        for ts in range(events):
            j.emit("fill", ts_ms=ts, payload=FILL)
        return j.journal_id


async def spill_to_data_dir(path: Path, data: Path) -> Path:
    """The journal at `path` (seq 1 written) fails on a full disk, and its own folder cannot take
    the unwritten seqs 2..3 either: they go to `data`. Returns the spill file."""
    journal_id = await journal_of(path, 1)
    (path.parent / spill_name(path, journal_id, 2)).mkdir()  # stands in for the journal's full disk
    opened = Journal.open(path, settings(), spill_dir=data)
    j = await opened.__aenter__()
    with sqlite3.connect(path) as other:
        other.execute("CREATE TRIGGER full BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    j.emit("fill", ts_ms=1, payload=FILL)
    j.emit("fill", ts_ms=2, payload=FILL)
    with pytest.raises(JournalError, match="saved in"):
        await opened.__aexit__(None, None, None)
    (path.parent / spill_name(path, journal_id, 2)).rmdir()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER full")  # room again
    return data / spill_name(path, journal_id, 2)


async def test_a_spill_file_names_its_journal_in_its_name_and_every_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    spill = await spill_to_data_dir(tmp_path / "disk" / "journal.sqlite", data)
    journal_id = spill.name.split(".")[1]
    assert [orjson.loads(text)[SPILL_ID_FIELD] for text in spill.read_bytes().splitlines()] == [journal_id, journal_id]
    with sqlite3.connect(tmp_path / "disk" / "journal.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone() == (journal_id,)


async def test_another_journals_spill_in_the_shared_data_dir_neither_stops_nor_joins_this_one(tmp_path: Path) -> None:
    """Journal A (on its own disk, stem "journal") filled up and saved seqs 2..3 in the data dir;
    the engine on the default journal (data dir/journal.sqlite, same stem) refused to start,
    calling them its own, and `journal check` on it reported them missing. They are A's: B
    starts, its reader does not list them, and A's next start takes them back."""
    data = tmp_path / "data"
    data.mkdir()
    a = tmp_path / "disk" / "journal.sqlite"
    spill = await spill_to_data_dir(a, data)
    b = data / "journal.sqlite"
    async with Journal.open(b, settings(), spill_dir=data) as j:
        assert j.next_seq == 1
        j.emit("fill", ts_ms=0, payload=FILL)
    assert seqs(b) == [1]
    assert spill.is_file()  # not B's to take back
    with JournalReader(b, spill_dirs=[data]) as reader:
        assert reader.unwritten() == [] and reader.notes() == []
    with JournalReader(a, spill_dirs=[data]) as reader:
        assert [(u.path, u.first, u.last) for u in reader.unwritten()] == [(spill, 2, 3)]
    async with Journal.open(a, settings(), spill_dir=data) as j:
        assert j.next_seq == 4
    assert seqs(a) == [1, 2, 3]
    assert spill.with_name(spill.name + ".restored").is_file()


async def test_a_reader_finds_the_spill_dir_the_writer_recorded(tmp_path: Path) -> None:
    """A reader given only the journal (the engine's daily report, `hotcoin report`) looks in
    the folder its writer saves unwritten events to besides its own."""
    data = tmp_path / "data"
    data.mkdir()
    a = tmp_path / "disk" / "journal.sqlite"
    spill = await spill_to_data_dir(a, data)
    with JournalReader(a) as reader:
        assert [u.path for u in reader.unwritten()] == [spill]


async def test_an_older_spill_file_without_identity_is_taken_back_only_beside_its_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`<stem>.unwritten-<seq>.jsonl` from an older hotcoin: beside the journal it is this
    journal's, as it always was; in the data dir it may be any journal's of that stem, so it is
    left alone and named, not taken back nor a reason to refuse the start."""
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "disk" / "journal.sqlite"
    await journal_of(path, 1)
    away = data / "journal.unwritten-2.jsonl"
    away.write_bytes(line(2) + line(3))
    with JournalReader(path, spill_dirs=[data]) as reader:
        assert reader.unwritten() == []
        assert any(f"{away} holds events a failed writer saved without naming its journal" in note for note in reader.notes())
    with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
        async with Journal.open(path, settings(), spill_dir=data) as j:
            assert j.next_seq == 2
    assert f"{away} hold(s) events a failed writer saved without naming its journal" in caplog.text
    assert away.is_file() and seqs(path) == [1]
    beside = path.with_name("journal.unwritten-2.jsonl")
    away.rename(beside)  # the owner moves it where the warning said
    async with Journal.open(path, settings(), spill_dir=data) as j:
        assert j.next_seq == 4
    assert seqs(path) == [1, 2, 3]


async def test_a_file_named_for_this_journal_whose_events_name_another_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite"
    journal_id = await journal_of(path, 1)
    spill = tmp_path / spill_name(path, journal_id, 2)
    spill.write_bytes(line(2, journal_id="0123456789ab"))
    with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
        async with Journal.open(path, settings()) as j:
            assert j.next_seq == 2
    assert "holds events another journal (id 0123456789ab" in caplog.text
    assert spill.is_file() and seqs(path) == [1]


async def test_a_torn_last_line_is_left_out_and_the_events_before_it_taken_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine killed in the middle of an append (or a power cut) leaves the last line cut
    short: the next start refused outright ("unexpected end of data: line 1 column 358") while
    `journal check` said ok. The whole events are taken back; the cut line is named."""
    path = tmp_path / "j.sqlite"
    journal_id = await journal_of(path, 1)
    spill = tmp_path / spill_name(path, journal_id, 2)
    whole = b"".join(line(seq, journal_id=journal_id) for seq in range(2, 10))
    spill.write_bytes(whole + line(10, journal_id=journal_id)[:-40])
    with JournalReader(path) as reader:
        assert [(u.first, u.last, u.torn_line) for u in reader.unwritten()] == [(2, 9, 9)]
        assert any(f"line 9 of {spill}, its last, was cut short" in note for note in reader.notes())
        assert reader.check()[0]["unwritten"][0]["torn_line"] == 9
    with caplog.at_level(logging.WARNING, logger="hotcoin.journal"):
        async with Journal.open(path, settings()) as j:
            assert j.next_seq == 10
    assert f"line 9 of {spill}, its last, was cut short" in caplog.text
    assert seqs(path) == list(range(1, 10))
    assert spill.with_name(spill.name + ".restored").is_file()


@pytest.mark.parametrize(
    ("damage", "number"),
    [(b"{not json\n", 2), (b'{"seq": 3}\n', 2), (b"[1, 2]\n", 2)],
    ids=["not-json", "fields-missing", "not-an-object"],
)
async def test_a_bad_line_before_the_last_is_refused_with_its_line_number(tmp_path: Path, damage: bytes, number: int) -> None:
    path = tmp_path / "j.sqlite"
    journal_id = await journal_of(path, 1)
    spill = tmp_path / spill_name(path, journal_id, 2)
    spill.write_bytes(line(2, journal_id=journal_id) + damage + line(4, journal_id=journal_id))
    with pytest.raises(JournalError, match=rf"cannot read the unwritten events saved in {spill}: line {number}: "):
        async with Journal.open(path, settings()):
            pass
    assert seqs(path) == [1] and spill.is_file()
    spill.write_bytes(line(2, journal_id=journal_id) + damage)  # a whole last line (it has its newline): damage too
    with pytest.raises(JournalError, match=rf"saved in {spill}: line {number}: "):
        async with Journal.open(path, settings()):
            pass


def test_an_append_that_fails_midway_is_cut_back_to_where_it_began(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills in the middle of an append left half a line; the next append, once
    there was room, went on after it, and the half line inside the file refused the next start."""
    spill = tmp_path / "j.0123456789ab.unwritten-2.jsonl"
    spill.write_bytes(line(2))
    real_write = writer.os.write

    def half_then_full(fd: int, data: Any) -> int:
        if len(data) > 10:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        writer._append(spill, line(3) + line(4))
    monkeypatch.undo()
    assert spill.read_bytes() == line(2)
    writer._append(spill, line(3))
    assert spill.read_bytes() == line(2) + line(3)
    made = tmp_path / "j.0123456789ab.unwritten-5.jsonl"
    writer._append(made, line(5))
    assert made.stat().st_mode & 0o777 == 0o600  # the trading record stays private, as the journal is


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_journal_deleted_or_replaced_under_the_writer_is_a_journal_failure(tmp_path: Path, how: str) -> None:
    """Audit: `rm j.sqlite*` while the engine ran went unnoticed; SQLite kept writing into the
    unlinked file and everything after was lost. The writer notices before the next batch and
    fails as on a full disk: the events go to the spill file, and the engine goes exits-only."""
    path = tmp_path / "j.sqlite"
    opened = Journal.open(path, settings())
    j = await opened.__aenter__()
    j.emit("fill", ts_ms=0, payload=FILL)
    await j.flush()
    for name in ("j.sqlite", "j.sqlite-wal", "j.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    if how == "replaced":
        with sqlite3.connect(path) as other:  # e.g. a backup restored over it
            other.execute("CREATE TABLE t (x)")
    j.emit("fill", ts_ms=1, payload=FILL)
    now = "no longer exists" if how == "deleted" else "now names another file"
    with pytest.raises(JournalError, match=rf"journal {path} was deleted or replaced while the engine ran \(the path {now}\)"):
        await j.flush()
    spill = tmp_path / spill_name(path, j.journal_id, 2)
    assert j.saving and j.failure is not None and "was deleted or replaced" in j.failure
    assert [orjson.loads(text)["seq"] for text in spill.read_bytes().splitlines()] == [2]
    j.emit("fill", ts_ms=2, payload=FILL)
    await j.secure()  # an exit order's write-ahead: saved
    with pytest.raises(JournalError, match="was deleted or replaced"):
        await opened.__aexit__(None, None, None)
    assert [orjson.loads(text)["seq"] for text in spill.read_bytes().splitlines()] == [2, 3]
