"""`?`: every binding with its id and the key it answers to now (after config remaps)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from hotcoin_tui import keymap


def help_table(overrides: Mapping[str, str]) -> Table:
    table = Table(box=None, expand=True)
    table.add_column("Key", style="bold")
    table.add_column("Does")
    table.add_column("Id (remap in \\[tui.keymap])", style="dim")
    for title, specs in keymap.ALL:
        table.add_row(f"[underline]{title}[/]", "", "")
        for spec in specs:
            table.add_row(keymap.effective_keys(spec, overrides), spec.description, spec.id)
    table.add_row("Enter", "select row: chart the symbol / open an event's trace", "")
    table.add_row("↑ ↓ PgUp PgDn", "move the row cursor", "")
    table.add_row("", "Src column: T ticker anomaly, L new listing, S social", "")
    return table


class HelpDialog(ModalScreen[None]):
    BINDINGS = keymap.bindings(keymap.HELP_DIALOG)

    def __init__(self, overrides: Mapping[str, str]) -> None:
        super().__init__()
        self.overrides = dict(overrides)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            with Vertical(classes="dialog-head"):
                yield Label("KEYS", id="dialog-title")
            with VerticalScroll(id="dialog-list"):
                yield Static(help_table(self.overrides))

    def action_close(self) -> None:
        self.dismiss(None)
