from __future__ import annotations

import asyncio
import io
import sqlite3
from functools import partial
from pathlib import Path

import orjson
import pytest

from engine.config.sections.journal import JournalSection
from engine.errors import JournalDamagedError, JournalError, TraceNotFoundError
from engine.journal.events import EventSink
from engine.journal.reader import JournalReader
from engine.journal.schema import BUCKET_SHIFT
from engine.journal.trace import summarise
from engine.journal.writer import Journal
from tests.kit.domain import T0
from tests.kit.events import (
    WrittenTrace,
    build_journal,
    close_all_trace,
    entered_trace,
    filter_rejected_trace,
    opened_trace,
    risk_rejected_trace,
    rule_rejected_trace,
)
from tests.kit.sqlite_faults import MESSAGES, sqlite_error


@pytest.fixture
def journal(tmp_path: Path) -> tuple[Path, list[WrittenTrace]]:
    path = tmp_path / "j.sqlite"
    traces = build_journal(
        path,
        [
            lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0),
            lambda s: filter_rejected_trace(s, symbol="PEPE/USDT", ts_ms=T0 + 60_000),
            lambda s: rule_rejected_trace(s, symbol="DOGE/USDT", ts_ms=T0 + 120_000),
            lambda s: risk_rejected_trace(s, symbol="WIF/USDT", ts_ms=T0 + 180_000),
        ],
    )
    return path, traces


