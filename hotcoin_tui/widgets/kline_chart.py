"""K-line (candlestick) chart of one symbol with buy/sell marks at this run's fills, each exit
labelled with its return against the average entry.

Plotting is the costliest thing the console draws (~5-10 ms per frame), so a redraw happens
at most once per `min_interval_s`: new data arriving sooner is kept and drawn when the
interval is up, and a hidden chart does not draw at all. plotext is imported on first draw
to keep start-up fast. Micro-priced coins are rescaled (prices x 10^k, shown in the title)
so the axis labels stay short. Without colour (NO_COLOR) falling candles get shaded bodies.

A fill mark is never hidden: the return labels are drawn before the marks, and a label that
would land on a mark (an entry on the exit's price row, just left of it) goes to the mark's
right instead, or is left out where neither side is free.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from engine.domain import Candle, Fill, Side
from hotcoin_tui.widgets.candidate_pool import display_symbol

INTERVALS: tuple[str, ...] = ("1m", "5m", "15m")
Y_AXIS_COLS = 12  # plotext's y labels and frame take about this many columns
X_AXIS_ROWS = 4  # plotext's title, frame and time labels take this many rows
FALLING_COLOUR = 1  # plotext's "red" (256-colour palette index 1): a falling candle
SHADED_BODY = "▒"


def scale_for(max_price: float) -> tuple[float, str]:
    """Multiplier and label for prices: below 0.01, scale so the top price is in [1, 10)."""
    if max_price <= 0 or max_price >= 0.01:
        return 1.0, ""
    exponent = math.floor(math.log10(max_price))
    return 10.0 ** (-exponent), f" ×1e{exponent}"


def exit_returns(fills: Sequence[Fill]) -> dict[str, float]:
    """Each sell's return against the average cost of the position it sold from (by trade id)."""
    out: dict[str, float] = {}
    quantity = cost = 0.0
    for fill in sorted(fills, key=lambda f: f.ts_ms):
        if fill.side is Side.BUY:
            quantity += fill.quantity
            cost += fill.notional
        elif quantity > 0:
            average = cost / quantity
            out[fill.trade_id] = fill.price / average - 1
            sold = min(fill.quantity, quantity)
            cost -= average * sold
            quantity -= sold
    return out


