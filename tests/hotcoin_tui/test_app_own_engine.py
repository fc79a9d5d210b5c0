"""The console's own engine child dying under it (`hotcoin tui` without --attach): the
console watches the process, says how it ended and where its log is, stops retrying the feed,
and `q` leaves at once saying the engine had already stopped. And the engine stopping as `q`
asked but hanging up before its answer: the process's exit, not the lost answer, says how."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Label, Static

from engine.config.sections.tui import TuiSection
from engine.runtime.client import Command, CommandResult
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.snapshot import EngineSnapshot
from engine.runtime.socket_server import EngineSocketServer, serve_engine_socket
from hotcoin_tui.app import HotcoinApp
from hotcoin_tui.dialogs.close_all import ConfirmCloseAll
from hotcoin_tui.dialogs.quit import QuitWithPositions
from hotcoin_tui.widgets.shown import shown
from tests.kit.waiting import eventually

SMALL = (80, 24)
LOG = Path("/data/hotcoin/journal.log")


class CountingEngine(FakeEngineClient):
    """The fake engine, counting the console's subscriptions to its snapshots."""

    def __init__(self) -> None:
        super().__init__(seed=7, candidates=50, positions=3)
        self.subscriptions = 0

    def updates(self) -> AsyncIterator[EngineSnapshot]:
        self.subscriptions += 1
        return super().updates()


class FakeProcess:
    """The engine's process: `exit(code)` ends it."""

    def __init__(self) -> None:
        self.log_path = LOG
        self._code: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def exit(self, code: int) -> None:
        self._code.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._code)


def banner(app: HotcoinApp) -> str:
    return str(app.main.banner.render())


