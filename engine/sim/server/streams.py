"""Market WebSocket streams: `/ws`, `/ws/{n}`, `/stream`, `/stream/{n}`.

Clients subscribe with `{"method":"SUBSCRIBE","params":[...],"id":N}` (ccxt sends nothing
else) or by naming streams in the path (`/ws/btcusdt@ticker`) or query
(`/stream?streams=a/b`), as Binance allows. `/stream*` connections get every message
wrapped as `{"stream": name, "data": ...}`.

Each push renders a stream's payload once and hands the same bytes to every subscriber.
"""

from __future__ import annotations

import contextlib
import enum
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from engine.domain import Candle
from engine.domain.candle import TIMEFRAME_MS
from engine.sim.server.codec import TickerRows, ws_kline
from engine.sim.server.faults import FaultController
from engine.sim.server.peer import WsPeer

KlineSource = Callable[[str, str, int | None], list[Candle]]  # (market_id, timeframe, since_ms)
MAX_STREAMS_PER_CONNECTION = 1024
TICKER_NAN_KEYS = ("b", "a", "h", "l")
MINI_NAN_KEYS = ("h", "l")


class StreamKind(enum.Enum):
    TICKER_ARR = "!ticker@arr"
    MINI_TICKER_ARR = "!miniTicker@arr"
    TICKER = "ticker"
    MINI_TICKER = "miniTicker"
    KLINE = "kline"


@dataclass(frozen=True, slots=True)
class StreamName:
    name: str
    kind: StreamKind
    market_id: str = ""
    timeframe: str = ""


def parse_stream(name: str, resolve: Callable[[str], str | None]) -> StreamName:
    """Validate a stream name; `resolve` maps a lower-case id (`btcusdt`) to `BTCUSDT`."""
    if name in (StreamKind.TICKER_ARR.value, StreamKind.MINI_TICKER_ARR.value):
        return StreamName(name, StreamKind(name))
    sym, sep, channel = name.partition("@")
    market_id = resolve(sym) if sep and sym == sym.lower() else None
    if market_id is None:
        raise ValueError(f"Invalid request: unknown stream '{name}'")
    if channel == "ticker":
        return StreamName(name, StreamKind.TICKER, market_id)
    if channel == "miniTicker":
        return StreamName(name, StreamKind.MINI_TICKER, market_id)
    if channel.startswith("kline_") and channel[6:] in TIMEFRAME_MS:
        return StreamName(name, StreamKind.KLINE, market_id, channel[6:])
    raise ValueError(f"Invalid request: unknown stream '{name}'")


@dataclass(eq=False, slots=True)
class StreamConnection:
    peer: WsPeer
    combined: bool
    streams: dict[str, StreamName] = field(default_factory=dict)


