"""An event read back is held to the contract it was written under (`events.check_stored`).

`emit` validates every payload, but a file edited or half-restored by hand can hold valid JSON
with the wrong fields: `journal check` called it clean while restart recovery and replay died
on a KeyError or ValueError. Now such an event is damaged like one that does not decode.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import orjson
import pytest

from engine.errors import JournalDamagedError
from engine.journal.events import check_stored
from engine.journal.reader import JournalReader
from engine.runtime.recovery import read_journal
from tests.kit.domain import T0
from tests.kit.events import build_journal, entered_trace


def _fill(**changes: object) -> str:
    fill = {"client_order_id": "hc-x-e1", "side": "buy", "price": 0.3003, "quantity": 166.0, "fee_quote": 0.0498}
    return orjson.dumps({k: v for k, v in {**fill, **changes}.items() if v is not None}).decode()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("{}", "fill: payload lacks required field 'client_order_id'"),
        (_fill(price="abc"), "fill.price: expected int | float, got str"),
        (_fill(quantity=True), "fill.quantity: expected int | float, got bool"),
        (_fill(fee_quote=None), "fill: payload lacks required field 'fee_quote'"),
    ],
    ids=["empty", "price-text", "quantity-bool", "fee-missing"],
)
def test_a_payload_that_breaks_its_kinds_contract_is_damaged(tmp_path: Path, payload: str, problem: str) -> None:
    path = tmp_path / "j.sqlite"
    (trace,) = build_journal(path, [lambda s: entered_trace(s, ts_ms=T0)])
    seq = trace.seqs["entry_fill"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (payload, seq))
    conn.close()
    named = rf"{re.escape(str(path))}: event seq {seq} is damaged \({re.escape(problem)}\); `hotcoin journal check` lists"
    with JournalReader(path) as reader:
        (report,) = reader.check()
        assert (report["integrity"], report["damaged_events"], report["damaged_seqs"]) == ("ok", 1, [seq])
        with pytest.raises(JournalDamagedError, match=named):
            reader.trace(trace.trace_id)  # `hotcoin replay`
        skipped: list[int] = []
        reader.export_jsonl(tmp_path / "rest.jsonl", skipped=skipped)
        assert skipped == [seq]
    with pytest.raises(JournalDamagedError, match=named):
        read_journal(path, 1000.0)  # restart recovery


def test_a_payload_this_code_cannot_judge_is_left_to_its_readers() -> None:
    """A kind this hotcoin does not know, or another version of one it does, comes from another
    hotcoin: `known_versions` refuses a newer one by name, readers pass over unknown kinds."""
    check_stored("fill", 1, T0, orjson.loads(_fill()))
    check_stored("fill", 2, T0, {})
    check_stored("a_kind_from_later", 1, T0, {})
