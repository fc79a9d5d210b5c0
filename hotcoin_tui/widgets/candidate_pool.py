"""The candidate pool: every coin discovery ranks, sortable, filterable, updated in place.

A snapshot carries hundreds of rows twice a second. Rebuilding the table each time costs
~1.5x more than touching only what changed and loses the cursor, so rows are keyed by symbol:
rows that left the (filtered, sorted, capped) view are removed, new ones added, and only
cells whose text changed are updated (far off-screen rows less often). Sorting reorders row
positions without rebuilding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from engine.runtime.snapshot import CandidateRow
from hotcoin_tui.messages import SymbolSelected
from hotcoin_tui.widgets import fmt
from hotcoin_tui.widgets.cells import update_cell
from hotcoin_tui.widgets.shown import shown


@dataclass(frozen=True, slots=True)
class SortOrder:
    name: str
    key: Callable[[CandidateRow], float | str]
    descending: bool


def _known_first(value: float | None) -> float:
    """A return as a descending sort key: an unknown one (None) sorts after every known one."""
    return -math.inf if value is None else value


SORTS: tuple[SortOrder, ...] = (
    SortOrder("heat", lambda r: r.heat, True),
    SortOrder("1m", lambda r: _known_first(r.ret_1m), True),
    SortOrder("5m", lambda r: _known_first(r.ret_5m), True),
    SortOrder("1h", lambda r: _known_first(r.ret_1h), True),
    SortOrder("surge", lambda r: r.volume_surge, True),
    SortOrder("age", lambda r: r.coin_age_days if r.coin_age_days is not None else 1e9, False),
    SortOrder("symbol", lambda r: r.symbol, False),
)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("sym", "Symbol"),
    ("heat", "Heat"),
    ("r1m", "1m"),
    ("r5m", "5m"),
    ("r1h", "1h"),
    ("surge", "Surge"),
    ("age", "Age"),
    ("src", "Src"),
    ("sig", "Signal"),
)
_SIGNAL_STYLE = {"enter": "bold green", "skip": "dim", "hold": "yellow", "in_position": "bold cyan", "": "dim"}
_SIGNAL_TEXT = {"in_position": "HOLDING", "": "·"}

Cells = tuple[str, ...]
FULL_EVERY = 8  # snapshots between refreshes of off-screen rows


def display_symbol(symbol: str) -> str:
    """`PEPE/USDT` shows as `PEPE` (the pool is USDT-quoted); other quotes stay explicit."""
    return symbol.removesuffix("/USDT")


def row_cells(row: CandidateRow) -> Cells:
    """The text of each cell; compared between snapshots to find cells that changed."""
    sources = "".join(s[0].upper() for s in row.sources) or "-"
    return (
        display_symbol(row.symbol),
        f"{fmt.bar(row.heat / 100, 4)}{row.heat:4.0f}",
        fmt.pct_text(row.ret_1m),
        fmt.pct_text(row.ret_5m),
        fmt.pct_text(row.ret_1h),
        f"x{row.volume_surge:.1f}",
        fmt.age_days(row.coin_age_days),
        sources,
        _SIGNAL_TEXT.get(row.signal_state, row.signal_state),
    )


def matches(row: CandidateRow, query: str) -> bool:
    """Whether a lower-case filter text matches a row: its symbol, a source, or its signal as
    shown (`HOLDING`) or as the engine names it (`in_position`), since a user types what they see."""
    signal = (row.signal_state, _SIGNAL_TEXT.get(row.signal_state, row.signal_state).lower())
    return query in row.symbol.lower() or any(query in s for s in (*signal, *row.sources))


def styled(column: int, text: str, row: CandidateRow) -> Text:
    """A cell's renderable: colour only adds to what the text already says (NO_COLOR-safe)."""
    if column in (2, 3, 4):
        return fmt.pct((row.ret_1m, row.ret_5m, row.ret_1h)[column - 2])
    if column == 1:
        return Text(text, style="bold red" if row.heat >= 80 else "yellow" if row.heat >= 50 else "")
    if column == 8:
        return Text(text, style=_SIGNAL_STYLE.get(row.signal_state, ""))
    if column in (5, 6):
        return Text(text, justify="right")
    return Text(text)  # Text, never str: a str cell is parsed as markup on every repaint


