"""How `--help` looks: click's plain help, wrapped to the terminal, never cut.

Typer's rich help lays options out as a six-column table, and at 80 columns rich shortens any
word wider than its column with `…`: the flag needed to trade live read `--yes-really-trade…`
and a default `$XDG_CONFIG_HOME/ho…`. Click's help puts each option's names on the left in full
and wraps the text beside them; its command lists, which would end each summary at `...`,
get the whole first paragraph, wrapped, here.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

# Wider terminals get longer lines, up to this (click alone stops at 80).
MAX_WIDTH = 120


class WrappedCommandsGroup(TyperGroup):
    """A command group whose list shows each command's summary whole, wrapped."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """(`ctx` and `formatter` are click's, of the copy typer carries in a private module.)"""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def command_group(**kwargs: Any) -> typer.Typer:
    """A `typer.Typer` with this help: plain, wrapped, up to `MAX_WIDTH` columns."""
    return typer.Typer(
        cls=WrappedCommandsGroup, rich_markup_mode=None, context_settings={"max_content_width": MAX_WIDTH}, **kwargs
    )
