"""TradingCore end to end with the paper broker: candidates and prices in, journaled trades out."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.config.sections.trading import (
    CapitalProfile,
    CapitalSettings,
    ExecutionSettings,
    ExitSettings,
    RiskSettings,
    TradingSection,
)
from engine.domain import Candidate, EngineState, Market, OrderPurpose, OrderStatus
from engine.errors import (
    ErrorClass,
    NonRetryableOrderError,
    OrderError,
    RetryableOrderError,
    UnknownOrderError,
)
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.journal.events import TRAIL_ACTION, check
from engine.journal.sinks import NullSink
from engine.journal.trace import summarise
from engine.portfolio.risk import DAY_MS
from engine.runtime.recovery import rebuild
from engine.runtime.tap import Tap
from engine.signals.columns import ColumnPool, MemberColumns
from engine.trading import EXIT_RETRY_MS, TRAIL_JOURNAL_MS, TradingCore
from tests.engine.signals import market_kit as mk
from tests.engine.signals.test_stage import CountingSink
from tests.engine.signals.test_stage import _events as _stage_events
from tests.kit.domain import make_batch
from tests.kit.events import RecordingSink

ENTRY_PRICE = 1.025  # where market_kit's hot bars end


def profile(capital: float = 1000.0, max_concurrent: int = 5, **kw: float) -> CapitalSettings:
    return CapitalSettings(profile="t", profiles={"t": CapitalProfile(capital=capital, max_concurrent=max_concurrent, **kw)})


class Harness:
    """The core, the paper broker and the router, driven the way the runtime drives them."""

    def __init__(self, n: int = 3, settings: TradingSection | None = None, now: int = mk.NOW) -> None:
        self.names = mk.symbols(n)
        self.sink = RecordingSink()
        self.settings = settings or TradingSection(capital=profile())
        self.core = TradingCore(self.settings, mk.markets(self.names), self.sink)
        mk.feed_hot(self.core.history, self.names, now)
        self.broker = PaperBroker(FillModel.from_settings(self.settings.execution))
        self.router = OrderRouter(self.broker, self.sink)

    async def cycle(self, prices: dict[str, float], now: int, candidates: Sequence[Candidate] = ()) -> list[str]:
        batch = mk.book(prices, now)
        self.broker.update_book(batch)
        for update in await self.router.sync(now):
            self.core.on_order_update(update, now)
        intents = self.core.step(batch, candidates, now)
        for update in await self.router.send_all(intents, now, self.core.causes):
            self.core.on_order_update(update, now)
        return [i.client_order_id for i in intents]

    async def enter(self, n: int | None = None, now: int = mk.NOW) -> list[str]:
        names = self.names[: n or len(self.names)]
        return await self.cycle(dict.fromkeys(self.names, ENTRY_PRICE), now, mk.candidates(names, now))

    def kinds(self, trace_id: str) -> list[str]:
        return [e.kind for e in self.sink.trace(trace_id)]


async def test_one_trade_journaled_in_one_trace_with_causes() -> None:
    h = Harness(n=1)
    sink = h.sink
    cand = mk.candidates(h.names, mk.NOW)[0]
    snap = sink.emit(
        "candidate_snapshot", ts_ms=mk.NOW, trace_id=cand.trace_id, symbol=cand.symbol,
        payload={"heat": cand.heat, "components": {}, "rank": 1, "price": cand.price, "filters": [], "accepted": True},
    )
    batch = mk.book({cand.symbol: ENTRY_PRICE}, mk.NOW)
    h.broker.update_book(batch)
    intents = h.core.step(batch, [cand], mk.NOW, causes={cand.trace_id: snap})
    (intent,) = intents
    assert intent.client_order_id == f"hc-{cand.trace_id}-e1" and intent.purpose is OrderPurpose.ENTRY
    for u in await h.router.send_all(intents, mk.NOW, h.core.causes):
        h.core.on_order_update(u, mk.NOW)
    events = sink.trace(cand.trace_id)
    assert [e.kind for e in events] == [
        "candidate_snapshot", "signal_snapshot", "risk_check", "order_attempt", "order_result", "fill", "position_update"
    ]
    for parent, child in itertools.pairwise(events):
        assert child.cause == parent.seq  # a chain: each step caused by the one before
    risk = events[2].payload
    assert risk["approved"] and any(c["name"] == "precheck:min_notional" for c in risk["checks"])
    assert events[-1].payload["action"] == "open"

    # +6 %: the trailing stop arms (its peak journaled), take-profit tier 1 sells half and books
    # its PnL; +12 %: tier 2 sells the rest the lot step allows, and the crumbs the buy's fee
    # (taken in coins) left are written off.
    await h.cycle({cand.symbol: ENTRY_PRICE * 1.06}, mk.NOW + 10_000)
    await h.cycle({cand.symbol: ENTRY_PRICE * 1.12}, mk.NOW + 20_000)
    updates = [e.payload for e in sink.trace(cand.trace_id) if e.kind == "position_update"]
    assert [u["action"] for u in updates] == ["open", "trail", "partial_close", "partial_close", "close"]
    opened = next(e for e in sink.trace(cand.trace_id) if e.kind == "position_update")
    exit_decisions = [e for e in sink.trace(cand.trace_id) if e.kind == "signal_snapshot" and e.payload["stage"] == "exit_policy"]
    assert len(exit_decisions) == 2 and {e.cause for e in exit_decisions} == {opened.seq}  # one tree per trace
    assert [u["reason"] for u in updates] == ["entry", "trailing_stop", "take_profit", "take_profit", "dust"]
    fills = [e.payload for e in sink.trace(cand.trace_id) if e.kind == "fill"]
    buy, *sells = fills
    assert buy["fee_base"] == pytest.approx(buy["quantity"] * 0.001)  # the coins paid it: no cash
    paid = buy["price"] * buy["quantity"] + buy["fee_quote"] - buy["fee_base"] * buy["price"]
    expected = sum(f["price"] * f["quantity"] - f["fee_quote"] for f in sells) - paid
    assert sum(u["realised_pnl"] for u in updates) == pytest.approx(expected, rel=1e-9)
    assert updates[-1]["total_realised_pnl"] == pytest.approx(expected, rel=1e-9)
    assert h.core.cash == pytest.approx(1000.0 + expected, rel=1e-12)


async def test_signals_once_per_bar_and_no_second_entry_while_held() -> None:
    h = Harness(n=2)
    assert len(await h.enter()) == 2
    cands = mk.candidates(h.names, mk.NOW + 5_000)
    assert await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE), mk.NOW + 5_000, cands) == []
    assert sum(e.kind == "signal_snapshot" and e.payload["stage"] == "entry" for e in h.sink.events) == 2


async def test_a_candidate_for_a_held_coin_says_which_trace_holds_it_once() -> None:
    """A held coin's later candidate is not evaluated; its trace says why (the trace that holds
    it), once however many cycles re-send it, and the position's own trace gets nothing."""
    h = Harness(n=1)
    assert len(await h.enter()) == 1
    holder = mk.candidates(h.names, mk.NOW)[0].trace_id
    (cand,) = mk.candidates(h.names, mk.NOW + 60_000)  # the next bar: a new trace
    for now in (mk.NOW + 60_000, mk.NOW + 61_000):
        await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE), now, [cand])
    (said,) = [e for e in h.sink.trace(cand.trace_id) if e.kind == "signal_snapshot"]
    assert (said.payload["decision"], said.payload["reason"]) == ("skip", f"already holding {cand.symbol} (trace {holder})")
    assert summarise(cand.trace_id, h.sink.trace(cand.trace_id)).verdict.reason == (
        f"signal decided skip: already holding {cand.symbol} (trace {holder})"
    )
    assert not [e for e in h.sink.trace(holder) if e.payload.get("stage") == "held"]


async def test_a_candidate_for_a_coin_whose_entry_is_in_flight_says_which_trace_ordered_it_once() -> None:
    """An entry limit resting from an earlier bar keeps the coin's later candidates from being
    evaluated; their traces say why (the trace whose order is in flight), once each."""
    settings = TradingSection(
        capital=profile(capital=1000.0, max_concurrent=5),
        execution=ExecutionSettings(entry_order_type="limit", limit_offset=0.001, limit_expiry_ms=120_000),
    )
    h = Harness(n=2, settings=settings)
    (first,) = mk.candidates(h.names[:1], mk.NOW)
    intents = h.core.step(mk.book(dict.fromkeys(h.names, ENTRY_PRICE), mk.NOW), [first], mk.NOW)
    h.broker.update_book(mk.book(dict.fromkeys(h.names, ENTRY_PRICE * 1.005), mk.NOW))  # the limit rests
    for u in await h.router.send_all(intents, mk.NOW, h.core.causes):
        h.core.on_order_update(u, mk.NOW)
    later = mk.NOW + 60_000
    mk.feed_hot(h.core.history, h.names, later)
    (cand,) = mk.candidates(h.names[:1], later)  # the next bar: a new trace
    for now in (later, later + 5_000):
        await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE * 1.005), now, [cand])
    assert [o.client_order_id for o in await h.broker.open_orders()] == [intents[0].client_order_id]
    (said,) = [e for e in h.sink.trace(cand.trace_id) if e.kind == "signal_snapshot"]
    reason = f"entry order in flight for {cand.symbol} (trace {first.trace_id})"
    assert (said.payload["decision"], said.payload["reason"], said.payload["stage"]) == ("skip", reason, "in_flight")
    assert summarise(cand.trace_id, h.sink.trace(cand.trace_id)).verdict.reason == f"signal decided skip: {reason}"
    assert not [e for e in h.sink.trace(first.trace_id) if e.payload.get("stage") == "in_flight"]


@pytest.mark.parametrize("state", [pytest.param(EngineState.DEGRADED, id="degraded"), pytest.param(EngineState.BLOCKED, id="blocked")])
async def test_no_entries_unless_tradeable_but_exits_continue(state: EngineState) -> None:
    h = Harness(n=2)
    await h.enter(1)
    h.core.set_engine_state(state)
    later = mk.NOW + 60_000
    mk.feed_hot(h.core.history, h.names, later)
    intents = await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE * 0.95), later, mk.candidates(h.names[1:], later))
    assert len(intents) == 1 and "-s1" in intents[0]  # the stop loss went out, no entry
    risk = [e for e in h.sink.events if e.kind == "risk_check"][-1].payload
    assert not risk["approved"] and {"name": "engine_state", "passed": False, "value": state.value, "threshold": "tradeable"} in risk["checks"]


async def test_daily_loss_pauses_entries_and_raises_a_risk_event() -> None:
    h = Harness(n=3, settings=TradingSection(capital=profile(capital=100.0, max_concurrent=2), risk=RiskSettings(max_cluster_exposure=1.0)))
    await h.enter(2)
    # Both positions (~half the equity each) down 3.5 %, inside their 4 % stop: equity -3.7 %
    # with fees and spread -> pause.
    ids = await h.cycle({**dict.fromkeys(h.names, ENTRY_PRICE * 0.965)}, mk.NOW + 1_000)
    assert ids == []
    codes = [e.payload["code"] for e in h.sink.events if e.kind == "risk_event"]
    assert "daily_loss_limit" in codes
    assert h.core.risk.paused
    later = mk.NOW + 120_000
    mk.feed_hot(h.core.history, h.names, later)
    await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE), later, mk.candidates(h.names[2:], later))
    risk = [e for e in h.sink.events if e.kind == "risk_check"][-1].payload
    assert not risk["approved"] and any(c["name"] == "daily_loss" and not c["passed"] for c in risk["checks"])


