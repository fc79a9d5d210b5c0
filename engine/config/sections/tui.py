"""Terminal console settings: key remapping and how often each panel redraws.

The engine never reads these; they live in the one config so `hotcoin config show --doc`
documents them beside everything else. Key names are Textual's (`ctrl+x`, `question_mark`,
`f5`); binding ids are checked against the app's bindings when it starts, so a typo in an id
is an error that lists the known ids, not a silently ignored remap.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from engine.config.sections.base import Section

_BINDING_ID = re.compile(r"^[a-z][a-z0-9_.]*$")
_KEY = re.compile(r"^[A-Za-z0-9_+\-]+$")


class TuiSection(Section):
    keymap: dict[str, str] = Field(
        default_factory=dict,
        description="Binding id -> key(s), comma separated, e.g. {\"close_all\" = \"ctrl+k\", "
        "\"pause\" = \"p,f9\"}. Press ? in the console to see every id and its current key.",
    )
    refresh_hz: float = Field(
        4.0, ge=0.5, le=30.0, description="Most screen updates per second from engine snapshots; faster "
        "snapshots are coalesced (a repaint costs the shared event loop tens of milliseconds).",
    )
    candidate_rows: int = Field(
        200, ge=10, le=5000, description="Most candidate rows shown (after filter and sort); caps redraw cost."
    )
    event_rows: int = Field(300, ge=10, le=10_000, description="Most live events kept in the events panel.")
    chart_refresh_s: float = Field(
        1.0, ge=0.2, le=60.0, description="Shortest time between two K-line chart redraws (plotting is the costly part)."
    )
    chart_candles_max: int = Field(
        240, ge=10, le=1000, description="Most candles requested for the chart; fewer when the panel is narrow."
    )
    stale_after_s: float = Field(
        5.0, gt=0, le=600, description="Show the feed as stale (with its age) when no snapshot arrived for this long."
    )
    nice: int = Field(
        10, ge=0, le=19, description="Scheduling niceness the console gives itself once its engine runs in another "
        "process (its own child, or --attach), so a repaint waits for a core rather than the engine; 0 leaves it "
        "as started. Never applied with --in-process (one process: the engine thread would wait on a lowered "
        "thread holding the interpreter lock).",
    )

    @field_validator("keymap")
    @classmethod
    def _keys_look_like_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for binding_id, keys in value.items():
            if not _BINDING_ID.match(binding_id):
                raise ValueError(f"tui.keymap: {binding_id!r} is not a binding id (lower case, e.g. 'close_all')")
            parts = [k.strip() for k in keys.split(",")]
            if not parts or any(not p or not _KEY.match(p) for p in parts):
                raise ValueError(
                    f"tui.keymap.{binding_id}: {keys!r} is not a key list; use Textual key names "
                    "separated by commas, e.g. 'ctrl+k' or 'p,f9'"
                )
        return value
