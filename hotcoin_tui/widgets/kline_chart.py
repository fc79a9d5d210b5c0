"""K-line (candlestick) chart of one symbol with buy/sell marks at this run's fills, each exit
labelled with its return against the average entry.

Plotting is the costliest thing the console draws (~5-10 ms per frame), so a redraw happens
at most once per `min_interval_s`: new data arriving sooner is kept and drawn when the
interval is up, and a hidden chart does not draw at all. plotext is imported on first draw
to keep start-up fast. Micro-priced coins are rescaled (prices x 10^k, shown in the title)
so the axis labels stay short. Without colour (NO_COLOR) falling candles get shaded bodies.

Every fill in the window keeps its mark: the marks and return labels are written into the
built chart (`_Canvas.mark`), not drawn by plotext, which draws a text over a marker whatever
the call order. A label goes left of its mark, else right of it, else is left out: never over
a mark or another label.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence

from rich.style import Style
from rich.text import Span, Text
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
) -> Text:
    """plotext candles with this run's fills marked (▲ buy, ▼ sell) and each exit's return
    beside its mark, as a rich Text of `width` x `height` cells.

    plotext draws the candles, axes and title only. The marks and labels are written into the
    built text grid afterwards: plotext draws a text over any marker whatever the call order
    (two exits close together showed one ▼ under a garbled `++10.0%`), and the cells it gives
    a data point are only known once it has laid out its axes. Each fill takes the cell
    plotext's own mapping gives it (`_Canvas.cell`), so a mark sits on its candle."""
    import plotext as plt

    scale, scale_label = scale_for(max(c.high for c in candles))
    xs = list(range(len(candles)))
    opens = [c.open_ms for c in candles]
    bar_ms = candles[-1].close_ms - candles[-1].open_ms
    shown = [(bisect.bisect_right(opens, f.ts_ms) - 1, f) for f in fills if opens[0] <= f.ts_ms < opens[-1] + bar_ms]
    prices = [c.low * scale for c in candles] + [c.high * scale for c in candles] + [f.price * scale for _, f in shown]
    xlim, ylim = _limits(0, len(candles) - 1), _limits(min(prices), max(prices))
    plt.clf()
    plt.limitsize(False, False)  # the widget's size, not capped at what plotext takes the terminal to be
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
    plt.xlim(*xlim)  # fixed, so that `_Canvas.cell` maps a fill as plotext maps the candles
    plt.ylim(*ylim)
    ticks = xs[:: max(1, len(xs) // 4)]
    plt.xticks(ticks, [time.strftime("%H:%M", time.gmtime(candles[i].open_ms / 1000)) for i in ticks])
    chart = Text.from_ansi(str(plt.build()), no_wrap=True)
    canvas = _Canvas.find(chart.plain)
    if canvas is None or not shown:  # too small for a frame: nothing to mark
        return chart
    return canvas.mark(chart, [(canvas.cell(x, xlim, f.price * scale, ylim), f) for x, f in shown], exit_returns(fills))


def _limits(low: float, high: float) -> tuple[float, float]:
    """An axis's range as plotext would pick it from the data (`plotext._utility.get_lim`): a
    single value gets room around it instead of a zero-width range."""
    if low != high:
        return low, high
    return (0.5 * low, 1.5 * low) if low != 0 else (-1.0, 1.0)


def _bin(value: float, lim: tuple[float, float], bins: int) -> int:
    """plotext's data-to-cell mapping (`plotext._utility.get_matrix_data`): cell 0 is the low
    end, and a value on the upper limit gets the last cell."""
    return math.floor(round(0.5 + (bins - 1) * (value - lim[0]) / (lim[1] - lim[0]), 8))


class _Canvas:
    """The plot area of a built chart, read off its frame (┌ … ┐ above, └ … ┘ below): where
    plotext put the area depends on its y labels' width, known only once it has built."""

    def __init__(self, lines: list[str], top: int, bottom: int, left: int, right: int) -> None:
        self.lines, self.top, self.bottom, self.left, self.right = lines, top, bottom, left, right

    @classmethod
    def find(cls, plain: str) -> _Canvas | None:
        lines = plain.split("\n")
        top = next((i for i, line in enumerate(lines) if "┌" in line), None)
        bottom = next((i for i, line in enumerate(lines) if "└" in line), None)
        if top is None or bottom is None or bottom - top < 2:
            return None
        left, right = lines[bottom].find("└") + 1, lines[bottom].find("┘")
        return cls(lines, top, bottom, left, right) if right > left else None

    def cell(self, x: float, xlim: tuple[float, float], y: float, ylim: tuple[float, float]) -> tuple[int, int]:
        """(line, column) in the chart's text of the data point (x, y)."""
        row = _bin(y, ylim, self.bottom - self.top - 1)  # from the bottom up
        return self.bottom - 1 - min(max(row, 0), self.bottom - self.top - 2), self.left + _bin(x, xlim, self.right - self.left)

    def mark(self, chart: Text, marks: Sequence[tuple[tuple[int, int], Fill]], returns: dict[str, float]) -> Text:
        """The chart with a ▲ (buy) or ▼ (sell) in each fill's cell and each exit's return beside
        its mark, left of it where a reader looks first, else right of it. Every mark is
        drawn; a label is left out where it would touch a mark or another label on either
        side, or run off the plot area, so no mark is hidden and no label garbled. Fills in
        one cell share a mark (a sell's, as it is drawn last)."""
        taken: set[tuple[int, int]] = {cell for cell, _ in marks}
        cells: dict[tuple[int, int], tuple[str, str]] = {}
        for (line, col), fill in sorted(marks, key=lambda m: m[1].side is Side.SELL):
            cells[(line, col)] = ("▲", "green") if fill.side is Side.BUY else ("▼", "red")
        for (line, col), fill in marks:
            r = returns.get(fill.trade_id) if fill.side is Side.SELL else None
            if r is None:
                continue
            text = f"{r:+.1%}"
            left, right = col - 1 - len(text), col + 1  # where `text + " "` and `" " + text` start
            for first, label, span in (
                (left, f"{text} ", range(left - 1, col)),  # and a free cell on the far side
                (right, f" {text}", range(right, right + len(text) + 2)),
            ):
                if first >= self.left and first + len(label) <= self.right and not any((line, c) in taken for c in span):
                    colour = "green" if r >= 0 else "red"
                    for i, char in enumerate(label):
                        cells[(line, first + i)] = (char, colour)
                        taken.add((line, first + i))
                    break
        starts = [0]
        for text_line in self.lines:
            starts.append(starts[-1] + len(text_line) + 1)
        chars = list(chart.plain)
        spans = list(chart.spans)
        for (line, col), (char, colour) in cells.items():
            at = starts[line] + col
            chars[at] = char
            spans.append(Span(at, at + 1, Style(color=colour)))
        return Text("".join(chars), spans=spans, no_wrap=chart.no_wrap, end=chart.end)


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
        self._shown: Text | None = None  # the plot on screen, while it is the chart's content

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
        """Accept a load; ignored if the user switched symbol or interval since it was asked for.
        No candles where none are shown yet is said as such (the refresh timer asks again); no
        candles where a plot is shown keeps the plot, the last data, until an answer has some."""
        if symbol != self.symbol or timeframe != self.timeframe:
            return
        if not candles:
            if not self._candles:
                self.update(f"No candles for {symbol} {timeframe} yet (a coin in its first minute, or the exchange did not answer); asking again.")
                self._shown = None
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
        chart = render_chart(self._candles[-max(10, width - Y_AXIS_COLS) :], self._fills, width, height, title)
        if chart == self._shown:  # a move too small to show: nothing to repaint
            return
        self._shown = chart
        self.update(shade_falling(chart) if self.app.no_color else chart, layout=False)  # drawn to the size it has

    def on_resize(self) -> None:
        if self._candles:
            self.schedule_draw()

    def _retitle(self) -> None:
        which = display_symbol(self.symbol) if self.symbol else "no symbol"
        self.border_title = f"Chart {which} · {self.timeframe}"
