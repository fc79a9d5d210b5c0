"""The cycle hands each markets refresh to the core once; the core keeps what it holds."""

from __future__ import annotations

from engine.config import HotcoinConfig
from engine.execution.paper import FillModel, PaperBroker
from engine.runtime.cycle import TradingCycle
from engine.runtime.tap import Tap
from engine.trading import TradingCore
from tests.engine.signals import market_kit as mk
from tests.engine.test_trading_core import Harness
from tests.kit.events import RecordingSink


async def test_a_refresh_without_a_held_coin_reaches_the_core_once_and_keeps_its_market() -> None:
    """A refresh that left a held coin out (delisted, halted) once took its Market from the
    core for good: its exits were never decided. The core keeps it; and the cycle, which
    handed the refresh over whenever the core's dict was not the driver's, hands it once."""
    h = Harness(n=2)
    held, other = h.names
    await h.enter(n=1)
    cycle = TradingCycle(HotcoinConfig(), object(), PaperBroker(FillModel()), Tap(RecordingSink(), recent=0), run_id="m")  # type: ignore[arg-type]
    cycle.driver.markets = mk.markets(h.names)
    cycle.hand_markets(h.core)
    assert h.core.markets is cycle.driver.markets
    refreshed = mk.markets([other])  # the next refresh: the held coin is gone from it
    cycle.driver.markets = refreshed
    cycle.hand_markets(h.core)
    kept = h.core.markets
    assert set(kept) == {held, other} and kept[other] is refreshed[other]
    cycle.hand_markets(h.core)
    assert h.core.markets is kept  # the same refresh is not handed over again
    installed = TradingCore(h.settings, {}, h.sink)
    cycle.hand_markets(installed)  # a core installed (recovery tests do): it gets the refresh
    assert installed.markets is refreshed