async def test_the_daily_loss_refusal_reads_the_drawdown_that_tripped_it() -> None:
    """Prices came back after the limit tripped (the pause holds until the day ends): the
    refusal and its replay say the drawdown that tripped it and since when, not today's 0.25 %."""
    settings = TradingSection(
        capital=profile(capital=1000.0, max_concurrent=3, position_fraction=0.5),
        risk=RiskSettings(daily_loss_limit=0.02, max_cluster_exposure=1.0),
    )
    h = Harness(n=3, settings=settings)
    a, b, c = h.names
    await h.enter(2)
    tripped = mk.NOW + 30_000
    await h.cycle({a: ENTRY_PRICE * 0.975, b: ENTRY_PRICE * 0.975, c: ENTRY_PRICE}, tripped)
    assert h.core.risk.paused
    (limit,) = [e.payload for e in h.sink.events if e.kind == "risk_event" and e.payload["code"] == "daily_loss_limit"]
    later = mk.NOW + 120_000
    mk.feed_hot(h.core.history, h.names, later)
    (cand,) = mk.candidates([c], later)
    assert await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE), later, [cand]) == []
    assert h.core.risk.drawdown < 0.01
    (risk,) = [e.payload for e in h.sink.trace(cand.trace_id) if e.kind == "risk_check"]
    (daily,) = [x for x in risk["checks"] if x["name"] == "daily_loss"]
    minute = tripped % DAY_MS // 60_000
    since = f"entries paused since {minute // 60:02d}:{minute % 60:02d} UTC until 00:00 UTC"
    assert daily == {"name": "daily_loss", "passed": False, "value": round(limit["value"], 6), "threshold": 0.02, "detail": since}
    assert summarise(cand.trace_id, h.sink.trace(cand.trace_id)).verdict.reason == (
        f"risk check daily_loss failed: {daily['value']:.6g} < 0.02 does not hold ({since})"
    )


async def test_L5_asks_for_blocked() -> None:
    h = Harness(n=1, settings=TradingSection(capital=profile(capital=100.0, max_concurrent=1, position_fraction=1.0), risk=RiskSettings(level_thresholds=(0.01, 0.02, 0.03, 0.035), max_cluster_exposure=1.0)))
    await h.enter()
    assert not h.core.wants_blocked
    await h.cycle({h.names[0]: ENTRY_PRICE * 0.961}, mk.NOW + 1_000)  # just above the 4 % stop
    assert h.core.wants_blocked
    assert [e.payload["level"] for e in h.sink.events if e.kind == "risk_event" and e.payload["code"] == "risk_level"][-1] == "L5"


async def test_three_losses_in_a_row_start_a_cooldown() -> None:
    h = Harness(n=4, settings=TradingSection(capital=profile(max_concurrent=3)))
    await h.enter(3)
    await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE * 0.95), mk.NOW + 1_000)  # three stop losses
    assert not h.core.book.holdings
    events = [e.payload for e in h.sink.events if e.kind == "risk_event"]
    assert any(e["code"] == "consecutive_losses" for e in events)
    later = mk.NOW + 120_000
    mk.feed_hot(h.core.history, h.names, later)
    assert await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE), later, mk.candidates(h.names[3:], later)) == []
    risk = [e for e in h.sink.events if e.kind == "risk_check"][-1].payload
    assert any(c["name"] == "loss_cooldown" and not c["passed"] for c in risk["checks"])


async def test_symbol_cooldown_after_exit() -> None:
    h = Harness(n=1)
    await h.enter()
    await h.cycle({h.names[0]: ENTRY_PRICE * 0.95}, mk.NOW + 1_000)  # stopped out
    later = mk.NOW + 120_000
    mk.feed_hot(h.core.history, h.names, later)
    assert await h.cycle({h.names[0]: ENTRY_PRICE}, later, mk.candidates(h.names, later)) == []
    snap = [e for e in h.sink.events if e.kind == "signal_snapshot" and e.payload["stage"] == "entry"][-1].payload
    assert snap["decision"] == "skip" and "cooldown" in snap["reason"]


async def test_cluster_cap_limits_entries_per_theme() -> None:
    names = mk.symbols(3)
    risk = RiskSettings(clusters=dict.fromkeys(names, "meme"), max_positions_per_cluster=2)
    h = Harness(n=3, settings=TradingSection(capital=profile(), risk=risk))
    assert len(await h.enter()) == 2
    refused = [e for e in h.sink.events if e.kind == "risk_check"][-1].payload
    assert any(c["name"] == "cluster_count:meme" and not c["passed"] for c in refused["checks"])


async def test_an_entry_waits_while_the_spread_would_open_it_at_its_stop() -> None:
    """Bid 3 % under and ask 3 % over the last: a buy at the ask, marked at the bid, opened 6 %
    down and the 4 % stop sold it on the next tick with the book unchanged (-12.23 for nothing).
    The `spread` check refuses it (a quarter of the stop by default), and the coin is entered
    at a later bar once the book narrows; with no bid/ask known the check says so and refuses."""
    h = Harness(n=1)
    s = h.names[0]
    wide = {"bid": {s: ENTRY_PRICE * 0.97}, "ask": {s: ENTRY_PRICE * 1.03}}
    cands = mk.candidates([s], mk.NOW)
    assert h.core.step(make_batch({s: ENTRY_PRICE}, ts_ms=mk.NOW, **wide), cands, mk.NOW) == []
    (refused,) = [e.payload for e in h.sink.events if e.kind == "risk_check"]
    spread = next(c for c in refused["checks"] if c["name"] == "spread")
    assert not refused["approved"] and spread == check("spread", False, round(0.06 / 1.03, 6), 0.01)
    assert summarise(cands[0].trace_id, h.sink.trace(cands[0].trace_id)).verdict.reason == (
        "risk check spread failed: 0.058252 ≤ 0.01 does not hold"
    )
    later = mk.NOW + 60_000  # the next bar's signal, the book back to 0.1 %: in
    mk.feed_hot(h.core.history, [s], later)
    assert len(await h.cycle({s: ENTRY_PRICE}, later, mk.candidates([s], later))) == 1
    no_book = Harness(n=1)
    assert no_book.core.step(mk.book({}, mk.NOW), cands, mk.NOW) == []
    (unknown,) = [c for e in no_book.sink.events if e.kind == "risk_check" for c in e.payload["checks"] if c["name"] == "spread"]
    assert (unknown["passed"], unknown["value"], unknown["detail"]) == (False, None, "no bid/ask known")


@pytest.mark.parametrize(
    ("exits", "risk", "approved"),
    [
        pytest.param(ExitSettings(), RiskSettings(), True, id="default-1pct-of-a-4pct-stop"),
        pytest.param(ExitSettings(stop_loss=0.01), RiskSettings(), False, id="a-quarter-of-a-1pct-stop"),
        pytest.param(ExitSettings(), RiskSettings(max_spread=0.002), False, id="set-to-0.2pct"),
    ],
)
async def test_the_spread_limit_is_a_share_of_the_stop_unless_set(exits: ExitSettings, risk: RiskSettings, approved: bool) -> None:
    """A 0.3 % spread: under a quarter of the default 4 % stop, over a quarter of a 1 % stop
    and over a `risk.max_spread` of 0.2 %."""
    h = Harness(n=1, settings=TradingSection(capital=profile(), exits=exits, risk=risk))
    s = h.names[0]
    book = make_batch({s: ENTRY_PRICE}, ts_ms=mk.NOW, bid={s: ENTRY_PRICE * 0.9985}, ask={s: ENTRY_PRICE * 1.0015})
    assert len(h.core.step(book, mk.candidates([s], mk.NOW), mk.NOW)) == int(approved)
    (said,) = [c for e in h.sink.events if e.kind == "risk_check" for c in e.payload["checks"] if c["name"] == "spread"]
    assert said["passed"] is approved and said["threshold"] == pytest.approx(risk.max_spread or exits.stop_loss / 4)


async def test_a_partly_filled_limit_entry_takes_one_slot() -> None:
    """A coin both held (the filled part) and pending (the rest of its limit) is one position
    against `max_concurrent`: counted twice, the next coin was refused "max_concurrent 2/2"
    with one position open."""
    import dataclasses

    from engine.domain import Fill, Order, Side
    from engine.execution.broker import OrderUpdate

    settings = TradingSection(
        capital=profile(max_concurrent=2), execution=ExecutionSettings(entry_order_type="limit", limit_expiry_ms=600_000)
    )
    h = Harness(n=2, settings=settings)
    a, b = h.names
    prices = dict.fromkeys(h.names, ENTRY_PRICE)
    (entry,) = h.core.step(mk.book(prices, mk.NOW), mk.candidates([a], mk.NOW), mk.NOW)
    half = entry.quantity / 2
    placed = Order.from_intent(entry, OrderStatus.PARTIALLY_FILLED, mk.NOW, "x1")
    fill = Fill("p1", entry.client_order_id, a, Side.BUY, float(entry.price or 0), float(half), 0.0, mk.NOW, entry.trace_id)
    h.core.on_order_update(OrderUpdate(dataclasses.replace(placed, filled_qty=half), (fill,)), mk.NOW)
    assert a in h.core.book.holdings and h.core.pending_entries() == {entry.client_order_id}
    later = mk.NOW + 60_000
    mk.feed_hot(h.core.history, [b], later)
    (second,) = h.core.step(mk.book(prices, later), mk.candidates([b], later), later)
    assert second.symbol == b
    (approved,) = [e.payload for e in h.sink.events if e.kind == "risk_check" and e.symbol == b]
    assert check("max_concurrent", True, 1, 2) in approved["checks"]


async def test_a_held_coins_hold_decision_hangs_off_its_position_in_its_own_trace() -> None:
    """A later bar's candidate for the held coin is another trace: the position's hold decision
    was caused by its `candidate_snapshot`, so replay drew it as a second root. It hangs off
    the position's open (as exit decisions do) and names the candidate in its payload."""
    h = Harness(n=1)
    await h.enter()
    (held,) = h.core.book.holdings.values()
    nxt = mk.NOW + 60_000
    mk.feed_hot(h.core.history, h.names, nxt)
    (cand,) = mk.candidates(h.names, nxt)
    snap = h.sink.emit(
        "candidate_snapshot", ts_ms=nxt, trace_id=cand.trace_id, symbol=cand.symbol,
        payload={"heat": cand.heat, "components": {}, "rank": 1, "price": cand.price, "filters": [], "accepted": True},
    )  # fmt: skip
    batch = mk.book({cand.symbol: ENTRY_PRICE}, nxt)
    h.core.step(batch, [cand], nxt, causes={cand.trace_id: snap})
    trace = held.position.trace_id
    assert cand.trace_id != trace
    (hold,) = [e for e in h.sink.trace(trace) if e.kind == "signal_snapshot" and e.payload["stage"] == "exit"]
    assert hold.payload["decision"] == "hold"
    assert (hold.cause, hold.payload["candidate_seq"]) == (held.opened_seq, snap)
    assert len(summarise(trace, h.sink.trace(trace)).roots) == 1


