"""`hotcoin replay`, `hotcoin traces` and `hotcoin journal export|check`: answer "why did we
enter / why not" from the journal alone.

Imports stay inside the commands so `hotcoin replay` starts fast. Exit codes: 0 done; 1 the
trace id is unknown or ambiguous (the message lists the nearest ids), or the journal is damaged
(`check` found damage, or a command met a file or an event it cannot read back); 2 no journal
at the path, or an option that cannot be used.
"""

from __future__ import annotations

import enum
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from hotcoin_tui.commands.help_format import command_group
from hotcoin_tui.commands.options import ConfigOpt, JournalOpt, JsonOpt, is_calendar_ms

if TYPE_CHECKING:
    from engine.errors import HotcoinError
    from engine.journal.reader import JournalReader


class OutcomeChoice(enum.StrEnum):
    ALL = "all"
    ENTERED = "entered"
    REJECTED = "rejected"
    OPEN = "open"
    ORDERED = "ordered"
    NOT_FILLED = "not_filled"
    CLOSE_ALL = "close_all"


SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only from this time: ISO time (UTC if no zone) or relative like 30m, 2h, 1d.")
]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Only before this time (same forms as --since).")]

journal_app = command_group(help="Export and check the journal.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `replay`, `traces` and the `journal` group to the `hotcoin` app."""
    app.command("replay")(replay)
    app.command("traces")(traces)
    app.add_typer(journal_app, name="journal")


def replay(
    trace_id: Annotated[str, typer.Argument(help="A trace id, or a unique prefix of one (see `hotcoin traces`).")],
    journal: JournalOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain one trace: what discovery saw, the signal, risk, orders, fills and exit; for a candidate not traded, which filter, rule or risk check said no, as the condition it needed (value first: `1 < 1`)."""  # one line: the help keeps line breaks
    from engine.errors import TraceNotFoundError
    from engine.journal.events import unknown_version
    from engine.journal.trace import as_dict, summarise

    with _reading(journal, config) as reader:
        try:
            events = reader.trace(trace_id)
        except TraceNotFoundError as exc:
            typer.secho(f"hotcoin: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
    for e in events:  # shown as read, but what their fields mean is a newer hotcoin's to say
        if (why := unknown_version(e.kind, e.v)) is not None:
            _note(f"event seq {e.seq}: {why}; it is shown as stored, and may mean something else: upgrade hotcoin")
    summary = summarise(events[0].trace_id or trace_id, events)
    if as_json:
        import orjson

        raw = [
            {"seq": e.seq, "ts_ms": e.ts_ms, "trace_id": e.trace_id, "kind": e.kind, "symbol": e.symbol, "cause": e.cause, "v": e.v, "payload": e.payload}
            for e in events
        ]
        typer.echo(orjson.dumps({**as_dict(summary), "raw_events": raw}, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console

    from hotcoin_tui.replay_view import render_trace

    Console(highlight=False).print(render_trace(summary))


def traces(
    journal: JournalOpt = None,
    config: ConfigOpt = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this symbol: DOGE/USDT, doge (any DOGE pair) or DOGEUSDT.")] = None,
    outcome: Annotated[OutcomeChoice, typer.Option("--outcome", help="Which traces to list.")] = OutcomeChoice.ALL,
    since: SinceOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List recent traces, newest first (in the order they started in the journal: time order for one engine's runs), with their outcome: entered (a buy filled; the position may still be held), not_filled (the entry order ended unfilled), ordered (it has not ended yet), rejected, open (a candidate no decision was recorded for yet, e.g. the engine stopped first: not an open position), or close_all (an emergency close-all's own trace)."""  # one line: the help keeps line breaks
    since_ms = parse_time(since, "--since") if since else None
    if symbol is not None:
        from engine.journal.reader import symbol_filter

        try:
            symbol_filter(symbol)
        except ValueError as exc:
            raise typer.BadParameter(f"{exc}, or leave --symbol out for every symbol", param_hint="'--symbol'") from None
    with _reading(journal, config) as reader:
        rows = reader.traces(symbol=symbol, outcome=outcome.value, since_ms=since_ms, limit=limit)
    if as_json:
        import orjson

        typer.echo(
            orjson.dumps(
                [{"trace_id": r.trace_id, "first_seq": r.first_seq, "ts_ms": r.ts_ms, "symbol": r.symbol, "outcome": r.outcome} for r in rows],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    from rich.console import Console

    from hotcoin_tui.replay_view import traces_table

    Console(highlight=False).print(traces_table(rows))


@journal_app.command("export")
def export(
    journal: JournalOpt = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file to write (default: stdout).")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    skip_damaged: Annotated[
        bool,
        typer.Option(
            "--skip-damaged",
            help="Leave out damaged events and archives SQLite cannot read, and go on past missing events (`hotcoin journal check` lists them), instead of stopping.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an --out file that holds something (never an SQLite file: a journal).")
    ] = False,
) -> None:
    """Write events (main file and archives, in seq order) as JSON lines."""
    since_ms = parse_time(since, "--since") if since else None
    until_ms = parse_time(until, "--until") if until else None
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        # An empty window exported "0 events" and exit 0: read as a journal with nothing in it.
        # (A relative --until is an age too: --since 2h --until 1h is the hour before the last.)
        raise typer.BadParameter(
            f"--until {until} is not after --since {since}, so no event can fall between them; "
            "swap them, or give --until a later time",
            param_hint="'--until'",
        )
    skipped: list[int] | None = [] if skip_damaged else None
    with _reading(journal, config, skip_damaged=skip_damaged, notes=False) as reader:
        # Seqs are never skipped: a run no file holds is lost events, which the export would
        # leave out without a word. As a damaged event, it stops the export unless told to go on.
        gaps = [g for g in reader.missing() if g.overlaps(since_ms, until_ms)]
        if gaps and not skip_damaged:
            typer.secho(
                f"hotcoin: {_missing(reader.path, gaps)}; nothing exported: add --skip-damaged to export the other events",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(1)
        if out is None:
            sys.stdout.flush()  # JSON lines are UTF-8 whatever the locale says (PYTHONIOENCODING=ascii failed on 'é')
            count = reader.export_jsonl(getattr(sys.stdout, "buffer", sys.stdout), since_ms=since_ms, until_ms=until_ms, skipped=skipped)
        else:
            _refuse_journal_file(out, reader, _journal_path(journal, config))
            target = _refuse_to_replace(out, force=force)
            count = _export_to_file(reader, out, target, since_ms, until_ms, skipped)
        unwritten = reader.unwritten()
        passed_over = dict(reader.skipped)
    typer.echo(f"exported {count} events" + (f" to {out}" if out else ""), err=True)
    for u in unwritten:
        _note(
            f"included {len(u.rows)} event(s) (seq {u.first}..{u.last}) not yet in the journal, from {u.path}: a failed "
            f"writer saved them there, and {u.next_start()}"
        )
    if skipped:
        typer.secho(f"hotcoin: left out {_seqs(len(skipped), skipped)}", fg=typer.colors.YELLOW, err=True)
    for path, why in passed_over.items():
        typer.secho(f"hotcoin: left out the archive {path} (SQLite cannot read it: {why})", fg=typer.colors.YELLOW, err=True)
    if gaps:
        typer.secho(f"hotcoin: {_missing(reader.path, gaps)}", fg=typer.colors.YELLOW, err=True)


def _missing(journal: Path, gaps: list[Any]) -> str:
    """One line for runs of seqs no file of the journal holds (`JournalReader.missing`)."""
    shown = ", ".join(map(str, gaps[:LISTED_GAPS])) + (" …" if len(gaps) > LISTED_GAPS else "")
    count = sum(g.last - g.first + 1 for g in gaps)
    return (
        f"journal {journal} is missing {count} event(s) ({shown}): seqs are never skipped, so rows were deleted "
        "or an archive is gone; restore it from a backup if you have one"
    )


LISTED_GAPS = 5


def _note(text: str) -> None:
    typer.secho(f"hotcoin: {text}", fg=typer.colors.YELLOW, err=True)


def _refuse_journal_file(out: Path, reader: JournalReader, given: Path) -> None:
    """Exit 2 when `--out` is the journal or a file the engine keeps with it: its SQLite
    sidecars, its writer lock, the demo's saved market, anything in its archive folder, a spill
    file of its unwritten events. Writing the journal or an archive truncates the very events
    being exported; over the saved market (`-o journal.sqlite.market --force`) the next run
    threw the market away and marked its recovered positions at unrelated prices. `given` is
    the journal's path as configured, which the saved market is named after; `reader.path` is
    the file it is (symlinks followed), which the lock, archives and spill files are named after."""
    from engine.journal.files import archive_dir, is_spill_name
    from engine.journal.lock import lock_path
    from engine.sim.saved import saved_market_path

    target = out.expanduser().resolve()
    own: list[Path] = []
    for journal in dict.fromkeys([reader.path, given.expanduser().absolute()]):
        own += [journal, *(journal.with_name(journal.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
        own += [lock_path(journal), saved_market_path(journal)]
    own += [archive.path for archive in reader.archives]
    archives = archive_dir(reader.path).resolve()
    spill_dirs = {folder.resolve() for folder in reader.spill_dirs}
    if (
        any(target == path.resolve() or (target.exists() and path.exists() and target.samefile(path)) for path in own)
        or target.is_relative_to(archives)
        or (target.parent in spill_dirs and is_spill_name(reader.path, target.name))
    ):
        raise typer.BadParameter(
            f"{out} is the journal or one of its files (its SQLite sidecars, writer lock, saved demo market, archives "
            "or unwritten events), and writing it would erase what it holds; pick another file, e.g. events.jsonl",
            param_hint="'--out'",
        )


SQLITE_HEADER = b"SQLite format 3\x00"


def _refuse_to_replace(out: Path, *, force: bool) -> Path | None:
    """Exit 2 before `--out` replaces what cannot be rebuilt: another journal (an SQLite file,
    or one an engine holds the writer lock of: it may not have written its header yet) whatever
    `--force` says, and any other file with something in it unless `--force`. The export went
    over `-o victim.sqlite`, another journal, and its events were gone.

    Returns the regular file the export replaces (through a temp file and a rename): `out`, or
    the file a symlink names (the link stays a link); None for a pipe, terminal or device
    (`-o >(gzip > x.gz)`, /dev/null), which is opened and written as it is. Only a regular file
    is read, for its header: reading a pipe waited forever for a writer, and renaming over a
    device node or a symlink replaced the node or the link with a file."""
    import os
    import stat

    target = out.expanduser()
    if _writer_lock_held(target):
        raise typer.BadParameter(
            f"{out} is a journal an engine is writing (its lock {target}.lock is held); pick another file, e.g. events.jsonl",
            param_hint="'--out'",
        )
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:  # the usual case (a dangling symlink: the file it names is made)
        return Path(os.path.realpath(target))
    except OSError:  # unreadable: the write says why
        return target
    if not stat.S_ISREG(mode):
        return target if stat.S_ISDIR(mode) else None  # a folder: the write says why
    real = Path(os.path.realpath(target))
    try:
        with real.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
        size = real.stat().st_size
    except OSError:  # unreadable: the write says why
        return real
    if head == SQLITE_HEADER:
        raise typer.BadParameter(
            f"{out} is an SQLite file (another journal?), and the export would replace it with JSON lines; "
            "pick another file, e.g. events.jsonl",
            param_hint="'--out'",
        )
    if size and not force:
        raise typer.BadParameter(f"{out} already exists ({size:,} bytes); add --force to replace it, or pick another file", param_hint="'--out'")
    return real


def _writer_lock_held(journal: Path) -> bool:
    """Whether an engine (or a backtest) holds `journal`'s writer lock (`engine.journal.lock`)."""
    from engine.journal.lock import is_held

    return is_held(journal)


def _export_to_file(
    reader: JournalReader, out: Path, target: Path | None, since_ms: int | None, until_ms: int | None, skipped: list[int] | None
) -> int:
    """Export into a temp file beside `target` (`_refuse_to_replace`), renamed into place once
    complete, so a failure midway leaves any earlier file whole rather than half-written; with
    no `target` (a pipe or a device) straight into `out`."""
    import os
    import tempfile

    tmp: Path | None = None
    try:
        if target is None:
            with out.expanduser().open("wb") as fh:
                return reader.export_jsonl(fh, since_ms=since_ms, until_ms=until_ms, skipped=skipped)
        target.parent.mkdir(parents=True, exist_ok=True)  # as --journal and --out elsewhere: folders are made
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as fh:
            count = reader.export_jsonl(fh, since_ms=since_ms, until_ms=until_ms, skipped=skipped)
        os.replace(tmp, target)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {out} ({exc.strerror}); pick a file in a folder you can write",
            param_hint="'--out'",
        ) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return count


@journal_app.command("check")
def check(journal: JournalOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Run SQLite's integrity_check on the journal and each archive, decode every event, check what SQLite reads back of the -wal, and print their statistics."""
    from engine.errors import HotcoinError, JournalDamagedError
    from engine.journal.reader import JournalReader, unreadable_file

    path = _journal_path(journal, config)
    try:
        with JournalReader(path, spill_dirs=_spill_dirs(config)) as reader:
            report = reader.check()
    except JournalDamagedError as exc:
        report = [unreadable_file(path, exc.reason)]
    except HotcoinError as exc:
        _fail(exc, 2)
    problems = [p for p in map(_damage, report) if p]
    problems += [_wal_damage(r["wal"]) for r in report if r.get("wal") and r["wal"]["damage"]]
    problems += [_unknown(r) for r in report if r["unknown_events"]]
    problems += _lost(path, report[0])
    if as_json:
        import orjson

        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="journal files")
        for name in ("file", "integrity", "MB", "events", "damaged", "seq range", "traces"):
            table.add_column(name, overflow="fold")
        for r in report:
            traces = ", ".join(f"{k} {v}" for k, v in sorted(r["traces"].items())) or "-"
            seqs = f"{r['first_seq']}..{r['last_seq']}" if r["events"] else "-"
            size = f"{r['bytes'] / 1e6:.1f}" if r["bytes"] is not None else "-"
            counts = [str(r[k]) if r[k] is not None else "-" for k in ("events", "damaged_events")]
            table.add_row(Path(r["path"]).name, r["integrity"], size, *counts, seqs, traces)
        Console(highlight=False).print(table)
    if (deleted := _deleted(report[0])) is not None:
        typer.echo(f"hotcoin: {deleted}", err=True)  # information: retention does it on purpose
    if (stuck := _stuck_rotation(report[0])) is not None:
        _note(stuck)  # no damage (nothing is lost), but the owner's to fix
    for problem in problems:
        typer.secho(f"hotcoin: {problem}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)


def _deleted(main: dict[str, Any]) -> str | None:
    """The line for the seqs retention deleted with their archives (`JournalReader.deleted`):
    said as what it is, so they are not taken for lost events."""
    deleted = main.get("deleted") or []
    if not deleted:
        return None
    shown = ", ".join(f"seq {first}..{last}" if first != last else f"seq {first}" for first, last in deleted[:LISTED_GAPS])
    count = sum(last - first + 1 for first, last in deleted)
    return (
        f"{count} older event(s) ({shown}{' …' if len(deleted) > LISTED_GAPS else ''}) were deleted on purpose, "
        "with their archives, by retention (journal.retention_archives): not lost"
    )


def _stuck_rotation(main: dict[str, Any]) -> str | None:
    """The line for a rotation that cannot write its archive (`JournalReader.pending_rotation`):
    no event is lost (they stay in the main file, which grows meanwhile), but only the owner
    can give the archive folder's disk the room or the write access it needs."""
    from engine.journal.files import PendingRotation

    rotation = main.get("rotation")
    if not rotation or not rotation["error"]:
        return None
    pending = PendingRotation(Path(rotation["archive"]), rotation["first_seq"], rotation["last_seq"], rotation["error"], rotation["fix"])
    return f"{pending.describe()}; {pending.fix}"


def _damage(r: dict[str, Any]) -> str | None:
    """What is wrong with one file of `check`'s report, as one line; None when nothing is."""
    if r["events"] is None:  # SQLite cannot read the file: `integrity` says why
        from engine.journal.reader import damaged_file_message

        return damaged_file_message(Path(r["path"]), r["integrity"])
    if r["integrity"] != "ok":
        return f"integrity check failed for {r['path']}"
    if r["damaged_events"]:
        return (
            f"{r['path']}: {_seqs(r['damaged_events'], r['damaged_seqs'])}; keep a copy of the file; "
            "`hotcoin journal export --skip-damaged` saves the other events"
        )
    return None


def _unknown(r: dict[str, Any]) -> str:
    """The line for events of a version or kind this hotcoin does not know (`hotcoin run` refuses them)."""
    from engine.journal.reader import LISTED_DAMAGED

    listed = r["unknown_seqs"]
    more = " …" if r["unknown_events"] > len(listed) else ""
    return (
        f"{r['path']}: {r['unknown_events']} event(s) are of a version or kind this hotcoin does not know "
        f"(seq {', '.join(map(str, listed[:LISTED_DAMAGED]))}{more}): a newer hotcoin wrote them, and `hotcoin run` "
        "refuses to start on them; upgrade hotcoin"
    )


def _lost(journal: Path, main: dict[str, Any]) -> list[str]:
    """The lines for events the journal's files do not hold: seqs missing between or inside
    them, and events a failed writer saved to a spill file that the engine has not taken back."""
    from engine.journal.reader import Gap, next_start

    found = []
    if main.get("missing"):
        found.append(_missing(journal, [Gap(first, last, None, None) for first, last in main["missing"]]))
    for spill in main.get("unwritten") or ():
        if spill["error"] is not None:
            found.append(spill["error"])
        else:
            found.append(
                f"{spill['events']} event(s) (seq {spill['first_seq']}..{spill['last_seq']}) are not yet in the journal "
                f"(in {spill['path']}): a failed writer saved them there; {next_start(spill['taken_back'], spill['journal_end'])}, "
                "and `hotcoin journal export` includes them"
                + (
                    f"; its last line (line {spill['torn_line']}) was cut short by the write it was in, and is left out"
                    if spill.get("torn_line") is not None
                    else ""
                )
            )
    return found


def _wal_damage(wal: dict[str, Any]) -> str:
    """The line for a -wal whose damage drops committed events (`JournalReader.check`)."""
    return (
        f"{wal['damage']}; the engine's next start keeps a copy of the -wal before going on without them "
        "(until then it holds them): check the disk (`dmesg`)"
    )


def _seqs(count: int, listed: list[int]) -> str:
    from engine.journal.reader import LISTED_DAMAGED

    more = " …" if count > min(len(listed), LISTED_DAMAGED) else ""
    return f"{count} damaged event(s) that do not decode or lack fields their kind requires (seq {', '.join(map(str, listed[:LISTED_DAMAGED]))}{more})"


def _journal_path(journal: Path | None, config: Path | None) -> Path:
    """`--journal`, else the configured journal; exit 2 when there is no file there."""
    from engine.errors import HotcoinError

    try:
        if journal is None:
            from engine.config import load_config

            journal = load_config(config).config.journal_path
    except HotcoinError as exc:
        _fail(exc, 2)
    path = journal.expanduser()
    if path.is_dir():
        typer.secho(f"hotcoin: {path} is a directory; point --journal or HOTCOIN_JOURNAL at the journal file in it", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if not path.is_file():
        typer.secho(
            f"hotcoin: no journal at {path}. The engine creates it when it runs (paper mode is the default); "
            "point --journal or HOTCOIN_JOURNAL at an existing journal file.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    return path


def _spill_dirs(config: Path | None) -> list[Path]:
    """The configured data dir, where a failed writer saves the unwritten events its journal's
    own folder cannot take (a journal on a disk of its own that filled): a reader looking only
    beside the journal said `journal check` ok, and `export` left them out without a word. Read
    from the config even with `--journal`, which names the journal, not the data dir. A config
    that does not load leaves only the journal's folder and the folder its writer recorded
    (`JournalReader`): reading the journal does not need the config."""
    from engine.config import load_config
    from engine.errors import HotcoinError

    try:
        return [load_config(config).config.paths.data_dir.expanduser()]
    except HotcoinError:
        return []


def _open_reader(journal: Path | None, config: Path | None, *, skip_damaged: bool = True) -> JournalReader:
    """The reader for `--journal`, else the configured journal; exit 2 when there is none,
    1 when the file is damaged (the fix is to salvage it, not to point elsewhere)."""
    from engine.errors import HotcoinError, JournalDamagedError
    from engine.journal.reader import JournalReader

    path = _journal_path(journal, config)
    try:
        return JournalReader(path, skip_damaged=skip_damaged, spill_dirs=_spill_dirs(config))
    except JournalDamagedError as exc:
        _fail(exc, 1)
    except HotcoinError as exc:
        _fail(exc, 2)


@contextmanager
def _reading(
    journal: Path | None, config: Path | None, *, skip_damaged: bool = True, notes: bool = True
) -> Iterator[JournalReader]:
    """`_open_reader` for the length of a command: damage met while reading exits 1 with
    the message naming the file and seq, not a traceback. An archive SQLite cannot read is
    passed over (`skip_damaged`) unless the question needs it, and, with `notes`, what the
    answer may lack is said on stderr once it is given (`JournalReader.notes`: that archive,
    events a failed writer saved that the journal does not hold yet)."""
    from engine.errors import JournalDamagedError, JournalError

    reader = _open_reader(journal, config, skip_damaged=skip_damaged)
    try:
        with reader:
            yield reader
            for line in reader.notes() if notes else ():
                _note(line)
    except JournalDamagedError as exc:
        _fail(exc, 1)
    except JournalError as exc:  # an archive passed over for a reason other than damage
        _fail(exc, 2)


def _fail(exc: HotcoinError, code: int) -> NoReturn:
    typer.secho(f"hotcoin: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code) from None


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time(text: str, option: str, *, now_ms: int | None = None) -> int:
    """Epoch ms from an ISO time (UTC when it has no zone) or a relative age like 2h / 30m / 1d,
    between 1970 and 9999 (`is_calendar_ms`): an age of 99999999999w was an OverflowError in the
    reader's query."""
    from datetime import UTC, datetime

    match = _RELATIVE.match(text)
    if match:
        if now_ms is None:
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
        age = float(match[1]) * _UNIT_MS[match[2]]
        ms = now_ms - int(age) if math.isfinite(age) else -math.inf
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{text!r} is neither an ISO time (2026-11-25T08:00) nor a relative age (30m, 2h, 1d, 1w)", param_hint=option
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = moment.timestamp() * 1000
    if not is_calendar_ms(ms):
        raise typer.BadParameter(
            f"{text!r} is not a time between 1970 and 9999; use an ISO time (2026-11-25T08:00) or a relative age "
            "(30m, 2h, 1d, 1w)",
            param_hint=option,
        )
    return int(ms)
