"""The simulated Binance spot exchange as one aiohttp application on 127.0.0.1.

    SimExchangeServer(source, speed=..., faults=FaultPlan(...))
        await server.start()          # binds, starts the market loop
        server.base_url               # http://127.0.0.1:PORT
        server.faults                 # FaultController: change faults at runtime
        await server.drop_websockets(abrupt=False)
        await server.stop()

Paths mirror Binance so a client changes only host and port: REST under `/api/v3/`,
market streams on `/ws[/n]` and `/stream[/n]`, the WS-API on `/ws-api/v3`. Test and
operator controls live under `/_sim/` (faults, WebSocket drops, ground truth, stats) and
are never subject to faults themselves.

One background task runs the market: every `tick_s` it syncs the venue (the market
advances to sim-now, resting orders fill, user events go out), places the late orders that
are due (a late-order fault: held back when they arrived, see `FaultPlan.late_orders`), and
every `push_interval_s` it pushes the market streams from one ticker snapshot. A late order
is placed by this task, not by its request's handler, so a client that gives up (aiohttp
may cancel the handler of a closed connection) cannot stop it from executing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from engine.sim.matching import BalanceEvent, BinanceError, ExecutionEvent, UserEvent
from engine.sim.server import codec
from engine.sim.server.faults import FaultController, FaultPlan, RestFault, RestFaultKind
from engine.sim.server.rest import Placement, RestApi, json_response
from engine.sim.server.streams import MarketStreams
from engine.sim.server.venue import MarketSource, SimClock, SimVenue, wall_ms
from engine.sim.server.wsapi import UserDataApi

log = logging.getLogger(__name__)

RATE_LIMIT_MSG = (
    "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
SERVER_ERROR_BODY = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
STATUS_TEXT = {500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}
BACKEND_TIMEOUT_MSG = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
ORDER_PATH = "/api/v3/order"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimExchangeServer:
    def __init__(
        self,
        source: MarketSource,
        *,
        speed: float = 1.0,
        start_balance: Decimal = Decimal(10_000),
        fee_rate: Decimal = Decimal("0.001"),
        host: str = "127.0.0.1",
        port: int = 0,
        push_interval_s: float = 1.0,
        tick_s: float = 0.1,
        faults: FaultPlan | None = None,
        seed: int = 0,
    ) -> None:
        if push_interval_s <= 0 or tick_s <= 0:
            raise ValueError("push_interval_s and tick_s must be positive seconds")
        self.faults = FaultController(faults, seed=seed)
        clock = SimClock(source.now_ms, speed, skew_ms=lambda: self.faults.plan.clock_skew_ms)  # one exchange clock
        self.venue = SimVenue(source, clock, start_balance=start_balance, fee_rate=fee_rate)
        self.streams = MarketStreams(self.faults, self.venue.resolve_lower)
        self.user_api = UserDataApi(self.faults, wall_ms, self.venue.clock.now_ms)
        self.rest = RestApi(self.venue, self.publish_user_events, self._hold_back, faults=self.faults)
        self._late: list[tuple[int, Placement]] = []  # (sim ms when due, order), by arrival
        self.late_refused = 0
        self._host = host
        self._port = port
        self._push_interval_s = push_interval_s
        self._tick_s = tick_s
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.market_errors = 0
        self.pushes = 0
        self.app = self._build_app()

    # ---- lifecycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the sim exchange is not started; await start() first")
        return int(self._runner.addresses[0][1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._tasks = [
            asyncio.create_task(self._market_loop(), name="sim-market"),
            asyncio.create_task(self._drop_loop(), name="sim-ws-drops"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.drop_websockets(abrupt=False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def drop_websockets(self, *, abrupt: bool = False) -> int:
        """Close every WebSocket now (1001, or an abrupt abort); returns how many."""
        return await self.streams.drop_all(abrupt=abrupt) + await self.user_api.drop_all(abrupt=abrupt)

    # ---- the market loop -----------------------------------------------------------

    def publish_user_events(self, events: list[tuple[str, UserEvent]]) -> None:
        for api_key, ev in events:
            if isinstance(ev, ExecutionEvent):
                self.user_api.publish(api_key, codec.execution_report(ev))
            elif isinstance(ev, BalanceEvent):
                self.user_api.publish(api_key, codec.account_position(ev))

    def _hold_back(self, placement: Placement) -> Awaitable[web.Response] | None:
        """Keep an order that just arrived for later when the plan says so; the reply that
        stands in for it then (see `FaultPlan.late_orders`)."""
        late = self.faults.next_late_order()
        if late is None:
            return None
        delay_s, reply = late
        self._late.append((self.venue.clock.now_ms() + int(delay_s * 1000), placement))
        return _lost_reply(reply)

    def place_late_orders(self) -> None:
        """Place the held-back orders that are due, in arrival order. A refusal then (funds
        gone meanwhile, a duplicate id) is the order's end, as on Binance: it never existed."""
        now = self.venue.clock.now_ms()
        due = [p for at, p in self._late if at <= now]
        self._late = [(at, p) for at, p in self._late if at > now]
        for placement in due:
            try:
                placement.place()
            except BinanceError as exc:
                self.late_refused += 1
                log.info("late order %s refused: %s", placement.request.client_order_id, exc.msg)

    def push_now(self) -> None:
        """One sync and one push of every subscribed market stream."""
        self.place_late_orders()
        self.publish_user_events(self.venue.sync())
        self.venue.refresh_markets()
        self.streams.publish(self.venue.ticker_rows(), self.venue.stream_klines)
        self.pushes += 1

    async def _market_loop(self) -> None:
        next_push = time.monotonic()
        while True:
            now = time.monotonic()
            try:
                if now >= next_push:
                    self.push_now()
                    next_push = max(next_push + self._push_interval_s, now)
                else:
                    self.place_late_orders()
                    self.publish_user_events(self.venue.sync())
            except Exception:
                # A generator bug must not take the exchange down with it; it is logged and
                # counted (`/_sim/stats`), and the next tick tries again.
                self.market_errors += 1
                log.exception("sim market step failed")
            await asyncio.sleep(max(0.0, min(self._tick_s, next_push - time.monotonic())))

    async def _drop_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            every = self.faults.plan.drop_ws_every_s
            now = time.monotonic()
            if every is None:
                last = now
            elif now - last >= every:
                last = now
                await self.drop_websockets(abrupt=self.faults.plan.drop_ws_abrupt)

    # ---- HTTP plumbing -------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._rest_middleware])
        app.add_routes(self.rest.routes())
        for path in ("/ws", "/ws/{tail:.*}", "/stream", "/stream/{tail:.*}"):
            app.router.add_get(path, self.streams.handle)
        app.router.add_get("/ws-api/v3", self.user_api.handle)
        app.add_routes(
            [
                web.get("/_sim/faults", self._get_faults),
                web.post("/_sim/faults", self._set_faults),
                web.post("/_sim/faults/reset", self._reset_faults),
                web.post("/_sim/drop-ws", self._drop_ws),
                web.get("/_sim/ground_truth", self._ground_truth),
                web.get("/_sim/stats", self._stats),
            ]
        )
        return app

    @web.middleware
    async def _rest_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        fault = self.faults.next_rest_fault()
        latency = self.faults.plan.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000.0)
        if fault is not None:
            if fault.kind is RestFaultKind.HANG:
                await asyncio.sleep(fault.hang_s)
            else:
                return _fault_response(fault)
        try:
            response = await handler(request)
        except BinanceError as exc:
            return json_response({"code": exc.code, "msg": exc.msg}, status=exc.http_status)
        if request.method == "POST" and request.path == ORDER_PATH and response.status == 200:
            return await self._maybe_lose_reply(response)  # a 200 is an order placed; not one held back
        return response

    async def _maybe_lose_reply(self, response: web.StreamResponse) -> web.StreamResponse:
        """The reply of an order just placed, or what replaces it when the plan loses it: the
        order stands on the exchange either way, and the client cannot tell."""
        lost = self.faults.next_lost_reply()
        if lost is None:
            return response
        if lost.kind is RestFaultKind.HANG:
            await asyncio.sleep(lost.hang_s)
            return response
        return _fault_response(lost)

    async def _get_faults(self, request: web.Request) -> web.Response:
        return json_response(self.faults.snapshot())

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            changes = None
        if not isinstance(changes, dict):
            return json_response({"error": "send a JSON object of FaultPlan fields (and/or ban_s)"}, 400)
        try:
            self.faults.update(changes)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(self.faults.snapshot())

    async def _reset_faults(self, request: web.Request) -> web.Response:
        self.faults.reset()
        return json_response(self.faults.snapshot())

    async def _drop_ws(self, request: web.Request) -> web.Response:
        abrupt = request.query.get("abrupt", "0").lower() in ("1", "true", "yes")
        return json_response({"dropped": await self.drop_websockets(abrupt=abrupt)})

    async def _ground_truth(self, request: web.Request) -> web.Response:
        return json_response(self.venue.ground_truth())

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats())

    def stats(self) -> dict[str, Any]:
        return {
            "sim_now_ms": self.venue.clock.now_ms(),
            "market_now_ms": self.venue.now_ms(),
            "speed": self.venue.clock.speed,
            "symbols": len(self.venue.markets()),
            "pushes": self.pushes,
            "stream_connections": self.streams.connections,
            "stream_messages": self.streams.messages_pushed,
            "stream_messages_dropped": self.streams.messages_dropped,
            "ws_api_connections": self.user_api.connections,
            "market_errors": self.market_errors,
            "late_orders_waiting": len(self._late),
            "late_orders_refused": self.late_refused,
            "faults": self.faults.snapshot(),
        }


