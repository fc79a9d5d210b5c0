"""Pilot tests of the console against the fake engine: every panel and every key action.

The fake runs on a virtual clock without autoplay; each test steps it (`publish`) and waits
for the app to apply the snapshot, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from types import SimpleNamespace

import pytest
import textual.constants
from rich.console import Console
from rich.text import Text
from textual.app import App
from textual.widget import Widget
from textual.widgets import DataTable, Label, ProgressBar, Static

from engine.config.sections.tui import TuiSection
from engine.domain import Candle, Fill
from engine.errors import ConfigError, TraceNotFoundError
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult, EngineClient
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.snapshot import CloseAllProgress, EngineSnapshot, EventRow, Mode
from hotcoin_tui import engine_feed, keymap
from hotcoin_tui.app import HotcoinApp
from hotcoin_tui.commands.journal_cmd import parse_time
from hotcoin_tui.dialogs.close_all import CloseAllProgressDialog, ConfirmCloseAll
from hotcoin_tui.dialogs.help import HelpDialog
from hotcoin_tui.dialogs.quit import QuitWithPositions
from hotcoin_tui.messages import ChartData, SnapshotArrived, SymbolSelected
from hotcoin_tui.screens.main import MainScreen
from hotcoin_tui.screens.replay import ReplayScreen
from hotcoin_tui.widgets import fmt
from hotcoin_tui.widgets.candidate_pool import FULL_EVERY, SORTS, display_symbol, row_cells
from hotcoin_tui.widgets.events import NOT_SHOWN, EventsPanel
from tests.kit.snapshots import make_snapshot
from tests.kit.waiting import eventually

SMALL = (80, 24)
WIDE = (160, 48)
FAST = TuiSection(refresh_hz=30)  # tests publish back to back: no need to wait for the 4 Hz cap


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngineClient]:
    client = FakeEngineClient(seed=7, candidates=300, positions=6)
    yield client
    await client.stop()


async def publish(app: HotcoinApp, fake: FakeEngineClient, cycles: int = 1) -> EngineSnapshot:
    """Advance the fake engine and wait until the app has shown the newest snapshot."""
    snap = fake.step(cycles)
    await eventually(lambda: app.snapshot is not None and app.snapshot.seq == snap.seq)
    return snap


def plain(widget: Static) -> str:
    """A Static's content as plain text (any rich renderable), as a user would read it."""
    console = Console(width=200, file=io.StringIO(), color_system=None, record=True)
    console.print(widget.content)
    return console.export_text()


def banner(app: HotcoinApp) -> str:
    return plain(app.main.banner)


def notes(app: HotcoinApp) -> str:
    return " | ".join(str(n.message) for n in app._notifications)


def count_repaints(monkeypatch: pytest.MonkeyPatch, widgets: Iterable[Widget]) -> Counter[str]:
    """How often each widget (by id) asks to be repainted from now on."""
    counts: Counter[str] = Counter()

    def counted(widget: Widget) -> Callable[..., Widget]:
        refresh: Callable[..., Widget] = widget.refresh

        def counting(*args: object, **kwargs: object) -> Widget:
            counts[str(widget.id)] += 1
            return refresh(*args, **kwargs)

        return counting

    for widget in widgets:
        monkeypatch.setattr(widget, "refresh", counted(widget))
    return counts


# -- panels -------------------------------------------------------------------------------


async def test_every_panel_shows_the_snapshot(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE):
        snap = await publish(app, fake)
        main = app.main
        assert main.pool.table.row_count == 200  # capped at tui.candidate_rows
        assert main.positions.table.row_count == len(snap.positions) == 6
        assert main.events.row_count == len({e.seq for e in snap.events})
        state = plain(main.state_panel)
        assert "TRADEABLE" in state and "ticker" in state and "lgbm-2026-01-02" in state
        assert "PAPER" in banner(app) and "TRADEABLE" in banner(app) and "pos 6" in banner(app)
        totals = plain(main.positions.query_one("#totals", Static))
        assert "Equity" in totals and "limit -500.00" in totals


async def test_hidden_panels_skip_updates_and_catch_up_when_shown(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        fake.step(10)  # cycle 10 opens a seventh position
        snap = await publish(app, fake)
        positions = app.main.positions
        assert positions.table.row_count == 0  # hidden behind the candidates panel: not touched
        await pilot.press("o")
        assert positions.table.row_count == len(snap.positions) == 7
        await pilot.press("e")
        assert app.main.events.last_seq == snap.events[-1].seq


async def test_candidate_rows_update_in_place_in_heat_order(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, candidate_rows=50))
    async with app.run_test(size=SMALL):
        await publish(app, fake)
        table = app.main.pool.table
        keys_before = {row.key for row in table.ordered_rows}
        snap = await publish(app, fake)
        top = sorted(snap.candidates, key=lambda r: (-r.heat, r.symbol))[:50]
        assert app.main.pool.shown_symbols == [r.symbol for r in top]
        kept = keys_before & {row.key for row in table.ordered_rows}
        assert kept, "rows present in both snapshots must be the same rows, updated in place"
        first = top[0]
        assert str(table.get_cell(first.symbol, "heat")).endswith(f"{first.heat:4.0f}")
        assert str(table.get_cell(first.symbol, "sym")) == display_symbol(first.symbol)


