"""A simulated run restarted on its journal goes on from where the last one's clock stopped:
its sim clock ran `speed` times faster than the wall, so starting at wall time again would
put the restart's events before the ones it recovered."""

from __future__ import annotations

import time
from pathlib import Path

from engine.execution.paper import PaperBroker
from engine.journal.events import JournalEvent
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.runtime.recovery import read_journal
from engine.runtime.session import RunOptions, open_session, sim_start_ms
from tests.kit.domain import T0, make_batch, make_intent
from tests.kit.engine import quiet_config

HOUR_MS = 3_600_000
FILL = {"client_order_id": "hc-1", "side": "buy", "price": 0.3, "quantity": 100.0, "fee_quote": 0.03}


async def journal_ending_at(path: Path, ts_ms: int) -> None:
    async with Journal.open(path) as journal:
        journal.emit("run_start", ts_ms=ts_ms - HOUR_MS, payload={"run_id": "r", "config_hash": "x", "mode": "SIM"})
        journal.emit("fill", ts_ms=ts_ms, payload=FILL, symbol="DOGE/USDT")


async def test_the_sim_clock_starts_after_the_journals_newest_event(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    now = time.time_ns() // 1_000_000
    assert sim_start_ms(now, path) == now  # no journal yet
    await journal_ending_at(path, now + 10 * HOUR_MS)  # a run at x60 for 10 minutes
    assert sim_start_ms(now, path) == now + 10 * HOUR_MS + 1
    assert sim_start_ms(now + 20 * HOUR_MS, path) == now + 20 * HOUR_MS  # a journal behind the clock


async def test_a_zero_byte_journal_is_a_new_one(tmp_path: Path) -> None:
    """`sqlite3 j.sqlite "select 1"` before the first run leaves 0 bytes: `hotcoin run` refused
    it as "no such table: events; is it a hotcoin journal?"."""
    path = tmp_path / "journal.sqlite"
    path.touch()
    now = time.time_ns() // 1_000_000
    assert sim_start_ms(now, path) == now
    config = quiet_config(**{"journal.path": str(path), "paths.data_dir": str(tmp_path / "data")})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    async with open_session(config, options):
        pass
    with JournalReader(path) as reader:  # now a journal, with its tables
        assert reader.traces() == []


async def test_a_restarted_demo_stamps_its_events_after_the_recovered_ones(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    ahead = time.time_ns() // 1_000_000 + 10 * HOUR_MS
    await journal_ending_at(path, ahead)
    config = quiet_config(**{"journal.path": str(path), "paths.data_dir": str(tmp_path / "data")})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    async with open_session(config, options) as session:
        first = await session.engine.feed.next_batch()
    assert first.ts_ms > ahead


async def test_a_session_checkpoints_recovery_before_each_rotation(tmp_path: Path) -> None:
    """`hotcoin run` gives its journal the checkpointer: a rotation journals recovery's state
    first, so the archives it writes can later go without losing the fill they hold."""
    path = tmp_path / "journal.sqlite"
    ahead = time.time_ns() // 1_000_000 + 10 * HOUR_MS
    await journal_ending_at(path, ahead)
    config = quiet_config(**{
        "journal.path": str(path), "paths.data_dir": str(tmp_path / "data"), "journal.rotate_max_age_days": 0.01,
    })  # fmt: skip
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    async with open_session(config, options) as session:
        journal = session.engine.journal
        assert isinstance(journal, Journal)
        assert await journal.rotate(now_ms=ahead + 2 * HOUR_MS)
    with JournalReader(path) as reader:
        [(_, cp)] = list(reader.newest_first("checkpoint"))
    assert isinstance(cp, JournalEvent) and cp.payload["state"]["fills"] == 1
    assert read_journal(path, config.trading.capital.active.capital).fills == 1


async def test_paper_order_and_trade_ids_do_not_repeat_across_restarts(tmp_path: Path) -> None:
    """Each run's paper broker counted from paper-1 / paper-t1 again: one journal held
    different orders and fills under the same ids."""
    path = tmp_path / "journal.sqlite"
    config = quiet_config(**{"journal.path": str(path), "paths.data_dir": str(tmp_path / "data")})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    seen = []
    for _ in range(2):
        async with open_session(config, options) as session:
            broker = session.engine.broker
            assert isinstance(broker, PaperBroker)
            broker.update_book(make_batch({"DOGE/USDT": 0.3}))
            update = await broker.submit(make_intent(), T0)
            seen.append((update.order.exchange_order_id, update.fills[0].trade_id))
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]
