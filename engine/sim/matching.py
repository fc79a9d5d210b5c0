"""The simulated exchange's matching engine: accounts, orders, fills, fees.

Pure and synchronous: every call is given the sim time (`now_ms`) and the top of the book
it matches against, so the same sequence of calls always produces the same orders, trades
and balances, and the engine is tested without a server, a clock or an event loop. The
server (`engine.sim.server`) owns the clock and the I/O around it.

Behaviour, chosen to match Binance spot where a client could tell the difference:
- Any API key is an account; it is opened on first use with `start_balance` of the quote
  asset (USDT).
- MARKET orders take liquidity from the displayed top of book; an order bigger than the
  displayed quantity walks `depth_levels` synthetic levels, each `depth_step` (a fraction of
  the price) worse with the same displayed quantity, so a large order fills in parts at a
  worse average. What the levels cannot fill expires (status EXPIRED, as Binance does when
  the book runs dry).
- LIMIT orders that cross the book on arrival take what they can at the book's prices
  (taker); the rest rests and locks its funds. A resting order fills at its own price
  (maker) whenever the market crosses it, at most the displayed opposite quantity per book
  update, so a big resting order fills in parts over several updates.
- Fees (default 0.1%) are charged in the asset received: base on buys, quote on sells. An
  account with `fees_in_bnb` set (Binance's "use BNB for fees") pays each commission in BNB
  instead, worth the same rate of the trade's quote amount at the BNB/<quote> mid (no discount:
  Binance's 25% is its business, and a test reads the BNB charged either way), as long as it
  holds enough free BNB and that book has a price; otherwise as without the option, as
  Binance does.
- Rejections carry Binance's own error codes and messages (`BinanceError`), because ccxt
  maps some of them by their exact text (insufficient balance -> InsufficientFunds).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

from engine.domain import Market

BNB = "BNB"  # the asset an account with `fees_in_bnb` pays its commissions in
COMMISSION_QUANTUM = Decimal("0.00000001")  # Binance reports commissions to 8 decimals
MAX_RECV_WINDOW_MS = 60_000
FUTURE_TOLERANCE_MS = 1_000  # Binance accepts timestamps up to 1 s ahead of its clock


class BinanceError(Exception):
    """A request the exchange refuses, as Binance reports it: `{"code": code, "msg": msg}`."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


