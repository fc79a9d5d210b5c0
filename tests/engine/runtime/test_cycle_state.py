"""The cycle's state machine step: a transition out of tradeable cancels the entry orders still
resting (a limit entry must not fill and open a position once the engine stopped trading),
journaled in each entry's trace and caused by the `state_change`; exits are never cancelled."""

from __future__ import annotations

from engine.config import HotcoinConfig
from engine.config.sections.trading import ExecutionSettings, TradingSection
from engine.domain import EngineState, Order, OrderPurpose, OrderStatus, OrderType, Side
from engine.execution.broker import OrderUpdate
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.trace import summarise
from engine.runtime.cycle import TradingCycle
from engine.runtime.tap import Tap
from engine.trading import TradingCore
from tests.engine.signals import market_kit as mk
from tests.engine.test_trading_core import ENTRY_PRICE, profile
from tests.kit.domain import make_order
from tests.kit.events import RecordingSink


class _FreshFeed:
    """A feed whose data is always fresh and whose connection never drops."""

    def data_age_s(self, now_ms: int) -> float:
        return 0.0

    def ws_down_s(self, now_ms: int) -> float:
        return 0.0

    def exchange_fault(self) -> None:
        return None


class _WithRestingExit(PaperBroker):
    """A paper broker that also lists a resting exit order (as an exchange may, for a sell
    whose reply is pending), and records what is cancelled."""

    def __init__(self, exit_order: Order) -> None:
        super().__init__(FillModel())
        self.exit_order = exit_order
        self.cancelled: list[str] = []

    async def open_orders(self) -> list[Order]:
        return [*await super().open_orders(), self.exit_order]

    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        self.cancelled.append(client_order_id)
        return await super().cancel(symbol, client_order_id, now_ms)


def _rig() -> tuple[TradingCycle, RecordingSink, _WithRestingExit, list[str]]:
    names = mk.symbols(2)
    sink = RecordingSink()
    exit_order = make_order(
        names[1], client_order_id="hc-00000000000000ff-t1", side=Side.SELL, status=OrderStatus.OPEN,
        purpose=OrderPurpose.TAKE_PROFIT, order_type=OrderType.LIMIT, filled_qty=0,
    )
    broker = _WithRestingExit(exit_order)
    cycle = TradingCycle(HotcoinConfig(), _FreshFeed(), broker, Tap(sink, recent=0), run_id="state")  # type: ignore[arg-type]
    settings = TradingSection(
        capital=profile(capital=1000.0, max_concurrent=5),
        execution=ExecutionSettings(entry_order_type="limit", limit_offset=0.001, limit_expiry_ms=600_000),
    )
    cycle.core = TradingCore(settings, mk.markets(names), cycle.tap)
    mk.feed_hot(cycle.core.history, names, mk.NOW)
    return cycle, sink, broker, names


async def _rest_an_entry(cycle: TradingCycle, broker: PaperBroker, names: list[str]) -> str:
    """An entry limit that rests: the market moved up 0.5 % before it arrived."""
    core = cycle.core
    assert core is not None
    intents = core.step(mk.book(dict.fromkeys(names, ENTRY_PRICE), mk.NOW), mk.candidates(names[:1], mk.NOW), mk.NOW)
    broker.update_book(mk.book(dict.fromkeys(names, ENTRY_PRICE * 1.005), mk.NOW))
    cycle.book(await cycle.router.send_all(intents, mk.NOW, core.causes), mk.NOW)
    (intent,) = intents
    assert [o.client_order_id for o in await PaperBroker.open_orders(broker)] == [intent.client_order_id]
    return intent.client_order_id


async def test_leaving_tradeable_cancels_the_resting_entries_and_nothing_fills() -> None:
    cycle, sink, broker, names = _rig()
    core = cycle.core
    assert core is not None
    entry = await _rest_an_entry(cycle, broker, names)
    later = mk.NOW + 10_000
    for _ in range(cycle.config.state.order_errors_blocked):  # ten exchange rejections: blocked
        cycle.state.errors.record(later)
    await cycle.step_state(later)
    assert cycle.state.state is EngineState.BLOCKED and core.engine_state is EngineState.BLOCKED
    (change,) = [e for e in sink.events if e.kind == "state_change"]
    (cancel,) = [e for e in sink.events if e.kind == "order_result" and e.payload.get("action") == "cancel"]
    assert cancel.payload["client_order_id"] == entry and cancel.payload["status"] == "canceled"
    assert cancel.payload["reason"] == "engine blocked" and cancel.cause == change.seq
    assert cancel.trace_id == mk.candidates(names[:1], mk.NOW)[0].trace_id  # in the entry's own trace
    assert broker.cancelled == [entry]  # the resting exit is left alone
    assert core.pending_entries() == frozenset() and core.reserved_cash() == 0.0
    # The market comes down through the entry's price: nothing is left to fill.
    broker.update_book(mk.book(dict.fromkeys(names, ENTRY_PRICE * 0.999), later + 5_000))
    cycle.book(await cycle.router.sync(later + 5_000), later + 5_000)
    assert not core.book.holdings and not [e for e in sink.events if e.kind == "fill"]
    verdict = summarise(cancel.trace_id or "", sink.trace(cancel.trace_id or "")).verdict
    assert verdict.reason == "entry order canceled; nothing was bought"


async def test_degraded_cancels_the_resting_entries_too() -> None:
    cycle, sink, broker, names = _rig()
    entry = await _rest_an_entry(cycle, broker, names)
    later = mk.NOW + 10_000
    for _ in range(cycle.config.state.order_errors_degraded):
        cycle.state.errors.record(later)
    await cycle.step_state(later)
    assert cycle.state.state is EngineState.DEGRADED
    (cancel,) = [e for e in sink.events if e.kind == "order_result" and e.payload.get("action") == "cancel"]
    assert (cancel.payload["client_order_id"], cancel.payload["reason"]) == (entry, "engine degraded")


async def test_a_step_that_stays_tradeable_cancels_nothing() -> None:
    cycle, sink, broker, names = _rig()
    entry = await _rest_an_entry(cycle, broker, names)
    await cycle.step_state(mk.NOW + 10_000)
    assert cycle.state.state is EngineState.TRADEABLE and broker.cancelled == []
    assert not [e for e in sink.events if e.kind == "state_change"]
    assert cycle.core is not None and cycle.core.pending_entries() == {entry}
