"""The unmodified ccxt.pro binance client, end to end against the sim exchange."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest

from engine.domain import TickerBatch
from engine.sim.server import SimExchangeServer
from tests.kit.sim_exchange import FakeMarketSource, make_binance_client, running_sim_exchange
from tests.kit.waiting import eventually


async def test_load_markets_parses_filters_into_precision_and_limits(ex: Any) -> None:
    btc = ex.markets["BTC/USDT"]
    assert (btc["id"], btc["spot"], btc["active"], btc["type"]) == ("BTCUSDT", True, True, "spot")
    assert btc["precision"]["amount"] == pytest.approx(1e-6)
    assert btc["precision"]["price"] == pytest.approx(0.1)
    assert btc["limits"]["amount"]["min"] == pytest.approx(1e-6)
    assert btc["limits"]["cost"]["min"] == pytest.approx(5.0)
    assert set(ex.markets) == {"BTC/USDT", "ETH/USDT", "DOGE/USDT"}


async def test_fetch_tickers_all_and_a_list(ex: Any) -> None:
    everything = await ex.fetch_tickers()
    assert set(everything) == {"BTC/USDT", "ETH/USDT", "DOGE/USDT"}
    btc = everything["BTC/USDT"]
    assert btc["last"] == pytest.approx(60_000.0)
    assert btc["bid"] < btc["last"] < btc["ask"]
    assert btc["percentage"] == pytest.approx(5.0, abs=0.01)
    some = await ex.fetch_tickers(["ETH/USDT", "DOGE/USDT"])
    assert set(some) == {"ETH/USDT", "DOGE/USDT"}
    one = await ex.fetch_ticker("DOGE/USDT")
    assert one["last"] == pytest.approx(0.3)


async def test_fetch_ohlcv_and_time(ex: Any, sim: SimExchangeServer) -> None:
    candles = await ex.fetch_ohlcv("ETH/USDT", "1m", limit=10)
    assert len(candles) == 10
    assert all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
    assert all(c[3] <= min(c[1], c[4]) and c[2] >= max(c[1], c[4]) for c in candles)
    since = candles[0][0]
    assert (await ex.fetch_ohlcv("ETH/USDT", "1m", since=since, limit=3))[0][0] == since
    server_time = await ex.fetch_time()
    assert abs(server_time - sim.venue.clock.now_ms()) < 60_000 * 60  # sim time, not wall time


async def test_watch_tickers_gets_ticker_arr_with_bid_and_ask(ex: Any) -> None:
    tickers = await ex.watch_tickers()
    assert tickers
    for symbol, t in tickers.items():
        assert t["symbol"] == symbol
        assert t["bid"] is not None and t["ask"] is not None
    assert ex.tickers["BTC/USDT"]["last"] == pytest.approx(60_000.0)


async def test_watch_tickers_follows_price_changes(ex: Any, source: FakeMarketSource) -> None:
    await ex.watch_tickers(["DOGE/USDT"])
    source.set_price("DOGE/USDT", 0.45)

    async def moved() -> bool:
        t = await ex.watch_tickers(["DOGE/USDT"])
        return bool(t.get("DOGE/USDT", {}).get("last") == pytest.approx(0.45))

    await eventually(moved, timeout=5)


async def test_watch_ohlcv_streams_klines(ex: Any) -> None:
    bars = await ex.watch_ohlcv("BTC/USDT", "1m")
    assert bars and len(bars[-1]) == 6
    first_open = bars[-1][0]

    async def next_bar() -> bool:
        more = await ex.watch_ohlcv("BTC/USDT", "1m")
        return bool(more[-1][0] > first_open)

    await eventually(next_bar, timeout=5)  # the clock runs at 60x: a new 1m bar each second


async def test_market_buy_is_reported_on_rest_and_user_stream(ex: Any, sim: SimExchangeServer) -> None:
    orders = asyncio.ensure_future(ex.watch_orders())
    balance = asyncio.ensure_future(ex.watch_balance())
    await eventually(lambda: sim.user_api.subscriptions == 1)  # subscribed before the order goes out
    placed = await ex.create_order("ETH/USDT", "market", "buy", 0.5)
    assert (placed["status"], placed["filled"]) == ("closed", 0.5)
    assert placed["fee"]["currency"] == "ETH"
    assert placed["fee"]["cost"] == pytest.approx(0.0005)
    seen = await asyncio.wait_for(orders, 5)
    assert seen[-1]["id"] == placed["id"]
    bal = await asyncio.wait_for(balance, 5)
    assert bal["ETH"]["free"] == pytest.approx(0.4995)
    rest = await ex.fetch_balance()
    assert rest["USDT"]["free"] == pytest.approx(10_000 - 0.5 * 2_401.2, rel=1e-9)


async def test_limit_order_lifecycle(ex: Any) -> None:
    placed = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50_000)
    assert placed["status"] == "open"
    assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")] == [placed["id"]]
    fetched = await ex.fetch_order(placed["id"], "BTC/USDT")
    assert (fetched["status"], fetched["price"], fetched["amount"]) == ("open", 50_000.0, 0.01)
    bal = await ex.fetch_balance()
    assert bal["USDT"]["used"] == pytest.approx(500.0)
    cancelled = await ex.cancel_order(placed["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    assert await ex.fetch_open_orders("BTC/USDT") == []
    assert (await ex.fetch_balance())["USDT"]["free"] == pytest.approx(10_000.0)


async def test_resting_limit_fills_when_the_market_crosses_it(
    ex: Any, sim: SimExchangeServer, source: FakeMarketSource
) -> None:
    updates: list[dict[str, Any]] = []
    watcher = asyncio.ensure_future(ex.watch_orders())
    await eventually(lambda: sim.user_api.subscriptions == 1)
    placed = await ex.create_order("DOGE/USDT", "limit", "buy", 100, 0.25, {"clientOrderId": "rest-1"})
    updates += await asyncio.wait_for(watcher, 5)
    source.set_price("DOGE/USDT", 0.2)

    async def filled() -> bool:
        updates.extend(await ex.watch_orders())
        return any(o["id"] == placed["id"] and o["status"] == "closed" for o in updates)

    await eventually(filled, timeout=5)
    trades = await ex.fetch_my_trades("DOGE/USDT")
    assert [(t["order"], t["price"], t["amount"], t["takerOrMaker"]) for t in trades] == [
        (placed["id"], 0.25, 100.0, "maker")
    ]
    assert (trades[0]["fee"]["currency"], trades[0]["fee"]["cost"]) == ("DOGE", pytest.approx(0.1))
    assert (await ex.fetch_order(placed["id"], "DOGE/USDT", {"clientOrderId": "rest-1"}))["status"] == "closed"


async def test_market_buy_by_cost_sends_quote_order_qty(ex: Any) -> None:
    placed = await ex.create_order("DOGE/USDT", "market", "buy", 100, 0.3)  # ccxt sends quoteOrderQty=30
    assert placed["cost"] <= 30.0
    assert placed["filled"] == pytest.approx(99.9)  # floor(30 / ask 0.30015) to the 0.1 step


class _GapSource(FakeMarketSource):
    """A market whose generator has no 24 h open for DOGE yet (NaN)."""

    def tickers(self) -> TickerBatch:
        batch = super().tickers()
        opens = batch.open_24h.copy()
        opens[batch.symbols.index("DOGE/USDT")] = float("nan")
        return dataclasses.replace(batch, open_24h=opens)


async def test_missing_source_values_go_out_as_zero_not_nan() -> None:
    async with running_sim_exchange(_GapSource()) as sim:
        ex = make_binance_client(sim.base_url)
        try:
            tickers = await ex.watch_tickers()  # a NaN would make ccxt drop the whole message
            assert set(tickers) == {"BTC/USDT", "ETH/USDT", "DOGE/USDT"}
            assert tickers["DOGE/USDT"]["open"] is None  # Binance's "0.00000000", omitted by ccxt
        finally:
            await ex.close()
