"""Restart recovery: rebuild what the engine held and had sent from the journal, then reconcile.

A process can die at any instruction (SIGKILL, power loss). The journal is the system's record:
it is written in seq order in whole transactions, so what survives a crash is a consistent
*prefix* of what the engine did. A journal that holds a backtest's run (`run_start` with mode
`BACKTEST_MODE`) is refused: its replayed trades would be booked as this engine's money. On start:

1. `rebuild(events, capital)` replays that prefix (pure, no I/O):
   - **holdings** from the `fill` events, applied to a fresh `PositionBook` in seq order, so the
     quantities, entry price, entry fees and realised PnL are exactly what the core had (fills,
     not `position_update`s, are the source: a kill between a fill and its update must not lose
     the fill), less the dust the core wrote off (a `position_update` close with reason `dust`:
     no fill records it, and the coins stay on the exchange). Beside each position: the exit
     legs already used in its trace (the next exit's client id continues after them, so no exit
     id is ever reused), the take-profit tiers that sold something (tiers are hit in order), the
     break-even stop they moved, its trailing stop's peak (from the `position_update`s with
     action `trail`: the core journals an armed peak as it rises, at most once every
     `engine.trading.TRAIL_JOURNAL_MS`, and what is left as the engine stops), so the stop in
     force after a restart is the one before it, and its exit still in flight with the tier it
     sells (journaled with the attempt), so a fill reconciled after the restart marks that tier
     hit as it would have;
   - **the chart's fills**: every fill of a position still held and the other fills of the last
     day (`Replay.chart_fills`), handed to the engine's chart marks, which held only the
     current run's: a position bought before the restart showed no buy;
   - **cash**: the configured capital plus every fill's cash flow;
   - **client ids already attempted**: seeded into the router's duplicate guard, so an intent the
     core decides again after the restart is suppressed before any broker sees it (ids freed by
     a retryable rejection are freed here too, as the router does);
   - **open orders**: attempted, with no terminal `order_result`, each with its journaled fills
     and their cumulative fees (in quote, in coins, in BNB), which the broker books the
     exchange's next report of the order against; and those whose terminal result (the
     broker's reply, journaled before the core books its fills) reported more filled than the
     fills journaled after it: a kill in between must not leave a sold coin held or a bought
     one untracked;
   - **orders that may still land**: journaled rejected as never reached (by the broker after
     its grace, or by a recovery), whatever their age: the exchange may place such an order
     late, even while the engine is down, so recovery asks about each once; one journaled open
     again after that (it landed and rests) is an open order once more, and one journaled
     settled for good (`DID_NOT_LAND`, landed late and filled) is not asked about again;
   - **the operator's pause** of new entries: the last `command` event among pause, close-all
     (which pauses too) and resume;
   - **the latest close-all** (`ClosingAll`): its trace and `command` event, and the positions
     it sells, by trace, as the core keeps them (`TradingCore.begin_close_all`): those held,
     or with an entry in flight, at each of its presses. A resume does not end it (entries
     open again, it goes on selling those), so neither does a restart: one with coins of its
     own still held is taken over by the new core in the same trace, its exit legs going on
     after those sent (`TradingCore.resume_close_all`), and shown in progress. Forgotten, its
     coins were left to the ordinary exits: a take-profit half, hours later;
   - **each coin's last entry or exit**, as the core times its re-entry cool-down
     (`trading.signals.cooldown_ms`): the latest of its order attempts (an entry or exit the
     core decided) and its closes, a close timed when the core booked it (the `order_result`
     that carried the closing fill; a dust write-off's own time). Without it every restart
     lifted the cool-down of every coin sold before it;
   - **the engine state** the last `state_change` entered, and the times of the recent order
     errors (`order_result`s with an error class, as the runtime counts them): a restart must
     neither lift a block (10 exchange rejections) nor forget the errors still in the window;
     leaving the restored state takes the usual hysteresis;
   - **listing times**: each coin's latest `listing` event (discovery journals every listing it
     dates) of the last `LISTINGS_KEPT_MS`, handed to the new run's discovery before its first
     market load (`Discovery.restore_listings`), which otherwise takes every coin then trading
     as old: a coin listed 20 minutes before a restart lost its listing heat and left the pool,
     and its signals their since-listing features.
2. `Recovery.apply(engine, now)` installs that into the new core and router, then reconciles the
   open orders with the broker:
   - **paper**: the paper broker lives in the process and died with it, so an order in flight at
     the kill never executed anywhere. It is journaled as an `order_result` with status
     `canceled` and `reason: "lost_in_restart"`: treated as never filled, never resent (its id
     stays in the guard). One it had replied filled is booked from that reply (the rest of its
     quantity at the reply's price, with the paper fee);
   - **exchange**: each order is looked up by client id. Fills the exchange made while we were
     down are booked (only the part beyond what the journal already has) with the commissions
     of the order's trades, as the broker books any lookup (`ExchangeBroker.recover_open`: a
     lookup carries no fees, and a guess at the taker rate, in coins, was wrong for BNB or any
     other rate), orders still open are handed back to the broker to follow, and orders the
     exchange never saw are journaled as rejected and handed to the broker's late watch (a
     create in flight at the kill may still be placed), but one the journal had seen resting
     that the exchange no longer knows is journaled as expired (`VANISHED`): it did reach it.
     Each order the journal had rejected as never reached is looked up once, however long ago
     it was sent
     (`ExchangeBroker.recover_late`): what landed meanwhile is booked (`LANDED_LATE`), what is
     still unknown is watched for the rest of its `LATE_WATCH_MS`, or, past it, journaled as
     `DID_NOT_LAND`. The broker's own periodic reconcile later adopts any order of ours it
     still lists. What the broker noted on the way (a late landing, a fee it had to estimate:
     `Anomaly`) is journaled as `order_anomaly` events beside the results, as the router does.
   - **risk**: the day's start-of-day equity, the highest risk level it reached, the daily
     loss pause, the losing streak and its cool-down (`RiskDay`, from the `risk_event`s and the
     closing `position_update`s), and the L5 block, which runs on from when L5 was reached.
     Cash comes from the configured capital, so a day marked under another capital has its
     start-of-day equity moved by the difference, journaled as a `capital_change` risk event
     (`RiskManager.restore`): a deposit or withdrawal, not a day's profit or loss;
   - **engine state**: the state machine resumes in the journal's state with its order errors;
3. It journals a `risk_event` with code `recovered` listing every position (symbol, quantity,
   entry price, trace, exit legs, tiers, trailing peak and the stop in force), the cash and the
   orders it settled, so replay (and the kill test) can check that nothing was forgotten. A
   fill journaled without its `position_update` (killed between the two) gets that update now,
   with reason `recovered`. Events the replay could not apply (`anomalies`: a fill the
   positions cannot take, a write-off of a position the fills do not hold) are also a logged
   warning, the start of the event's detail (so a notification and the console's event stream)
   and a line of the run's summary: the cash and positions rebuilt without them are not the
   journal's.

4. While running on an exchange, `BalanceAudit` compares its balances with these records every
   5 minutes and journals a `risk_event` with code `balance_mismatch` when they disagree (coins
   the account held beyond them at its first check are the owner's, not a disagreement).

Not rebuilt: a trailing peak that had not armed the trail (it moved no stop, and the bid that
arms it is a higher peak), the rise of an armed peak in the last `TRAIL_JOURNAL_MS` before a
crash (the trail rebuilt is that much looser, never tighter), candle history (re-fed by the
runtime), and the cash reserved for an exchange entry still resting after the restart. The
rebuild starts from the journal's latest `checkpoint` (`engine.runtime.checkpoint`: this
replay's state through a seq, journaled at each rotation) and reads every event after it, so
retention deletes only archives wholly below that checkpoint among those holding an order or
fill event (`rotation.RECOVERY_KINDS`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.domain import EngineState, Fill, Order, OrderPurpose, OrderStatus, OrderType, Side
from engine.errors import (
    HotcoinError,
    JournalError,
    NonRetryableOrderError,
    OrderError,
    is_order_unknown,
)
from engine.execution.broker import Broker, OrderUpdate, counts_as_order_error
from engine.execution.client_ids import parse_client_order_id
from engine.execution.exchange_broker import LANDED_LATE, NEVER_REACHED, VANISHED, ExchangeBroker
from engine.execution.paper import PaperBroker
from engine.journal.events import (
    BACKTEST_MODE,
    TRAIL_ACTION,
    EventSink,
    JournalEvent,
    known_versions,
)
from engine.market.gateway import Balance
from engine.portfolio.positions import (
    MISSING_REASON,
    WRITE_OFF_REASON,
    BookChange,
    PositionBook,
    PositionError,
    as_booked,
)
from engine.portfolio.risk import RiskDay
from engine.runtime.client import Command
from engine.runtime.quiet_log import RepeatedFailure

if TYPE_CHECKING:
    from engine.portfolio.exits import ExitPolicy
    from engine.runtime.engine import Engine
    from engine.trading import TradingCore

log = logging.getLogger("hotcoin.recovery")

KINDS = ("run_start", "order_attempt", "order_result", "fill", "position_update", "risk_event", "command", "state_change", "listing")
ANOMALIES_LISTED = 5  # events recovery could not apply, named in its warning (all are counted)
ORDER_ERRORS_KEPT = 1_000  # the latest order errors restored; the state machine's window drops the old ones
FILLS_KEPT = 100  # per symbol, the latest fills replayed for the chart's marks
RECENT_FILLS_MS = 24 * 3_600_000  # fills of coins no longer held that the chart still marks after a restart
# Listings a restart restores, by age at the journal's last event: far past the heat's listing
# freshness (e^-30 at the default day's decay) and the new-listing volume allowance (a day), and
# the coin's age is still a signal feature; older ones are only checkpoint weight.
LISTINGS_KEPT_MS = 30 * 86_400_000
_TERMINAL = frozenset(s.value for s in OrderStatus if s.is_terminal)
_RESTING = frozenset({OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value})  # an acknowledged order's
LOST_IN_RESTART = "lost_in_restart"
RESTART_NEVER_REACHED = "never reached the exchange"
_NEVER_REACHED = frozenset({NEVER_REACHED, RESTART_NEVER_REACHED})  # details of a rejection that may still land
# An order settled as never reached that a restart found still unknown to the exchange after its
# late watch: settled for good, not looked up again.
DID_NOT_LAND = "still unknown to the exchange after its late watch: it never happened"
_PAUSED_BY = {Command.PAUSE.value: True, Command.CLOSE_ALL.value: True, Command.RESUME.value: False}


@dataclass(frozen=True, slots=True)
class ClosingAll:
    """The journal's latest close-all: its `command` event (trace, seq, time), its presses,
    the positions it sells by trace (`TradingCore.begin_close_all`) and, once the replay is
    finished, the exit legs already sent in its trace."""

    trace_id: str
    seq: int
    ts_ms: int
    traces: frozenset[str]
    presses: int = 1
    legs: int = 0


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order the journal saw attempted and never saw finish."""

    client_order_id: str
    trace_id: str
    symbol: str
    side: Side
    order_type: OrderType
    purpose: OrderPurpose
    quantity: Decimal
    price: Decimal | None
    attempt_seq: int
    ts_ms: int
    filled_qty: float = 0.0  # journaled fills of this order so far
    filled_cost: float = 0.0  # sum of price x quantity of those fills
    # The exchange's cumulative fees of those fills, as the broker last saw them: it books the
    # next fill as the difference from these, so a fee left out here is booked a second time.
    filled_fee_quote: float = 0.0  # as the broker reported it (without the value of `filled_fee_other`)
    filled_fee_base: float = 0.0  # the part of those fees taken in the coins bought
    filled_fee_other: float = 0.0  # paid in `fee_asset`, a third asset (BNB)
    fee_asset: str = ""
    expires_ms: int | None = None  # when a LIMIT was to be cancelled if still open (its attempt's)
    tier: int | None = None  # the take-profit tier it sells, marked hit on its fill (`_attempted_tier`)
    # Its terminal `order_result` (the broker's reply) when that said more filled than the fills
    # journaled after it (`_short_of_reply`): a reply is journaled as soon as it comes, its fills
    # only once the core books them, so a kill between the two left an order settled in the
    # journal and its fills nowhere. Kept open, it is settled again at the restart.
    reply_status: str | None = None
    reply_qty: float = 0.0
    reply_price: float | None = None  # its average price
    reply_ms: int = 0
    reply_rested: bool = False  # it came from a sync or the user stream: a resting limit filled (at the maker rate)
    # An `order_result` had it resting on the exchange (open or partly filled): its create landed,
    # so a lookup's "does not exist" means the exchange lost it (`VANISHED`), not that it never got there.
    acknowledged: bool = False

    def as_order(self, status: OrderStatus, now_ms: int) -> Order:
        return Order(
            client_order_id=self.client_order_id,
            exchange_order_id=None,
            symbol=self.symbol,
            side=self.side,
            order_type=self.order_type,
            status=status,
            quantity=self.quantity,
            filled_qty=Decimal(repr(self.filled_qty)),
            price=self.price,
            average_price=self.filled_cost / self.filled_qty if self.filled_qty > 0 else None,
            fee_quote=self.filled_fee_quote,
            fee_base=self.filled_fee_base,
            fee_other=self.filled_fee_other,
            fee_asset=self.fee_asset,
            created_ms=self.ts_ms,
            updated_ms=now_ms,
            trace_id=self.trace_id,
            purpose=self.purpose,
        )

    def as_replied(self) -> Order:
        """The order as its terminal reply left it (`reply_status`), fees unknown: what a
        restart books the missing fills from when no exchange can say more."""
        assert self.reply_status is not None, "only an order short of its reply"
        return dataclasses.replace(
            self.as_order(OrderStatus(self.reply_status), self.reply_ms),
            filled_qty=Decimal(repr(self.reply_qty)),
            average_price=self.reply_price,
            fee_quote=0.0,
            fee_base=0.0,
            fee_other=0.0,
            fees_reported=False,
        )


