"""The hotcoin console: the App only. It owns the `EngineClient`, runs every client call in a
worker, turns results into typed messages and routes them to the screens.

It never mutates engine state: it shows snapshots and sends commands. A failing client call
is shown and the app carries on; a broken snapshot stream is shown (the last data stays on
screen with its age) and re-subscribed, or, attached to an engine in another process, attached
again: an engine restarted on the same socket is picked up. The console's own engine process
is watched too: once it has exited, the console says so (with its log) and stops retrying.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App

from engine.config.sections.tui import TuiSection
from engine.runtime.client import Command, EngineClient
from engine.runtime.snapshot import EngineSnapshot
from hotcoin_tui import keymap
from hotcoin_tui.dialogs.close_all import CloseAllProgressDialog, ConfirmCloseAll
from hotcoin_tui.dialogs.help import HelpDialog
from hotcoin_tui.dialogs.quit import QuitWithPositions
from hotcoin_tui.messages import (
    ChartData,
    ClientFailed,
    CommandDone,
    EngineExited,
    FeedLost,
    IntervalChanged,
    SnapshotArrived,
    SymbolSelected,
    TraceLoaded,
    TraceRequested,
)
from hotcoin_tui.screens.main import MainScreen
from hotcoin_tui.screens.replay import ReplayScreen

if TYPE_CHECKING:
    from hotcoin_tui.child_engine import EngineProcess

ORIGIN = "tui"
RESUBSCRIBE_S = 2.0
SHUTDOWN_TIMEOUT_S = 10.0


class HotcoinApp(App[None]):
    CSS_PATH = "hotcoin.tcss"
    TITLE = "hotcoin"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = keymap.bindings(keymap.APP)

    def __init__(
        self,
        client: EngineClient,
        settings: TuiSection | None = None,
        *,
        attached: bool = False,
        reconnect: Callable[[], Awaitable[None]] | None = None,
        engine_process: EngineProcess | None = None,
    ) -> None:
        # NO_COLOR: Textual's own answer is its monochrome filter, which still sends grey
        # foreground and background colours. Native ANSI mode makes it strip every colour
        # instead, so the terminal's default pair is all that is drawn; what colour would have
        # said is in the text (words, signs) and in attributes (bold, reverse, borders).
        super().__init__(ansi_color=True if os.environ.get("NO_COLOR") is not None else None)
        self.client = client
        # Attached to an engine in another process (`hotcoin tui --attach`): quitting detaches
        # and the engine keeps trading; only an in-process engine is shut down on quit.
        self.attached = attached
        # How to attach again once the feed is lost (the engine stopped or restarted); without
        # it a lost feed is only subscribed to again.
        self.reconnect = reconnect
        # The console's own engine child, watched for its exit; `engine_exit` then says how it
        # ended ("engine exited (code 1); see LOG") and the feed is not retried any more.
        self.engine_process = engine_process
        self.engine_exit: str | None = None
        self._engine_code = 0
        self.settings = settings or TuiSection()
        self.keymap_overrides = keymap.validate(self.settings.keymap)
        self.snapshot: EngineSnapshot | None = None
        self.snapshots_applied = 0
        self.feed_error: str | None = None
        self._last_snapshot_at = time.monotonic()
        self._last_apply = -math.inf
        self._waiting: EngineSnapshot | None = None
        self._apply_scheduled = False
        self._stopping = False
        self.resubscribe_s = RESUBSCRIBE_S
        self._chart_failed: str | None = None
        # The pause state `p` last asked for, until a snapshot shows the engine in it: `p`
        # flips this, not a snapshot from before the previous press (two quick presses sent
        # PAUSE twice). A refused or failed command drops it, and the snapshots rule again.
        self._pause_wanted: bool | None = None

    @property
    def main(self) -> MainScreen:
        return self.get_screen("main", MainScreen)

    async def on_mount(self) -> None:
        self.set_keymap(self.keymap_overrides)
        s = self.settings
        panel_keys = keymap.panel_keys(self.keymap_overrides)
        self.install_screen(MainScreen(s.candidate_rows, s.event_rows, s.chart_refresh_s, panel_keys), "main")
        await self.push_screen("main")
        first = self.client.latest()
        if first is not None:
            self._apply(first)
        self._show_banner()  # "NO DATA" until the engine's first snapshot
        self.set_interval(1.0, self._watch_feed)
        self.set_interval(s.chart_refresh_s, self._refresh_chart)
        self.pump_snapshots()
        if self.engine_process is not None:
            self.watch_engine(self.engine_process)

    # -- snapshots ------------------------------------------------------------------------

    @work(exclusive=True, group="snapshots", exit_on_error=False)
    async def pump_snapshots(self) -> None:
        """Forward every published snapshot as a message (coalesced if the UI falls behind).

        After a lost feed, attach again first where the app can (`reconnect`): the old
        connection is gone for good, and subscribing to it again would only end again."""
        if self.engine_exit is not None:  # a retry timer set before the engine was seen to exit
            return
        if self.feed_error is not None and self.reconnect is not None:
            try:
                await self.reconnect()
            except Exception as exc:
                self.post_message(FeedLost(f"{type(exc).__name__}: {exc}"))
                return
        try:
            async for snapshot in self.client.updates():
                self.post_message(SnapshotArrived(snapshot))
        except Exception as exc:
            self.post_message(FeedLost(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(FeedLost("the engine stopped publishing"))

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        """Apply at most `tui.refresh_hz` snapshots a second; the newest waiting one wins.

        A repaint costs the shared event loop tens of milliseconds, so an engine publishing
        faster than that must not make the console repaint faster."""
        if not self.is_running or self.engine_exit is not None:  # shutting down, or one from before it died
            return
        self.feed_error = None
        self._last_snapshot_at = time.monotonic()
        self._waiting = message.snapshot
        wait = self._last_apply + 1 / self.settings.refresh_hz - self._last_snapshot_at
        if wait <= 0:
            self._apply_waiting()
        elif not self._apply_scheduled:
            self._apply_scheduled = True
            self.set_timer(wait, self._apply_waiting)

    def _apply_waiting(self) -> None:
        self._apply_scheduled = False
        if self._waiting is not None and self.is_running:
            snapshot, self._waiting = self._waiting, None
            self._apply(snapshot)

    def _apply(self, snapshot: EngineSnapshot) -> None:
        self.snapshot = snapshot
        if snapshot.status.paused == self._pause_wanted:  # the engine confirmed it
            self._pause_wanted = None
        self.snapshots_applied += 1
        self._last_apply = time.monotonic()
        main = self.main
        main.apply(snapshot)
        self._show_banner()
        self._refresh_dialog()
        if main.chart.symbol is None and snapshot.candidates:
            self._select(snapshot.positions[0].symbol if snapshot.positions else snapshot.candidates[0].symbol)

    def on_feed_lost(self, message: FeedLost) -> None:
        if self._stopping or not self.is_running or self.engine_exit is not None:
            return
        if self.feed_error is None:  # say it once per outage; the banner keeps saying it
            retry = "Reattaching" if self.reconnect is not None else "Retrying"
            self.notify(f"Engine feed lost: {message.error}. {retry} every {self.resubscribe_s:g}s.", severity="error")
        self.feed_error = message.error
        self._show_banner()
        self.set_timer(self.resubscribe_s, self.pump_snapshots)

    def _why_stale(self) -> str:
        if self.engine_exit is not None:
            return str(self.feed_error)  # "engine exited (...)"
        if self.feed_error is not None:
            return f"engine not answering ({self.feed_error})"
        return "no snapshot from the engine"

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def watch_engine(self, process: EngineProcess) -> None:
        self.post_message(EngineExited(await process.wait()))

    def on_engine_exited(self, message: EngineExited) -> None:
        """The own engine is gone: say how, where its log is, and stop asking it for anything.
        An exit asked for by `q` is no news."""
        if self._stopping or not self.is_running or self.engine_process is None:
            return
        from hotcoin_tui.child_engine import exit_text

        self.feed_error = f"engine exited ({exit_text(message.code)})"  # the banner: short
        self.engine_exit = f"{self.feed_error}; see {self.engine_process.log_path}"
        self._engine_code = message.code
        self.workers.cancel_group(self, "snapshots")
        self.notify(f"{self.engine_exit}. Nothing manages open positions until it runs again.", severity="error", timeout=30)
        self._show_banner()

    @property
    def feed_age_s(self) -> float:
        return time.monotonic() - self._last_snapshot_at

    def _watch_feed(self) -> None:
        if self.is_running:
            self._show_banner()
            if isinstance(self.screen, ConfirmCloseAll):  # its data-age warning
                self._refresh_dialog()

    def _refresh_dialog(self) -> None:
        """The open dialog from the latest snapshot: a list copied when it opened goes stale
        while the engine keeps trading (more positions, new sizes and PnL)."""
        screen, snapshot = self.screen, self.snapshot
        if snapshot is None:
            return
        if isinstance(screen, CloseAllProgressDialog):
            screen.show(snapshot.close_all, len(snapshot.positions))
        elif isinstance(screen, ConfirmCloseAll):
            age = self.feed_age_s
            screen.show(snapshot.positions, age, age >= self.settings.stale_after_s)
        elif isinstance(screen, QuitWithPositions):
            screen.show(snapshot.positions)

    def _show_banner(self) -> None:
        age = self.feed_age_s
        stale = age >= self.settings.stale_after_s
        self.main.banner.show(self.snapshot, age, stale, self.feed_error)
        if self.snapshot is not None and (stale or self.feed_error is not None):
            self.main.show_stale(age, self._why_stale())

    # -- chart ----------------------------------------------------------------------------

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
        only fail); a failure repeated by the next timer tick is not reported again."""
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
        if candles:
            self.post_message(ChartData(symbol, timeframe, candles, fills))

    def on_chart_data(self, message: ChartData) -> None:
        if self.is_running:
            self.main.chart.set_data(message.symbol, message.timeframe, message.candles, message.fills)

    # -- replay ---------------------------------------------------------------------------

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

    # -- commands -------------------------------------------------------------------------

    @work(group="commands", exit_on_error=False)
    async def send_command(self, command: Command) -> None:
        """Not exclusive: a command already sent must never be cancelled by the next one."""
        try:
            result = await self.client.send(command, ORIGIN)
        except Exception as exc:
            self.post_message(ClientFailed(f"command {command.value}", f"{type(exc).__name__}: {exc}", command))
            return
        self.post_message(CommandDone(command, result))

    def on_command_done(self, message: CommandDone) -> None:
        result = message.result
        text = f"{message.command.value}: {result.message}"
        self.notify(text, severity="information" if result.accepted else "error", timeout=5 if result.accepted else 15)
        if not result.accepted:
            self._command_failed(message.command)

    def on_client_failed(self, message: ClientFailed) -> None:
        self.notify(f"{message.operation} failed: {message.error}", severity="error", timeout=15)
        self._command_failed(message.command)

    def _command_failed(self, command: Command | None) -> None:
        if command is Command.PAUSE or command is Command.RESUME:
            self._pause_wanted = None  # the engine stays as its snapshots say
        self._close_all_failed(command)

    def _close_all_failed(self, command: Command | None) -> None:
        """A close-all the engine did not take: drop the progress view so ctrl+x can retry."""
        if command is Command.CLOSE_ALL and isinstance(self.screen, CloseAllProgressDialog):
            self.screen.dismiss(None)

    def action_toggle_pause(self) -> None:
        """Each press flips the state once: from the state the last press asked for while the
        engine has not shown it yet, else from the latest snapshot."""
        paused = self._pause_wanted
        if paused is None:
            paused = self.snapshot is not None and self.snapshot.status.paused
        self._pause_wanted = not paused
        self.send_command(Command.RESUME if paused else Command.PAUSE)

    def action_close_all(self) -> None:
        if isinstance(self.screen, ConfirmCloseAll | CloseAllProgressDialog):
            return
        if isinstance(self.screen, QuitWithPositions):
            # Its list would go stale under close-all; q asks again with what is left.
            self.screen.dismiss(False)
        positions = self.snapshot.positions if self.snapshot else ()
        age = self.feed_age_s if self.snapshot else None
        confirm = keymap.effective_keys(keymap.CONFIRM_CLOSE_ALL[0], self.keymap_overrides)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._pause_wanted = None  # close-all pauses entries itself: the snapshots say when
                self.send_command(Command.CLOSE_ALL)
                self.push_screen(CloseAllProgressDialog(len(self.snapshot.positions) if self.snapshot else 0))

        stale = age is not None and age >= self.settings.stale_after_s
        self.push_screen(ConfirmCloseAll(positions, age, stale, confirm), confirmed)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpDialog):
            self.push_screen(HelpDialog(self.keymap_overrides))

    async def action_quit(self) -> None:
        positions = self.snapshot.positions if self.snapshot else ()
        if not positions or self.attached or self.engine_exit is not None:
            self.shutdown_and_exit()
            return
        if isinstance(self.screen, QuitWithPositions):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.shutdown_and_exit()

        self.push_screen(QuitWithPositions(positions), answered)

    @work(exclusive=True, group="shutdown", exit_on_error=False)
    async def shutdown_and_exit(self) -> None:
        """Ask the engine to stop cleanly (journal flushed), then leave; say so if it did not."""
        self._stopping = True
        if self.engine_exit is not None:  # nothing to shut down; an engine that died is an error
            self.exit(return_code=0 if self._engine_code == 0 else 1, message=f"hotcoin: the engine had already stopped: {self.engine_exit}")
            return
        if self.attached:
            if self.feed_error is None:
                self.exit(message="hotcoin: detached; the engine keeps running (hotcoin tui --attach to return)")
            else:  # it may have stopped: say what is known, not that it runs
                self.exit(message=f"hotcoin: detached; the engine was not answering ({self.feed_error})")
            return
        try:
            result = await asyncio.wait_for(self.client.send(Command.SHUTDOWN, ORIGIN), SHUTDOWN_TIMEOUT_S)
        except Exception as exc:
            self.exit(return_code=1, message=f"hotcoin: the engine did not confirm shutdown ({type(exc).__name__}: {exc})")
            return
        if result.accepted:
            self.exit()
        else:
            self.exit(return_code=1, message=f"hotcoin: shutdown refused: {result.message}")
