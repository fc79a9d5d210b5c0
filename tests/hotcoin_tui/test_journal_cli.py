from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from engine.journal.events import EventSink, check, make_trace_id
from hotcoin_tui.cli import app
from hotcoin_tui.commands.journal_cmd import parse_time
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

runner = CliRunner()


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, WrittenTrace]]:
    path = tmp_path_factory.mktemp("cli") / "journal.sqlite"
    written = build_journal(
        path,
        [
            lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0),
            lambda s: filter_rejected_trace(s, symbol="PEPE/USDT", ts_ms=T0 + 60_000),
            lambda s: rule_rejected_trace(s, symbol="SHIB/USDT", ts_ms=T0 + 120_000),
            lambda s: risk_rejected_trace(s, symbol="WIF/USDT", ts_ms=T0 + 180_000),
        ],
    )
    return path, dict(zip(["entered", "filter", "rule", "risk"], written, strict=True))


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})  # wide enough not to wrap
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("entered", ["ENTERED", "Verdict: entered and closed, realised PnL +4.8920", "take_profit", "fill buy 166 @ 0.3003",
                     "exit by take_profit: realised PnL +4.8920", "#11"]),
        ("filter", ["REJECTED", "Why not at discovery: filter min_quote_volume_24h failed: 400,000 ≥ 1,000,000 does not hold",
                    "not accepted", "✘ min_quote_volume_24h"]),
        ("rule", ["REJECTED", "Why not at signal: rule volume failed: 1.8 ≥ 3 does not hold",
                  "decision skip", "✘ volume  1.8 ≥ 3  <- said no"]),
        ("risk", ["REJECTED", "Why not at risk: risk check max_concurrent failed: 3 < 3 does not hold",
                  "Risk  refused", "✔ engine_state  tradeable = tradeable", "✘ max_concurrent  3 < 3  <- said no"]),
    ],
    ids=["entered", "filter", "rule", "risk"],
)  # fmt: skip
def test_replay_explains_each_kind_of_trace(journal: tuple[Path, dict[str, WrittenTrace]], name: str, expected: list[str]) -> None:
    path, traces = journal
    code, out, err = invoke("replay", traces[name].trace_id, "--journal", str(path))
    assert code == 0, err
    assert traces[name].trace_id in out
    for text in expected:
        assert text in out, text


@pytest.mark.parametrize(
    ("name", "outcome", "stage", "blocker"),
    [
        ("entered", "entered", None, None),
        ("filter", "rejected", "discovery", {"stage": "discovery", "name": "min_quote_volume_24h", "passed": False, "value": 4.0e5, "threshold": 1.0e6, "detail": None, "op": ">=", "condition": "400,000 ≥ 1,000,000"}),
        ("rule", "rejected", "signal", {"stage": "signal", "name": "volume", "passed": False, "value": 1.8, "threshold": 3.0, "detail": None, "op": ">=", "condition": "1.8 ≥ 3"}),
        ("risk", "rejected", "risk", {"stage": "risk", "name": "max_concurrent", "passed": False, "value": 3, "threshold": 3, "detail": None, "op": "<", "condition": "3 < 3"}),
    ],
    ids=["entered", "filter", "rule", "risk"],
)  # fmt: skip
def test_replay_json(journal: tuple[Path, dict[str, WrittenTrace]], name: str, outcome: str, stage: str | None, blocker: dict[str, object] | None) -> None:
    path, traces = journal
    code, out, err = invoke("replay", traces[name].trace_id, "--journal", str(path), "--json")
    assert code == 0, err
    data = orjson.loads(out)
    assert data["trace_id"] == traces[name].trace_id
    assert data["verdict"]["outcome"] == outcome
    assert data["verdict"]["stage"] == stage
    assert data["verdict"]["blocked_by"] == blocker
    assert [e["seq"] for e in data["raw_events"]] == sorted(traces[name].seqs.values())
    assert data["tree"][0]["kind"] == "candidate_snapshot"
    if name == "entered":
        assert data["realised_pnl"] == pytest.approx(4.892)
        assert [o["purpose"] for o in data["orders"]] == ["entry", "take_profit"]


