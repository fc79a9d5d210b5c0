"""Engine health: state with its reasons, each stream's freshness, error rate, risk, model.

A stream that stopped is shown with its status and the age of its last message (from the
snapshot's clock), never as an empty or zero value: the operator must see the difference
between "nothing is happening" and "we cannot see what is happening". For the same reason,
while no fresh snapshot comes (engine not answering, or the data stale) the panel leads with
how old its figures are, and the stream ages keep growing with the wall clock.
"""

from __future__ import annotations

from rich.text import Text

from engine.runtime.snapshot import EngineStatus, StreamRow
from engine.timefmt import span
from hotcoin_tui.widgets.auto_static import AutoStatic

STATE_STYLE = {"tradeable": "bold green", "degraded": "bold yellow", "blocked": "bold white on red"}
STREAM_STYLE = {"connected": "green", "stale": "bold yellow", "error": "bold red", "down": "red"}


def stream_text(stream: StreamRow, now_ms: int) -> Text:
    age = "never" if stream.last_message_ms is None else f"{span(now_ms - stream.last_message_ms)} ago"
    text = Text(f"{stream.name:<8} ")  # the space: a name longer than 8 (sim-market) must not run into its status
    text.append(f"{stream.status:<10}", style=STREAM_STYLE.get(stream.status, "bold"))
    text.append(age)
    if stream.detail:
        text.append(f"  {stream.detail}", style="dim")
    return text


def status_lines(status: EngineStatus, now_ms: int, stale: str | None = None) -> list[Text]:
    """The panel's lines at `now_ms`; `stale` says why and since when the figures are old."""
    head = Text()
    head.append(f" {status.state.upper()} ", style=STATE_STYLE.get(status.state, "bold"))
    if status.paused:
        head.append("  PAUSED", style="bold yellow")
    head.append(f"  mode {status.mode.value}  risk L{status.risk_level}")
    head.append(f"  order errors {status.order_error_rate:g}/5m", style="red" if status.order_error_rate else "")
    lines = [head] if stale is None else [Text(stale, style="bold red"), head]
    for reason in status.reasons:
        lines.append(Text(f"  · {reason}", style="yellow"))
    lines.extend(stream_text(s, now_ms) for s in status.streams)
    lines.append(
        Text(f"model {status.model_version or 'none'}  run {status.run_id}  config {status.config_hash}", style="dim")
    )
    return lines


class EngineStatePanel(AutoStatic):
    can_focus = True  # the panel's keys land on it when it is picked (`MainScreen._focus_target`)

    def on_mount(self) -> None:
        self.border_title = "Engine"

    def apply(self, status: EngineStatus, now_ms: int, stale: str | None = None) -> None:
        self.show_lines(status_lines(status, now_ms, stale))