async def test_off_screen_rows_catch_up_when_scrolled_to_and_on_full_refresh(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        pool = app.main.pool
        await pilot.press("end")  # cursor (and view) to the last row
        snap = await publish(app, fake)
        rows = {r.symbol: r for r in snap.candidates}
        last = pool.shown_symbols[-1]
        assert tuple(str(c) for c in pool.table.get_row(last)) == row_cells(rows[last])
        snap = await publish(app, fake)
        while pool.syncs % FULL_EVERY:  # up to the next full refresh
            snap = await publish(app, fake)
        rows = {r.symbol: r for r in snap.candidates}
        for symbol in pool.shown_symbols:
            assert tuple(str(c) for c in pool.table.get_row(symbol)) == row_cells(rows[symbol]), symbol


async def test_sort_key_cycles_the_sort_column(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        await pilot.press("s")
        assert app.main.pool.sort.name == SORTS[1].name == "1m"
        expected = sorted(snap.candidates, key=lambda r: r.symbol)
        expected.sort(key=lambda r: r.ret_1m, reverse=True)
        assert app.main.pool.shown_symbols == [r.symbol for r in expected[:200]]
        assert "sort 1m" in str(app.main.pool.border_title)


@pytest.mark.parametrize(("typed", "check"), [
    ("listing", lambda r: "listing" in r.sources),
    ("enter", lambda r: r.signal_state == "enter"),
    ("HOLDING", lambda r: r.signal_state == "in_position"),  # the text the Signal column shows
    ("in_position", lambda r: r.signal_state == "in_position"),  # the engine's own name still works
], ids=["by-source", "by-signal", "by-shown-signal", "by-engine-signal"])  # fmt: skip
async def test_filter_narrows_rows_and_escape_restores(fake: FakeEngineClient, typed: str, check: object) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        await pilot.press("slash", *typed)
        pool = app.main.pool
        rows = {r.symbol: r for r in snap.candidates}
        assert 0 < len(pool.shown_symbols) < 200
        assert all(check(rows[s]) for s in pool.shown_symbols)  # type: ignore[operator]
        await pilot.press("escape")
        assert len(pool.shown_symbols) == 200 and not pool.filter_input.display


async def test_filter_by_symbol_text(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        target = display_symbol(snap.candidates[10].symbol)
        await pilot.press("slash", *target.lower(), "enter")
        shown = app.main.pool.shown_symbols
        assert snap.candidates[10].symbol in shown and all(target in s for s in shown)
        assert app.focused is app.main.pool.table  # Enter hands the keys back to the table


async def test_stale_stream_shows_status_and_age_not_zero(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        fake.force_stream("ticker", "stale")
        await publish(app, fake, cycles=20)  # 10 s of virtual time without ticker messages
        await pilot.press("t")
        state = plain(app.main.state_panel)
        assert "DEGRADED" in state and "market data stale" in state
        ticker_line = next(line for line in state.splitlines() if line.startswith("ticker"))
        assert "stale" in ticker_line and "10s ago" in ticker_line
        assert "DEGRADED" in banner(app)


async def test_feed_age_is_shown_when_snapshots_stop(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, stale_after_s=0.05))
    async with app.run_test(size=SMALL):
        await publish(app, fake)
        await eventually(lambda: "OLD" in banner(app), timeout=5)
        assert "PAPER" in banner(app), "stale data stays on screen, labelled, never blanked"
        assert app.main.pool.table.row_count == 200


def ticker_age_s(app: HotcoinApp) -> int:
    """The ticker stream's age on the Engine panel, in seconds (under a minute)."""
    line = next(line for line in plain(app.main.state_panel).splitlines() if line.startswith("ticker"))
    return int(re.search(r"(\d+)s ago", line).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize(("lost", "why"), [
    (False, "no snapshot from the engine"),
    (True, "engine not answering (ConnectionError: connection reset)"),
], ids=["stale", "feed-lost"])  # fmt: skip
async def test_the_engine_panel_says_how_old_its_figures_are(fake: FakeEngineClient, lost: bool, why: str) -> None:
    """After the engine died the panel kept saying TRADEABLE, ticker connected 0s ago; only
    the banner said FEED ERROR."""
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, stale_after_s=1.0))
    app.resubscribe_s = 3600  # the feed stays lost
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("t")
        fresh = ticker_age_s(app)  # 0 s, or a little more on a loaded machine
        if lost:
            fake.fail_next("updates", ConnectionError("connection reset"))
            fake.step()
        await eventually(lambda: "as of" in plain(app.main.state_panel))
        first = plain(app.main.state_panel).splitlines()[0]
        assert first.startswith("as of ") and first.endswith(f"ago: {why}")
        await eventually(lambda: ticker_age_s(app) >= fresh + 2)  # ages grow with the wall clock
        assert "TRADEABLE" in plain(app.main.state_panel)  # the last state, under its age
        grown = ticker_age_s(app)
        if lost:
            app.pump_snapshots()  # the feed comes back
        await publish(app, fake)  # fresh figures again
        await eventually(lambda: ticker_age_s(app) < grown)
        assert "not answering" not in plain(app.main.state_panel)


# -- keys -------------------------------------------------------------------------------------


async def test_pause_sends_pause_then_resume(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("p")
        await eventually(lambda: fake.commands == [(Command.PAUSE, app.origin)])
        await eventually(lambda: "PAUSED" in banner(app))
        await pilot.press("p")
        await eventually(lambda: fake.commands[-1] == (Command.RESUME, app.origin))
        await eventually(lambda: "PAUSED" not in banner(app))


class SlowSendFake(FakeEngineClient):
    """A fake engine that takes commands only once `gate` opens: nothing is published between
    two quick key presses, as with a real engine between two cycles."""

    def __init__(self) -> None:
        super().__init__(seed=7, candidates=50, positions=2)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def send(self, command: Command, origin: str) -> CommandResult:
        self.waiting += 1
        await self.gate.wait()
        return await super().send(command, origin)


async def test_the_footer_says_what_the_pause_key_will_do(fake: FakeEngineClient) -> None:
    """Audit: the footer said `p Pause` while paused."""
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, keymap={"pause": "f9"}))
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)

        def footer() -> str:
            return app.main.active_bindings["f9"].binding.description

        assert footer() == "Pause"
        await pilot.press("f9")
        await eventually(lambda: "PAUSED" in banner(app))
        await publish(app, fake)
        assert footer() == "Resume"
        await pilot.press("f9")
        await eventually(lambda: fake.commands[-1] == (Command.RESUME, app.origin))
        await publish(app, fake)
        assert footer() == "Pause" and "PAUSED" not in banner(app)


async def test_two_quick_presses_of_p_pause_then_resume() -> None:
    """`p` read the state from the last snapshot: pressed twice before the engine published
    again, it sent PAUSE twice and the engine stayed paused."""
    fake = SlowSendFake()
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("p", "p")
        await eventually(lambda: fake.waiting == 2)
        fake.gate.set()
        await eventually(lambda: len(fake.commands) == 2)
        assert fake.commands == [(Command.PAUSE, app.origin), (Command.RESUME, app.origin)]
        await pilot.press("p")  # resumed: the next press pauses
        await eventually(lambda: len(fake.commands) == 3)
        assert fake.commands[-1] == (Command.PAUSE, app.origin)
    await fake.stop()


