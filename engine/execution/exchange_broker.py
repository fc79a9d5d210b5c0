"""`ExchangeBroker`: orders through the exchange gateway, with the exchange as the source of truth.

What it adds on top of the gateway:
- every order it sent is tracked by client order id; updates pass the order lifecycle table,
  and the executions between two snapshots become `Fill`s (price from the change in cumulative
  cost), so partial fills are booked as they happen, once each;
- a create whose outcome is unknown (timeout, 5xx, -1007) is looked up by its client order id
  before anyone retries, and left tracked as pending for reconciliation if the lookup fails too;
  Binance says such an order may still execute, so "does not exist" makes it REJECTED only once
  it has been unknown for `unknown_grace_ms`;
- and even then it may land later (Binance's backend queue): its client id stays on a watch
  list, looked up every `late_check_ms` until `late_watch_ms` after its create. If the exchange
  turns out to know it after all (a lookup, or the open-order list), the order is taken over
  from the exchange's snapshot as if it had been pending all along, and reported with its fills
  (fees from its trades) and the detail `LANDED_LATE`, so it is booked and journaled once;
- a fill learned from a status lookup (GET /order, /openOrders, a cancel reply: none of them
  carries fills or commission on Binance) is booked with the commission of the order's trades
  (GET /myTrades); if those cannot be fetched, with an estimate at the taker (or maker) rate,
  in coins for a buy as Binance takes it without BNB, recorded as an anomaly — never as
  fee-free, or the position would hold coins the exchange kept and its exit would fail for
  want of them;
- an anomaly (an estimated fee, a late landing, the exchange's state taken over ours or
  ignored, an order not ours) is logged once per order and text, at WARNING, and handed out
  to be journaled: on the `OrderUpdate` it explains (`anomalies`), or, when nothing changed
  and there is no update, through `take_anomalies`; the broker itself has no journal;
- a fill is a maker's when the order had rested on the book (a LIMIT we had seen open), or
  when the order's trades say so; the fee estimate uses the maker rate for those;
- a cancel is never reported while the order still rests: a refusal (a key without trading
  permission, -2015) is raised for the caller to journal as a failed cancel, and only an
  order the exchange no longer has open ("unknown order": it filled or was cancelled
  meanwhile) is answered by its final state;
- LIMIT orders carry an expiry: `expired` names the stale ones, for the router to cancel
  (journaled like any cancel);
- every `reconcile_interval_ms`, `sync` compares our open orders with the exchange's and fetches
  the final state of any that vanished (filled or cancelled while we were not listening), and
  adopts open orders with our id prefix that we had lost track of (e.g. after a restart);
- an order we had seen resting (acknowledged: OPEN or PARTIALLY_FILLED) that is neither open
  nor known to a lookup ("Order does not exist", -2013) is settled once as EXPIRED with the
  detail `VANISHED`: the exchange lost it (a simulated exchange restarted with a fresh account,
  an order Binance purged), so nothing more can fill and what it reserved is free again. Raised
  instead, the lookup failed every reconcile and every cancel at its expiry for as long as the
  engine ran, each counted as an order error, until the engine blocked. A PENDING order (its
  create's outcome unknown) that the exchange does not know is another matter: it may not be
  visible yet, and it keeps the grace and the late watch below (`NEVER_REACHED`, `LANDED_LATE`);
- a `sync` call that fails for one order (429, timeout) does not stop the others, and what was
  absorbed reaches the caller either way (`SyncIncomplete` carries it when something failed):
  an absorbed update is never reported twice, so dropping one would lose its fills for good;
- a finished order leaves the orders followed as soon as nothing needs it any more (it is not
  on the late watch; its fills were booked, at the fees of its trades or an estimate, when it
  was absorbed: nothing is fetched for it later), into the last `FINISHED_KEPT` finished
  (`engine.execution.finished`). There its client id is still refused and a late report of it
  (a stream push lagging the reply, a resync, a fill after our cancel) is still taken against
  what we booked, never adopted nor booked again. `expired`, `open_orders` and the reconcile
  walk the open orders only: kept for good, every order ever placed was walked at every sync.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol, TypeVar

from engine.domain import Fill, Order, OrderIntent, OrderStatus, OrderType, Side
from engine.errors import (
    FAULT_ERRORS,
    NonRetryableOrderError,
    OrderError,
    UnknownOrderError,
    is_order_unknown,
)
from engine.execution.broker import Anomaly, Broker, OrderUpdate, SyncIncomplete
from engine.execution.client_ids import is_ours
from engine.execution.finished import Finished
from engine.execution.order_fsm import (
    InvalidOrderTransition,
    apply_update,
    exact_sum,
    fee_delta,
    fill_delta,
)
from engine.market.gateway import Balance

T = TypeVar("T")

log = logging.getLogger("hotcoin.broker")

# Anomalies not yet handed out, and the (order, text) pairs already logged: a stream that repeats
# a stale snapshot all day would otherwise log, and journal, the same line each time.
ANOMALIES_KEPT = 1000
NEVER_REACHED = "the exchange does not know the order: its create never reached the exchange"
LANDED_LATE = "the exchange placed the order late, after it had been taken as never reached"
# An order we had seen resting that the exchange no longer lists nor knows (module docstring).
VANISHED = "the exchange no longer knows it (restarted or purged); nothing more filled as far as we know"
# How long after its create an order rejected as never reached is still looked for. Binance's
# backend queue delays an unanswered create by seconds, rarely minutes; ten minutes covers that
# with room, at the cost of a few lookups per order that timed out (rare by itself).
LATE_WATCH_MS = 10 * 60_000
# How often each watched id is looked up (GET /order, weight 4 on Binance): a lower rate than
# the open-order reconcile, since most such orders never land; a late one waits this long at most.
LATE_CHECK_MS = 30_000
_RESTING = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


class OrderGateway(Protocol):
    """The part of `engine.market.gateway.Gateway` the broker needs (it satisfies this)."""

    async def create_order(self, intent: OrderIntent) -> Order: ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order: ...

    async def fetch_order(self, symbol: str, client_order_id: str) -> Order: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def fetch_my_trades(
        self, symbol: str, since_ms: int | None = None, *, order_id: str | None = None
    ) -> list[Fill]: ...

    async def fetch_balance(self) -> dict[str, Balance]: ...


@dataclass(slots=True)
class _Watch:
    """An order rejected as never reached that may still land: when to look next, and until when."""

    next_ms: int
    until_ms: int


@dataclass(slots=True)
class _Progress:
    """One `sync`: the updates absorbed so far and the exchange calls that failed."""

    updates: list[OrderUpdate] = field(default_factory=list)
    errors: list[OrderError] = field(default_factory=list)

    async def attempt(self, call: Awaitable[T]) -> T | None:
        """`call`'s result, or None with its error kept, so one order's failure spares the rest."""
        try:
            return await call
        except OrderError as exc:
            self.errors.append(exc)
            return None

    def add(self, update: OrderUpdate | None) -> None:
        if update is not None:
            self.updates.append(update)

    def outcome(self) -> list[OrderUpdate]:
        """The updates; inside `SyncIncomplete` when a call failed, so the error is seen and they still arrive."""
        if self.errors:
            raise SyncIncomplete(self.errors, self.updates)
        return self.updates


class ExchangeBroker(Broker):
    fee_assets = ("BNB",)  # Binance charges in BNB when the account pays fees with it

    def __init__(
        self,
        gateway: OrderGateway,
        *,
        reconcile_interval_ms: int = 15_000,
        taker_fee_rate: float = 0.001,
        maker_fee_rate: float = 0.001,
        unknown_grace_ms: int = 10_000,
        late_watch_ms: int = LATE_WATCH_MS,
        late_check_ms: int = LATE_CHECK_MS,
    ) -> None:
        self.gateway = gateway
        self.reconcile_interval_ms = reconcile_interval_ms
        self.unknown_grace_ms = unknown_grace_ms
        self.late_watch_ms = late_watch_ms
        self.late_check_ms = late_check_ms
        self.taker_fee_rate = taker_fee_rate
        self.maker_fee_rate = maker_fee_rate
        # Each order we know is in one of three maps (`_keep` files it): open (not terminal), in
        # placement order; finished and on the late watch; finished and followed no more, bounded.
        self._open: dict[str, Order] = {}
        self._watched: dict[str, Order] = {}
        self._finished: Finished[Order] = Finished()
        # client id -> when an order still followed expires: its intent's, or the journal's for an
        # order recovery hands back (`expire_at`); dropped once the order is followed no more
        self._expires: dict[str, int] = {}
        self._last_reconcile_ms: int | None = None
        self._late: dict[str, _Watch] = {}  # client id -> its watch, for orders that may land late
        self._unattached: deque[Anomaly] = deque(maxlen=ANOMALIES_KEPT)  # for `take_anomalies`
        self._told: dict[tuple[str, str], None] = {}  # (client id, text) of the anomalies logged

    @staticmethod
    def _pending(intent: OrderIntent, now_ms: int) -> Order:
        return Order.from_intent(intent, OrderStatus.PENDING, now_ms)

    def order(self, client_order_id: str) -> Order | None:
        """Our view of an order: open, watched for a late landing, or among the last finished;
        None for one we never had or finished too long ago (see `engine.execution.finished`)."""
        for held in (self._open, self._watched):
            order = held.get(client_order_id)
            if order is not None:
                return order
        return self._finished.get(client_order_id)

    def _keep(self, order: Order) -> None:
        """File `order` as our view of it: with the open ones while it is not terminal (in place
        if it was open already, so `expired` keeps placement order), with the watched ones while
        a late landing is looked for, else among the last finished, followed no more."""
        cid = order.client_order_id
        if not order.status.is_terminal:
            self._watched.pop(cid, None)
            self._finished.pop(cid)
            self._open[cid] = order
            return
        self._open.pop(cid, None)
        if cid in self._late:
            self._finished.pop(cid)
            self._watched[cid] = order
            return
        self._watched.pop(cid, None)
        self._expires.pop(cid, None)
        self._finished.add(cid, order)

    def _unwatch(self, client_order_id: str) -> None:
        """Stop looking for a late landing of an order: it is followed no more."""
        del self._late[client_order_id]
        order = self._watched.get(client_order_id)
        if order is not None:
            self._keep(order)

    def _absorb(
        self, update: Order, now_ms: int, trades: Sequence[Fill] = (), detail: str | None = None
    ) -> OrderUpdate | None:
        """Fold an exchange snapshot into our view; None when it says nothing new. `trades`: the
        order's trades when they were fetched with it; `detail`: why we settled it ourselves."""
        cid = update.client_order_id
        current = self.order(cid)
        notes: list[Anomaly] = []
        if current is None:
            if not is_ours(cid):
                # Not an order we placed: another client's on the same account, or one of ours
                # filed under the wrong id (Binance's cancel reply names the cancel, not the
                # order). Adopted, its whole executed quantity would be booked as a new fill
                # beside the order we already track: counted twice, or someone else's.
                said = f"ignored: not our order ({update.status.value}, {update.filled_qty} filled)"
                self._unattach([Anomaly(cid, said, update.symbol)])
                return None
            # An order of ours we had lost track of: adopt it, fills from zero.
            intent_less = replace(
                update, filled_qty=Decimal(0), average_price=None, fee_quote=0.0, fee_base=0.0, fee_other=0.0
            )
            current = replace(intent_less, status=OrderStatus.PENDING)
        elif cid in self._late:
            # The exchange knows an order we had settled as never reached: it landed late. Its
            # snapshot is the truth from the start (we had it with nothing filled).
            self._unwatch(cid)
            current = replace(current, status=OrderStatus.PENDING)
            detail = LANDED_LATE
            notes.append(_anomaly(current, f"landed late: the exchange has it {update.status.value}"))
        # Keep what the exchange does not echo back (trace, purpose) from what we sent.
        update = replace(update, trace_id=current.trace_id or update.trace_id, purpose=current.purpose)
        new = self._settle(current, update, notes)
        if new is None or new is current:
            self._unattach(notes)
            return None
        maker = _is_maker(current, trades)
        if new.filled_qty > current.filled_qty and not new.fees_reported:
            new = self._estimate_fees(current, new, maker, notes)
        self._keep(new)
        qty, price, fee = fill_delta(current, new)
        fills: tuple[Fill, ...] = ()
        if qty > 0:
            fills = (
                Fill(
                    trade_id=f"{cid}:{new.filled_qty}",
                    client_order_id=cid,
                    symbol=new.symbol,
                    side=new.side,
                    price=price,
                    quantity=float(qty),
                    fee_quote=fee,
                    ts_ms=new.updated_ms or now_ms,
                    trace_id=new.trace_id,
                    fee_base=fee_delta(new.fee_base, current.fee_base),
                    is_maker=maker,
                    fee_other=fee_delta(new.fee_other, current.fee_other),
                    fee_asset=new.fee_asset,
                ),
            )
        for note in notes:
            self._tell(note)
        return OrderUpdate(new, fills, detail=detail, anomalies=tuple(n.detail for n in notes))

    def _tell(self, anomaly: Anomaly) -> bool:
        """Log `anomaly` at WARNING, the first time its order says it (with its symbol and trace,
        so the line leads to `hotcoin replay`); whether it was new. The memory of what was told
        is bounded: a broker lives all day."""
        key = (anomaly.client_order_id, anomaly.detail)
        if key in self._told:
            return False
        self._told[key] = None
        if len(self._told) > ANOMALIES_KEPT:
            del self._told[next(iter(self._told))]
        log.warning(
            "order %s (%s, trace %s): %s",
            anomaly.client_order_id, anomaly.symbol or "?", anomaly.trace_id or "none", anomaly.detail,
        )  # fmt: skip
        return True

    def _unattach(self, anomalies: Iterable[Anomaly]) -> None:
        """Anomalies no update carries (nothing changed): logged, and kept for `take_anomalies`,
        each order's same text once, or a stream repeating a stale snapshot floods the journal."""
        self._unattached.extend(a for a in anomalies if self._tell(a))

    def take_anomalies(self) -> list[Anomaly]:
        taken = list(self._unattached)
        self._unattached.clear()
        return taken

    def _estimate_fees(self, current: Order, new: Order, maker: bool, notes: list[Anomaly]) -> Order:
        """`new` with the fee of its new fill estimated at the maker or taker rate, and an anomaly
        saying so in `notes`.

        Cumulative, like an exchange's figures, so a later snapshot that reports the real fees
        books only the difference. A buy pays in coins (Binance's default without BNB).
        """
        qty = new.filled_qty - current.filled_qty
        _, price, _ = fill_delta(current, new)
        rate, role = (self.maker_fee_rate, "maker") if maker else (self.taker_fee_rate, "taker")
        fee_qty = float(qty) * rate
        fee_base = fee_qty if new.side is Side.BUY else 0.0
        fee_quote = fee_qty * price
        notes.append(
            _anomaly(
                new,
                f"fee estimated: the exchange reported no commission for a fill of {qty}; booked "
                f"{fee_quote:.8g} {new.symbol.split('/')[-1]} at the {role} rate {rate:g}"
                + (f" ({fee_base:.8g} taken in coins)" if fee_base else ""),
            )
        )
        return replace(new, fee_quote=current.fee_quote + fee_quote, fee_base=current.fee_base + fee_base)

    async def _with_trade_fees(self, update: Order) -> tuple[Order, list[Fill]]:
        """`update` with the fees of the order's trades when it has new fills and reports no
        fees, and those trades (none when they were not fetched or not used).

        Binance's order lookups carry no commission; GET /myTrades of the order does. When the
        trades cannot be fetched, or do not yet cover what the order says it filled, `update` is
        returned as it is and `_absorb` estimates the fee.
        """
        current = self.order(update.client_order_id)
        booked = current.filled_qty if current is not None else Decimal(0)
        if update.fees_reported or update.filled_qty <= booked or update.exchange_order_id is None:
            return update, []
        try:
            trades = await self.gateway.fetch_my_trades(update.symbol, order_id=update.exchange_order_id)
        except OrderError:
            return update, []
        if sum(Decimal(repr(t.quantity)) for t in trades) < update.filled_qty:
            return update, []
        priced = replace(
            update,
            fee_quote=exact_sum(t.fee_quote for t in trades),
            fee_base=exact_sum(t.fee_base for t in trades),
            fee_other=exact_sum(t.fee_other for t in trades),
            fee_asset=next((t.fee_asset for t in trades if t.fee_asset), ""),
            fees_reported=True,
        )
        return priced, trades

    async def _absorb_lookup(self, update: Order, now_ms: int, detail: str | None = None) -> OrderUpdate | None:
        """`_absorb` of a snapshot from a REST lookup, with its fees found first if it has none."""
        priced, trades = await self._with_trade_fees(update)
        return self._absorb(priced, now_ms, trades, detail)

    def _settle(self, current: Order, update: Order, notes: list[Anomaly]) -> Order | None:
        """Our next view of an order: `update` as the lifecycle table allows it, else None to
        ignore it; an anomaly in `notes` when the table refused it.

        When the table refuses, what executed is still the exchange's to say: a snapshot with more
        filled is taken (a late fill of an order we had as cancelled), and a finished order stays
        finished while it is. One with less filled, or one that would reopen a finished order with
        no new fill (an OPEN after CANCELED), is older than what we hold and is ignored.

        Ignored without an anomaly when the exchange stamped it no later than what we hold: that
        is one channel lagging another, as every market order shows (the user stream's NEW
        arrives after the create's reply had it FILLED, in the same millisecond), and a warning
        and a journal event per order would bury the real ones. Stamped later, it contradicts
        what the exchange told us before: that is an anomaly.
        """
        try:
            return apply_update(current, update)
        except InvalidOrderTransition as exc:
            finished = current.status.is_terminal
            if update.filled_qty < current.filled_qty or (finished and update.filled_qty == current.filled_qty):
                if 0 < update.updated_ms <= current.updated_ms:
                    log.debug("order %s: an older snapshot ignored (%s)", current.client_order_id, exc)
                else:
                    notes.append(_anomaly(current, f"ignored: {exc}"))
                return None
            notes.append(_anomaly(current, f"accepted exchange state: {exc}"))
            if finished and not update.status.is_terminal:
                return replace(update, status=current.status)
            return update

    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        cid = intent.client_order_id
        if self.order(cid) is not None:
            raise NonRetryableOrderError(f"duplicate client order id {cid}; it was already sent", code=-2010)
        if intent.expires_ms is not None:
            self._expires[cid] = intent.expires_ms
        else:
            self._expires.pop(cid, None)
        self._keep(self._pending(intent, now_ms))
        try:
            order = await self.gateway.create_order(intent)
        except UnknownOrderError as unknown:
            try:
                order = await self.gateway.fetch_order(intent.symbol, cid)
            except OrderError:
                # Still unknown (a just-sent order may not be visible yet): it stays tracked as
                # pending and `sync` reconciles it; the caller sees the original unknown outcome.
                raise unknown from None
        except OrderError:
            self._open.pop(cid, None)  # it did not happen: its id is free again
            self._expires.pop(cid, None)
            raise
        return await self._absorb_lookup(order, now_ms) or OrderUpdate(self.order(cid) or order)

    async def on_order(self, order: Order, now_ms: int) -> OrderUpdate | None:
        """An update pushed by the user stream (`Gateway.watch_orders`); ours only. Taken as a
        lookup is: an executionReport names its trade's commission, but what the gateway's
        resync after a gap pushes is a REST snapshot with none, whose fill would be booked at
        an estimated fee when the order's trades can say the real one."""
        cid = order.client_order_id
        if self.order(cid) is None:
            # Only orders this broker placed or was handed (recovery): an id in our format is
            # no proof, since another hotcoin on the same key makes the same ones. Adopted, a
            # foreign MARKET buy became our position and a foreign sell crashed the book. Our
            # own lost orders are adopted by the reconcile, which takes open ones only. Told
            # once per order (its text names no status): another client trades on this API
            # key with ids of our format (another hotcoin, say), and its trades move the
            # account's balances under ours, which the balance audit will then report. One of
            # ours that finished more than `FINISHED_KEPT` orders ago is forgotten and told the
            # same way: ignored all the same, never booked a second time.
            if is_ours(cid):
                detail = (
                    f"ignored: a {order.side.value} order pushed by the exchange that this engine did not place: "
                    "another client trades on this API key with ids like ours (another hotcoin?); "
                    "give each engine its own API key"
                )
                self._unattach([Anomaly(cid, detail, order.symbol)])
            return None
        return await self._absorb_lookup(order, now_ms)

    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        """Cancel an order; its update (finished, unless the exchange had it as pending cancel).

        A refused key or clock (`FAULT_ERRORS`: -2015 for a key without trading permission or an
        IP not whitelisted, which ccxt raises as DDoSProtection once a private call worked and
        the gateway still maps by its code; -1021 after a resync) cancelled nothing and is raised
        as it is, with the fix to apply. Any other refusal is looked into, as it usually means
        the order is gone ("unknown order", -2011: it filled or was cancelled meanwhile) and the
        lookup's final state is the answer; but if the order still rests, the refusal is raised.
        Reported as a cancel, an order meant to be pulled would be taken for gone and could
        still fill. Its new fills, if any, are left for `sync` (absorbed here, they would be
        lost with the error).

        An order we had seen resting that the lookup says does not exist (-2013) is gone from
        the exchange altogether: it is settled as `VANISHED` (see the module docstring), not
        raised, or every later cancel of it failed the same way and counted as an order error.
        """
        current = self.order(client_order_id)
        if current is not None and current.status.is_terminal:
            return OrderUpdate(current)
        try:
            order = await self.gateway.cancel_order(symbol, client_order_id)
        except FAULT_ERRORS:
            raise
        except NonRetryableOrderError as refused:
            try:
                order = await self.gateway.fetch_order(symbol, client_order_id)
            except NonRetryableOrderError as lookup:
                if current is None or not _vanished(current, lookup):
                    raise
                order = replace(current, status=OrderStatus.EXPIRED, updated_ms=now_ms)
                update = self._absorb(order, now_ms, detail=VANISHED)
                return update or OrderUpdate(self.order(client_order_id) or order)
            if not order.status.is_terminal:
                raise refused
        update = await self._absorb_lookup(order, now_ms)
        return update or OrderUpdate(self.order(client_order_id) or order)

    def expired(self, now_ms: int) -> list[Order]:
        """The open orders past their expiry; only the open ones are walked (module docstring)."""
        return [
            order for cid, order in self._open.items() if (expires := self._expires.get(cid)) is not None and now_ms >= expires
        ]

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        progress = _Progress()
        due = self._last_reconcile_ms is None or now_ms - self._last_reconcile_ms >= self.reconcile_interval_ms
        if due:
            self._last_reconcile_ms = now_ms
            await self._reconcile(now_ms, progress)
        await self._look_for_late(now_ms, progress)
        return progress.outcome()

    def expire_at(self, client_order_id: str, expires_ms: int) -> None:
        """An order this broker did not place (recovery hands it back after a restart) is
        cancelled at `expires_ms` like one it placed: a LIMIT entry resting across a restart
        would otherwise rest (GTC) until it filled, hours after its moment."""
        self._expires[client_order_id] = expires_ms

    def watch_late(self, order: Order, now_ms: int) -> None:
        """Track `order`, settled as never reached, and look for it until `late_watch_ms` after
        its create in case it lands late (recovery hands back the ones the journal has)."""
        until = order.created_ms + self.late_watch_ms
        if until > now_ms:
            cid = order.client_order_id
            self._late[cid] = _Watch(now_ms + self.late_check_ms, until)
            self._keep(self.order(cid) or order)

    async def recover_late(self, order: Order, now_ms: int) -> OrderUpdate | None:
        """Recovery's lookup of `order`, which the journal left settled as never reached: at once
        and whatever its age, since it may have landed while the engine was down, and a filled
        market order is in no open-order list, so nothing else would ever find it.

        Its update (detail `LANDED_LATE`, so booked once) when the exchange knows it; else None,
        and it is watched for what is left of its `late_watch_ms`, if anything (`watching_late`
        says whether). A lookup that fails (429, timeout) is asked again by the next `sync`, even
        past the window: only the exchange's "does not exist" ends the search.
        """
        cid = order.client_order_id
        until = order.created_ms + self.late_watch_ms
        self._late[cid] = _Watch(now_ms, max(until, now_ms))
        self._keep(self.order(cid) or order)
        try:
            seen = await self.gateway.fetch_order(order.symbol, cid)
        except NonRetryableOrderError:
            if until > now_ms:
                self._late[cid].next_ms = now_ms + self.late_check_ms
            else:
                self._unwatch(cid)
            return None
        except OrderError:
            return None
        return await self._absorb_lookup(seen, now_ms)

    async def recover_open(self, journaled: Order, seen: Order, now_ms: int) -> OrderUpdate | None:
        """Recovery's handover of an order the journal left open, with the exchange's snapshot
        `seen` of it: the broker learns it as the journal last saw it (those fills are booked),
        then takes `seen` as it takes any lookup, so only what the exchange did beyond the journal
        comes back, with the commission of the order's trades. A lookup carries none: taken as a
        stream push, a fill made while the engine was down was booked at an estimate, in coins.
        """
        self._keep(replace(journaled, exchange_order_id=seen.exchange_order_id))
        return await self._absorb_lookup(seen, now_ms)

    def watching_late(self) -> list[str]:
        """Client ids of the orders settled as never reached that are still looked for."""
        return list(self._late)

    async def _look_for_late(self, now_ms: int, progress: _Progress) -> None:
        """Look up the watched orders that are due; one the exchange knows is absorbed (and so
        leaves the watch), one it still does not know is looked for again until its watch ends."""
        for cid, watch in list(self._late.items()):
            if now_ms < watch.next_ms:
                continue
            order = self.order(cid)
            assert order is not None  # a watched order is kept while it is watched (`_keep`)
            try:
                seen = await self.gateway.fetch_order(order.symbol, cid)
            except NonRetryableOrderError:
                if now_ms >= watch.until_ms:
                    self._unwatch(cid)
                else:
                    watch.next_ms = now_ms + self.late_check_ms
                continue
            except OrderError as exc:  # 429, timeout: the next sync asks again
                progress.errors.append(exc)
                continue
            progress.add(await self._absorb_lookup(seen, now_ms))

    async def _reconcile(self, now_ms: int, progress: _Progress) -> None:
        listed = await progress.attempt(self.gateway.fetch_open_orders())
        if listed is None:
            return
        open_now = {o.client_order_id: o for o in listed}
        for cid, order in list(self._open.items()):
            seen = open_now.pop(cid, None)
            found = (seen, None) if seen is not None else await progress.attempt(self._final_state(order, now_ms))
            if found is not None:
                progress.add(await self._absorb_lookup(found[0], now_ms, found[1]))
                if found[1] == NEVER_REACHED:
                    self.watch_late(self.order(cid) or found[0], now_ms)
        for cid, order in open_now.items():
            if is_ours(cid):
                progress.add(await self._absorb_lookup(order, now_ms))

    async def _final_state(self, order: Order, now_ms: int) -> tuple[Order, str | None]:
        """The state of an order gone from the open list, and why when we decided it ourselves.

        A pending order (its create's outcome unknown) that the exchange does not know is left
        pending while it is younger than `unknown_grace_ms`: a create answered by a timeout, a
        5xx or -1007 may still be executing, and a filled market order never shows in the open
        list, so rejecting it at once would lose the fill for good. After that, it never happened
        as far as we can tell; `_reconcile` keeps watching for it all the same.

        An order we had seen resting that the exchange does not know is `VANISHED`: settled as
        expired with what it had filled, once (terminal, `_reconcile` asks no more about it).
        """
        try:
            return await self.gateway.fetch_order(order.symbol, order.client_order_id), None
        except NonRetryableOrderError as exc:
            if _vanished(order, exc):
                return replace(order, status=OrderStatus.EXPIRED, updated_ms=now_ms), VANISHED
            if order.status is not OrderStatus.PENDING:
                raise
            if now_ms - order.created_ms < self.unknown_grace_ms:
                return order, None
            return replace(order, status=OrderStatus.REJECTED, updated_ms=now_ms), NEVER_REACHED

    async def open_orders(self) -> list[Order]:
        return list(self._open.values())

    async def coin_balance(self, asset: str) -> Balance | None:
        """The exchange's balance of `asset`, free and locked (both 0 when it lists none).
        Errors propagate: a caller that cannot learn the balance must not take it for zero."""
        balance = (await self.gateway.fetch_balance()).get(asset)
        return balance if balance is not None else Balance(Decimal(0), Decimal(0))


def _anomaly(order: Order, detail: str) -> Anomaly:
    """An anomaly of an order of ours, in its trace."""
    return Anomaly(order.client_order_id, detail, order.symbol, order.trace_id or None)


def _vanished(current: Order, lookup: OrderError) -> bool:
    """Whether an order the exchange no longer has open is gone from it altogether: we had seen
    it resting, so its create had landed, and a lookup says it does not exist (-2013). Not for a
    PENDING order: right after its create it may not be visible yet (the late-landing race)."""
    return current.status in _RESTING and is_order_unknown(lookup)


def _is_maker(current: Order, trades: Sequence[Fill]) -> bool:
    """Whether an order's new fill was a maker's. A LIMIT we had seen resting (acknowledged open)
    can only have been taken from the book; one still pending (its create's reply lost or not
    yet absorbed) is what its trades say when they were fetched, else a taker, the dearer guess."""
    if current.order_type is OrderType.LIMIT and current.status in _RESTING:
        return True
    return current.status is OrderStatus.PENDING and bool(trades) and all(t.is_maker for t in trades)