def test_trace_by_full_id_and_by_unique_prefix(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, traces = journal
    entered = traces[0]
    with JournalReader(path) as reader:
        full = reader.trace(entered.trace_id)
        assert [e.seq for e in full] == list(range(1, 12))
        assert [e.cause for e in full][:3] == [None, 1, 2]
        assert full[0].payload["heat"] == 82.4
        assert reader.trace(entered.trace_id[:6]) == full


def test_unknown_id_names_the_nearest_ids(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, traces = journal
    ids = sorted(t.trace_id for t in traces)
    with JournalReader(path) as reader, pytest.raises(TraceNotFoundError, match="no trace 'zzzz'") as err:
        reader.trace("zzzz")
    assert set(err.value.nearest) <= set(ids)
    assert err.value.nearest
    assert ids[-1] in str(err.value)


def test_nearest_ids_prefer_a_shared_prefix(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, traces = journal
    target = traces[2].trace_id
    typo = target[:10] + ("0" if target[10] != "0" else "1") * 6
    with JournalReader(path) as reader, pytest.raises(TraceNotFoundError) as err:
        reader.trace(typo)
    assert err.value.nearest[0] == target


def test_ambiguous_prefix_lists_the_candidates(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    # 40 traces: some first hex digit is shared by at least two of them
    traces = build_journal(path, [partial(filter_rejected_trace, symbol=f"C{i}/USDT") for i in range(40)])
    by_digit: dict[str, list[str]] = {}
    for t in traces:
        by_digit.setdefault(t.trace_id[0], []).append(t.trace_id)
    digit, ids = next((d, ids) for d, ids in by_digit.items() if len(ids) >= 2)
    with JournalReader(path) as reader, pytest.raises(TraceNotFoundError, match="ambiguous") as err:
        reader.trace(digit)
    assert sorted(err.value.nearest) == sorted(ids)[:10]


def test_traces_newest_first_with_filters(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, traces = journal
    entered, filtered, ruled, risked = traces
    with JournalReader(path) as reader:
        assert [r.trace_id for r in reader.traces()] == [risked.trace_id, ruled.trace_id, filtered.trace_id, entered.trace_id]
        assert [r.trace_id for r in reader.traces(outcome="entered")] == [entered.trace_id]
        assert [r.trace_id for r in reader.traces(outcome="rejected")] == [risked.trace_id, ruled.trace_id, filtered.trace_id]
        assert [r.trace_id for r in reader.traces(symbol="DOGE/USDT")] == [ruled.trace_id, entered.trace_id]
        for typed in ("doge", "DOGEUSDT", "doge-usdt", " Doge_USDT "):  # as a trader types it
            assert [r.trace_id for r in reader.traces(symbol=typed)] == [ruled.trace_id, entered.trace_id], typed
        assert reader.traces(symbol="DOG") == [] and reader.traces(symbol="DOGE/BTC") == []
        assert [r.trace_id for r in reader.traces(since_ms=T0 + 60_000)] == [risked.trace_id, ruled.trace_id, filtered.trace_id]
        assert [r.trace_id for r in reader.traces(limit=2)] == [risked.trace_id, ruled.trace_id]
        row = reader.traces(outcome="entered")[0]
        assert (row.symbol, row.ts_ms, row.first_seq) == ("DOGE/USDT", T0, 1)


def test_export_jsonl_round_trips(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    out = tmp_path / "out.jsonl"
    with JournalReader(path) as reader:
        n = reader.export_jsonl(out)
        events = list(reader.events())
        text = io.StringIO()
        assert reader.export_jsonl(text, since_ms=T0 + 60_000, until_ms=T0 + 180_000) == 3
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert n == len(lines) == len(events) == 17
    for line, event in zip(lines, events, strict=True):
        assert line == {
            "seq": event.seq, "ts_ms": event.ts_ms, "trace_id": event.trace_id, "cause": event.cause,
            "kind": event.kind, "symbol": event.symbol, "payload": event.payload, "v": event.v,
        }  # fmt: skip
    assert [orjson.loads(x)["seq"] for x in text.getvalue().splitlines()] == [12, 13, 14]


def test_lookups_use_the_trace_index(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, _ = journal
    buckets = f"seq >> {BUCKET_SHIFT} IN (0)"
    with sqlite3.connect(path) as conn:
        for sql in (
            f"SELECT * FROM events WHERE {buckets} AND trace_id = 'ab'",
            f"SELECT DISTINCT trace_id FROM events WHERE {buckets} AND trace_id >= 'ab' AND trace_id < 'ab~' LIMIT 11",
        ):
            plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "INDEX events_trace" in plan, plan


def test_the_reader_never_writes(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, _ = journal
    with JournalReader(path) as reader, pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._main.execute("DELETE FROM events")


def test_a_zero_byte_journal_is_said_to_be_empty_not_foreign(tmp_path: Path) -> None:
    """`sqlite3 j.sqlite "select 1"` (or `touch`) before the first run leaves 0 bytes: it was
    called "no such table: events; is it a hotcoin journal?"."""
    path = tmp_path / "j.sqlite"
    path.touch()
    with pytest.raises(JournalError, match=r"the journal file is empty \(no events yet\)"):
        JournalReader(path)


def test_missing_or_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        JournalReader(tmp_path / "absent.sqlite")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(JournalError, match="is it a hotcoin journal"):
        JournalReader(other)


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("SQLITE_FULL", "is full: free space there, or point --journal"),
        ("SQLITE_IOERR", r"the disk failed to read or write it .*check the disk \(`dmesg`\)"),
        ("SQLITE_CANTOPEN", "this user must be able to read it, and to write .* on read-only media, copy the journal's folder"),
        ("SQLITE_READONLY", "this user must be able to read it, and to write"),
        ("SQLITE_NOTADB", "is it a hotcoin journal"),
    ],
)
def test_a_file_sqlite_cannot_read_is_told_by_its_cause_not_as_a_foreign_file(
    journal: tuple[Path, list[WrittenTrace]], monkeypatch: pytest.MonkeyPatch, error: str, cause: str
) -> None:
    """Audit: every SQLite error was followed by "is it a hotcoin journal?": "database or disk
    is full; is it a hotcoin journal?", "unable to open database file; ..." on read-only media.
    Only a file that is not SQLite (or has no journal tables) is asked that. (The faults are
    faked: a test cannot fill the disk, and root reads and writes whatever the modes say.)"""
    path, _ = journal
    real = sqlite3.connect

    def failing(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        if str(database).startswith(path.resolve().as_uri()):
            raise sqlite_error(error)
        return real(database, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", failing)
    with pytest.raises(JournalError, match=rf"cannot read journal {path}: {MESSAGES[error]}; .*{cause}") as err:
        JournalReader(path)
    assert ("is it a hotcoin journal" in str(err.value)) == (error == "SQLITE_NOTADB")


def _damage_rows(path: Path) -> tuple[int, int]:
    """Damage two event rows the way a bad disk does, below what integrity_check looks at:
    bytes that are not UTF-8 in one payload, valid text that is not JSON in another."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET payload = CAST(X'7B22FF2280' AS TEXT) WHERE seq = 3")
        conn.execute("""UPDATE events SET payload = '{"heat": 8' WHERE seq = 13""")
    conn.close()
    return 3, 13


def test_check_decodes_every_event_and_names_the_damaged_ones(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, traces = journal
    with JournalReader(path) as reader:
        (clean,) = reader.check()
    assert (clean["integrity"], clean["damaged_events"], clean["damaged_seqs"]) == ("ok", 0, [])
    bad = _damage_rows(path)
    with JournalReader(path) as reader:
        (report,) = reader.check()
        assert report["integrity"] == "ok"  # SQLite's own check sees nothing wrong
        assert (report["damaged_events"], report["damaged_seqs"]) == (2, list(bad))
        with pytest.raises(JournalDamagedError, match=rf"{path}: event seq 3 is damaged .*journal check"):
            list(reader.events())
        with pytest.raises(JournalDamagedError, match="event seq 3 is damaged"):
            reader.export_jsonl(tmp_path / "all.jsonl")
        with pytest.raises(JournalDamagedError, match="event seq 3 is damaged"):
            reader.trace(traces[0].trace_id)
        skipped: list[int] = []
        assert reader.export_jsonl(tmp_path / "rest.jsonl", skipped=skipped) == 15
        assert skipped == list(bad)
        assert len(list(reader.events(kinds=["fill"]))) == 2  # a query that misses the damage reads on


def test_a_truncated_journal_is_damaged_not_foreign(journal: tuple[Path, list[WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    for size in (100, 4096):  # the header only; the first page, without the tables' pages
        cut = tmp_path / f"cut{size}.sqlite"
        cut.write_bytes(path.read_bytes()[:size])
        with pytest.raises(JournalDamagedError, match=rf"journal {cut} is damaged: database disk image is malformed") as err:
            JournalReader(cut)
        assert err.value.reason == "database disk image is malformed"
        assert "is it a hotcoin journal" not in str(err.value)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all " * 300)
    with pytest.raises(JournalError, match="is it a hotcoin journal") as foreign:
        JournalReader(junk)
    assert not isinstance(foreign.value, JournalDamagedError)


def test_last_event_looks_back_without_an_age_limit(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    year = 365 * 86_400_000
    build_journal(
        path,
        [
            lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0 - year),
            lambda s: filter_rejected_trace(s, symbol="PEPE/USDT", ts_ms=T0),
        ],
    )
    with JournalReader(path) as reader:
        sent: list[str] = []
        reader._main.set_trace_callback(sent.append)
        fill = reader.last_event(until_ms=T0, kinds=["fill", "no_such_kind"])
        reader._main.set_trace_callback(None)
        assert fill is not None and fill.kind == "fill" and fill.ts_ms < T0 - year + 86_400_000
        assert reader.last_event(until_ms=T0 - year, kinds=["fill"]) is None
        plan = " ".join(str(r[-1]) for r in reader._main.execute("EXPLAIN QUERY PLAN " + sent[-1]))
    assert "TEMP B-TREE" not in plan and "events_ts" not in plan, plan  # a walk down the key, not a sort


def test_headers_before_walks_back_over_the_main_file(journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, _ = journal
    with JournalReader(path) as reader:
        headers = list(reader.headers_before(4))
        events = {e.seq: e for e in reader.events()}
    assert headers == [(s, events[s].ts_ms, events[s].kind) for s in (3, 2, 1)]


def test_a_positions_trace_brings_its_close_all_exit(tmp_path: Path) -> None:
    """A close-all sells each position in its own trace: the position's trace comes with the
    close that names it (`position_trace_id`), that close's fill and its order, and nothing of
    the other position the close-all sold."""
    path = tmp_path / "j.sqlite"
    opened: list[WrittenTrace] = []

    def open_one(sink: EventSink, symbol: str, ts_ms: int) -> WrittenTrace:
        opened.append(opened_trace(sink, symbol=symbol, ts_ms=ts_ms))
        return opened[-1]

    a, b, ca = build_journal(
        path,
        [partial(open_one, symbol="TOBB/USDT", ts_ms=T0), partial(open_one, symbol="WHIVN/USDT", ts_ms=T0 + 1),
         lambda s: close_all_trace(s, opened)],
    )  # fmt: skip
    with JournalReader(path) as reader:
        events = reader.trace(a.trace_id)
        foreign = [(e.kind, e.symbol) for e in events if e.trace_id == ca.trace_id]
        assert foreign == [("order_attempt", "TOBB/USDT"), ("order_result", "TOBB/USDT"), ("fill", "TOBB/USDT"), ("position_update", "TOBB/USDT")]
        assert summarise(a.trace_id, events).verdict.reason == "entered and closed, realised PnL -1.0590"
        assert all(e.trace_id == ca.trace_id for e in reader.trace(ca.trace_id))  # the close-all's own, as before
        assert not [e for e in reader.trace(b.trace_id) if e.symbol != "WHIVN/USDT"]


@pytest.mark.parametrize("batch_size", [1, 1000], ids=["a-batch-per-event", "one-batch"])
def test_a_close_alls_row_has_no_symbol_and_is_found_under_each_coin_it_sold(tmp_path: Path, batch_size: int) -> None:
    """Its row took the first coin it sold (and kept it over later batches); `symbol=` found
    it under that coin only. A row an older writer filed so reads with no symbol too."""
    path = tmp_path / "j.sqlite"
    opened: list[WrittenTrace] = []

    async def write() -> WrittenTrace:
        async with Journal.open(path, JournalSection(batch_size=batch_size, flush_interval_ms=20)) as j:
            for i, symbol in enumerate(("TOBB/USDT", "WHIVN/USDT")):
                opened.append(opened_trace(j, symbol=symbol, ts_ms=T0 + i))
                await j.flush()
            held = opened_trace(j, symbol="DOGE/USDT", ts_ms=T0 + 2)  # held on, not sold by the close-all
            ca = close_all_trace(j, opened)
            await j.flush()
            opened.append(held)
            return ca

    ca = asyncio.run(write())
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT symbol, outcome FROM traces WHERE trace_id = ?", (ca.trace_id,)).fetchall() == [
            (None, "close_all")
        ]
    with JournalReader(path) as reader:
        assert [(r.symbol, r.outcome) for r in reader.traces(outcome="close_all")] == [(None, "close_all")]
        for typed in ("TOBB", "whivn/usdt"):
            assert ca.trace_id in [r.trace_id for r in reader.traces(symbol=typed)], typed
        assert [r.trace_id for r in reader.traces(symbol="DOGE")] == [opened[2].trace_id]
        assert [r.trace_id for r in reader.traces(symbol="WHIVN", outcome="entered")] == [opened[1].trace_id]
    with sqlite3.connect(path) as conn:  # as an older writer left it
        conn.execute("UPDATE traces SET symbol = 'TOBB/USDT' WHERE trace_id = ?", (ca.trace_id,))
    with JournalReader(path) as reader:
        assert [r.symbol for r in reader.traces(outcome="close_all")] == [None]
        assert ca.trace_id in [r.trace_id for r in reader.traces(symbol="WHIVN")]


def test_a_position_still_open_brings_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    (a,) = build_journal(path, [lambda s: opened_trace(s)])
    with JournalReader(path) as reader:
        events = reader.trace(a.trace_id)
    assert {e.trace_id for e in events} == {a.trace_id}
    assert summarise(a.trace_id, events).verdict.reason == "entered; position still open"


def _second_row(path: Path, trace_id: str, ts_ms: int, outcome: str = "open") -> None:
    """The `traces` row a writer before one-row-per-trace added when a trace went on after a
    restart: keyed by that later event's seq, saying only what the later part did."""
    with sqlite3.connect(path) as conn:
        (seq,) = conn.execute("SELECT MAX(seq) FROM events WHERE trace_id = ?", (trace_id,)).fetchone()
        symbol = conn.execute("SELECT symbol FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()[0]
        conn.execute("INSERT INTO traces VALUES (?, ?, ?, ?, ?)", (seq, trace_id, ts_ms, symbol, outcome))


def _continued_after_restart(path: Path) -> tuple[str, str]:
    """Trace x starts (discovery only) at T0, y at T0 + 60 s; the writer restarts and x goes
    on at T0 + 120 s, which gave x a second `traces` row, newer than y's (a journal written
    before the writer looked restarted traces up still holds it)."""

    async def write() -> tuple[str, str]:
        async with Journal.open(path) as j:
            x = filter_rejected_trace(j, symbol="PEPE/USDT", ts_ms=T0).trace_id
            y = rule_rejected_trace(j, symbol="SHIB/USDT", ts_ms=T0 + 60_000).trace_id
        async with Journal.open(path) as j:
            j.emit("signal_snapshot", ts_ms=T0 + 120_000, trace_id=x, symbol="PEPE/USDT",
                   payload={"decision": "skip", "reason": "late", "rules": [], "features": {}})  # fmt: skip
        return x, y

    x, y = asyncio.run(write())
    _second_row(path, x, T0 + 120_000, "rejected")
    return x, y


def test_check_counts_each_trace_once_in_a_journal_holding_two_rows_of_one(tmp_path: Path) -> None:
    """A position held across a restart had a second row saying "open": `journal check` said
    "entered 1, open 1" for one trace that `traces` listed once, as entered."""
    path = tmp_path / "j.sqlite"
    (a,) = build_journal(path, [lambda s: opened_trace(s)])
    _second_row(path, a.trace_id, T0 + 60_000)
    with JournalReader(path) as reader:
        (main,) = reader.check()
        assert main["traces"] == {"entered": 1}
        assert [(r.trace_id, r.outcome) for r in reader.traces()] == [(a.trace_id, "entered")]
        assert reader.traces(outcome="open") == []


def test_traces_merges_a_restarted_trace_before_limiting(tmp_path: Path) -> None:
    """`-n 2` lists two traces, not x's two rows as one."""
    x, y = _continued_after_restart(tmp_path / "j.sqlite")
    with JournalReader(tmp_path / "j.sqlite") as reader:
        assert [(r.trace_id, r.ts_ms) for r in reader.traces(limit=2)] == [(y, T0 + 60_000), (x, T0)]
        assert [r.trace_id for r in reader.traces(limit=1)] == [y]  # x started first


def test_traces_since_counts_from_a_traces_start(tmp_path: Path) -> None:
    """x's later row is after --since, but x started before it: not listed."""
    x, y = _continued_after_restart(tmp_path / "j.sqlite")
    with JournalReader(tmp_path / "j.sqlite") as reader:
        assert [r.trace_id for r in reader.traces(since_ms=T0 + 60_000)] == [y]
        assert [r.trace_id for r in reader.traces(since_ms=T0)] == [y, x]


def test_traces_limit_counts_traces_across_many_pages(tmp_path: Path) -> None:
    """More rows than one page, every other trace split by a restart: exactly `limit` traces,
    newest start first."""
    path = tmp_path / "j.sqlite"

    async def write() -> list[str]:
        async with Journal.open(path) as j:
            ids = [rule_rejected_trace(j, symbol=f"C{i}/USDT", ts_ms=T0 + i).trace_id for i in range(700)]
        async with Journal.open(path) as j:
            for t in ids[::2]:
                j.emit("signal_snapshot", ts_ms=T0 + 10_000, trace_id=t, payload={"decision": "skip", "reason": "", "rules": [], "features": {}})
        return ids

    ids = asyncio.run(write())
    for t in ids[::2]:
        _second_row(path, t, T0 + 10_000, "rejected")
    with JournalReader(path) as reader:
        assert [r.trace_id for r in reader.traces(limit=600)] == ids[::-1][:600]
        assert [r.trace_id for r in reader.traces(limit=600, outcome="rejected")] == ids[::-1][:600]
