"""The WebSocket API (`/ws-api/v3`), as far as ccxt.pro uses it for spot: the user-data
stream, subscribed with `userDataStream.subscribe.signature`.

Replies are `{"id", "status", "result" | "error"}`; user events then arrive wrapped as
`{"subscriptionId": N, "event": {...}}` (executionReport, outboundAccountPosition).
Any API key is accepted; the signature is required but not verified (the sim has no
secrets), and the timestamp must be inside recvWindow as on Binance.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from engine.sim.matching import BinanceError, check_request_time, missing_param
from engine.sim.server.faults import FaultController
from engine.sim.server.peer import WsPeer


@dataclass(eq=False, slots=True)
class ApiSession:
    peer: WsPeer
    subscriptions: dict[int, str] = field(default_factory=dict)  # subscriptionId -> api key
    ids: itertools.count[int] = field(default_factory=itertools.count)


class UserDataApi:
    """WS-API connections and the accounts their user-data subscriptions follow."""

    def __init__(self, faults: FaultController, wall_ms: Callable[[], int], sim_ms: Callable[[], int]) -> None:
        self._faults = faults
        self._wall_ms = wall_ms
        self._sim_ms = sim_ms
        self._sessions: set[ApiSession] = set()

    @property
    def connections(self) -> int:
        return len(self._sessions)

    @property
    def subscriptions(self) -> int:
        return sum(len(s.subscriptions) for s in self._sessions)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        session = ApiSession(WsPeer(request, ws, self._faults))
        self._sessions.add(session)
        try:
            while True:
                msg = await ws.receive()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    session.peer.send(orjson.dumps(self._on_request(session, msg.data)))
                elif msg.type is WSMsgType.PING:
                    await session.peer.answer_ping(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            self._sessions.discard(session)
            await session.peer.stop_writer()
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()
        return ws

    def _on_request(self, session: ApiSession, text: str | bytes) -> dict[str, Any]:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            req = None
        if not isinstance(req, dict):
            return _error(None, BinanceError(-1100, "Malformed request: expected a JSON object."))
        req_id = req.get("id")
        params = req.get("params") or {}
        method = req.get("method")
        try:
            if not isinstance(params, dict):
                raise BinanceError(-1100, "Malformed request: 'params' must be an object.")
            if method == "userDataStream.subscribe.signature":
                api_key = self._authenticate(params)
                sub_id = next(session.ids)
                session.subscriptions[sub_id] = api_key
                return {"id": req_id, "status": 200, "result": {"subscriptionId": sub_id}}
            if method == "userDataStream.unsubscribe":
                sub = params.get("subscriptionId")
                if sub is None:
                    session.subscriptions.clear()
                elif session.subscriptions.pop(int(sub), None) is None:
                    raise BinanceError(-2013, f"Subscription {sub} does not exist.")
                return {"id": req_id, "status": 200, "result": {}}
            if method == "ping":
                return {"id": req_id, "status": 200, "result": {}}
            if method == "time":
                server_ms = self._sim_ms()  # the skew included (`SimClock`)
                return {"id": req_id, "status": 200, "result": {"serverTime": server_ms}}
            raise BinanceError(-1020, f"This operation is not supported: unknown method {method!r}.")
        except BinanceError as exc:
            return _error(req_id, exc)
        except (TypeError, ValueError) as exc:
            return _error(req_id, BinanceError(-1100, f"Malformed parameter: {exc}"))

    def _authenticate(self, params: dict[str, Any]) -> str:
        for name in ("apiKey", "timestamp", "signature"):
            if not params.get(name):
                raise missing_param(name)
        now_ms = self._wall_ms() + self._faults.plan.clock_skew_ms
        check_request_time(int(params["timestamp"]), int(params.get("recvWindow", 5000)), now_ms)
        return str(params["apiKey"])

    def publish(self, api_key: str, event: dict[str, Any]) -> None:
        """Queue one user event to every subscription following `api_key`."""
        body: bytes | None = None
        for session in self._sessions:
            for sub_id, key in session.subscriptions.items():
                if key == api_key:
                    if body is None:
                        body = orjson.dumps(event)
                    session.peer.send(b'{"subscriptionId":%d,"event":%b}' % (sub_id, body))

    async def drop_all(self, *, abrupt: bool) -> int:
        sessions = list(self._sessions)
        for session in sessions:
            await session.peer.close(abrupt=abrupt)
        return len(sessions)


def _error(req_id: Any, exc: BinanceError) -> dict[str, Any]:
    return {"id": req_id, "status": exc.http_status, "error": {"code": exc.code, "msg": exc.msg}}