@dataclass(frozen=True, slots=True)
class UnbookedFill:
    """A fill on disk whose `position_update` was lost with the process."""

    fill_seq: int
    trace_id: str
    change: BookChange


@dataclass(slots=True)
class RecoveredState:
    """What the journal says the engine held and had sent when it stopped."""

    cash: float
    book: PositionBook = field(default_factory=PositionBook)
    sent_ids: set[str] = field(default_factory=set)
    open_orders: dict[str, OpenOrder] = field(default_factory=dict)
    maybe_late: dict[str, OpenOrder] = field(default_factory=dict)  # rejected as never reached
    unbooked: list[UnbookedFill] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    last_seq: int = 0
    last_ts_ms: int = 0
    fills: int = 0
    risk: RiskDay = field(default_factory=RiskDay)  # the risk manager's day, limits and streak
    paused: bool = False  # the operator paused new entries (a pause or close-all not yet resumed)
    close_all: ClosingAll | None = None  # a close-all with positions of its own still held or bought
    engine_state: EngineState = EngineState.TRADEABLE  # where the last state_change went
    order_errors: deque[int] = field(default_factory=lambda: deque(maxlen=ORDER_ERRORS_KEPT))  # their ts_ms
    last_action_ms: dict[str, int] = field(default_factory=dict)  # symbol -> its last entry or exit (the cool-down's start)
    chart_fills: dict[str, list[Fill]] = field(default_factory=dict)  # symbol -> fills for the chart's marks (`Replay.chart_fills`)
    listings: dict[str, int] = field(default_factory=dict)  # symbol -> listing time, the recent ones (`Replay.recent_listings`)

    @property
    def empty(self) -> bool:
        """No run ever started on this journal: nothing to recover."""
        return self.last_seq == 0

    def anomaly_warning(self) -> str | None:
        """What the owner must hear about the events this replay could not apply (None: there
        were none). Each left the positions and cash rebuilt without it, so the engine trades on
        from records that differ from the journal's: said in the log, the `recovered` event (the
        console's event stream, a notification) and the run's summary, not only in its payload."""
        if not self.anomalies:
            return None
        more = f" | and {len(self.anomalies) - ANOMALIES_LISTED} more" if len(self.anomalies) > ANOMALIES_LISTED else ""
        return (
            f"restart recovery could not apply {len(self.anomalies)} journal event(s), and the positions and cash it "
            f"rebuilt leave them out ({' | '.join(self.anomalies[:ANOMALIES_LISTED])}{more}): keep a copy of the "
            "journal, and check the positions and cash against the exchange's balances before trusting either "
            "(`hotcoin journal export` shows those events)"
        )

    def positions(self, policy: ExitPolicy | None = None) -> list[dict[str, Any]]:
        """The holdings in the shape journaled by the `recovered` risk event; with the exit
        `policy`, each with the stop in force it rebuilt (what the console shows)."""
        return [
            {
                "symbol": s,
                "quantity": h.position.quantity,
                "entry_price": h.position.entry_price,
                "entry_fees": h.position.entry_fees,
                "realised_pnl": h.position.realised_pnl,
                "trace_id": h.position.trace_id,
                "exit_legs": h.exit_legs,
                "tp_tiers_hit": list(h.position.tp_tiers_hit),
                "pending_exit": h.pending_exit,
                "pending_tier": h.pending_tier,
                "trailing_high": h.position.trailing_high or None,  # None: no bid has marked it yet
                **({} if policy is None else {"stop": policy.stop_in_force(h)}),
            }
            for s, h in sorted(self.book.holdings.items())
        ]


