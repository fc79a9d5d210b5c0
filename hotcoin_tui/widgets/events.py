"""The live event stream: newest at the bottom, capped, Enter opens an event's trace.

Snapshots carry the engine's last events (newest last, overlapping from one snapshot to the
next); rows are keyed by `seq`, so only events not yet shown are appended and the oldest are
dropped past the cap. The view follows the newest event unless the user has moved the cursor
up to read something. Events the panel never received (more of them between two snapshots
than a snapshot carries) are not skipped silently: a NOT SHOWN row says how many, and Enter on
it gives the `hotcoin journal export` command that lists them.

The panel is narrow beside the others (38 columns at 120x40), and a table wider than its panel
is cut at the edge mid-word: `heat 78` read `heat 7`. So every column has a fixed width that
fits the panel, text longer than its column ends in a visible `…` at a word boundary, and when
the panel is too narrow for a useful What column the Time column goes (Enter shows it all).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual import on
from textual.widgets import DataTable

from engine.runtime.snapshot import EventRow
from hotcoin_tui.messages import TraceRequested
from hotcoin_tui.widgets.candidate_pool import display_symbol

# The kind of the row that stands for events the panel never received (a gap in the seqs).
NOT_SHOWN = "not_shown"

KIND_STYLE = {
    "fill": "bold green",
    "order_result": "cyan",
    "state_change": "bold yellow",
    "risk_event": "bold red",
    "order_anomaly": "bold yellow",
    "command": "bold magenta",
    "command_refused": "bold red",
    NOT_SHOWN: "bold yellow",
    "signal_snapshot": "",
    "candidate_snapshot": "dim",
}

# Short names keep the summary column visible in a narrow panel.
KIND_LABEL = {
    "candidate_snapshot": "candidate",
    "signal_snapshot": "signal",
    "risk_check": "risk",
    "order_attempt": "order",
    "order_result": "result",
    "position_update": "position",
    "state_change": "STATE",
    "risk_event": "RISK",
    "order_anomaly": "ANOMALY",
    "model_shadow": "shadow",
    "command_refused": "REFUSED",
    NOT_SHOWN: "NOT SHOWN",
}


# Widths of the fixed columns (cells; the table adds one cell of padding on each side).
TIME_W, KIND_W, SYMBOL_W = 8, 9, 8
PADDING = 2
MIN_WHAT_WITH_TIME = 24  # narrower than this, the What column gets the Time column's room


def clock(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M:%S")


def not_shown(after: EventRow, first_new: EventRow) -> EventRow:
    """The row standing for the events between `after` (the last one shown) and `first_new`:
    how many, and the journal command that lists them (from `after`'s second to the end of
    `first_new`'s, as `--since`/`--until` read times: UTC, the end exclusive)."""
    missing = first_new.seq - after.seq - 1
    since, until = _iso_second(after.ts_ms), _iso_second(first_new.ts_ms + 1000)
    what = f"{missing} event(s) not shown: hotcoin journal export --since {since} --until {until}"
    return EventRow(after.seq + 1, first_new.ts_ms, NOT_SHOWN, None, None, what)


def _iso_second(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def clip(text: str, width: int) -> str:
    """`text` in at most `width` cells; cut text ends in `…`, after a whole word where there
    is one, so a number is either shown whole or not at all, never shortened into another."""
    if cell_len(text) <= width:
        return text
    head = set_cell_size(text, width - 1)
    if head[-1:] != " " and text[len(head) : len(head) + 1] != " " and " " in head:
        head = head[: head.rfind(" ")]
    return head.rstrip() + "…"


def layout(width: int) -> tuple[bool, int]:
    """For a panel `width` cells wide: whether the Time column is shown, and the What width."""
    fixed = KIND_W + SYMBOL_W + 3 * PADDING
    what = width - fixed - TIME_W - PADDING
    if what >= MIN_WHAT_WITH_TIME:
        return True, what
    return False, max(1, width - fixed)


class EventsPanel(DataTable[Text]):
    def __init__(self, max_rows: int = 300, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row")
        self.max_rows = max_rows
        self.last_seq = 0
        self._events: dict[int, EventRow] = {}
        self.layout_now = layout(0)

    def on_mount(self) -> None:
        self._add_columns()
        self.border_title = "Events · Enter: why"

    def on_resize(self) -> None:
        """Lay the columns out for the new width; rows are rebuilt from the events kept."""
        width = self.size.width - self.styles.scrollbar_size_vertical  # inside the border; room kept for the scrollbar
        if self.size.width == 0 or layout(width) == self.layout_now:  # hidden, or no change
            return
        self.layout_now = layout(width)
        following = self.cursor_row >= self.row_count - 1
        cursor = self.coordinate_to_cell_key(self.cursor_coordinate).row_key if self.row_count else None
        self.clear(columns=True)
        self._add_columns()
        for row in self._events.values():
            self._add(row)
        if self.row_count and (following or cursor is None):
            self.move_cursor(row=self.row_count - 1, animate=False)
        elif cursor is not None:
            self.move_cursor(row=self.get_row_index(cursor), animate=False)

    def _add_columns(self) -> None:
        show_time, what = self.layout_now
        if show_time:
            self.add_column("Time", key="ts", width=TIME_W)
        self.add_column("Kind", key="kind", width=KIND_W)
        self.add_column("Symbol", key="sym", width=SYMBOL_W)
        self.add_column("What", key="what", width=what)

    def _add(self, event: EventRow) -> None:
        show_time, what = self.layout_now
        cells = [  # Text, never str: engine text may contain [brackets] (markup)
            Text(clip(KIND_LABEL.get(event.kind, event.kind), KIND_W), style=KIND_STYLE.get(event.kind, "")),
            Text(clip(display_symbol(event.symbol), SYMBOL_W) if event.symbol else ""),
            Text(clip(event.summary, what)),
        ]
        if show_time:
            cells.insert(0, Text(clock(event.ts_ms)))
        self.add_row(*cells, key=str(event.seq))

    @property
    def cursor_trace(self) -> str | None:
        if self.row_count == 0:
            return None
        return self._trace(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def _trace(self, key: str | None) -> str | None:
        event = self._events.get(int(key or 0))
        return event.trace_id if event else None

    def apply(self, events: Sequence[EventRow]) -> None:
        fresh = [e for e in events if e.seq > self.last_seq][-self.max_rows :]
        if not fresh:
            return
        following = not self.has_focus or self.cursor_row >= self.row_count - 1
        last = self._events.get(self.last_seq)
        if last is not None and fresh[0].seq > last.seq + 1:
            fresh.insert(0, not_shown(last, fresh[0]))
        for event in fresh:
            self._add(event)
            self._events[event.seq] = event
        self.last_seq = fresh[-1].seq
        excess = self.row_count - self.max_rows
        if excess > 0:
            for seq in sorted(self._events)[:excess]:
                self.remove_row(str(seq))
                del self._events[seq]
        if following:
            self.move_cursor(row=self.row_count - 1, animate=False)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self._events.get(int(event.row_key.value or 0))
        if row is not None and row.kind == NOT_SHOWN:  # its whole text: the command to list them
            self.notify(row.summary, timeout=30)
        elif row is None or row.trace_id is None:
            self.notify("This event has no trace (engine-wide event).", severity="warning")
        else:
            self.post_message(TraceRequested(row.trace_id))
