"""Quit with positions open: say what stays open, ask before stopping the engine."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from engine.runtime.snapshot import PositionRow
from hotcoin_tui import keymap
from hotcoin_tui.dialogs.close_all import positions_table


class QuitWithPositions(ModalScreen[bool]):
    BINDINGS = keymap.bindings(keymap.QUIT_DIALOG)

    def __init__(self, positions: Sequence[PositionRow]) -> None:
        super().__init__()
        self.positions = tuple(positions)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="warning"):
            yield Label(f"{len(self.positions)} POSITION(S) STILL OPEN", id="dialog-title")
            yield Static(
                "Quitting stops the engine: these stay open and nothing manages their stops "
                "or take-profits until it runs again."
            )
            with VerticalScroll(id="dialog-list"):
                yield Static(positions_table(self.positions))
            yield Static("y: quit anyway   n / Esc: stay   (ctrl+x closes everything first)", id="dialog-keys")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