def rebuild(events: Iterable[JournalEvent], capital: float, *, breakeven_after_tp: bool = True) -> RecoveredState:
    """Replay journal events (seq order; `KINDS` are the ones that matter) into a `RecoveredState`."""
    replay = Replay(RecoveredState(cash=capital))
    for ev in events:
        replay.feed(ev)
    return replay.finish(breakeven_after_tp=breakeven_after_tp)


@dataclass(slots=True)
class Replay:
    """`rebuild` part way: the state so far and the maps it needs to go on. A `checkpoint`
    journals one of these (`engine.runtime.checkpoint`), so a restart replays only what came
    after it; `finish` derives what hangs off the whole history (exit legs, tiers, pending exits)."""

    state: RecoveredState
    purposes: dict[str, OrderPurpose] = field(default_factory=dict)  # client id -> purpose, for every order attempted
    legs: dict[str, int] = field(default_factory=dict)  # trace -> highest exit leg attempted in it
    tiers: dict[str, int] = field(default_factory=dict)  # position trace -> take-profit orders that sold something
    tp_filled: set[str] = field(default_factory=set)
    opened_seq: dict[str, int] = field(default_factory=dict)  # position trace -> seq of its `open` position_update
    # client id -> time of its latest order_result: when the core booked its fills
    answered: dict[str, int] = field(default_factory=dict)
    unbooked: dict[int, UnbookedFill] = field(default_factory=dict)
    fills: dict[str, deque[Fill]] = field(default_factory=dict)  # symbol -> its latest fills (`FILLS_KEPT`), as journaled

    def feed(self, ev: JournalEvent) -> None:
        """Apply one event (in seq order)."""
        state, book = self.state, self.state.book
        purposes, legs, tiers, tp_filled = self.purposes, self.legs, self.tiers, self.tp_filled
        opened_seq, answered, unbooked = self.opened_seq, self.answered, self.unbooked
        state.last_seq = max(state.last_seq, ev.seq)
        state.last_ts_ms = max(state.last_ts_ms, ev.ts_ms)
        p = ev.payload
        if ev.kind == "order_attempt":
            cid = str(p["client_order_id"])
            purpose = OrderPurpose(p["purpose"])
            purposes[cid] = purpose
            state.sent_ids.add(cid)
            _acted(state, ev.symbol, ev.ts_ms)
            parsed = parse_client_order_id(cid)
            if purpose.is_exit and parsed is not None and ev.trace_id is not None:
                legs[ev.trace_id] = max(legs.get(ev.trace_id, 0), parsed[2])
            price, expires = p.get("price"), p.get("expires_ms")
            state.open_orders[cid] = OpenOrder(
                cid, ev.trace_id or "", ev.symbol or "", Side(p["side"]), OrderType(p["order_type"]), purpose,
                Decimal(str(p["quantity"])), None if price is None else Decimal(str(price)), ev.seq, ev.ts_ms,
                expires_ms=None if expires is None else int(expires),
                tier=_attempted_tier(p, purpose, tiers.get(ev.trace_id or "", 0)),
            )
        elif ev.kind == "order_result":
            cid = str(p["client_order_id"])
            answered[cid] = ev.ts_ms
            if counts_as_order_error(p):  # what the runtime's state machine counted (`Tap.on_order_error`)
                state.order_errors.append(ev.ts_ms)
            if p.get("error_class") == "retryable":
                state.sent_ids.discard(cid)  # the router freed it: the order certainly did not happen
            status = p["status"]
            if status in _TERMINAL:
                order = state.open_orders.pop(cid, None)
                order = state.maybe_late.pop(cid, order)
                if status == OrderStatus.REJECTED.value and p.get("detail") in _NEVER_REACHED and order is not None:
                    state.maybe_late[cid] = order
                elif order is not None and (short := _short_of_reply(order, status, p, ev.ts_ms)) is not None:
                    state.open_orders[cid] = short
            elif cid in state.maybe_late:  # it landed late and rests on the book: open again
                state.open_orders[cid] = dataclasses.replace(state.maybe_late.pop(cid), acknowledged=status in _RESTING)
            elif status in _RESTING and (order := state.open_orders.get(cid)) is not None and not order.acknowledged:
                state.open_orders[cid] = dataclasses.replace(order, acknowledged=True)
        elif ev.kind == "fill":
            fill = Fill(
                trade_id=str(p.get("trade_id", f"seq{ev.seq}")),
                client_order_id=str(p["client_order_id"]),
                symbol=ev.symbol or "",
                side=Side(p["side"]),
                price=float(p["price"]),
                quantity=float(p["quantity"]),
                fee_quote=float(p["fee_quote"]),
                ts_ms=ev.ts_ms,
                trace_id=ev.trace_id or "",
                fee_base=float(p.get("fee_base") or 0.0),
                fee_other=float(p.get("fee_other") or 0.0),
                fee_asset=str(p.get("fee_asset") or ""),
                is_maker=bool(p.get("is_maker", False)),
            )
            booked, cash_moved = as_booked(fill)  # as the core booked it (a fee taken in coins)
            try:
                change = book.apply(booked)
            except PositionError as exc:
                state.anomalies.append(f"seq {ev.seq}: {exc}")
                return
            state.fills += 1
            state.cash += cash_moved
            self.fills.setdefault(fill.symbol, deque(maxlen=FILLS_KEPT)).append(fill)
            cid = fill.client_order_id
            if change.action == "close":
                _acted(state, fill.symbol, answered.get(cid, ev.ts_ms))
            purpose = purposes.get(cid, OrderPurpose.ENTRY if fill.side is Side.BUY else OrderPurpose.CLOSE_ALL)
            if purpose is OrderPurpose.TAKE_PROFIT and cid not in tp_filled:
                tp_filled.add(cid)
                tiers[change.trace_id] = tiers.get(change.trace_id, 0) + 1
            order = state.open_orders.get(cid)
            if order is not None:
                state.open_orders[cid] = dataclasses.replace(
                    order,
                    filled_qty=order.filled_qty + fill.quantity,
                    filled_cost=order.filled_cost + fill.notional,
                    filled_fee_quote=order.filled_fee_quote + _reported_fee_quote(p),
                    filled_fee_base=order.filled_fee_base + fill.fee_base,
                    filled_fee_other=order.filled_fee_other + fill.fee_other,
                    fee_asset=fill.fee_asset or order.fee_asset,
                )
                if order.reply_status is not None and _short_of_reply(state.open_orders[cid]) is None:
                    del state.open_orders[cid]  # its reply's fills are all in: settled
            unbooked[ev.seq] = UnbookedFill(ev.seq, ev.trace_id or change.trace_id, change)
        elif ev.kind == "position_update":
            if ev.cause is not None:
                unbooked.pop(ev.cause, None)
            trace = p.get("position_trace_id") or ev.trace_id
            if p.get("reason") == MISSING_REASON:
                _write_down(state, ev, trace, float(p["fill_quantity"]))
            elif p["action"] == "open" and trace is not None:
                opened_seq[str(trace)] = ev.seq
            elif p["action"] == TRAIL_ACTION:
                _trailed(state, ev, trace, p.get("trailing_high"))
            elif p["action"] == "close":
                if p.get("reason") == WRITE_OFF_REASON:
                    _write_off(state, ev, trace)
                    _acted(state, ev.symbol, ev.ts_ms)  # the core wrote it off then, no fill says so
                state.risk.see_close(float(p.get("total_realised_pnl", p.get("realised_pnl", 0.0))))
        elif ev.kind == "risk_event":
            state.risk.see_event(ev.ts_ms, p)
        elif ev.kind == "command" and p.get("command") in _PAUSED_BY:
            state.paused = _PAUSED_BY[str(p["command"])]
            if p["command"] == Command.CLOSE_ALL.value:
                _pressed(state, ev)
        elif ev.kind == "state_change":
            state.engine_state = EngineState(p["to"])
        elif ev.kind == "listing" and ev.symbol is not None:
            state.listings[ev.symbol] = int(p["listed_ms"])  # the latest: a coin forgotten and relisted
        if state.close_all is not None and ev.kind in ("fill", "order_result", "position_update"):
            _close_all_over(state)

    def finish(self, *, breakeven_after_tp: bool = True) -> RecoveredState:
        """The recovered state: the replayed one with what derives from the whole history.
        Changes the holdings in place: feed nothing after it."""
        state, book, legs, tiers = self.state, self.state.book, self.legs, self.tiers
        for held in book.holdings.values():
            pos = held.position
            held.exit_legs = legs.get(pos.trace_id, 0)
            held.opened_seq = self.opened_seq.get(pos.trace_id)
            hit = tiers.get(pos.trace_id, 0)
            if hit:
                stop = pos.entry_price if breakeven_after_tp else pos.stop_price
                held.position = dataclasses.replace(pos, tp_tiers_hit=tuple(range(hit)), stop_price=stop)
        for order in state.open_orders.values():
            pending = book.get(order.symbol)
            if order.purpose.is_exit and pending is not None:
                pending.pending_exit = order.client_order_id
                pending.pending_tier = order.tier
        state.unbooked = sorted(self.unbooked.values(), key=lambda u: u.fill_seq)
        if state.close_all is not None:
            state.close_all = dataclasses.replace(state.close_all, legs=legs.get(state.close_all.trace_id, 0))
        state.chart_fills = self.chart_fills()
        state.listings = self.recent_listings()
        return state

    def recent_listings(self) -> dict[str, int]:
        """symbol -> listing time, those of the last `LISTINGS_KEPT_MS` before the journal's last
        event: what a restart hands discovery, and a checkpoint keeps."""
        since = self.state.last_ts_ms - LISTINGS_KEPT_MS
        return {s: t for s, t in self.state.listings.items() if t >= since}

    def chart_fills(self) -> dict[str, list[Fill]]:
        """symbol -> the fills a restart hands the chart for its buy and sell marks (oldest
        first): every fill of a position still held, since it opened, and the other fills of
        the day before the journal's last event (`RECENT_FILLS_MS`). The chart read them from
        the run's memory only, so a position bought before a restart showed no buy. A
        checkpoint keeps these, not every fill ever made."""
        since = self.state.last_ts_ms - RECENT_FILLS_MS
        kept: dict[str, list[Fill]] = {}
        for symbol, fills in self.fills.items():
            held = self.state.book.get(symbol)
            start = since if held is None else min(since, held.position.opened_ms)
            recent = [f for f in fills if f.ts_ms >= start]
            if recent:
                kept[symbol] = recent
        return kept


