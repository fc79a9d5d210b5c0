"""The console's own engine child dying under it (`hotcoin tui` without --attach): the
console watches the process, says how it ended and where its log is, stops retrying the feed,
and `q` leaves at once saying the engine had already stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.config.sections.tui import TuiSection
from engine.runtime.client import Command
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.snapshot import EngineSnapshot
from hotcoin_tui.app import HotcoinApp
from hotcoin_tui.dialogs.quit import QuitWithPositions
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
    assert (Command.SHUTDOWN, "tui") not in engine.commands
    await engine.stop()


async def test_the_engine_exiting_because_q_asked_it_to_is_no_news() -> None:
    engine, process = CountingEngine(), FakeProcess()
    app = HotcoinApp(engine, TuiSection(refresh_hz=30), engine_process=process)
    async with app.run_test(size=SMALL) as pilot:
        snap = engine.step()
        await eventually(lambda: app.snapshot == snap)
        await pilot.press("q", "y")
        await eventually(lambda: (Command.SHUTDOWN, "tui") in engine.commands)
        process.exit(0)
        await eventually(lambda: not app.is_running)
    assert app.return_code == 0 and not app._exit_renderables
    await engine.stop()
