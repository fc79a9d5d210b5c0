"""Theme/sector clusters: caps on how much of the book may ride one story (memes, AI, L2s...).

The map symbol -> cluster comes from config; a symbol without one is its own cluster, so the
caps still stop doubling up on a single coin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.config.sections.trading import RiskSettings
from engine.journal.events import check


class Clusters:
    def __init__(self, settings: RiskSettings) -> None:
        self.settings = settings
        self._map = dict(settings.clusters)

    def of(self, symbol: str) -> str:
        return self._map.get(symbol, symbol)

    def room(self, symbol: str, notionals: Mapping[str, float], equity: float) -> float:
        """How much more (quote) may go into `symbol`'s cluster under the exposure cap."""
        cluster = self.of(symbol)
        used = sum(v for s, v in notionals.items() if self.of(s) == cluster)
        return max(0.0, equity * self.settings.max_cluster_exposure - used)

    def checks(self, symbol: str, notionals: Mapping[str, float], equity: float) -> list[dict[str, Any]]:
        cluster = self.of(symbol)
        members = [s for s in notionals if self.of(s) == cluster]
        used = sum(notionals[s] for s in members)
        cap = equity * self.settings.max_cluster_exposure
        return [
            check(f"cluster_count:{cluster}", len(members) < self.settings.max_positions_per_cluster, len(members), self.settings.max_positions_per_cluster),
            check(f"cluster_exposure:{cluster}", used < cap, used, cap),
        ]
