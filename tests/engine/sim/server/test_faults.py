"""Each injected fault, as the real ccxt.pro client (or a raw WebSocket) experiences it."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import aiohttp
import ccxt
import orjson
import pytest

from engine.sim.server import FaultPlan, SimExchangeServer
from engine.sim.server.faults import LostReply
from tests.kit.sim_exchange import make_binance_client, running_sim_exchange
from tests.kit.waiting import eventually


async def _raw_ws(session: aiohttp.ClientSession, sim: SimExchangeServer, streams: list[str]) -> Any:
    ws = await session.ws_connect(sim.base_url.replace("http", "ws") + "/ws/1", autoping=True)
    await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}).decode())
    return ws


async def _messages(ws: Any, count: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < count:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        data = orjson.loads(msg.data)
        if "id" not in data:  # skip the SUBSCRIBE ack
            out.append(msg.data)
    return out


# ---- REST ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inject", "exc_type"),
    [
        pytest.param(lambda sim: sim.faults.rate_limit(2), ccxt.DDoSProtection, id="429-burst"),
        pytest.param(lambda sim: sim.faults.ban(30), ccxt.DDoSProtection, id="418-ban"),
        pytest.param(lambda sim: sim.faults.fail_with_5xx(1, [500]), ccxt.ExchangeNotAvailable, id="500"),
        pytest.param(lambda sim: sim.faults.fail_with_5xx(1, [502]), ccxt.ExchangeNotAvailable, id="502"),
        pytest.param(lambda sim: sim.faults.fail_with_5xx(1, [503]), ccxt.ExchangeNotAvailable, id="503"),
    ],
)
async def test_rest_fault_raises_the_right_ccxt_error(
    ex: Any, sim: SimExchangeServer, inject: Any, exc_type: type[Exception]
) -> None:
    inject(sim)
    with pytest.raises(exc_type):
        await ex.fetch_ticker("BTC/USDT")


@pytest.mark.parametrize(
    ("lost_as", "exc_type"),
    [
        pytest.param(LostReply.BACKEND_TIMEOUT, ccxt.RequestTimeout, id="-1007"),
        pytest.param(LostReply.SERVER_ERROR, ccxt.ExchangeNotAvailable, id="5xx"),
    ],
)
async def test_a_lost_order_reply_leaves_the_order_executed(
    ex: Any, sim: SimExchangeServer, lost_as: LostReply, exc_type: type[Exception]
) -> None:
    sim.faults.lose_order_replies(1, lost_as)
    await ex.fetch_ticker("DOGE/USDT")  # not an order: the fault waits for one
    with pytest.raises(ccxt.InsufficientFunds):  # refused, not executed: the fault still waits
        await ex.create_order("DOGE/USDT", "market", "buy", 10_000_000, None, {"newClientOrderId": "refused-1"})
    with pytest.raises(exc_type):
        await ex.create_order("DOGE/USDT", "market", "buy", 100, None, {"newClientOrderId": "lost-1"})
    order = await ex.fetch_order(None, "DOGE/USDT", {"origClientOrderId": "lost-1"})
    assert order["status"] == "closed" and order["filled"] == 100
    assert sim.faults.snapshot()["injected"]["lost_reply"] == 1 and sim.faults.plan.lost_order_replies == 0


@pytest.mark.parametrize(
    ("lost_as", "exc_type"),
    [
        pytest.param(LostReply.TIMEOUT, ccxt.RequestTimeout, id="timeout"),
        pytest.param(LostReply.BACKEND_TIMEOUT, ccxt.RequestTimeout, id="-1007"),
    ],
)
async def test_a_late_order_gets_no_reply_and_executes_later_after_the_client_gave_up(
    sim: SimExchangeServer, lost_as: LostReply, exc_type: type[Exception]
) -> None:
    """Binance's backend queue: the create's reply never comes, the order is not there when the
    client looks, and it executes `late_order_s` (exchange time: 2 s of wall time at x60) later all the same,
    though the client closed its connection long before."""
    ex = make_binance_client(sim.base_url, timeout=300)
    try:
        await ex.load_markets()
        sim.faults.update({"hang_s": 5})
        sim.faults.land_orders_late(1, after_s=120, as_=lost_as)
        with pytest.raises(ccxt.BadRequest):  # refused on arrival: the fault still waits
            await ex.create_order("DOGE/USDT", "market", "buy", 100, None, {"newClientOrderId": "late-1", "newOrderRespType": "NONE"})
        sent_ms = sim.venue.clock.now_ms()
        with pytest.raises(exc_type):
            await ex.create_order("DOGE/USDT", "market", "buy", 100, None, {"newClientOrderId": "late-1"})
        await ex.close()  # the client gives up: its connection goes
        with pytest.raises(ccxt.OrderNotFound):
            await sim_client_fetch(sim, "late-1")
        assert sim.stats()["late_orders_waiting"] == 1

        async def placed() -> bool:
            return "late-1" in sim.venue.engine.account("sim-test-key").by_client_id

        await eventually(placed, timeout=5)
        order = await sim_client_fetch(sim, "late-1")
        assert order["status"] == "closed" and order["filled"] == 100
        assert order["timestamp"] - sent_ms >= 120_000
        assert sim.faults.snapshot()["injected"]["late_order"] == 1 and sim.faults.plan.late_orders == 0
    finally:
        await ex.close()


async def sim_client_fetch(sim: SimExchangeServer, client_order_id: str) -> Any:
    """The order as a fresh client looks it up by client id."""
    ex = make_binance_client(sim.base_url)
    try:
        return await ex.fetch_order(None, "DOGE/USDT", {"origClientOrderId": client_order_id})
    finally:
        await ex.close()


async def test_429_burst_counts_down_and_sends_retry_after(sim: SimExchangeServer) -> None:
    sim.faults.update({"rate_limit_burst": 2, "retry_after_s": 7})
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(3):
            async with session.get(sim.base_url + "/api/v3/time") as resp:
                statuses.append((resp.status, resp.headers.get("Retry-After")))
    assert statuses == [(429, "7"), (429, "7"), (200, None)]


async def test_ban_lifts_when_its_time_is_up(ex: Any, sim: SimExchangeServer) -> None:
    sim.faults.ban(0.3)
    with pytest.raises(ccxt.DDoSProtection):
        await ex.fetch_time()

    async def unbanned() -> bool:
        try:
            await ex.fetch_time()
        except ccxt.DDoSProtection:
            return False
        return True

    await eventually(unbanned, timeout=5, interval=0.05)


async def test_hung_call_is_a_client_timeout(sim: SimExchangeServer) -> None:
    ex = make_binance_client(sim.base_url, timeout=300)
    try:
        sim.faults.hang(1, seconds=5)
        with pytest.raises(ccxt.RequestTimeout):
            await ex.fetch_time()
        assert isinstance(await ex.fetch_time(), int)  # only one call hangs
    finally:
        await ex.close()


async def test_latency_beyond_the_client_timeout_is_a_timeout(sim: SimExchangeServer) -> None:
    ex = make_binance_client(sim.base_url, timeout=200)
    try:
        sim.faults.update({"latency_ms": 2000})
        with pytest.raises(ccxt.RequestTimeout):
            await ex.fetch_time()
    finally:
        await ex.close()


# ---- WebSocket drops and silence -------------------------------------------------------


@pytest.mark.parametrize(("abrupt", "code"), [pytest.param(False, "1001", id="close-1001"), pytest.param(True, "1006", id="abort")])
async def test_dropped_market_socket_raises_network_error_then_reconnects(
    ex: Any, sim: SimExchangeServer, abrupt: bool, code: str
) -> None:
    await ex.watch_tickers()
    pending = asyncio.ensure_future(ex.watch_tickers())
    await asyncio.sleep(0)
    assert await sim.drop_websockets(abrupt=abrupt) == 1
    with pytest.raises(ccxt.NetworkError) as info:
        await asyncio.wait_for(pending, 5)
    assert code in str(info.value)
    assert await asyncio.wait_for(ex.watch_tickers(), 5)  # the next call reconnects by itself


async def test_periodic_drops_hit_the_user_stream_too(ex: Any, sim: SimExchangeServer) -> None:
    pending = asyncio.ensure_future(ex.watch_orders())
    await eventually(lambda: sim.user_api.subscriptions == 1)
    sim.faults.update({"drop_ws_every_s": 0.1})
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(pending, 5)


async def test_user_stream_resubscribes_after_a_drop(ex: Any, sim: SimExchangeServer) -> None:
    pending = asyncio.ensure_future(ex.watch_orders())
    await eventually(lambda: sim.user_api.subscriptions == 1)
    await sim.drop_websockets(abrupt=True)
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(pending, 5)
    again = asyncio.ensure_future(ex.watch_orders())
    await eventually(lambda: sim.user_api.subscriptions == 1)  # a fresh subscribe on a new socket
    placed = await ex.create_order("DOGE/USDT", "market", "buy", 100)
    orders = await asyncio.wait_for(again, 5)
    assert orders[-1]["id"] == placed["id"]


async def _watch_until_error(ex: Any) -> None:
    while True:
        await ex.watch_tickers()


async def test_half_open_socket_is_caught_by_keepalive(sim: SimExchangeServer) -> None:
    ex = make_binance_client(sim.base_url, streaming={"keepAlive": 200})
    try:
        await ex.load_markets()
        await ex.watch_tickers()
        sim.faults.update({"ws_half_open": True})
        with pytest.raises(ccxt.RequestTimeout, match="ping-pong"):
            await asyncio.wait_for(_watch_until_error(ex), 10)
    finally:
        await ex.close()


# ---- corrupted, duplicated and reordered messages --------------------------------------


async def test_nan_ticker_fields_are_delivered(ex: Any, sim: SimExchangeServer) -> None:
    sim.faults.update({"ticker_nan_rate": 1.0})

    async def nan_seen() -> bool:
        tickers = await ex.watch_tickers()
        return any(t["bid"] is not None and math.isnan(t["bid"]) for t in tickers.values())

    await eventually(nan_seen, timeout=5)
    btc = ex.tickers["BTC/USDT"]
    assert all(math.isnan(btc[k]) for k in ("bid", "ask", "high", "low"))
    assert btc["last"] == pytest.approx(60_000.0)


async def test_malformed_ticker_fields_are_delivered(sim: SimExchangeServer) -> None:
    sim.faults.update({"ticker_malformed_rate": 1.0})
    async with aiohttp.ClientSession() as session:
        ws = await _raw_ws(session, sim, ["btcusdt@ticker"])
        (raw,) = await _messages(ws, 1)
        await ws.close()
    data = orjson.loads(raw)
    assert (data["c"], data["h"]) == ("1.2.3", None)


async def test_duplicated_messages(sim: SimExchangeServer) -> None:
    sim.faults.update({"ws_duplicate_rate": 1.0})
    async with aiohttp.ClientSession() as session:
        ws = await _raw_ws(session, sim, ["btcusdt@miniTicker"])
        first, second = await _messages(ws, 2)
        await ws.close()
    assert first == second


async def test_out_of_order_messages(sim: SimExchangeServer) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await _raw_ws(session, sim, ["ethusdt@miniTicker"])
        await _messages(ws, 1)
        sim.faults.update({"ws_reorder_rate": 1.0})
        times = [orjson.loads(m)["E"] for m in await _messages(ws, 6)]
        await ws.close()
    assert any(b < a for a, b in itertools.pairwise(times)), times


# ---- the admin endpoint ----------------------------------------------------------------


async def test_admin_endpoint_sets_and_validates_faults(sim: SimExchangeServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(sim.base_url + "/_sim/faults", json={"latency_ms": 5, "server_errors": 1}) as resp:
            assert resp.status == 200
            assert (await resp.json())["plan"]["latency_ms"] == 5
        async with session.get(sim.base_url + "/api/v3/time") as resp:
            assert (resp.status, resp.content_type) == (500, "text/html")
        async with session.post(sim.base_url + "/_sim/faults", json={"latncy_ms": 5}) as resp:
            assert resp.status == 400
            assert "latncy_ms" in (await resp.json())["error"]
        async with session.post(sim.base_url + "/_sim/faults/reset") as resp:
            assert (await resp.json())["plan"] == FaultPlan().model_dump()
        async with session.get(sim.base_url + "/_sim/ground_truth") as resp:
            assert set(await resp.json()) == {"now_ms", "pumps", "listings"}


async def test_faults_from_the_constructor_apply_from_the_first_call() -> None:
    async with (
        running_sim_exchange(faults=FaultPlan(rate_limit_burst=1)) as sim,
        aiohttp.ClientSession() as session,
        session.get(sim.base_url + "/api/v3/ping") as resp,
    ):
        assert resp.status == 429


async def test_a_key_that_cannot_trade_is_refused_orders_and_cancels_and_keeps_its_reads(
    ex: Any, sim: SimExchangeServer
) -> None:
    resting = await ex.create_order("DOGE/USDT", "limit", "buy", 100, 0.2)  # a private call that works:
    sim.faults.update({"key_cannot_trade": True})  # from here ccxt takes -2015 for a ban
    with pytest.raises(ccxt.DDoSProtection, match="-2015"):
        await ex.create_order("DOGE/USDT", "market", "buy", 100)
    with pytest.raises(ccxt.DDoSProtection, match="-2015"):  # Binance refuses the cancel alike
        await ex.cancel_order(resting["id"], "DOGE/USDT")
    assert [o["id"] for o in await ex.fetch_open_orders("DOGE/USDT")] == [resting["id"]]  # still resting
    assert (await ex.fetch_balance())["USDT"]["used"] == pytest.approx(20.0)  # nothing else was placed


async def test_clock_skew_shifts_the_time_and_the_recv_window_check_alike(ex: Any, sim: SimExchangeServer) -> None:
    before = await ex.fetch_time()
    sim.faults.update({"clock_skew_ms": 8_000})
    assert await ex.fetch_time() - before >= 8_000
    ex.options["recvWindow"] = 5_000
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        await ex.fetch_balance()
    ex.options["timeDifference"] = -8_000  # signing on the exchange's clock: accepted
    await ex.fetch_balance()


async def test_clock_skew_is_one_exchange_clock_for_its_time_its_market_data_and_its_orders(
    ex: Any, sim: SimExchangeServer
) -> None:
    """On Binance the server time, the event times it stamps and its recvWindow check are one
    clock. The skew moved only the time and the check, so an engine that read the time at
    start found every ticker and kline the skew behind its clock: stale for good. (At x60 a
    few ms of wall time between the calls are seconds of the exchange's: 30 s of slack.)"""
    before_ms = sim.venue.clock.now_ms()
    sim.faults.update({"clock_skew_ms": 120_000})
    await eventually(lambda: sim.venue.now_ms() > before_ms + 120_000)  # the market's next tick
    ex.options["timeDifference"] = -120_000  # signing on the exchange's clock
    server_ms = await ex.fetch_time()
    ticker = await ex.fetch_ticker("DOGE/USDT")
    assert abs(ticker["timestamp"] - server_ms) < 30_000
    (bar,) = await ex.fetch_ohlcv("DOGE/USDT", "1m", limit=1)
    assert server_ms - 90_000 < bar[0] <= server_ms + 30_000
    order = await ex.create_order("DOGE/USDT", "market", "buy", 100)
    assert abs(int(order["info"]["transactTime"]) - server_ms) < 30_000
