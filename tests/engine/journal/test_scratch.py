"""A backtest's own new journal (`Journal.open(scratch=True)`): written without a -wal or
syncs, the same events as any journal, and a WAL journal again once closed."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from engine.journal.writer import Journal

FILL = {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03}


def _contents(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        events = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
        return [*events, *conn.execute("SELECT * FROM traces ORDER BY first_seq").fetchall()]


def _mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


async def _write(path: Path, *, scratch: bool) -> list[str]:
    """Emit 250 fills in three flushes; returns the journal mode the writer used."""
    async with Journal.open(path, scratch=scratch) as j:
        async with j._conn.execute("PRAGMA journal_mode") as cur:
            row = await cur.fetchone()
        for i in range(250):
            j.emit("fill", ts_ms=i, payload=FILL, trace_id=f"t{i % 7}", symbol="ABCUSDT")
            if i % 100 == 99:
                await j.flush()
    return [str(row[0]) if row else "", str(j.scratch)]


async def test_a_scratch_journal_holds_what_any_journal_holds_and_is_wal_once_closed(tmp_path: Path) -> None:
    assert await _write(tmp_path / "wal.sqlite", scratch=False) == ["wal", "False"]
    assert await _write(tmp_path / "scratch.sqlite", scratch=True) == ["memory", "True"]
    assert not (tmp_path / "scratch.sqlite-wal").exists()
    assert _contents(tmp_path / "scratch.sqlite") == _contents(tmp_path / "wal.sqlite")
    assert _mode(tmp_path / "scratch.sqlite") == "wal"


async def test_a_journal_holding_events_is_never_written_as_scratch(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    await _write(path, scratch=False)
    assert await _write(path, scratch=True) == ["wal", "False"]
    assert len(_contents(path)) == 500 + 7
