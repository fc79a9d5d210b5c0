"""What readers (the TUI, `/health`, a remote client) see of the engine: immutable snapshots.

The engine publishes a new `EngineSnapshot` after each cycle; a reader holds one as long as
it likes and never sees later mutations. Everything is plain data (no numpy, no live objects),
so a snapshot can cross a local socket as JSON unchanged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Mode(enum.StrEnum):
    """What the money is: SIM (simulated market, paper fills), PAPER (real data, paper fills), LIVE."""

    SIM = "SIM"
    PAPER = "PAPER"
    LIVE = "LIVE"


@dataclass(frozen=True, slots=True)
class CandidateRow:
    symbol: str
    trace_id: str
    heat: float
    rank: int
    price: float
    ret_1m: float | None  # None: unknown (too little history behind the return)
    ret_5m: float | None
    ret_1h: float | None
    volume_surge: float
    coin_age_days: float | None
    sources: tuple[str, ...]
    signal_state: str  # "enter" | "skip" | "hold" | "in_position" | "" (not evaluated yet)


@dataclass(frozen=True, slots=True)
class PositionRow:
    symbol: str
    trace_id: str
    quantity: float
    entry_price: float
    mark: float
    unrealised_pnl: float  # `Position.unrealised_pnl`: net of the entry fees the quantity held carries
    realised_pnl: float
    tp_tier: int  # number of take-profit tiers reached
    stop_price: float | None
    opened_ms: int


@dataclass(frozen=True, slots=True)
class Totals:
    equity: float
    cash: float
    exposure: float
    day_pnl: float
    daily_loss_limit: float  # negative number: the day PnL at which new entries pause


@dataclass(frozen=True, slots=True)
class StreamRow:
    name: str
    status: str  # "connected" | "stale" | "error" | "down"
    last_message_ms: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    ts_ms: int
    kind: str
    symbol: str | None
    trace_id: str | None
    summary: str


# What a close-all error says of a position still held with nothing known to be wrong (an exit
# the exchange took and has not filled yet): progress to show, not a reason.
STILL_OPEN = "still open"


@dataclass(frozen=True, slots=True)
class CloseAllProgress:
    requested_ms: int
    total: int
    remaining: int
    errors: tuple[str, ...] = ()  # "SYMBOL: what went wrong" (or STILL_OPEN), for positions still held

    @property
    def done(self) -> bool:
        return self.remaining == 0

    @property
    def reasons(self) -> tuple[str, ...]:
        """The errors that say why a position is still held, not only that it is."""
        return tuple(e for e in self.errors if not e.endswith(f": {STILL_OPEN}"))


@dataclass(frozen=True, slots=True)
class EngineStatus:
    state: str  # tradeable | degraded | blocked
    reasons: tuple[str, ...]
    mode: Mode
    paused: bool
    risk_level: int  # 1..5
    order_error_rate: float  # errors in the last 5 minutes
    streams: tuple[StreamRow, ...]
    run_id: str
    config_hash: str
    model_version: str | None = None
    # The engine's own cycle time (market batch -> decisions made), over its last 1,000 cycles:
    # what a reader needs to see that watching the engine does not slow it down.
    cycle_p50_ms: float = 0.0
    cycle_p99_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    seq: int  # increases with every published snapshot
    ts_ms: int
    status: EngineStatus
    candidates: tuple[CandidateRow, ...] = ()
    positions: tuple[PositionRow, ...] = ()
    totals: Totals = field(default_factory=lambda: Totals(0.0, 0.0, 0.0, 0.0, 0.0))
    events: tuple[EventRow, ...] = ()  # newest last, capped
    close_all: CloseAllProgress | None = None
