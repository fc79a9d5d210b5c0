"""A backtest journals into a file of its own, and an engine never recovers from one.

`hotcoin backtest --journal` pointed at the engine's journal appended the replayed trades, and
the engine's next restart booked them as its cash and positions (+3.77 became +2.12).
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from engine.backtest.api import run_backtest
from engine.config import HotcoinConfig
from engine.errors import ConfigError, JournalError
from engine.runtime.recovery import read_journal
from tests.engine.backtest.conftest import MIN, START
from tests.kit.events import build_journal, entered_trace


def _events(path: Path) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT seq, payload FROM events ORDER BY seq").fetchall()


def test_a_backtest_refuses_a_journal_that_already_holds_events(config: HotcoinConfig, store: Path, tmp_path: Path) -> None:
    path = tmp_path / "engine.sqlite"
    build_journal(path, [entered_trace])  # an engine's trade: a fill bought, a fill sold
    before = _events(path)
    with pytest.raises(JournalError, match=rf"journal {path} already holds events: a backtest journals into a file of its own.*"
                                           "give --journal a path that does not exist yet"):  # fmt: skip
        asyncio.run(run_backtest(config, store, START, START + 30 * MIN, path))
    assert _events(path) == before


def test_an_engine_refuses_to_recover_from_a_backtests_journal(config: HotcoinConfig, store: Path, tmp_path: Path) -> None:
    path = tmp_path / "bt.sqlite"
    path.touch()  # an empty file holds no events: it is a new journal
    asyncio.run(run_backtest(config, store, START, START + 30 * MIN, path, run_id="bt-own"))
    assert _events(path)
    with pytest.raises(JournalError, match=rf"journal {path} holds a backtest \(run bt-own, started at event seq \d+\): .*"
                                           "run the engine on a journal of its own"):  # fmt: skip
        read_journal(path, 1000.0)


def test_a_backtest_refuses_a_journal_folder_it_cannot_make_in_one_line(config: HotcoinConfig, store: Path, tmp_path: Path) -> None:
    """`hotcoin backtest -j ro/bt.sqlite` was a traceback from the journal's lock."""
    (tmp_path / "garbage.sqlite").write_text("not a folder")
    path = tmp_path / "garbage.sqlite" / "bt.sqlite"
    with pytest.raises(ConfigError, match=rf"^the journal's folder {tmp_path}/garbage.sqlite is a file, not a folder; point --journal"):
        asyncio.run(run_backtest(config, store, START, START + 30 * MIN, path))
