"""Open positions and the account totals, including how far the day is from its loss limit.

Rows are keyed by symbol and updated in place like the candidate pool. Holding time is
measured against the snapshot's own clock, so a frozen feed shows a frozen (not growing,
not zeroed) picture and the banner says how old it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from engine.runtime.snapshot import PositionRow, Totals
from engine.timefmt import span
from hotcoin_tui.messages import SymbolSelected
from hotcoin_tui.widgets import fmt
from hotcoin_tui.widgets.auto_static import AutoStatic
from hotcoin_tui.widgets.candidate_pool import display_symbol
from hotcoin_tui.widgets.cells import update_cell

# Most important first: on a narrow panel the right-hand columns scroll off, not PnL.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("sym", "Symbol"),
    ("upnl", "uPnL"),
    ("mark", "Mark"),
    ("entry", "Entry"),
    ("stop", "Stop"),
    ("tp", "TP"),
    ("held", "Held"),
    ("size", "Size"),
)

Cells = tuple[str, ...]


def row_cells(pos: PositionRow, now_ms: int) -> Cells:
    return (
        display_symbol(pos.symbol),
        fmt.money(pos.unrealised_pnl, signed=True),
        fmt.price(pos.mark),
        fmt.price(pos.entry_price),
        fmt.price(pos.stop_price) if pos.stop_price is not None else "none",
        f"T{pos.tp_tier}" if pos.tp_tier else "-",
        span(now_ms - pos.opened_ms),
        fmt.quantity(pos.quantity),
    )


def totals_text(totals: Totals, count: int) -> Text:
    """Equity, exposure and day PnL against the daily loss limit, with a bar of the limit used."""
    used = totals.day_pnl / totals.daily_loss_limit if totals.daily_loss_limit < 0 and totals.day_pnl < 0 else 0.0
    exposure_pct = totals.exposure / totals.equity * 100 if totals.equity > 0 else 0.0
    text = Text()
    text.append(f"Equity {fmt.money(totals.equity)}  ")
    text.append(f"Exposure {fmt.money(totals.exposure)} ({exposure_pct:.0f}%)  ")
    text.append("Day ")
    text.append_text(fmt.pnl(totals.day_pnl))
    text.append(f" / limit {fmt.money(totals.daily_loss_limit)} ")
    text.append(f"[{fmt.bar(used, 6)}]", style="bold red" if used >= 0.8 else "yellow" if used >= 0.5 else "green")
    text.append(f"  {count} open")
    return text


class PositionsPanel(Vertical):
    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: dict[str, Cells] = {}
        self._rows: dict[str, PositionRow] = {}

    def compose(self) -> ComposeResult:
        yield DataTable(id="positions-table", cursor_type="row")
        yield AutoStatic("no snapshot yet", id="totals")

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.table.add_column(label, key=key)
        self.border_title = "Positions"

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#positions-table", DataTable)

    @property
    def cursor_position(self) -> PositionRow | None:
        table = self.table
        if table.row_count == 0:
            return None
        return self._rows.get(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def apply(self, positions: Sequence[PositionRow], totals: Totals, now_ms: int) -> None:
        table = self.table
        self._rows = {p.symbol: p for p in positions}
        for symbol in [s for s in self._shown if s not in self._rows]:
            table.remove_row(symbol)
            del self._shown[symbol]
        keys = [key for key, _ in COLUMNS]
        for pos in positions:
            cells = row_cells(pos, now_ms)
            old = self._shown.get(pos.symbol)
            if old is None:
                table.add_row(*(self._styled(i, t, pos) for i, t in enumerate(cells)), key=pos.symbol)
            else:
                for i, (before, after) in enumerate(zip(old, cells, strict=True)):
                    if before != after:
                        update_cell(table, pos.symbol, keys[i], self._styled(i, after, pos))
            self._shown[pos.symbol] = cells
        self.query_one("#totals", AutoStatic).show_lines([totals_text(totals, len(positions))])
        title = f"Positions ({len(positions)})"
        if title != self.border_title:  # setting a title repaints the whole panel, even the same title
            self.border_title = title

    @staticmethod
    def _styled(column: int, text: str, pos: PositionRow) -> Text:
        if column == 1:
            return fmt.pnl(pos.unrealised_pnl)
        return Text(text, justify="left" if column == 0 else "right")

    @on(DataTable.RowSelected, "#positions-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(SymbolSelected(str(event.row_key.value)))
