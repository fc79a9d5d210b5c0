"""The console attached (`hotcoin tui --attach`) across a real engine socket, through the engine
going away and coming back on the same path: it says so once, stops asking for charts, attaches
again to the restarted engine, and on quit says what it knows about the engine.

The engines are scripted fakes served with `serve_engine_socket`, stepped by hand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Label, Static

from engine.config.sections.tui import TuiSection
from engine.runtime.client import Command, CommandResult
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.remote_client import RemoteEngineClient
from engine.runtime.socket_server import AnswerLost, serve_engine_socket
from hotcoin_tui.app import HotcoinApp
from hotcoin_tui.dialogs.close_all import CloseAllProgressDialog, ConfirmCloseAll
from hotcoin_tui.widgets.shown import shown
from tests.kit.waiting import eventually

SMALL = (80, 24)
WIDE = (160, 48)  # the chart on screen, so its timer loads candles
# Chart timer and retries faster than in use: an outage of a second is many ticks.
QUICK = TuiSection(refresh_hz=30, chart_refresh_s=0.2)
RETRY_S = 0.05


def notes(app: HotcoinApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def banner(app: HotcoinApp) -> str:
    return str(app.main.banner.render())


async def quit_message(app: HotcoinApp) -> str:
    """What the console prints as it leaves (read before it is printed and dropped)."""
    await eventually(lambda: bool(app._exit_renderables))
    return " ".join(str(r) for r in app._exit_renderables)


@contextlib.asynccontextmanager
async def engine(sock: Path, seed: int) -> AsyncIterator[FakeEngineClient]:
    """A fake engine serving `sock` for the block; leaving the block is the engine stopping."""
    fake = FakeEngineClient(seed=seed, candidates=50, positions=3)
    try:
        async with serve_engine_socket(sock, fake):
            yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[RemoteEngineClient]:
    client = RemoteEngineClient(tmp_path / "engine.sock", max_hz=QUICK.refresh_hz)
    yield client
    await client.close()


def attached_app(remote: RemoteEngineClient) -> HotcoinApp:
    app = HotcoinApp(remote, QUICK, attached=True, reconnect=remote.reconnect)
    app.resubscribe_s = RETRY_S
    return app


async def test_an_engine_restarted_on_the_same_socket_is_attached_again(remote: RemoteEngineClient) -> None:
    async with contextlib.AsyncExitStack() as first_engine:
        await first_engine.enter_async_context(engine(remote.path, seed=7))
        await remote.connect()
        app = attached_app(remote)
        async with app.run_test(size=WIDE) as pilot:
            await eventually(lambda: app.snapshot is not None and app.main.chart.draws > 0)
            await first_engine.aclose()  # the engine stops (SIGTERM): its socket closes
            await eventually(lambda: "FEED ERROR" in banner(app))
            await pilot.pause(1.0)  # many retries and chart ticks with nothing serving
            assert "FEED ERROR" in banner(app)  # the old engine's last snapshot is not taken for a live one
            lost = [n for n in notes(app) if n.startswith("Engine feed lost")]
            assert len(lost) == 1 and "Reattaching every 0.05s" in lost[0]
            # a load in flight as the engine went may fail, once; no loads while the feed is down
            assert len([n for n in notes(app) if n.startswith("chart")]) <= 1
            async with engine(remote.path, seed=8) as second:
                restarted = second.latest()
                await eventually(lambda: app.snapshot == restarted and "FEED ERROR" not in banner(app))
                stepped = second.step()
                await eventually(lambda: app.snapshot == stepped)
                assert len([n for n in notes(app) if n.startswith("Engine feed lost")]) == 1
                await pilot.press("q")
                assert "detached; the engine keeps running" in await quit_message(app)
    assert app.return_code == 0


async def test_quitting_after_the_engine_died_does_not_say_it_keeps_running(remote: RemoteEngineClient) -> None:
    async with contextlib.AsyncExitStack() as the_engine:
        await the_engine.enter_async_context(engine(remote.path, seed=7))
        await remote.connect()
        app = attached_app(remote)
        async with app.run_test(size=SMALL) as pilot:
            await eventually(lambda: app.snapshot is not None)
            await the_engine.aclose()
            await eventually(lambda: "FEED ERROR" in banner(app))
            await pilot.press("q")
            message = await quit_message(app)
            assert "the engine was not answering" in message and "keeps running" not in message


async def test_an_engine_that_stopped_after_its_journal_failed_is_said_so_not_as_a_feed_error(remote: RemoteEngineClient) -> None:
    """Exits-only after a journal failure ends with nothing open and the engine stops, as
    planned: the console said `FEED ERROR: AttachError: no engine is serving`, which reads as a
    crash. The last snapshot (blocked for the journal, nothing open) says what happened."""
    async with contextlib.AsyncExitStack() as the_engine:
        fake = FakeEngineClient(seed=7, candidates=5, positions=0)
        await the_engine.enter_async_context(serve_engine_socket(remote.path, fake))
        the_engine.push_async_callback(fake.stop)
        fake.force_state("blocked", ("journal: journal write failed: disk is full",))
        fake.step()
        await remote.connect()
        app = attached_app(remote)
        async with app.run_test(size=SMALL) as pilot:
            await eventually(lambda: app.snapshot is not None and app.snapshot.status.state == "blocked")
            await the_engine.aclose()
            await eventually(lambda: "exits-only done after a journal failure" in banner(app))
            await pilot.pause(0.3)  # the retries' "no engine is serving" does not replace it
            assert "exits-only done after a journal failure" in banner(app) and "AttachError" not in banner(app)
            (lost,) = [n for n in notes(app) if n.startswith("Engine feed lost")]
            assert "exits-only done after a journal failure" in lost


def dialog_text(dialog: ConfirmCloseAll) -> str:
    return " ".join(" ".join(str(w.render()).split()) for w in dialog.query(Static) if shown(w))


async def test_close_all_while_no_engine_answers_offers_no_confirm_until_one_does(remote: RemoteEngineClient) -> None:
    """Attached, with the engine gone from the socket, ctrl+x still said "Press Y to close all"
    and Y failed with a toast (AttachError: not attached). The dialog now says no engine answers,
    that the positions stay open, that the console reattaches, and Y does nothing; once an
    engine answers again the same dialog offers Y, and Y reaches that engine."""
    async with contextlib.AsyncExitStack() as first_engine:
        await first_engine.enter_async_context(engine(remote.path, seed=7))
        await remote.connect()
        app = attached_app(remote)
        async with app.run_test(size=SMALL) as pilot:
            await eventually(lambda: app.snapshot is not None and len(app.snapshot.positions) == 3)
            await pilot.press("ctrl+x")
            dialog = app.screen
            assert isinstance(dialog, ConfirmCloseAll) and "Press Y to close all" in dialog_text(dialog)
            await first_engine.aclose()
            await eventually(lambda: "not answering" in dialog_text(dialog))
            said = dialog_text(dialog)
            assert "The engine is not answering (the engine stopped publishing)" in said and "nothing can be closed from here" in said
            assert "Its last snapshot showed 3 position(s) open:" in said and "They stay open" in said
            assert f"Reattaching every {RETRY_S:g}s" in said and "hotcoin run" in said
            assert "Press Y" not in said and "Esc or n closes this." in said
            assert str(dialog.query_one("#dialog-title", Label).render()) == "CLOSE-ALL: NO ENGINE ANSWERING"
            await pilot.press("Y")
            assert app.screen is dialog
            assert not [n for n in notes(app) if "close_all" in n]
            async with engine(remote.path, seed=8) as second:
                await eventually(lambda: "Press Y to close all" in dialog_text(dialog))
                await pilot.press("Y")
                await eventually(lambda: any(c is Command.CLOSE_ALL for c, _ in second.commands))


class SlowEngine(FakeEngineClient):
    """Carries out a command only once `answer` is set: exits against a slow exchange."""

    def __init__(self) -> None:
        super().__init__(seed=7, candidates=50, positions=3)
        self.answer = asyncio.Event()

    async def send(self, command: Command, origin: str) -> CommandResult:
        await self.answer.wait()
        return await super().send(command, origin)


async def test_a_slow_command_is_shown_as_still_running_never_as_failed(tmp_path: Path) -> None:
    """Audit: a close-all that took the engine longer than the client's 30 s request timeout
    (cancels and exits each up to 10 s on a slow exchange) was shown as failed, its progress
    view dropped and the pause state forgotten, while the engine carried it out. Now the view
    stays, says the engine is still executing it, and the answer still lands; a late pause
    keeps the state asked for and says it is still running."""
    slow = SlowEngine()
    remote = RemoteEngineClient(tmp_path / "engine.sock", request_timeout_s=0.5, max_hz=QUICK.refresh_hz)
    try:
        async with serve_engine_socket(remote.path, slow):
            await remote.connect()
            app = attached_app(remote)
            app.command_late_s = 0.2
            async with app.run_test(size=SMALL) as pilot:
                await eventually(lambda: app.snapshot is not None and len(app.snapshot.positions) == 3)
                await pilot.press("p")
                # "after 0 s" on time; a loaded box's first wake-up may come a second late: it counts what it waited
                late = re.compile(r"pause: no answer yet after \d+ s; the engine is still executing it")
                await eventually(lambda: any(late.fullmatch(n) for n in notes(app)))
                await pilot.pause(0.8)  # past the request timeout
                assert app.paused_now  # what p asked for, until the engine shows it
                await pilot.press("ctrl+x", "Y")  # (close-all pauses by itself: the snapshots say when)
                dialog = app.screen
                assert isinstance(dialog, CloseAllProgressDialog)
                unanswered = dialog.query_one("#close-unanswered", Static)
                await eventually(lambda: shown(unanswered) and "the engine is still executing it" in str(unanswered.render()))
                counted = re.compile(r"No answer yet after [1-9]\d* s")  # it counts on (past 0, whenever the box wakes it)
                await eventually(lambda: counted.search(str(unanswered.render())) is not None)
                assert app.screen is dialog  # past the request timeout too
                assert [n for n in notes(app) if n.startswith("command ")] == []  # "command close_all failed: ..."
                slow.answer.set()
                await eventually(lambda: any(n.startswith("close_all: ") for n in notes(app)))
                await eventually(lambda: not shown(unanswered))
                assert app.screen is dialog and [n for n in notes(app) if n.startswith("command ")] == []
                assert [c for c, _ in slow.commands] == [Command.PAUSE, Command.CLOSE_ALL]
    finally:
        await remote.close()
        await slow.stop()


async def test_each_console_names_itself_in_the_commands_it_sends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit: every console sent origin "tui", so two SSH sessions' commands could not be told
    apart in the journal or in notifications. An attached console's command reaches the engine
    as `tui@{host}:{pid}` with the SSH client's address."""
    monkeypatch.setenv("SSH_CONNECTION", "203.0.113.7 52114 10.0.0.2 22")
    async with engine(tmp_path / "engine.sock", seed=7) as fake:
        remote = RemoteEngineClient(tmp_path / "engine.sock", max_hz=QUICK.refresh_hz)
        await remote.connect()
        try:
            app = attached_app(remote)
            async with app.run_test(size=SMALL) as pilot:
                await eventually(lambda: app.snapshot is not None)
                await pilot.press("p")
                await eventually(lambda: bool(fake.commands))
        finally:
            await remote.close()
    origin = f"tui@{socket.gethostname()}:{os.getpid()} (ssh from 203.0.113.7)"
    assert fake.commands == [(Command.PAUSE, origin)]
    assert [e.payload for e in fake.journal if e.kind == "command"] == [{"command": "pause", "origin": origin}]


class DyingEngine(FakeEngineClient):
    """Takes a close-all, then goes before it answers (killed mid close-all)."""

    async def send(self, command: Command, origin: str) -> CommandResult:
        raise AnswerLost("lost the engine at engine.sock: the engine closed the connection")


async def test_a_command_the_engine_went_without_answering_is_not_called_failed() -> None:
    """The engine finishes a command it took, so a close-all whose engine went before its
    answer may well have flattened the book: the console says it has no answer and may have
    been carried out, never that it failed (which invited a second close-all)."""
    app = HotcoinApp(DyingEngine(seed=7, candidates=50, positions=3), QUICK)
    async with app.run_test(size=SMALL) as pilot:
        await eventually(lambda: app.snapshot is not None and len(app.snapshot.positions) == 3)
        await pilot.press("ctrl+x", "Y")
        await eventually(lambda: any(n.startswith("command close_all") for n in notes(app)))
    [note] = [n for n in notes(app) if n.startswith("command close_all")]
    assert note.startswith("command close_all has no answer: lost the engine")
    assert "may have been carried out" in note and "failed" not in note
