"""The live event stream: newest at the bottom, capped, Enter opens an event's trace.

Snapshots carry the engine's last events (newest last, overlapping from one snapshot to the
next); rows are keyed by `seq`, so only events not yet shown are appended and the oldest are
dropped past the cap. The view follows the newest event unless the user has moved the cursor
up to read something.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text
from textual import on
from textual.widgets import DataTable

from engine.runtime.snapshot import EventRow
from hotcoin_tui.messages import TraceRequested
from hotcoin_tui.widgets.candidate_pool import display_symbol

KIND_STYLE = {
    "fill": "bold green",
    "order_result": "cyan",
    "state_change": "bold yellow",
    "risk_event": "bold red",
    "command": "bold magenta",
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
    "model_shadow": "shadow",
}


def clock(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M:%S")


class EventsPanel(DataTable[Text]):
    def __init__(self, max_rows: int = 300, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row")
        self.max_rows = max_rows
        self.last_seq = 0
        self._traces: dict[int, str | None] = {}

    def on_mount(self) -> None:
        for key, label in (("ts", "Time"), ("kind", "Kind"), ("sym", "Symbol"), ("what", "What")):
            self.add_column(label, key=key)
        self.border_title = "Events · Enter: why"

    @property
    def cursor_trace(self) -> str | None:
        if self.row_count == 0:
            return None
        return self._traces.get(int(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value or 0))

    def apply(self, events: Sequence[EventRow]) -> None:
        fresh = [e for e in events if e.seq > self.last_seq]
        if not fresh:
            return
        following = not self.has_focus or self.cursor_row >= self.row_count - 1
        for event in fresh[-self.max_rows :]:
            self.add_row(  # Text, never str: engine text may contain [brackets] (markup)
                Text(clock(event.ts_ms)),
                Text(KIND_LABEL.get(event.kind, event.kind), style=KIND_STYLE.get(event.kind, "")),
                Text(display_symbol(event.symbol) if event.symbol else ""),
                Text(event.summary),
                key=str(event.seq),
            )
            self._traces[event.seq] = event.trace_id
        self.last_seq = fresh[-1].seq
        excess = self.row_count - self.max_rows
        if excess > 0:
            for seq in sorted(self._traces)[:excess]:
                self.remove_row(str(seq))
                del self._traces[seq]
        if following:
            self.move_cursor(row=self.row_count - 1, animate=False)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        trace = self._traces.get(int(event.row_key.value or 0))
        if trace is None:
            self.notify("This event has no trace (engine-wide event).", severity="warning")
        else:
            self.post_message(TraceRequested(trace))