def missing_param(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def invalid_symbol() -> BinanceError:
    return BinanceError(-1121, "Invalid symbol.")


def filter_failure(name: str) -> BinanceError:
    return BinanceError(-1013, f"Filter failure: {name}")


INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
DUPLICATE_ORDER = "Duplicate order sent."


def check_request_time(timestamp_ms: int, recv_window_ms: int, now_ms: int) -> None:
    """Binance's freshness rule for signed requests; raises -1021 (InvalidNonce in ccxt)."""
    if recv_window_ms <= 0 or recv_window_ms > MAX_RECV_WINDOW_MS:
        raise BinanceError(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    if timestamp_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_ms - timestamp_ms > recv_window_ms:
        raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")


class OrderSide(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderKind(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class OrderState(enum.StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in (OrderState.NEW, OrderState.PARTIALLY_FILLED)


class ExecType(enum.StrEnum):
    NEW = "NEW"
    TRADE = "TRADE"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


TIME_IN_FORCE = ("GTC", "IOC", "FOK")


@dataclass(frozen=True, slots=True)
class BookTop:
    """Best bid and ask with their displayed quantities (what a market order can take at once)."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal

    @classmethod
    def of(cls, bid: float, bid_qty: float, ask: float, ask_qty: float) -> BookTop:
        """From the market source's floats; a non-finite or negative side becomes empty."""

        def dec(x: float) -> Decimal:
            return Decimal(repr(float(x))) if math.isfinite(x) and x > 0 else Decimal(0)

        return cls(dec(bid), dec(bid_qty), dec(ask), dec(ask_qty))


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order as the REST layer decoded it; amounts are exact decimals as sent."""

    symbol: str  # exchange id, e.g. DOGEUSDT
    side: str | None
    type: str | None
    quantity: Decimal | None = None
    quote_order_qty: Decimal | None = None
    price: Decimal | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class SimTrade:
    """One execution of one order (one side of a trade), as `myTrades` reports it."""

    id: int
    order_id: int
    symbol: str
    side: OrderSide
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass(frozen=True, slots=True)
class SimOrder:
    """An order's state at one moment; the engine replaces it on every change."""

    order_id: int
    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderKind
    time_in_force: str
    price: Decimal  # 0 for MARKET
    orig_qty: Decimal
    executed_qty: Decimal
    cumulative_quote_qty: Decimal
    status: OrderState
    time_ms: int
    update_time_ms: int
    orig_quote_order_qty: Decimal = Decimal(0)
    # Set on a cancel: the cancel request's own client id (its `newClientOrderId`, else one the
    # exchange makes up). Binance reports a cancel under it: the DELETE reply's `clientOrderId`
    # and the executionReport's `c` are this id, the order's own id goes in `origClientOrderId`
    # and `C`. A client that read the cancel's id as the order's would lose track of the order.
    cancel_client_order_id: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """An executionReport for the account's user stream."""

    order: SimOrder
    exec_type: ExecType
    trade: SimTrade | None
    event_ms: int


@dataclass(frozen=True, slots=True)
class BalanceEvent:
    """An outboundAccountPosition: the changed assets' (free, locked) after an update."""

    balances: tuple[tuple[str, Decimal, Decimal], ...]
    event_ms: int


UserEvent = ExecutionEvent | BalanceEvent


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order: SimOrder
    fills: tuple[SimTrade, ...]


@dataclass(slots=True)
class Balance:
    free: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)


@dataclass(slots=True)
class Account:
    """One API key's balances, orders and trades."""

    api_key: str
    balances: dict[str, Balance] = field(default_factory=dict)
    orders: dict[int, SimOrder] = field(default_factory=dict)
    by_client_id: dict[str, int] = field(default_factory=dict)
    trades: list[SimTrade] = field(default_factory=list)
    update_time_ms: int = 0
    fees_in_bnb: bool = False  # Binance's "use BNB for fees": commissions in BNB while it lasts

    def free(self, asset: str) -> Decimal:
        """Free amount of `asset` (zero if never held), without opening a balance row."""
        bal = self.balances.get(asset)
        return bal.free if bal is not None else Decimal(0)

    def balance(self, asset: str) -> Balance:
        bal = self.balances.get(asset)
        if bal is None:
            bal = self.balances[asset] = Balance()
        return bal


@dataclass(frozen=True, slots=True)
class _Level:
    price: Decimal
    qty: Decimal


class MatchingEngine:
    """Accounts and their orders against a book the caller supplies at each call.

    Mutating calls append user-stream events to an outbox; `drain_events()` hands them to
    whoever pushes them (the server's user-data WebSocket), as `(api_key, event)` pairs.
    """

    def __init__(
        self,
        markets: Iterable[Market],
        *,
        start_balance: Decimal = Decimal(10_000),
        start_asset: str = "USDT",
        fee_rate: Decimal = Decimal("0.001"),
        depth_levels: int = 5,
        depth_step: Decimal = Decimal("0.001"),
        book_of: Callable[[str], BookTop] | None = None,
    ) -> None:
        """`book_of`: the current book of a market id, to value commissions paid in BNB (an
        account with `fees_in_bnb`); without it they are charged as without the option."""
        if depth_levels < 1:
            raise ValueError(f"depth_levels must be >= 1, got {depth_levels}")
        self._markets: dict[str, Market] = {m.market_id: m for m in markets}
        self._start_balance = start_balance
        self._start_asset = start_asset
        self._fee_rate = fee_rate
        self._depth_levels = depth_levels
        self._depth_step = depth_step
        self._book_of = book_of
        self._accounts: dict[str, Account] = {}
        self._open_by_symbol: dict[str, dict[int, str]] = {}  # symbol -> {order_id: api_key}
        self._next_order_id = 1
        self._next_trade_id = 1
        self._next_cancel_id = 1
        self._outbox: list[tuple[str, UserEvent]] = []

    # ---- reading -------------------------------------------------------------------

    def market(self, symbol: str) -> Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise invalid_symbol() from None

    def add_markets(self, markets: Iterable[Market]) -> None:
        """Markets that appear later (new listings) become tradable."""
        for m in markets:
            self._markets.setdefault(m.market_id, m)

    def account(self, api_key: str) -> Account:
        acct = self._accounts.get(api_key)
        if acct is None:
            acct = self._accounts[api_key] = Account(api_key)
            acct.balance(self._start_asset).free = self._start_balance
        return acct

    def get_order(self, api_key: str, symbol: str, *, order_id: int | None, client_order_id: str | None) -> SimOrder:
        self.market(symbol)
        order = self._find(self.account(api_key), symbol, order_id, client_order_id)
        if order is None:
            raise BinanceError(-2013, "Order does not exist.")
        return order

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[SimOrder]:
        if symbol is not None:
            self.market(symbol)
        orders = self.account(api_key).orders.values()
        return [o for o in orders if o.status.is_open and (symbol is None or o.symbol == symbol)]

    def my_trades(
        self,
        api_key: str,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_id: int | None = None,
        order_id: int | None = None,
        limit: int = 500,
    ) -> list[SimTrade]:
        """Like Binance's GET /myTrades: `order_id` keeps one order's executions only."""
        self.market(symbol)
        out = [
            t
            for t in self.account(api_key).trades
            if t.symbol == symbol
            and (order_id is None or t.order_id == order_id)
            and (start_ms is None or t.time_ms >= start_ms)
            and (end_ms is None or t.time_ms <= end_ms)
            and (from_id is None or t.id >= from_id)
        ]
        return out[:limit] if from_id is not None or start_ms is not None else out[-limit:]

    def symbols_with_open_orders(self) -> list[str]:
        return [s for s, ids in self._open_by_symbol.items() if ids]

    def drain_events(self) -> list[tuple[str, UserEvent]]:
        out, self._outbox = self._outbox, []
        return out

    # ---- placing and cancelling ----------------------------------------------------

    def place_order(
        self, api_key: str, req: OrderRequest, book: BookTop, now_ms: int, avg_price: Decimal | None = None
    ) -> PlaceResult:
        """Validate, then execute what crosses now; a LIMIT remainder rests. Raises BinanceError.

        `avg_price` is the symbol's average price over its PERCENT_PRICE_BY_SIDE `avgPriceMins`
        (the server computes it from its klines); without one that filter is not applied."""
        market = self.market(req.symbol)
        side, kind, tif = self._validate_shape(req)
        acct = self.account(api_key)
        if req.client_order_id is not None and self._open_with_client_id(acct, req.client_order_id):
            raise BinanceError(-2010, DUPLICATE_ORDER)
        if kind is OrderKind.LIMIT:
            assert req.price is not None and req.quantity is not None  # checked in _validate_shape
            self._check_price(market, req.price)
            self._check_percent_price(market, side, req.price, avg_price)
            self._check_qty(market, req.quantity)
            self._check_notional(market, req.quantity * req.price)
            levels = [lv for lv in self._levels(market, side, book) if _crosses(side, req.price, lv.price)]
            return self._place_limit(acct, market, req, side, tif, levels, now_ms)
        levels = self._levels(market, side, book)
        if req.quantity is not None:
            self._check_qty(market, req.quantity)
            self._check_market_qty(market, req.quantity)
            reference = levels[0].price if levels else Decimal(0)
            if reference > 0:
                self._check_notional(market, req.quantity * reference)
        else:
            assert req.quote_order_qty is not None
            self._check_notional(market, req.quote_order_qty)
        return self._place_market(acct, market, req, side, levels, now_ms)

    def cancel_order(
        self,
        api_key: str,
        symbol: str,
        *,
        order_id: int | None,
        client_order_id: str | None,
        now_ms: int,
        cancel_client_order_id: str | None = None,
    ) -> SimOrder:
        """Cancel an open order (by `order_id` or `client_order_id`); -2011 if there is none.
        The cancel gets its own id, `cancel_client_order_id` or a made-up one (Binance generates
        one when the request has no `newClientOrderId`), kept on the cancelled order."""
        self.market(symbol)
        acct = self.account(api_key)
        order = self._find(acct, symbol, order_id, client_order_id)
        if order is None or not order.status.is_open:
            raise BinanceError(-2011, "Unknown order sent.")
        self._release(acct, order)
        done = replace(
            order,
            status=OrderState.CANCELED,
            update_time_ms=now_ms,
            cancel_client_order_id=cancel_client_order_id or self._cancel_id(),
        )
        self._store(acct, done)
        self._emit(api_key, ExecutionEvent(done, ExecType.CANCELED, None, now_ms))
        self._emit_balances(acct, self._assets_of(acct, done), now_ms)
        return done

    def _cancel_id(self) -> str:
        """A cancel's client id when the request named none: unique, and never one of our
        client's ids, like the random one Binance makes up."""
        cancel_id = f"sim-cancel-{self._next_cancel_id}"
        self._next_cancel_id += 1
        return cancel_id

    def on_book(self, symbol: str, book: BookTop, now_ms: int) -> list[SimOrder]:
        """Fill resting orders the market now crosses, at their own price (maker), oldest
        first, taking at most the displayed opposite quantity in this update."""
        resting = self._open_by_symbol.get(symbol)
        if not resting:
            return []
        market = self._markets[symbol]
        available = {OrderSide.BUY: book.ask_qty, OrderSide.SELL: book.bid_qty}
        touched: list[SimOrder] = []
        for order_id, api_key in sorted(resting.items()):
            acct = self._accounts[api_key]
            order = acct.orders[order_id]
            opposite = book.ask if order.side is OrderSide.BUY else book.bid
            if opposite <= 0 or not _crosses(order.side, order.price, opposite):
                continue
            qty = min(order.remaining, _floor(available[order.side], market.filters.step_size))
            if qty <= 0:
                continue
            available[order.side] -= qty
            order = self._fill(acct, market, order, order.price, qty, now_ms, is_maker=True)
            touched.append(order)
            self._emit_balances(acct, self._assets_of(acct, order), now_ms)
        return touched

    # ---- internals -----------------------------------------------------------------

    def _validate_shape(self, req: OrderRequest) -> tuple[OrderSide, OrderKind, str]:
        if not req.side:
            raise missing_param("side")
        if not req.type:
            raise missing_param("type")
        try:
            side = OrderSide(req.side.upper())
        except ValueError:
            raise BinanceError(-1117, "Invalid side.") from None
        try:
            kind = OrderKind(req.type.upper())
        except ValueError:
            raise BinanceError(-1116, "Invalid orderType.") from None
        if kind is OrderKind.LIMIT:
            if req.time_in_force is None:
                raise missing_param("timeInForce")
            if req.time_in_force not in TIME_IN_FORCE:
                raise BinanceError(-1115, "Invalid timeInForce.")
            if req.quantity is None:
                raise missing_param("quantity")
            if req.price is None:
                raise missing_param("price")
            return side, kind, req.time_in_force
        if req.quantity is None and req.quote_order_qty is None:
            raise BinanceError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
        if req.quantity is not None and req.quote_order_qty is not None:
            raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if req.quote_order_qty is not None and req.quote_order_qty <= 0:
            raise BinanceError(-1013, "Invalid quantity.")
        return side, kind, "GTC"

    @staticmethod
    def _check_qty(market: Market, qty: Decimal) -> None:
        f = market.filters
        if qty <= 0:
            raise BinanceError(-1013, "Invalid quantity.")
        if (f.min_qty > 0 and qty < f.min_qty) or (f.max_qty > 0 and qty > f.max_qty):
            raise filter_failure("LOT_SIZE")
        if f.step_size > 0 and qty % f.step_size != 0:
            raise filter_failure("LOT_SIZE")

    @staticmethod
    def _check_price(market: Market, price: Decimal) -> None:
        f = market.filters
        if price <= 0:
            raise BinanceError(-1013, "Invalid price.")
        if (f.min_price > 0 and price < f.min_price) or (f.max_price > 0 and price > f.max_price):
            raise filter_failure("PRICE_FILTER")
        if f.tick_size > 0 and price % f.tick_size != 0:
            raise filter_failure("PRICE_FILTER")

    @staticmethod
    def _check_market_qty(market: Market, qty: Decimal) -> None:
        """MARKET_LOT_SIZE, on top of LOT_SIZE, for a MARKET order given by quantity. (An order
        by quoteOrderQty is not held to it here: its quantity is what the book gives.)"""
        f = market.filters
        if (f.market_min_qty > 0 and qty < f.market_min_qty) or (f.market_max_qty > 0 and qty > f.market_max_qty):
            raise filter_failure("MARKET_LOT_SIZE")
        if f.market_step_size > 0 and qty % f.market_step_size != 0:
            raise filter_failure("MARKET_LOT_SIZE")

    @staticmethod
    def _check_percent_price(market: Market, side: OrderSide, price: Decimal, avg_price: Decimal | None) -> None:
        """PERCENT_PRICE_BY_SIDE: a LIMIT price within the side's multipliers of the average price."""
        f = market.filters
        if avg_price is None or avg_price <= 0 or not f.has_percent_price:
            return
        low, high = f.price_band(is_buy=side is OrderSide.BUY, avg_price=avg_price)
        if price < low or (high > 0 and price > high):
            raise filter_failure("PERCENT_PRICE_BY_SIDE")

    @staticmethod
    def _check_notional(market: Market, notional: Decimal) -> None:
        if market.filters.min_notional > 0 and notional < market.filters.min_notional:
            raise filter_failure("NOTIONAL")

    def _levels(self, market: Market, side: OrderSide, book: BookTop) -> list[_Level]:
        """The opposite side of the book a taker walks: the displayed level, then synthetic
        ones `depth_step` apart with the same quantity."""
        best, qty = (book.ask, book.ask_qty) if side is OrderSide.BUY else (book.bid, book.bid_qty)
        qty = _floor(qty, market.filters.step_size)
        if best <= 0 or qty <= 0:
            return []
        tick = market.filters.tick_size
        levels = []
        for k in range(self._depth_levels):
            if side is OrderSide.BUY:
                price = _quantize(best * (1 + self._depth_step * k), tick, ROUND_UP)
            else:
                price = _quantize(best * (1 - self._depth_step * k), tick, ROUND_DOWN)
            if price <= 0:
                break
            levels.append(_Level(price, qty))
        return levels

    def _plan_taker(
        self, market: Market, levels: Sequence[_Level], qty: Decimal | None, quote: Decimal | None
    ) -> list[tuple[Decimal, Decimal]]:
        """(price, qty) slices that fill `qty` base (or spend up to `quote`) across `levels`."""
        step = market.filters.step_size
        plan: list[tuple[Decimal, Decimal]] = []
        for lv in levels:
            if qty is not None:
                take = min(qty - sum((q for _, q in plan), Decimal(0)), lv.qty)
            else:
                assert quote is not None
                spent = sum((p * q for p, q in plan), Decimal(0))
                take = min(_floor((quote - spent) / lv.price, step), lv.qty)
            if take <= 0:
                break
            plan.append((lv.price, take))
        return plan

    def _place_market(
        self,
        acct: Account,
        market: Market,
        req: OrderRequest,
        side: OrderSide,
        levels: list[_Level],
        now_ms: int,
    ) -> PlaceResult:
        plan = self._plan_taker(market, levels, req.quantity, req.quote_order_qty)
        filled_qty = sum((q for _, q in plan), Decimal(0))
        cost = sum((p * q for p, q in plan), Decimal(0))
        if side is OrderSide.BUY:
            # the whole order must be affordable at the best ask, and what fills at its price
            best = levels[0].price if levels else Decimal(0)
            if max(cost, (req.quantity or Decimal(0)) * best) > acct.free(market.quote):
                raise BinanceError(-2010, INSUFFICIENT_BALANCE)
        elif max(filled_qty, req.quantity or Decimal(0)) > acct.free(market.base):
            raise BinanceError(-2010, INSUFFICIENT_BALANCE)
        orig_qty = req.quantity if req.quantity is not None else filled_qty
        order = self._new_order(acct, market, req, side, OrderKind.MARKET, "GTC", Decimal(0), orig_qty, now_ms)
        fills = []
        for price, qty in plan:
            order = self._fill(acct, market, order, price, qty, now_ms, is_maker=False)
            fills.append(acct.trades[-1])
        if order.status.is_open:
            order = replace(order, status=OrderState.EXPIRED, update_time_ms=now_ms)
            self._store(acct, order)
            self._emit(acct.api_key, ExecutionEvent(order, ExecType.EXPIRED, None, now_ms))
        self._emit_balances(acct, self._assets_of(acct, order), now_ms)
        return PlaceResult(order, tuple(fills))

    def _place_limit(
        self,
        acct: Account,
        market: Market,
        req: OrderRequest,
        side: OrderSide,
        tif: str,
        levels: list[_Level],
        now_ms: int,
    ) -> PlaceResult:
        assert req.price is not None and req.quantity is not None
        plan = self._plan_taker(market, levels, req.quantity, None)
        takeable = sum((q for _, q in plan), Decimal(0))
        if tif == "FOK" and takeable < req.quantity:
            plan = []
        need_asset, need = (market.quote, req.price * req.quantity) if side is OrderSide.BUY else (market.base, req.quantity)
        if need > acct.free(need_asset):
            raise BinanceError(-2010, INSUFFICIENT_BALANCE)
        bal = acct.balance(need_asset)
        bal.free -= need
        bal.locked += need
        order = self._new_order(acct, market, req, side, OrderKind.LIMIT, tif, req.price, req.quantity, now_ms)
        fills = []
        for price, qty in plan:
            order = self._fill(acct, market, order, price, qty, now_ms, is_maker=False)
            fills.append(acct.trades[-1])
        if order.status.is_open and tif in ("IOC", "FOK"):
            self._release(acct, order)
            order = replace(order, status=OrderState.EXPIRED, update_time_ms=now_ms)
            self._store(acct, order)
            self._emit(acct.api_key, ExecutionEvent(order, ExecType.EXPIRED, None, now_ms))
        self._emit_balances(acct, self._assets_of(acct, order), now_ms)
        return PlaceResult(order, tuple(fills))

    def _new_order(
        self,
        acct: Account,
        market: Market,
        req: OrderRequest,
        side: OrderSide,
        kind: OrderKind,
        tif: str,
        price: Decimal,
        qty: Decimal,
        now_ms: int,
    ) -> SimOrder:
        order_id = self._next_order_id
        self._next_order_id += 1
        order = SimOrder(
            order_id=order_id,
            client_order_id=req.client_order_id or f"sim-{order_id}",
            symbol=market.market_id,
            side=side,
            type=kind,
            time_in_force=tif,
            price=price,
            orig_qty=qty,
            executed_qty=Decimal(0),
            cumulative_quote_qty=Decimal(0),
            status=OrderState.NEW,
            time_ms=now_ms,
            update_time_ms=now_ms,
            orig_quote_order_qty=req.quote_order_qty or Decimal(0),
        )
        acct.by_client_id[order.client_order_id] = order_id
        self._store(acct, order)
        self._emit(acct.api_key, ExecutionEvent(order, ExecType.NEW, None, now_ms))
        return order

    def _fill(
        self,
        acct: Account,
        market: Market,
        order: SimOrder,
        price: Decimal,
        qty: Decimal,
        now_ms: int,
        *,
        is_maker: bool,
    ) -> SimOrder:
        """Move the assets of one execution and record it; returns the updated order."""
        quote_amount = price * qty
        base_bal, quote_bal = acct.balance(market.base), acct.balance(market.quote)
        bnb_fee = self._bnb_commission(acct, market, quote_amount)
        if bnb_fee is not None:
            commission, fee_asset = bnb_fee, BNB
            acct.balance(BNB).free -= commission
        if order.side is OrderSide.BUY:
            if bnb_fee is None:
                commission = (qty * self._fee_rate).quantize(COMMISSION_QUANTUM, ROUND_HALF_UP)
                fee_asset = market.base
            if order.type is OrderKind.LIMIT:
                quote_bal.locked -= order.price * qty
                quote_bal.free += (order.price - price) * qty  # price improvement comes back
            else:
                quote_bal.free -= quote_amount
            base_bal.free += qty - (commission if bnb_fee is None else 0)
        else:
            if bnb_fee is None:
                commission = (quote_amount * self._fee_rate).quantize(COMMISSION_QUANTUM, ROUND_HALF_UP)
                fee_asset = market.quote
            if order.type is OrderKind.LIMIT:
                base_bal.locked -= qty
            else:
                base_bal.free -= qty
            quote_bal.free += quote_amount - (commission if bnb_fee is None else 0)
        trade = SimTrade(
            id=self._next_trade_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            qty=qty,
            commission=commission,
            commission_asset=fee_asset,
            time_ms=now_ms,
            is_maker=is_maker,
        )
        self._next_trade_id += 1
        acct.trades.append(trade)
        executed = order.executed_qty + qty
        order = replace(
            order,
            executed_qty=executed,
            cumulative_quote_qty=order.cumulative_quote_qty + quote_amount,
            status=OrderState.FILLED if executed >= order.orig_qty else OrderState.PARTIALLY_FILLED,
            update_time_ms=now_ms,
        )
        self._store(acct, order)
        self._emit(acct.api_key, ExecutionEvent(order, ExecType.TRADE, trade, now_ms))
        return order

    def _bnb_commission(self, acct: Account, market: Market, quote_amount: Decimal) -> Decimal | None:
        """The commission in BNB of a trade worth `quote_amount`, for an account paying fees in
        BNB; None when it does not, holds too little BNB, or BNB/<quote> has no price."""
        if not acct.fees_in_bnb or self._book_of is None or BNB in (market.base, market.quote):
            return None
        bnb_market = next((m for m in self._markets.values() if (m.base, m.quote) == (BNB, market.quote)), None)
        if bnb_market is None:
            return None
        book = self._book_of(bnb_market.market_id)
        if book.bid <= 0 or book.ask <= 0:
            return None
        mid = (book.bid + book.ask) / 2
        commission = (quote_amount * self._fee_rate / mid).quantize(COMMISSION_QUANTUM, ROUND_HALF_UP)
        return commission if acct.free(BNB) >= commission else None

    def _release(self, acct: Account, order: SimOrder) -> None:
        """Unlock what a resting LIMIT order still holds."""
        if order.type is not OrderKind.LIMIT:
            return
        market = self._markets[order.symbol]
        if order.side is OrderSide.BUY:
            bal, amount = acct.balance(market.quote), order.price * order.remaining
        else:
            bal, amount = acct.balance(market.base), order.remaining
        bal.locked -= amount
        bal.free += amount

    def _store(self, acct: Account, order: SimOrder) -> None:
        acct.orders[order.order_id] = order
        acct.update_time_ms = max(acct.update_time_ms, order.update_time_ms)
        resting = self._open_by_symbol.setdefault(order.symbol, {})
        if order.status.is_open and order.type is OrderKind.LIMIT:
            resting[order.order_id] = acct.api_key
        else:
            resting.pop(order.order_id, None)

    @staticmethod
    def _open_with_client_id(acct: Account, client_order_id: str) -> bool:
        """Whether an open order already has this id. Binance refuses a duplicate only among open
        orders: the id of a filled or cancelled order may be used again (and then names the new one)."""
        order_id = acct.by_client_id.get(client_order_id)
        order = acct.orders.get(order_id) if order_id is not None else None
        return order is not None and order.status.is_open

    def _find(self, acct: Account, symbol: str, order_id: int | None, client_order_id: str | None) -> SimOrder | None:
        if order_id is None and client_order_id is None:
            raise BinanceError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if order_id is None:
            assert client_order_id is not None
            order_id = acct.by_client_id.get(client_order_id)
        order = acct.orders.get(order_id) if order_id is not None else None
        if order is None or order.symbol != symbol:
            return None
        if client_order_id is not None and order.client_order_id != client_order_id:
            return None
        return order

    def _assets_of(self, acct: Account, order: SimOrder) -> tuple[str, ...]:
        """The assets an order's execution moves: its market's, and BNB for an account paying fees in it."""
        market = self._markets[order.symbol]
        pair = (market.base, market.quote)
        return (*pair, BNB) if acct.fees_in_bnb and BNB not in pair else pair

    def _emit(self, api_key: str, event: UserEvent) -> None:
        self._outbox.append((api_key, event))

    def _emit_balances(self, acct: Account, assets: Iterable[str], now_ms: int) -> None:
        acct.update_time_ms = max(acct.update_time_ms, now_ms)
        rows = tuple((a, acct.balance(a).free, acct.balance(a).locked) for a in assets)
        self._emit(acct.api_key, BalanceEvent(rows, now_ms))


def _crosses(side: OrderSide, limit: Decimal, opposite: Decimal) -> bool:
    """Whether a `side` order at `limit` trades against an opposite quote at `opposite`."""
    return opposite <= limit if side is OrderSide.BUY else opposite >= limit


def _quantize(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)


def _floor(value: Decimal, step: Decimal) -> Decimal:
    return _quantize(value, step, ROUND_DOWN) if step > 0 else value
