"""Where a journal's archive files live and how they are named.

`<dir>/<stem>.sqlite` keeps recent events; older ones move to
`<dir>/<stem>.archive/<stem>-<firstseq>-<lastseq>.sqlite`. The seq range in the name lets the
reader order archives and the writer know the highest seq ever used without opening them.

Two records in the main file's `meta` say what became of archives, read here so a reader or
`hotcoin doctor` need not load the writer: 'rotation', the rotation under way (written before
it moves anything, deleted once it is done), with why it could not write its archive when it
could not (`PendingRotation`); and 'deleted_archives', the seq ranges of every archive
retention deleted (`deleted_spans`), so those seqs read as deleted on purpose, not as lost.

A failed writer's spill files (see `writer`) are tied to their journal by its identity, a random
id the writer keeps in the main file's `meta` ('journal_id', `IDENTITY_KEY`): it is in their
name, `<stem>.<id>.unwritten-<first seq>.jsonl`, and in every line. A journal's own spill dir
(the data dir) is shared by every journal of that data dir, and the stem alone (`journal`)
matched another journal's files there: a healthy engine refused to start over events another
journal's full disk had saved, `journal check` called them its own, and seqs that happened to
line up would have been taken into the wrong journal. Files of the older form
`<stem>.unwritten-<seq>.jsonl`, with no identity, are still this journal's where they sit beside
it, as they always were; elsewhere whose they are cannot be told, and they are left alone and
named (`SpillFiles.unsure`). 'spill_dir' (`SPILL_DIR_KEY`) records the folder the writer was
given for them, so a reader finds them wherever the journal is read from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.errors import JournalError

# The `meta` keys of the records above.
ROTATION_KEY = "rotation"
DELETED_KEY = "deleted_archives"
IDENTITY_KEY = "journal_id"
SPILL_DIR_KEY = "spill_dir"
# The field of each spill file line that names its journal (`IDENTITY_KEY`'s value).
SPILL_ID_FIELD = "journal_id"
# What a spilled event must hold for the writer to emit it again.
_SPILL_FIELDS = ("seq", "ts_ms", "kind", "payload")


@dataclass(frozen=True, slots=True, order=True)
class Archive:
    first_seq: int
    last_seq: int
    path: Path


def archive_dir(journal: Path) -> Path:
    return journal.with_name(f"{journal.stem}.archive")


def archive_path(journal: Path, first_seq: int, last_seq: int) -> Path:
    return archive_dir(journal) / f"{journal.stem}-{first_seq}-{last_seq}.sqlite"


def list_archives(journal: Path) -> list[Archive]:
    """Archives of `journal`, oldest first (by seq range)."""
    folder = archive_dir(journal)
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(journal.stem)}-(\d+)-(\d+)\.sqlite$")
    found = []
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        if match:
            found.append(Archive(int(match[1]), int(match[2]), entry))
    return sorted(found)


def spill_name(journal: Path, journal_id: str, first_seq: int) -> str:
    """The name of the file a failed writer of `journal` saves its unwritten events to, from
    `first_seq` on (`.restored` is added once the engine took them back)."""
    return f"{journal.stem}.{journal_id}.unwritten-{first_seq}.jsonl"


def is_spill_name(journal: Path, name: str) -> bool:
    """Whether `name` is the name of one of `journal`'s spill files, of either form, taken back
    (`.restored`) or not: `journal export -o` must not write over one."""
    return _spill_name_pattern(journal).match(name.removesuffix(".restored")) is not None


def _spill_name_pattern(journal: Path) -> re.Pattern[str]:
    """`<stem>.<id>.unwritten-<seq>.jsonl`, and the older `<stem>.unwritten-<seq>.jsonl` (no id)."""
    return re.compile(rf"^{re.escape(journal.stem)}\.(?:(?P<id>[0-9a-f]{{12}})\.)?unwritten-(?P<seq>\d+)\.jsonl$")


@dataclass(frozen=True, slots=True)
class SpillFiles:
    """A journal's spill files in the folders searched (`find_spills`), oldest first: `ours`,
    named with its identity, or of the older form beside it; `unsure`, of the older form in
    another folder (the data dir), which may as well be another journal's of the same stem."""

    ours: list[Path] = field(default_factory=list)
    unsure: list[Path] = field(default_factory=list)


def find_spills(journal: Path, journal_id: str | None, folders: Sequence[Path]) -> SpillFiles:
    """The spill files of `journal` (whose `meta` identity is `journal_id`: None for one no
    writer of this version opened yet) in `folders`, the journal's own first. A file named
    with another identity is another journal's, and not listed."""
    pattern = _spill_name_pattern(journal)
    home = journal.parent
    ours: dict[Path, int] = {}
    unsure: dict[Path, int] = {}
    for folder in dict.fromkeys(folders):
        try:
            entries = list(folder.iterdir()) if folder.is_dir() else []
        except OSError:
            continue
        for entry in entries:
            match = pattern.match(entry.name)
            if match is None or not entry.is_file():
                continue
            if match["id"] is not None:
                if match["id"] == journal_id:
                    ours[entry] = int(match["seq"])
            elif folder == home:
                ours[entry] = int(match["seq"])
            else:
                unsure[entry] = int(match["seq"])
    return SpillFiles(_by_seq(ours), _by_seq(unsure))