def _short_of_reply(
    order: OpenOrder, status: str | None = None, reply: Mapping[str, Any] | None = None, ts_ms: int = 0
) -> OpenOrder | None:
    """`order`, finished by a terminal `reply` (`status`; None: the one it holds), as an order
    still to settle when that reply says more filled than its fills journaled so far; None when
    they cover it. The router journals each reply as it comes and the core its fills after
    (`OrderRouter.send_all`): killed in between, a close-all sell the exchange had filled was
    dropped as settled, the coins stayed held, and the restart sold them again (refused, written
    down as missing: a false loss). Kept open, recovery settles it with the exchange like any
    order in flight (`Recovery._exchange`). A reply recovery journals carries no quantity (the
    largest so far stands: an order's filled quantity only grows)."""
    if reply is not None:
        price = reply.get("average_price")
        order = dataclasses.replace(
            order,
            reply_status=status,
            reply_qty=max(order.reply_qty, float(reply.get("filled_qty") or 0.0)),
            reply_price=order.reply_price if price is None else float(price),
            reply_ms=ts_ms,
            reply_rested=reply.get("action") in ("sync", "push"),
        )
    if order.reply_status is None or order.filled_qty >= order.reply_qty * (1.0 - 1e-9):
        return None
    return order


def _attempted_tier(attempt: Mapping[str, Any], purpose: OrderPurpose, tiers_sold: int) -> int | None:
    """The take-profit tier an `order_attempt` payload sells (None: a full exit or no
    take-profit), for `Holding.pending_tier`: the core marks that tier hit on the order's fill
    and moves the stop to entry. Left unset, a take-profit in flight at a kill and filled across
    the restart left its tier unhit: the engine sold the same tier again, with no break-even stop.

    The attempt journals it (`OrderIntent.tier`); one journaled before hotcoin did has none. A
    take-profit's tier is then `tiers_sold`, the take-profit orders of its trace that sold
    something before it: the core sells the tiers in order, one exit in flight at a time, and a
    tier counts as hit once its order sold something. What such an attempt cannot say is
    whether it sold the whole position (the last tier, or a rest too small to keep), which the
    core sends as no tier: read as a tier, the crumbs a fee in coins left behind wait for the
    next exit decision to be written off, where read as none, a partial tier was sold twice."""
    if "tier" in attempt:
        return None if attempt["tier"] is None else int(attempt["tier"])
    return tiers_sold if purpose is OrderPurpose.TAKE_PROFIT else None


