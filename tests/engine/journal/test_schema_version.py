"""Journals carry their schema version; a newer journal or a newer event is refused, not misread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.errors import JournalError
from engine.journal.events import known_versions
from engine.journal.reader import JournalReader
from engine.journal.schema import SCHEMA_VERSION
from engine.journal.writer import Journal
from engine.runtime.recovery import read_journal

FILL = {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03}


def sql(path: Path, statement: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(statement).fetchall()


async def test_a_new_journal_records_its_schema_version_and_an_older_one_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path):
        pass
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    sql(path, "DELETE FROM meta WHERE key = 'schema_version'")  # a journal from before the key
    with JournalReader(path):
        pass
    async with Journal.open(path):
        pass
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


async def test_a_journal_of_a_newer_schema_is_refused_by_writer_and_reader(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path):
        pass
    sql(path, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    refusal = rf"journal {path} was written by a newer hotcoin \(journal schema {SCHEMA_VERSION + 1}.*upgrade hotcoin"
    with pytest.raises(JournalError, match=refusal):
        async with Journal.open(path):
            pass
    with pytest.raises(JournalError, match=refusal):
        JournalReader(path)


async def test_an_event_newer_than_its_kind_is_refused_for_recovery(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path) as journal:
        journal.emit("fill", ts_ms=1, payload=FILL)
        journal.emit("fill", ts_ms=2, payload=FILL)
    with JournalReader(path) as reader:
        assert len(list(known_versions(reader.events(), path))) == 2
    sql(path, "UPDATE events SET v = 2 WHERE seq = 2")  # a newer hotcoin reshaped `fill`
    with JournalReader(path) as reader, pytest.raises(JournalError, match=r"seq 2 \(fill\) is version 2.*upgrade hotcoin"):
        list(known_versions(reader.events(), path))


async def test_recovery_refuses_a_newer_journal_with_the_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path) as journal:
        journal.emit("fill", ts_ms=1, payload=FILL)
    sql(path, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    with pytest.raises(JournalError, match="upgrade hotcoin"):
        read_journal(path, 1000.0)
