"""Capital allocation: how much quote currency one new entry gets.

Size = the smallest of: equity x the profile's position fraction (x the risk level's size
multiplier), the room left under the total exposure cap, the room left in the symbol's cluster,
the cash available, and the per-order cap. Below `min_order_quote` the entry is not worth
sending. Exposure is valued at current prices by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.config.sections.trading import CapitalSettings, RiskSettings
from engine.journal.events import check


@dataclass(frozen=True, slots=True)
class Sizing:
    quote: float
    checks: list[dict[str, Any]]

    @property
    def approved(self) -> bool:
        return all(c["passed"] for c in self.checks)


class Allocator:
    def __init__(self, capital: CapitalSettings, risk: RiskSettings, *, buy_cost_rate: float, max_order_quote: float) -> None:
        self.capital = capital
        self.risk = risk
        self.buy_cost_rate = buy_cost_rate  # fee and slippage over the notional (`ExecutionSettings.entry_cost_rate`)
        self.max_order_quote = max_order_quote

    @property
    def max_concurrent(self) -> int:
        return self.capital.active.max_concurrent

    def position_fraction(self) -> float:
        profile = self.capital.active
        return profile.position_fraction or 1.0 / profile.max_concurrent

    def size(
        self,
        *,
        equity: float,
        exposure: float,
        cluster_room: float,
        cash: float,
        open_positions: int,
        size_multiplier: float = 1.0,
    ) -> Sizing:
        per_position = equity * self.position_fraction() * size_multiplier
        exposure_room = max(0.0, equity * self.risk.max_exposure - exposure)
        affordable = max(0.0, cash / (1.0 + self.buy_cost_rate))
        quote = max(0.0, min(per_position, exposure_room, cluster_room, affordable, self.max_order_quote))
        minimum = self.capital.min_order_quote
        checks = [
            check("max_concurrent", open_positions < self.max_concurrent, open_positions, self.max_concurrent),
            check("exposure_room", exposure_room >= minimum, exposure_room, minimum),
            check("cluster_room", cluster_room >= minimum, cluster_room, minimum),
            check("cash", affordable >= minimum, affordable, minimum),
            check("min_order", quote >= minimum, quote, minimum),
        ]
        return Sizing(quote, checks)
