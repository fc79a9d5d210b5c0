"""The console in small terminals, where one panel shows at a time (80x24, 60x20), and in the
grid for comparison: after any dialog closes, the keys still reach the console and the panel
on screen (never a hidden widget), and a dialog's key lines stay on screen however long its
list is."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from rich.console import Console

from engine.config.sections.tui import TuiSection
from engine.runtime.client import Command
from engine.runtime.fake_client import FakeEngineClient
from hotcoin_tui.app import HotcoinApp
from hotcoin_tui.dialogs.close_all import ConfirmCloseAll
from hotcoin_tui.dialogs.help import HelpDialog
from hotcoin_tui.dialogs.quit import QuitWithPositions
from hotcoin_tui.widgets.shown import shown
from tests.kit.waiting import eventually

FAST = TuiSection(refresh_hz=30)
PANELS = (("c", "candidates"), ("o", "positions"), ("k", "chart"), ("e", "events"), ("t", "state"))
# Each dialog the main screen opens, with the keys that open and close it. The key that opens
# each is also the check that the keys work after the one before it closed.
DIALOGS = (
    ("question_mark", HelpDialog, "escape"),
    ("q", QuitWithPositions, "n"),
    ("ctrl+x", ConfirmCloseAll, "n"),
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngineClient]:
    client = FakeEngineClient(seed=7, candidates=60, positions=6)
    yield client
    await client.stop()


def on_screen(app: HotcoinApp) -> str:
    """The screen as a user reads it (the open dialog over the main screen), as plain text."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True, color_system=None)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


# 60x20 takes the same one-panel layout as 80x24 (both are narrow and short): one of them.
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["one-panel-80x24", "grid-160x48"])
async def test_keys_reach_the_console_after_every_dialog_on_every_panel(fake: FakeEngineClient, size: tuple[int, int]) -> None:
    """Audit: at 80x24 with the Chart or Engine panel showing, closing any dialog left the focus
    on the candidates' hidden filter box; every later key (q, p, ?, the panel keys) was typed
    into it unseen and filtered the candidate list, and Esc or Tab did not get out. After each
    dialog on each panel: the focus is on the panel showing, and q, p, ? and the panel keys
    work with the filter left empty."""
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=size) as pilot:
        snap = fake.step()
        await eventually(lambda: app.snapshot is not None and app.snapshot.seq == snap.seq)
        main, pool = app.main, app.main.pool
        assert main.compact is (size != (160, 48))
        for key, panel in PANELS:
            await pilot.press(key)
            assert main.active == panel
            for open_key, dialog, close_key in DIALOGS:
                await pilot.press(open_key)
                assert isinstance(app.screen, dialog), (panel, open_key)
                await pilot.press(close_key)
                assert app.screen is main and main.active == panel, (panel, open_key, close_key)
                focused = app.focused
                where = (panel, open_key, close_key, focused)
                assert focused is not None and shown(focused), where
                assert main.query_one(f"#{panel}") in focused.ancestors_with_self, where
                sent = len(fake.commands)
                await pilot.press("p")
                await eventually(lambda: len(fake.commands) == sent + 1)  # noqa: B023
                assert fake.commands[-1][0] in (Command.PAUSE, Command.RESUME)
                assert pool.query_text == "" and pool.filter_input.value == "", where
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpDialog)
        await pilot.press("escape")
        assert pool.query_text == "" and not pool.filter_input.display


async def test_the_filter_box_takes_focus_only_while_it_shows(fake: FakeEngineClient) -> None:
    """Hidden (its own display off, or its panel not the one showing), the filter box must not
    take the focus: Textual would otherwise hand it the keys, unseen."""
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        box = app.main.pool.filter_input
        assert not box.display and not box.allow_focus()
        await pilot.press("slash", "a", "enter")  # a filter stays open, the keys back on the table
        assert box.display and box.allow_focus() and app.focused is app.main.pool.table
        await pilot.press("k")  # the candidates panel, filter box and all, is hidden
        assert not box.allow_focus()
        await pilot.press("question_mark", "escape", "c")
        assert app.main.active == "candidates" and box.value == "a"


CLOSE_ALL_KEYS = ("Press Y to close all. Esc or n cancels.", "New entries stay paused until you press p (resume).")
QUIT_KEYS = ("y: quit anyway Esc or n: stay",)  # the line wraps at 60 columns: its start


@pytest.mark.parametrize(("open_key", "dialog", "key_lines", "size", "positions"), [
    ("ctrl+x", ConfirmCloseAll, CLOSE_ALL_KEYS, (60, 20), 20),
    ("ctrl+x", ConfirmCloseAll, CLOSE_ALL_KEYS, (80, 24), 20),
    ("ctrl+x", ConfirmCloseAll, CLOSE_ALL_KEYS, (80, 24), 2),
    ("ctrl+x", ConfirmCloseAll, CLOSE_ALL_KEYS, (60, 20), 0),
    ("q", QuitWithPositions, QUIT_KEYS, (60, 20), 20),
    ("q", QuitWithPositions, QUIT_KEYS, (80, 24), 2),
], ids=["close-all-60x20-20", "close-all-80x24-20", "close-all-80x24-2", "close-all-60x20-none", "quit-60x20-20", "quit-80x24-2"])  # fmt: skip
async def test_dialog_key_lines_stay_on_screen_and_the_list_scrolls(
    open_key: str, dialog: type[ConfirmCloseAll | QuitWithPositions], key_lines: tuple[str, ...], size: tuple[int, int], positions: int
) -> None:
    """Audit: at 60x20 with 20 positions, the close-all list filled the dialog and pushed "Press
    Y to close all" below its edge. The list gets the height left over and scrolls; a short one
    is no taller than its lines, and with none the dialog keeps its lines."""
    fake = FakeEngineClient(seed=7, candidates=60, positions=positions)
    app = HotcoinApp(fake, FAST)
    async with app.run_test(size=size) as pilot:
        snap = fake.step()
        await eventually(lambda: app.snapshot is not None and app.snapshot.seq == snap.seq)
        await pilot.press(open_key)
        assert isinstance(app.screen, dialog)
        await pilot.pause()
        text = " ".join(on_screen(app).split())
        for line in key_lines:
            assert line in text
        rows = app.screen.query_one("#dialog-list")
        if positions <= 2:
            assert rows.region.height == (1 + positions if positions else 0) and rows.max_scroll_y == 0
        else:
            assert rows.region.height >= 5 and rows.max_scroll_y > 0
            rows.scroll_end(animate=False)
            await pilot.pause()
            assert snap.positions[-1].symbol.removesuffix("/USDT") in on_screen(app)
        await pilot.press("escape")
    await fake.stop()
