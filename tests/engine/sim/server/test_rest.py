"""REST details a raw client sees: response shapes and parameter checks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from engine.sim.server import SimExchangeServer
from tests.kit.sim_exchange import loopback_urls, make_binance_client

HEADERS = {"X-MBX-APIKEY": "raw-key"}


@pytest.fixture
async def http(sim: SimExchangeServer) -> AsyncIterator[Any]:
    async with aiohttp.ClientSession(base_url=sim.base_url) as s:
        yield s


def signed(**params: str) -> dict[str, str]:
    """Params as a signed request carries them, stamped now (call it inside the test)."""
    return {**params, "timestamp": str(int(time.time() * 1000)), "signature": "unchecked"}


ORDER = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}


async def test_exchange_info_is_spot_only_with_real_filter_shapes(http: Any) -> None:
    async with http.get("/api/v3/exchangeInfo") as resp:
        info = await resp.json()
    doge = next(s for s in info["symbols"] if s["symbol"] == "DOGEUSDT")
    assert {f["filterType"] for f in doge["filters"]} == {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL", "MIN_NOTIONAL"}
    assert not {"contractType", "underlying", "deliveryDate", "tradability"} & set(doge)
    assert (doge["status"], doge["baseAsset"], doge["quoteAsset"], doge["orderTypes"]) == (
        "TRADING",
        "DOGE",
        "USDT",
        ["LIMIT", "MARKET"],
    )


@pytest.mark.parametrize(
    ("query", "shape"),
    [
        pytest.param("symbol=BTCUSDT", dict, id="one"),
        pytest.param('symbols=["BTCUSDT","ETHUSDT"]', list, id="list"),
        pytest.param("", list, id="all"),
    ],
)
async def test_ticker_24hr_forms(http: Any, query: str, shape: type[Any]) -> None:
    async with http.get("/api/v3/ticker/24hr?" + query) as resp:
        body: Any = await resp.json()
    assert isinstance(body, shape)
    row = body if shape is dict else body[0]
    assert "bidQty" in row and "time" not in row  # how ccxt tells spot from contract


@pytest.mark.parametrize(
    ("resp_type", "keys"),
    [
        pytest.param("ACK", {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}, id="ack"),
        pytest.param("RESULT", None, id="result"),
        pytest.param("FULL", None, id="full"),
    ],
)
async def test_new_order_response_types(http: Any, resp_type: str, keys: set[str] | None) -> None:
    form = signed(symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.01", newOrderRespType=resp_type)
    async with http.post("/api/v3/order", data=form, headers=HEADERS) as resp:
        body = await resp.json()
    if keys is not None:
        assert set(body) == keys
    else:
        assert body["status"] == "FILLED"
        assert ("fills" in body) is (resp_type == "FULL")


@pytest.mark.parametrize(
    ("changes", "headers", "stamp", "code"),
    [
        pytest.param({"quantity": "1e-2"}, HEADERS, True, -1100, id="bad-number"),
        pytest.param({}, {}, True, -2014, id="no-api-key"),
        pytest.param({}, HEADERS, False, -1102, id="no-timestamp"),
        pytest.param({"symbol": "NOPEUSDT"}, HEADERS, True, -1121, id="symbol"),
        pytest.param({"side": "HOLD"}, HEADERS, True, -1117, id="side"),
        pytest.param({"quoteOrderQty": "5"}, HEADERS, True, -1106, id="both-qty"),
    ],
)
async def test_bad_order_requests(
    http: Any, changes: dict[str, str], headers: dict[str, str], stamp: bool, code: int
) -> None:
    form = {**ORDER, **changes}
    form = signed(**form) if stamp else {**form, "signature": "x"}
    async with http.post("/api/v3/order", data=form, headers=headers) as resp:
        assert resp.status in (400, 401)
        assert (await resp.json())["code"] == code


async def test_klines_reject_unknown_interval(http: Any) -> None:
    async with http.get("/api/v3/klines?symbol=BTCUSDT&interval=7m") as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, -1120)


async def test_kit_client_reaches_nothing_but_the_sim(sim: SimExchangeServer) -> None:
    ex = make_binance_client(sim.base_url)
    try:
        urls: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, str):
                urls.append(node)

        walk(ex.urls["api"])
        host = sim.base_url.removeprefix("http://")
        assert urls and all(u.startswith((f"http://{host}/", f"ws://{host}/")) for u in urls)
        assert loopback_urls({"x": "wss://stream.binance.com:9443/ws"}, sim.base_url) == {"x": f"ws://{host}/ws"}
    finally:
        await ex.close()
