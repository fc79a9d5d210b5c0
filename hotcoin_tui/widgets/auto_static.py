"""A Static whose height follows its text, that asks for a layout pass only when that height
changes.

`Static.update` re-lays out the whole screen by default, which re-renders every panel
(measured ~100 ms at 160x48 with a 500-row table); the totals and engine-state panels change
text twice a second but their height almost never.
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.text import Text
from textual.widgets import Static


def rows_needed(lines: list[Text], width: int) -> int:
    return sum(max(1, math.ceil(line.cell_len / max(1, width))) for line in lines)


class AutoStatic(Static):
    _rows = -1

    def show_lines(self, lines: list[Text]) -> None:
        rows = rows_needed(lines, self.content_size.width or self.size.width)
        self.update(Group(*lines), layout=rows != self._rows)
        self._rows = rows
