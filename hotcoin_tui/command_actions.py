"""What the console asks of the engine: commands sent in workers and their answers shown, and
the key actions that send them (pause/resume, close-all, quit) or open help.

A command already sent is never cancelled by the next one; a refused or failed command drops
whatever the console expected of it (a pause state, a close-all progress view). A command is
waited for as long as it takes: the engine carries out one it took to its end (a close-all
against a slow exchange can take minutes), so only a lost engine fails it, and one that is
late is said to be still running (`CommandPending`), its pause state or progress view kept."""

from __future__ import annotations

import asyncio
import contextlib
import time

from textual import work

from engine.runtime.client import Command
from engine.runtime.socket_server import AnswerLost
from hotcoin_tui import keymap
from hotcoin_tui.console_base import ConsoleBase
from hotcoin_tui.dialogs.close_all import CloseAllProgressDialog, ConfirmCloseAll
from hotcoin_tui.dialogs.help import HelpDialog
from hotcoin_tui.dialogs.quit import QuitWithPositions
from hotcoin_tui.messages import ClientFailed, CommandDone, CommandPending

SHUTDOWN_TIMEOUT_S = 10.0
COMMAND_LATE_S = 5.0  # a command unanswered this long is said to be still running, each second


class CommandActions(ConsoleBase):
    command_late_s: float = COMMAND_LATE_S

    @work(group="commands", exit_on_error=False)
    async def send_command(self, command: Command) -> None:
        """Not exclusive: a command already sent must never be cancelled by the next one."""
        started = time.monotonic()
        sent = asyncio.ensure_future(self.client.send(command, self.origin))
        try:
            late = False  # once late, said again each second
            while not (await asyncio.wait({sent}, timeout=1.0 if late else self.command_late_s))[0]:
                self.post_message(CommandPending(command, time.monotonic() - started, first=not late))
                late = True
            result = sent.result()
        except AnswerLost as exc:
            # Sent, then the engine went: it may have taken the command (a close-all flattens the
            # book without us), so "failed" would invite a second one on a flat book.
            error = f"{exc}. It may have been carried out: check the engine's state and positions once attached again"
            self.post_message(ClientFailed(f"command {command.value}", error, command, outcome_unknown=True))
            return
        except Exception as exc:
            self.post_message(ClientFailed(f"command {command.value}", f"{type(exc).__name__}: {exc}", command))
            return
        finally:
            sent.cancel()  # only when the console itself goes: answered, this does nothing
        self.post_message(CommandDone(command, result))

    def on_command_pending(self, message: CommandPending) -> None:
        """The close-all progress view says how long the engine has been at it; any other late
        command (or a close-all whose view was hidden) gets one toast."""
        if message.command is Command.CLOSE_ALL and isinstance(self.screen, CloseAllProgressDialog):
            self.screen.unanswered(message.waited_s)
        elif message.first:
            self.notify(
                f"{message.command.value}: no answer yet after {message.waited_s:.0f} s; the engine is still executing it",
                severity="warning",
                timeout=10,
            )

    def on_command_done(self, message: CommandDone) -> None:
        result = message.result
        if message.command is Command.CLOSE_ALL and isinstance(self.screen, CloseAllProgressDialog):
            self.screen.unanswered(None)
        text = f"{message.command.value}: {result.message}"
        self.notify(text, severity="information" if result.accepted else "error", timeout=5 if result.accepted else 15)
        if not result.accepted:
            self._command_failed(message.command)

    def on_client_failed(self, message: ClientFailed) -> None:
        verdict = "has no answer" if message.outcome_unknown else "failed"
        self.notify(f"{message.operation} {verdict}: {message.error}", severity="error", timeout=15)
        self._command_failed(message.command)

    def _command_failed(self, command: Command | None) -> None:
        if command is Command.PAUSE or command is Command.RESUME:
            self._want_paused(None)  # the engine stays as its snapshots say
        self._close_all_failed(command)

    def _close_all_failed(self, command: Command | None) -> None:
        """A close-all the engine did not take: drop the progress view so ctrl+x can retry."""
        if command is Command.CLOSE_ALL and isinstance(self.screen, CloseAllProgressDialog):
            self.screen.dismiss(None)

    def action_pause(self) -> None:
        """Enabled while not paused (`check_action`); until the engine shows the pause, the
        next press of the key resumes."""
        self._want_paused(True)
        self.send_command(Command.PAUSE)

    def action_resume(self) -> None:
        self._want_paused(False)
        self.send_command(Command.RESUME)

    def action_close_all(self) -> None:
        if isinstance(self.screen, ConfirmCloseAll | CloseAllProgressDialog):
            return
        if isinstance(self.screen, QuitWithPositions):
            # Its list would go stale under close-all; q asks again with what is left.
            self.screen.dismiss(False)
        confirm = keymap.effective_keys(keymap.CONFIRM_CLOSE_ALL[0], self.keymap_overrides)
        resume = keymap.effective_keys(keymap.PAUSE, self.keymap_overrides)

        def resumed(yes: bool | None) -> None:
            if yes:
                self.action_resume()

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._want_paused(None)  # close-all pauses entries itself: the snapshots say when
                self.send_command(Command.CLOSE_ALL)
                held = len(self.snapshot.positions) if self.snapshot else 0
                self.push_screen(CloseAllProgressDialog(held, resume), resumed)

        positions, age, stale, gone = self.close_all_view()
        self.push_screen(ConfirmCloseAll(positions, age, stale, confirm, resume, gone), confirmed)

    def action_help(self) -> None:
        self.push_screen(HelpDialog(self.keymap_overrides))

    async def action_quit(self) -> None:
        positions = self.snapshot.positions if self.snapshot else ()
        if not positions or self.attached or self.engine_exit is not None:
            self.shutdown_and_exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.shutdown_and_exit()

        self.push_screen(QuitWithPositions(positions), answered)

    @work(exclusive=True, group="shutdown", exit_on_error=False)
    async def shutdown_and_exit(self) -> None:
        """Ask the engine to stop cleanly (journal flushed), then leave; say so if it did not."""
        self._stopping = True
        if self.engine_exit is not None:  # nothing to shut down; an engine that died is an error
            self.exit(return_code=0 if self._engine_code == 0 else 1, message=f"hotcoin: the engine had already stopped: {self.engine_exit}")
            return
        if self.attached:
            if self.feed_error is None:
                self.exit(message="hotcoin: detached; the engine keeps running (hotcoin tui --attach to return)")
            else:  # it may have stopped: say what is known, not that it runs
                self.exit(message=f"hotcoin: detached; the engine was not answering ({self.feed_error})")
            return
        try:
            result = await asyncio.wait_for(self.client.send(Command.SHUTDOWN, self.origin), SHUTDOWN_TIMEOUT_S)
        except Exception as exc:
            await self._exit_unconfirmed(f"{type(exc).__name__}: {exc}")
            return
        if result.accepted:
            self.exit(message=self._left_open())
        else:
            self.exit(return_code=1, message=f"hotcoin: shutdown refused: {result.message}")

    async def _exit_unconfirmed(self, error: str) -> None:
        """Leave after SHUTDOWN got no answer (`error`). An engine stopping as asked closes its
        socket, and the answer can be lost on the way (a broken pipe): the own engine child's
        exit says whether it stopped cleanly (code 0: journal flushed, `run_stop` written)."""
        code = None
        if self.engine_process is not None:
            with contextlib.suppress(TimeoutError):
                code = await asyncio.wait_for(self.engine_process.wait(), SHUTDOWN_TIMEOUT_S)
        if code == 0:
            self.exit(message=self._left_open())
            return
        from hotcoin_tui.child_engine import exit_text

        how = "" if code is None else f"; it exited ({exit_text(code)})"
        self.exit(return_code=1, message=f"hotcoin: the engine did not confirm shutdown ({error}){how}")

    def _left_open(self) -> str | None:
        """What to print on leaving after a clean shutdown: the positions left open, if any (the
        engine's own summary goes to its log, which the operator does not see)."""
        held = [p.symbol for p in self.snapshot.positions] if self.snapshot else []
        if not held:
            return None
        return (
            f"hotcoin: engine stopped with {len(held)} position(s) left open ({', '.join(held)}): they stay held, "
            "with no stops or take-profits watched, until the next start recovers them from the journal"
        )