def _by_seq(found: dict[Path, int]) -> list[Path]:
    return sorted(found, key=lambda f: (found[f], str(f)))


@dataclass(frozen=True, slots=True)
class SpillFile:
    """What one spill file holds: `events` (seq -> event, in the `journal export` shape);
    `torn_line`, the 1-based number of a last line a write cut short (left out); `other_id`,
    set when its events name another journal (then `events` is empty: they are not ours)."""

    path: Path
    events: dict[int, dict[str, Any]]
    torn_line: int | None = None
    other_id: str | None = None

    def torn(self) -> str:
        """One line on the torn last line, for a warning or a note ('' when there is none)."""
        if self.torn_line is None:
            return ""
        return (
            f"line {self.torn_line} of {self.path}, its last, was cut short (the process was killed or the disk "
            f"filled while it was written) and is left out; the {len(self.events)} event(s) before it are whole"
        )


def read_spill(path: Path, journal_id: str | None) -> SpillFile:
    """The events of a spill file of the journal whose identity is `journal_id`.

    Lines are appended whole (`writer`), so a last line without its newline that does not
    parse is a write cut short (kill -9, power loss, a disk that filled mid-write): it is left
    out (`torn_line`) and the events before it count; a start refused over it left an engine
    unable to manage its positions over an event that never finished being saved. A bad line
    anywhere else is damage, and raises `JournalError` with its 1-based line number: guessing
    past it could leave a fill out of recovery."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(
            f"cannot read the unwritten events saved in {path}: {exc.strerror or exc}; fix or move the file aside"
        ) from exc
    lines = data.split(b"\n")  # a file that ends in its newline ends in b""
    events: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
            if not isinstance(event, dict):
                raise TypeError(f"a JSON {type(event).__name__}, not an event")
            missing = [name for name in _SPILL_FIELDS if name not in event]
            if missing:
                raise KeyError(", ".join(missing))
            seq = int(event["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if number == len(lines):
                return SpillFile(path, events, torn_line=number)
            why = f"it lacks {exc}" if isinstance(exc, KeyError) else str(exc)
            raise JournalError(
                f"cannot read the unwritten events saved in {path}: line {number}: {why}; fix or move the file aside"
            ) from exc
        named = event.get(SPILL_ID_FIELD)
        if named is not None and named != journal_id:
            return SpillFile(path, {}, other_id=str(named))
        events.setdefault(seq, event)  # a seq saved twice is the same event
    return SpillFile(path, events)


def is_blank(journal: Path) -> bool:
    """A journal file of 0 bytes, with no archives: made (`touch`, `sqlite3 j.sqlite "select 1"`,
    or our writer in the instant before SQLite writes its header) but never written. It is a new
    journal: the engine starts one in it, the readers say it has no events yet."""
    try:
        size = journal.stat().st_size
    except OSError:
        return False
    return size == 0 and not list_archives(journal)


@dataclass(frozen=True, slots=True)
class PendingRotation:
    """A rotation of seqs `first`..`last` into `archive` that has not finished: under way, or
    interrupted by a crash (`error` None: the engine's next start finishes it), or unable to
    write its archive (`error`: SQLite's or the file system's words, `fix`: the cause and the
    fix). The main file keeps every event it has not moved meanwhile."""

    archive: Path
    first: int
    last: int
    error: str | None = None
    fix: str | None = None

    def describe(self) -> str:
        """One line for a pending rotation that could not write its archive."""
        return f"the rotation of seq {self.first}..{self.last} cannot write its archive {self.archive}: {self.error}"


def pending_rotation(journal: Path, raw: str | None) -> PendingRotation | None:
    """The pending rotation recorded in the main file's `meta` ('rotation': `raw`), or None."""
    if raw is None:
        return None
    try:
        found = orjson.loads(raw)
        first, last = int(found["first"]), int(found["last"])
        error, fix = found.get("error"), found.get("fix")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    return PendingRotation(
        archive_path(journal, first, last),
        first,
        last,
        None if error is None else str(error),
        None if fix is None else str(fix),
    )


def deleted_spans(raw: str | None) -> list[tuple[int, int]]:
    """The seq ranges retention deleted, from the main file's `meta` ('deleted_archives': `raw`,
    a JSON list of [first, last]); an unreadable record reads as none."""
    if raw is None:
        return []
    try:
        return merge_spans((int(first), int(last)) for first, last in orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return []


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Seq ranges sorted, with the ones that touch or overlap made one: retention deletes the
    oldest archives, one after the other, so the record stays a range or a few (one more per
    archive it keeps between them because recovery needs it)."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