async def test_a_failed_pause_leaves_the_state_to_the_snapshots(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        fake.fail_next("send", ConnectionError("engine gone"))
        await pilot.press("p")
        await eventually(lambda: "engine gone" in notes(app))
        await pilot.press("p")  # not paused after all: asks for a pause again
        await eventually(lambda: fake.commands == [(Command.PAUSE, app.origin)])


async def test_close_all_needs_the_deliberate_key_then_flattens(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        await pilot.press("ctrl+x")
        assert isinstance(app.screen, ConfirmCloseAll)
        assert [p.symbol for p in app.screen.positions] == [p.symbol for p in snap.positions]
        await pilot.press("y", "enter", "space")  # not the confirm key: nothing happens
        assert isinstance(app.screen, ConfirmCloseAll) and fake.commands == []
        await pilot.press("Y")
        await eventually(lambda: (Command.CLOSE_ALL, app.origin) in fake.commands)
        assert isinstance(app.screen, CloseAllProgressDialog)
        await publish(app, fake)
        assert "CLOSING ALL" in banner(app)
        assert "the close continues" in plain(app.screen.query_one("#close-hint", Static))
        for _ in range(5):
            await publish(app, fake)
        assert app.snapshot is not None and app.snapshot.positions == ()
        assert app.main.positions.table.row_count == 0
        assert "FLAT" in plain(app.screen.query_one("#close-status", Static))
        assert "FLAT" in banner(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_close_all_dialogs_say_entries_stay_paused_and_the_pause_key_resumes(fake: FakeEngineClient) -> None:
    """Audit: neither dialog said that new entries stay paused after close-all (its pause
    outlives an engine restart), and `p`, listed as working everywhere, did nothing in them."""
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, keymap={"pause": "f9"}))
    said = "New entries stay paused until you press f9 (resume)."
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("ctrl+x")
        assert isinstance(app.screen, ConfirmCloseAll)
        assert plain(app.screen.query_one("#close-resume", Static)).strip() == said
        await pilot.press("Y")
        await eventually(lambda: (Command.CLOSE_ALL, app.origin) in fake.commands)
        for _ in range(6):
            await publish(app, fake)
        dialog = app.screen
        assert isinstance(dialog, CloseAllProgressDialog)
        assert "FLAT" in plain(dialog.query_one("#close-status", Static))
        assert plain(dialog.query_one("#close-resume", Static)).strip() == said
        assert "PAUSED" in banner(app)
        await pilot.press("p")  # not the pause key here: nothing happens
        assert app.screen is dialog
        await pilot.press("f9")
        await eventually(lambda: fake.commands[-1] == (Command.RESUME, app.origin))
        assert isinstance(app.screen, MainScreen)
        await publish(app, fake)
        assert "PAUSED" not in banner(app)


async def test_close_all_with_nothing_open_ends_with_a_full_bar_and_no_stale_hint() -> None:
    fake = FakeEngineClient(seed=7, candidates=50, positions=0)
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("ctrl+x", "Y")
        await eventually(lambda: (Command.CLOSE_ALL, app.origin) in fake.commands)
        dialog = app.screen
        assert isinstance(dialog, CloseAllProgressDialog)
        await publish(app, fake)
        assert plain(dialog.query_one("#close-status", Static)).strip() == "FLAT: nothing was open."
        assert dialog.query_one(ProgressBar).percentage == 1
        assert plain(dialog.query_one("#close-hint", Static)).strip() == "Esc closes this."
        await fake.stop()


@pytest.mark.parametrize(
    ("progress", "title", "status", "red"),
    [
        (CloseAllProgress(1, 2, 0, ("AQVLZ/USDT: still open",)), "CLOSE-ALL DONE", "FLAT: all 2 position(s) closed.", False),
        (CloseAllProgress(1, 2, 1, ("AQVLZ/USDT: still open",)), "CLOSING ALL POSITIONS", "1 left; error: AQVLZ/USDT: still open", True),
        (CloseAllProgress(1, 2, 1), "CLOSING ALL POSITIONS", "1 of 2 still open…", False),
    ],
    ids=["flat-after-an-error", "error-while-open", "open"],
)
async def test_close_all_progress_ends_on_flat_not_on_an_earlier_error(
    progress: CloseAllProgress, title: str, status: str, red: bool
) -> None:
    """A close-all whose first send hit a 429 but that ended flat showed CLOSE-ALL DONE over a
    red "still open" error: flat is the last word."""
    app = App[None]()
    async with app.run_test(size=SMALL) as pilot:
        dialog = CloseAllProgressDialog(2, "p")
        await app.push_screen(dialog)
        await pilot.pause()
        dialog.show(progress, progress.remaining)
        await pilot.pause()
        shown = dialog.query_one("#close-status", Static)
        assert plain(shown).strip() == status
        assert str(dialog.query_one("#dialog-title", Label).render()) == title
        assert (isinstance(shown.content, Text) and "red" in str(shown.content.style)) is red


async def test_dialogs_keep_a_snapshot_that_arrives_before_their_widgets_exist() -> None:
    """CI failure: ctrl+x pushed the confirmation and a snapshot arrived before its compose
    ran; showing it raised NoMatches('#close-what') and the console died with the book open.
    Each dialog keeps what it was shown and draws it once mounted."""
    positions = make_snapshot().positions
    app = App[None]()
    async with app.run_test(size=WIDE) as pilot:
        confirm = ConfirmCloseAll((), None, False, "Y", "p")
        confirm.show(positions, 2.0, False)
        await app.push_screen(confirm)
        await pilot.pause()
        assert f"sells these {len(positions)} position(s)" in plain(confirm.query_one("#close-what", Static))
        confirm.dismiss(False)
        await pilot.pause()
        quit_dialog = QuitWithPositions(())
        quit_dialog.show(positions)
        await app.push_screen(quit_dialog)
        await pilot.pause()
        assert str(quit_dialog.query_one("#dialog-title", Label).render()) == f"{len(positions)} POSITION(S) STILL OPEN"
        quit_dialog.dismiss(False)
        await pilot.pause()
        progress = CloseAllProgressDialog(2, "p")
        progress.show(CloseAllProgress(1, 2, 1), 1)
        await app.push_screen(progress)
        await pilot.pause()
        assert plain(progress.query_one("#close-status", Static)).strip() == "1 of 2 still open…"


async def test_close_all_and_quit_dialogs_follow_the_snapshots(fake: FakeEngineClient) -> None:
    """Both dialogs copied the positions when they opened: after more positions opened, the
    confirmation still said "sells these 6 position(s)" while Y closed 7, and the quit
    dialog showed the sizes and PnL of a minute before."""
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE) as pilot:
        await publish(app, fake)
        await pilot.press("ctrl+x")
        dialog = app.screen
        assert isinstance(dialog, ConfirmCloseAll) and len(dialog.positions) == 6
        snap = await publish(app, fake, cycles=10)  # cycle 10 opens a seventh position
        assert len(snap.positions) == 7 and dialog.positions == snap.positions
        assert "sells these 7 position(s)" in plain(dialog.query_one("#close-what", Static))
        assert display_symbol(snap.positions[-1].symbol) in plain(dialog.query_one("#close-table", Static))
        await pilot.press("escape")
        await pilot.press("q")
        quit_dialog = app.screen
        assert isinstance(quit_dialog, QuitWithPositions)
        snap = await publish(app, fake, cycles=5)
        assert quit_dialog.positions == snap.positions
        table = plain(quit_dialog.query_one("#quit-table", Static))
        assert all(fmt.pnl(p.unrealised_pnl).plain in table and fmt.price(p.mark) in table for p in snap.positions)
        assert str(quit_dialog.query_one("#dialog-title", Label).render()) == f"{len(snap.positions)} POSITION(S) STILL OPEN"
        await pilot.press("n")


async def test_close_all_cancel_sends_nothing(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("ctrl+x", "escape")
        assert isinstance(app.screen, MainScreen) and fake.commands == []
        await pilot.press("ctrl+x", "n")
        assert isinstance(app.screen, MainScreen) and fake.commands == []


async def test_close_all_works_on_stale_data_and_from_the_filter_box(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, stale_after_s=0.05))
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await eventually(lambda: "OLD" in banner(app), timeout=5)
        await pilot.press("slash", "a")  # typing in the filter: ctrl+x must still reach close-all
        await pilot.press("ctrl+x")
        assert isinstance(app.screen, ConfirmCloseAll)
        assert "old" in " ".join(plain(w) for w in app.screen.query(Static))
        await pilot.press("Y")
        await eventually(lambda: (Command.CLOSE_ALL, app.origin) in fake.commands)


