"""One trace's decision tree: the same explanation `hotcoin replay <trace_id>` prints.

The events come from the client (`EngineClient.trace`); the explanation is built by
`engine.journal.trace.summarise` and drawn by `hotcoin_tui.replay_view.render_trace`, so the
console and the command line can never tell two different stories about one decision.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from engine.journal.events import JournalEvent
from hotcoin_tui import keymap


class ReplayScreen(Screen[None]):
    BINDINGS = keymap.bindings(keymap.REPLAY)

    def __init__(self, trace_id: str, events: Sequence[JournalEvent]) -> None:
        super().__init__()
        self.trace_id = trace_id
        self.events = tuple(events)

    def compose(self) -> ComposeResult:
        from engine.journal.trace import summarise
        from hotcoin_tui.replay_view import render_trace

        with VerticalScroll(id="replay-body") as body:
            body.border_title = f"Replay {self.trace_id} · Esc back"
            yield Static(render_trace(summarise(self.trace_id, self.events)), id="replay-tree")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#replay-body").focus()
