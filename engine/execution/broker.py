"""The broker seam: where order intents go, and what comes back.

`PaperBroker` fills against the live book with the shared fill model; `ExchangeBroker` sends
through the exchange `Gateway`. Both answer with `OrderUpdate`s: the order as it now stands plus
the executions since the last update, so the core books fills the same way in either mode.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.domain import Fill, Order, OrderIntent
from engine.errors import OrderError, RetryableOrderError
from engine.market.gateway import Balance


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something the exchange said of an order that the broker did not take as it came: a fee it
    had to estimate (PnL rests on a guess), an order that landed after it was settled as never
    reached, a state the lifecycle table refuses that the broker accepted or ignored, an order
    that is not ours. The owner must be able to learn it afterwards, so it is logged and
    journaled (`order_anomaly`, in the order's trace; without one for an order not ours)."""

    client_order_id: str
    detail: str
    symbol: str | None = None
    trace_id: str | None = None  # the order's trace; None for an order that is not ours


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order's latest state and the fills that happened since its previous update."""

    order: Order
    fills: tuple[Fill, ...] = ()
    journal_seq: int | None = None  # seq of the order_result that journaled it (set by the router)
    # Why the broker settled the order itself, when the exchange did not say (e.g. an order whose
    # create's outcome was unknown and that the exchange, after the grace period, does not know).
    detail: str | None = None
    error: OrderError | None = None  # why a send failed (set by the router), for the caller to act on
    # What the broker noted while taking this update (`Anomaly.detail`s: an estimated fee, a late
    # landing, the exchange's state accepted over ours): journaled beside its `order_result`.
    anomalies: tuple[str, ...] = ()


def counts_as_order_error(order_result: Mapping[str, Any]) -> bool:
    """Whether a journaled `order_result` counts towards the runtime's order-error rule
    (degraded at 3, blocked at 10 in 5 minutes; restored from the journal after a restart).

    An exit the exchange refused for want of coins is journaled `counted: False` by the router:
    it says nothing about the exchange's health, only that one position's coins are not all
    there; the core mends that (`TradingCore.on_exit_short`) and backs off, and counting it
    let one coin sold outside the engine degrade and then block every trade. A refused key
    (`ExchangeAuthError`) or clock skew (`ClockSkewError`) is journaled `counted: False` too: the
    state machine blocks on that fault under its own reason (what to fix) while it stands, and
    counting it as well said "order errors in window" instead, and kept blocking after the fix.
    """
    return bool(order_result.get("error_class")) and order_result.get("counted", True) is not False


class SyncIncomplete(RetryableOrderError):
    """`sync` could not reach every order (a 429, a timeout, an order the exchange does not know).

    It carries the progress it did make: those updates are already absorbed, so the broker will
    not report them again, and a caller that drops them loses fills for good. Book `updates` as
    a return value of `sync`; the orders in `errors` stay open and are tried at the next sync,
    which is why the whole is retryable whatever the single errors were.
    """

    def __init__(self, errors: Sequence[OrderError], updates: list[OrderUpdate]) -> None:
        super().__init__(
            f"{len(errors)} exchange call(s) failed, {len(updates)} update(s) delivered; first: {errors[0]}",
            code=errors[0].code,
        )
        self.errors = list(errors)
        self.updates = updates


class Broker(abc.ABC):
    """Async order handling. Errors are `engine.errors.OrderError` subclasses (see `error_class`)."""

    # Assets other than the pair's own that this broker's fills may charge commissions in (an
    # account paying fees with BNB): the core keeps their prices from batch to batch to value
    # such a fee (`TradingCore`). Paper fills pay in the pair's assets.
    fee_assets: tuple[str, ...] = ()

    @abc.abstractmethod
    async def submit(self, intent: OrderIntent, now_ms: int) -> OrderUpdate:
        """Send `intent`; returns the acknowledged (maybe already filled) order."""

    @abc.abstractmethod
    async def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderUpdate:
        """Cancel an open order; cancelling a terminal order returns it unchanged (idempotent)."""

    @abc.abstractmethod
    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        """Progress since the last call: fills of resting orders, expiries, reconciliation.

        Raises `SyncIncomplete` (with the progress it made) when some orders could not be reached.
        """

    @abc.abstractmethod
    async def open_orders(self) -> list[Order]:
        """Every order this broker knows to be open."""

    async def on_order(self, order: Order, now_ms: int) -> OrderUpdate | None:
        """An order snapshot pushed by the exchange's user stream, folded in like a lookup: its
        update when it says something new of an order of ours, else None. A broker with no
        stream to listen to (paper: fills are made in the cycle) keeps this default."""
        return None

    async def coin_balance(self, asset: str) -> Balance | None:
        """The account's balance of `asset` right now, free and locked, as the exchange says;
        None when this broker has no account to ask (paper: the book is the only record).
        Asked after an exit refused for want of coins, so the engine sells what is really
        there; the locked part counts as still held (an order placed in the Binance app), so
        coins merely locked are never written down as lost."""
        return None

    def at_rest(self) -> bool:
        """Whether a `sync` now would certainly report nothing, expire nothing and note no
        anomaly, known without asking anyone: the router then skips it (a paper engine or a
        backtest with no order resting, most of its minutes). False by default: a broker that
        reaches an exchange must always ask."""
        return False

    def take_anomalies(self) -> list[Anomaly]:
        """The anomalies noted since the last call that no update carries (a stale snapshot
        ignored, an order not ours: nothing changed, so there is no update), each order's
        same anomaly once; the caller journals them. None by default: only a broker that
        takes the exchange's word has any."""
        return []

    def watching_late(self) -> list[str]:
        """Client ids of orders settled as never reached that the broker still looks for, as
        they may land late (an exchange's backend queue). None by default: only a broker
        whose creates can time out has any."""
        return []

    def expired(self, now_ms: int) -> list[Order]:
        """Open orders past their own expiry (the intent's `expires_ms`), oldest first.

        The broker does not cancel them itself: the router does (`OrderRouter.sync`), so an
        expiry is journaled like any other cancel. A broker that never expires anything (a test
        double) keeps this default."""
        return []
