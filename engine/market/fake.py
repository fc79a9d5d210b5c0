"""Test doubles of the market layer: `FakeGateway` (in-memory, scriptable) and `ManualClock`.

`FakeGateway` is for the tests of whoever consumes a `Gateway` (runtime, exchange broker,
discovery): no network, no ccxt, deterministic. Script it with `push_tickers`,
`push_candles`, `push_order_update`, `push_balance`; make calls fail with
`fail_next(method, error)`; inspect what was sent in `created` / `cancelled` / `calls`.
Orders fill as the script says: `fill_market_orders=True` (default) fills market orders at
the last pushed price; limits stay open until `fill_order()`.

`ManualClock` is a `Clock` whose time moves only when told: `sleep()` parks the caller
until `advance()` passes its deadline, so a 480 s rate-limit silence is tested in
microseconds. In `auto` mode short sleeps (reconnect backoffs, <= `auto_max_s`) return at
once, moving time forward, while long ones (watchdogs, the 24 h rotation) still park.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict, deque
from decimal import Decimal

from engine.domain import (
    Candle,
    Fill,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    TickerBatch,
)
from engine.errors import NonRetryableOrderError, OrderError
from engine.market.gateway import Balance, Gateway, StreamHealth


class ManualClock:
    """A `Clock` under the test's control. `sleeps` records every requested wait (seconds)."""

    def __init__(self, start_ms: int = 1_700_000_000_000, *, auto: bool = False, auto_max_s: float = 60.0) -> None:
        self._now_ms = start_ms
        self.auto = auto
        self.auto_max_s = auto_max_s
        self.sleeps: list[float] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def now_ms(self) -> int:
        return self._now_ms

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        deadline = self._now_ms + int(seconds * 1000)
        if self.auto and seconds <= self.auto_max_s:
            self._now_ms = max(self._now_ms, deadline)
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((deadline, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._now_ms += int(seconds * 1000)
        due = [(d, f) for d, f in self._waiters if d <= self._now_ms]
        self._waiters = [(d, f) for d, f in self._waiters if d > self._now_ms]
        for _, future in due:
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, f in self._waiters if not f.done())


class FakeGateway(Gateway):
    """An in-memory exchange account behind the `Gateway` interface."""

    def __init__(
        self,
        markets: dict[str, Market] | None = None,
        *,
        balances: dict[str, Balance] | None = None,
        clock: ManualClock | None = None,
        fill_market_orders: bool = True,
    ) -> None:
        self.markets = dict(markets or {})
        self.balances = dict(balances or {})
        self.clock = clock or ManualClock(auto=True)
        self.fill_market_orders = fill_market_orders
        self.orders: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.created: list[OrderIntent] = []
        self.cancelled: list[str] = []
        self.calls: list[str] = []
        self.closed = False
        self.last_price: dict[str, float] = {}
        self.latest_tickers: TickerBatch | None = None
        self._tickers: asyncio.Queue[TickerBatch] = asyncio.Queue()
        self._candles: dict[tuple[str, str], asyncio.Queue[list[Candle]]] = defaultdict(asyncio.Queue)
        self._history: dict[tuple[str, str], list[Candle]] = defaultdict(list)
        self._order_updates: asyncio.Queue[list[Order]] = asyncio.Queue()
        self._balance_updates: asyncio.Queue[dict[str, Balance]] = asyncio.Queue()
        self._failures: dict[str, deque[OrderError]] = defaultdict(deque)
        self._health: dict[str, StreamHealth] = {}
        self._next_id = 1

    # ---- scripting -------------------------------------------------------------------------

    def push_tickers(self, batch: TickerBatch) -> None:
        for i, symbol in enumerate(batch.symbols):
            self.last_price[symbol] = float(batch.last[i])
        self.latest_tickers = batch
        self._tickers.put_nowait(batch)

    def push_candles(self, candles: list[Candle]) -> None:
        """Deliver `candles` on their (symbol, timeframe) watch and add them to the history."""
        if not candles:
            return
        key = (candles[0].symbol, candles[0].timeframe)
        history = {c.open_ms: c for c in self._history[key]}
        history.update({c.open_ms: c for c in candles})
        self._history[key] = sorted(history.values(), key=lambda c: c.open_ms)
        self._candles[key].put_nowait(list(candles))

    def push_order_update(self, order: Order) -> None:
        self.orders[order.client_order_id] = order
        self._order_updates.put_nowait([order])

    def push_balance(self, balances: dict[str, Balance]) -> None:
        self.balances = dict(balances)
        self._balance_updates.put_nowait(dict(balances))

    def fail_next(self, method: str, error: OrderError) -> None:
        """The next call of `method` (e.g. 'create_order') raises `error`; queue several to fail several."""
        self._failures[method].append(error)

    def set_health(self, health: StreamHealth) -> None:
        self._health[health.stream] = health

    def fill_order(self, client_order_id: str, price: float | None = None) -> Order:
        """Fill an open order completely (and announce it on `watch_orders`)."""
        order = self.orders[client_order_id]
        fill_price = price if price is not None else float(order.price or self.last_price[order.symbol])
        filled = self._filled(order, fill_price)
        self.push_order_update(filled)
        return filled

    # ---- helpers ---------------------------------------------------------------------------

    def _enter(self, method: str) -> None:
        if self.closed:
            raise RuntimeError("FakeGateway is closed")
        self.calls.append(method)
        if self._failures[method]:
            raise self._failures[method].popleft()

    def _filled(self, order: Order, price: float) -> Order:
        now = self.clock.now_ms()
        filled = dataclasses.replace(
            order, status=OrderStatus.FILLED, filled_qty=order.quantity, average_price=price, updated_ms=now
        )
        self.orders[order.client_order_id] = filled
        self.fills.append(
            Fill(
                trade_id=f"t{len(self.fills) + 1}",
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                price=price,
                quantity=float(order.quantity),
                fee_quote=0.0,
                ts_ms=now,
                trace_id=order.trace_id,
            )
        )
        return filled

    # ---- Gateway ---------------------------------------------------------------------------

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        self._enter("load_markets")
        return dict(self.markets)

    async def watch_tickers(self) -> TickerBatch:
        self._enter("watch_tickers")
        return await self._tickers.get()

    async def fetch_tickers(self) -> TickerBatch:
        self._enter("fetch_tickers")
        if self.latest_tickers is None:
            raise NonRetryableOrderError("FakeGateway: no tickers pushed yet (push_tickers first)")
        return self.latest_tickers

    async def watch_candles(self, symbol: str, timeframe: str) -> list[Candle]:
        self._enter("watch_candles")
        return await self._candles[(symbol, timeframe)].get()

    async def fetch_candles(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int = 500
    ) -> list[Candle]:
        self._enter("fetch_candles")
        history = self._history[(symbol, timeframe)]
        if since_ms is not None:
            return [c for c in history if c.open_ms >= since_ms][:limit]
        return history[-limit:]

    async def create_order(self, intent: OrderIntent) -> Order:
        self._enter("create_order")
        market = self.markets.get(intent.symbol)
        if market is None:
            raise NonRetryableOrderError(f"unknown symbol {intent.symbol!r}")
        existing = self.orders.get(intent.client_order_id)
        if existing is not None and not existing.status.is_terminal:
            raise NonRetryableOrderError(f"duplicate client order id {intent.client_order_id}", code=-2010)
        self.created.append(intent)
        now = self.clock.now_ms()
        order = dataclasses.replace(
            Order.from_intent(intent, OrderStatus.OPEN, now, str(self._next_id)),
            quantity=market.round_qty(intent.quantity),
            price=market.round_price(intent.price) if intent.price is not None else None,
        )
        self._next_id += 1
        self.orders[order.client_order_id] = order
        if intent.order_type is OrderType.MARKET and self.fill_market_orders:
            price = self.last_price.get(intent.symbol, intent.reference_price)
            order = self._filled(order, price)
        return order

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
        self._enter("cancel_order")
        order = self.orders.get(client_order_id)
        if order is None or order.status.is_terminal:
            raise NonRetryableOrderError(f"unknown or finished order {client_order_id}", code=-2011)
        cancelled = dataclasses.replace(order, status=OrderStatus.CANCELED, updated_ms=self.clock.now_ms())
        self.orders[client_order_id] = cancelled
        self.cancelled.append(client_order_id)
        return cancelled

    async def fetch_order(self, symbol: str, client_order_id: str) -> Order:
        self._enter("fetch_order")
        order = self.orders.get(client_order_id)
        if order is None:
            raise NonRetryableOrderError(f"order {client_order_id} does not exist", code=-2013)
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self._enter("fetch_open_orders")
        return [
            o for o in self.orders.values() if not o.status.is_terminal and (symbol is None or o.symbol == symbol)
        ]

    async def fetch_balance(self) -> dict[str, Balance]:
        self._enter("fetch_balance")
        return {a: b for a, b in self.balances.items() if b.total != Decimal(0)}

    async def fetch_my_trades(
        self, symbol: str, since_ms: int | None = None, *, order_id: str | None = None
    ) -> list[Fill]:
        self._enter("fetch_my_trades")
        return [
            f
            for f in self.fills
            if f.symbol == symbol
            and (since_ms is None or f.ts_ms >= since_ms)
            and (order_id is None or self.orders[f.client_order_id].exchange_order_id == order_id)
        ]

    async def watch_orders(self) -> list[Order]:
        self._enter("watch_orders")
        return await self._order_updates.get()

    async def watch_balance(self) -> dict[str, Balance]:
        self._enter("watch_balance")
        return await self._balance_updates.get()

    def health(self) -> dict[str, StreamHealth]:
        return dict(self._health)

    async def close(self) -> None:
        self.closed = True
