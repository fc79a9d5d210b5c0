"""Exit policy: when to sell how much of a position, as a pure function of price and time.

In order of precedence (the first that fires wins): the stop in force, max holding time, exit
on signal (all sell everything), then take-profit tiers (each sells its share of the initial
quantity; after the first, the stop may move to the entry price). The stop in force is the
higher of the stop loss and the armed trailing stop: a gap under both is journaled as the one
that bound, the one the owner was shown. The mark is the bid: what a sell would actually get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.config.sections.trading import ExitSettings
from engine.domain import OrderPurpose
from engine.journal.events import check
from engine.portfolio.positions import Holding
from engine.timefmt import span

# The full exits in the order `checks` lists them: the reason is written only for the one taken.
_FULL_EXITS = (OrderPurpose.STOP_LOSS, OrderPurpose.TRAILING_STOP, OrderPurpose.MAX_HOLD, OrderPurpose.SIGNAL_EXIT)


@dataclass(frozen=True, slots=True)
class ExitDecision:
    purpose: OrderPurpose
    quantity: float  # base units to sell (before rounding to the exchange's step)
    reason: str
    checks: list[dict[str, Any]]
    tier: int | None = None  # index of the take-profit tier, for partial closes
    signal_rules: tuple[str, ...] = ()  # a signal exit: the exit rules that fired

    @property
    def is_full(self) -> bool:
        return self.tier is None


class ExitPolicy:
    def __init__(self, settings: ExitSettings) -> None:
        self.settings = settings

    def stop_price(self, holding: Holding) -> float:
        pos = holding.position
        return pos.stop_price if pos.stop_price is not None else pos.entry_price * (1.0 - self.settings.stop_loss)

    def stop_in_force(self, holding: Holding) -> float:
        """The bid at which the position sells now: its stop loss, or the trailing stop once armed
        and above it. What a position row shows as its stop (the raw `Position.stop_price` is
        None until the stop moves, and read "none" on a position with a 4 % stop in force)."""
        stop = self.stop_price(holding)
        trail = self.trail_price(holding)
        return stop if trail is None else max(stop, trail)

    def trail_price(self, holding: Holding) -> float | None:
        """The trailing stop, once the peak has risen `trailing_activation` over entry (None before).
        The peak is a bid (`PositionBook.mark`), never the fill: with an activation of 0 the
        trail arms when the bid reaches the entry price, not at once from the ask paid."""
        s = self.settings
        pos = holding.position
        if pos.trailing_high < pos.entry_price * (1.0 + s.trailing_activation):
            return None
        return pos.trailing_high * (1.0 - s.trailing_stop)

    def evaluate(
        self, holding: Holding, bid: float, now_ms: int, *, signal_exit: Sequence[str] = ()
    ) -> ExitDecision | None:
        """The exit due now, if any. `signal_exit`: the exit rules that fired in the symbol's
        latest signal (none: no exit signal), named in the decision so a report can say which."""
        s = self.settings
        pos = holding.position
        stop = self.stop_price(holding)
        trail = self.trail_price(holding)
        held_ms = now_ms - pos.opened_ms
        holds = bid > stop and (trail is None or bid > trail) and held_ms < s.max_hold_ms
        if holds and not (s.exit_on_signal and signal_exit) and self._tier_due(holding, bid) is None:
            return None  # nothing due (a held coin's every price but one): no check is read
        checks = [
            check("stop_loss", bid > stop, bid, stop),
            check("trailing_stop", trail is None or bid > trail, bid, trail),
            check("max_hold", held_ms < s.max_hold_ms, held_ms, s.max_hold_ms),
            check("signal_exit", not (s.exit_on_signal and signal_exit), bool(signal_exit), s.exit_on_signal),
        ]
        return self._decide(holding, bid, stop, trail, held_ms, checks, signal_exit)

    def _tier_due(self, holding: Holding, bid: float) -> int | None:
        """The first take-profit tier not yet hit, where `bid` reaches it (None: none is due)."""
        pos = holding.position
        for i, tier in enumerate(self.settings.take_profit):
            if i not in pos.tp_tiers_hit:
                return None if bid < pos.entry_price * (1.0 + tier.gain) else i
        return None

    def _decide(
        self, holding: Holding, bid: float, stop: float, trail: float | None, held_ms: int, checks: list[dict[str, Any]],
        signal_exit: Sequence[str],
    ) -> ExitDecision | None:
        """`evaluate`'s decision from its `checks`: the full exit that fired first, else the
        take-profit tier due."""
        s = self.settings
        pos = holding.position
        qty = pos.quantity
        outcomes = list(zip(checks, _FULL_EXITS, strict=True))
        if trail is not None and trail > stop:  # the trailing stop is the stop in force: it is the one hit
            outcomes[0], outcomes[1] = outcomes[1], outcomes[0]
        for c, purpose in outcomes:
            if not c["passed"]:
                if purpose is OrderPurpose.STOP_LOSS:
                    reason = f"bid {bid:.8g} <= stop {stop:.8g}"
                elif purpose is OrderPurpose.TRAILING_STOP:
                    reason = f"bid {bid:.8g} <= trail {trail or 0.0:.8g} ({s.trailing_stop:.1%} under peak {pos.trailing_high:.8g})"
                elif purpose is OrderPurpose.MAX_HOLD:
                    reason = f"held {span(held_ms)} >= {span(s.max_hold_ms)}"  # the journal's check keeps the ms
                else:
                    reason = f"exit rules fired: {', '.join(signal_exit)}"
                rules = tuple(signal_exit) if purpose is OrderPurpose.SIGNAL_EXIT else ()
                return ExitDecision(purpose, qty, reason, checks, signal_rules=rules)
        i = self._tier_due(holding, bid)
        if i is None:
            return None
        tier = s.take_profit[i]
        target = pos.entry_price * (1.0 + tier.gain)
        sell = min(qty, holding.initial_qty * tier.fraction)
        tp = check(f"take_profit_{i + 1}", False, bid, target)
        return ExitDecision(OrderPurpose.TAKE_PROFIT, sell, f"take-profit tier {i + 1}: bid {bid:.8g} >= {target:.8g}", [*checks, tp], tier=i)