async def test_max_hold_and_signal_exit() -> None:
    h = Harness(n=2)
    await h.enter()
    # Heat decays on the next bar for names[1]: its exit signal fires, names[0] holds.
    nxt = mk.NOW + 60_000
    mk.feed_hot(h.core.history, h.names, nxt)
    cands = mk.candidates(h.names[:1], nxt) + mk.candidates(h.names[1:], nxt, heat=10.0)
    await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE), nxt, cands)
    purposes = [e.payload["purpose"] for e in h.sink.events if e.kind == "order_attempt"][2:]
    assert purposes == ["signal_exit"]
    decided = [e.payload for e in h.sink.events if e.kind == "signal_snapshot" and e.payload.get("stage") == "exit_policy"]
    assert decided[-1]["reason"] == "exit rules fired: heat_decay"
    await h.cycle(dict.fromkeys(h.names, ENTRY_PRICE), mk.NOW + 4 * 3_600_000)
    purposes = [e.payload["purpose"] for e in h.sink.events if e.kind == "order_attempt"][2:]
    assert purposes == ["signal_exit", "max_hold"] and not h.core.book.holdings
    # The closed trades remember which signal rules closed them (the backtest's exits table splits by them).
    assert {t.symbol: t.exit_rules for t in h.core.book.closed} == {h.names[1]: ("heat_decay",), h.names[0]: ()}


async def test_resting_limit_entry_is_cancelled_at_expiry() -> None:
    settings = TradingSection(capital=profile(), execution=ExecutionSettings(entry_order_type="limit", limit_offset=0.0, limit_expiry_ms=30_000))
    h = Harness(n=1, settings=settings)
    batch = mk.book({h.names[0]: ENTRY_PRICE}, mk.NOW)
    intents = h.core.step(batch, mk.candidates(h.names, mk.NOW), mk.NOW)
    (intent,) = intents
    assert intent.expires_ms == mk.NOW + 30_000 and intent.price is not None
    h.broker.update_book(mk.book({h.names[0]: ENTRY_PRICE * 1.05}, mk.NOW))  # book ran away before it arrived
    (update,) = await h.router.send_all(intents, mk.NOW, h.core.causes)
    h.core.on_order_update(update, mk.NOW)
    assert update.order.status is OrderStatus.OPEN and h.core.reserved_cash() > 0
    await h.cycle({h.names[0]: ENTRY_PRICE * 1.05}, mk.NOW + 30_000)
    assert h.core.reserved_cash() == 0 and not h.core.book.holdings


async def test_rejected_exit_is_retried_with_the_next_leg() -> None:
    h = Harness(n=1)
    await h.enter()
    h.broker.update_book(mk.book({h.names[0]: float("nan")}, mk.NOW + 1000))  # no price: the paper broker refuses (retryable)
    intents = h.core.on_tickers(mk.book({h.names[0]: ENTRY_PRICE * 0.95}, mk.NOW + 1000), mk.NOW + 1000)
    for u in await h.router.send_all(intents, mk.NOW + 1000, h.core.causes):
        h.core.on_order_update(u, mk.NOW + 1000)
    assert h.core.book.holdings
    ids = await h.cycle({h.names[0]: ENTRY_PRICE * 0.95}, mk.NOW + 2000)
    assert [i[-2:] for i in ids] == ["s2"] and not h.core.book.holdings


def test_trading_config_loads_with_defaults_and_env() -> None:
    cfg = load_config(env={"HOTCOIN_TRADING__CAPITAL__PROFILE": "growth", "HOTCOIN_TRADING__EXECUTION__FEE_RATE": "0.00075"}).config
    assert cfg.trading.capital.active.capital == 300.0 and cfg.trading.capital.active.min_heat == 50.0
    assert cfg.trading.execution.fee_rate == 0.00075


def test_every_trading_setting_is_documented() -> None:
    from pydantic import BaseModel

    def walk(model: type[BaseModel]) -> list[str]:
        missing = []
        for name, info in model.model_fields.items():
            if not info.description:
                missing.append(f"{model.__name__}.{name}")
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                missing += walk(ann)
        return missing

    assert walk(TradingSection) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moves=st.lists(st.lists(st.floats(0.9, 1.12), min_size=6, max_size=6), min_size=1, max_size=6),
    max_exposure=st.sampled_from([0.3, 0.6, 1.0]),
    cluster=st.sampled_from([0.2, 0.5, 1.0]),
    max_concurrent=st.integers(1, 5),
)
async def test_core_exposure_never_exceeds_caps(moves: list[list[float]], max_exposure: float, cluster: float, max_concurrent: int) -> None:
    """Whenever the core approves an entry, exposure right after it (valued at the current
    prices, in-flight entries included) is within the total and cluster caps, and the number of
    positions within max_concurrent. (Prices moving later may lift old positions above a cap;
    that only stops further entries.)"""
    names = mk.symbols(6)
    risk = RiskSettings(max_exposure=max_exposure, max_cluster_exposure=cluster, clusters=dict.fromkeys(names[:3], "x"))
    h = Harness(n=6, settings=TradingSection(capital=profile(capital=1000.0, max_concurrent=max_concurrent), risk=risk))
    for k, move in enumerate(moves):
        now = mk.NOW + k * 60_000
        mk.feed_hot(h.core.history, h.names, now)
        batch = mk.book({n: ENTRY_PRICE * m for n, m in zip(names, move, strict=True)}, now)
        h.broker.update_book(batch)
        intents = h.core.step(batch, mk.candidates(names, now), now)
        entries = [i for i in intents if i.purpose is OrderPurpose.ENTRY]
        if entries:
            equity = h.core.equity()
            notionals = h.core.notionals()
            assert sum(notionals.values()) <= equity * max_exposure * (1 + 1e-9)
            if any(i.symbol in names[:3] for i in entries):
                assert sum(notionals.get(s, 0.0) for s in names[:3]) <= equity * cluster * (1 + 1e-9)
            assert len(notionals) <= max_concurrent
        for update in await h.router.send_all(intents, now, h.core.causes):
            h.core.on_order_update(update, now)
    assert h.core.book.holdings or h.core.book.closed  # entries did happen: the property was exercised


