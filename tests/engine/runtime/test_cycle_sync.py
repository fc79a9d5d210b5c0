"""The cycle's broker sync: a failed sync is logged and counted, and whatever the broker did
absorb before the failure is still booked (the broker never reports an absorbed update twice)."""

from __future__ import annotations

import pytest

from engine.config import HotcoinConfig
from engine.domain import OrderStatus
from engine.errors import ClockSkewError, ExchangeAuthError, OrderError, RetryableOrderError
from engine.execution.broker import Broker, OrderUpdate, SyncIncomplete
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.sinks import NullSink
from engine.runtime.cycle import TradingCycle
from engine.runtime.tap import Tap
from tests.kit.domain import T0, make_order


class _FailingSync(PaperBroker):
    """A broker whose every sync fails with `error`."""

    def __init__(self, error: OrderError) -> None:
        super().__init__(FillModel())
        self.error = error

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        raise self.error


def _cycle(broker: Broker) -> TradingCycle:
    return TradingCycle(HotcoinConfig(), None, broker, Tap(NullSink(), recent=0), run_id="sync")  # type: ignore[arg-type]


async def test_an_incomplete_sync_hands_over_what_it_reached_and_counts_the_error() -> None:
    reached = OrderUpdate(make_order(status=OrderStatus.CANCELED))
    cycle = _cycle(_FailingSync(SyncIncomplete([RetryableOrderError("429 too many requests")], [reached])))
    assert [u.order for u in await cycle._sync(T0)] == [reached.order]
    assert cycle.state.errors.count(T0) == 1


async def test_a_failed_sync_hands_over_nothing_and_counts_the_error() -> None:
    cycle = _cycle(_FailingSync(RetryableOrderError("503 service unavailable")))
    assert await cycle._sync(T0) == []
    assert cycle.state.errors.count(T0) == 1



@pytest.mark.parametrize(
    ("errors", "counted"),
    [
        pytest.param([ClockSkewError("clock skew of +8,000 ms", code=-1021, skew_ms=8000)], 0, id="clock-skew"),
        pytest.param([ExchangeAuthError("key refused", code=-2015)], 0, id="refused-key"),
        pytest.param([ExchangeAuthError("key refused", code=-2015), RetryableOrderError("429")], 1, id="and-a-429"),
    ],
)
async def test_a_sync_failed_only_by_a_fault_is_not_counted(errors: list[OrderError], counted: int) -> None:
    """A refused key or clock skew blocks the engine under its own reason (what to fix); counted
    as well, it added "order errors in window" and blocked on after the fix."""
    cycle = _cycle(_FailingSync(SyncIncomplete(errors, [])))
    assert await cycle._sync(T0) == []
    assert cycle.state.errors.count(T0) == counted