def _reported_fee_quote(fill: Mapping[str, Any]) -> float:
    """A journaled fill's quote fee as the broker reported it. The core adds the value of a
    commission paid in a third asset (`TradingCore._value_fee`) before it journals the fill; the
    exchange's cumulative quote fee, which the broker deltas against, never had it, and a
    baseline holding it swallowed the order's next quote (or coin) fee."""
    fee = float(fill["fee_quote"])
    rate = fill.get("fee_rate")
    if rate is None:  # no third-asset fee, or one the core could not value: nothing was added
        return fee
    return max(0.0, fee - float(fill.get("fee_other") or 0.0) * float(rate))


def _write_off(state: RecoveredState, ev: JournalEvent, trace: str | None) -> None:
    """Drop the dust the core wrote off (`PositionBook.write_off`): no fill records it, so
    without this the remainder came back as a position, later buys were added to it (old trace,
    old open time) and max-hold sold them, and it was written off again as a new loss."""
    symbol = ev.symbol or ""
    held = state.book.get(symbol)
    if held is None or held.position.trace_id != trace:
        state.anomalies.append(f"seq {ev.seq}: dust write-off of {symbol} ({trace}), which the fills do not hold")
        return
    state.book.write_off(symbol, ev.ts_ms)


def _write_down(state: RecoveredState, ev: JournalEvent, trace: str | None, missing: float) -> None:
    """Drop the coins the core wrote down as missing on the exchange (`PositionBook.write_down`,
    after an exit refused for insufficient balance): no fill records them, so without this a
    restart brought them back and the exits were refused again."""
    symbol = ev.symbol or ""
    held = state.book.get(symbol)
    if held is None or held.position.trace_id != trace:
        state.anomalies.append(f"seq {ev.seq}: write-down of {symbol} ({trace}), which the fills do not hold")
        return
    state.book.write_down(symbol, missing, ev.ts_ms)


def _trailed(state: RecoveredState, ev: JournalEvent, trace: str | None, peak: object) -> None:
    """Raise the trailing peak of the position the core journaled it for (`TRAIL_ACTION`): the
    fills rebuild no peak (the core's is the highest bid, `PositionBook.mark`), and the stop
    after a restart fell back to the stop loss under a trail the owner had seen raised. A peak
    of another position (the trace differs) moves nothing: no money hangs on it."""
    held = state.book.get(ev.symbol or "")
    if held is None or held.position.trace_id != trace or not isinstance(peak, int | float) or isinstance(peak, bool):
        return
    state.book.mark(held.position.symbol, float(peak))


def _pressed(state: RecoveredState, ev: JournalEvent) -> None:
    """A close-all `command`: a new close-all, or a press that joins the running one (`repeat`,
    in its trace) and adds what is held then, as `TradingCore.begin_close_all` does. A command
    outside any trace is no core's (nothing could join it) and changes nothing here."""
    if ev.trace_id is None:
        return
    book = state.book
    entries = (o.trace_id for o in state.open_orders.values() if o.purpose is OrderPurpose.ENTRY)
    traces = frozenset(h.position.trace_id for h in book.holdings.values()).union(entries)
    ca = state.close_all
    if ev.payload.get("repeat") and ca is not None and ca.trace_id == ev.trace_id:
        state.close_all = dataclasses.replace(ca, traces=ca.traces | traces, presses=ca.presses + 1)
    else:  # a repeat the replay has no close-all for (it saw it end): its cause is the first press
        first = ev.cause if ev.payload.get("repeat") and ev.cause is not None else ev.seq
        state.close_all = ClosingAll(ev.trace_id, first, ev.ts_ms, traces)
        _close_all_over(state)


