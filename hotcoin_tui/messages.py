"""Typed messages: how engine data and user intent travel through the app.

Workers that talk to the `EngineClient` post these; handlers update widgets. Messages that
carry a whole new state (a snapshot, a chart's candles) `can_replace` an older one of the same
kind still waiting in the queue, so a burst of engine cycles coalesces into one repaint
(toolong's recipe) instead of queueing work the screen would overwrite anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.runtime.client import Command, CommandResult
from engine.runtime.snapshot import EngineSnapshot


@dataclass
class SnapshotArrived(Message):
    """The engine published a new snapshot; only the newest pending one is applied."""

    snapshot: EngineSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


@dataclass
class EngineExited(Message):
    """The console's own engine process ended, with this return code."""

    code: int


@dataclass
class FeedLost(Message):
    """The snapshot stream raised or ended; the app shows it and subscribes (or attaches) again."""

    error: str


@dataclass
class ClientFailed(Message):
    """A client call failed; shown to the user, never fatal."""

    operation: str
    error: str
    command: Command | None = None  # set when the failed call was a command
    outcome_unknown: bool = False  # the command was sent and the engine went before answering (`AnswerLost`)


@dataclass
class CommandPending(Message):
    """A command sent `waited_s` ago has no answer yet: the engine is still carrying it out (a
    close-all against a slow exchange). Posted each second once it is late; `first` the first time."""

    command: Command
    waited_s: float
    first: bool


@dataclass
class CommandDone(Message):
    """The engine answered a command."""

    command: Command
    result: CommandResult


@dataclass
class ChartData(Message):
    """Candles and fills for the chart; a newer load for the chart replaces an older one."""

    symbol: str
    timeframe: str
    candles: list[Candle]
    fills: list[Fill]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ChartData)


@dataclass
class TraceLoaded(Message):
    """One trace's journal events, for the replay screen."""

    trace_id: str
    events: list[JournalEvent]


@dataclass
class SymbolSelected(Message):
    """The user picked a symbol (candidate or position row): the chart follows it."""

    symbol: str


@dataclass
class TraceRequested(Message):
    """The user asked to see why something happened: open this trace's decision tree."""

    trace_id: str


@dataclass
class IntervalChanged(Message):
    """The chart switched interval: load its candles now."""

    timeframe: str
