"""The console in small terminals, where one panel shows at a time (80x24, 60x20), and in the
grid for comparison: after any dialog closes, the keys still reach the console and the panel
on screen (never a hidden widget)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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