def _close_all_over(state: RecoveredState) -> None:
    """Forget the close-all once nothing it sells is held and none of its entries is open, as
    the core ends it: an entry of its own landing late afterwards is not sold by a restart."""
    ca = state.close_all
    assert ca is not None
    if any(h.position.trace_id in ca.traces for h in state.book.holdings.values()):
        return
    if any(o.purpose is OrderPurpose.ENTRY and o.trace_id in ca.traces for o in state.open_orders.values()):
        return
    state.close_all = None


def _acted(state: RecoveredState, symbol: str | None, ts_ms: int) -> None:
    """`symbol` was entered or exited at `ts_ms` (`TradingCore.last_action_ms`): its cool-down runs from the latest."""
    if symbol:
        state.last_action_ms[symbol] = max(ts_ms, state.last_action_ms.get(symbol, ts_ms))


def read_journal(path: Path | str, capital: float, *, breakeven_after_tp: bool = True) -> RecoveredState:
    """`rebuild` from the journal at `path` (its latest usable checkpoint, then the main file and
    archives after it); an empty state if none yet."""
    return replay_journal(path, capital).finish(breakeven_after_tp=breakeven_after_tp)


def replay_journal(path: Path | str, capital: float, *, through_seq: int | None = None) -> Replay:
    """The journal at `path` replayed up to `through_seq` (all of it: None), from its latest
    usable checkpoint on (`engine.runtime.checkpoint.start`)."""
    from engine.journal.reader import JournalReader
    from engine.runtime.checkpoint import start  # it builds on this module

    path = Path(path)
    if not path.is_file():
        return Replay(RecoveredState(cash=capital))
    with JournalReader(path) as reader:
        after, replay = start(reader, path, capital)
        # Closed before the reader: a generator left open when a newer event or a backtest is
        # refused was finalised after it, and its read transaction's end printed "Exception
        # ignored ... Cannot operate on a closed database" twice under the refusal.
        with closing(reader.events(kinds=KINDS, after_seq=after)) as events:
            for ev in known_versions(events, path):
                if through_seq is not None and ev.seq > through_seq:
                    break
                if ev.kind == "run_start" and ev.payload["mode"] == BACKTEST_MODE:
                    raise JournalError(_backtest_journal(path, ev))
                replay.feed(ev)
    return replay


def _backtest_journal(path: Path, run_start: JournalEvent) -> str:
    """Why the engine will not start on a journal a backtest wrote into, and what to do."""
    return (
        f"journal {path} holds a backtest (run {run_start.payload['run_id']}, started at event seq {run_start.seq}): "
        "its trades are replayed history, and restart recovery would book them as this engine's cash and positions; "
        "run the engine on a journal of its own (--journal with another path, or the configured one) and give each "
        "backtest a new file"
    )


