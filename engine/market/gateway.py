"""The one seam between the engine and an exchange: `Gateway`, and the small types it returns.

Everything the engine needs from an exchange goes through these methods, so the runtime,
the exchange broker and their tests see one shape whether the other side is ccxt.pro on
Binance, ccxt.pro on the simulated exchange, or `engine.market.fake.FakeGateway`.

Failures: every method raises an `engine.errors.OrderError` subclass for a failed exchange
call (RETRYABLE / NON_RETRYABLE / UNKNOWN, with the exchange code; see
`engine.market.errors` for the map), `engine.errors.RateLimitedError` while a
rate-limit silence is on, and `engine.errors.MarketDataError` for data no exchange could
have sent. `watch_*` methods do not raise on a dropped connection: they reconnect with
backoff and return the next data; `health()` shows what happened meanwhile.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from engine.domain import Candle, Fill, Market, Order, OrderIntent, TickerBatch


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset's balance: `free` to trade, `locked` in open orders."""

    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class ExchangeFault:
    """Something a human must fix before exchange calls can work: `code` "exchange_auth" (the key,
    its permissions or our IP refused) or "clock_skew" (our timestamps refused after a resync);
    `detail` names the problem and the fix. It stands until `operation`, the call refused, works."""

    code: str
    detail: str
    operation: str


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """What the state machine needs to judge one stream's freshness.

    `last_message_ms` 0 means nothing received yet. `rate_limited_until_ms` 0 means no
    rate-limit silence. `connection_age_ms` counts from the current connection's first message.
    `down_since_ms` is when the connection dropped, kept through failed redials and 0 again
    once a connection is up: how long a stream has been *down*, which is not how long it has
    been *silent* (`stale_ms`; a connected stream can be silent, a dropped one was fresh).
    `fault` (REST only): a refusal no retry mends, until the refused call works again.
    `clock_offset_ms` (REST only): the exchange's clock minus ours, when it was measured (after
    a -1021); None before.
    """

    stream: str
    connected: bool = False
    last_message_ms: int = 0
    reconnects: int = 0
    rotations: int = 0
    last_error: str | None = None
    last_error_ms: int = 0
    rate_limited_until_ms: int = 0
    connected_since_ms: int = 0
    down_since_ms: int = 0
    fault: ExchangeFault | None = None
    clock_offset_ms: int | None = None

    def stale_ms(self, now_ms: int) -> int | None:
        """Milliseconds since the last message, or None if none arrived yet."""
        return None if self.last_message_ms == 0 else max(0, now_ms - self.last_message_ms)


REST_STREAM = "rest"  # health key of the request/response side (rate-limit silence, last error)
ORDERS_STREAM = "orders"  # health keys of the user-data streams (`watch_orders`, `watch_balance`)
BALANCE_STREAM = "balance"
# Streams that carry only our account's events: silent for as long as nothing of ours happens,
# so their silence says nothing about the connection (no watchdog, never "stale").
USER_STREAMS = frozenset({ORDERS_STREAM, BALANCE_STREAM})


class NoticeKind(enum.StrEnum):
    """Things the gateway did on its own that the runtime should journal."""

    RECONNECT = "reconnect"  # a stream dropped; it is being re-dialled after `delay_s`
    RECOVERED = "recovered"  # a stream that dropped is live again: `down_ms` after its drop, `attempts` redials
    ROTATED = "rotated"  # planned make-before-break reconnect before the 24 h limit
    RATE_LIMITED = "rate_limited"  # HTTP 429/418: silent until `until_ms`
    RESYNC = "resync"  # user-data gap closed by a REST re-check; `resync` says what changed
    MARKETS_REFRESH_FAILED = "markets_refresh_failed"  # last good markets kept; retry later
    MARKETS_REFRESHED = "markets_refreshed"
    EXCHANGE_FAULT = "exchange_fault"  # a refusal a human must fix (`ExchangeFault`), once per episode


@dataclass(frozen=True, slots=True)
class UserResync:
    """What a REST re-check after a user-data gap found that the stream had not told us.

    `orders`: every order whose state differs from what we last knew (e.g. a limit filled
    while the stream was down, now FILLED), or that is open and was unknown to us.
    `balances`: assets whose balance changed since the last known balance (all assets if
    none was known). `gap_ms`: how long the stream was down.
    """

    ts_ms: int
    gap_ms: int
    orders: tuple[Order, ...] = ()
    balances: dict[str, Balance] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.orders or self.balances)


@dataclass(frozen=True, slots=True)
class GatewayNotice:
    """An event for the journal: `kind` on `stream` at `ts_ms`, with the details that apply."""

    kind: NoticeKind
    stream: str
    ts_ms: int
    detail: str = ""
    error_class: str | None = None
    delay_s: float | None = None
    until_ms: int | None = None
    resync: UserResync | None = None
    down_ms: int | None = None
    attempts: int | None = None


NoticeSink = Callable[[GatewayNotice], None]


class Gateway(abc.ABC):
    """Async access to one exchange account. Symbols are ccxt form (`DOGE/USDT`)."""

    @abc.abstractmethod
    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        """All spot markets with their filters; cached after the first call unless `reload`."""

    @abc.abstractmethod
    async def watch_tickers(self) -> TickerBatch:
        """The next full-market ticker update (`!ticker@arr`); reconnects on its own."""

    @abc.abstractmethod
    async def fetch_tickers(self) -> TickerBatch:
        """Every symbol's 24 h ticker over REST (start-up, or while the stream is down)."""

    @abc.abstractmethod
    async def watch_candles(self, symbol: str, timeframe: str) -> list[Candle]:
        """The next candle update(s) of `symbol`; the last one may be open (`closed=False`)."""

    @abc.abstractmethod
    async def fetch_candles(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int = 500
    ) -> list[Candle]:
        """Up to `limit` bars from `since_ms` (latest bars when None), oldest first."""

    @abc.abstractmethod
    async def create_order(self, intent: OrderIntent) -> Order:
        """Send `intent` with its client order id, quantity and price rounded to the filters.

        A retry after an UNKNOWN error must first `fetch_order(symbol, client_order_id)`.
        """

    @abc.abstractmethod
    async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
        """Cancel by client order id; returns the order as cancelled."""

    @abc.abstractmethod
    async def fetch_order(self, symbol: str, client_order_id: str) -> Order:
        """The order's current state, by client order id."""

    @abc.abstractmethod
    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders of one symbol, or all."""

    @abc.abstractmethod
    async def fetch_balance(self) -> dict[str, Balance]:
        """Every asset with a non-zero balance."""

    @abc.abstractmethod
    async def fetch_my_trades(
        self, symbol: str, since_ms: int | None = None, *, order_id: str | None = None
    ) -> list[Fill]:
        """Our executions on `symbol`, oldest first; only those of one order when `order_id` (the
        exchange's id: Binance's myTrades takes no client id) is given."""

    @abc.abstractmethod
    async def watch_orders(self) -> list[Order]:
        """The next order updates; after a user-stream gap, the orders a REST re-check found changed."""

    @abc.abstractmethod
    async def watch_balance(self) -> dict[str, Balance]:
        """The next balance; after a user-stream gap, the REST balance."""

    @abc.abstractmethod
    def health(self) -> dict[str, StreamHealth]:
        """Per stream (and `rest`): freshness, connection, reconnects, errors, rate limits."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection and stop background work; idempotent."""