async def test_replay_opens_the_cursor_rows_trace_and_escape_returns(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        await pilot.press("r")
        await eventually(lambda: isinstance(app.screen, ReplayScreen))
        assert isinstance(app.screen, ReplayScreen)
        top = sorted(snap.candidates, key=lambda r: (-r.heat, r.symbol))[0]
        assert app.screen.trace_id == top.trace_id
        assert top.trace_id in plain(app.screen.query_one("#replay-tree", Static))
        await pilot.press("ctrl+x")  # close-all is reachable from the replay screen too
        assert isinstance(app.screen, ConfirmCloseAll)
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, MainScreen)


def requested_traces(monkeypatch: pytest.MonkeyPatch, fake: FakeEngineClient) -> list[str]:
    """The trace ids the app asks the engine for from now on."""
    asked: list[str] = []
    trace = fake.trace

    async def spy(trace_id: str) -> list[JournalEvent]:
        asked.append(trace_id)
        return await trace(trace_id)

    monkeypatch.setattr(fake, "trace", spy)
    return asked


async def test_replay_on_the_chart_opens_the_charted_coins_trace(fake: FakeEngineClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit: `r` on a held coin's chart opened the trace of whatever the hidden candidates
    cursor was on, an unrelated coin. On the chart it is the charted coin's: its position's
    trace while held, else its candidate trace, else a note that there is none."""
    app = HotcoinApp(fake, FAST)
    asked = requested_traces(monkeypatch, fake)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        main = app.main
        await pilot.press("o", "down", "enter")
        held = main.positions.cursor_position
        assert held is not None and main.chart.symbol == held.symbol != main.pool.cursor_symbol
        await pilot.press("k", "r")
        await eventually(lambda: isinstance(app.screen, ReplayScreen))
        assert asked == [held.trace_id]
        await pilot.press("escape")

        await pilot.press("c")
        held_symbols = {p.symbol for p in snap.positions}
        watched = next(r for r in snap.candidates if r.symbol not in held_symbols and r.trace_id in fake._traces)
        main.pool.table.move_cursor(row=main.pool.shown_symbols.index(watched.symbol))
        await pilot.press("enter", "down")
        assert main.chart.symbol == watched.symbol != main.pool.cursor_symbol
        await pilot.press("k", "r")
        await eventually(lambda: len(asked) == 2)
        assert asked[1] == watched.trace_id
        await eventually(lambda: isinstance(app.screen, ReplayScreen))
        await pilot.press("escape")

        main.chart.select("GONE/USDT")  # charted, then gone from the pool: nothing to replay
        await pilot.press("k", "r")
        await eventually(lambda: "Nothing with a trace here" in notes(app))
        assert len(asked) == 2 and isinstance(app.screen, MainScreen)


async def test_replay_on_the_engine_panel_says_there_is_nothing_to_replay(
    fake: FakeEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine panel has no rows with a trace: `r` there opened the hidden candidates
    cursor's trace. Now it says so instead."""
    app = HotcoinApp(fake, FAST)
    asked = requested_traces(monkeypatch, fake)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("t", "r")
        await eventually(lambda: "Nothing with a trace here" in notes(app))
        assert asked == [] and isinstance(app.screen, MainScreen)


async def test_enter_on_an_event_opens_its_decision_tree(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake, cycles=10)  # cycle 10 opens a position: a full entry trace
        await pilot.press("e")
        events = app.main.events
        assert app.focused is events and events.cursor_row == events.row_count - 1
        trace = events.cursor_trace
        assert trace is not None
        await pilot.press("enter")
        await eventually(lambda: isinstance(app.screen, ReplayScreen))
        tree = plain(app.screen.query_one("#replay-tree", Static))
        assert trace in tree and "position_update" in tree and "Orders" in tree


async def test_the_events_panel_keeps_every_event_while_hidden(fake: FakeEngineClient) -> None:
    """Audit: at 80x24, events hidden for 30 s and shown again, the rows jumped from 13:08 to the
    sell of a coin whose buy (signal, risk, order, fill) never appeared. A snapshot carries the
    engine's last 200 events, and the hidden panel caught up from the latest one only."""
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("e", "c")
        shown = app.main.events.last_seq
        for _ in range(32):  # ~7 events a cycle: over 200, under the panel's 300 rows
            snap = await publish(app, fake)
        assert snap.events[0].seq > shown + 1  # the latest snapshot alone no longer reaches back
        await pilot.press("e")
        events = app.main.events
        seqs = sorted(events._events)
        assert seqs == list(range(seqs[0], snap.events[-1].seq + 1)) and seqs[0] <= shown
        assert all(event.kind != NOT_SHOWN for event in events._events.values())


async def test_events_the_panel_never_received_are_counted_not_skipped(fake: FakeEngineClient) -> None:
    """More events between two snapshots than one carries: a row says how many are missing
    and Enter on it gives the command that lists them, instead of a silent jump."""
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("e")
        snap = await publish(app, fake)
        last = snap.events[-1]
        later = EventRow(last.seq + 138, last.ts_ms + 700_000, "fill", "DOGE/USDT", "t1", "sell 1,984.0 @ 0.025599")
        app.post_message(SnapshotArrived(replace(snap, seq=snap.seq + 1, events=(later,))))
        events = app.main.events
        await eventually(lambda: events.last_seq == later.seq)
        gap = events._events[last.seq + 1]
        assert gap.kind == NOT_SHOWN and str(events.get_cell(str(gap.seq), "kind")) == "NOT SHOWN"
        head, _, command = gap.summary.partition(": ")
        assert head == "137 event(s) not shown" and command.startswith("hotcoin journal export --since ")
        since, until = command.split()[-3], command.split()[-1]
        assert parse_time(since, "--since") <= last.ts_ms and parse_time(until, "--until") > later.ts_ms
        events.move_cursor(row=events.get_row_index(str(gap.seq)))
        await pilot.press("enter")
        await eventually(lambda: gap.summary in notes(app))
        assert isinstance(app.screen, MainScreen)


def shown_whole(events: EventsPanel) -> bool:
    """Every event's What is its summary or whole words of it ending in `…`, and the table is
    no wider than its panel (the edge cuts mid-word, silently)."""
    for key, event in events._events.items():
        shown = events.get_cell(str(key), "what").plain
        words = shown.removesuffix("…").split()
        if shown != event.summary and not (shown.endswith("…") and words == event.summary.split()[: len(words)]):
            return False
    return events.virtual_size.width <= events.scrollable_content_region.width


async def test_event_text_is_never_cut_into_something_else(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await publish(app, fake, cycles=10)
        events = app.main.events
        assert "ts" not in events.columns  # 38 columns: What gets the Time column's room
        assert shown_whole(events)
        events.focus()
        events.move_cursor(row=3)
        rows = events.row_count
        await pilot.resize_terminal(*SMALL)
        await pilot.press("e")
        await pilot.pause()
        assert "ts" in events.columns and events.row_count == rows and shown_whole(events)
        assert events.cursor_row == 3  # still on what the user was reading


async def test_replay_of_unknown_trace_is_reported_not_fatal(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        fake.fail_next("trace", TraceNotFoundError("no trace 'abc' in the journal"))
        await pilot.press("r")
        await eventually(lambda: "no trace 'abc'" in notes(app))
        assert isinstance(app.screen, MainScreen) and app.is_running


async def test_interval_key_switches_and_reloads_the_chart(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE) as pilot:
        snap = await publish(app, fake)
        chart = app.main.chart
        assert chart.symbol == snap.positions[0].symbol  # first view follows the first position
        await eventually(lambda: chart.draws >= 1)
        for expected in ("5m", "15m", "1m"):
            await pilot.press("i")
            assert chart.timeframe == expected
            await eventually(lambda: bool(chart._candles) and chart._candles[-1].timeframe == expected)  # noqa: B023
        assert "1m" in str(chart.border_title)


async def test_enter_on_a_candidate_charts_it(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE) as pilot:
        await publish(app, fake)
        await pilot.press("c", "down", "down")
        symbol = app.main.pool.cursor_symbol
        assert symbol is not None
        await pilot.press("enter")
        chart = app.main.chart
        assert chart.symbol == symbol
        await eventually(lambda: bool(chart._candles) and chart._candles[-1].symbol == symbol)


async def test_a_coin_without_candles_says_so_and_is_charted_once_they_come(
    fake: FakeEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit: a symbol whose candle request answered [] (a coin in its first minute; on Binance
    any failed fetch) showed "Loading SYM 1m…" forever, with no message. The chart says there
    are none yet, and the next refresh that brings some draws them."""
    app = HotcoinApp(fake, FAST)
    candles = fake.candles
    empty: set[str] = set()

    async def none_for_new(symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return [] if symbol in empty else await candles(symbol, timeframe, limit)

    monkeypatch.setattr(fake, "candles", none_for_new)
    async with app.run_test(size=WIDE):
        snap = await publish(app, fake)
        chart = app.main.chart
        await eventually(lambda: chart.draws >= 1)
        empty.add(snap.candidates[5].symbol)
        app.post_message(SymbolSelected(snap.candidates[5].symbol))
        await eventually(lambda: f"No candles for {snap.candidates[5].symbol} 1m yet" in plain(chart))
        assert "Loading" not in plain(chart)
        draws = chart.draws
        empty.clear()  # the coin's first candle closes: the normal refresh charts it
        await eventually(lambda: chart.draws > draws and "No candles" not in plain(chart))
        assert chart._candles and chart._candles[-1].symbol == snap.candidates[5].symbol


async def test_chart_redraws_at_most_once_per_interval(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, chart_refresh_s=60))
    async with app.run_test(size=WIDE):
        await publish(app, fake)
        chart = app.main.chart
        await eventually(lambda: chart.draws == 1)
        candles = await fake.candles(chart.symbol or "", chart.timeframe, 50)
        for _ in range(5):
            chart.set_data(chart.symbol or "", chart.timeframe, candles, [])
        assert chart.draws == 1  # the newest data waits for the next slot


async def test_a_chart_that_would_look_the_same_is_not_repainted(
    fake: FakeEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A price move too small for the chart's rows still replaced its content every second:
    a repaint of the largest panel for an identical picture."""
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, chart_refresh_s=60))
    async with app.run_test(size=WIDE):
        await publish(app, fake)
        chart = app.main.chart
        await eventually(lambda: chart.draws == 1)
        symbol, candles, fills = chart.symbol or "", chart._candles, chart._fills
        repaints = count_repaints(monkeypatch, [chart])
        chart.draw()
        assert chart.draws == 2 and repaints == Counter()
        chart.select("OTHER/USDT")  # "Loading …" replaces the plot: the same plot must come back
        chart.select(symbol)
        chart.set_data(symbol, chart.timeframe, candles, fills)
        chart.draw()
        assert "Loading" not in plain(chart)


async def test_panel_keys_switch_the_visible_panel_at_80x24(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        main = app.main
        assert main.compact

        def visible() -> list[str | None]:
            return [w.id for w in main.query(".panel") if w.display and w.parent is not None and w.parent.display]

        for key, panel in (("o", "positions"), ("e", "events"), ("t", "state"), ("k", "chart"), ("c", "candidates")):
            await pilot.press(key)
            await eventually(lambda: visible() == [panel])  # noqa: B023
            # the active panel fills the screen below the banner and strip
            await eventually(lambda: main.query_one(f"#{panel}").region.height >= 15)  # noqa: B023


async def test_resize_switches_between_tabs_and_grid(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.resize_terminal(*WIDE)
        await pilot.pause()
        assert not app.main.compact
        assert all(w.region.height > 0 for w in app.main.query(".panel"))
        await pilot.resize_terminal(*SMALL)
        await pilot.pause()
        assert app.main.compact and app.main.pool.table.row_count == 200


async def test_quit_warns_when_positions_are_open(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("q")
        assert isinstance(app.screen, QuitWithPositions) and len(app.screen.positions) == 6
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen) and fake.commands == []
        assert app.snapshot is not None
        held = ", ".join(p.symbol for p in app.snapshot.positions)
        await pilot.press("q", "y")
        # It used to print nothing: the engine's summary of what it left open goes to its log.
        await eventually(lambda: bool(app._exit_renderables))  # read before it is printed and dropped
        said = " ".join(str(r) for r in app._exit_renderables)
        await eventually(lambda: not app.is_running)
    assert fake.commands == [(Command.SHUTDOWN, app.origin)]
    assert app.return_code == 0
    assert said.startswith(f"hotcoin: engine stopped with 6 position(s) left open ({held}): they stay held")


async def test_close_all_from_the_quit_dialog_replaces_it(fake: FakeEngineClient) -> None:
    """The quit dialog's list would go stale under close-all (and the main screen under two
    modals was not repainted): ctrl+x dismisses it, and q asks again once the book is flat."""
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("q")
        assert isinstance(app.screen, QuitWithPositions)
        await pilot.press("ctrl+x")
        assert isinstance(app.screen, ConfirmCloseAll)
        assert [type(s) for s in app.screen_stack] == [type(app.screen_stack[0]), MainScreen, ConfirmCloseAll]
        await pilot.press("Y")
        await eventually(lambda: (Command.CLOSE_ALL, app.origin) in fake.commands)
        for _ in range(6):
            await publish(app, fake)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and app.main.positions.table.row_count == 0
        await pilot.press("q")  # flat now: no warning, straight to shutdown
        await eventually(lambda: not app.is_running)
    assert fake.commands == [(Command.CLOSE_ALL, app.origin), (Command.SHUTDOWN, app.origin)]


async def test_quit_without_positions_shuts_the_engine_down() -> None:
    fake = FakeEngineClient(seed=7, candidates=50, positions=0)
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("q")
        await eventually(lambda: not app.is_running)
    assert fake.commands == [(Command.SHUTDOWN, app.origin)]


async def test_help_lists_bindings_with_config_remaps(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, keymap={"pause": "f9"}))
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpDialog)
        text = plain(app.screen.query_one("#dialog-list Static", Static))
        assert "f9" in text and "close_all.confirm" in text and "focus.positions" in text
        await pilot.press("escape", "p")
        assert fake.commands == []  # p no longer pauses
        await pilot.press("f9")
        await eventually(lambda: fake.commands == [(Command.PAUSE, app.origin)])


async def test_help_is_closed_by_its_own_key_and_q_and_says_where_keys_work(fake: FakeEngineClient) -> None:
    """Audit: `p`, `q`, `?` were listed under "Everywhere" but did nothing while a dialog was
    open, help included (a dialog cuts the app's keys off): `q` left the help open."""
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        for key in ("q", "question_mark", "escape"):
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpDialog)
            sections = help_sections(plain(app.screen.query_one("#dialog-list Static", Static)))
            await pilot.press(key)
            assert isinstance(app.screen, MainScreen), key
        assert app.is_running and fake.commands == []
    assert sections["Everywhere"] == ["close_all"]
    assert sections["Outside dialogs"] == ["pause", "pause", "help", "quit"]
    assert sections["Help"] == ["dialog.close", "help", "quit"]
    assert sections["Close-all progress"] == ["dialog.close", "pause"]


def help_sections(text: str) -> dict[str, list[str]]:
    """The help table's sections: title -> the binding ids listed under it."""
    titles, ids = {title for title, _ in keymap.ALL}, set(keymap.known_ids())
    sections: dict[str, list[str]] = {}
    rows: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if line.strip() in titles:
            rows = sections.setdefault(line.strip(), [])
        elif words and words[-1] in ids:
            rows.append(words[-1])
    return sections


async def test_help_shows_keys_as_typed_not_by_their_names(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, keymap={"pause": "comma"}))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpDialog)
        rows = [line.split() for line in plain(app.screen.query_one("#dialog-list Static", Static)).splitlines()]
        keys = {row[-1]: row[0] for row in rows if len(row) > 1}
        assert (keys["help"], keys["filter"], keys["pause"], keys["close_all"]) == ("?", "/", ",", "ctrl+x")