class Recovery:
    """Installs a `RecoveredState` into a freshly built engine and reconciles it with the broker."""

    def __init__(self, state: RecoveredState) -> None:
        self.state = state

    async def apply(self, engine: Engine, now_ms: int) -> dict[str, Any]:
        """Restore core and router, settle the open orders, journal what was found; returns the
        payload of the `recovered` risk event."""
        core = engine.core
        assert core is not None, "Recovery.apply runs once the engine built its core"
        state = self.state
        sink = engine.tap
        for u in state.unbooked:
            _journal_update(sink, u, now_ms)
        for fills in state.chart_fills.values():  # before any fill the reconcile books: oldest first
            engine.keep_fills(fills)
        core.restore(state.book.holdings, state.cash, state.book.written_off, state.last_action_ms)
        for event in core.risk.restore(state.risk, now_ms):  # a changed capital moves the day's start
            log.warning("%s", event.detail)
            sink.emit("risk_event", ts_ms=now_ms, payload=event.payload())
        if state.risk.l5_at_ms is not None:
            engine.state.restore_l5(state.risk.l5_at_ms + int(engine.config.state.l5_cooldown_s * 1000))
        engine.router.remember(state.sent_ids)
        engine.state.restore(state.engine_state, state.order_errors)
        if state.engine_state is not EngineState.TRADEABLE:
            log.warning("engine %s (restored from the journal): it recovers after healthy cycles", state.engine_state.value)
        if state.paused:
            # A crash after the panic button (the service restarts the engine) must not re-arm buying.
            engine.cycle.paused = True
            log.warning("entries paused (restored from the journal): resume with p")
        engine.cycle.push_state()
        closing = state.close_all
        if closing is not None:  # before the reconcile: a sell of its own filled while down may finish it
            core.resume_close_all(closing.trace_id, closing.seq, closing.traces, legs=closing.legs, presses=closing.presses)
        settled = await self._reconcile(engine, now_ms)
        await self._resume_attempts(engine)
        engine.router.journal_unattached(now_ms)  # what the reconcile's lookups said that changed nothing
        detail = (
            f"restart: {len(state.book.holdings)} position(s), cash {state.cash:.2f}, "
            f"{len(state.sent_ids)} client id(s) already sent, {len(settled)} open order(s) settled"
        )
        left = core.close_all_left()
        if closing is not None and left:
            said = f"close-all still in progress, restored from the journal: selling {', '.join(left)}"
            log.warning("%s", said)
            engine.close_all_restored(closing.ts_ms, now_ms)
            detail = f"{detail}; {said}"
        warning = state.anomaly_warning()
        if warning is not None:
            log.warning(warning)
            detail = f"{warning}; {detail}"  # first: the console's event stream shows the start of a line
        payload: dict[str, Any] = {
            "code": "recovered",
            "level": core.risk.level.name,
            "detail": detail,
            "value": float(len(state.book.holdings)),
            "threshold": None,
            "positions": state.positions(core.exit_policy),
            "cash": state.cash,
            "orders": settled,
            "through_seq": state.last_seq,
            "unbooked_fills": [u.fill_seq for u in state.unbooked],
            "anomalies": state.anomalies,
            "paused": state.paused,
            "engine_state": state.engine_state.value,
            "order_errors": engine.state.errors.count(now_ms),
            "watching_late": engine.broker.watching_late(),
        }
        sink.emit("risk_event", ts_ms=now_ms, payload=payload)
        return payload

    async def _resume_attempts(self, engine: Engine) -> None:
        """Give the router the attempt seqs of the orders the broker still follows (open, or
        watched for a late landing), so their later results are caused by their attempts."""
        broker = engine.broker
        late = broker.watching_late()
        try:
            live = {o.client_order_id for o in await broker.open_orders()} | set(late)
        except OrderError:  # as in `_listed`: what we cannot list, we cannot follow
            live = set(late)
        journaled = [*self.state.maybe_late.values(), *self.state.open_orders.values()]
        engine.router.resume({o.client_order_id: o.attempt_seq for o in journaled if o.client_order_id in live}, late)

    async def _reconcile(self, engine: Engine, now_ms: int) -> list[dict[str, Any]]:
        broker = engine.broker
        settled: list[dict[str, Any]] = []
        if isinstance(broker, ExchangeBroker):
            for order in [*self.state.maybe_late.values(), *self.state.open_orders.values()]:
                if order.expires_ms is not None:  # one that lands late, or rests on, still expires
                    broker.expire_at(order.client_order_id, order.expires_ms)
            for late in self.state.maybe_late.values():
                settled += await self._late(engine, broker, late, now_ms)
        for order in sorted(self.state.open_orders.values(), key=lambda o: o.attempt_seq):
            if isinstance(broker, PaperBroker):
                outcome = self._lost(engine, order, now_ms) if order.reply_status is None else self._replied(engine, broker, order, now_ms)
            elif isinstance(broker, ExchangeBroker):
                outcome = await self._exchange(engine, broker, order, now_ms)
            else:
                outcome = await self._listed(engine, broker, order, now_ms)
            settled.append({"client_order_id": order.client_order_id, "symbol": order.symbol, "outcome": outcome})
        return settled

    def _lost(self, engine: Engine, order: OpenOrder, now_ms: int) -> str:
        """An order that died with the process: journaled as cancelled, released in the core."""
        seq = engine.tap.emit(
            "order_result",
            ts_ms=now_ms,
            payload={
                "client_order_id": order.client_order_id,
                "status": OrderStatus.CANCELED.value,
                "error_class": None,
                "reason": LOST_IN_RESTART,
                "detail": "the paper broker restarted: the order died with the process and is treated as never filled",
            },
            trace_id=order.trace_id,
            symbol=order.symbol,
            cause=order.attempt_seq,
        )
        _core(engine).on_order_update(OrderUpdate(order.as_order(OrderStatus.CANCELED, now_ms), journal_seq=seq), now_ms)
        return LOST_IN_RESTART

    async def _late(self, engine: Engine, broker: ExchangeBroker, order: OpenOrder, now_ms: int) -> list[dict[str, Any]]:
        """Ask the exchange once about an order the journal left settled as never reached,
        whatever its age: one that landed while the engine was down is booked now (a filled
        market sell placed late was otherwise never booked, and its exit was sent again for
        coins already sold). One still unknown past the broker's late watch is journaled as
        settled for good (`DID_NOT_LAND`), so later restarts stop asking. Settled entries for
        the `recovered` event: the ones that landed or ended."""
        update = await broker.recover_late(order.as_order(OrderStatus.REJECTED, order.ts_ms), now_ms)
        if update is not None:
            seq = self._result(engine, order, update.order.status, update.detail or LANDED_LATE, now_ms)
            engine.router.journal_anomalies(update, seq, now_ms, trace_id=order.trace_id)  # the landing, a fee estimated
            _core(engine).on_order_update(dataclasses.replace(update, journal_seq=seq), now_ms)
            engine.keep_fills(update.fills)
            return [{"client_order_id": order.client_order_id, "symbol": order.symbol, "outcome": "landed_late"}]
        if order.client_order_id in broker.watching_late():
            return []
        self._result(engine, order, OrderStatus.REJECTED, DID_NOT_LAND, now_ms)
        return [{"client_order_id": order.client_order_id, "symbol": order.symbol, "outcome": "did_not_land"}]

    async def _exchange(self, engine: Engine, broker: ExchangeBroker, order: OpenOrder, now_ms: int) -> str:
        """Ask the exchange; book only what it did beyond the fills the journal already has."""
        try:
            seen = await broker.gateway.fetch_order(order.symbol, order.client_order_id)
        except NonRetryableOrderError as exc:
            if order.reply_status is not None:  # it replied, then forgot: the reply is the record left
                seen = order.as_replied()
            elif order.acknowledged and is_order_unknown(exc):
                return self._vanished(engine, order, now_ms)
            elif order.filled_qty == 0:
                self._result(engine, order, OrderStatus.REJECTED, RESTART_NEVER_REACHED, now_ms)
                rejected = order.as_order(OrderStatus.REJECTED, now_ms)
                _core(engine).on_order_update(OrderUpdate(rejected), now_ms)
                broker.watch_late(rejected, now_ms)  # its create may have been in flight at the kill
                return "never_reached"
            else:
                raise
        # The broker learns the order as the journal last saw it (those fills are booked already),
        # then the exchange's snapshot with its trades' commissions: only the difference comes
        # back as new fills, with the fees the exchange took for them.
        baseline = order.as_order(OrderStatus.PARTIALLY_FILLED if order.filled_qty > 0 else OrderStatus.OPEN, now_ms)
        update = await broker.recover_open(baseline, seen, now_ms)
        if update is not None:
            # Its fills are caused by this result, as the router's are by theirs: the core's own
            # link (the exit decision's seq) died with the process, and the fills had no cause.
            seq = self._result(engine, order, update.order.status, "reconciled after restart", now_ms)
            engine.router.journal_anomalies(update, seq, now_ms, trace_id=order.trace_id)
            _core(engine).on_order_update(dataclasses.replace(update, journal_seq=seq), now_ms)
            engine.keep_fills(update.fills)
        return seen.status.value

    def _vanished(self, engine: Engine, order: OpenOrder, now_ms: int) -> str:
        """An order the journal had resting on the exchange that the exchange no longer knows
        (a restarted simulated exchange, an order Binance purged): settled as expired with the
        fills the journal has (`VANISHED`), its reservation released. It had been acknowledged,
        so it did reach the exchange: journaled as never reached, replay said the broker had
        rejected it, and the broker watched for it to land."""
        self._result(engine, order, OrderStatus.EXPIRED, VANISHED, now_ms)
        _core(engine).on_order_update(OrderUpdate(order.as_order(OrderStatus.EXPIRED, now_ms)), now_ms)
        return "vanished"

    def _replied(self, engine: Engine, broker: PaperBroker, order: OpenOrder, now_ms: int) -> str:
        """An order the paper broker replied filled and whose fills died with the process, the
        broker with them: its reply is all that is left of it, so the rest is booked from that."""
        baseline = order.as_order(OrderStatus.PARTIALLY_FILLED if order.filled_qty > 0 else OrderStatus.OPEN, now_ms)
        update = broker.settle_reply(baseline, order.as_replied(), rested=order.reply_rested)
        seq = self._result(engine, order, update.order.status, "booked from its reply after restart", now_ms)
        _core(engine).on_order_update(dataclasses.replace(update, journal_seq=seq), now_ms)
        return update.order.status.value

    async def _listed(self, engine: Engine, broker: Broker, order: OpenOrder, now_ms: int) -> str:
        """A broker without lookups: an order it still lists stays open, any other is gone."""
        try:
            listed = {o.client_order_id for o in await broker.open_orders()}
        except OrderError:
            listed = set()
        if order.client_order_id in listed:
            return "open"
        return self._lost(engine, order, now_ms)

    def _result(self, engine: Engine, order: OpenOrder, status: OrderStatus, detail: str, now_ms: int) -> int:
        return engine.tap.emit(
            "order_result",
            ts_ms=now_ms,
            payload={"client_order_id": order.client_order_id, "status": status.value, "error_class": None, "detail": detail},
            trace_id=order.trace_id,
            symbol=order.symbol,
            cause=order.attempt_seq,
        )


