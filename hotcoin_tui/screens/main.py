"""The console: banner, panel strip, the five panels, footer.

Wide terminals (>= 120 columns and >= 32 rows) show every panel at once in a grid; smaller
ones show the banner, the panel strip and one panel at a time, switched by one-letter keys,
so nothing essential is ever below the fold. Either way the same widgets exist, so a resize
changes CSS classes, not the widget tree, and the data stays in place.

The keys go to the panel on screen: each panel has a widget that takes the focus when it is
picked, and takes it back when a dialog closes. Textual's own choice on a screen with nothing
focused is the first focusable widget in the tree, shown or not: that was the candidates'
hidden filter box, which then took every key unseen.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Container, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from engine.runtime.snapshot import EngineSnapshot
from engine.timefmt import span
from hotcoin_tui import keymap
from hotcoin_tui.messages import IntervalChanged, TraceRequested
from hotcoin_tui.widgets.candidate_pool import CandidatePool
from hotcoin_tui.widgets.engine_state import EngineStatePanel
from hotcoin_tui.widgets.events import EventsPanel
from hotcoin_tui.widgets.kline_chart import KlineChart
from hotcoin_tui.widgets.mode_banner import ModeBanner
from hotcoin_tui.widgets.panel_bar import PANELS, PanelBar
from hotcoin_tui.widgets.positions import PositionsPanel
from hotcoin_tui.widgets.shown import shown

WIDE_COLS, TALL_ROWS = 120, 32


class MainScreen(Screen[None]):
    BINDINGS = keymap.bindings(keymap.MAIN)
    # Textual declares these as plain (instance-typed) attributes, hence the noqa.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_COLS, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (TALL_ROWS, "-tall")]  # noqa: RUF012
    AUTO_FOCUS = ""  # no first-focusable pick (see the module docstring): the active panel's widget

    active = reactive("candidates")

    def __init__(self, candidate_rows: int, event_rows: int, chart_refresh_s: float, panel_keys: dict[str, str]) -> None:
        super().__init__()
        self._candidate_rows, self._event_rows = candidate_rows, event_rows
        self._chart_refresh_s = chart_refresh_s
        self.panel_keys = panel_keys
        self.latest: EngineSnapshot | None = None
        self._stale: str | None = None  # why the engine panel's figures are old, while they are
        self._stale_ms = 0  # and by how much (wall clock since the latest snapshot)

    def compose(self) -> ComposeResult:
        yield ModeBanner(id="banner")
        yield PanelBar(id="panel-bar")
        with Container(id="body"):
            with Vertical(id="left"):
                yield CandidatePool(self._candidate_rows, id="candidates", classes="panel")
                yield KlineChart(self._chart_refresh_s, id="chart", classes="panel")
            with Vertical(id="right"):
                yield EngineStatePanel("no snapshot yet", id="state", classes="panel")
                yield PositionsPanel(id="positions", classes="panel")
                yield EventsPanel(self._event_rows, id="events", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.watch_active(self.active)

    @property
    def pool(self) -> CandidatePool:
        return self.query_one(CandidatePool)

    @property
    def positions(self) -> PositionsPanel:
        return self.query_one(PositionsPanel)

    @property
    def events(self) -> EventsPanel:
        return self.query_one(EventsPanel)

    @property
    def chart(self) -> KlineChart:
        return self.query_one(KlineChart)

    @property
    def state_panel(self) -> EngineStatePanel:
        return self.query_one(EngineStatePanel)

    @property
    def banner(self) -> ModeBanner:
        return self.query_one(ModeBanner)

    @property
    def compact(self) -> bool:
        """True when one panel is shown at a time."""
        return self.has_class("-narrow") or self.has_class("-short")

    def apply(self, snapshot: EngineSnapshot) -> None:
        """Push one snapshot into the panels on screen (the chart loads its own data). Hidden
        panels are skipped and catch up from the latest snapshot when they are shown, except
        the events: a snapshot carries only the engine's last events, so a panel that caught up
        on return had lost what happened meanwhile (a buy whose sell it then showed). Its rows
        are keyed, so feeding it while hidden costs only the rows that are new."""
        self.latest = snapshot
        self._stale, self._stale_ms = None, 0
        for name in ("candidates", "positions", "state", "events"):
            if not self.compact or name in (self.active, "events"):
                self._apply_to(name, snapshot)

    def _apply_to(self, name: str, snapshot: EngineSnapshot) -> None:
        if name == "candidates":
            self.pool.apply(snapshot.candidates)
        elif name == "positions":
            self.positions.apply(snapshot.positions, snapshot.totals, snapshot.ts_ms)
        elif name == "state":
            self.state_panel.apply(snapshot.status, snapshot.ts_ms + self._stale_ms, self._stale)
        elif name == "events":
            self.events.apply(snapshot.events)

    def show_stale(self, age_s: float, why: str) -> None:
        """No fresh snapshot for `age_s` (`why`): the engine panel says its figures are that old,
        and ages them (the latest snapshot's stream ages plus the time since it came)."""
        self._stale, self._stale_ms = f"as of {span(age_s * 1000)} ago: {why}", round(age_s * 1000)
        if self.latest is not None and (not self.compact or self.active == "state"):
            self._apply_to("state", self.latest)

    def on_resize(self) -> None:
        if self.latest is not None and not self.compact:
            self.call_after_refresh(self._catch_up)

    def _catch_up(self) -> None:
        if self.latest is not None:
            self.apply(self.latest)

    def watch_active(self, active: str) -> None:
        for name, _, _ in PANELS:
            self.query_one(f"#{name}").set_class(name == active, "-active")
        self.query_one("#left").set_class(active in ("candidates", "chart"), "-holds-active")
        self.query_one("#right").set_class(active not in ("candidates", "chart"), "-holds-active")
        self.query_one(PanelBar).show(active, self.panel_keys)
        if self.latest is not None:
            self._apply_to(active, self.latest)
        self._focus_target(active).focus()
        if active == "chart":
            self.chart.schedule_draw()

    def _focus_target(self, name: str) -> Widget:
        """The widget that takes the keys when panel `name` is picked; every panel has one."""
        targets: dict[str, Widget] = {
            "candidates": self.pool.table,
            "positions": self.positions.table,
            "chart": self.chart,
            "events": self.events,
            "state": self.state_panel,
        }
        return targets[name]

    def on_screen_resume(self) -> None:
        """Back from a dialog the screen keeps the focus it had, unless nothing had it or the
        widget that had it was hidden meanwhile (a resize to one panel at a time): then the
        active panel's widget takes it. Never nothing, never a hidden widget."""
        if self.focused is None or not shown(self.focused):
            self._focus_target(self.active).focus()

    def action_show_panel(self, name: str) -> None:
        if self.active == name:
            self.watch_active(name)
        self.active = name

    def action_filter(self) -> None:
        self.active = "candidates"
        self.pool.open_filter()

    def action_cycle_sort(self) -> None:
        self.pool.cycle_sort()

    def action_cycle_interval(self) -> None:
        self.post_message(IntervalChanged(self.chart.next_interval()))

    def action_replay(self) -> None:
        """Open the trace behind what the focused (or active) panel shows: the row under the
        cursor in a table, the charted coin on the chart. Never the cursor of a panel that is
        not the one in use: `r` on a held coin's chart opened whatever coin the hidden
        candidates cursor was on."""
        focused = self.focused
        panel = next((name for name, _, _ in PANELS if focused is not None and focused is self._focus_target(name)), self.active)
        trace: str | None = None
        if panel == "events":
            trace = self.events.cursor_trace
        elif panel == "positions":
            pos = self.positions.cursor_position
            trace = pos.trace_id if pos else None
        elif panel == "candidates":
            symbol = self.pool.cursor_symbol
            row = self.pool.row(symbol) if symbol else None
            trace = row.trace_id if row else None
        elif panel == "chart":
            trace = self._chart_trace()
            if trace is None:
                why = f"{self.chart.symbol} is neither held nor a candidate now" if self.chart.symbol else "no coin charted"
                self.notify(f"Nothing with a trace here: {why}.", severity="warning")
                return
        else:  # the engine panel: no rows with a trace
            self.notify("Nothing with a trace here: replay opens a candidate's, position's or event's, or the charted coin's.", severity="warning")
            return
        if trace:
            self.post_message(TraceRequested(trace))
        else:
            self.notify("Nothing with a trace under the cursor.", severity="warning")

    def _chart_trace(self) -> str | None:
        """The charted coin's trace in the latest snapshot: its position's while it is held (the
        trade on the chart), else its candidate's (the latest decision on it)."""
        symbol, snapshot = self.chart.symbol, self.latest
        if symbol is None or snapshot is None:
            return None
        held = next((p.trace_id for p in snapshot.positions if p.symbol == symbol), None)
        return held or next((c.trace_id for c in snapshot.candidates if c.symbol == symbol), None)
