"""Where a journal's archive files live and how they are named.

`<dir>/<stem>.sqlite` keeps recent events; older ones move to
`<dir>/<stem>.archive/<stem>-<firstseq>-<lastseq>.sqlite`. The seq range in the name lets the
reader order archives and the writer know the highest seq ever used without opening them.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path


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
