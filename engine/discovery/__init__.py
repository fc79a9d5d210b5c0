"""Discovery: out of ~2,000 symbols moving every second, find the few turning hot, early, and say why.

    TickerBatch ─► TickerWindows ─► AnomalyDetector ─┐
    Market list ─► ListingMonitor (+ announcements) ─┼─► HeatRanker ─► CandidateFilters ─► CandidatePool
    social posts ─► MentionVelocity (+ sentiment) ───┘                       └─► candidate_snapshot events

`Discovery` (pipeline.py) runs one batch through all of it. Everything here is synchronous and
pure (time comes from the data) except the HTTP pollers, thin async shells around pure parsers.
"""

from engine.discovery.pipeline import Discovery, DiscoveryCycle
from engine.discovery.pool import CandidatePool, PoolSnapshot

__all__ = ["CandidatePool", "Discovery", "DiscoveryCycle", "PoolSnapshot"]