def test_daily_reset_is_utc_midnight_from_now_ms() -> None:
    h = Harness(n=1)
    core = h.core
    day = (mk.NOW // DAY_MS) * DAY_MS
    core.on_tickers(mk.book({h.names[0]: 1.0}, day + 1000), day + 1000)
    core.on_tickers(mk.book({h.names[0]: 1.0}, day + DAY_MS), day + DAY_MS)
    assert [e.payload["code"] for e in h.sink.events if e.kind == "risk_event"] == ["day_start", "daily_reset"]


async def test_same_core_trades_through_the_exchange_broker() -> None:
    from engine.execution.exchange_broker import ExchangeBroker
    from engine.market.fake import FakeGateway

    h = Harness(n=1)
    gw = FakeGateway(mk.markets(h.names))
    router = OrderRouter(ExchangeBroker(gw), h.sink)
    batch = mk.book({h.names[0]: ENTRY_PRICE}, mk.NOW)
    gw.push_tickers(batch)
    intents = h.core.step(batch, mk.candidates(h.names, mk.NOW), mk.NOW)
    for u in await router.send_all(intents, mk.NOW, h.core.causes):
        h.core.on_order_update(u, mk.NOW)
    assert h.names[0] in h.core.book and gw.created[0].client_order_id == intents[0].client_order_id
    (pos,) = h.core.book.positions()
    assert h.core.exposure() == pytest.approx(pos.quantity * ENTRY_PRICE * 0.9995)  # valued at the bid
    crash = mk.book({h.names[0]: ENTRY_PRICE * 0.9}, mk.NOW + 1000)
    gw.push_tickers(crash)
    exits = h.core.on_tickers(crash, mk.NOW + 1000)
    for u in await router.send_all(exits, mk.NOW + 1000, h.core.causes):
        h.core.on_order_update(u, mk.NOW + 1000)
    assert not h.core.book.holdings
    assert [e.payload["action"] for e in h.sink.events if e.kind == "position_update"] == ["open", "close"]


@pytest.mark.parametrize(
    "module",
    [
        "engine/trading.py",
        "engine/signals/features.py",
        "engine/signals/rules.py",
        "engine/signals/stage.py",
        "engine/signals/bars.py",
        "engine/signals/cache.py",
        "engine/portfolio/positions.py",
        "engine/portfolio/exits.py",
        "engine/portfolio/allocator.py",
        "engine/portfolio/risk.py",
        "engine/portfolio/clusters.py",
        "engine/execution/precheck.py",
        "engine/execution/client_ids.py",
        "engine/execution/order_fsm.py",
    ],
)
def test_decision_core_reads_no_clock_and_does_no_io(module: str) -> None:
    """Time is passed in as now_ms; the core never awaits, sleeps or reads the wall clock."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[2] / module).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"time", "datetime", "asyncio", "socket", "sqlite3", "aiohttp", "ccxt"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.Await)]


async def test_refused_take_profit_is_not_counted_as_hit() -> None:
    from engine.domain import Order, OrderIntent
    from engine.errors import NonRetryableOrderError
    from engine.execution.broker import Broker, OrderUpdate

    class Refusing(Broker):
        async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
            raise NonRetryableOrderError("exchange said no", code=-2010)

        async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
            raise NonRetryableOrderError("nothing to cancel", code=-2011)

        async def sync(self, now_ms: int) -> list[OrderUpdate]:
            return []

        async def open_orders(self) -> list[Order]:
            return []

    h = Harness(n=1)
    await h.enter()
    up = {h.names[0]: ENTRY_PRICE * 1.06}
    (tp,) = intents = h.core.on_tickers(mk.book(up, mk.NOW + 1000), mk.NOW + 1000)
    for u in await OrderRouter(Refusing(), h.sink).send_all(intents, mk.NOW + 1000, h.core.causes):
        h.core.on_order_update(u, mk.NOW + 1000)
    assert h.core.book.holdings[h.names[0]].position.tp_tiers_hit == ()
    assert await h.cycle(up, mk.NOW + 2000) == []  # refused as sent: the retry waits (EXIT_RETRY_MS)
    (retry,) = await h.cycle(up, mk.NOW + 1000 + EXIT_RETRY_MS)
    assert retry.endswith("-t2") and tp.client_order_id.endswith("-t1")
    pos = h.core.book.holdings[h.names[0]].position
    assert pos.tp_tiers_hit == (0,) and pos.stop_price == pos.entry_price  # breakeven after tier 1


async def test_exit_the_exchange_refuses_is_journaled_once_not_every_tick() -> None:
    from dataclasses import replace

    from engine.domain import MarketStatus

    h = Harness(n=1)
    await h.enter()
    h.core.markets = {s: replace(m, status=MarketStatus.HALT) for s, m in h.core.markets.items()}
    for k in range(5):
        assert await h.cycle({h.names[0]: ENTRY_PRICE * 0.9}, mk.NOW + 1000 * (k + 1)) == []
    refusals = [e for e in h.sink.events if e.kind == "signal_snapshot" and e.payload["stage"] == "exit_policy"]
    assert len(refusals) == 1
    assert any(r["name"] == "precheck:market_active" and not r["passed"] for r in refusals[0].payload["rules"])
    assert h.core.book.holdings  # halted, not written off


def test_fee_taken_in_coins_is_not_held_and_leaves_no_dust_position() -> None:
    """Binance keeps a buy's commission in the coins bought: the core holds only what arrived,
    pays only the notional in cash, and a full exit that leaves unsellable crumbs closes."""
    from decimal import Decimal

    from engine.domain import Order, OrderType, Side
    from engine.execution.broker import OrderUpdate
    from tests.kit.domain import make_fill, make_market

    sink = RecordingSink()
    market = make_market("DOGE/USDT", step_size="1", min_qty="1", min_notional="5")
    settings = load_config(env={}).config.trading
    core = TradingCore(settings, {"DOGE/USDT": market}, sink)
    cash0 = core.cash

    def order(cid: str, side: Side, purpose: OrderPurpose, qty: str) -> Order:
        return Order(cid, "1", "DOGE/USDT", side, OrderType.MARKET, OrderStatus.FILLED, Decimal(qty), Decimal(qty),
                     average_price=0.3, trace_id="t1", purpose=purpose)  # fmt: skip

    buy = make_fill(client_order_id="b", quantity=100.0, price=0.3, fee_quote=0.03, fee_base=0.1, trade_id="x1")
    core.on_order_update(OrderUpdate(order("b", Side.BUY, OrderPurpose.ENTRY, "100"), (buy,)), 0)
    held = core.book.get("DOGE/USDT")
    assert held is not None
    assert held.position.quantity == pytest.approx(99.9)
    assert core.cash == pytest.approx(cash0 - 30.0)  # the coins paid the fee, not the cash

    sell = make_fill(client_order_id="s", side=Side.SELL, quantity=99.0, price=0.3, fee_quote=0.0297, trade_id="x2")
    core.on_order_update(OrderUpdate(order("s", Side.SELL, OrderPurpose.STOP_LOSS, "99"), (sell,)), 1)
    assert "DOGE/USDT" not in core.book.holdings  # 0.9 DOGE left: below the step, written off
    actions = [e.payload["action"] for e in sink.events if e.kind == "position_update"]
    assert actions[0] == "open"
    assert actions[-1] == "close"
    fill_events = [e.payload for e in sink.events if e.kind == "fill"]
    assert fill_events[0]["fee_base"] == 0.1


def test_a_dust_write_off_is_stamped_at_the_fill_that_left_the_dust() -> None:
    """The exit is decided at 23:59:59.9 and the exchange fills it just after midnight: the
    crumbs it leaves are written off at the fill's time, not the decision's (before the fill:
    the trace read backwards and the close landed on the previous day)."""
    from decimal import Decimal

    from engine.domain import Order, OrderType, Side
    from engine.execution.broker import OrderUpdate
    from tests.kit.domain import make_fill, make_market

    sink = RecordingSink()
    market = make_market("DOGE/USDT", step_size="1", min_qty="1", min_notional="5")
    core = TradingCore(load_config(env={}).config.trading, {"DOGE/USDT": market}, sink)
    midnight = DAY_MS * 20_000

    def order(cid: str, side: Side, purpose: OrderPurpose, qty: str) -> Order:
        return Order(cid, "1", "DOGE/USDT", side, OrderType.MARKET, OrderStatus.FILLED, Decimal(qty), Decimal(qty),
                     average_price=0.3, trace_id="t1", purpose=purpose)  # fmt: skip

    buy = make_fill(client_order_id="b", quantity=100.0, price=0.3, fee_quote=0.03, fee_base=0.1, ts_ms=midnight - 60_000)
    core.on_order_update(OrderUpdate(order("b", Side.BUY, OrderPurpose.ENTRY, "100"), (buy,)), midnight - 60_000)
    sell = make_fill(client_order_id="s", side=Side.SELL, quantity=99.0, price=0.3, fee_quote=0.0297, trade_id="x2",
                     ts_ms=midnight + 50)  # fmt: skip
    core.on_order_update(OrderUpdate(order("s", Side.SELL, OrderPurpose.STOP_LOSS, "99"), (sell,)), midnight - 100)
    (dust,) = [e for e in sink.events if e.kind == "position_update" and e.payload["reason"] == "dust"]
    (fill,) = [e for e in sink.events if e.kind == "fill" and e.payload["side"] == "sell"]
    assert dust.ts_ms == fill.ts_ms == midnight + 50
    assert core.book.closed[-1].closed_ms == midnight + 50


async def test_a_flash_tick_under_the_minimum_notional_holds_the_position() -> None:
    """One tick with the bid down 98 % fires the stop, and the exchange refuses the sell (under
    its minimum notional). That is a crashed quote, not dust: the position is held and its
    refusal journaled once, and it sells normally once the price is back."""
    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    qty = h.core.book.holdings[s].position.quantity
    assert await h.cycle({s: ENTRY_PRICE * 0.02}, mk.NOW + 10_000) == []
    assert await h.cycle({s: ENTRY_PRICE * 0.02}, mk.NOW + 11_000) == []
    assert h.core.book.holdings[s].position.quantity == qty  # held, not written off
    refused = [e for e in h.sink.events if e.kind == "signal_snapshot" and e.payload["stage"] == "exit_policy"]
    assert len(refused) == 1
    assert any(r["name"] == "precheck:min_notional" and not r["passed"] for r in refused[0].payload["rules"])
    assert not [e for e in h.sink.events if e.kind == "position_update" and e.payload["reason"] == "dust"]
    assert await h.cycle({s: ENTRY_PRICE}, mk.NOW + 20_000) == []  # back: the stop no longer fires
    (sell,) = await h.cycle({s: ENTRY_PRICE * 0.9}, mk.NOW + 30_000)  # a real stop-out sells
    assert sell.endswith("-s1")
    assert s not in h.core.book.holdings


async def test_a_position_worth_under_the_minimum_at_cost_is_written_off() -> None:
    """A remainder the exchange would refuse even at its entry price is dust: written off
    (its cost as a loss) instead of an exit retried forever."""
    from dataclasses import replace
    from decimal import Decimal

    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    market = h.core.markets[s]
    h.core.markets = {s: replace(market, filters=replace(market.filters, min_notional=Decimal(10_000)))}
    assert await h.cycle({s: ENTRY_PRICE * 0.9}, mk.NOW + 10_000) == []
    assert s not in h.core.book.holdings
    (closed,) = [e.payload for e in h.sink.events if e.kind == "position_update" and e.payload["action"] == "close"]
    assert closed["reason"] == "dust"


async def test_an_infinite_quote_is_ignored_not_traded_on() -> None:
    import numpy as np

    from engine.domain import TickerBatch

    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    b = mk.book({s: ENTRY_PRICE}, mk.NOW + 10_000)
    inf = np.array([np.inf])
    bad = TickerBatch(b.ts_ms, b.symbols, b.event_ms, b.last, inf, inf, b.open_24h, b.high_24h, b.low_24h,
                      b.base_volume_24h, b.quote_volume_24h, b.trade_count_24h)  # fmt: skip
    assert h.core.step(bad, [], mk.NOW + 10_000) == []
    assert s in h.core.book.holdings
    assert not [e for e in h.sink.events if e.kind == "position_update" and e.payload["action"] != "open"]


async def test_a_fill_the_book_refuses_changes_no_cash_and_can_be_booked_later() -> None:
    """A sell of more than is held is a `fill_refused` risk event, booked as nothing: cash, the
    position and the seen trade ids do not move; the same fill redelivered as it should be is
    booked (not skipped as seen)."""
    from decimal import Decimal

    from engine.domain import Fill, Order, OrderType, Side
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    pos = h.core.book.holdings[s].position
    cash, events = h.core.cash, len(h.sink.events)
    cid = f"hc-{pos.trace_id}-s1"
    too_much = pos.quantity * 2
    order = Order(cid, "x1", s, Side.SELL, OrderType.MARKET, OrderStatus.FILLED, Decimal(repr(too_much)),
                  Decimal(repr(too_much)), average_price=ENTRY_PRICE, trace_id=pos.trace_id, purpose=OrderPurpose.STOP_LOSS)  # fmt: skip
    fill = Fill("t-1", cid, s, Side.SELL, ENTRY_PRICE, too_much, 0.1, mk.NOW + 5000, pos.trace_id)
    h.core.on_order_update(OrderUpdate(order, (fill,)), mk.NOW + 5000)
    refused = [e for e in h.sink.events[events:] if e.kind != "risk_level"]
    assert [(e.kind, e.payload["code"]) for e in refused] == [("risk_event", "fill_refused")]
    assert "exceeds" in refused[0].payload["detail"] and refused[0].trace_id == pos.trace_id
    assert (h.core.cash, h.core.book.holdings[s].position.quantity) == (cash, pos.quantity)
    events = len(h.sink.events)
    zero = Fill("t-2", "hc-x-e1", s, Side.BUY, 0.0, 10.0, 0.5, mk.NOW + 6000, "x")
    buy = Order("hc-x-e1", "x2", s, Side.BUY, OrderType.MARKET, OrderStatus.FILLED, Decimal(10), Decimal(10), trace_id="x")
    h.core.on_order_update(OrderUpdate(buy, (zero,)), mk.NOW + 6000)
    assert [e.payload["code"] for e in h.sink.events[events:] if e.kind == "risk_event"] == ["fill_refused"]
    assert "positive" in h.sink.events[-1].payload["detail"] and h.core.cash == cash
    exact = Fill("t-1", cid, s, Side.SELL, ENTRY_PRICE, pos.quantity, 0.1, mk.NOW + 7000, pos.trace_id)  # the reconciled report
    h.core.on_order_update(OrderUpdate(order, (exact,)), mk.NOW + 7000)
    assert s not in h.core.book.holdings
    assert h.core.cash == pytest.approx(cash + pos.quantity * ENTRY_PRICE - 0.1)


async def test_an_exit_whose_fill_the_book_refuses_is_released_and_the_position_exits_again() -> None:
    """The close-all's sell reported filled for more than the book holds: refused, the order was
    left as the position's exit in flight for good (the broker has it finished and never reports
    it again), so its stops and the close-all skipped the position for the rest of the run."""
    import dataclasses
    from decimal import Decimal

    from engine.domain import Fill, Order
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    now = mk.NOW + 60_000
    h.core.begin_close_all(now)
    (sell,) = h.core.close_all_intents(now)
    held = h.core.book.holdings[s]
    assert held.pending_exit == sell.client_order_id
    twice = sell.quantity * 2
    order = dataclasses.replace(Order.from_intent(sell, OrderStatus.FILLED, now), filled_qty=twice, average_price=ENTRY_PRICE)
    fill = Fill("t-x", sell.client_order_id, s, sell.side, ENTRY_PRICE, float(twice), 0.0, now, sell.trace_id)
    h.core.on_order_update(OrderUpdate(order, (fill,)), now)
    assert held.pending_exit is None and h.core.book.holdings[s] is held
    (again,) = h.core.close_all_intents(now + 1000)  # the close-all goes on with what is held
    assert again.symbol == s and again.quantity <= Decimal(repr(held.position.quantity))


async def test_a_position_reopened_by_its_resting_entry_exits_on_a_new_client_id() -> None:
    """A limit entry fills in part, the stop sells that part, then the rest of the entry fills
    and reopens the position under the same trace: its next exit must not reuse the first
    exit's client id (the router drops a sent id, and the position would never exit)."""
    import dataclasses
    from decimal import Decimal

    from engine.config.sections.trading import ExecutionSettings
    from engine.domain import Fill, Order, Side
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1, settings=TradingSection(capital=profile(), execution=ExecutionSettings(entry_order_type="limit")))
    s, core, now = h.names[0], h.core, mk.NOW
    (entry,) = core.step(mk.book({s: ENTRY_PRICE}, now), mk.candidates([s], now), now)
    placed = Order.from_intent(entry, OrderStatus.PARTIALLY_FILLED, now, "x1")
    part = (entry.quantity * Decimal("0.4")).quantize(Decimal(1))
    fill = Fill("p1", entry.client_order_id, s, Side.BUY, float(entry.price or 0), float(part), 0.0, now, entry.trace_id)
    core.on_order_update(OrderUpdate(dataclasses.replace(placed, filled_qty=part), (fill,)), now)
    (first,) = await h.cycle({s: ENTRY_PRICE * 0.9}, now + 10_000)
    assert s not in core.book.holdings
    rest = Fill("p2", entry.client_order_id, s, Side.BUY, float(entry.price or 0), float(entry.quantity - part), 0.0,
                now + 20_000, entry.trace_id)  # fmt: skip
    done = dataclasses.replace(placed, status=OrderStatus.FILLED, filled_qty=entry.quantity)
    core.on_order_update(OrderUpdate(done, (rest,)), now + 20_000)
    assert core.book.holdings[s].position.trace_id == entry.trace_id
    (second,) = await h.cycle({s: ENTRY_PRICE * 0.9}, now + 30_000)
    assert (first, second) == (f"hc-{entry.trace_id}-s1", f"hc-{entry.trace_id}-s2")
    assert h.router.suppressed == 0
    assert s not in core.book.holdings