class FilterInput(Input):
    """The filter box takes the focus only while it shows. Hidden (until `/`, or with its panel
    not the one showing) it was still focusable, and Textual gave it the focus when a dialog
    closed over the chart or engine panel: every key after that was typed into it unseen."""

    def allow_focus(self) -> bool:
        return shown(self) and super().allow_focus()


class CandidatePool(Vertical):
    """Filter input (hidden until `/`) above the ranked table."""

    def __init__(self, max_rows: int = 200, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.max_rows = max_rows
        self.sort_index = 0
        self.query_text = ""
        self._rows: dict[str, CandidateRow] = {}
        self._shown: dict[str, Cells] = {}
        self.syncs = 0

    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder="filter: symbol, source (ticker/listing/social) or signal; Esc clears", id="pool-filter")
        yield DataTable(id="pool-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.filter_input.display = False
        for key, label in COLUMNS:
            self.table.add_column(label, key=key)
        self._retitle()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#pool-table", DataTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#pool-filter", Input)

    @property
    def sort(self) -> SortOrder:
        return SORTS[self.sort_index]

    @property
    def shown_symbols(self) -> list[str]:
        """Symbols in on-screen order (what a user sees top to bottom)."""
        return [str(row.key.value) for row in self.table.ordered_rows]

    @property
    def cursor_symbol(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def row(self, symbol: str) -> CandidateRow | None:
        return self._rows.get(symbol)

    def apply(self, rows: Sequence[CandidateRow]) -> None:
        """Show a snapshot's candidates: diff against the table, touch only what changed."""
        self._rows = {r.symbol: r for r in rows}
        self._sync()

    def cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._retitle()
        self._sync()

    def open_filter(self) -> None:
        self.filter_input.display = True
        self.filter_input.focus()

    def _wanted(self) -> list[CandidateRow]:
        q = self.query_text.lower()
        rows = [r for r in self._rows.values() if not q or matches(r, q)]
        order = self.sort
        rows.sort(key=lambda r: r.symbol)
        rows.sort(key=order.key, reverse=order.descending)
        return rows[: self.max_rows]

    def _sync(self) -> None:
        table = self.table
        cursor = self.cursor_symbol
        wanted = self._wanted()
        wanted_keys = {r.symbol for r in wanted}
        for symbol in [s for s in self._shown if s not in wanted_keys]:
            table.remove_row(symbol)
            del self._shown[symbol]
        column_keys = [key for key, _ in COLUMNS]
        # Cells of rows far off screen are refreshed only every FULL_EVERY snapshots: a row
        # scrolled into view is current by the next snapshot, and most of the cost is gone.
        self.syncs += 1
        near = range(int(table.scroll_y) - table.size.height, int(table.scroll_y) + 2 * table.size.height + 1)
        full = self.syncs % FULL_EVERY == 0
        for index, row in enumerate(wanted):
            cells = row_cells(row)
            old = self._shown.get(row.symbol)
            if old is None:
                table.add_row(*(styled(i, t, row) for i, t in enumerate(cells)), key=row.symbol)
            elif old == cells or not (full or index in near):
                continue
            else:
                for i, (before, after) in enumerate(zip(old, cells, strict=True)):
                    if before != after:
                        update_cell(table, row.symbol, column_keys[i], styled(i, after, row))
            self._shown[row.symbol] = cells
        position = {display_symbol(r.symbol): i for i, r in enumerate(wanted)}
        if self.shown_symbols != [r.symbol for r in wanted]:
            table.sort("sym", key=lambda sym: position[str(sym)])
        if cursor is not None and cursor in self._shown:
            table.move_cursor(row=table.get_row_index(cursor), animate=False, scroll=False)
        self._retitle()

    def _retitle(self) -> None:
        shown, total = len(self._shown), len(self._rows)
        arrow = "↓" if self.sort.descending else "↑"
        filt = f" filter '{escape(self.query_text)}'" if self.query_text else ""
        title = f"Candidates {shown}/{total} · sort {self.sort.name}{arrow}{filt}"
        if title != self.border_title:  # setting a title repaints the whole panel, even the same title
            self.border_title = title

    @on(Input.Changed, "#pool-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._sync()

    @on(Input.Submitted, "#pool-filter")
    def _filter_done(self) -> None:
        self.table.focus()

    def key_escape(self) -> None:
        if self.filter_input.display:
            self.filter_input.value = ""
            self.filter_input.display = False
            self.table.focus()

    @on(DataTable.RowSelected, "#pool-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(SymbolSelected(str(event.row_key.value)))
