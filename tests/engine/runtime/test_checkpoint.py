"""Recovery checkpoints: a restart from the latest checkpoint plus the events after it recovers
exactly what the full history does, so retention can delete the archives a checkpoint covers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config.sections.journal import JournalSection
from engine.domain import OrderPurpose
from engine.errors import JournalError
from engine.execution.client_ids import client_order_id
from engine.execution.exchange_broker import NEVER_REACHED
from engine.journal.events import TRAIL_ACTION, known_versions
from engine.journal.files import list_archives
from engine.journal.reader import JournalReader
from engine.journal.rotation import DAY_MS
from engine.journal.writer import Journal
from engine.portfolio.positions import MISSING_REASON, WRITE_OFF_REASON
from engine.runtime import checkpoint
from engine.runtime.client import Command
from engine.runtime.recovery import KINDS, RecoveredState, Recovery, read_journal, rebuild
from tests.kit.domain import T0
from tests.kit.engine import START_MS, pump_rig, quiet_config
from tests.kit.waiting import eventually

CAPITAL = 1000.0
A, B, C, D, E, F = "AAA/USDT", "BBB/USDT", "CCC/USDT", "DDD/USDT", "EEE/USDT", "FFF/USDT"
TA, TB, TC, TD, TE = "a1a1a1a1a1a1a1a1", "b1b1b1b1b1b1b1b1", "c1c1c1c1c1c1c1c1", "d1d1d1d1d1d1d1d1", "e1e1e1e1e1e1e1e1"
TF = "f1f1f1f1f1f1f1f1"
T_CLOSE_ALL = "0c0c0c0c0c0c0c0c"


def settings(retention: int) -> JournalSection:
    return JournalSection(batch_size=50, flush_interval_ms=5, rotate_max_age_days=0.5, retention_archives=retention)


class Script:
    """Emits a trading history into a journal: the kinds `rebuild` reads, in the shapes the core
    and router journal them."""

    def __init__(self, j: Journal, notes: dict[str, int]) -> None:
        self.j = j
        self.notes = notes  # seqs a later phase refers to (it may run after a restart)

    def attempt(self, t: int, trace: str, sym: str, purpose: OrderPurpose, leg: int = 1, **extra: Any) -> str:
        cid = client_order_id(trace, purpose, leg)
        side = "buy" if purpose is OrderPurpose.ENTRY else "sell"
        payload = {"client_order_id": cid, "side": side, "order_type": "market", "purpose": purpose.value,
                   "quantity": "1000", "price": None, **extra}  # fmt: skip
        self.j.emit("order_attempt", ts_ms=t, trace_id=trace, symbol=sym, payload=payload)
        return cid

    def result(self, t: int, cid: str, trace: str, sym: str, status: str, **extra: Any) -> None:
        payload = {"client_order_id": cid, "status": status, "error_class": None, **extra}
        self.j.emit("order_result", ts_ms=t, trace_id=trace, symbol=sym, payload=payload)

    def fill(self, t: int, cid: str, trace: str, sym: str, side: str, qty: float, price: float) -> int:
        payload = {"client_order_id": cid, "side": side, "price": price, "quantity": qty, "fee_quote": qty * price * 0.001,
                   "trade_id": f"{cid}:{t}"}  # fmt: skip
        return self.j.emit("fill", ts_ms=t, trace_id=trace, symbol=sym, payload=payload)

    def update(self, t: int, trace: str, sym: str, action: str, cause: int | None, **extra: Any) -> None:
        payload = {"action": action, "quantity": 0.0, "entry_price": 0.3, "realised_pnl": -1.0, "position_trace_id": trace, **extra}
        self.j.emit("position_update", ts_ms=t, trace_id=trace, symbol=sym, payload=payload, cause=cause)

    def trade(self, t: int, trace: str, sym: str, purpose: OrderPurpose, qty: float, price: float, leg: int = 1) -> None:
        cid = self.attempt(t, trace, sym, purpose, leg)
        self.result(t, cid, trace, sym, "filled")
        side = "buy" if purpose is OrderPurpose.ENTRY else "sell"
        seq = self.fill(t, cid, trace, sym, side, qty, price)
        self.update(t, trace, sym, "open" if side == "buy" else "partial_close", seq)

    def listing(self, t: int, sym: str, listed_ms: int, reason: str = "new_symbol") -> None:
        self.j.emit("listing", ts_ms=t, symbol=sym, payload={"listed_ms": listed_ms, "reason": reason})

    def risk(self, t: int, code: str, level: str = "L1", **extra: Any) -> None:
        self.j.emit("risk_event", ts_ms=t, payload={"code": code, "level": level, "detail": code, **extra})

    def phase(self, k: int) -> None:
        """Day k of the history; what each leaves open for the next is the point."""
        t = T0 + k * DAY_MS
        s = self
        if k == 0:
            s.risk(t, "day_start", value=CAPITAL)
            s.listing(t, A, t - 600_000)  # listed ten minutes before: a restart days later still knows
            s.listing(t, "OLD/USDT", t - 40 * DAY_MS, "announced")  # a month before the last event: not kept
            s.trade(t + 1, TA, A, OrderPurpose.ENTRY, 1000.0, 0.3)
            s.trade(t + 2, TB, B, OrderPurpose.ENTRY, 500.0, 0.2)
            cid = s.attempt(t + 3, TC, C, OrderPurpose.ENTRY)
            s.j.emit("order_result", ts_ms=t + 3, trace_id=TC, symbol=C,
                     payload={"client_order_id": cid, "status": "rejected", "error_class": "retryable"})  # fmt: skip
        elif k == 1:  # a take-profit partly filled when the checkpoint is taken: an open order with fills
            cid = s.attempt(t, TA, A, OrderPurpose.TAKE_PROFIT, 1)
            seq = s.fill(t + 1, cid, TA, A, "sell", 200.0, 0.36)
            s.update(t + 1, TA, A, "partial_close", seq, total_realised_pnl=5.0)
            s.update(t + 2, TA, A, TRAIL_ACTION, None, trailing_high=0.42, stop=0.4074)  # A's trail, before a checkpoint
        elif k == 2:
            cid = client_order_id(TA, OrderPurpose.TAKE_PROFIT, 1)
            seq = s.fill(t, cid, TA, A, "sell", 100.0, 0.36)
            s.update(t, TA, A, "partial_close", seq)
            s.result(t + 1, cid, TA, A, "filled")
            s.trade(t + 2, TA, A, OrderPurpose.TAKE_PROFIT, 200.0, 0.4, leg=2)
            cid = s.attempt(t + 3, TB, B, OrderPurpose.STOP_LOSS, 1)
            s.result(t + 3, cid, TB, B, "unknown")
            # its position_update comes after the checkpoint
            s.notes["b_fill"] = s.fill(t + 4, cid, TB, B, "sell", 499.0, 0.18)
            s.risk(t + 5, "day_start", value=990.0, capital=CAPITAL)  # phase 0's, of an older hotcoin, had none
            s.j.emit("state_change", ts_ms=t + 6, payload={"from": "tradeable", "to": "degraded", "reasons": ["errors"]})
        elif k == 3:
            s.update(t, TB, B, "partial_close", s.notes["b_fill"], total_realised_pnl=-10.0)
            s.result(t + 1, client_order_id(TB, OrderPurpose.STOP_LOSS, 1), TB, B, "filled")
            s.update(t + 2, TB, B, "close", None, reason=WRITE_OFF_REASON, total_realised_pnl=-10.5)
            s.risk(t + 3, "risk_level", "L3")
            s.risk(t + 4, "consecutive_losses", until_ms=t + 3_600_000)
            s.j.emit("command", ts_ms=t + 5, payload={"command": "pause", "origin": "tui"})
            s.listing(t + 6, F, t + 5)
            s.trade(t + 6, TF, F, OrderPurpose.ENTRY, 100.0, 2.0)
            sold = s.attempt(t + 7, TF, F, OrderPurpose.STOP_LOSS, 1)
            # Its fill comes after the checkpoint (a sync found it): an order short of its reply there.
            s.result(t + 8, sold, TF, F, "filled", filled_qty="100.00000000", average_price=1.9, action="sync")
            for i in range(4):
                cid = s.attempt(t + 10 + i, TD, D, OrderPurpose.ENTRY, leg=1 + i)
                s.j.emit("order_result", ts_ms=t + 10 + i, trace_id=TD, symbol=D,
                         payload={"client_order_id": cid, "status": "rejected", "error_class": "non_retryable"})  # fmt: skip
        elif k == 4:
            seq = s.fill(t, client_order_id(TF, OrderPurpose.STOP_LOSS, 1), TF, F, "sell", 100.0, 1.9)
            s.update(t, TF, F, "close", seq, total_realised_pnl=-10.2)
            s.trade(t, TC, C, OrderPurpose.ENTRY, 300.0, 1.0, leg=2)
            s.update(t + 1, TC, C, "partial_close", None, reason=MISSING_REASON, fill_quantity=50.0)
            late = s.attempt(t + 2, TD, D, OrderPurpose.ENTRY, leg=9)
            s.result(t + 2, late, TD, D, "rejected", detail=NEVER_REACHED)
            s.attempt(t + 3, TE, E, OrderPurpose.ENTRY, price="0.5", expires_ms=t + 60_000)
            s.j.emit("command", ts_ms=t + 4, payload={"command": "resume", "origin": "tui"})
            s.attempt(t + 5, TA, A, OrderPurpose.TAKE_PROFIT, 3)  # its first fill comes after the checkpoint
            s.update(t + 6, TA, A, TRAIL_ACTION, None, trailing_high=0.46, stop=0.4462)  # ... and after one
            s.update(t + 7, "0000000000000000", A, TRAIL_ACTION, None, trailing_high=9.0)  # another position's: not A's
        elif k == 5:
            s.result(t, client_order_id(TD, OrderPurpose.ENTRY, 9), TD, D, "open")  # it landed late: open again
            # Its own trace, as the core journals it: a restart takes the close-all over (A and C held).
            s.j.emit("command", ts_ms=t + 1, trace_id=T_CLOSE_ALL, payload={"command": "close_all", "origin": "tui", "repeat": False})
            s.j.emit("state_change", ts_ms=t + 2, payload={"from": "degraded", "to": "blocked", "reasons": ["errors"]})
            s.risk(t + 3, "tick")
            cid = client_order_id(TA, OrderPurpose.TAKE_PROFIT, 3)
            seq = s.fill(t + 4, cid, TA, A, "sell", 100.0, 0.45)
            s.update(t + 4, TA, A, "partial_close", seq)
            s.result(t + 5, cid, TA, A, "filled")


PHASES = 6


def full_history(path: Path, capital: float = CAPITAL) -> RecoveredState:
    """What `rebuild` makes of every event, checkpoints ignored (needs every archive)."""
    with JournalReader(path) as reader:
        return rebuild(known_versions(reader.events(kinds=KINDS), path), capital)


def fields(state: RecoveredState) -> dict[str, Any]:
    """The whole state, field by field (the book's holdings, closed trades and write-offs too)."""
    out = {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name != "book"}
    book = state.book
    out["book"] = (book.holdings, book.closed, book.written_off)
    return out


async def run_script(path: Path, retention: int, check: Any = None) -> None:
    """The phases, a rotation after each (its checkpoint first), a restart every other phase."""
    k, notes = 0, {}
    while k < PHASES:
        async with Journal.open(path, settings(retention)) as j:
            checkpoint.install(j, path, CAPITAL)
            for _ in range(2):
                if k >= PHASES:
                    break
                Script(j, notes).phase(k)
                await j.rotate(now_ms=T0 + (k + 1) * DAY_MS)
                k += 1
        if check is not None:
            check(k)


def checkpoints(path: Path) -> list[tuple[int, int]]:
    with JournalReader(path) as reader:
        return [(seq, ev.payload["through_seq"]) for seq, ev in reader.newest_first("checkpoint")]  # type: ignore[union-attr]


async def test_recovery_from_a_checkpoint_equals_recovery_from_the_full_history(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    seen: list[int] = []

    def check(k: int) -> None:
        assert fields(read_journal(path, CAPITAL)) == fields(full_history(path)), f"after phase {k}"
        seen.append(len(checkpoints(path)))

    await run_script(path, retention=0, check=check)
    assert seen == [2, 4, 6]  # one checkpoint per rotation, each restart recovered from one
    with JournalReader(path) as reader:
        _, replay = checkpoint.start(reader, path, CAPITAL)
    assert replay.state.last_seq > 0  # recovery started from a checkpoint, not from seq 1
    state = read_journal(path, CAPITAL)
    # The history left all of this open: the comparison covers it.
    assert state.book.holdings[A].position.tp_tiers_hit == (0, 1, 2)
    assert state.book.holdings[A].position.stop_price == 0.3  # break-even after the take-profit
    assert state.book.holdings[A].position.trailing_high == 0.46  # its trail's peak
    assert state.chart_fills[A][0].side.value == "buy" and state.chart_fills[A][0].ts_ms == T0 + 1  # the chart's fills: A's buy, 5 days before
    assert set(state.chart_fills) == {A, C}  # and the last day's of coins no longer held: none (F sold over a day before)
    assert set(state.book.holdings) == {A, C} and state.book.written_off == {B: 1.0}
    assert set(state.open_orders) == {client_order_id(TE, OrderPurpose.ENTRY, 1), client_order_id(TD, OrderPurpose.ENTRY, 9)}
    assert state.paused and state.engine_state.value == "blocked" and len(state.order_errors) == 5
    assert state.close_all is not None and state.close_all.trace_id == T_CLOSE_ALL
    assert state.close_all.traces == {TA, TC, TD, TE}  # held, or an entry open, at its press
    assert state.risk.consecutive_losses == 1 and state.risk.cooldown_until_ms > 0  # F lost after the cool-down event
    assert state.risk.capital == CAPITAL  # what the day's start was marked under
    assert set(state.last_action_ms) == {A, B, C, D, E, F}
    assert state.last_action_ms[F] == T0 + 3 * DAY_MS + 8  # when the core booked the close: its order_result
    assert state.anomalies == [] and state.unbooked == []
    assert state.listings == {A: T0 - 600_000, F: T0 + 3 * DAY_MS + 5}  # the coins' listing times, for discovery


async def test_an_open_order_and_an_unbooked_fill_carry_across_a_checkpoint(tmp_path: Path) -> None:
    """Cut the history where a checkpoint holds a partly filled take-profit and a fill without its
    position_update: both go on exactly as without the checkpoint."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(0)) as j:
        checkpoint.install(j, path, CAPITAL)
        notes: dict[str, int] = {}
        for k in range(3):
            Script(j, notes).phase(k)
            await j.rotate(now_ms=T0 + (k + 1) * DAY_MS)
    state = read_journal(path, CAPITAL)
    assert fields(state) == fields(full_history(path))
    assert [u.change.symbol for u in state.unbooked] == [B]
    assert client_order_id(TB, OrderPurpose.STOP_LOSS, 1) in state.open_orders


async def test_retention_deletes_old_trading_archives_and_a_restart_books_the_same_cash_and_positions(tmp_path: Path) -> None:
    reference, pruned = tmp_path / "ref.sqlite", tmp_path / "pruned.sqlite"
    await run_script(reference, retention=0)
    await run_script(pruned, retention=1)
    kept = {a.path.name for a in list_archives(pruned)}
    gone = [a.path for a in list_archives(reference) if a.path.name.replace("ref", "pruned") not in kept]
    assert len(kept) == 1 and len(gone) == PHASES - 1
    assert sum(count(a, "SELECT COUNT(*) FROM events WHERE kind = 'fill'") for a in gone) == 9  # every fill but the last
    with JournalReader(pruned) as reader:
        assert [e.ts_ms for e in reader.events(kinds=["fill"])] == [T0 + 5 * DAY_MS + 4]  # the newest day's only
        assert int(reader.meta("pruned_through") or 0) > 0
    assert fields(read_journal(pruned, CAPITAL)) == fields(full_history(reference))


def count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _tamper(path: Path, change: Any) -> int:
    """Apply `change` to the payload of the newest checkpoint in the main file; returns its seq."""
    with sqlite3.connect(path) as conn:
        seq, text = conn.execute("SELECT seq, payload FROM events WHERE kind = 'checkpoint' ORDER BY seq DESC").fetchone()
        conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (change(text), seq))
    return int(seq)


def _richer(text: str) -> str:
    p = orjson.loads(text)
    p["state"]["cash"] += 1000.0  # a damaged number the digest catches
    return orjson.dumps(p).decode()


@pytest.mark.parametrize(
    "change",
    [_richer, lambda text: "{not json", lambda text: orjson.dumps({**orjson.loads(text), "state": []}).decode()],
    ids=["edited", "not-json", "malformed"],
)
async def test_an_unusable_checkpoint_falls_back_to_an_older_one_never_silently_wrong(
    tmp_path: Path, change: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite"
    await run_script(path, retention=0)
    expected = fields(full_history(path))
    seq = _tamper(path, change)
    with caplog.at_level(logging.WARNING, logger="hotcoin.recovery"):
        assert fields(read_journal(path, CAPITAL)) == expected
    assert f"checkpoint seq {seq} is unusable" in caplog.text


async def test_an_unusable_checkpoint_after_retention_deleted_history_is_refused_by_name(tmp_path: Path) -> None:
    reference, path = tmp_path / "ref.sqlite", tmp_path / "j.sqlite"
    await run_script(reference, retention=0)
    await run_script(path, retention=1)
    _tamper(path, _richer)  # the checkpoint before it, in the archive kept, still covers what was deleted
    assert fields(read_journal(path, CAPITAL)) == fields(full_history(reference))
    with sqlite3.connect(path) as conn:  # as if retention had deleted past the older checkpoint kept
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'pruned_through'")
    with pytest.raises(JournalError, match=r"retention deleted archives through seq"):
        read_journal(path, CAPITAL)
    for f in [path, *(a.path for a in list_archives(path))]:
        with sqlite3.connect(f) as conn:
            conn.execute("UPDATE events SET payload = '{}' WHERE kind = 'checkpoint'")
    with pytest.raises(JournalError, match=r"no usable checkpoint covers the archives retention deleted .*restore the deleted archives"):
        read_journal(path, CAPITAL)



def _from_before_capital(text: str) -> str:
    """The checkpoint as a hotcoin wrote it before the day's capital was journaled."""
    p = orjson.loads(text)
    del p["state"]["risk"]["capital"]
    p["digest"] = checkpoint._digest(p["state"])
    return orjson.dumps(p).decode()


async def test_a_checkpoint_from_before_the_capital_was_journaled_still_recovers(tmp_path: Path) -> None:
    """Its day's capital is unknown, so a restart under another capital moves nothing (see
    `RiskManager.restore`); everything else is recovered as before."""
    path = tmp_path / "j.sqlite"
    await run_script(path, retention=0)
    expected = fields(full_history(path))
    _tamper(path, _from_before_capital)
    recovered = fields(read_journal(path, CAPITAL))
    assert recovered.pop("risk") == dataclasses.replace(expected.pop("risk"), capital=None)
    assert recovered == expected

async def test_a_checkpoint_of_a_newer_hotcoin_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    await run_script(path, retention=0)
    expected = fields(full_history(path))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET v = 2 WHERE kind = 'checkpoint'")
    assert fields(read_journal(path, CAPITAL)) == expected


async def test_a_rotation_moves_only_what_its_checkpoint_covers(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, settings(0)) as j:
        checkpoint.install(j, path, CAPITAL)
        Script(j, {}).phase(0)
        [archive] = await j.rotate(now_ms=T0 + 2 * DAY_MS)
    [(seq, through)] = checkpoints(path)
    assert list_archives(path)[0].path == archive and list_archives(path)[0].last_seq <= through < seq
    with JournalReader(path) as reader:
        assert [e.seq for e in reader.events()] == list(range(1, seq + 1))


async def test_a_paper_run_with_rotations_and_restarts_recovers_from_checkpoints_as_from_the_full_history(
    tmp_path: Path,
) -> None:
    """The engine itself trades a pump on paper, rotating as it goes (a checkpoint each time, taken
    while it emits) and restarting from its journal: every restart's recovery from the latest
    checkpoint and the events after it equals the full history's, field by field."""
    path = tmp_path / "j.sqlite"
    config = quiet_config(**{"journal.rotate_max_age_days": 0.001, "journal.retention_archives": 0})
    capital = config.trading.capital.active.capital
    start_ms, recovered, states, made = START_MS, None, [], []
    for run in range(3):
        async with pump_rig(path, config, start_ms=start_ms) as rig:
            engine = rig.engine
            checkpoint.install(rig.journal, path, capital)
            engine.recovery = None if recovered is None or recovered.empty else Recovery(recovered)
            task = asyncio.create_task(engine.run())
            for _ in range(4):
                since = engine.stats.cycles
                await eventually(lambda e=engine, s=since: e.stats.cycles >= s + 25, timeout=60)  # type: ignore[misc]
                await rig.journal.rotate()  # while the engine emits
            if run == 1:
                assert (await engine.command(Command.PAUSE, "test")).accepted
            engine.stop()
            await asyncio.wait_for(task, 10)
            start_ms = engine._now + 5_000
        recovered = read_journal(path, capital)
        assert fields(recovered) == fields(full_history(path, capital)), f"run {run}"
        states.append(recovered)
        made.append(len(checkpoints(path)))
    # Every run rotated at least once, so every restart recovered from a checkpoint of its own
    # run's making. (A rotation with nothing old enough to move writes none: since the warm-up
    # journals nothing, a run's first minutes hold few events.)
    assert made[0] > 0 and made[0] < made[1] < made[2] and len(list_archives(path)) >= made[2]
    assert not states[0].paused and states[1].paused and states[2].paused
