"""The hotcoin console: the App only. It owns the `EngineClient`, runs every client call in a
worker, turns results into typed messages and routes them to the screens.

It never mutates engine state: it shows snapshots and sends commands. A failing client call
is shown and the app carries on. Its parts live beside it, one concern each: the shared state,
banner and dialog refresh (`console_base`), the snapshot feed and the own engine process
(`engine_feed`), the chart (`chart_loading`), decision replay (`replay_loading`), and commands
with the key actions that send them (`command_actions`).
"""

from __future__ import annotations

from hotcoin_tui import keymap
from hotcoin_tui.command_actions import CommandActions
from hotcoin_tui.engine_feed import EngineFeed
from hotcoin_tui.replay_loading import ReplayLoading
from hotcoin_tui.screens.main import MainScreen


class HotcoinApp(CommandActions, ReplayLoading, EngineFeed):
    CSS_PATH = "hotcoin.tcss"
    TITLE = "hotcoin"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = keymap.bindings(keymap.APP)

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