def test_replay_accepts_a_unique_prefix(journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    path, traces = journal
    code, out, _ = invoke("replay", traces["rule"].trace_id[:7], "--journal", str(path))
    assert code == 0
    assert traces["rule"].trace_id in out


def test_replay_unknown_id_exits_1_with_the_nearest_ids(journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    path, traces = journal
    code, _, err = invoke("replay", "zzzzzzzz", "--journal", str(path))
    assert code == 1
    assert "no trace 'zzzzzzzz'" in err and "nearest:" in err
    assert max(t.trace_id for t in traces.values()) in err


def test_replay_ambiguous_prefix_exits_1_listing_candidates(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    written = build_journal(path, [partial(filter_rejected_trace, symbol=f"C{i}/USDT") for i in range(40)])
    ids = sorted(t.trace_id for t in written)
    shared = next(a[0] for a, b in itertools.pairwise(ids) if a[0] == b[0])
    code, _, err = invoke("replay", shared, "--journal", str(path))
    assert code == 1
    assert "ambiguous" in err
    assert sum(i in err for i in ids if i.startswith(shared)) >= 2


def test_missing_journal_exits_2_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite"
    for args in (["replay", "abc"], ["traces"], ["journal", "export"], ["journal", "check"]):
        code, _, err = invoke(*args, "--journal", str(missing))
        assert code == 2, args
        assert f"no journal at {missing}" in err
        assert "--journal" in err


def test_a_directory_given_as_the_journal_is_named_as_one(tmp_path: Path) -> None:
    """Audit: `traces -j <a directory>` said "no journal at …" though something was there."""
    for args in (["replay", "abc"], ["traces"], ["journal", "check"], ["report"]):
        code, _, err = invoke(*args, "--journal", str(tmp_path))
        assert code == 2, args
        assert f"{tmp_path} is a directory" in " ".join(err.split()), args


def test_replay_takes_a_trace_id_copied_in_capitals(journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    """Audit: `replay E96EB3C2` said "no trace" and listed unrelated ids."""
    path, traces = journal
    trace_id = traces["entered"].trace_id
    code, out, _ = invoke("replay", trace_id[:8].upper(), "--journal", str(path))
    assert code == 0 and trace_id in out


def test_default_journal_comes_from_the_config(tmp_path: Path, journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    path, traces = journal
    config = tmp_path / "config.toml"
    config.write_text(f'[journal]\npath = "{path}"\n')
    code, out, err = invoke("replay", traces["risk"].trace_id, "--config", str(config))
    assert code == 0, err
    assert "max_concurrent" in out


def test_journal_env_var_sets_the_path(journal: tuple[Path, dict[str, WrittenTrace]], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = journal
    monkeypatch.setenv("HOTCOIN_JOURNAL", str(path))
    code, out, err = invoke("traces", "--json")
    assert code == 0, err
    assert len(orjson.loads(out)) == 4


def test_traces_lists_newest_first_with_filters(journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    path, traces = journal

    def ids(*extra: str) -> list[str]:
        code, out, err = invoke("traces", "--journal", str(path), "--json", *extra)
        assert code == 0, err
        return [r["trace_id"] for r in orjson.loads(out)]

    t = {k: v.trace_id for k, v in traces.items()}
    assert ids() == [t["risk"], t["rule"], t["filter"], t["entered"]]
    assert ids("--outcome", "entered") == [t["entered"]]
    assert ids("--outcome", "rejected", "--limit", "2") == [t["risk"], t["rule"]]
    assert ids("--symbol", "PEPE/USDT") == [t["filter"]]
    assert ids("--since", "2021-04-16T00:02:00") == [t["risk"], t["rule"]]
    code, out, _ = invoke("traces", "--journal", str(path))
    assert code == 0
    assert out.index(t["risk"]) < out.index(t["entered"])
    assert "entered" in out and "rejected" in out


def test_traces_takes_a_pair_typed_with_a_space_and_refuses_a_blank_symbol(
    journal: tuple[Path, dict[str, WrittenTrace]],
) -> None:
    """A blank --symbol (a script's unset `$SYM`) matched nothing: "0 trace(s)", exit 0, read
    as a quiet day. "PEPE USDT" matched nothing either; the space is a separator like '-'."""
    path, traces = journal
    code, out, err = invoke("traces", "--journal", str(path), "--json", "--symbol", "pepe usdt")
    assert code == 0, err
    assert [r["trace_id"] for r in orjson.loads(out)] == [traces["filter"].trace_id]
    for blank in ("", "   "):
        code, _, err = invoke("traces", "--journal", str(path), "--symbol", blank)
        assert code == 2
        assert "names no symbol" in err and "leave --symbol out" in err


def test_traces_rejects_a_bad_time(journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    path, _ = journal
    code, _, err = invoke("traces", "--journal", str(path), "--since", "yesterday-ish")
    assert code == 2
    assert "relative age" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", 10_000_000 - 1_800_000), ("2h", 10_000_000 - 7_200_000), ("1.5s", 10_000_000 - 1500),
     ("1970-01-01T00:00:01", 1000), ("1970-01-01T01:00:01+01:00", 1000)],
    ids=["minutes", "hours", "fractional", "iso-naive-is-utc", "iso-with-zone"],
)  # fmt: skip
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, "--since", now_ms=10_000_000) == expected


def test_export_writes_jsonl_for_a_time_window(journal: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    out = tmp_path / "events.jsonl"
    code, _, err = invoke("journal", "export", "--journal", str(path), "--out", str(out))
    assert code == 0
    assert "exported 17 events" in err
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, 18))
    assert lines[0]["payload"]["filters"][0]["name"] == "min_quote_volume_24h"
    code, stdout, _ = invoke(
        "journal", "export", "--journal", str(path), "--since", "2021-04-16T00:01:00", "--until", "2021-04-16T00:02:00"
    )
    assert code == 0
    assert [orjson.loads(x)["kind"] for x in stdout.splitlines()] == ["candidate_snapshot"]


def test_export_makes_its_folder_and_names_a_path_it_cannot_write(
    journal: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path
) -> None:
    path, _ = journal
    out = tmp_path / "new" / "folder" / "x.jsonl"
    code, _, err = invoke("journal", "export", "--journal", str(path), "--out", str(out))
    assert code == 0 and "exported 17 events" in err and len(out.read_bytes().splitlines()) == 17
    (tmp_path / "a-file").write_text("")
    blocked = tmp_path / "a-file" / "x.jsonl"  # a folder that cannot be made: a file is in the way
    result = runner.invoke(app, ["journal", "export", "--journal", str(path), "--out", str(blocked)], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and not isinstance(result.exception, OSError)
    assert f"cannot write {blocked}" in result.stderr


def test_journal_check_reports_integrity_and_counts(journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    path, _ = journal
    code, out, err = invoke("journal", "check", "--journal", str(path), "--json")
    assert code == 0, err
    (report,) = orjson.loads(out)
    assert report["integrity"] == "ok"
    assert report["events"] == 17
    assert report["traces"] == {"entered": 1, "rejected": 3}
    assert report["kinds"]["fill"] == 2
    code, out, _ = invoke("journal", "check", "--journal", str(path))
    assert code == 0
    assert "ok" in out and "journal.sqlite" in out


def test_the_command_module_defers_the_heavy_imports() -> None:
    """`hotcoin replay` starts fast: the reader, the model and rich load only when a command runs."""
    import subprocess
    import sys

    code = (
        "import sys; import hotcoin_tui.commands.journal_cmd; "
        "print([m for m in ('engine.journal.reader', 'engine.journal.trace', 'hotcoin_tui.replay_view', 'aiosqlite') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_export_refuses_to_write_over_the_journal_or_an_archive(tmp_path: Path) -> None:
    """`--out` naming the journal (by any spelling) or an archive would truncate the events."""
    path = tmp_path / "journal.sqlite"
    build_journal(path, [lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0)])
    archive = tmp_path / "journal.archive" / "journal-1-5.sqlite"
    archive.parent.mkdir()
    archive.write_bytes(b"archived")
    before = path.read_bytes()
    for out in (path, tmp_path / "." / "journal.sqlite", archive):
        result = runner.invoke(app, ["journal", "export", "--journal", str(path), "--out", str(out)], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.stderr
        assert "is the journal or one of its files" in result.stderr and "Traceback" not in result.stderr
    assert path.read_bytes() == before and archive.read_bytes() == b"archived"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "name",
    [
        "journal.sqlite.market",
        "journal.sqlite.lock",
        "journal.archive/notes.jsonl",
        "journal.0123456789ab.unwritten-7.jsonl",
        "journal.0123456789ab.unwritten-7.jsonl.restored",
        "journal.unwritten-7.jsonl",
    ],
    ids=["saved-market", "writer-lock", "in-archive-folder", "spill", "spill-restored", "old-spill"],
)
def test_export_refuses_to_write_over_the_files_the_engine_keeps_with_the_journal(tmp_path: Path, name: str) -> None:
    """Audit: `journal export -o journal.sqlite.market --force` replaced the demo's saved market,
    and the next run marked its recovered positions at unrelated prices; the lock, the archive
    folder and the spill files of unwritten events were as open."""
    path = tmp_path / "journal.sqlite"
    build_journal(path, [lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0)])
    kept = tmp_path / name
    kept.parent.mkdir(exist_ok=True)
    if not name.endswith("notes.jsonl"):  # a new file in the archive folder is refused as well
        kept.write_bytes(b"kept")
    result = runner.invoke(app, ["journal", "export", "-j", str(path), "-o", str(kept), "--force"], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.stderr
    assert "is the journal or one of its files" in " ".join(result.stderr.split()), result.stderr
    assert not kept.exists() if name.endswith("notes.jsonl") else kept.read_bytes() == b"kept"


def test_export_replaces_an_earlier_file_only_when_complete(journal: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    out = tmp_path / "events.jsonl"
    out.write_text("old\n")
    code, _, err = invoke("journal", "export", "--journal", str(path), "--out", str(out), "--force")
    assert code == 0, err
    assert len(out.read_bytes().splitlines()) == 17
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]


def test_export_never_replaces_another_journal(journal: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path) -> None:
    """`journal export -j y.sqlite -o victim.sqlite` replaced another journal with JSON lines:
    its events were gone. An SQLite file is refused even with --force."""
    path, _ = journal
    victim = tmp_path / "victim.sqlite"
    build_journal(victim, [lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0)])
    before = victim.read_bytes()
    for force in ([], ["--force"]):
        result = runner.invoke(app, ["journal", "export", "-j", str(path), "-o", str(victim), *force], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        assert f"{victim} is an SQLite file (another journal?), and the export would replace it with JSON lines" in result.stderr
    assert victim.read_bytes() == before


def test_export_refuses_a_file_an_engine_is_journaling_into(journal: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path) -> None:
    """A journal just created holds no SQLite header yet; its held writer lock still names it."""
    from engine.journal.lock import journal_lock

    path, _ = journal
    busy = tmp_path / "busy.sqlite"
    with journal_lock(busy):
        result = runner.invoke(app, ["journal", "export", "-j", str(path), "-o", str(busy), "--force"], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert f"{busy} is a journal an engine is writing (its lock {busy}.lock is held)" in result.stderr
    assert not busy.exists()


def test_export_replaces_a_file_with_something_in_it_only_with_force(journal: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    result = runner.invoke(app, ["journal", "export", "-j", str(path), "-o", str(notes)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert f"{notes} already exists (8 bytes); add --force to replace it" in result.stderr
    assert notes.read_text() == "keep me\n"
    empty = tmp_path / "empty.jsonl"
    empty.touch()  # `mktemp`'s file: nothing to lose
    code, _, err = invoke("journal", "export", "-j", str(path), "-o", str(empty))
    assert code == 0 and "exported 17 events" in err


def test_export_refuses_an_until_not_after_its_since(journal: tuple[Path, dict[str, WrittenTrace]]) -> None:
    """`--since 1h --until 2h` (the window ends before it starts) exported 0 events, exit 0."""
    path, _ = journal
    for since, until in [("1h", "2h"), ("2021-04-16T00:02:00", "2021-04-16T00:01:00"), ("2021-04-16T00:01:00", "2021-04-16T00:01:00")]:
        result = runner.invoke(app, ["journal", "export", "-j", str(path), "--since", since, "--until", until], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        assert f"--until {until} is not after --since {since}" in result.stderr
        assert result.stdout == ""


@pytest.mark.parametrize("text", ["99999999999w", "9" * 400 + "s", "0001-01-01", "1969-12-31T23:59:59"])
@pytest.mark.parametrize("command", ["traces", "export"])
def test_times_outside_1970_to_9999_are_not_times(journal: tuple[Path, dict[str, WrittenTrace]], command: str, text: str) -> None:
    """`--since 99999999999w` was an OverflowError traceback from the reader's query."""
    path, _ = journal
    args = ["traces"] if command == "traces" else ["journal", "export"]
    result = runner.invoke(app, [*args, "-j", str(path), "--since", text], env={"COLUMNS": "1000"})
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, OverflowError)
    assert f"{text!r} is not a time between 1970 and 9999" in result.stderr


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, dict[str, WrittenTrace]]:
    """A journal whose events 3 (not UTF-8) and 7 (not JSON) no longer decode: what a flipped
    bit on disk leaves, and SQLite's integrity_check does not look at."""
    import sqlite3

    path = tmp_path / "journal.sqlite"
    written = build_journal(
        path,
        [
            lambda s: entered_trace(s, symbol="DOGE/USDT", ts_ms=T0),
            lambda s: filter_rejected_trace(s, symbol="PEPE/USDT", ts_ms=T0 + 60_000),
        ],
    )
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET payload = CAST(X'7B22FF2280' AS TEXT) WHERE seq = 3")
        conn.execute("""UPDATE events SET payload = '{"heat": 8' WHERE seq = 7""")
    conn.close()
    return path, dict(zip(["entered", "filter"], written, strict=True))


def test_check_finds_events_that_do_not_decode(damaged: tuple[Path, dict[str, WrittenTrace]]) -> None:
    path, _ = damaged
    code, out, err = invoke("journal", "check", "--journal", str(path), "--json")
    assert code == 1
    (report,) = orjson.loads(out)
    assert (report["integrity"], report["damaged_events"], report["damaged_seqs"]) == ("ok", 2, [3, 7])
    assert f"{path}: 2 damaged event(s) that do not decode or lack fields their kind requires (seq 3, 7)" in err and "--skip-damaged" in err
    code, out, err = invoke("journal", "check", "--journal", str(path))
    assert code == 1 and "damaged" in out and "Traceback" not in err


def test_commands_meeting_a_damaged_event_say_which_in_one_line(
    damaged: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path
) -> None:
    path, traces = damaged
    out = tmp_path / "events.jsonl"
    for args in (["journal", "export", "--out", str(out)], ["journal", "export"], ["replay", traces["entered"].trace_id]):
        result = runner.invoke(app, [*args, "--journal", str(path)], env={"COLUMNS": "400"})
        assert result.exit_code == 1, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert f"journal {path}: event seq 3 is damaged" in result.stderr
        assert "hotcoin journal check" in result.stderr
    assert not out.exists()
    code, _, err = invoke("replay", traces["filter"].trace_id, "--journal", str(path))  # an intact trace still replays
    assert code == 0, err


def test_export_skip_damaged_saves_the_other_events(damaged: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path) -> None:
    path, _ = damaged
    out = tmp_path / "events.jsonl"
    code, _, err = invoke("journal", "export", "--journal", str(path), "--out", str(out), "--skip-damaged")
    assert code == 0, err
    seqs = [orjson.loads(line)["seq"] for line in out.read_bytes().splitlines()]
    assert seqs == [s for s in range(1, 13) if s not in (3, 7)]
    assert "exported 10 events" in err and "left out 2 damaged event(s) that do not decode or lack fields their kind requires (seq 3, 7)" in err


def test_a_truncated_journal_is_reported_damaged_with_exit_1(journal: tuple[Path, dict[str, WrittenTrace]], tmp_path: Path) -> None:
    path, _ = journal
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(path.read_bytes()[:4096])
    code, out, err = invoke("journal", "check", "--journal", str(cut), "--json")
    assert code == 1
    (report,) = orjson.loads(out)
    assert (report["integrity"], report["events"], report["bytes"]) == ("database disk image is malformed", None, 4096)
    assert f"journal {cut} is damaged: database disk image is malformed" in err and "keep a copy" in err
    assert "is it a hotcoin journal" not in err
    code, out, err = invoke("journal", "check", "--journal", str(cut))
    assert code == 1 and "malformed" in out
    for args in (["journal", "export"], ["traces"], ["replay", "abc"]):
        code, _, err = invoke(*args, "--journal", str(cut))
        assert code == 1 and "is damaged" in err, args


@pytest.fixture(scope="module")
def close_all_journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[WrittenTrace]]:
    """Two positions open, then an emergency close-all that sells both in its own trace."""
    path = tmp_path_factory.mktemp("cli") / "journal.sqlite"
    opened: list[WrittenTrace] = []

    def open_one(sink: EventSink, symbol: str, ts_ms: int) -> WrittenTrace:
        opened.append(opened_trace(sink, symbol=symbol, ts_ms=ts_ms))
        return opened[-1]

    written = build_journal(
        path,
        [partial(open_one, symbol="TOBB/USDT", ts_ms=T0), partial(open_one, symbol="WHIVN/USDT", ts_ms=T0 + 1),
         lambda s: close_all_trace(s, opened)],
    )  # fmt: skip
    return path, written


def test_replay_of_a_position_closed_by_close_all_shows_its_exit(close_all_journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, (a, _, ca) = close_all_journal
    code, out, err = invoke("replay", a.trace_id, "--journal", str(path))
    assert code == 0, err
    for text in ["ENTERED", "Verdict: entered and closed, realised PnL -1.0590", "exit by close_all: realised PnL -1.0590",
                 f"(in trace {ca.trace_id})"]:  # fmt: skip
        assert text in out, text
    assert "still open" not in out


def test_replay_and_traces_of_a_close_all(close_all_journal: tuple[Path, list[WrittenTrace]]) -> None:
    path, (a, b, ca) = close_all_journal
    code, out, err = invoke("replay", ca.trace_id, "--journal", str(path))
    assert code == 0, err
    assert "CLOSE-ALL" in out and "REJECTED" not in out and "Why not" not in out
    assert "emergency close-all by operator: closed 2 of 2 position(s) (TOBB/USDT, WHIVN/USDT)" in out
    code, out, err = invoke("traces", "--journal", str(path), "--json", "--outcome", "close_all")
    assert code == 0, err
    assert [(r["trace_id"], r["outcome"]) for r in orjson.loads(out)] == [(ca.trace_id, "close_all")]
    code, out, err = invoke("traces", "--journal", str(path), "--json", "--outcome", "entered")
    assert [r["trace_id"] for r in orjson.loads(out)] == [b.trace_id, a.trace_id]


def test_a_close_all_is_filed_under_no_one_coin_and_found_under_each_it_sold(
    close_all_journal: tuple[Path, list[WrittenTrace]],
) -> None:
    """`traces` showed the close-all under TOBB/USDT (the first coin it sold) where `replay`
    showed none, and `traces -s WHIVN` missed it though it sold WHIVN too."""
    path, (a, b, ca) = close_all_journal
    code, out, err = invoke("traces", "--journal", str(path), "--json", "--outcome", "close_all")
    assert code == 0, err
    assert [(r["trace_id"], r["symbol"]) for r in orjson.loads(out)] == [(ca.trace_id, None)]
    code, out, err = invoke("traces", "--journal", str(path))
    assert code == 0, err
    assert next(line for line in out.splitlines() if ca.trace_id in line).split("│")[3].strip() == "(all)"
    for typed, position in (("whivn", b), ("TOBB/USDT", a)):
        code, out, err = invoke("traces", "--journal", str(path), "--json", "--symbol", typed)
        assert code == 0, err
        assert [r["trace_id"] for r in orjson.loads(out)] == [ca.trace_id, position.trace_id], typed
    code, out, err = invoke("replay", ca.trace_id, "--journal", str(path))
    assert code == 0, err
    assert f"Trace {ca.trace_id}  (all)  CLOSE-ALL" in out


def test_replay_names_the_model_and_threshold_of_an_ml_decision(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"

    def scored(sink: EventSink) -> WrittenTrace:
        trace = make_trace_id("ml", 1)
        sink.emit("signal_snapshot", ts_ms=T0, trace_id=trace, symbol="X/USDT", payload={
            "decision": "skip", "reason": "failed: heat", "features": {}, "ml_score": 0.31, "model": "hot_lgbm_1m@v0001",
            "rules": [check("heat", False, 64.0, 70.0), check("ml_score", True, 0.31, 0.25)],
        })  # fmt: skip
        return WrittenTrace(trace, "X/USDT", "rejected", T0)

    (t,) = build_journal(path, [scored])
    code, out, err = invoke("replay", t.trace_id, "--journal", str(path))
    assert code == 0, err
    assert "ML score 0.31 (threshold 0.25, hot_lgbm_1m@v0001)" in out


def test_replay_of_an_entry_the_broker_rejected_reads_not_filled(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"

    def refused(sink: EventSink) -> WrittenTrace:
        trace = make_trace_id("refused", 1)
        cid = f"hc-{trace}-e1"
        at = sink.emit("order_attempt", ts_ms=T0, trace_id=trace, symbol="X/USDT", payload={
            "client_order_id": cid, "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "10",
        })  # fmt: skip
        sink.emit("order_result", ts_ms=T0, trace_id=trace, symbol="X/USDT", cause=at, payload={
            "client_order_id": cid, "status": "rejected", "error_class": "non_retryable", "error": "insufficient balance",
        })  # fmt: skip
        return WrittenTrace(trace, "X/USDT", "not_filled", T0)

    (t,) = build_journal(path, [refused])
    code, out, err = invoke("replay", t.trace_id, "--journal", str(path))
    assert code == 0, err
    assert "NOT FILLED" in out and "ENTERED" not in out
    assert "Why not at execution: entry order rejected by the broker (non_retryable: insufficient balance); nothing was bought" in out
    code, out, _ = invoke("traces", "--journal", str(path), "--json", "--outcome", "not_filled")
    assert [r["trace_id"] for r in orjson.loads(out)] == [t.trace_id]
