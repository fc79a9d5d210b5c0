"""A Static whose height follows its text, that asks for a layout pass only when that height
changes, and skips a repaint of text it already shows.

`Static.update` re-lays out the whole screen by default, which re-renders every panel
(measured ~100 ms at 160x48 with a 500-row table); the totals and engine-state panels change
text twice a second but their height almost never. On a quiet market their text does not
change at all from one snapshot to the next, and repainting it anyway was console CPU (and
terminal output over SSH) spent on nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Group
from rich.text import Text
from textual.widgets import Static


def rows_needed(lines: list[Text], width: int) -> int:
    return sum(max(1, math.ceil(line.cell_len / max(1, width))) for line in lines)


def same_text(shown: Sequence[Text], new: Sequence[Text]) -> bool:
    """Whether `new` would draw exactly what `shown` drew. `Text ==` compares the characters
    and the styled spans but not the line's own style (a reason line and a stale warning
    differ only there), so that is compared too."""
    return len(shown) == len(new) and all(a == b and a.style == b.style for a, b in zip(shown, new, strict=True))


class AutoStatic(Static):
    _rows = -1
    _shown: tuple[int, list[Text]] = (-1, [])

    def show_lines(self, lines: list[Text]) -> None:
        width = self.content_size.width or self.size.width
        shown_width, shown = self._shown
        if width == shown_width and same_text(shown, lines):
            return
        rows = rows_needed(lines, width)
        self.update(Group(*lines), layout=rows != self._rows)
        self._rows, self._shown = rows, (width, lines)
