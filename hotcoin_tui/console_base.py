"""The state every part of the console shares, and the views that show it on any screen: the
banner (data age, staleness and why) and the open dialog's live list.

The App is split by concern (`engine_feed`, `chart_loading`, `replay_loading`,
`command_actions`), each a mixin over this base: they share one `self`, and Textual finds their
handlers, workers and actions on `HotcoinApp` as if they were written there.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from textual.app import App

from engine.config.sections.tui import TuiSection
from engine.runtime.client import EngineClient
from engine.runtime.snapshot import EngineSnapshot, PositionRow
from hotcoin_tui import keymap
from hotcoin_tui.dialogs.close_all import CloseAllProgressDialog, ConfirmCloseAll, EngineGone
from hotcoin_tui.dialogs.quit import QuitWithPositions
from hotcoin_tui.origin import console_origin
from hotcoin_tui.screens.main import MainScreen

if TYPE_CHECKING:
    from hotcoin_tui.child_engine import EngineProcess

RESUBSCRIBE_S = 2.0


class ConsoleBase(App[None]):
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
        # Who this console's commands come from, for the journal and notifications: every
        # console said "tui", and two SSH sessions could not be told apart.
        self.origin = console_origin()
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

    @property
    def paused_now(self) -> bool:
        """Whether new entries are paused, as far as the console knows: what the last pause or
        resume key asked for while the engine has not shown it yet, else the latest snapshot."""
        if self._pause_wanted is not None:
            return self._pause_wanted
        return self.snapshot is not None and self.snapshot.status.paused

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pause and resume share their key: only the one that applies now answers it (and shows
        in the footer), so each press flips the state once and the footer says which way."""
        if action == "pause":
            return not self.paused_now
        if action == "resume":
            return self.paused_now
        return True

    def _want_paused(self, wanted: bool | None, snapshot: EngineSnapshot | None = None) -> None:
        """Set what the pause or resume key asked for (None: the snapshots rule), and the new
        latest `snapshot` if one came; the footer's pause/resume follows a change."""
        before = self.paused_now
        self._pause_wanted = wanted
        if snapshot is not None:
            self.snapshot = snapshot
        if self.paused_now != before:
            self.refresh_bindings()

    @property
    def feed_age_s(self) -> float:
        return time.monotonic() - self._last_snapshot_at

    def _why_stale(self) -> str:
        if self.engine_exit is not None:
            return str(self.feed_error)  # "engine exited (...)"
        if self.feed_error is not None:
            return f"engine not answering ({self.feed_error})"
        return "no snapshot from the engine"

    def _watch_feed(self) -> None:
        if self.is_running:
            self._show_banner()
            if isinstance(self.screen, ConfirmCloseAll):  # its data-age warning
                self._refresh_dialog()

    def _refresh_dialog(self) -> None:
        """The open dialog from the latest snapshot: a list copied when it opened goes stale
        while the engine keeps trading (more positions, new sizes and PnL). The close-all
        confirmation also follows the engine's exit, snapshot or not."""
        screen, snapshot = self.screen, self.snapshot
        if isinstance(screen, ConfirmCloseAll):
            screen.show(*self.close_all_view())
        elif snapshot is None:
            return
        elif isinstance(screen, CloseAllProgressDialog):
            screen.show(snapshot.close_all, len(snapshot.positions))
        elif isinstance(screen, QuitWithPositions):
            screen.show(snapshot.positions)

    def close_all_view(self) -> tuple[tuple[PositionRow, ...], float | None, bool, EngineGone | None]:
        """What the close-all confirmation shows: the latest positions, their age (None before
        any snapshot), whether that is stale, and why no engine can take the command now: the
        own engine ended, or (attached) the socket has no engine answering. An attached console
        cannot tell a dead engine from one restarting, but either way a close-all sent now
        fails with "not attached", so the dialog must not offer its key until one answers."""
        age = self.feed_age_s if self.snapshot is not None else None
        positions = self.snapshot.positions if self.snapshot is not None else ()
        gone: EngineGone | None = None
        if self.engine_exit is not None:
            gone = EngineGone(self.engine_exit, reattaching_s=None)
        elif self.attached and self.feed_error is not None:
            gone = EngineGone(self.feed_error, reattaching_s=self.resubscribe_s)
        return positions, age, age is not None and age >= self.settings.stale_after_s, gone

    def _show_banner(self) -> None:
        age = self.feed_age_s
        stale = age >= self.settings.stale_after_s
        self.main.banner.show(self.snapshot, age, stale, self.feed_error)
        if self.snapshot is not None and (stale or self.feed_error is not None):
            self.main.show_stale(age, self._why_stale())
