"""The narrow interface between the engine and its readers (snapshots in, commands out).

The TUI talks to the engine only through `EngineClient`. In-process today
(`engine.runtime.local_client`); the same interface can cross a local socket so the engine
outlives an SSH session. A reader never mutates engine state: it sends a `Command`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

from engine.domain import Candle, Fill
from engine.journal.events import JournalEvent
from engine.runtime.snapshot import EngineSnapshot


class Command(enum.StrEnum):
    PAUSE = "pause"  # no new entries; exits continue
    RESUME = "resume"
    CLOSE_ALL = "close_all"  # cancel every open order, exit every position at market
    SHUTDOWN = "shutdown"  # stop the engine cleanly (journal flushed, positions recorded)


@dataclass(frozen=True, slots=True)
class CommandResult:
    accepted: bool
    message: str


class EngineClient(abc.ABC):
    """What a reader may ask of a running engine."""

    @abc.abstractmethod
    def latest(self) -> EngineSnapshot | None:
        """The newest snapshot, or None before the first cycle."""

    @abc.abstractmethod
    def updates(self) -> AsyncIterator[EngineSnapshot]:
        """Snapshots as they are published; a slow reader skips to the newest (never queues)."""

    @abc.abstractmethod
    async def send(self, command: Command, origin: str) -> CommandResult:
        """Ask the engine to do something; journaled as a `command` event with its origin."""

    @abc.abstractmethod
    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        """Recent candles of one symbol, for charts."""

    @abc.abstractmethod
    async def fills(self, symbol: str) -> list[Fill]:
        """Recent fills of one symbol, for buy/sell marks on charts: this run's, and after a
        restart those of the positions it recovered (and the last day's) from the journal."""

    @abc.abstractmethod
    async def trace(self, trace_id: str) -> list[JournalEvent]:
        """One trace's events (a unique id prefix is accepted), from the journal, main and archives.

        Raises `engine.errors.TraceNotFoundError` for an unknown or ambiguous id."""
