"""A one-line strip naming the panels and their keys; on small terminals it is the tab bar."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

PANELS: tuple[tuple[str, str, str], ...] = (
    ("candidates", "c", "Candidates"),
    ("positions", "o", "Positions"),
    ("chart", "k", "Chart"),
    ("events", "e", "Events"),
    ("state", "t", "Engine"),
)


class PanelBar(Static):
    def show(self, active: str, keys: dict[str, str]) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        for name, default_key, label in PANELS:
            key = keys.get(name, default_key)
            style = "bold reverse" if name == active else ""
            text.append(f" {key}:{label} ", style=style)
        self.update(text, layout=False)
