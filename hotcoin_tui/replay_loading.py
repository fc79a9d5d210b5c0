"""Replay of one decision: its trace loaded from the engine in a worker, then shown on a
`ReplayScreen` (one at a time: a new trace replaces the open one)."""

from __future__ import annotations

from textual import on, work

from hotcoin_tui.console_base import ConsoleBase
from hotcoin_tui.messages import ClientFailed, TraceLoaded, TraceRequested
from hotcoin_tui.screens.replay import ReplayScreen


class ReplayLoading(ConsoleBase):
    @on(TraceRequested)
    def _trace_requested(self, message: TraceRequested) -> None:
        self.load_trace(message.trace_id)

    @work(exclusive=True, group="trace", exit_on_error=False)
    async def load_trace(self, trace_id: str) -> None:
        try:
            events = await self.client.trace(trace_id)
        except Exception as exc:
            self.post_message(ClientFailed(f"replay {trace_id}", f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(TraceLoaded(trace_id, events))

    def on_trace_loaded(self, message: TraceLoaded) -> None:
        if isinstance(self.screen, ReplayScreen):
            self.pop_screen()
        self.push_screen(ReplayScreen(message.trace_id, message.events))