def render_chart(
    candles: Sequence[Candle], fills: Sequence[Fill], width: int, height: int, title: str
) -> str:
    """plotext candles and fill marks as an ANSI string of `width` x `height` cells."""
    import plotext as plt

    scale, scale_label = scale_for(max(c.high for c in candles))
    xs = list(range(len(candles)))
    plt.clf()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.title(title + scale_label)
    plt.candlestick(
        xs,
        {
            "Open": [c.open * scale for c in candles],
            "Close": [c.close * scale for c in candles],
            "High": [c.high * scale for c in candles],
            "Low": [c.low * scale for c in candles],
        },
    )
    opens = [c.open_ms for c in candles]
    bar_ms = candles[-1].close_ms - candles[-1].open_ms
    returns = exit_returns(fills)
    marks: list[tuple[int, float, Fill]] = [
        (bisect.bisect_right(opens, f.ts_ms) - 1, f.price * scale, f)
        for f in fills
        if opens[0] <= f.ts_ms < opens[-1] + bar_ms
    ]
    grid = _Grid(len(candles), min(c.low for c in candles) * scale, max(c.high for c in candles) * scale, width, height)
    for x, y, fill in marks:  # labels first: a mark drawn later is never hidden by one
        if fill.side is Side.SELL and fill.trade_id in returns:  # an exit: its PnL beside the mark
            r = returns[fill.trade_id]
            placed = grid.place(f"{r:+.1%}", x, y, [(mx, my) for mx, my, other in marks if other is not fill])
            if placed is not None:
                label, lx, alignment = placed
                plt.text(label, lx, y, color="green" if r >= 0 else "red", alignment=alignment)
    for side, marker, color in ((Side.BUY, "▲", "green"), (Side.SELL, "▼", "red")):
        shown = [(x, y) for x, y, f in marks if f.side is side]
        if shown:
            plt.scatter([x for x, _ in shown], [y for _, y in shown], marker=marker, color=color)
    ticks = xs[:: max(1, len(xs) // 4)]
    plt.xticks(ticks, [time.strftime("%H:%M", time.gmtime(candles[i].open_ms / 1000)) for i in ticks])
    return str(plt.build())


class _Grid:
    """Where a label lands in cells, roughly (plotext maps data to cells itself): enough to
    keep a label off the marks around it."""

    def __init__(self, bars: int, low: float, high: float, width: int, height: int) -> None:
        self.col_per_bar = max(1, width - Y_AXIS_COLS) / max(1, bars - 1)
        self.row_per_price = max(1, height - X_AXIS_ROWS) / (high - low) if high > low else 0.0
        self.cols = max(1, width - Y_AXIS_COLS)

    def place(self, text: str, x: int, y: float, marks: Sequence[tuple[int, float]]) -> tuple[str, int, str] | None:
        """The label, its x and alignment: left of the mark at (x, y) (where a reader looks
        for it), else right of it, else None (other marks on both sides)."""
        width = len(text) + 1  # and a space on the mark's side
        before, after = (x - 1) * self.col_per_bar, (x + 1) * self.col_per_bar
        left = (before - width + 1, before)
        right = (after, after + width - 1)
        if not self._covers(left, y, marks):
            return f"{text} ", x - 1, "right"
        if right[1] <= self.cols and not self._covers(right, y, marks):
            return f" {text}", x + 1, "left"
        return None

    def _covers(self, span: tuple[float, float], y: float, marks: Sequence[tuple[int, float]]) -> bool:
        """A mark on the label's row (or the next, as rounding goes) within a cell of its span."""
        return any(
            abs(my - y) * self.row_per_price < 1 and span[0] - 1 <= mx * self.col_per_bar <= span[1] + 1
            for mx, my in marks
        )


def shade_falling(chart: Text) -> Text:
    """The chart for a terminal without colour: plotext tells a falling candle from a rising
    one only by colour (red or green), which NO_COLOR strips. A falling candle's body is
    shaded (▒) and a rising one's stays solid (█), as on a printed chart."""
    chars = list(chart.plain)
    for span in chart.spans:
        style = span.style
        if isinstance(style, Style) and style.color is not None and style.color.number == FALLING_COLOUR:
            for i in range(span.start, span.end):
                if chars[i] == "█":
                    chars[i] = SHADED_BODY
    return Text("".join(chars), spans=chart.spans, no_wrap=chart.no_wrap, end=chart.end)


class KlineChart(Static):
    """Holds the latest candles of the selected symbol and redraws them, throttled."""

    can_focus = True  # the panel's keys land on it when it is picked (`MainScreen._focus_target`)

    def __init__(self, min_interval_s: float = 1.0, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("Select a symbol: Enter on a candidate or position row.", id=id, classes=classes)
        self.min_interval_s = min_interval_s
        self.symbol: str | None = None
        self.timeframe = INTERVALS[0]
        self.draws = 0
        self._candles: list[Candle] = []
        self._fills: list[Fill] = []
        self._last_draw = -math.inf
        self._pending = False
        self._shown: str | None = None  # the plot on screen (ANSI), while it is the chart's content

    def on_mount(self) -> None:
        self._retitle()

    @property
    def wanted_candles(self) -> int:
        """How many candles fit: one per column of plot area (at least 10)."""
        return max(10, self.content_size.width - Y_AXIS_COLS)

    def select(self, symbol: str) -> None:
        if symbol != self.symbol:
            self.symbol = symbol
            self._candles, self._fills = [], []
            self.update(f"Loading {symbol} {self.timeframe}…")
            self._shown = None
            self._retitle()

    def next_interval(self) -> str:
        self.timeframe = INTERVALS[(INTERVALS.index(self.timeframe) + 1) % len(INTERVALS)]
        self._candles = []
        self._retitle()
        return self.timeframe

    def set_data(self, symbol: str, timeframe: str, candles: list[Candle], fills: list[Fill]) -> None:
        """Accept a load; ignored if the user switched symbol or interval since it was asked for."""
        if symbol != self.symbol or timeframe != self.timeframe:
            return
        self._candles, self._fills = candles, fills
        self.schedule_draw()

    def schedule_draw(self) -> None:
        wait = self._last_draw + self.min_interval_s - time.monotonic()
        if wait <= 0:
            self.draw()
        elif not self._pending:
            self._pending = True
            self.set_timer(wait, self.draw)

    def draw(self) -> None:
        self._pending = False
        width, height = self.content_size
        if not self._candles or not self.display or width < 20 or height < 5:
            return
        self._last_draw = time.monotonic()
        self.draws += 1
        title = f"{display_symbol(self._candles[-1].symbol)} {self.timeframe}"
        ansi = render_chart(self._candles[-max(10, width - Y_AXIS_COLS) :], self._fills, width, height, title)
        if ansi == self._shown:  # a move too small to show: nothing to repaint
            return
        self._shown = ansi
        chart = Text.from_ansi(ansi, no_wrap=True)
        self.update(shade_falling(chart) if self.app.no_color else chart, layout=False)  # drawn to the size it has

    def on_resize(self) -> None:
        if self._candles:
            self.schedule_draw()

    def _retitle(self) -> None:
        which = display_symbol(self.symbol) if self.symbol else "no symbol"
        self.border_title = f"Chart {which} · {self.timeframe}"
