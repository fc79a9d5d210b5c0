"""The top line: trading mode (impossible to miss), engine state, feed age, close-all progress.

It is the one line always on screen at any terminal size, so it carries what an operator
must never have to look for: LIVE vs PAPER vs SIM, whether entries are paused, whether the
data is stale (and how old), and how far an emergency close-all has got (and what stops it).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.runtime.snapshot import EngineSnapshot, Mode
from hotcoin_tui.widgets import fmt
from hotcoin_tui.widgets.auto_static import same_text
from hotcoin_tui.widgets.engine_state import STATE_STYLE

MODE_STYLE = {Mode.LIVE: "bold white on red", Mode.PAPER: "bold black on yellow", Mode.SIM: "bold white on blue"}
# The words carry the warning too, for NO_COLOR and monochrome terminals.
MODE_LABEL = {Mode.LIVE: " LIVE · REAL ORDERS ", Mode.PAPER: " PAPER ", Mode.SIM: " SIM "}
MONO_BADGE = "bold reverse"


def banner_text(
    snapshot: EngineSnapshot | None, feed_age_s: float, stale: bool, feed_error: str | None, *, mono: bool = False
) -> Text:
    """The banner line. `mono` (NO_COLOR) draws every coloured badge in reverse video: the
    colours are stripped, and a word in plain text among plain text is easy to miss."""

    def badge(style: str) -> str:
        return MONO_BADGE if mono and " on " in style else style

    text = Text(no_wrap=True, overflow="ellipsis")
    if snapshot is None:
        text.append(" NO DATA ", style=badge("bold white on red"))
        text.append(f" waiting for the engine's first snapshot ({feed_age_s:.0f}s)")
    else:
        status = snapshot.status
        text.append(MODE_LABEL[status.mode], style=badge(MODE_STYLE[status.mode]))
        text.append(" ")
        text.append(f" {status.state.upper()} ", style=badge(STATE_STYLE.get(status.state, "bold")))
        if status.paused:
            text.append(" PAUSED ", style=badge("bold black on yellow"))
        progress = snapshot.close_all
        if progress is not None:
            label = " FLAT " if progress.done else f" CLOSING ALL {progress.remaining}/{progress.total} left "
            text.append(" ")
            text.append(label, style=badge("bold white on red" if not progress.done else "bold black on green"))
            # Why it is stuck, beside the count: an operator who hid the dialog sees the refusal
            # ("Market is closed.") instead of a count that never moves.
            why = () if progress.done else progress.reasons
            if why:
                more = f" (+{len(why) - 1} more)" if len(why) > 1 else ""
                text.append(f" {why[0]}{more} ", style="bold red")
        totals = snapshot.totals
        text.append(f" eq {fmt.money(totals.equity)} day ")
        text.append_text(fmt.pnl(totals.day_pnl))
        text.append(f" pos {len(snapshot.positions)}")
    if feed_error is not None:
        text.append(f"  FEED ERROR: {feed_error}", style="bold red")
    elif stale and snapshot is not None:
        text.append(f"  DATA {feed_age_s:.0f}s OLD", style=badge("bold white on red"))
    return text


class ModeBanner(Static):
    _shown: Text | None = None

    def show(self, snapshot: EngineSnapshot | None, feed_age_s: float, stale: bool, feed_error: str | None) -> None:
        """Shown on every snapshot and every second; the same line again is not repainted."""
        text = banner_text(snapshot, feed_age_s, stale, feed_error, mono=self.app.no_color)
        if self._shown is not None and same_text([self._shown], [text]):
            return
        # One fixed line: no layout pass (a layout re-renders every panel, ~100 ms at 160x48).
        self.update(text, layout=False)
        self._shown = text
