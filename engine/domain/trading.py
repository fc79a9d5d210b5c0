"""Orders from intent to fill, and the positions they build."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderPurpose(enum.StrEnum):
    """Why an order exists; replay and the state machine treat them differently
    (degraded and blocked engines still send exits and close-all)."""

    ENTRY = "entry"
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    MAX_HOLD = "max_hold"
    SIGNAL_EXIT = "signal_exit"
    CLOSE_ALL = "close_all"

    @property
    def is_exit(self) -> bool:
        return self is not OrderPurpose.ENTRY


class OrderStatus(enum.StrEnum):
    """Order lifecycle; transitions live in a table in `engine.execution`."""

    PENDING = "pending"  # intent accepted, not yet acknowledged by the exchange
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What the core wants sent. `client_order_id` is derived from the trace and purpose,
    so a retry of the same intent can never become a second order."""

    client_order_id: str
    trace_id: str
    symbol: str
    side: Side
    order_type: OrderType
    purpose: OrderPurpose
    quantity: Decimal
    price: Decimal | None = None  # limit price; None for market orders
    reference_price: float = 0.0  # the price the decision saw, for slippage accounting
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_ms: int | None = None  # a LIMIT still open at this time is cancelled
    # A take-profit that sells part of the position: the tier its fill marks hit (None for any
    # other order). Journaled with the attempt, so a restart marks it hit on a fill it reconciles.
    tier: int | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """The exchange's (or paper broker's) view of an order at one moment."""

    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    side: Side
    order_type: OrderType
    status: OrderStatus
    quantity: Decimal
    filled_qty: Decimal = Decimal(0)
    price: Decimal | None = None
    average_price: float | None = None
    fee_quote: float = 0.0
    fee_base: float = 0.0  # cumulative fee taken from the coins bought (see `Fill.fee_base`)
    fee_other: float = 0.0  # cumulative fee paid in `fee_asset`, a third asset (see `Fill.fee_other`)
    fee_asset: str = ""
    # False when the snapshot said nothing about fees (Binance's GET /order, /openOrders and a
    # cancel reply carry no fills): the zeros above then mean "unknown", not "free".
    fees_reported: bool = True
    created_ms: int = 0
    updated_ms: int = 0
    trace_id: str = ""
    purpose: OrderPurpose = OrderPurpose.ENTRY

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_qty

    @classmethod
    def from_intent(
        cls, intent: OrderIntent, status: OrderStatus, now_ms: int, exchange_order_id: str | None = None
    ) -> Order:
        """The order `intent` becomes, as placed (or refused) at `now_ms`: nothing filled yet."""
        return cls(
            client_order_id=intent.client_order_id,
            exchange_order_id=exchange_order_id,
            symbol=intent.symbol,
            side=intent.side,
            order_type=intent.order_type,
            status=status,
            quantity=intent.quantity,
            price=intent.price,
            created_ms=now_ms,
            updated_ms=now_ms,
            trace_id=intent.trace_id,
            purpose=intent.purpose,
        )


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. `fee_quote` is the fee valued in the quote asset.

    `fee_base` is the part of the fee the exchange took in the base asset: Binance takes a
    buy's commission from the coins bought (unless BNB pays it), so a buy of Q leaves Q - fee_base
    in the account, and only that much can be sold.

    `fee_other` is a commission paid in a third asset, `fee_asset` (Binance's "use BNB for
    fees" pays every commission in BNB). It is not in `fee_quote` when the broker reports the
    fill: its price is not the broker's to know; the trading core values it at the best price it
    has when it books the fill, and adds it to `fee_quote` then.
    """

    trade_id: str
    client_order_id: str
    symbol: str
    side: Side
    price: float
    quantity: float
    fee_quote: float
    ts_ms: int
    trace_id: str = ""
    is_maker: bool = False
    fee_base: float = 0.0
    fee_other: float = 0.0
    fee_asset: str = ""

    @property
    def notional(self) -> float:
        return self.price * self.quantity


@dataclass(frozen=True, slots=True)
class Position:
    """An open long spot position. Realised PnL accumulates over partial closes, fees included."""

    symbol: str
    trace_id: str
    quantity: float
    entry_price: float
    opened_ms: int
    entry_fees: float = 0.0
    realised_pnl: float = 0.0
    stop_price: float | None = None
    trailing_high: float = 0.0  # the highest bid seen since entry; 0: none seen yet
    tp_tiers_hit: tuple[int, ...] = field(default=())

    def unrealised_pnl(self, mark: float) -> float:
        """What closing the quantity held at `mark` would add to the realised PnL, before the exit
        fee: net of the entry fees that quantity still carries (`entry_fees`, already cut to the
        remaining share after a partial close). Net, like the realised PnL, the day PnL and the
        backtest, so a position's uPnL and the day PnL agree while nothing else has happened."""
        return (mark - self.entry_price) * self.quantity - self.entry_fees

    def notional(self, mark: float) -> float:
        return mark * self.quantity
