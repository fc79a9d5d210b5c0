"""REST endpoints under `/api/v3/`, the subset ccxt's binance spot client calls.

Signed endpoints need the `X-MBX-APIKEY` header (any key is an account), a `timestamp`
inside `recvWindow` (judged on the wall clock shifted by the `clock_skew_ms` fault, which
shifts the sim's clock alike: `/api/v3/time` and every time the exchange stamps) and a
`signature`; with the `key_cannot_trade` fault, orders and cancels are refused (-2015) as for
a key without trading permission (present, not verified: the sim holds no secrets). A cancel
is answered as Binance answers it, under its own client id (`newClientOrderId`, else a made-up
one) with the order's in `origClientOrderId`.
POST parameters arrive form-encoded in the body, GET and DELETE ones in the query, as
ccxt sends them. Refusals are `BinanceError`s, turned into Binance's
`{"code": ..., "msg": ...}` bodies by the server's error middleware.

A new order is checked when it arrives and placed by a `Placement`; the server's `hold_back`
hook may keep that for later (a late-order fault) and answer in its stead.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from engine.domain.candle import TIMEFRAME_MS
from engine.sim.matching import (
    BinanceError,
    OrderRequest,
    UserEvent,
    check_request_time,
    missing_param,
)
from engine.sim.server import codec
from engine.sim.server.faults import FaultController
from engine.sim.server.venue import SimVenue, wall_ms

Params = Mapping[str, str]
_NUMBER = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
RESP_TYPES = ("ACK", "RESULT", "FULL")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _decimal(params: Params, name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _NUMBER.match(raw):
        raise BinanceError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'."
        )
    return Decimal(raw)  # the pattern admits only plain decimals


def _int(params: Params, name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.") from None


def _required(params: Params, name: str) -> str:
    value = params.get(name)
    if not value:
        raise missing_param(name)
    return value


@dataclass(frozen=True, slots=True)
class Placement:
    """A checked new order, ready to meet the book: `place()` puts it on the exchange now and
    returns its reply (raising `BinanceError` if the matching engine refuses it)."""

    request: OrderRequest
    place: Callable[[], web.Response]


# Given an order that arrived: None to place it now, else the reply that stands in for it
# (the hook has kept the placement for later).
HoldBack = Callable[[Placement], Awaitable[web.Response] | None]


class RestApi:
    """Handlers over one venue; `publish` receives the user events each call produces."""

    def __init__(
        self,
        venue: SimVenue,
        publish: Callable[[list[tuple[str, UserEvent]]], None],
        hold_back: HoldBack = lambda _: None,
        faults: FaultController | None = None,
    ) -> None:
        self._venue = venue
        self._publish = publish
        self._hold_back = hold_back
        self._faults = faults or FaultController()

    def _skew_ms(self) -> int:
        """How far the exchange's clock runs ahead of the client's (the `clock_skew_ms` fault)."""
        return self._faults.plan.clock_skew_ms

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/ping", self.ping),
            web.get("/api/v3/time", self.time),
            web.get("/api/v3/exchangeInfo", self.exchange_info),
            web.get("/api/v3/ticker/24hr", self.ticker_24hr),
            web.get("/api/v3/klines", self.klines),
            web.post("/api/v3/order", self.new_order),
            web.get("/api/v3/order", self.query_order),
            web.delete("/api/v3/order", self.cancel_order),
            web.get("/api/v3/openOrders", self.open_orders),
            web.get("/api/v3/account", self.account),
            web.get("/api/v3/myTrades", self.my_trades),
        ]

    # ---- public --------------------------------------------------------------------

    async def ping(self, request: web.Request) -> web.Response:
        return json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return json_response({"serverTime": self._venue.clock.now_ms()})  # the skew included (`SimClock`)

    async def exchange_info(self, request: web.Request) -> web.Response:
        # A market the source listed since the last ticker batch is listed here at once, as
        # Binance's exchangeInfo lists a new pair: picked up only with the next batch, a
        # client's load_markets right after a listing missed it, or not, by timing.
        self._venue.refresh_markets()
        ids = self._symbols_param(request.query)
        markets = [self._venue.market(i) for i in ids] if ids is not None else self._venue.markets()
        return json_response(codec.exchange_info(markets, self._venue.clock.now_ms()))

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        rows = self._venue.ticker_rows()
        ids = self._symbols_param(request.query)
        if ids is None:
            return json_response([rows.rest_ticker(i) for i in range(len(rows.ids))])
        picked = []
        for market_id in ids:
            i = rows.index.get(market_id)
            if i is None:
                raise BinanceError(-1121, "Invalid symbol.")
            picked.append(rows.rest_ticker(i))
        single = "symbol" in request.query
        return json_response(picked[0] if single else picked)

    async def klines(self, request: web.Request) -> web.Response:
        q = request.query
        market_id = _required(q, "symbol")
        interval = _required(q, "interval")
        if interval not in TIMEFRAME_MS:
            raise BinanceError(-1120, "Invalid interval.")
        limit = _int(q, "limit") or 500
        if not 1 <= limit <= 1000:
            raise BinanceError(-1100, "Illegal characters found in parameter 'limit'; legal range is '1-1000'.")
        candles = self._venue.klines(
            market_id, interval, start_ms=_int(q, "startTime"), end_ms=_int(q, "endTime"), limit=limit
        )
        return json_response([codec.kline_row(c) for c in candles])

    def _symbols_param(self, q: Params) -> list[str] | None:
        if "symbol" in q and "symbols" in q:
            raise BinanceError(-1128, "Combination of optional parameters invalid.")
        if "symbol" in q:
            market_id = q["symbol"]
            self._venue.market(market_id)
            return [market_id]
        if "symbols" in q:
            try:
                ids = orjson.loads(q["symbols"])
            except orjson.JSONDecodeError:
                ids = None
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'; expected a JSON array of symbols.")
            for market_id in ids:
                self._venue.market(market_id)
            return ids
        return None

    # ---- signed --------------------------------------------------------------------

    async def _signed(self, request: web.Request) -> tuple[str, Params]:
        api_key = request.headers.get("X-MBX-APIKEY", "")
        if not api_key:
            raise BinanceError(-2014, "API-key format invalid.", http_status=401)
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        timestamp = _int(params, "timestamp")
        if timestamp is None:
            raise missing_param("timestamp")
        if not params.get("signature"):
            raise missing_param("signature")
        check_request_time(timestamp, _int(params, "recvWindow") or 5000, wall_ms() + self._skew_ms())
        return api_key, params

    def _sync(self) -> None:
        self._publish(self._venue.sync())

    def _check_can_trade(self) -> None:
        """The `key_cannot_trade` fault: Binance refuses a key without trading permission (or
        from an IP not whitelisted for it) on every trading call, placing and cancelling alike."""
        if self._faults.plan.key_cannot_trade:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", http_status=401)

    async def new_order(self, request: web.Request) -> web.Response:
        api_key, p = await self._signed(request)
        self._check_can_trade()
        market_id = _required(p, "symbol")
        market = self._venue.market(market_id)
        resp_type = p.get("newOrderRespType", "FULL").upper()
        if resp_type not in RESP_TYPES:
            raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'; legal range is 'ACK, RESULT, FULL'.")
        req = OrderRequest(
            symbol=market.market_id,
            side=p.get("side"),
            type=p.get("type"),
            quantity=_decimal(p, "quantity"),
            quote_order_qty=_decimal(p, "quoteOrderQty"),
            price=_decimal(p, "price"),
            time_in_force=p.get("timeInForce"),
            client_order_id=p.get("newClientOrderId") or None,
        )
        placement = Placement(req, lambda: self._place(api_key, req, resp_type))
        held = self._hold_back(placement)
        if held is not None:
            return await held
        return placement.place()

    def _place(self, api_key: str, req: OrderRequest, resp_type: str) -> web.Response:
        self._sync()
        venue = self._venue
        avg = venue.avg_price(req.symbol) if (req.type or "").upper() == "LIMIT" else None
        result = venue.engine.place_order(api_key, req, venue.book(req.symbol), venue.now_ms(), avg)
        self._publish(venue.engine.drain_events())
        return json_response(codec.new_order_response(result.order, result.fills, resp_type))

    async def query_order(self, request: web.Request) -> web.Response:
        api_key, p = await self._signed(request)
        market_id = _required(p, "symbol")
        self._sync()
        order = self._venue.engine.get_order(
            api_key, market_id, order_id=_int(p, "orderId"), client_order_id=p.get("origClientOrderId") or None
        )
        return json_response(codec.order_query(order))

    async def cancel_order(self, request: web.Request) -> web.Response:
        api_key, p = await self._signed(request)
        self._check_can_trade()
        market_id = _required(p, "symbol")
        self._sync()
        venue = self._venue
        order = venue.engine.cancel_order(
            api_key,
            market_id,
            order_id=_int(p, "orderId"),
            client_order_id=p.get("origClientOrderId") or None,
            now_ms=venue.now_ms(),
            cancel_client_order_id=p.get("newClientOrderId") or None,
        )
        self._publish(venue.engine.drain_events())
        return json_response(codec.cancel_response(order))

    async def open_orders(self, request: web.Request) -> web.Response:
        api_key, p = await self._signed(request)
        self._sync()
        orders = self._venue.engine.open_orders(api_key, p.get("symbol") or None)
        return json_response([codec.order_query(o) for o in orders])

    async def account(self, request: web.Request) -> web.Response:
        api_key, _ = await self._signed(request)
        self._sync()
        acct = self._venue.engine.account(api_key)
        return json_response(codec.account_json(acct, self._venue.fee_rate))

    async def my_trades(self, request: web.Request) -> web.Response:
        api_key, p = await self._signed(request)
        market_id = _required(p, "symbol")
        limit = _int(p, "limit") or 500
        if not 1 <= limit <= 1000:
            raise BinanceError(-1100, "Illegal characters found in parameter 'limit'; legal range is '1-1000'.")
        self._sync()
        trades = self._venue.engine.my_trades(
            api_key,
            market_id,
            start_ms=_int(p, "startTime"),
            end_ms=_int(p, "endTime"),
            from_id=_int(p, "fromId"),
            order_id=_int(p, "orderId"),
            limit=limit,
        )
        return json_response([codec.trade_json(t) for t in trades])