@pytest.mark.parametrize("slippage_bps", [0.0, 20.0, 200.0])
async def test_an_all_in_entry_never_spends_cash_it_does_not_have(slippage_bps: float) -> None:
    """One position may take all the capital; the market buy fills at ask + slippage and pays
    the fee on that: sizing, the balance check and the reservation all count the slippage."""
    from engine.config.sections.trading import (
        CapitalProfile,
        CapitalSettings,
        ExecutionSettings,
        RiskSettings,
    )

    cap = CapitalSettings(profile="t", profiles={"t": CapitalProfile(capital=100.0, max_concurrent=1, position_fraction=1.0)})
    settings = TradingSection(capital=cap, execution=ExecutionSettings(slippage_bps=slippage_bps), risk=RiskSettings(max_cluster_exposure=1.0))
    h = Harness(n=1, settings=settings)
    assert len(await h.enter()) == 1
    (fill,) = [e.payload for e in h.sink.events if e.kind == "fill"]
    (attempt,) = [e.payload for e in h.sink.events if e.kind == "order_attempt"]
    assert fill["price"] == pytest.approx(attempt["reference_price"] * (1 + slippage_bps / 10_000))
    assert 0.0 <= h.core.cash < 1.0  # spent nearly all of it, never more


async def test_an_order_settled_as_never_reached_that_lands_late_is_booked_once() -> None:
    """The exchange broker reports an order it had journaled rejected (never reached) when the
    exchange places it after all: the entry opens the position after its reservation was
    released, the exit closes it, each once however often its update comes."""
    from dataclasses import replace
    from decimal import Decimal

    from engine.domain import Fill, Order, OrderIntent
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    s = h.names[0]
    start_cash = h.core.cash

    def lands_late(intent: OrderIntent, price: float, fee: float, sent: int) -> None:
        pending = Order.from_intent(intent, OrderStatus.PENDING, sent)
        h.core.on_order_update(OrderUpdate(pending), sent)  # the create's outcome is unknown
        h.core.on_order_update(OrderUpdate(replace(pending, status=OrderStatus.REJECTED)), sent + 10_000)
        filled = replace(pending, status=OrderStatus.FILLED, filled_qty=intent.quantity, average_price=price)
        cid, qty = intent.client_order_id, intent.quantity
        fill = Fill(f"{cid}:{qty}", cid, s, intent.side, price, float(qty), fee, sent + 40_000, intent.trace_id)
        for _ in range(2):  # the same update twice (a sync and a redelivery)
            h.core.on_order_update(OrderUpdate(filled, (fill,)), sent + 40_000)

    (entry,) = h.core.step(mk.book({s: ENTRY_PRICE}, mk.NOW), mk.candidates(h.names, mk.NOW), mk.NOW)
    assert h.core.reserved_cash() > 0
    lands_late(entry, ENTRY_PRICE, 0.05, mk.NOW)
    assert h.core.reserved_cash() == 0
    assert h.core.book.holdings[s].position.quantity == float(entry.quantity)
    assert h.core.cash == pytest.approx(start_cash - float(entry.quantity) * ENTRY_PRICE - 0.05)
    low = ENTRY_PRICE * 0.95  # past the stop
    (stop,) = h.core.on_tickers(mk.book({s: low}, mk.NOW + 60_000), mk.NOW + 60_000)
    assert stop.quantity == Decimal(repr(float(entry.quantity)))
    lands_late(stop, low, 0.04, mk.NOW + 60_000)
    assert s not in h.core.book.holdings and len(h.core.book.closed) == 1
    assert h.core.cash == pytest.approx(start_cash - float(entry.quantity) * (ENTRY_PRICE - low) - 0.09)
    assert [e.payload["action"] for e in h.sink.events if e.kind == "position_update"] == ["open", "close"]


async def test_a_stop_larger_than_market_lot_size_sells_in_several_orders_until_flat() -> None:
    """Paper mode runs the same precheck as the exchange mode: an exit over MARKET_LOT_SIZE's
    maxQty goes out cut to it, and the next cycles sell the rest, each journaled as cut."""
    from dataclasses import replace
    from decimal import Decimal

    h = Harness(n=1)
    s = h.names[0]
    await h.enter()
    market = h.core.markets[s]  # cut after the entry (a market buy is cut too)
    h.core.markets = {s: replace(market, filters=replace(market.filters, market_max_qty=Decimal(50)))}
    qty = Decimal(repr(h.core.book.holdings[s].position.quantity))
    assert qty > 100
    sent = []
    for k in range(1, 8):
        sent += await h.cycle({s: ENTRY_PRICE * 0.9}, mk.NOW + 10_000 * k)
        if s not in h.core.book.holdings:
            break
    assert s not in h.core.book.holdings
    sold = [Decimal(e.payload["quantity"]) for e in h.sink.events if e.kind == "order_attempt" and e.payload["purpose"] == "stop_loss"]
    # All of it but the crumbs under the lot step the buy's fee (taken in coins) left: written off.
    sellable = market.round_qty(qty)
    assert len(sold) == len(sent) > 2 and max(sold) == 50 and sum(sold) == sellable < qty
    cut = [r for e in h.sink.events if e.kind == "signal_snapshot" and e.payload["stage"] == "exit_policy" for r in e.payload["rules"] if r["name"] == "precheck:market_max_qty"]
    assert cut[0]["value"] == f"{sold[0]} of {sellable} (the rest in a later order)" and cut[-1]["value"] == str(sold[-1])


