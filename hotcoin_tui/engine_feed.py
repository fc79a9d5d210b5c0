"""The engine's snapshot feed and the console's own engine process, as the console sees them.

Snapshots are applied at most `tui.refresh_hz` times a second. A broken stream is shown (the
last data stays on screen with its age) and re-subscribed, or, attached to an engine in another
process, attached again: an engine restarted on the same socket is picked up. Once the own
engine process has exited, the console says so (with its log) and stops retrying. The first
snapshot with candidates also picks the chart's symbol, hence the chart base class.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import work

from engine.runtime.snapshot import EngineSnapshot
from hotcoin_tui.chart_loading import ChartLoading
from hotcoin_tui.messages import EngineExited, FeedLost, SnapshotArrived

if TYPE_CHECKING:
    from hotcoin_tui.child_engine import EngineProcess


STOPPED_AFTER_JOURNAL = "engine stopped: exits-only done after a journal failure"


def planned_stop(last: EngineSnapshot | None) -> str | None:
    """Why the feed ended, when the engine's last snapshot says it was its planned stop: blocked
    for its journal with nothing open, it stops once exits-only has nothing left to close. Said
    instead of the socket's "no engine is serving", which reads as a crash."""
    if last is None or last.positions or last.status.state != "blocked":
        return None
    if not any(r.startswith("journal") for r in last.status.reasons):
        return None
    return f"{STOPPED_AFTER_JOURNAL} (nothing left open); see its log, and restart it once the disk is fixed"


class EngineFeed(ChartLoading):
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
        confirmed = snapshot.status.paused == self._pause_wanted  # the engine shows what was asked
        self._want_paused(None if confirmed else self._pause_wanted, snapshot)
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
        error = message.error if self.feed_error is not None else planned_stop(self.snapshot) or message.error
        if self.feed_error is None:  # say it once per outage; the banner keeps saying it
            retry = "Reattaching" if self.reconnect is not None else "Retrying"
            self.notify(f"Engine feed lost: {error}. {retry} every {self.resubscribe_s:g}s.", severity="error")
        if self.feed_error is None or not self.feed_error.startswith(STOPPED_AFTER_JOURNAL):
            self.feed_error = error
        self._show_banner()
        self._refresh_dialog()  # attached, a close-all confirmation open now must stop offering its key
        self.set_timer(self.resubscribe_s, self.pump_snapshots)

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
        self._refresh_dialog()  # a close-all confirmation open now must stop offering its key
