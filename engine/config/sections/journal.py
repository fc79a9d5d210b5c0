from __future__ import annotations

from pydantic import Field

from engine.config.sections.base import Section, UserPath


class JournalSection(Section):
    path: UserPath | None = Field(
        None, description="Journal SQLite file; default <data_dir>/journal.sqlite (HOTCOIN_JOURNAL also sets it)."
    )
    batch_size: int = Field(2000, ge=1, description="Events written per transaction at most.")
    flush_interval_ms: int = Field(50, ge=1, description="Longest an event waits in memory before it is written.")
    max_pending: int = Field(
        200_000,
        ge=1000,
        description="Back-pressure mark: above this many unwritten events the runtime stops feeding "
        "new market data until the writer catches up (events are never dropped).",
    )
    rotate_max_bytes: int = Field(
        2_000_000_000,
        ge=1_000_000,
        description="Past this many bytes of the main file's pages in use, move its oldest events to an archive "
        "file until half of it is left; the file then shrinks to match (a journal file made before hotcoin "
        "reclaimed that space needs a one-off VACUUM first: its first rotation logs the command).",
    )
    rotate_max_age_days: float = Field(
        30.0,
        gt=0,
        description="Once the main file's oldest event is twice this old, move the events older than this "
        "to an archive file: one archive per this many days of history.",
    )
    retention_archives: int = Field(
        24,
        ge=0,
        description="Archive files kept (one per rotate_max_age_days of history, or per size rotation); the "
        "oldest beyond this are deleted (0 keeps all). Each rotation first journals a checkpoint of what restart "
        "recovery rebuilds (cash, positions, orders, pause, risk and engine state), so an archive it covers goes "
        "whatever it holds; one after the latest checkpoint holding a fill, an order or an operator command is "
        "kept: recovery replays those. `hotcoin run` and `tui` write the checkpoints.",
    )
