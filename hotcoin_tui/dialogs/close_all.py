"""Emergency close-all: a confirmation that lists what will close, then progress until flat.

Confirming needs a deliberate second action (a capital Y by default, remappable), so a
stray keypress after ctrl+x cannot liquidate the book; Esc or n backs out. It works on stale
data: the list comes from the latest snapshot, with a warning saying how old it is, and the
engine closes what it really holds.

Close-all also pauses new entries, and the pause outlives it (and an engine restart): both
dialogs say so, with the key that resumes them, and in the progress dialog that key resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, ProgressBar, Static

from engine.runtime.snapshot import CloseAllProgress, PositionRow
from hotcoin_tui import keymap
from hotcoin_tui.widgets import fmt
from hotcoin_tui.widgets.candidate_pool import display_symbol


def stays_paused(resume_key: str) -> Text:
    return Text(f"New entries stay paused until you press {resume_key} (resume).", style="bold")


def positions_table(positions: Sequence[PositionRow]) -> Table:
    table = Table(box=None, pad_edge=False, expand=True)
    for name in ("Symbol", "Size", "Mark", "uPnL"):
        table.add_column(name, justify="left" if name == "Symbol" else "right")
    for pos in positions:
        table.add_row(display_symbol(pos.symbol), fmt.quantity(pos.quantity), fmt.price(pos.mark), fmt.pnl(pos.unrealised_pnl))
    return table


class PositionsList(VerticalScroll):
    """The positions a dialog is about, scrolling. The dialog's other lines are docked above
    and below it (`.dialog-head`, `.dialog-foot` in hotcoin.tcss), so the list is as tall as
    its lines or as the room left between them, whichever is less, and the key lines stay on
    screen however many positions there are: flowing under the list, they were pushed below
    the dialog's edge (twenty positions at 60x20 hid "Press Y to close all").

    With no positions it stays in the layout, empty: Textual sizes an auto-height dialog by
    the lines that flow, and one of docked lines only collapses to its border."""

    def __init__(self, table_id: str) -> None:
        super().__init__(Static(id=table_id), id="dialog-list")

    def show(self, positions: Sequence[PositionRow]) -> None:
        table = self.query_one(Static)
        table.display = bool(positions)
        table.update(positions_table(positions))


@dataclass(frozen=True, slots=True)
class EngineGone:
    """Why no engine can take a close-all now. `reattaching_s` is None for the console's own
    engine, which has exited (only a restart brings it back), and the retry interval for an
    attached console, which attaches again by itself once an engine answers on the socket."""

    reason: str
    reattaching_s: float | None


class ConfirmCloseAll(ModalScreen[bool]):
    """Dismisses True only on the confirm key. The list follows every snapshot while the dialog
    is open (`show`): positions opened meanwhile are sold too, and the dialog must say so.

    With no engine to take the command (`gone`: the own engine ended, or an attached console's
    socket has no engine answering) the dialog said the stale data did not matter, offered the
    confirm key, and the close failed with an AttachError toast. It now says the engine is not
    running or not answering, that the positions stay open until it runs, and the confirm key
    does nothing; attached, it offers the key again once an engine answers."""

    BINDINGS = keymap.bindings(keymap.CONFIRM_CLOSE_ALL)

    def __init__(
        self,
        positions: Sequence[PositionRow],
        data_age_s: float | None,
        stale: bool,
        confirm_key: str,
        resume_key: str,
        gone: EngineGone | None = None,
    ) -> None:
        super().__init__()
        self.positions = tuple(positions)
        self.data_age_s = data_age_s
        self.stale = stale
        self.gone = gone
        self.confirm_key = confirm_key
        self.resume_key = resume_key
        self._composed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger"):
            with Vertical(classes="dialog-head"):
                yield Label(id="dialog-title")
                yield Static(id="close-what")
            yield PositionsList("close-table")
            with Vertical(classes="dialog-foot"):
                yield Static(id="close-age")
                yield Static(id="dialog-keys")
                yield Static(stays_paused(self.resume_key), id="close-resume")

    def on_mount(self) -> None:
        self._composed = True
        self._render_latest()

    def show(
        self, positions: Sequence[PositionRow], data_age_s: float | None, stale: bool, gone: EngineGone | None = None
    ) -> None:
        """The latest snapshot's positions, how old it is, and why no engine can close them if
        none can. A snapshot can arrive after the dialog is pushed but before its widgets
        exist: it is kept, and shown on mount."""
        self.positions, self.data_age_s, self.stale, self.gone = tuple(positions), data_age_s, stale, gone
        if self._composed:
            self._render_latest()

    def _render_latest(self) -> None:
        self.query_one(PositionsList).show(self.positions)
        if self.gone is None:
            self._render_close_all()
        else:
            self._render_engine_gone(self.gone)
        self.refresh_bindings()

    def _render_close_all(self) -> None:
        data_age_s, stale = self.data_age_s, self.stale
        self.query_one("#dialog-title", Label).update("EMERGENCY CLOSE-ALL")
        what = self.query_one("#close-what", Static)
        if self.positions:
            what.update(f"Cancels every open order and sells these {len(self.positions)} position(s) at market:")
        else:
            what.update("The latest snapshot shows no open positions; close-all still cancels every open order.")
        age = self.query_one("#close-age", Static)
        if data_age_s is None:
            age.update(Text("No data from the engine yet: it will close whatever it holds.", style="bold yellow"))
        elif stale:
            age.update(Text(f"Data is {data_age_s:.0f}s old: the engine closes what it really holds.", style="bold yellow"))
        age.display = data_age_s is None or stale
        keys = Text(f"Press {self.confirm_key} to close all. {keymap.live_keys(self, keymap.CLOSE_ALL_CANCEL)} cancels.", style="bold")
        self.query_one("#dialog-keys", Static).update(keys)
        self.query_one("#close-resume").display = True

    def _render_engine_gone(self, gone: EngineGone) -> None:
        attached = gone.reattaching_s is not None
        title = "CLOSE-ALL: NO ENGINE ANSWERING" if attached else "CLOSE-ALL: ENGINE NOT RUNNING"
        self.query_one("#dialog-title", Label).update(title)
        held = len(self.positions)
        after = (
            f" Its last snapshot showed {held} position(s) open:"
            if held
            else " Its last snapshot showed no open positions."
        )
        state = "answering" if attached else "running"
        what = f"The engine is not {state} ({gone.reason}): nothing can be closed from here.{after}"
        self.query_one("#close-what", Static).update(what)
        if attached:
            stay = "They stay open until an engine runs: on the exchange when live, and in the journal. " if held else ""
            what_now = (
                f"{stay}Reattaching every {gone.reattaching_s:g}s: close-all works again once an engine answers. "
                f"If it stopped, restart it (hotcoin run): it recovers {'them' if held else 'what it held'} from "
                "the journal on start."
            )
        elif held:
            what_now = (
                "They stay open: on the exchange when live, and in the journal. Restart the engine: it "
                "recovers them from the journal on start, and close-all works again."
            )
        else:
            what_now = "Restart the engine: close-all works again once it runs."
        warning = self.query_one("#close-age", Static)
        warning.update(Text(what_now, style="bold red"))
        warning.display = True
        self.query_one("#dialog-keys", Static).update(Text(f"{keymap.live_keys(self, keymap.CLOSE_ALL_CANCEL)} closes this.", style="bold"))
        self.query_one("#close-resume").display = False  # no close-all, no pause

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The confirm key does nothing while no engine answers: nothing would take the command."""
        return not (action == "confirm" and self.gone is not None)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class CloseAllProgressDialog(ModalScreen[bool]):
    """Shows the engine's close-all progress from each snapshot until flat; Esc hides it
    (the close carries on, and the banner keeps showing it). The pause key dismisses it True:
    resume new entries. While the engine has not answered the command after a while, it says
    so (`unanswered`): against a slow exchange a close-all takes minutes, and the engine
    carries it out to its end."""

    BINDINGS = keymap.bindings(keymap.CLOSE_ALL_PROGRESS)

    def __init__(self, total: int, resume_key: str) -> None:
        super().__init__()
        self.total = total
        self.resume_key = resume_key
        self._seen_progress = False
        self._composed = False
        self._latest: tuple[CloseAllProgress | None, int] | None = None
        self._waited_s: float | None = None  # how long the command has gone unanswered (None: answered, or not late)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger"):
            yield Label("CLOSING ALL POSITIONS", id="dialog-title")
            yield ProgressBar(total=max(1, self.total), show_eta=False, id="close-progress")
            yield Static(f"Sent close-all for {self.total} position(s)…", id="close-status")
            unanswered = Static(id="close-unanswered")
            unanswered.display = False  # until the command is late (`unanswered`)
            yield unanswered
            yield Static(f"{keymap.live_keys(self, keymap.DISMISS[0])} hides this; the close continues.", id="close-hint", classes="dim")
            yield Static(stays_paused(self.resume_key), id="close-resume")

    def on_mount(self) -> None:
        self._composed = True
        if self._latest is not None:
            self.show(*self._latest)
        self._show_unanswered()

    def show(self, progress: CloseAllProgress | None, remaining_positions: int) -> None:
        """The engine's progress from the latest snapshot; one that arrives before the widgets
        exist is kept and shown on mount."""
        self._latest = (progress, remaining_positions)
        if not self._composed:
            return
        status = self.query_one("#close-status", Static)
        bar = self.query_one("#close-progress", ProgressBar)
        if progress is None:
            # Before the engine's first progress report; afterwards the engine may clear a
            # finished close-all, and the dialog keeps showing how it ended.
            if not self._seen_progress:
                status.update(f"Waiting for the engine… {remaining_positions} position(s) still open.")
            return
        self._seen_progress = True
        # Nothing to close is done too: a full bar, not 0 of a placeholder 1.
        closed = progress.total - progress.remaining if progress.total else 1
        bar.update(total=max(1, progress.total), progress=closed)
        if progress.done:
            # Flat is the last word: an error from an earlier attempt no longer applies.
            closed_text = f"all {progress.total} position(s) closed" if progress.total else "nothing was open"
            status.update(Text(f"FLAT: {closed_text}.", style="bold green"))
            self.query_one("#dialog-title", Label).update("CLOSE-ALL DONE")
            self.query_one("#close-hint", Static).update(f"{keymap.live_keys(self, keymap.DISMISS[0])} closes this.")  # nothing continues now
        elif progress.errors:
            status.update(Text(f"{progress.remaining} left; error: {'; '.join(progress.errors)}", style="bold red"))
        else:
            status.update(f"{progress.remaining} of {progress.total} still open…")

    def unanswered(self, waited_s: float | None) -> None:
        """The close-all command has had no answer for `waited_s` (None: it has been answered)."""
        self._waited_s = waited_s
        if self._composed:
            self._show_unanswered()

    def _show_unanswered(self) -> None:
        line = self.query_one("#close-unanswered", Static)
        line.display = self._waited_s is not None
        if self._waited_s is not None:
            line.update(
                Text(f"No answer yet after {self._waited_s:.0f} s; the engine is still executing it.", style="bold yellow")
            )

    def action_close(self) -> None:
        self.dismiss(False)

    def action_resume(self) -> None:
        self.dismiss(True)
