"""What the simulated market will do, decided in advance: pumps, dumps and listings.

The plan is drawn one sim day at a time from `(seed, day)` alone, a day ahead of the clock,
so it never depends on how the market is advanced, and the ground truth of the next 24 h is
always known. Each scheduled move is a deterministic path (a log-price offset and a volume
multiple over time) that the market adds on top of its random walk; the walk's noise means
the realised move is `size` give or take the symbol's ordinary volatility.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from engine.config.sections.sim import SimSection
from engine.sim.universe import SymbolParams, draw_alt, new_name

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
QUIET_GAP_MS = 30 * MINUTE_MS  # at least this long between two moves of one symbol
FIRST_MOVE_AFTER_MS = 10 * MINUTE_MS  # nothing starts in the first minutes of a run
LISTING_SETTLE_TAU_MS = 3 * MINUTE_MS
LISTING_BURST_TAU_MS = 15 * MINUTE_MS
LISTING_PATH_MS = 3 * HOUR_MS
_EXP3 = 1.0 - math.exp(-3.0)


@dataclass(frozen=True, slots=True)
class PumpEvent:
    """A scheduled move. `size` = price at peak / price at start - 1 (0.45 for +45%; negative
    for a dump, -0.3 for a 30% fall, its "peak" being the trough)."""

    symbol: str
    start_ms: int
    peak_ms: int
    end_ms: int
    size: float
    kind: str  # "pump" or "dump"


@dataclass(frozen=True, slots=True)
class ListingEvent:
    """A symbol that starts trading mid-run at `listed_ms`, its first trade at `open_price`."""

    symbol: str
    listed_ms: int
    open_price: float


@dataclass(frozen=True, slots=True)
class Move:
    """A pump (log_size > 0) or dump: the price ramps, accelerating, from start to peak, then
    gives back `retrace` of the move by `end_ms`. Volume builds from `lead_ms` before the start
    to `surge` times normal at the peak and decays afterwards."""

    symbol: str
    start_ms: int
    peak_ms: int
    end_ms: int
    log_size: float
    retrace: float
    surge: float
    lead_ms: int

    @property
    def activate_ms(self) -> int:
        return self.start_ms - self.lead_ms

    def offset(self, t_ms: int) -> float:
        if t_ms <= self.start_ms:
            return 0.0
        if t_ms <= self.peak_ms:
            return self.log_size * float(
                ((t_ms - self.start_ms) / (self.peak_ms - self.start_ms)) ** 1.5
            )
        v = min(1.0, (t_ms - self.peak_ms) / (self.end_ms - self.peak_ms))
        return self.log_size * (1.0 - self.retrace * (1.0 - math.exp(-3.0 * v)) / _EXP3)

    def volume_multiple(self, t_ms: int) -> float:
        if t_ms < self.activate_ms or t_ms >= self.end_ms:
            return 1.0
        if t_ms < self.start_ms:
            return 1.0 + (0.6 * self.surge - 1.0) * (t_ms - self.activate_ms) / max(1, self.lead_ms)
        if t_ms <= self.peak_ms:
            return self.surge * (
                0.6 + 0.4 * (t_ms - self.start_ms) / (self.peak_ms - self.start_ms)
            )
        v = (t_ms - self.peak_ms) / (self.end_ms - self.peak_ms)
        return 1.0 + (self.surge - 1.0) * math.exp(-5.0 * v)

    def event(self) -> PumpEvent:
        kind = "pump" if self.log_size > 0 else "dump"
        return PumpEvent(
            self.symbol, self.start_ms, self.peak_ms, self.end_ms, math.expm1(self.log_size), kind
        )


@dataclass(frozen=True, slots=True)
class Listing:
    """A new market: its first minute prints a wick to `wick` x the open, then the price settles
    towards `settle` x the open within minutes, on `burst` x normal volume fading over the hour."""

    params: SymbolParams
    listed_ms: int
    wick: float
    settle: float
    burst: float

    @property
    def symbol(self) -> str:
        return self.params.symbol

    @property
    def activate_ms(self) -> int:
        return self.listed_ms

    @property
    def end_ms(self) -> int:
        return self.listed_ms + LISTING_PATH_MS

    def offset(self, t_ms: int) -> float:
        if t_ms <= self.listed_ms:
            return 0.0
        return math.log(self.settle) * -math.expm1(-(t_ms - self.listed_ms) / LISTING_SETTLE_TAU_MS)

    def volume_multiple(self, t_ms: int) -> float:
        if t_ms < self.listed_ms:
            return 1.0
        return 1.0 + (self.burst - 1.0) * math.exp(-(t_ms - self.listed_ms) / LISTING_BURST_TAU_MS)

    def event(self) -> ListingEvent:
        return ListingEvent(self.symbol, self.listed_ms, self.params.price)


class Scenario:
    """The plan: listings and moves drawn a day ahead; `due(t)` hands over those starting by t."""

    def __init__(
        self, settings: SimSection, start_ms: int, pumpable: Sequence[str], used_names: set[str]
    ) -> None:
        self._s = settings
        self._start_ms = start_ms
        self._pumpable = list(pumpable)
        self._used = set(used_names)
        self._busy_until: dict[str, int] = {}
        self._days = 0
        self._moves: list[Move] = []
        self._listings: list[Listing] = []
        self._listing_ms: dict[str, int] = {}
        self._pending: list[tuple[int, int, Listing | Move]] = []  # (activate_ms, seq, path)
        self._seq = 0
        self.extend_to(start_ms)

    @property
    def ground_truth(self) -> tuple[PumpEvent, ...]:
        return tuple(sorted((m.event() for m in self._moves), key=lambda e: (e.start_ms, e.symbol)))

    @property
    def listings(self) -> tuple[ListingEvent, ...]:
        return tuple(item.event() for item in self._listings)

    def listing_ms(self, symbol: str) -> int | None:
        return self._listing_ms.get(symbol)

    def extend_to(self, t_ms: int) -> None:
        """Plan every day up to a full day past `t_ms`."""
        while self._start_ms + self._days * DAY_MS <= t_ms + DAY_MS:
            self._plan_day(self._days)
            self._days += 1

    def due(self, t_ms: int) -> list[Listing | Move]:
        """Paths whose activation time has come by `t_ms`, in activation order (listings first on ties)."""
        self.extend_to(t_ms)
        out: list[Listing | Move] = []
        while self._pending and self._pending[0][0] <= t_ms:
            out.append(heapq.heappop(self._pending)[2])
        return out

    def script(self, move: Move) -> None:
        """Add a move chosen by hand (a scripted pump for a test or a demo) to the plan and
        the ground truth. It must start in the future and not overlap another move of its symbol."""
        busy = self._busy_until.get(move.symbol, 0)
        if move.activate_ms < busy:
            raise ValueError(f"{move.symbol} already moves until {busy}; start the scripted move later")
        self._busy_until[move.symbol] = move.end_ms
        self._moves.append(move)
        self._push(move)

    def _push(self, path: Listing | Move) -> None:
        heapq.heappush(self._pending, (path.activate_ms, self._seq, path))
        self._seq += 1

    def _plan_day(self, day: int) -> None:
        s = self._s
        rng = np.random.default_rng([s.seed, 4, day])
        day_start = self._start_ms + day * DAY_MS
        first_hour = -(-day_start // HOUR_MS) * HOUR_MS
        count = min(24, int(rng.poisson(s.listings_per_day)))
        new_names: list[str] = []
        for hour in sorted(int(h) for h in rng.choice(24, count, replace=False)):
            base = new_name(rng, self._used)
            params = draw_alt(rng, base, s.quote_asset, listing=True)
            wick = _log_uniform(rng, min(1.5, s.listing_wick_max), s.listing_wick_max)
            listing = Listing(
                params,
                first_hour + hour * HOUR_MS,
                wick,
                _log_uniform(rng, 0.6, 2.5),
                float(rng.uniform(30.0, 100.0)),
            )
            if listing.listed_ms <= self._start_ms:
                continue
            self._listings.append(listing)
            self._listing_ms[listing.symbol] = listing.listed_ms
            self._push(listing)
            new_names.append(listing.symbol)
        earliest = FIRST_MOVE_AFTER_MS if day == 0 else 0
        drafts = []
        for _ in range(int(rng.poisson(s.pumps_per_day))):
            size = math.log1p(_log_uniform(rng, s.pump_size_min, s.pump_size_max))
            lead = int(rng.integers(1, 6))
            drafts.append(
                self._draft(rng, day_start, earliest, size, float(rng.uniform(0.3, 0.7)), lead)
            )
        for _ in range(int(rng.poisson(s.dumps_per_day))):
            fall = math.log1p(-float(rng.uniform(s.dump_size_min, s.dump_size_max)))
            lead = int(rng.integers(0, 3))
            drafts.append(
                self._draft(rng, day_start, earliest, fall, float(rng.uniform(0.2, 0.5)), lead)
            )
        # Symbols are handed out in time order, so "free since the last move ended" is exact.
        for draft in sorted(drafts, key=lambda d: (d.start_ms, d.log_size)):
            self._assign(rng, draft)
        self._pumpable.extend(new_names)  # a listing can be pumped from the next day on

    def _draft(
        self,
        rng: np.random.Generator,
        day_start: int,
        earliest: int,
        log_size: float,
        retrace: float,
        lead_minutes: int,
    ) -> Move:
        """A move with its timing and shape drawn, its symbol not yet chosen."""
        s = self._s
        offset = earliest + int(rng.integers(0, (DAY_MS - earliest) // MINUTE_MS)) * MINUTE_MS
        ramp = int(rng.integers(s.pump_minutes_min, s.pump_minutes_max + 1)) * MINUTE_MS
        after = int(ramp * rng.uniform(1.0, 3.0)) // MINUTE_MS * MINUTE_MS + MINUTE_MS
        surge = _log_uniform(rng, s.pump_volume_surge_min, s.pump_volume_surge_max)
        start = day_start + offset
        end = start + ramp + after
        return Move(
            "", start, start + ramp, end, log_size, retrace, surge, lead_minutes * MINUTE_MS
        )

    def _assign(self, rng: np.random.Generator, draft: Move) -> None:
        """Give the move to a symbol quiet since its last move (up to 20 tries, else drop it)."""
        picks = rng.integers(0, max(1, len(self._pumpable)), 20).tolist()
        for pick in picks if self._pumpable else []:
            symbol = self._pumpable[pick]
            if self._busy_until.get(symbol, -QUIET_GAP_MS) + QUIET_GAP_MS <= draft.activate_ms:
                move = replace(draft, symbol=symbol)
                self._busy_until[symbol] = move.end_ms
                self._moves.append(move)
                self._push(move)
                return


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))