class MarketStreams:
    """All market-stream connections and what each is subscribed to."""

    def __init__(self, faults: FaultController, resolve: Callable[[str], str | None]) -> None:
        self._faults = faults
        self._resolve = resolve
        self._conns: set[StreamConnection] = set()
        self._kline_last_open: dict[str, int] = {}
        self._dropped_by_closed = 0
        self.messages_pushed = 0

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def messages_dropped(self) -> int:
        """Messages discarded because a client fell a full queue behind."""
        return self._dropped_by_closed + sum(c.peer.dropped for c in self._conns)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = StreamConnection(WsPeer(request, ws, self._faults), combined=request.path.startswith("/stream"))
        initial = self._initial_streams(request)
        try:
            for name in initial:
                conn.streams[name] = parse_stream(name, self._resolve)
        except ValueError as exc:
            await ws.close(code=1008, message=str(exc).encode()[:120])
            return ws
        self._conns.add(conn)
        try:
            while True:
                msg = await ws.receive()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_command(conn, msg.data)
                elif msg.type is WSMsgType.PING:
                    await conn.peer.answer_ping(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            self._conns.discard(conn)
            self._dropped_by_closed += conn.peer.dropped
            await conn.peer.stop_writer()
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()
        return ws

    @staticmethod
    def _initial_streams(request: web.Request) -> list[str]:
        tail = request.match_info.get("tail", "")
        names = [] if not tail or tail.isdigit() else tail.split("/")
        names += [s for s in request.query.get("streams", "").split("/") if s]
        return names

    def _on_command(self, conn: StreamConnection, text: str | bytes) -> None:
        try:
            cmd = orjson.loads(text)
        except orjson.JSONDecodeError:
            conn.peer.send(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON: expected a JSON object"}}))
            return
        if not isinstance(cmd, dict):
            conn.peer.send(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON: expected a JSON object"}}))
            return
        req_id = cmd.get("id")
        method, params = cmd.get("method"), cmd.get("params", [])
        reply: dict[str, Any]
        try:
            if method == "SUBSCRIBE" or method == "UNSUBSCRIBE":
                if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                    raise ValueError("Invalid request: 'params' must be a list of stream names")
                parsed = [parse_stream(p, self._resolve) for p in params]
                if method == "SUBSCRIBE":
                    if len(conn.streams) + len(parsed) > MAX_STREAMS_PER_CONNECTION:
                        raise ValueError(f"Invalid request: more than {MAX_STREAMS_PER_CONNECTION} streams")
                    conn.streams.update((s.name, s) for s in parsed)
                else:
                    for s in parsed:
                        conn.streams.pop(s.name, None)
                reply = {"result": None, "id": req_id}
            elif method == "LIST_SUBSCRIPTIONS":
                reply = {"result": sorted(conn.streams), "id": req_id}
            else:
                raise ValueError(f"Invalid request: unknown method {method!r}")
        except ValueError as exc:
            reply = {"error": {"code": 2, "msg": str(exc)}, "id": req_id}
        conn.peer.send(orjson.dumps(reply))

    def publish(self, rows: TickerRows, klines: KlineSource) -> None:
        """Render every subscribed stream once from this snapshot and queue it to subscribers."""
        subscribers: dict[str, list[StreamConnection]] = defaultdict(list)
        parsed: dict[str, StreamName] = {}
        for conn in self._conns:
            for name, stream in conn.streams.items():
                subscribers[name].append(conn)
                parsed[name] = stream
        for name in list(self._kline_last_open):
            if name not in parsed:
                del self._kline_last_open[name]
        for name, conns in subscribers.items():
            for payload in self._render(parsed[name], rows, klines):
                self._fan_out(name, payload, conns)

    def _fan_out(self, name: str, payload: bytes, conns: Iterable[StreamConnection]) -> None:
        wrapped: bytes | None = None
        for conn in conns:
            if conn.combined:
                if wrapped is None:
                    wrapped = b'{"stream":"' + name.encode() + b'","data":' + payload + b"}"
                conn.peer.send(wrapped)
            else:
                conn.peer.send(payload)
            self.messages_pushed += 1

    def _render(self, stream: StreamName, rows: TickerRows, klines: KlineSource) -> list[bytes]:
        kind = stream.kind
        faults = self._faults
        if kind is StreamKind.TICKER_ARR:
            arr = [rows.ws_ticker(i) for i in range(len(rows.ids))]
            faults.corrupt_tickers(arr, TICKER_NAN_KEYS)
            return [orjson.dumps(arr)]
        if kind is StreamKind.MINI_TICKER_ARR:
            arr = [rows.ws_mini_ticker(i) for i in range(len(rows.ids))]
            faults.corrupt_tickers(arr, MINI_NAN_KEYS)
            return [orjson.dumps(arr)]
        i = rows.index.get(stream.market_id)
        if i is None and kind is not StreamKind.KLINE:
            return []
        if kind is StreamKind.TICKER:
            assert i is not None
            one = [rows.ws_ticker(i)]
            faults.corrupt_tickers(one, TICKER_NAN_KEYS)
            return [orjson.dumps(one[0])]
        if kind is StreamKind.MINI_TICKER:
            assert i is not None
            one = [rows.ws_mini_ticker(i)]
            faults.corrupt_tickers(one, MINI_NAN_KEYS)
            return [orjson.dumps(one[0])]
        since = self._kline_last_open.get(stream.name)
        candles = klines(stream.market_id, stream.timeframe, since)
        if not candles:
            return []
        self._kline_last_open[stream.name] = candles[-1].open_ms
        return [orjson.dumps(ws_kline(c, stream.market_id, rows.event_ms)) for c in candles]

    async def drop_all(self, *, abrupt: bool) -> int:
        conns = list(self._conns)
        for conn in conns:
            await conn.peer.close(abrupt=abrupt)
        return len(conns)
