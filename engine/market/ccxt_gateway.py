"""`Gateway` over ccxt.pro Binance spot (or any Binance-compatible host via `exchange.endpoint`).

Layout: one ccxt instance for REST, and one per stream (full-market tickers, each candle
subscription, orders, balance), each wrapped in a `ResilientStream`. A stream per instance
lets a stream be closed, replaced or rotated (make-before-break) without touching the
others; markets are loaded once over REST and handed to every stream instance.

REST calls go through `engine.market.rest_guard.RestGuard`: a rate-limit silence after HTTP
429/418 is honoured for every call (nothing is sent until it ends; `RateLimitedError` says
until when), and every ccxt exception becomes the `engine.errors.OrderError` subclass of
`engine.market.errors`. Streams share the same silence.

**Clock skew.** A signed call refused with -1021 (our timestamp outside recvWindow: the system
clock is off) is answered by re-learning the exchange's clock once (GET /api/v3/time, as ccxt's
`load_time_difference` does) and sending the same call again: same parameters, so an order
keeps its client order id, and nothing was placed the first time (the check runs before
matching). ccxt signs with its wall clock minus `options['timeDifference']`; the offset is
measured against that wall clock (`milliseconds()`, so this is exactly ccxt's
`load_time_difference`, with the round trip's midpoint), on Binance and on the simulated
exchange at x1 alike, never against the gateway's clock: on the simulated exchange that clock
was read from the exchange's time, skew included, so a skew present at start measured 0.
Only a paced simulated exchange, whose time no wall clock matches, is measured against its
first reading extrapolated (`exchange_clock.signing_reference`). Every stream instance made
afterwards signs with the same offset. If the resent call is refused again, the offset is put
back (a measurement that did not help is not trusted) and `ClockSkewError` says how far off
the clock is and to sync it; the REST health then carries a `clock_skew` fault until that call
works.

**An exchange clock that went back** (a simulated exchange restarted mid-run, see
`engine.market.exchange_clock`): the gateway's clock then shows the exchange's times
`shift_ms` later, so every time the exchange reports (ticker event times, candle opens, order
and fill times) has it added, every `since` sent has it taken off, and the skew measurement
leaves it out (signing knows only the exchange's own times); on Binance it is always 0.

Orders are sent with the intent's client order id (`newClientOrderId`), quantity floored to
stepSize and price rounded to tickSize, as exact decimal strings. Binance only rejects a
duplicate client id while the first order is open, so after an UNKNOWN failure the caller
must `fetch_order` by that id before any retry. A create that failed before its request left
(ccxt's own checks, no request counted by the REST client) is `OrderNotSentError` instead: the
exchange never saw it, so there is nothing to look up.

The gateway remembers the orders it has seen (bounded) so that, after a user-data gap, a
REST re-check can say exactly which orders and balances changed (`UserResync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

from engine.config.sections.exchange import ExchangeSection
from engine.domain import (
    Candle,
    Fill,
    Market,
    Order,
    OrderIntent,
    OrderType,
    Side,
    TickerBatch,
)
from engine.errors import (
    ClockSkewError,
    ConfigError,
    NonRetryableOrderError,
    OrderError,
    OrderNotSentError,
    UnknownOrderError,
    is_order_unknown,
)
from engine.market.backoff import Clock, RateLimitBackoff, ReconnectBackoff, SystemClock
from engine.market.candle_cache import CandleCache
from engine.market.ccxt_client import EndpointBinance, build_client
from engine.market.ccxt_parse import (
    balances_from_ccxt,
    candles_from_ohlcv,
    fill_from_ccxt,
    market_from_ccxt,
    order_from_ccxt,
    tickers_to_batch,
)
from engine.market.ccxt_stream import (
    CcxtConnection,
    latest,
    merge_candles,
    merge_orders,
    merge_tickers,
    subscribe_user_data,
    watch_all_tickers,
)
from engine.market.errors import CLOCK_SKEW_CODE
from engine.market.exchange_clock import exchange_shift_ms, signing_reference
from engine.market.fast_tickers import FastTickerConnection
from engine.market.gateway import (
    BALANCE_STREAM,
    ORDERS_STREAM,
    REST_STREAM,
    Balance,
    ExchangeFault,
    Gateway,
    GatewayNotice,
    NoticeKind,
    NoticeSink,
    StreamHealth,
    UserResync,
)
from engine.market.known_orders import KnownOrders, changed_balances, changed_orders, vanished
from engine.market.rest_guard import RestGuard
from engine.market.stream import Connection, ResilientStream
from engine.market.trade_fees import TradeFees, trade_fees_of

T = TypeVar("T")

MARKETS_RETRY_S = 300.0  # a failed market refresh keeps the last good copy and retries this soon
CLOCK_FAULT = "clock_skew"  # `ExchangeFault.code` (and the state reason) of timestamps refused after a resync
CLOCK_FIX = "sync the system clock (chrony/ntp)"


class CcxtGateway(Gateway):
    """The live gateway. Build once per process; `close()` at exit. `rate_limit` is the silence
    kept after a 429/418 (default: the live engine's schedule; `hotcoin collect` passes one that
    trusts Retry-After)."""

    def __init__(
        self,
        section: ExchangeSection,
        *,
        endpoint: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        notify: NoticeSink | None = None,
        client_factory: Callable[[], EndpointBinance] | None = None,
        reconnect_base_s: float = 0.5,
        reconnect_cap_s: float = 30.0,
        rate_limit: RateLimitBackoff | None = None,
    ) -> None:
        self._section = section
        self._endpoint = endpoint or section.endpoint
        if section.name == "sim" and self._endpoint is None and client_factory is None:
            raise ConfigError(
                "exchange.name is 'sim' but exchange.endpoint is unset, which would reach real Binance; "
                "set exchange.endpoint (or --endpoint) to the simulated exchange's URL, or name 'binance'"
            )
        self._factory = client_factory or (lambda: build_client(section, self._endpoint))
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._notify_sink = notify
        self._reconnect = (reconnect_base_s, reconnect_cap_s)
        self._rest_client = self._factory()
        self._rate = rate_limit or RateLimitBackoff()
        self._guard = RestGuard(self._clock, self._rate, notify)
        self._streams: dict[str, ResilientStream[Any]] = {}
        self._markets: dict[str, Market] = {}
        self._refresh_task: asyncio.Task[None] | None = None
        self._next_refresh_ms = 0
        self.candle_cache = CandleCache(self._clock, max_entries=section.candle_cache_entries)
        self.known = KnownOrders()
        self.trade_fees = TradeFees()  # each order's commissions per trade, across stream instances
        self._balance: dict[str, Balance] | None = None
        self._time_difference_ms: int | None = None  # ccxt's `timeDifference`, once a resync set one
        self._closed = False
        self.unknown_ticker_symbols = 0  # tickers of ids newer than our market info, skipped

    # ---- plumbing -------------------------------------------------------------------------

    def _emit(self, notice: GatewayNotice) -> None:
        if self._notify_sink is not None:
            self._notify_sink(notice)

    async def _rest(self, operation: str, call: Callable[[], Awaitable[T]], *, placing: bool = False) -> T:
        """`call` through the guard; after a -1021, once more with the clock re-learned (module doc)."""
        try:
            return await self._guard.call(operation, call, placing=placing)
        except OrderError as exc:
            if exc.code != CLOCK_SKEW_CODE:
                raise
        before = self._time_difference_ms
        skew_ms = await self._resync_clock()
        try:
            return await self._guard.call(operation, call, placing=placing)
        except OrderError as exc:
            if exc.code != CLOCK_SKEW_CODE:
                raise
            self._set_time_difference(before)
            detail = self._skew_text(skew_ms)
            error = ClockSkewError(
                f"{operation}: {detail} (refused again after a resync: {exc})", code=CLOCK_SKEW_CODE, skew_ms=skew_ms
            )
            fault = ExchangeFault(CLOCK_FAULT, f"{detail} ({operation} refused with {CLOCK_SKEW_CODE})", operation)
            self._guard.set_fault(fault, self._clock.now_ms())
            raise error from exc

    def _skew_text(self, skew_ms: int) -> str:
        """What persisting -1021s mean: a clock off by more than recvWindow, or (the exchange's
        clock reading close to ours) requests that arrive too late, or a clock that jumps."""
        window = self._section.recv_window_ms
        if abs(skew_ms) >= window or skew_ms < -1000:  # Binance refuses stamps over 1 s ahead of its clock
            return f"clock skew of {skew_ms:+,d} ms against the exchange: {CLOCK_FIX}"
        return (
            f"the exchange refuses our timestamps though its clock reads {skew_ms:+,d} ms from ours: requests "
            f"arrive over {window:,d} ms late or the system clock jumps; check the network and {CLOCK_FIX}"
        )

    async def _resync_clock(self) -> int:
        """Measure the exchange's clock minus the one ccxt signs with (GET /api/v3/time, at the
        round trip's midpoint; module doc) and sign with it from now on; the offset in ms."""
        client = self._rest_client
        ours = signing_reference(self._clock, lambda: int(client.milliseconds()))
        sent = ours()
        server_ms = await self._guard.call("fetch_time", lambda: client.fetch_time())
        back = ours()
        skew_ms = int(server_ms) - (sent + back) // 2
        self._guard.health.clock_offset_ms = skew_ms
        self._set_time_difference(-skew_ms)
        return skew_ms

    def _set_time_difference(self, value: int | None) -> None:
        """ccxt signs with its clock minus `timeDifference`: set it on the REST instance, and on
        every stream instance made from now on (`_stream_client`; a stream signs only when it
        connects, and each connection, a redial or a rotation included, is a new instance)."""
        self._time_difference_ms = value
        self._rest_client.options["timeDifference"] = value or 0

    def _stream_client(self) -> EndpointBinance:
        """A fresh ccxt instance for one stream, sharing the REST instance's loaded markets and
        signing with the REST instance's clock offset."""
        client = self._factory()
        client.set_markets_from_exchange(self._rest_client)  # shared, not rebuilt: O(1)
        if self._time_difference_ms is not None:
            client.options["timeDifference"] = self._time_difference_ms
        return client

    def _share_markets(self) -> None:
        """Hand freshly reloaded markets to every live stream connection (new listings included)."""
        symbols_by_id = {m.market_id: m.symbol for m in self._markets.values()}
        for stream in self._streams.values():
            for conn in stream.connections():
                if isinstance(conn, CcxtConnection):
                    conn.exchange.set_markets_from_exchange(self._rest_client)
                elif isinstance(conn, FastTickerConnection):
                    conn.decoder.set_symbols(symbols_by_id)

    def _stream(
        self,
        key: str,
        connect: Callable[[], Connection[T]],
        *,
        prepare: Callable[[Connection[T]], Awaitable[None]] | None = None,
        on_gap: Callable[[int], Awaitable[T | None]] | None = None,
        stale_s: float = 0.0,
    ) -> ResilientStream[T]:
        stream = self._streams.get(key)
        if stream is None:
            if self._closed:
                raise RuntimeError("gateway is closed")
            base, cap = self._reconnect
            stream = ResilientStream(
                key,
                connect,
                clock=self._clock,
                backoff=ReconnectBackoff(base_s=base, cap_s=cap, rng=self._rng),
                rate=self._rate,
                max_age_ms=int(self._section.max_connection_age_s * 1000),
                notify=self._notify_sink,
                prepare=prepare,
                on_gap=on_gap,
                stale_s=stale_s,
            )
            self._streams[key] = stream
        return stream

    async def _ensure_markets(self) -> dict[str, Market]:
        if not self._markets:
            return await self.load_markets()
        self._maybe_refresh_markets()
        return self._markets

    def market(self, symbol: str) -> Market:
        """The loaded market for `symbol`; an unknown symbol is a named, non-retryable error."""
        market = self._markets.get(symbol)
        if market is None:
            raise NonRetryableOrderError(f"unknown symbol {symbol!r}: not in the loaded markets (load_markets first)")
        return market

    # ---- markets ---------------------------------------------------------------------------

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        if self._markets and not reload:
            return self._markets
        raw = await self._rest("load_markets", lambda: self._rest_client.load_markets(reload=True))
        markets = {}
        for m in raw.values():
            if m.get("spot"):
                market = market_from_ccxt(m)
                markets[market.symbol] = market
        self._markets = markets
        self._next_refresh_ms = self._clock.now_ms() + int(self._section.markets_refresh_s * 1000)
        self._share_markets()
        return markets

    def _maybe_refresh_markets(self) -> None:
        """Start a background reload when one is due (driven by use: no timer to leak or spin)."""
        due = self._clock.now_ms() >= self._next_refresh_ms
        if due and (self._refresh_task is None or self._refresh_task.done()) and not self._closed:
            self._refresh_task = asyncio.ensure_future(self._refresh_markets())

    async def _refresh_markets(self) -> None:
        """Reload market info; on failure keep the last good copy and try again in 5 minutes."""
        try:
            await self.load_markets(reload=True)
        except OrderError as exc:
            now = self._clock.now_ms()
            self._next_refresh_ms = now + int(MARKETS_RETRY_S * 1000)
            self._emit(
                GatewayNotice(
                    NoticeKind.MARKETS_REFRESH_FAILED, REST_STREAM, now, detail=str(exc)[:300],
                    error_class=exc.error_class.value, delay_s=MARKETS_RETRY_S,
                )
            )
        else:
            self._emit(
                GatewayNotice(
                    NoticeKind.MARKETS_REFRESHED, REST_STREAM, self._clock.now_ms(),
                    detail=f"{len(self._markets)} markets",
                )
            )

    # ---- market data -----------------------------------------------------------------------

    async def watch_tickers(self) -> TickerBatch:
        await self._ensure_markets()
        if self._section.ticker_decoder == "fast":
            fast = self._stream("tickers", self._fast_connection, stale_s=self._section.stale_stream_s)
            return await fast.next()
        stream = self._stream(
            "tickers",
            lambda: CcxtConnection(self._stream_client(), watch_all_tickers, merge_tickers),
            stale_s=self._section.stale_stream_s,
        )
        tickers = await stream.next()
        known = {s: t for s, t in tickers.items() if s in self._markets}
        self.unknown_ticker_symbols += len(tickers) - len(known)
        return tickers_to_batch(known, self._clock.now_ms(), shift_ms=exchange_shift_ms(self._clock))

    def _fast_connection(self) -> FastTickerConnection:
        ws_base = self._rest_client.urls["api"]["ws"]["spot"]
        return FastTickerConnection(
            f"{ws_base}/0",
            {m.market_id: m.symbol for m in self._markets.values()},
            clock=self._clock,
            keepalive_s=self._section.keepalive_ms / 1000,
            timeout_s=self._section.request_timeout_ms / 1000,
        )

    async def fetch_tickers(self) -> TickerBatch:
        await self._ensure_markets()
        tickers = await self._rest("fetch_tickers", lambda: self._rest_client.fetch_tickers())
        return tickers_to_batch(tickers, self._clock.now_ms(), shift_ms=exchange_shift_ms(self._clock))

    async def watch_candles(self, symbol: str, timeframe: str) -> list[Candle]:
        await self._ensure_markets()
        self.market(symbol)

        async def call(ex: EndpointBinance) -> tuple[list[list[Any]], int]:
            rows = list(await ex.watch_ohlcv(symbol, timeframe))
            cached = ex.ohlcvs.get(symbol, {}).get(timeframe)
            return rows, int(cached[-1][0]) if cached else int(rows[-1][0])

        stream = self._stream(
            f"candles:{symbol}:{timeframe}",
            lambda: CcxtConnection(self._stream_client(), call, merge_candles),
            stale_s=self._section.stale_stream_s,
        )
        rows, latest_open_ms = await stream.next()
        shift = exchange_shift_ms(self._clock)
        return candles_from_ohlcv(symbol, timeframe, _shifted(rows, shift), self._clock.now_ms(), latest_open_ms + shift)

    async def fetch_candles(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int = 500
    ) -> list[Candle]:
        await self._ensure_markets()
        self.market(symbol)

        shift = exchange_shift_ms(self._clock)
        since = None if since_ms is None else since_ms - shift

        async def fetch() -> list[Candle]:
            rows = await self._rest("fetch_candles", lambda: self._rest_client.fetch_ohlcv(symbol, timeframe, since, limit))
            return candles_from_ohlcv(symbol, timeframe, _shifted(rows, shift), self._clock.now_ms())

        return await self.candle_cache.get((symbol, timeframe, since_ms, limit), fetch)

    # ---- orders ----------------------------------------------------------------------------

    def _order(self, raw: dict[str, Any]) -> Order:
        trace_id, purpose = self.known.meta(str(raw.get("clientOrderId") or ""))
        order = order_from_ccxt(raw, self._markets.get(str(raw.get("symbol"))), trace_id=trace_id, purpose=purpose)
        shift = exchange_shift_ms(self._clock)
        if shift:
            order = replace(order, created_ms=order.created_ms and order.created_ms + shift, updated_ms=order.updated_ms and order.updated_ms + shift)
        info = raw.get("info") or {}
        self.trade_fees.note(order.client_order_id, trade_fees_of(info))
        order = self.trade_fees.apply(order, from_stream=info.get("e") == "executionReport")
        self.known.remember(order)
        return order

    async def create_order(self, intent: OrderIntent) -> Order:
        await self._ensure_markets()
        market = self.market(intent.symbol)
        is_market = intent.order_type is OrderType.MARKET
        qty = market.round_qty(intent.quantity, market_order=is_market)
        price: Decimal | None = None
        check_price: Decimal | None
        params: dict[str, Any] = {"newClientOrderId": intent.client_order_id}
        if intent.order_type is OrderType.LIMIT:
            if intent.price is None:
                raise NonRetryableOrderError(f"{intent.client_order_id}: a LIMIT order needs a price")
            price = market.round_price(intent.price, side_safe="down" if intent.side is Side.BUY else "up")
            params["timeInForce"] = intent.time_in_force.value
            check_price = price
        else:
            # A MARKET order carries no price, so no tick to miss: its reference (an average entry
            # price, say, when close-all has no quote) only values the notional, on the tick grid
            # as the precheck valued it. Checked as given, an off-grid reference would fail
            # PRICE_FILTER and refuse an emergency exit.
            check_price = market.round_price(intent.reference_price) if intent.reference_price > 0 else None
        if check_price is not None:
            reason = market.check_order(qty, check_price, market_order=is_market)
            if reason is not None:
                raise NonRetryableOrderError(f"{intent.client_order_id} {intent.symbol}: {reason}")
        self.known.note_intent(intent)
        sent_before = self._requests_sent()
        try:
            raw = await self._rest(
                "create_order",
                lambda: self._rest_client.create_order(
                    intent.symbol,
                    intent.order_type.value,
                    intent.side.value,
                    format(qty, "f"),
                    format(price, "f") if price is not None else None,
                    params,
                ),
                placing=True,
            )
        except UnknownOrderError as exc:
            # An error that is no ccxt exception is an unknown outcome, as a parser's error on a
            # reply may come after the order was placed; but if no request left meanwhile, it
            # failed in ccxt's own checks (an AssertionError on a tick it cannot round to), and
            # the exchange never saw the order: known, and not to be looked up as maybe placed.
            if sent_before is None or self._requests_sent() != sent_before:
                raise
            raise OrderNotSentError(
                f"{intent.client_order_id} {intent.symbol}: not sent, it failed before its request left ({exc})",
                code=exc.code, reason=exc.reason,
            ) from exc
        return self._order(raw)

    def _requests_sent(self) -> int | None:
        """How many HTTP requests the REST client has sent (`EndpointBinance.requests_sent`);
        None for a client that does not count them. Another call's request counts too: a count
        that moved meanwhile leaves the outcome unknown, the safe side, even if ours never left."""
        count = getattr(self._rest_client, "requests_sent", None)
        return count if isinstance(count, int) else None

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
        """The cancelled order, under its own client id.

        Binance's reply carries the *cancel request's* id in `clientOrderId` (made up at random,
        as we send no `newClientOrderId`) and the order's in `origClientOrderId`; ccxt takes the
        former. Filed under it, the order would read as a stranger, and a caller that adopted
        it would book its whole executed quantity again while the real order stayed open."""
        await self._ensure_markets()
        raw = await self._rest(
            "cancel_order",
            lambda: self._rest_client.cancel_order("", symbol, {"origClientOrderId": client_order_id}),
        )
        info = raw.get("info") or {}
        return self._order({**raw, "clientOrderId": info.get("origClientOrderId") or client_order_id})

    async def fetch_order(self, symbol: str, client_order_id: str) -> Order:
        await self._ensure_markets()
        raw = await self._rest(
            "fetch_order",
            lambda: self._rest_client.fetch_order("", symbol, {"origClientOrderId": client_order_id}),
        )
        return self._order(raw)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        await self._ensure_markets()
        raws = await self._rest("fetch_open_orders", lambda: self._rest_client.fetch_open_orders(symbol))
        return [self._order(r) for r in raws]

    async def fetch_balance(self) -> dict[str, Balance]:
        raw = await self._rest("fetch_balance", lambda: self._rest_client.fetch_balance())
        balances = balances_from_ccxt(raw)
        self._balance = balances
        return balances

    async def fetch_my_trades(
        self, symbol: str, since_ms: int | None = None, *, order_id: str | None = None
    ) -> list[Fill]:
        await self._ensure_markets()
        params = {"orderId": order_id} if order_id is not None else {}
        shift = exchange_shift_ms(self._clock)
        since = None if since_ms is None else since_ms - shift
        raws = await self._rest("fetch_my_trades", lambda: self._rest_client.fetch_my_trades(symbol, since, None, params))
        fills = []
        for t in raws:
            cid = await self._client_id_for(symbol, str(t.get("order")))
            self.trade_fees.note(cid, trade_fees_of(t.get("info") or {}))
            trace_id = self.known.meta(cid)[0]
            fill = fill_from_ccxt(t, cid, trace_id=trace_id)
            fills.append(replace(fill, ts_ms=fill.ts_ms + shift) if shift and fill.ts_ms else fill)
        return fills

    async def _client_id_for(self, symbol: str, exchange_order_id: str) -> str:
        """myTrades carries only the exchange's order id: map it, asking REST once if unknown."""
        cid = self.known.client_id(exchange_order_id)
        if cid is None:
            raw = await self._rest(
                "fetch_order", lambda: self._rest_client.fetch_order(exchange_order_id, symbol)
            )
            cid = self._order(raw).client_order_id
        return cid

    # ---- user data -------------------------------------------------------------------------

    async def watch_orders(self) -> list[Order]:
        await self._ensure_markets()

        async def call(ex: EndpointBinance) -> list[Order]:
            return [self._order(r) for r in await ex.watch_orders()]

        async def on_gap(gap_ms: int) -> list[Order] | None:
            resync = await self.resync_user_data(gap_ms)
            return list(resync.orders) or None

        stream: ResilientStream[list[Order]] = self._stream(
            ORDERS_STREAM, lambda: CcxtConnection(self._stream_client(), call, merge_orders), prepare=subscribe_user_data,
            on_gap=on_gap,
        )
        return await stream.next()

    async def watch_balance(self) -> dict[str, Balance]:
        await self._ensure_markets()

        async def call(ex: EndpointBinance) -> dict[str, Balance]:
            balances = balances_from_ccxt(await ex.watch_balance())
            self._balance = balances
            return balances

        async def on_gap(gap_ms: int) -> dict[str, Balance] | None:
            resync = await self.resync_user_data(gap_ms)
            return dict(self._balance or {}) if resync.balances else None

        stream: ResilientStream[dict[str, Balance]] = self._stream(
            BALANCE_STREAM, lambda: CcxtConnection(self._stream_client(), call, latest), prepare=subscribe_user_data,
            on_gap=on_gap,
        )
        return await stream.next()

    async def resync_user_data(self, gap_ms: int = 0) -> UserResync:
        """Re-check open orders and balances over REST; what differs from what we knew.

        Orders we knew as open that are no longer open are fetched one by one, so a limit
        that filled while the stream was down comes back as FILLED, not just "gone". One the
        exchange does not know at all ("Order does not exist", -2013: a restarted simulated
        exchange, an order Binance purged) is forgotten and left out: raised, it failed the
        whole re-check, and so the stream's recovery, after every gap, and the other orders'
        changes were lost with it. The broker's reconcile settles it (`ExchangeBroker`, `VANISHED`).
        """
        known = self.known.snapshot()
        before_balance = self._balance
        open_now = await self.fetch_open_orders()
        changed = changed_orders(known, open_now)
        for old in vanished(known, open_now):
            try:
                fresh = await self.fetch_order(old.symbol, old.client_order_id)
            except OrderError as exc:
                if not is_order_unknown(exc):
                    raise
                self.known.forget(old.client_order_id)
                continue
            if fresh != old:
                changed.append(fresh)
        balance_changes = changed_balances(before_balance, await self.fetch_balance())
        resync = UserResync(
            ts_ms=self._clock.now_ms(), gap_ms=gap_ms, orders=tuple(changed), balances=balance_changes
        )
        self._emit(
            GatewayNotice(
                NoticeKind.RESYNC, "user", resync.ts_ms,
                detail=f"{len(changed)} order(s), {len(balance_changes)} balance(s) changed during {gap_ms} ms",
                resync=resync,
            )
        )
        return resync

    # ---- health & lifecycle ----------------------------------------------------------------

    def health(self) -> dict[str, StreamHealth]:
        out = {REST_STREAM: self._guard.health.snapshot(self._rate)}
        for key, stream in self._streams.items():
            out[key] = stream.health.snapshot(self._rate)
        return out

    @property
    def markets(self) -> dict[str, Market]:
        """The last good market info (kept when a refresh fails)."""
        return self._markets

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        await asyncio.gather(*(stream.close() for stream in self._streams.values()), self._rest_client.close())


def _shifted(rows: list[list[Any]], shift_ms: int) -> list[list[Any]]:
    """OHLCV rows with their open times moved `shift_ms` later (`engine.market.exchange_clock`)."""
    return [[int(r[0]) + shift_ms, *r[1:]] for r in rows] if shift_ms else rows
