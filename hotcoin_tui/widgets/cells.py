"""Updating a `DataTable` cell in place without cutting it.

`DataTable.update_cell` keeps the column's width unless told otherwise, so a value that grew
(a stop set on a micro-priced coin, a signal turning HOLDING) was cut off silently. Telling it
to re-measure costs, when the new value is narrower, a measure of every cell in the column;
at hundreds of rows updated per snapshot that is quadratic. A value wider than its column is
the only one that needs it, and then the column only grows (one measure).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey


def update_cell(table: DataTable[Text], row: str, column: str, value: Text) -> None:
    """`table.update_cell`, widening the column when the value would not fit."""
    wider = value.cell_len > table.columns[ColumnKey(column)].content_width
    table.update_cell(row, column, value, update_width=wider)
