"""Quit with positions open: say what stays open, ask before stopping the engine.

The list follows every snapshot while the dialog is open (`show`): the engine keeps trading
under it, and the sizes and PnL the operator quits on must be the ones left open."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from engine.runtime.snapshot import PositionRow
from hotcoin_tui import keymap
from hotcoin_tui.dialogs.close_all import PositionsList


class QuitWithPositions(ModalScreen[bool]):
    BINDINGS = keymap.bindings(keymap.QUIT_DIALOG)

    def __init__(self, positions: Sequence[PositionRow]) -> None:
        super().__init__()
        self.positions = tuple(positions)
        self._composed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="warning"):
            with Vertical(classes="dialog-head"):
                yield Label(id="dialog-title")
                yield Static(id="quit-what")
            yield PositionsList("quit-table")
            with Vertical(classes="dialog-foot"):
                yield Static(self._keys_line(), id="dialog-keys")

    def _keys_line(self) -> str:
        """The keys as the app binds them now: after `close_all = "ctrl+k"` in [tui.keymap] the
        line said "ctrl+x closes everything first", and ctrl+x did nothing."""
        confirm = keymap.live_keys(self, keymap.QUIT_CONFIRM)
        cancel = keymap.live_keys(self, keymap.QUIT_CANCEL)
        close_all = keymap.live_keys(self, keymap.CLOSE_ALL)
        return f"{confirm}: quit anyway   {cancel}: stay   ({close_all} closes everything first)"

    def on_mount(self) -> None:
        self._composed = True
        self._render_latest()

    def show(self, positions: Sequence[PositionRow]) -> None:
        """The latest snapshot's positions; kept until mount when they arrive before the
        dialog's widgets exist."""
        self.positions = tuple(positions)
        if self._composed:
            self._render_latest()

    def _render_latest(self) -> None:
        title = self.query_one("#dialog-title", Label)
        what = self.query_one("#quit-what", Static)
        if self.positions:
            title.update(f"{len(self.positions)} POSITION(S) STILL OPEN")
            what.update(
                "Quitting stops the engine: these stay open and nothing manages their stops "
                "or take-profits until it runs again."
            )
        else:
            title.update("NO POSITION OPEN NOW")
            what.update("Everything closed since you asked: quitting stops the engine with nothing open.")
        self.query_one(PositionsList).show(self.positions)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