REMAPPED = {
    "close_all": "ctrl+k", "quit.confirm": "Y", "quit.cancel": "f2", "close_all.cancel": "f3,question_mark", "dialog.close": "f4",
}  # fmt: skip


async def test_dialogs_name_the_keys_the_keymap_binds_now(fake: FakeEngineClient) -> None:
    """Audit: with `close_all = "ctrl+k"` (docs/tui.md's example) the quit dialog still said
    "(ctrl+x closes everything first)" and ctrl+x did nothing; the close-all dialog said "Esc or
    n cancels" whatever cancel was bound to. Each names the keys that work, and they work."""
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, keymap=REMAPPED))
    async with app.run_test(size=WIDE) as pilot:
        await publish(app, fake)
        await pilot.press("q")
        assert isinstance(app.screen, QuitWithPositions)
        said = plain(app.screen.query_one("#dialog-keys", Static))
        assert "Y: quit anyway   f2: stay   (ctrl+k closes everything first)" in said, said
        assert "ctrl+x" not in said and "Esc" not in said
        await pilot.press("f2")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("q", "ctrl+k")  # the key the quit dialog names opens close-all
        assert isinstance(app.screen, ConfirmCloseAll)
        said = plain(app.screen.query_one("#dialog-keys", Static))
        assert "Press Y to close all. f3 or ? cancels." in said, said
        await pilot.press("question_mark")
        assert isinstance(app.screen, MainScreen) and app.is_running
        assert fake.commands == []
        await pilot.press("ctrl+k", "Y")  # the progress view names the key that hides it, and it does
        assert isinstance(app.screen, CloseAllProgressDialog)
        assert plain(app.screen.query_one("#close-hint", Static)).startswith("f4 hides this"), plain(app.screen.query_one("#close-hint", Static))
        await pilot.press("f4")
        assert isinstance(app.screen, MainScreen)