async def _lost_reply(fault: RestFault) -> web.Response:
    """What a held-back order's client gets: the fault at once, or after a hang (the client has
    normally given up by then) the -1007 of a backend that never answered."""
    if fault.kind is RestFaultKind.HANG:
        await asyncio.sleep(fault.hang_s)
        return _fault_response(RestFault(RestFaultKind.LOST_REPLY, 503))
    return _fault_response(fault)


def _fault_response(fault: RestFault) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s else {}
    if fault.kind is RestFaultKind.BANNED:
        msg = (
            f"Way too much request weight used; IP banned until {fault.banned_until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
        return web.Response(
            body=orjson.dumps({"code": -1003, "msg": msg}), status=418, headers=headers, content_type="application/json"
        )
    if fault.kind is RestFaultKind.RATE_LIMITED:
        return web.Response(
            body=orjson.dumps({"code": -1003, "msg": RATE_LIMIT_MSG}),
            status=429,
            headers=headers,
            content_type="application/json",
        )
    if fault.kind is RestFaultKind.LOST_REPLY:
        return web.Response(
            body=orjson.dumps({"code": -1007, "msg": BACKEND_TIMEOUT_MSG}), status=503, content_type="application/json"
        )
    text = STATUS_TEXT.get(fault.status, f"{fault.status} Server Error")
    return web.Response(text=SERVER_ERROR_BODY.format(text), status=fault.status, content_type="text/html")
