"""Payloads validated and serialised where they were made (`encoded`): the journal writes
exactly what it writes for the plain payload, and everyone else still reads a mapping."""

from __future__ import annotations

import pickle
import sqlite3
import types
from pathlib import Path
from typing import Any

import pytest

from engine.errors import EventValidationError
from engine.journal.encoded import Encoded, encode
from engine.journal.writer import Journal
from engine.runtime.tap import Tap

CANDIDATE: dict[str, Any] = {
    "heat": 61.25, "components": {"momentum": 0.1 + 0.2}, "rank": 3, "price": 0.025599194000000002,
    "filters": [{"name": "volume", "passed": True, "value": 1e-7, "threshold": None}], "accepted": True,
    "returns": types.MappingProxyType({"5m": None, "60m": -0.012}), "sources": ("market", "social"),
}  # fmt: skip


def _events(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        events = conn.execute("SELECT seq, ts_ms, trace_id, cause, kind, symbol, payload, v FROM events ORDER BY seq").fetchall()
        traces = conn.execute("SELECT * FROM traces ORDER BY first_seq").fetchall()
    return [*events, *traces]


async def _journal(path: Path, payload: Any) -> None:
    async with Journal.open(path) as j:
        j.emit("candidate_snapshot", ts_ms=7, payload=payload, trace_id="t1", symbol="ABCUSDT")
        j.emit("signal_snapshot", ts_ms=8, payload={"decision": "skip", "reason": "r", "rules": [], "features": {}}, trace_id="t1", cause=1)


async def test_the_journal_writes_an_encoded_payload_as_it_writes_the_plain_one(tmp_path: Path) -> None:
    await _journal(tmp_path / "plain.sqlite", CANDIDATE)
    await _journal(tmp_path / "encoded.sqlite", encode("candidate_snapshot", 7, CANDIDATE))
    assert _events(tmp_path / "encoded.sqlite") == _events(tmp_path / "plain.sqlite")


def test_an_encoded_payload_reads_as_the_journal_reads_it_back() -> None:
    e = encode("candidate_snapshot", 7, CANDIDATE)
    assert e["accepted"] is True and e.get("rank") == 3 and "heat" in e and "missing" not in e
    assert dict(e) == {**CANDIDATE, "returns": dict(CANDIDATE["returns"]), "sources": ["market", "social"]}
    assert e == pickle.loads(pickle.dumps(e))
    assert pickle.loads(pickle.dumps(e)).text == e.text


def test_encoding_refuses_what_the_journal_refuses() -> None:
    with pytest.raises(EventValidationError, match="lacks required field 'components'"):
        encode("candidate_snapshot", 7, {"heat": 1.0})
    with pytest.raises(EventValidationError, match="not JSON-serialisable"):
        encode("candidate_snapshot", 7, {**CANDIDATE, "price": 1.0, "extra": object()})


async def test_an_encoded_payload_with_a_bad_time_or_of_another_kind_is_checked_again(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite") as j:
        with pytest.raises(EventValidationError, match="ts_ms must be a non-negative int"):
            j.emit("candidate_snapshot", ts_ms=-1, payload=encode("candidate_snapshot", 7, CANDIDATE))
        with pytest.raises(EventValidationError, match="payload lacks required field 'decision'"):
            j.emit("signal_snapshot", ts_ms=7, payload=encode("candidate_snapshot", 7, CANDIDATE))
    assert j.stats.rejected["candidate_snapshot"] == 1 and j.stats.rejected["signal_snapshot"] == 1


def test_the_tap_reads_an_encoded_payload_as_the_plain_one() -> None:
    class Keep:
        keeps_payloads = True

        def emit(self, kind: str, **_: Any) -> int:
            return 1

    plain, encoded = Tap(Keep()), Tap(Keep())
    plain.emit("candidate_snapshot", ts_ms=7, payload=CANDIDATE, trace_id="t1")
    encoded.emit("candidate_snapshot", ts_ms=7, payload=encode("candidate_snapshot", 7, CANDIDATE), trace_id="t1")
    assert [r.summary for r in encoded.recent] == [r.summary for r in plain.recent]
    assert isinstance(encode("candidate_snapshot", 7, CANDIDATE), Encoded)