def test_unknown_keymap_id_is_rejected_with_the_valid_ids(fake: FakeEngineClient) -> None:
    with pytest.raises(ConfigError, match=r"unknown binding id\(s\) paws; valid ids are .*pause"):
        HotcoinApp(fake, TuiSection(refresh_hz=30, keymap={"paws": "f9"}))


# -- failures never kill the app --------------------------------------------------------------


async def test_client_errors_are_shown_and_the_app_carries_on(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        fake.fail_next("send", ConnectionError("engine socket closed"))
        await pilot.press("p")
        await eventually(lambda: "engine socket closed" in notes(app))
        fake.fail_next("candles", TimeoutError("candles timed out"))
        await pilot.press("enter")
        await eventually(lambda: "candles timed out" in notes(app))
        await pilot.press("p")
        await eventually(lambda: fake.commands == [(Command.PAUSE, app.origin)])
        assert app.is_running


class BrokenCharts(FakeEngineClient):
    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        raise TimeoutError("candles timed out")


async def test_a_chart_that_keeps_failing_is_reported_once() -> None:
    fake = BrokenCharts(seed=7, candidates=50, positions=3)
    app = HotcoinApp(fake, TuiSection(refresh_hz=30, chart_refresh_s=0.2))
    async with app.run_test(size=WIDE) as pilot:
        await publish(app, fake)
        await pilot.pause(1.0)  # five chart ticks
        assert len([n for n in notes(app).split(" | ") if "candles timed out" in n]) == 1
    await fake.stop()


async def test_a_broken_feed_is_shown_and_resubscribed(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    app.resubscribe_s = 0.05
    async with app.run_test(size=SMALL):
        await publish(app, fake)
        fake.fail_next("updates", ConnectionError("stream reset"))
        fake.step()
        await eventually(lambda: "FEED ERROR" in banner(app))
        assert app.main.pool.table.row_count == 200  # last data stays, labelled
        await publish(app, fake)  # resubscribed
        assert "FEED ERROR" not in banner(app)


def cut_cells(table: DataTable[Text]) -> list[str]:
    """Cells wider than their column: what the table would show cut off."""
    return [
        str(cell) for row in table.ordered_rows for key, column in table.columns.items()
        if Text(str(cell := table.get_cell(row.key, key))).cell_len > column.content_width
    ]  # fmt: skip


async def test_a_cell_updated_in_place_widens_its_column() -> None:
    """A value that grows (a stop set on a micro-priced coin, a signal turning HOLDING) must
    show whole, as a new row would."""
    fake = FakeEngineClient(seed=7, candidates=1, positions=0)
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE) as pilot:
        kit = make_snapshot(seq=1000)
        pos, cand = kit.positions[0], kit.candidates[0]
        narrow = replace(kit, positions=(replace(pos, stop_price=None),), candidates=(replace(cand, signal_state="hold"),))
        app.post_message(SnapshotArrived(narrow))
        await eventually(lambda: app.snapshot is narrow)
        wide = replace(kit, seq=1001, positions=(replace(pos, stop_price=0.000019032),), candidates=(replace(cand, signal_state="in_position"),))
        app.post_message(SnapshotArrived(wide))
        await eventually(lambda: app.snapshot is wide)
        await pilot.pause()  # column widths are measured before the next repaint
        assert app.main.positions.table.get_cell(pos.symbol, "stop").plain == "0.0₄19032"
        assert app.main.pool.table.get_cell(cand.symbol, "sig").plain == "HOLDING"
        assert cut_cells(app.main.positions.table) == [] and cut_cells(app.main.pool.table) == []
    await fake.stop()


async def test_a_snapshot_that_changes_nothing_shown_repaints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a quiet market a snapshot mostly says what the last one said; the banner, the engine
    and totals panels and the panel titles were repainted anyway on every snapshot (the banner
    every second too): console CPU and terminal output spent on nothing, all day."""
    fake = FakeEngineClient(seed=7, candidates=1, positions=0)
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE) as pilot:

        async def show(snap: EngineSnapshot) -> None:
            app.post_message(SnapshotArrived(snap))
            await eventually(lambda: app.snapshot is snap)
            app._watch_feed()  # the banner's once-a-second refresh
            await pilot.pause()

        first = make_snapshot(seq=1000)
        await show(first)
        main = app.main
        shown = (main.banner, main.state_panel, main.query_one("#totals"), main.pool, main.positions)
        repaints = count_repaints(monkeypatch, shown)
        await show(replace(first, seq=1001))
        assert repaints == Counter()
        await show(replace(first, seq=1002, totals=replace(first.totals, day_pnl=-4.0)))
        assert set(repaints) == {"banner", "totals"}  # the day's PnL shows in both, and only there
        assert "-4.00" in banner(app) and "-4.00" in plain(main.positions.query_one("#totals", Static))
    await fake.stop()


async def test_rows_are_datatables_with_row_cursor(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL):
        await publish(app, fake)
        for table in app.main.query(DataTable):
            assert table.cursor_type == "row"


def terminal_output(app: HotcoinApp) -> str:
    """A full repaint of the current screen as the driver would write it to the terminal:
    the app's line filters (NO_COLOR's) applied, encoded by the app's own console (the colour
    system it chose from TERM / COLORTERM). Textual's `export_screenshot` cannot show either:
    it always renders in truecolor."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return update.render_segments(app.console)


