"""A Binance-compatible spot exchange served on 127.0.0.1 over a simulated market.

The unmodified ccxt.pro binance client talks to it after changing only host and port
(see `tests/kit/sim_exchange.py`). `SimExchangeServer` is the entry point.
"""

from engine.sim.server.app import SimExchangeServer
from engine.sim.server.faults import FaultController, FaultPlan
from engine.sim.server.venue import MarketSource, SimClock

__all__ = ["FaultController", "FaultPlan", "MarketSource", "SimClock", "SimExchangeServer"]
