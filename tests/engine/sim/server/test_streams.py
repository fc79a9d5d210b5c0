"""The WebSocket wire protocol, seen by a raw client: routes, commands, message shapes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from engine.sim.server import SimExchangeServer

TICKER_FIELDS = set(["e", "E", "s", "p", "P", "w", "x", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v", "q", "O", "C", "F", "L", "n"])
MINI_FIELDS = set(["e", "E", "s", "c", "o", "h", "l", "v", "q"])
KLINE_FIELDS = set(["t", "T", "s", "i", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"])


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def ws_url(sim: SimExchangeServer, path: str) -> str:
    return sim.base_url.replace("http://", "ws://") + path


async def recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return orjson.loads(msg.data)


async def command(ws: aiohttp.ClientWebSocketResponse, method: str, params: Any, req_id: int) -> Any:
    await ws.send_str(orjson.dumps({"method": method, "params": params, "id": req_id}).decode())
    while True:
        data = await recv(ws)
        if isinstance(data, dict) and data.get("id") == req_id:
            return data


async def test_subscribe_is_acked_and_ticker_arr_has_the_binance_fields(
    sim: SimExchangeServer, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(ws_url(sim, "/ws/0")) as ws:
        assert ws.compress == 0  # no permessage-deflate, as on Binance
        assert await command(ws, "SUBSCRIBE", ["!ticker@arr"], 7) == {"result": None, "id": 7}
        arr = await recv(ws)
        assert {t["s"] for t in arr} == {"BTCUSDT", "ETHUSDT", "DOGEUSDT"}
        assert all(set(t) == TICKER_FIELDS and t["e"] == "24hrTicker" for t in arr)
        assert await command(ws, "LIST_SUBSCRIPTIONS", None, 8) == {"result": ["!ticker@arr"], "id": 8}
        assert await command(ws, "UNSUBSCRIBE", ["!ticker@arr"], 9) == {"result": None, "id": 9}
        assert await command(ws, "LIST_SUBSCRIPTIONS", None, 10) == {"result": [], "id": 10}


async def test_combined_stream_wraps_messages(sim: SimExchangeServer, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(ws_url(sim, "/stream/3")) as ws:
        await command(ws, "SUBSCRIBE", ["ethusdt@kline_1m", "!miniTicker@arr"], 1)
        seen: dict[str, Any] = {}
        while len(seen) < 2:
            msg = await recv(ws)
            seen[msg["stream"]] = msg["data"]
        kline = seen["ethusdt@kline_1m"]
        assert (kline["e"], kline["s"]) == ("kline", "ETHUSDT")
        assert set(kline["k"]) >= KLINE_FIELDS  # Binance also sends f and L
        assert all(set(t) == MINI_FIELDS for t in seen["!miniTicker@arr"])


@pytest.mark.parametrize(
    "path",
    [pytest.param("/ws/dogeusdt@miniTicker", id="raw-path"), pytest.param("/stream?streams=dogeusdt@miniTicker", id="query")],
)
async def test_streams_named_in_the_url(sim: SimExchangeServer, session: aiohttp.ClientSession, path: str) -> None:
    async with session.ws_connect(ws_url(sim, path)) as ws:
        msg = await recv(ws)
        data = msg["data"] if "stream" in msg else msg
        assert (data["e"], data["s"]) == ("24hrMiniTicker", "DOGEUSDT")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param(["nopeusdt@ticker"], "unknown stream", id="unknown-symbol"),
        pytest.param(["btcusdt@depth"], "unknown stream", id="unknown-channel"),
        pytest.param(["btcusdt@kline_7m"], "unknown stream", id="bad-interval"),
        pytest.param("btcusdt@ticker", "list of stream names", id="not-a-list"),
    ],
)
async def test_bad_subscriptions_get_binance_error_replies(
    sim: SimExchangeServer, session: aiohttp.ClientSession, params: Any, fragment: str
) -> None:
    async with session.ws_connect(ws_url(sim, "/ws")) as ws:
        reply = await command(ws, "SUBSCRIBE", params, 5)
        assert reply["error"]["code"] == 2 and fragment in reply["error"]["msg"]


async def test_server_answers_pings(sim: SimExchangeServer, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(ws_url(sim, "/ws"), autoping=False) as ws:
        await ws.ping(b"hi")
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"hi")


# ---- WS-API -----------------------------------------------------------------------------


def _auth(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"apiKey": "k", "timestamp": int(time.time() * 1000), "recvWindow": 5000, "signature": "x"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        pytest.param("userDataStream.subscribe.signature", _auth(timestamp=1), -1021, id="stale-timestamp"),
        pytest.param("userDataStream.subscribe.signature", _auth(signature=None), -1102, id="no-signature"),
        pytest.param("order.place", {}, -1020, id="unsupported-method"),
    ],
)
async def test_ws_api_refusals(
    sim: SimExchangeServer, session: aiohttp.ClientSession, method: str, params: Any, code: int
) -> None:
    async with session.ws_connect(ws_url(sim, "/ws-api/v3")) as ws:
        await ws.send_str(orjson.dumps({"id": "a", "method": method, "params": params}).decode())
        reply = await recv(ws)
        assert (reply["id"], reply["status"], reply["error"]["code"]) == ("a", 400, code)


async def test_ws_api_user_events_follow_the_subscribed_key(
    sim: SimExchangeServer, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(ws_url(sim, "/ws-api/v3")) as ws:
        await ws.send_str(orjson.dumps({"id": "s", "method": "userDataStream.subscribe.signature", "params": _auth()}).decode())
        assert await recv(ws) == {"id": "s", "status": 200, "result": {"subscriptionId": 0}}
        ts = int(time.time() * 1000)
        form = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01", "timestamp": str(ts), "signature": "x"}
        async with session.post(sim.base_url + "/api/v3/order", data=form, headers={"X-MBX-APIKEY": "k"}) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(sim.base_url + "/api/v3/order", data=form, headers={"X-MBX-APIKEY": "other"}) as resp:
            assert resp.status == 200
        events = [await recv(ws) for _ in range(3)]
    assert {e["subscriptionId"] for e in events} == {0}
    kinds = [(e["event"]["e"], e["event"].get("x")) for e in events]
    assert kinds == [("executionReport", "NEW"), ("executionReport", "TRADE"), ("outboundAccountPosition", None)]
    assert events[1]["event"]["X"] == "FILLED" and events[1]["event"]["N"] == "ETH"
    assert {b["a"] for b in events[2]["event"]["B"]} == {"ETH", "USDT"}


async def test_a_cancel_is_reported_under_its_own_id_with_the_orders_beside_it(
    sim: SimExchangeServer, session: aiohttp.ClientSession
) -> None:
    """As Binance does: the DELETE reply's `clientOrderId` and the executionReport's `c` are the
    cancel's id (`newClientOrderId`, else a made-up one); the order's is `origClientOrderId` / `C`."""
    headers = {"X-MBX-APIKEY": "k"}

    def stamped(**params: str) -> dict[str, str]:
        return {**params, "timestamp": str(int(time.time() * 1000)), "signature": "x"}

    async with session.ws_connect(ws_url(sim, "/ws-api/v3")) as ws:
        await ws.send_str(orjson.dumps({"id": "s", "method": "userDataStream.subscribe.signature", "params": _auth()}).decode())
        assert (await recv(ws))["id"] == "s"
        replies = []
        for cid, cancel_params in (("mine-1", {}), ("mine-2", {"newClientOrderId": "x-1"})):
            form = stamped(
                symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="1000", newClientOrderId=cid
            )
            async with session.post(sim.base_url + "/api/v3/order", data=form, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            query = stamped(symbol="ETHUSDT", origClientOrderId=cid, **cancel_params)
            async with session.delete(sim.base_url + "/api/v3/order", params=query, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                replies.append(await resp.json())
        cancels = []
        while len(cancels) < 2:
            event = (await recv(ws))["event"]
            if event["e"] == "executionReport" and event["x"] == "CANCELED":
                cancels.append(event)
    made_up = replies[0]["clientOrderId"]
    assert made_up not in ("", "mine-1") and replies[0]["origClientOrderId"] == "mine-1"
    assert (replies[1]["clientOrderId"], replies[1]["origClientOrderId"]) == ("x-1", "mine-2")
    assert [(e["c"], e["C"], e["X"]) for e in cancels] == [(made_up, "mine-1", "CANCELED"), ("x-1", "mine-2", "CANCELED")]