def sgr_params(output: str) -> list[list[str]]:
    """The parameters of every SGR (style) escape in `output`, one list per escape."""
    return [m.group(1).split(";") for m in re.finditer(r"\x1b\[([0-9;]*)m", output)]


def colour_codes(output: str) -> set[str]:
    """Every colour an SGR escape in `output` sets: `31`, `97`, `38;5` (256-palette),
    `48;2` (truecolor), ...; `39`/`49`, the terminal's own default colours, are not colours."""
    found: set[str] = set()
    for params in sgr_params(output):
        i = 0
        while i < len(params):
            p = params[i]
            if p in ("38", "48", "58"):
                found.add(f"{p};{params[i + 1]}")
                i += 3 if params[i + 1] == "5" else 5
                continue
            if p and p not in ("39", "49") and (30 <= int(p) <= 49 or 90 <= int(p) <= 107):
                found.add(p)
            i += 1
    return found


def screen_text(output: str) -> str:
    """The characters of `output`, one screen line per line (escapes dropped)."""
    lines = re.split(r"\x1b\[\d+;\d+H", output)
    return "\n".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in lines)


def styled_as(output: str, text: str) -> set[str]:
    """The SGR parameters of the first styled run of `output` that starts with `text`
    (after padding spaces)."""
    match = re.search(r"\x1b\[([0-9;]*)m *" + re.escape(text.strip()), output)
    assert match is not None, f"{text!r} is not the start of a styled run"
    return set(match.group(1).split(";"))


@pytest.mark.parametrize(("mode", "label", "state"), [
    (Mode.SIM, " SIM ", "blocked"), (Mode.PAPER, " PAPER ", "tradeable"), (Mode.LIVE, " LIVE · REAL ORDERS ", "degraded"),
], ids=["sim-blocked", "paper-tradeable", "live-degraded"])  # fmt: skip
async def test_no_color_strips_every_colour_and_keeps_the_meaning_in_text(
    mode: Mode, label: str, state: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    fake = FakeEngineClient(seed=7, candidates=300, positions=6, mode=mode)
    fake.force_state(state, ("data_stale: ticker 12s old",) if state != "tradeable" else ())
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE) as pilot:
        snap = await publish(app, fake)
        await pilot.press("o")
        await eventually(lambda: app.main.chart.draws > 0)
        await pilot.pause()
        assert app.no_color
        out = terminal_output(app)
        assert colour_codes(out) == set(), "NO_COLOR: not even greys"
        text = screen_text(out)
        assert text.lstrip("\n").startswith(label)
        assert "7" in styled_as(out, label)  # the mode is a reverse-video badge, not a colour
        assert f" {state.upper()} " in text
        assert f"day {fmt.money(snap.totals.day_pnl, signed=True)}" in text
        for pos in snap.positions:  # the sign, not the colour, says gain or loss
            assert fmt.money(pos.unrealised_pnl, signed=True)[0] in "+-"
            assert str(app.main.positions.table.get_cell(pos.symbol, "upnl")) == fmt.money(pos.unrealised_pnl, signed=True)
        assert {"+", "-"} <= {fmt.money(p.unrealised_pnl, signed=True)[0] for p in snap.positions}
        under_cursor = app.main.positions.cursor_position
        assert under_cursor is not None and app.main.positions.table.has_focus
        # the cursor row is reverse video, not a tint
        assert "7" in styled_as(out, fmt.money(under_cursor.unrealised_pnl, signed=True))
        assert "▒" in text  # falling candles shaded: up and down differ without colour
    await fake.stop()


