"""Where a journal's archive files live and how they are named.

`<dir>/<stem>.sqlite` keeps recent events; older ones move to
`<dir>/<stem>.archive/<stem>-<firstseq>-<lastseq>.sqlite`. The seq range in the name lets the
reader order archives and the writer know the highest seq ever used without opening them.

Two records in the main file's `meta` say what became of archives, read here so a reader or
`hotcoin doctor` need not load the writer: 'rotation', the rotation under way (written before
it moves anything, deleted once it is done), with why it could not write its archive when it
could not (`PendingRotation`); and 'deleted_archives', the seq ranges of every archive
retention deleted (`deleted_spans`), so those seqs read as deleted on purpose, not as lost.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

# The `meta` keys of the records above.
ROTATION_KEY = "rotation"
DELETED_KEY = "deleted_archives"


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


def spill_pattern(journal: Path) -> str:
    """The glob of the files a failed writer saves its unwritten events to, beside the journal
    or in the data dir (`writer`: `<stem>.unwritten-<first seq>.jsonl`; `.restored` once the
    engine took them back). Here so a reader can look for them without loading the writer."""
    return f"{glob.escape(journal.stem)}.unwritten-*.jsonl"


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