def notes(app: HotcoinApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def dialog_text(dialog: ConfirmCloseAll) -> str:
    """What the dialog says, its shown lines only, in one line."""
    return " ".join(" ".join(str(w.render()).split()) for w in dialog.query(Static) if shown(w))


@pytest.mark.parametrize(("code", "said", "exit_code"), [
    (-9, "killed by SIGKILL", 1),
    (1, "code 1", 1),
    (0, "code 0", 0),
], ids=["killed", "failed", "stopped-cleanly"])  # fmt: skip
async def test_a_dead_engine_child_is_reported_not_retried_and_q_leaves(code: int, said: str, exit_code: int) -> None:
    """It said "Retrying every 2s" for ever, and `q` printed an AttachError and exited 1."""
    engine, process = CountingEngine(), FakeProcess()
    app = HotcoinApp(engine, TuiSection(refresh_hz=30), engine_process=process)
    app.resubscribe_s = 0.05
    async with app.run_test(size=SMALL) as pilot:
        snap = engine.step()
        await eventually(lambda: app.snapshot == snap and engine.subscriptions == 1)
        # The engine dies: its process ends and the feed breaks.
        engine.fail_next("updates", ConnectionError("connection reset by peer"))
        process.exit(code)
        engine.step()
        gone = f"engine exited ({said}); see {LOG}"
        await eventually(lambda: f"FEED ERROR: engine exited ({said})" in banner(app))
        subscribed = engine.subscriptions
        await pilot.pause(0.5)  # ten retry periods
        assert engine.subscriptions == subscribed, "a dead engine's feed is not retried"
        assert f"FEED ERROR: engine exited ({said})" in banner(app)
        assert len([n for n in notes(app) if gone in n]) == 1
        await pilot.press("q")  # positions were open: nothing to ask, nothing can be shut down
        assert not isinstance(app.screen, QuitWithPositions)
        await eventually(lambda: bool(app._exit_renderables))
        message = " ".join(str(r) for r in app._exit_renderables)
    assert message == f"hotcoin: the engine had already stopped: {gone}"
    assert app.return_code == exit_code
    assert (Command.SHUTDOWN, app.origin) not in engine.commands
    await engine.stop()


async def test_close_all_with_the_engine_gone_says_nothing_can_close_and_offers_no_confirm() -> None:
    """Audit: with the engine dead (banner "FEED ERROR: engine exited"), ctrl+x still said "Data
    is 10s old: the engine closes what it really holds." and "Press Y to close all", and Y
    failed with a toast "command close_all failed: AttachError". The dialog says the engine is
    not running, that the positions stay open until it is restarted, and Y does nothing:
    whether the dialog was open when the engine died or opened after."""
    engine, process = CountingEngine(), FakeProcess()
    app = HotcoinApp(engine, TuiSection(refresh_hz=30, stale_after_s=0.2), engine_process=process)
    async with app.run_test(size=SMALL) as pilot:
        snap = engine.step()
        await eventually(lambda: app.snapshot == snap)
        await pilot.press("ctrl+x")
        open_before = app.screen
        assert isinstance(open_before, ConfirmCloseAll) and "Press Y to close all" in dialog_text(open_before)
        engine.fail_next("updates", ConnectionError("connection reset by peer"))
        process.exit(1)
        engine.step()
        await eventually(lambda: "FEED ERROR: engine exited (code 1)" in banner(app))
        await pilot.pause(0.3)  # the data grows stale too: it must not say "Data is ...s old"
        for when in ("open when it died", "opened after"):
            dialog = app.screen
            assert isinstance(dialog, ConfirmCloseAll), when
            await eventually(lambda: "not running" in dialog_text(dialog))  # noqa: B023
            said = dialog_text(dialog)
            assert f"The engine is not running (engine exited (code 1); see {LOG}): nothing can be closed from here." in said, when
            assert "Its last snapshot showed 3 position(s) open:" in said, when
            assert "They stay open" in said and "Restart the engine" in said, when
            assert "Press Y" not in said and "old" not in said and "paused" not in said, when
            assert "Esc or n closes this." in said, when
            assert str(dialog.query_one("#dialog-title", Label).render()) == "CLOSE-ALL: ENGINE NOT RUNNING"
            await pilot.press("Y")
            assert app.screen is dialog, when
            await pilot.press("escape")
            assert not isinstance(app.screen, ConfirmCloseAll), when
            await pilot.press("ctrl+x")
        assert (Command.CLOSE_ALL, app.origin) not in engine.commands
        assert not [n for n in notes(app) if "close_all" in n]
    await engine.stop()


async def test_the_engine_exiting_because_q_asked_it_to_is_no_news() -> None:
    engine, process = CountingEngine(), FakeProcess()
    app = HotcoinApp(engine, TuiSection(refresh_hz=30), engine_process=process)
    async with app.run_test(size=SMALL) as pilot:
        snap = engine.step()
        await eventually(lambda: app.snapshot == snap)
        await pilot.press("q", "y")
        await eventually(lambda: (Command.SHUTDOWN, app.origin) in engine.commands)
        process.exit(0)
        await eventually(lambda: not app.is_running)
    assert app.return_code == 0 and not app._exit_renderables
    await engine.stop()


class HangsUpOnShutdown(FakeEngineClient):
    """An engine that, told to shut down, closes its readers' connections before its answer is
    on its way (the audit's intermittent broken pipe), then its process ends with `code`."""

    def __init__(self, process: FakeProcess, code: int) -> None:
        super().__init__(seed=7, candidates=50, positions=3)
        self.process, self.code = process, code
        self.server: EngineSocketServer | None = None

    async def send(self, command: Command, origin: str) -> CommandResult:
        result = await super().send(command, origin)
        if command is Command.SHUTDOWN and self.server is not None:
            for session in list(self.server._sessions):
                session.hang_up()
            self.process.exit(self.code)
        return result


@pytest.mark.parametrize(("code", "exit_code"), [(0, 0), (1, 1)], ids=["stopped-cleanly", "failed"])
async def test_a_shutdown_answer_lost_with_the_connection_is_judged_by_the_engine_exit(
    tmp_path: Path, code: int, exit_code: int
) -> None:
    """Audit: a clean quit (journal: `command shutdown`, then `run_stop`) was reported as
    `hotcoin: the engine did not confirm shutdown (AnswerLost: lost the engine ...)`, exit 1."""
    process = FakeProcess()
    engine = HangsUpOnShutdown(process, code)
    async with serve_engine_socket(tmp_path / "engine.sock", engine) as server:
        engine.server = server
        client = RemoteEngineClient(server.path)
        await client.connect()
        app = HotcoinApp(client, TuiSection(refresh_hz=30), engine_process=process)
        async with app.run_test(size=SMALL) as pilot:
            snap = engine.step()
            await eventually(lambda: app.snapshot is not None and app.snapshot.seq == snap.seq)
            await pilot.press("q", "y")
            await eventually(lambda: bool(app._exit_renderables))  # read before it is printed and dropped
            message = " ".join(str(r) for r in app._exit_renderables)
        await client.close()
    assert (Command.SHUTDOWN, app.origin) in engine.commands
    assert app.return_code == exit_code
    if code == 0:
        assert message.startswith("hotcoin: engine stopped with 3 position(s) left open (")
        assert "did not confirm" not in message
    else:
        assert message.startswith("hotcoin: the engine did not confirm shutdown (AnswerLost: lost the engine at ")
        assert message.endswith("; it exited (code 1)")
    await engine.stop()