async def test_no_color_close_all_dialog_and_progress_read_without_colour(
    fake: FakeEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        await pilot.press("ctrl+x")
        out = terminal_output(app)
        assert colour_codes(out) == set()
        text = screen_text(out)
        assert "EMERGENCY CLOSE-ALL" in text and "Press Y to close all. Esc or n cancels." in text
        for pos in snap.positions:
            assert f"{display_symbol(pos.symbol)} " in text and fmt.money(pos.unrealised_pnl, signed=True) in text
        await pilot.press("Y")
        await eventually(lambda: (Command.CLOSE_ALL, app.origin) in fake.commands)
        await publish(app, fake)  # the fake closes two positions a cycle
        dialog = app.screen
        assert isinstance(dialog, CloseAllProgressDialog)
        await eventually(lambda: "still open" in plain(dialog.query_one("#close-status", Static)))
        await pilot.pause()
        out = terminal_output(app)
        assert colour_codes(out) == set()
        text = screen_text(out)
        assert "CLOSING ALL POSITIONS" in text and "CLOSING ALL 4/6 left" in text and "4 of 6 still open" in text
        bar = next(line for line in text.splitlines() if "%" in line and "━" in line)
        done = int(re.search(r"(\d+)%", bar).group(1))  # type: ignore[union-attr]
        # Done and to-do are one glyph in two colours: without colour the to-do part is blank.
        assert done == 33 and 9 <= bar.count("━") + bar.count("╸") <= 12


async def test_256_colour_terminal_gets_the_256_palette(fake: FakeEngineClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(textual.constants, "COLOR_SYSTEM", "auto")  # TEXTUAL_COLOR_SYSTEM, read at import
    monkeypatch.delenv("COLORTERM", raising=False)  # "truecolor" there would win over TERM
    monkeypatch.setenv("TERM", "xterm-256color")
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=WIDE):
        snap = await publish(app, fake)
        await eventually(lambda: app.main.chart.draws > 0)
        assert app.console.color_system == "256"
        out = terminal_output(app)
        codes = colour_codes(out)
        assert {"38;5", "48;5"} <= codes  # the theme's truecolor, downgraded to the palette ...
        assert not {"38;2", "48;2"} & codes  # ... and nothing sent as truecolor
        text = screen_text(out)
        assert text.lstrip("\n").startswith(" PAPER ") and " TRADEABLE " in text
        assert f"day {fmt.money(snap.totals.day_pnl, signed=True)}" in text
        for title in ("Candidates 200/300", "Chart ", "Engine", f"Positions ({len(snap.positions)})", "Events"):
            assert title in text
        # the badges stay distinct: mode, state and PnL keep their own colours in the palette
        assert styled_as(out, " PAPER ") != styled_as(out, " TRADEABLE ")


async def test_a_burst_of_snapshots_is_applied_once(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        before = app.snapshots_applied
        other = FakeEngineClient(seed=8, candidates=300, positions=6)  # not subscribed by the app
        burst = [other.step() for _ in range(3)]
        for snap in burst:
            app.post_message(SnapshotArrived(snap))
        await eventually(lambda: app.snapshot == burst[-1])
        await pilot.pause()
        assert app.snapshots_applied - before == 1  # three queued snapshots, one repaint
        assert SnapshotArrived(burst[-1]).can_replace(SnapshotArrived(burst[0]))
        assert not SnapshotArrived(burst[-1]).can_replace(ChartData("X", "1m", [], []))


async def test_engine_text_with_brackets_is_shown_verbatim(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        snap = await publish(app, fake)
        odd = EventRow(snap.events[-1].seq + 1, snap.ts_ms, "risk_event", None, None, "[red]L5[/] limit [hc-1]")
        app.post_message(SnapshotArrived(replace(snap, seq=snap.seq + 1, events=(*snap.events, odd))))
        await pilot.press("e")
        await eventually(lambda: app.main.events.last_seq == odd.seq)
        assert str(app.main.events.get_cell(str(odd.seq), "what")) == "[red]L5[/] limit [hc-1]"


async def test_a_failed_close_all_is_reported_and_can_be_retried(fake: FakeEngineClient) -> None:
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await publish(app, fake)
        fake.fail_next("send", ConnectionError("engine unreachable"))
        await pilot.press("ctrl+x", "Y")
        await eventually(lambda: "engine unreachable" in notes(app))
        await eventually(lambda: isinstance(app.screen, MainScreen))
        await pilot.press("ctrl+x", "Y")
        await eventually(lambda: (Command.CLOSE_ALL, app.origin) in fake.commands)
        assert isinstance(app.screen, CloseAllProgressDialog)


@pytest.mark.parametrize(("mode", "label"), [
    (Mode.LIVE, "LIVE · REAL ORDERS"), (Mode.PAPER, "PAPER"), (Mode.SIM, "SIM"),
], ids=["live", "paper", "sim"])  # fmt: skip
async def test_mode_is_the_first_thing_on_screen(mode: Mode, label: str) -> None:
    fake = FakeEngineClient(seed=7, candidates=30, positions=1, mode=mode)
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=SMALL):
        await publish(app, fake)
        assert banner(app).startswith(f" {label} ")
    await fake.stop()


async def test_snapshots_faster_than_refresh_hz_are_coalesced(
    fake: FakeEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed's clock stands still from the last repaint on, so "within 1/refresh_hz of
    it" holds however slowly a loaded CI box runs the loop; the release timer is captured
    and fired by the test (a real 1 s timer fired on its own when the loop was that slow)."""
    app = HotcoinApp(fake, TuiSection(refresh_hz=1))
    async with app.run_test(size=SMALL):
        await publish(app, fake)
        before = app.snapshots_applied
        shown = app.snapshot
        monkeypatch.setattr(engine_feed, "time", SimpleNamespace(monotonic=lambda: app._last_apply))
        timers: list[tuple[float, Callable[[], None]]] = []
        monkeypatch.setattr(app, "set_timer", lambda delay, callback: timers.append((delay, callback)))
        for _ in range(3):
            last = fake.step()
            await eventually(lambda: app._waiting is not None and app._waiting.seq == last.seq)  # noqa: B023
        assert app.snapshot is shown  # within 1 s of the last repaint: held back
        [(delay, release)] = timers  # one release for the three, 1/refresh_hz after the last repaint
        assert delay == 1.0
        release()
        assert app.snapshot == last and app.snapshots_applied == before + 1


class SilentEngine(EngineClient):
    """An engine that has not published yet (or cannot be reached): the console must start
    anyway, say so, and still offer close-all."""

    def __init__(self) -> None:
        self.sent: list[Command] = []
        self._never = asyncio.Event()

    def latest(self) -> EngineSnapshot | None:
        return None

    async def updates(self) -> AsyncIterator[EngineSnapshot]:
        await self._never.wait()
        yield  # type: ignore[misc]  # never reached: makes this an async generator

    async def send(self, command: Command, origin: str) -> CommandResult:
        self.sent.append(command)
        return CommandResult(True, "ok")

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        raise AssertionError("no symbol is selected before the first snapshot")

    async def fills(self, symbol: str) -> list[Fill]:
        raise AssertionError("no symbol is selected before the first snapshot")

    async def trace(self, trace_id: str) -> list[JournalEvent]:
        raise TraceNotFoundError(trace_id)


async def test_starts_without_engine_data_and_close_all_still_works() -> None:
    engine = SilentEngine()
    app = HotcoinApp(engine, FAST)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert "NO DATA" in banner(app)
        await pilot.press("ctrl+x")
        assert isinstance(app.screen, ConfirmCloseAll)
        assert "No data from the engine yet" in " ".join(plain(w) for w in app.screen.query(Static))
        await pilot.press("Y")
        await eventually(lambda: engine.sent == [Command.CLOSE_ALL])
        await pilot.press("escape", "q")
        await eventually(lambda: not app.is_running)
    assert engine.sent == [Command.CLOSE_ALL, Command.SHUTDOWN]
