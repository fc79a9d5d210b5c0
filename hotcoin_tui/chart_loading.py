"""The console's chart: which symbol it shows, and its candles and fills loaded in a worker
on a timer, only while the chart is on screen."""

from __future__ import annotations

from textual import on, work

from hotcoin_tui.console_base import ConsoleBase
from hotcoin_tui.messages import ChartData, ClientFailed, IntervalChanged, SymbolSelected


class ChartLoading(ConsoleBase):
    @on(SymbolSelected)
    def _symbol_selected(self, message: SymbolSelected) -> None:
        self._select(message.symbol)

    def _select(self, symbol: str) -> None:
        chart = self.main.chart
        chart.select(symbol)
        self.load_chart(symbol, chart.timeframe, min(chart.wanted_candles, self.settings.chart_candles_max))

    @on(IntervalChanged)
    def _interval_changed(self, message: IntervalChanged) -> None:
        self._refresh_chart(force=True)

    def _refresh_chart(self, force: bool = False) -> None:
        """Reload the chart's candles on a timer, only while it is on screen."""
        if not self.is_running:
            return
        chart = self.main.chart
        visible = self.screen is self.main and chart.display and not (self.main.compact and self.main.active != "chart")
        if chart.symbol is not None and (force or visible):
            self.load_chart(chart.symbol, chart.timeframe, min(chart.wanted_candles, self.settings.chart_candles_max))

    @work(exclusive=True, group="chart", exit_on_error=False)
    async def load_chart(self, symbol: str, timeframe: str, limit: int) -> None:
        """Load a chart's candles and fills, except while the feed is lost (the request would
        only fail); a failure repeated by the next timer tick is not reported again. An empty
        answer goes to the chart too (a coin in its first minute; on Binance, a failed fetch):
        dropped, it left "Loading…" on screen for good."""
        if self.feed_error is not None:
            return
        try:
            candles = await self.client.candles(symbol, timeframe, limit)
            fills = await self.client.fills(symbol)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._chart_failed:
                self.post_message(ClientFailed(f"chart {symbol} {timeframe}", error))
            self._chart_failed = error
            return
        self._chart_failed = None
        self.post_message(ChartData(symbol, timeframe, candles, fills))  # none is an answer the chart shows

    def on_chart_data(self, message: ChartData) -> None:
        if self.is_running:
            self.main.chart.set_data(message.symbol, message.timeframe, message.candles, message.fills)