async def test_a_limit_entry_outside_the_percent_price_band_is_refused_with_its_reason() -> None:
    from dataclasses import replace
    from decimal import Decimal

    settings = TradingSection(capital=profile(), execution=ExecutionSettings(entry_order_type="limit", limit_offset=0.01))
    h = Harness(n=1, settings=settings)
    s = h.names[0]
    market = h.core.markets[s]
    band = replace(market.filters, bid_multiplier_up=Decimal("1.005"), bid_multiplier_down=Decimal("0.2"), avg_price_mins=5)
    h.core.markets = {s: replace(market, filters=band)}
    assert await h.enter() == []
    (risk,) = [e.payload for e in h.sink.events if e.kind == "risk_check"]
    assert not risk["approved"]
    failed = [c for c in risk["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["precheck:percent_price_by_side"]
    assert "x bid multipliers" in failed[0]["threshold"]


async def test_an_exit_refused_as_sent_backs_off_and_a_position_with_no_coins_left_is_gone() -> None:
    """Refused exits are not resent every tick: the next waits 30 s, and one alert says why.
    Told that the exchange holds none of the coins, the core lets the position go (written
    down, journaled, not counted in the losing streak) rather than sell what is not there."""
    from engine.domain import Order
    from engine.errors import InsufficientBalanceError
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    crash = {s: ENTRY_PRICE * 0.8}
    (intent,) = h.core.step(mk.book(crash, mk.NOW + 10_000), [], mk.NOW + 10_000)
    refused = Order.from_intent(intent, OrderStatus.REJECTED, mk.NOW + 10_000)
    error = InsufficientBalanceError("insufficient balance", code=-2010)
    h.core.on_order_update(OrderUpdate(refused, error=error), mk.NOW + 10_000)
    assert h.core.step(mk.book(crash, mk.NOW + 11_000), [], mk.NOW + 11_000) == []  # backing off
    assert h.core.step(mk.book(crash, mk.NOW + 39_000), [], mk.NOW + 39_000) == []
    alerts = [e for e in h.sink.events if e.kind == "risk_event" and e.payload["code"] == "exit_refused"]
    assert len(alerts) == 1
    h.core.on_exit_short(s, 0.0, mk.NOW + 10_000)
    assert s not in h.core.book.holdings
    (gone,) = [e.payload for e in h.sink.events if e.kind == "position_update" and e.payload["reason"] == "missing_on_exchange"]
    assert gone["action"] == "close"
    assert h.core.risk.consecutive_losses == 0


async def test_coins_partly_locked_are_kept_and_only_what_is_gone_is_written_down() -> None:
    """The exchange holds a quarter free and half locked (an order placed in the app): only the
    quarter missing from both is written down; the locked half stays the position's, the backoff
    stands (selling now would be refused again) and one `coins_locked` alert says how to free it."""
    from engine.domain import Order
    from engine.errors import InsufficientBalanceError
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    qty = h.core.book.holdings[s].position.quantity
    crash = {s: ENTRY_PRICE * 0.8}
    (intent,) = h.core.step(mk.book(crash, mk.NOW + 10_000), [], mk.NOW + 10_000)
    refused = Order.from_intent(intent, OrderStatus.REJECTED, mk.NOW + 10_000)
    h.core.on_order_update(OrderUpdate(refused, error=InsufficientBalanceError("insufficient", code=-2010)), mk.NOW + 10_000)
    for _ in range(2):  # asked again after the next refusal: alerted once for the same amount
        h.core.on_exit_short(s, qty / 4, mk.NOW + 10_000, locked=qty / 2)
    held = h.core.book.holdings[s]
    assert held.position.quantity == pytest.approx(qty * 3 / 4)
    (down,) = [e.payload for e in h.sink.events if e.kind == "position_update" and e.payload["reason"] == "missing_on_exchange"]
    assert down["fill_quantity"] == pytest.approx(qty / 4)
    (alert,) = [e.payload for e in h.sink.events if e.kind == "risk_event" and e.payload["code"] == "coins_locked"]
    assert "coins locked on the exchange" in alert["detail"] and alert["value"] == pytest.approx(qty / 2)
    assert h.core.step(mk.book(crash, mk.NOW + 11_000), [], mk.NOW + 11_000) == []  # still backing off


async def test_the_coins_written_down_are_the_decimal_difference_not_a_float_one() -> None:
    """50.7 held, 25.3 on the exchange: 25.4 written down, as the account shows it (in binary
    floats 50.7 - 25.3 is 25.400000000000002; the sim exchange test saw 25.399999999999995)."""
    from dataclasses import replace

    from engine.domain import Order
    from engine.errors import InsufficientBalanceError
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    held = h.core.book.holdings[s]
    held.position = replace(held.position, quantity=50.7)
    crash = {s: ENTRY_PRICE * 0.8}
    (intent,) = h.core.step(mk.book(crash, mk.NOW + 10_000), [], mk.NOW + 10_000)
    refused = Order.from_intent(intent, OrderStatus.REJECTED, mk.NOW + 10_000)
    h.core.on_order_update(OrderUpdate(refused, error=InsufficientBalanceError("insufficient", code=-2010)), mk.NOW + 10_000)
    h.core.on_exit_short(s, 25.3, mk.NOW + 10_000)
    (down,) = [e.payload for e in h.sink.events if e.kind == "position_update" and e.payload["reason"] == "missing_on_exchange"]
    assert down["fill_quantity"] == 25.4
    assert h.core.book.holdings[s].position.quantity == 25.3


async def test_start_equity_is_the_first_marked_equity_also_after_a_restart() -> None:
    """Where `hotcoin run`'s "PnL this run" starts: the equity at the first prices the core saw,
    before its first decision; after a restart, what was recovered valued at those prices."""
    h = Harness(n=1)
    await h.enter()
    assert h.core.start_equity == 1000.0  # marked before the entry it then made
    after = TradingCore(h.settings, h.core.markets, h.sink)  # the same journal, as a restart reads it
    after.restore(h.core.book.holdings, h.core.cash)
    (symbol,) = after.book.holdings
    after.step(mk.book({symbol: ENTRY_PRICE * 1.01}, mk.NOW + 60_000), [], mk.NOW + 60_000)
    first = after.equity()
    after.step(mk.book({symbol: ENTRY_PRICE * 1.02}, mk.NOW + 120_000), [], mk.NOW + 120_000)
    assert after.start_equity == first != after.equity()
    assert first != h.core.cash + sum(hd.position.quantity * hd.position.entry_price for hd in after.book.holdings.values())


def _refusal() -> OrderError:
    return NonRetryableOrderError("create_order: MarketClosed: binance Market is closed.", code=-1013, reason="Market is closed.")


@pytest.mark.parametrize(
    ("error", "refused_before", "later_ms", "said"),
    [
        (_refusal(), 0, 1_000, "exit refused: Market is closed. (-1013), retrying in 29 s"),
        (_refusal(), 3, 0, "exit refused: Market is closed. (-1013), retrying in 4 min"),
        (_refusal(), 0, EXIT_RETRY_MS, "exit refused: Market is closed. (-1013), retrying at the next price update"),
        (RetryableOrderError("429 too many requests"), 0, 0, "exit failed: 429 too many requests, retrying at the next price update"),
        (UnknownOrderError("create_order: RequestTimeout: timed out"), 0, 0, "exit outcome unknown: create_order: RequestTimeout: timed out, reconciling"),
    ],
    ids=["refused-counting-down", "refused-in-minutes", "refused-due", "retryable", "unknown-in-flight"],
)
async def test_exit_trouble_says_how_the_latest_exit_failed_and_what_happens_next(
    error: OrderError, refused_before: int, later_ms: int, said: str
) -> None:
    """What close-all's progress shows for a position still held: the exchange's words and
    code (the journal had them; the console said "still open"), and when the exit is tried again."""
    from engine.domain import Order
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    await h.enter()
    s, now = h.names[0], mk.NOW + 10_000
    h.core.book.holdings[s].exit_refusals = refused_before
    (intent,) = h.core.step(mk.book({s: ENTRY_PRICE * 0.8}, now), [], now)
    status = OrderStatus.PENDING if error.error_class is ErrorClass.UNKNOWN else OrderStatus.REJECTED
    h.core.on_order_update(OrderUpdate(Order.from_intent(intent, status, now), error=error), now)
    assert h.core.exit_trouble(s, now + later_ms) == said


async def test_exit_trouble_names_the_precheck_and_ends_once_an_exit_is_taken() -> None:
    from dataclasses import replace

    from engine.domain import MarketStatus, Order
    from engine.execution.broker import OrderUpdate

    h = Harness(n=1)
    await h.enter()
    s, now = h.names[0], mk.NOW + 10_000
    assert h.core.exit_trouble(s, now) is None  # nothing tried, nothing wrong
    open_markets = h.core.markets
    h.core.markets = {k: replace(m, status=MarketStatus.HALT) for k, m in open_markets.items()}
    assert await h.cycle({s: ENTRY_PRICE * 0.8}, now) == []
    assert h.core.exit_trouble(s, now) == "exit not sent: precheck market_active"
    h.core.markets = open_markets
    (intent,) = h.core.step(mk.book({s: ENTRY_PRICE * 0.8}, now + 1_000), [], now + 1_000)
    h.core.on_order_update(OrderUpdate(Order.from_intent(intent, OrderStatus.REJECTED, now + 1_000), error=_refusal()), now + 1_000)
    assert h.core.exit_trouble(s, now + 1_000) is not None
    (retry,) = h.core.step(mk.book({s: ENTRY_PRICE * 0.8}, now + 1_000 + EXIT_RETRY_MS), [], now + 1_000 + EXIT_RETRY_MS)
    h.core.on_order_update(OrderUpdate(Order.from_intent(retry, OrderStatus.OPEN, now + 1_000 + EXIT_RETRY_MS)), now + 1_000 + EXIT_RETRY_MS)
    assert h.core.exit_trouble(s, now + 1_000 + EXIT_RETRY_MS) is None  # taken, not filled yet: nothing wrong


async def test_an_armed_trailing_peak_is_journaled_as_it_rises_at_most_every_30_s_and_the_rest_at_a_stop() -> None:
    """Restart recovery rebuilds a raised trailing stop from these `trail` updates (it once fell
    back to the stop loss). A pumping coin makes a new high most seconds: one event per new
    high would be one a second per position, so a rise within `TRAIL_JOURNAL_MS` of the last
    one journaled waits, and the runtime journals what waits as it stops."""
    h = Harness(n=1)
    await h.enter()
    sym = h.names[0]
    entry = h.core.book.holdings[sym].position.entry_price

    def trails() -> list[float]:
        return [e.payload["trailing_high"] for e in h.sink.events if e.kind == "position_update" and e.payload["action"] == TRAIL_ACTION]

    def tick(gain: float, at: int) -> float:
        assert h.core.on_tickers(mk.book({sym: entry * gain}, at), at) == []  # nothing sells
        return h.core.book.holdings[sym].position.trailing_high

    tick(1.03, mk.NOW + 5_000)  # a peak under the trail's activation (+4 %) moves no stop
    assert trails() == []
    armed = tick(1.043, mk.NOW + 10_000)
    assert trails() == [armed]  # the rise that arms the trail: at once
    tick(1.044, mk.NOW + 15_000)
    peak = tick(1.046, mk.NOW + 20_000)
    tick(1.045, mk.NOW + 25_000)
    assert trails() == [armed]  # within 30 s of the last one: held back
    tick(1.045, mk.NOW + 10_000 + TRAIL_JOURNAL_MS)
    assert trails() == [armed, peak]  # 30 s on, the peak held back goes out, new high or not
    top = tick(1.048, mk.NOW + 45_000)
    h.core.journal_trails(mk.NOW + 46_000)  # the runtime stops: every peak not yet journaled
    h.core.journal_trails(mk.NOW + 47_000)
    assert trails() == [armed, peak, top]  # never the same peak twice
    (last,) = [e for e in h.sink.events if e.kind == "position_update" and e.payload["action"] == TRAIL_ACTION][-1:]
    held = h.core.book.holdings[sym]
    assert last.payload["stop"] == h.core.exit_policy.stop_in_force(held) == pytest.approx(top * 0.97)
    assert last.trace_id == held.position.trace_id and last.cause == held.opened_seq

    rebuilt = rebuild(h.sink.events, h.settings.capital.active.capital).book.holdings[sym]
    assert rebuilt.position.trailing_high == top
    assert h.core.exit_policy.stop_in_force(rebuilt) == h.core.exit_policy.stop_in_force(held)


async def test_a_trailing_stop_armed_at_entry_trails_the_highest_bid_not_the_fill() -> None:
    """`trailing_activation = 0`: the peak was the fill (the ask plus slippage), which no bid
    ever reached, and a 1 % trail sold at a bid 0.93 % under the highest bid. The peak is a
    bid: the trail arms once the bid reaches the entry, and sells 1 % under the highest bid;
    restart recovery rebuilds the same peak from the journaled `trail`."""
    h = Harness(n=1, settings=TradingSection(capital=profile(), exits=ExitSettings(trailing_activation=0.0, trailing_stop=0.01)))
    sym = h.names[0]
    await h.enter()
    held = h.core.book.holdings[sym]
    entry = held.position.entry_price
    assert entry > ENTRY_PRICE * 1.0005  # the ask plus slippage: above any bid this coin had

    def tick(bid: float, at: int) -> list[OrderPurpose]:
        batch = make_batch({sym: bid}, ts_ms=at, bid={sym: bid}, ask={sym: bid * 1.001})
        return [i.purpose for i in h.core.on_tickers(batch, at)]

    assert tick(1.0150, mk.NOW + 5_000) == []  # 0.93 % under the entry's bid, never above it: holds
    assert h.core.exit_policy.trail_price(held) is None and h.core.exit_policy.stop_in_force(held) == pytest.approx(entry * 0.96)
    peak = entry * 1.002
    assert tick(peak, mk.NOW + 10_000) == []  # the bid reaches the entry: armed at that bid
    assert held.position.trailing_high == peak
    assert tick(peak * 0.992, mk.NOW + 15_000) == []  # 0.8 % off the highest bid: holds
    (trail,) = [e.payload for e in h.sink.events if e.kind == "position_update" and e.payload["action"] == TRAIL_ACTION]
    assert trail["trailing_high"] == peak and trail["stop"] == pytest.approx(peak * 0.99)
    rebuilt = rebuild(h.sink.events, h.settings.capital.active.capital).book.holdings[sym]
    assert rebuilt.position.trailing_high == peak
    assert h.core.exit_policy.stop_in_force(rebuilt) == h.core.exit_policy.stop_in_force(held)
    assert tick(peak * 0.989, mk.NOW + 20_000) == [OrderPurpose.TRAILING_STOP]


async def test_a_crossed_quote_is_no_price_it_enters_nothing_and_marks_nothing() -> None:
    """A crossed book (bid over ask) read as a negative spread and passed: an entry was sent
    at the ask, and the position was marked at the higher bid, an instant gain (and a trailing
    peak, a take-profit) no sell could reach. It fails `quote_available` and `spread` like a
    missing quote, saying why; a held coin keeps its last good mark."""
    h = Harness(n=2)
    s, other = h.names
    crossed = make_batch({s: ENTRY_PRICE}, ts_ms=mk.NOW, bid={s: 1.06}, ask={s: ENTRY_PRICE})
    assert h.core.step(crossed, mk.candidates([s], mk.NOW), mk.NOW) == []
    (refused,) = [e.payload for e in h.sink.events if e.kind == "risk_check"]
    failed = {c["name"]: c for c in refused["checks"] if not c["passed"]}
    assert set(failed) == {"quote_available", "spread"} and not refused["approved"]
    assert failed["spread"]["detail"] == failed["quote_available"]["detail"] == "crossed quote: bid 1.06 > ask 1.025"

    later = mk.NOW + 60_000  # both, at the next bar, on a sound book
    mk.feed_hot(h.core.history, h.names, later)
    assert len(await h.enter(now=later)) == 2
    assert h.core.on_tickers(mk.book(dict.fromkeys(h.names, ENTRY_PRICE), later + 5_000), later + 5_000) == []
    bid = ENTRY_PRICE * 0.9995
    before = (h.core.marks(), h.core.equity())
    assert before[0] == {s: bid, other: bid}
    at = later + 10_000
    # s crossed 6 % over its entry (take-profit tier 1 and the trail's activation were it a bid)
    batch = make_batch({s: ENTRY_PRICE, other: ENTRY_PRICE}, ts_ms=at, bid={s: ENTRY_PRICE * 1.06}, ask={s: ENTRY_PRICE * 1.03})
    assert h.core.on_tickers(batch, at) == []
    assert (h.core.marks(), h.core.equity()) == before[:2]
    assert h.core.book.holdings[s].position.trailing_high == bid  # the last good bid, not the crossed one
    assert not any(e.kind == "position_update" and e.payload["action"] == TRAIL_ACTION for e in h.sink.events)


async def test_an_exit_decided_on_a_crossed_tick_is_booked_at_no_more_than_its_ask() -> None:
    """The core decides on the last sound quote, but the paper broker filled from its own
    book: a max-hold exit sent on a tick crossed 6 % up (bid over ask) sold at that bid, and
    the journal booked a gain no live sell could have had. The fill, the position update's PnL
    and the cash all read the ask (the crossed quote's worse side for a sell)."""
    h = Harness(n=1)
    (s,) = h.names
    await h.enter()
    await h.cycle({s: ENTRY_PRICE}, mk.NOW + 5_000)  # a sound quote: the last one it is marked at
    at = mk.NOW + 4 * 3_600_000  # past max hold
    batch = make_batch({s: ENTRY_PRICE}, ts_ms=at, bid={s: ENTRY_PRICE * 1.06}, ask={s: ENTRY_PRICE * 1.03})
    h.broker.update_book(batch)
    intents = h.core.step(batch, (), at)
    assert [i.purpose for i in intents] == [OrderPurpose.MAX_HOLD]
    for update in await h.router.send_all(intents, at, h.core.causes):
        h.core.on_order_update(update, at)
    buy, sell = [e.payload for e in h.sink.events if e.kind == "fill"]
    slip = FillModel.from_settings(h.settings.execution).slippage
    assert sell["side"] == "sell" and sell["price"] == pytest.approx(ENTRY_PRICE * 1.03 * (1.0 - slip))
    closed = [e.payload for e in h.sink.events if e.kind == "position_update" and e.payload["action"] != "open"]
    paid = buy["price"] * buy["quantity"] + buy["fee_quote"] - buy["fee_base"] * buy["price"]
    pnl = sum(u["realised_pnl"] for u in closed)
    assert pnl == pytest.approx(sell["price"] * sell["quantity"] - sell["fee_quote"] - paid, rel=1e-9)
    assert h.core.cash == pytest.approx(1000.0 + pnl, rel=1e-12) and not h.core.book.holdings


async def test_a_held_coin_a_markets_refresh_leaves_out_still_exits() -> None:
    """A markets refresh without a held coin (delisted, halted) left the core no Market to
    exit on: its stop loss never sold and nothing was journaled. The core keeps the coin's last
    Market while it is held (and drops the others the refresh dropped)."""
    h = Harness(n=2)
    held, gone = h.names
    await h.enter(n=1)
    refreshed: dict[str, Market] = {}
    h.core.markets = refreshed  # a refresh without either coin
    assert set(h.core.markets) == {held}
    crash = mk.NOW + 10_000
    (sold,) = await h.cycle({held: ENTRY_PRICE * 0.9, gone: ENTRY_PRICE}, crash)
    assert sold.endswith("-s1") and held not in h.core.book
    h.core.markets = refreshed  # sold: the next refresh's word goes
    assert h.core.markets is refreshed


async def test_a_held_coin_with_no_market_known_is_alerted_once() -> None:
    """A coin held across a restart while it was delisted: no Market was ever known to this
    run, no exit can be sent, and the owner hears it once (`no_market`), not every tick; once
    a refresh lists it again, it exits as usual."""
    h = Harness(n=1)
    s = h.names[0]
    await h.enter()
    after = TradingCore(h.settings, {}, h.sink)  # the restart's first refresh has no such coin
    after.restore(rebuild(h.sink.events, h.settings.capital.active.capital).book.holdings, h.core.cash)
    for k in range(3):
        at = mk.NOW + 60_000 * (k + 1)
        assert after.on_tickers(mk.book({s: ENTRY_PRICE * 0.9}, at), at) == []
    (alert,) = [e for e in h.sink.events if e.kind == "risk_event" and e.payload["code"] == "no_market"]
    position = after.book.holdings[s].position
    assert alert.payload["symbol"] == s and alert.trace_id == position.trace_id and alert.payload["value"] == position.quantity
    assert after.exit_trouble(s, mk.NOW + 180_000) == "exit not sent: no market info for the coin (delisted?)"
    after.markets = h.core.markets  # listed again
    (intent,) = after.on_tickers(mk.book({s: ENTRY_PRICE * 0.9}, mk.NOW + 240_000), mk.NOW + 240_000)
    assert intent.purpose is OrderPurpose.STOP_LOSS


def _refuse(h: Harness, intent: object, now: int) -> None:
    """The exchange refuses `intent` (an exit) as it does a coin in a trading halt."""
    from engine.domain import Order, OrderIntent
    from engine.execution.broker import OrderUpdate

    assert isinstance(intent, OrderIntent)
    h.core.on_order_update(OrderUpdate(Order.from_intent(intent, OrderStatus.REJECTED, now), error=_refusal()), now)


@pytest.mark.parametrize("press", ["first", "repeat"])
async def test_a_press_of_close_all_sells_at_once_a_coin_whose_exits_are_backed_off(press: str) -> None:
    """Audit: a coin whose exits the exchange refused a few times (a halt) waits minutes between
    tries; close-all skipped it until that wait ran out (8 min after five refusals), even when
    the owner pressed it once the halt had lifted. Every press (first or repeated) sells every
    coin now; the backoff then paces only the close-all's own retries, from 30 s again."""
    h = Harness(n=1)
    await h.enter()
    s = h.names[0]
    held = h.core.book.holdings[s]
    now = mk.NOW + 10_000
    if press == "repeat":
        h.core.begin_close_all(now)
    for _ in range(5):  # stop-loss exits (or the close-all's), refused each time it is due
        (intent,) = h.core.step(mk.book({s: ENTRY_PRICE * 0.8}, now), [], now)
        _refuse(h, intent, now)
        last, now = now, held.exit_retry_ms
    assert held.exit_retry_ms - last == 8 * 60_000
    pressed = last + 1_000
    h.core.begin_close_all(pressed)
    (sell,) = h.core.close_all_intents(pressed)
    assert sell.symbol == s and sell.purpose is OrderPurpose.CLOSE_ALL
    _refuse(h, sell, pressed)  # still halted: the close-all retries on its own backoff
    assert h.core.close_all_intents(pressed + EXIT_RETRY_MS - 1) == []
    (again,) = h.core.close_all_intents(pressed + EXIT_RETRY_MS)
    assert again.purpose is OrderPurpose.CLOSE_ALL and again.client_order_id != sell.client_order_id


async def test_a_resume_during_close_all_opens_entries_and_the_close_all_leaves_new_positions_be() -> None:
    """Audit: after close-all, resume said "entries resumed" while a hidden `close_all` check
    refused every entry for as long as a halted coin it retried was held (for good, with a
    delisted one). A resume opens entries; the close-all goes on selling the coins held at the
    press, never a position opened after the resume, which keeps its own exits."""
    h = Harness(n=2)
    stuck, fresh = h.names
    await h.enter(n=1)
    now = mk.NOW + 10_000
    h.core.begin_close_all(now)
    (sell,) = h.core.close_all_intents(now)
    _refuse(h, sell, now)
    h.core.paused = False  # the operator resumes
    later = now + 5_000
    (entry,) = await h.cycle({stuck: ENTRY_PRICE, fresh: ENTRY_PRICE}, later, mk.candidates([fresh], later))
    assert entry.endswith("-e1") and fresh in h.core.book.holdings
    assert h.core.close_all_active and h.core.close_all_left() == [stuck]
    # The close-all retries the stuck coin; the new position is left to its own exits (a stop loss).
    retry = now + EXIT_RETRY_MS
    intents = h.core.step(mk.book({stuck: ENTRY_PRICE, fresh: ENTRY_PRICE * 0.8}, retry), [], retry)
    assert sorted((i.symbol, i.purpose) for i in intents) == [(stuck, OrderPurpose.CLOSE_ALL), (fresh, OrderPurpose.STOP_LOSS)]
    close_all_sells = {e.symbol for e in h.sink.events if e.kind == "signal_snapshot" and e.payload.get("purpose") == "close_all"}
    assert close_all_sells == {stuck}


def test_nothing_held_values_as_the_empty_sums_do() -> None:
    """With nothing held or in flight, `equity` and `exposure` skip the marks: the same values,
    bit for bit and of the same type, as the sums over no positions."""
    h = Harness(n=1)
    for cash in (1000.0, -0.0, 0.1 + 0.2):
        h.core.cash = cash
        assert not h.core.book.holdings and not h.core._pending
        equity, exposure = h.core.equity(), h.core.exposure()
        want_equity = cash + h.core.book.exposure(h.core.marks())
        want_exposure = h.core.book.exposure(h.core.marks()) + sum(p.notional for p in h.core._pending.values())
        assert (repr(equity), type(exposure), exposure) == (repr(want_equity), type(want_exposure), want_exposure)


async def test_a_minute_without_candidates_or_holdings_decides_nothing_and_asks_no_signal() -> None:
    """No candidate and nothing held (half a replay's minutes), an entry order in flight or not:
    no intent, no event, and the signal stage is not asked (it would find nothing to do)."""
    h = Harness(n=1)
    await h.cycle({h.names[0]: ENTRY_PRICE}, mk.NOW)
    before = len(h.sink.events)
    h.core.signals = None  # type: ignore[assignment]  # asked: an AttributeError
    for pending in ({}, {"cid": object()}):
        h.core._pending = pending  # type: ignore[assignment]
        assert h.core.on_candidates([], mk.NOW + 60_000) == []
    assert len(h.sink.events) == before


@pytest.mark.parametrize("held", [False, True], ids=["bnb-not-held", "bnb-held-and-sold"])
def test_a_bnb_fee_is_valued_at_bnbs_last_price_when_bnb_did_not_change_that_second(held: bool) -> None:
    """Audit: Binance's ticker batches carry only the symbols that changed that second, and a
    BNB commission was valued from the latest batch alone: a fill booked while BNB/USDT had not
    changed left its fee out of cash and PnL for good (`fee_unpriced`). The pairs of the
    broker's fee assets keep their last price, whether held or not, sold or not."""
    from decimal import Decimal

    from engine.domain import Fill, Order, OrderType, Side
    from engine.execution.broker import OrderUpdate

    (a,) = mk.symbols(1)
    bnb = "BNB/USDT"
    sink = RecordingSink()
    core = TradingCore(TradingSection(capital=profile()), mk.markets([a, bnb]), sink, fee_assets=("BNB",))
    now = mk.NOW
    core.on_tickers(mk.book({a: ENTRY_PRICE, bnb: 600.0}, now), now)
    if held:  # a coin held and sold drops its last quote: not the fee asset's pair
        core.book.apply(Fill("b1", "hc-b-e1", bnb, Side.BUY, 600.0, 1.0, 0.0, now, trace_id="b"))
        core.book.apply(Fill("b2", "hc-b-x1", bnb, Side.SELL, 600.0, 1.0, 0.0, now, trace_id="b"))
        core._after_close(bnb, now, 1, record=False)
    core.on_tickers(mk.book({a: ENTRY_PRICE}, now + 1000), now + 1000)  # BNB unchanged this second: absent
    cash = core.cash
    order = Order(
        "hc-x-e1", "1", a, Side.BUY, OrderType.MARKET, OrderStatus.FILLED, Decimal(100), Decimal(100),
        average_price=ENTRY_PRICE, fee_other=0.000171, fee_asset="BNB", trace_id="x", purpose=OrderPurpose.ENTRY,
    )  # fmt: skip
    fill = Fill("t1", "hc-x-e1", a, Side.BUY, ENTRY_PRICE, 100.0, 0.0, now + 1100, trace_id="x", fee_other=0.000171, fee_asset="BNB")
    core.on_order_update(OrderUpdate(order, (fill,)), now + 1100)
    mid = 600.0 * (0.9995 + 1.0005) / 2
    assert core.cash == pytest.approx(cash - 100 * ENTRY_PRICE - 0.000171 * mid)
    assert core.book.get(a).position.entry_fees == pytest.approx(0.000171 * mid)
    assert "fee_unpriced" not in [e.payload["code"] for e in sink.events if e.kind == "risk_event"]


def test_a_paper_core_keeps_no_fee_assets_prices() -> None:
    """Paper fills pay in the pair's assets (`Broker.fee_assets` is empty): nothing is kept."""
    core = TradingCore(TradingSection(capital=profile()), mk.markets(["AAA/USDT", "BNB/USDT"]), RecordingSink())
    core.on_tickers(mk.book({"AAA/USDT": 1.0, "BNB/USDT": 600.0}, mk.NOW), mk.NOW)
    assert core._quotes.kept == () and core._quotes.last == {}
    assert PaperBroker.fee_assets == () and ExchangeBroker.fee_assets == ("BNB",)


def _columns(cands: Sequence[Candidate], ranks: Sequence[int] | None = None) -> ColumnPool:
    """`cands` as a pool read as columns, ranked 1..n as the discovery process sends them."""
    columns = MemberColumns(
        [c.symbol for c in cands], [c.trace_id for c in cands], range(1, len(cands) + 1) if ranks is None else ranks,
        [c.heat for c in cands],
    )  # fmt: skip
    return ColumnPool(columns, lambda: tuple(cands))


def _at_rest_minutes(names: list[str], enters: bool) -> list[tuple[int, Callable[[int], Sequence[Candidate]]]]:
    """(minute, pool maker) of a replay's kinds of minutes for a core at rest: none, cold
    columns, a symbol named twice, ranks out of order, plain candidates, warm columns, a new
    UTC day; `enters`: first a warm pool with the bars to enter on (then an entry in flight)."""
    cold = lambda now: _columns(mk.candidates(names[:2], now, heat=40.0))  # noqa: E731
    first = [(0, lambda now: _columns(mk.candidates(names[:1], now)))] if enters else [(0, lambda now: ())]
    return [
        *first,
        (1, cold),
        (2, lambda now: _columns(mk.candidates([names[0], names[0]], now, heat=40.0))),
        (3, lambda now: _columns(mk.candidates(names[:2], now, heat=40.0), ranks=[2, 1])),
        (4, lambda now: mk.candidates(names[:2], now, heat=40.0)),
        (5, lambda now: ()),
        (6, cold),
        (DAY_MS // 60_000, cold),
        (DAY_MS // 60_000 + 1, lambda now: _columns(mk.candidates(names, now))),
        (DAY_MS // 60_000 + 2, cold),
    ]


@pytest.mark.parametrize("enters", [False, True], ids=["at-rest", "entry-in-flight"])
@pytest.mark.parametrize("journal", ["off", "counting", "recording"])
def test_a_core_at_rest_steps_as_its_prices_then_its_candidates(journal: str, enters: bool) -> None:
    """`step`'s path for a core at rest (nothing held, no close-all, no quote kept) against
    `on_tickers` + `on_candidates` minute by minute: the same intents, events (seqs, causes),
    risk day, equity, quotes and signal caches, the journal off (a tap counting into a
    `NullSink`), counting, or keeping payloads; and once an entry is in flight, every minute
    after it goes the whole way."""
    names = mk.symbols(3)

    def core() -> tuple[TradingCore, Any]:
        sink: Any = {"off": lambda: Tap(NullSink(), recent=0), "counting": CountingSink, "recording": RecordingSink}[journal]()
        made = TradingCore(TradingSection(capital=profile()), mk.markets(names), sink)
        mk.feed_hot(made.history, names, mk.NOW)
        return made, sink

    (fast, fast_sink), (full, full_sink) = core(), core()
    for minute, pool in _at_rest_minutes(names, enters):
        now = mk.NOW + minute * 60_000
        batch = mk.book(dict.fromkeys(names, ENTRY_PRICE), now)
        # (a recording sink checks causes against what it took: none there)
        causes = None if journal == "recording" else {c.trace_id: 7 + i for i, c in enumerate(mk.candidates(names, now))}
        got = fast.step(batch, pool(now), now, causes)
        want = full.on_tickers(batch, now) + full.on_candidates(pool(now), now, causes)
        assert [i.client_order_id for i in got] == [i.client_order_id for i in want]
        assert _sunk(fast_sink) == _sunk(full_sink)
        assert _state(fast) == _state(full)
        assert fast._quotes.batch is batch and full._quotes.batch is batch and fast._quotes.last == full._quotes.last
    assert bool(fast._pending) is enters and fast.book.holdings == {}


def _sunk(sink: Any) -> object:
    """What a sink took: a tap's counts, seqs and last signals, or the events."""
    if isinstance(sink, Tap):
        return sink.kinds, sink.sink.count, sink.last_signal, sink.candidate_seq
    return _stage_events(sink)


def _state(core: TradingCore) -> tuple[object, ...]:
    """What a minute at rest may change in a core, its signal stage and its risk day."""
    stage, risk = core.signals, core.risk
    return (
        core.start_equity, core.cash, core.engine_state, list(core._pending), core._last_action_ms, list(core._held_noted),
        core.causes, stage._entries._bar_ms, stage._entries._values, stage._ranks, stage._prev_ranks,
        risk.day, risk.start_equity, risk.drawdown, risk.level, risk.paused, risk._settled,
    )  # fmt: skip



def _held_minutes(names: list[str]) -> list[tuple[int, Callable[[int], Sequence[Candidate]], bool]]:
    """(minute, pool maker, built) of a replay's kinds of minutes for a core holding
    `names[0]` with an entry of `names[1]` in flight until minute 5: cold columns without the
    held coin, with it, a symbol named twice, ranks out of order, plain candidates, warm
    columns, none, a new UTC day. A pool is built only where it names the held coin or
    another is warm (or out of order, or named twice: the candidates' path sorts it out)."""
    others = lambda now: _columns(mk.candidates(names[1:3], now, heat=40.0))  # noqa: E731
    kinds: list[tuple[Callable[[int], Sequence[Candidate]], bool]] = [
        (others, False),
        (lambda now: _columns(mk.candidates(names[:2], now, heat=40.0)), True),
        (lambda now: _columns(mk.candidates([names[2], names[2]], now, heat=40.0)), True),
        (lambda now: _columns(mk.candidates(names[2:4], now, heat=40.0), ranks=[2, 1]), True),
        (lambda now: mk.candidates(names[:3], now, heat=40.0), True),
        (lambda now: (), False),
        (lambda now: _columns(mk.candidates(names[2:4], now)), True),
        (lambda now: _columns(mk.candidates(names[1:4], now, heat=40.0)), False),
    ]
    return [
        *((1 + i, pool, built) for i, (pool, built) in enumerate(kinds)),
        *((10 + i, pool, built) for i, (pool, built) in enumerate(kinds)),
        (DAY_MS // 60_000, lambda now: _columns(mk.candidates(names[:4], now, heat=40.0)), True),
    ]


@pytest.mark.parametrize("journal", ["off", "counting", "recording"])
def test_a_core_holding_a_coin_decides_a_pool_of_columns_as_its_candidates(journal: str) -> None:
    """`on_candidates` of a core holding a coin, given a pool read as columns (`ColumnPool`:
    noted and cut as columns, `ColumnPool.without`) against the same pool as plain candidates,
    minute by minute, with an entry in flight and without: the same intents, events (seqs,
    causes), exit signals, entries in flight and signal caches, the journal off, counting, or
    keeping payloads; where none is kept, a cold pool without the held coin is never built."""
    from decimal import Decimal

    from engine.domain import Fill, Order, OrderType, Side
    from engine.execution.broker import OrderUpdate
    from engine.signals.bars import BarHistory

    names = mk.symbols(4)

    def core() -> tuple[TradingCore, Any]:
        sink: Any = {"off": lambda: Tap(NullSink(), recent=0), "counting": CountingSink, "recording": RecordingSink}[journal]()
        made = TradingCore(TradingSection(capital=profile()), mk.markets(names), sink)
        assert isinstance(made.history, BarHistory)
        mk.feed_hot(made.history, names, mk.NOW)
        return made, sink

    def order(intent: Any, status: OrderStatus) -> Order:
        filled = intent.quantity if status is OrderStatus.FILLED else Decimal(0)
        return Order(
            intent.client_order_id, "1", intent.symbol, Side.BUY, OrderType.MARKET, status, intent.quantity, filled,
            average_price=ENTRY_PRICE, trace_id=intent.trace_id, purpose=OrderPurpose.ENTRY,
        )  # fmt: skip

    (fast, fast_sink), (full, full_sink) = core(), core()
    in_flight = {}
    for made in (fast, full):  # both enter names[0] and names[1] at the first minute, and hold names[0]
        first, second = made.step(mk.book(dict.fromkeys(names, ENTRY_PRICE), mk.NOW), mk.candidates(names[:2], mk.NOW), mk.NOW)
        fill = Fill("f1", first.client_order_id, first.symbol, Side.BUY, ENTRY_PRICE, float(first.quantity), 0.0, mk.NOW,
                    trace_id=first.trace_id)  # fmt: skip
        made.on_order_update(OrderUpdate(order(first, OrderStatus.FILLED), (fill,)), mk.NOW + 1000)
        in_flight[made] = second
    for minute, pool, built in _held_minutes(names):
        now = mk.NOW + minute * 60_000
        if minute == 10:  # the entry in flight is refused: held alone from here
            for made in (fast, full):
                made.on_order_update(OrderUpdate(order(in_flight[made], OrderStatus.REJECTED)), now - 1000)
        assert list(fast.book.holdings) == list(full.book.holdings) == names[:1]
        assert [p.symbol for p in fast._pending.values()] == ([names[1]] if minute < 10 else [])
        batch = mk.book(dict.fromkeys(names, ENTRY_PRICE), now)
        causes = None if journal == "recording" else {c.trace_id: 7 + i for i, c in enumerate(mk.candidates(names, now))}
        given = pool(now)
        got = fast.step(batch, given, now, causes)
        want = full.step(batch, list(pool(now)), now, causes)
        assert [i.client_order_id for i in got] == [i.client_order_id for i in want]
        assert _sunk(fast_sink) == _sunk(full_sink)
        assert _state(fast) == _state(full) and fast._exit_signal == full._exit_signal
        if isinstance(given, ColumnPool) and journal != "recording":  # payloads kept: every fresh one is built
            assert (given._built is not None) is built, minute
