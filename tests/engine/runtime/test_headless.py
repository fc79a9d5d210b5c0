"""`hotcoin run`'s exit summary: this run's PnL, and the journal's since it began, each labelled."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.config import load_config
from engine.domain import TickerBatch
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.ops.notify.base import Severity
from engine.ops.notify.events import notification_for
from engine.runtime.engine import Engine
from engine.runtime.headless import run_headless
from engine.runtime.session import RunOptions
from tests.kit.domain import T0

DOGE, TRACE = "DOGE/USDT", "d0d0d0d0d0d0d0d0"


async def _run_after_a_round_trip(tmp_path: Path, buy_price: float, monkeypatch: pytest.MonkeyPatch) -> str:
    """The summary of a run stopped after its first cycle (as SIGTERM would; it trades nothing)
    on a journal where an earlier run bought 1000 DOGE at `buy_price` and sold them at 0.40.
    Not `duration_s=0`: a duration bounds the start too, and 0 ends the run before its first
    batch, with nothing recovered."""
    cycle = Engine._cycle

    async def one_cycle(engine: Engine, batch: TickerBatch) -> None:
        await cycle(engine, batch)
        engine.stop()

    monkeypatch.setattr(Engine, "_cycle", one_cycle)
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        for side, price in (("buy", buy_price), ("sell", 0.4)):
            j.emit("fill", ts_ms=T0, trace_id=TRACE, symbol=DOGE,
                   payload={"client_order_id": f"hc-{TRACE}-{side}", "side": side, "price": price, "quantity": 1000.0,
                            "fee_quote": 0.0, "trade_id": side})  # fmt: skip
    cli = {"journal.path": str(path), "paths.data_dir": str(tmp_path), "sim.symbols": 40, "sim.pumps_per_day": 0,
           "sim.dumps_per_day": 0, "sim.listings_per_day": 0}  # fmt: skip
    config = load_config(env={}, cli=cli).config
    options = RunOptions(http=False, attach_socket=False, demo_pump=False, lockstep_ms=5_000)
    return await run_headless(config, options, duration_s=None)


async def test_the_summary_tells_this_runs_pnl_from_the_journals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal already up 100 (an earlier run bought DOGE at 0.30 and sold at 0.40); a run that
    trades nothing printed `PnL +100.00` as its own."""
    summary = await _run_after_a_round_trip(tmp_path, buy_price=0.3, monkeypatch=monkeypatch)
    first = summary.splitlines()[0]
    assert first.endswith("0 orders sent, 0 fills, 0 open position(s), PnL this run +0.00 (since the journal began +100.00)"), first
    assert "warning" not in summary  # every fill applied


async def test_fills_recovery_cannot_apply_are_told_not_only_journaled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buy at a negative price (a journal edited by hand) and the sell of what it would have
    bought: recovery leaves both out, so the cash it rebuilt is not the journal's (+100 here).
    That was said only in the `recovered` event's payload; now in the log, the event's detail
    (the console's event stream), a notification and the run's summary, with what to do."""
    path = tmp_path / "journal.sqlite"
    with caplog.at_level(logging.WARNING, logger="hotcoin.recovery"):
        summary = await _run_after_a_round_trip(tmp_path, buy_price=-0.3, monkeypatch=monkeypatch)
    said = "restart recovery could not apply 2 journal event(s), and the positions and cash it rebuilt leave them out (seq 1: "
    advice = "check the positions and cash against the exchange's balances before trusting either"
    warning = summary.splitlines()[-1]
    assert warning.startswith(f"warning: {said}") and "| seq 2: sell fill" in warning and advice in warning, summary
    assert [r.getMessage() for r in caplog.records if r.name == "hotcoin.recovery"] == [warning.removeprefix("warning: ")]
    with JournalReader(path) as reader:
        (recovered,) = [e for e in reader.events(kinds=["risk_event"]) if e.payload["code"] == "recovered"]
    assert recovered.payload["detail"].startswith(said)
    note = notification_for("risk_event", recovered.payload)
    assert note is not None and note.severity is Severity.WARNING and advice in note.text