class BalanceSource(Protocol):
    """Where the exchange's balances come from (`engine.market.gateway.Gateway` satisfies it)."""

    async def fetch_balance(self) -> dict[str, Balance]: ...


BALANCE_CHECK_MS = 5 * 60_000


class BalanceAudit:
    """Every `interval_ms`, compare the exchange's balances with the core's records.

    Checked: each held coin's balance (free + locked) against the position's quantity, and the
    free quote against the cash the core thinks it may spend. An exchange holding *less* coin
    than the position means it was partly sold or never bought. Coins we do not hold are not
    ours to judge (fee BNB, the owner's own coins), and neither are the owner's coins of a
    coin we do hold: the account may have held it before the engine bought any.

    So *more* is judged against a baseline rather than against the position alone: the first
    check that reads the balances notes, for every coin, what the account holds beyond our
    records (positions, and the dust written off, which stays on the exchange) and takes it as
    the owner's. Only an excess beyond that baseline (plus `tolerance`) is a mismatch: coins
    that arrived since the engine started, from a fill we did not book or bought in the
    Binance app. Dropping the excess check altogether was simpler, but it is the audit's only
    backstop for a buy the broker's order tracking missed (an order that landed late, say).
    The baseline lives in memory: a restart takes a new one (recovery has looked up every
    order it had in flight), and it is never raised or lowered afterwards: lowered by a check
    that ran while an exit had filled on the exchange but was not booked yet, it would call the
    owner's coins a missed fill for the rest of the run.

    A mismatch is journaled as a `risk_event` with code `balance_mismatch`, once per asset
    until the numbers change, and returned; trading decisions stay with the risk checks.
    """

    def __init__(
        self, source: BalanceSource, quote_asset: str, *, interval_ms: int = BALANCE_CHECK_MS, tolerance: float = 1e-6
    ) -> None:
        self.source = source
        self.quote_asset = quote_asset
        self.interval_ms = interval_ms
        self.tolerance = tolerance
        self._last_ms: int | None = None
        self._reported: dict[str, tuple[float, float]] = {}
        self._owners: dict[str, float] | None = None  # asset -> the owner's coins at the first check
        self._failures = RepeatedFailure(log, "balance check")  # an outage fails every check alike

    def due(self, now_ms: int) -> bool:
        return self._last_ms is None or now_ms - self._last_ms >= self.interval_ms

    async def run(self, core: TradingCore, sink: EventSink, now_ms: int) -> list[dict[str, Any]]:
        self._last_ms = now_ms
        try:
            balances = await self.source.fetch_balance()
        except HotcoinError as exc:  # an exchange hiccup: the next interval tries again
            self._failures.failed(str(exc))
            return []
        self._failures.ok()
        if self._owners is None:
            self._owners = _beyond_records(core, balances, self.quote_asset)
        found: list[dict[str, Any]] = []
        for symbol, held in sorted(core.book.holdings.items()):
            asset = symbol.split("/")[0]
            ours = held.position.quantity
            dust = core.book.written_off.get(symbol, 0.0)
            owners = self._owners.get(asset, 0.0)
            bal = balances.get(asset)
            theirs = float(bal.total) if bal is not None else 0.0
            slack = self.tolerance * max(1.0, ours)
            if theirs < ours - slack or theirs > ours + dust + owners + slack:
                found.append(self._mismatch(asset, symbol, ours, theirs, "position quantity", dust, owners))
        spendable = core.cash - core.reserved_cash()
        quote = balances.get(self.quote_asset)
        free = float(quote.free) if quote is not None else 0.0
        if free + self.tolerance * max(1.0, spendable) < spendable:
            found.append(self._mismatch(self.quote_asset, None, spendable, free, "spendable cash"))
        self._reported = {a: v for a, v in self._reported.items() if a in {m["asset"] for m in found}}
        fresh = []
        for m in found:
            key = (m["value"], m["threshold"])
            if self._reported.get(m["asset"]) != key:
                self._reported[m["asset"]] = key
                fresh.append(m)
                sink.emit("risk_event", ts_ms=now_ms, payload={**m, "level": core.risk.level.name}, symbol=m["symbol"])
        return fresh

    @staticmethod
    def _mismatch(
        asset: str, symbol: str | None, ours: float, theirs: float, what: str, dust: float = 0.0, owners: float = 0.0
    ) -> dict[str, Any]:
        also = f" and {dust:.10g} more was written off as dust" if dust else ""
        own = f", and {owners:.10g} were the account's own when the engine started" if owners else ""
        return {
            "code": "balance_mismatch",
            "detail": (
                f"{asset}: the exchange holds {theirs:.10g}, our {what} is {ours:.10g}{also}{own}; "
                "reconcile before trusting either"
            ),
            "value": theirs,
            "threshold": ours,
            "asset": asset,
            "symbol": symbol,
        }


def _beyond_records(core: TradingCore, balances: Mapping[str, Balance], quote_asset: str) -> dict[str, float]:
    """asset -> what the exchange holds of it beyond our records (the positions and the dust
    written off), never below zero: the owner's coins, as `BalanceAudit` takes them at its
    first check. A shortfall is not owned by anyone; the audit reports it by itself."""
    records: dict[str, float] = {}
    for symbol, qty in core.book.written_off.items():
        asset = symbol.split("/")[0]
        records[asset] = records.get(asset, 0.0) + qty
    for symbol, held in core.book.holdings.items():
        asset = symbol.split("/")[0]
        records[asset] = records.get(asset, 0.0) + held.position.quantity
    return {
        asset: max(0.0, float(bal.total) - records.get(asset, 0.0))
        for asset, bal in balances.items()
        if asset != quote_asset
    }


def _core(engine: Engine) -> TradingCore:
    if engine.core is None:
        raise RuntimeError("recovery runs once the engine built its core")
    return engine.core


def _journal_update(sink: EventSink, u: UnbookedFill, now_ms: int) -> None:
    c = u.change
    sink.emit(
        "position_update",
        ts_ms=now_ms,
        payload={
            "action": c.action,
            "quantity": c.quantity,
            "fill_quantity": c.fill_qty,
            "entry_price": c.entry_price,
            "realised_pnl": c.realised_pnl,
            "total_realised_pnl": c.total_realised_pnl,
            "fee_quote": c.fee_quote,
            "reason": "recovered",
            "position_trace_id": c.trace_id,
        },
        trace_id=u.trace_id,
        symbol=c.symbol,
        cause=u.fill_seq,
    )


def recovered_positions(events: Iterable[JournalEvent]) -> Mapping[int, list[dict[str, Any]]]:
    """seq of each `recovered` risk event -> the positions it listed (for checks and replay)."""
    return {
        ev.seq: list(ev.payload.get("positions", []))
        for ev in events
        if ev.kind == "risk_event" and ev.payload.get("code") == "recovered"
    }
