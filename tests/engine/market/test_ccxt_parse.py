"""ccxt dicts -> domain values, checked against what a real ccxt.pro instance produces offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest

from bench.bench_ticker_ingest import EVENT_MS, exchange_info_symbols, offline_binance, ticker_array
from engine.domain import MarketStatus, OrderStatus
from engine.errors import MarketDataError
from engine.market.ccxt_parse import (
    balances_from_ccxt,
    candles_from_ohlcv,
    market_from_ccxt,
    order_from_ccxt,
    tickers_to_batch,
)
from engine.market.fast_tickers import TickerArrayDecoder
from engine.market.gateway import Balance


@pytest.fixture
async def ccxt_binance() -> AsyncIterator[Any]:
    ex = offline_binance(exchange_info_symbols(5))
    try:
        yield ex
    finally:
        await ex.close()


def test_market_filters_are_exact_decimals_from_exchange_info(ccxt_binance: Any) -> None:
    market = market_from_ccxt(ccxt_binance.markets["C0/USDT"])
    assert market.symbol == "C0/USDT" and market.market_id == "C0USDT"
    assert (market.base, market.quote) == ("C0", "USDT")
    assert market.filters.step_size == Decimal("0.1")
    assert market.filters.min_notional == Decimal(5)
    assert market.status is MarketStatus.TRADING
    assert "MARKET" in market.order_types


def test_an_unknown_market_status_is_not_tradeable(ccxt_binance: Any) -> None:
    raw = dict(ccxt_binance.markets["C0/USDT"])
    raw["info"] = {**raw["info"], "status": "AUCTION_MATCH"}
    assert market_from_ccxt(raw).active is False


async def test_ccxt_path_and_fast_path_give_the_same_batch(ccxt_binance: Any) -> None:
    rows = ticker_array(5)
    client = ccxt_binance.client("wss://stream.binance.com:9443/ws/0")
    ccxt_binance.handle_message(client, rows)
    via_ccxt = tickers_to_batch(ccxt_binance.tickers, 7)
    decoder = TickerArrayDecoder({m["id"]: s for s, m in ccxt_binance.markets.items()})
    fast = decoder.decode(orjson.dumps(rows), EVENT_MS)
    assert fast is not None
    assert via_ccxt.symbols == fast.symbols
    for name in ("last", "bid", "ask", "open_24h", "high_24h", "low_24h", "base_volume_24h", "quote_volume_24h"):
        np.testing.assert_allclose(getattr(via_ccxt, name), getattr(fast, name), rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(via_ccxt.event_ms, fast.event_ms)
    np.testing.assert_array_equal(via_ccxt.trade_count_24h, fast.trade_count_24h)


def test_missing_ticker_values_are_nan_and_counts_minus_one() -> None:
    batch = tickers_to_batch({"X/USDT": {"symbol": "X/USDT", "last": 1.0, "bid": None, "info": {}}}, 5)
    assert np.isnan(batch.bid[0]) and batch.trade_count_24h[0] == -1 and batch.event_ms[0] == 5


def test_fast_decoder_skips_acks_and_counts_unknown_and_malformed_rows() -> None:
    decoder = TickerArrayDecoder({"C0USDT": "C0/USDT", "C1USDT": "C1/USDT", "C2USDT": "C2/USDT"})
    assert decoder.decode(b'{"result":null,"id":1}', 0) is None
    rows = ticker_array(4)  # C3USDT is not a loaded market
    rows[1]["c"] = "1.2.3"
    rows[2]["h"] = None
    rows[0]["b"] = "NaN"
    batch = decoder.decode(orjson.dumps(rows), EVENT_MS)
    assert batch is not None
    assert batch.symbols == ("C0/USDT",)
    assert np.isnan(batch.bid[0])
    assert (decoder.unknown_ids, decoder.malformed_rows) == (1, 2)


def test_fast_decoder_accepts_a_single_ticker_and_raises_on_a_refusal() -> None:
    decoder = TickerArrayDecoder({"C0USDT": "C0/USDT"})
    one = decoder.decode(orjson.dumps(ticker_array(1)[0]), EVENT_MS)
    assert one is not None and len(one) == 1
    import ccxt

    with pytest.raises(ccxt.ExchangeError, match="refused"):
        decoder.decode(b'{"error":{"code":2,"msg":"Invalid request"},"id":1}', 0)
    with pytest.raises(MarketDataError, match="invalid JSON"):
        decoder.decode(b"{not json", 0)


def test_candles_closed_flag_is_rebuilt() -> None:
    """A bar is closed once the exchange has sent a newer one. The newest is not closed at its
    end by our clock: the reply may have been made before its last trades (the simulated
    exchange at x300 answers from a market 30 s behind), and a half-made bar taken as final was
    never fetched again. A newest bar a minute past its end belongs to a halted pair: final."""
    rows = [[0, 1, 2, 0.5, 1.5, 10], [60_000, 1.5, 2, 1, 1.2, 5]]
    candles = candles_from_ohlcv("X/USDT", "1m", rows, now_ms=90_000)
    assert [c.closed for c in candles] == [True, False]
    assert candles_from_ohlcv("X/USDT", "1m", rows[1:], now_ms=90_000, latest_open_ms=120_000)[0].closed
    assert not candles_from_ohlcv("X/USDT", "1m", rows[1:], now_ms=120_000)[0].closed  # its end: maybe not all in
    assert not candles_from_ohlcv("X/USDT", "1m", rows[1:], now_ms=179_999)[0].closed
    assert candles_from_ohlcv("X/USDT", "1m", rows[1:], now_ms=180_000)[0].closed  # a minute on, nothing newer: a halt


def test_a_bar_no_exchange_could_print_is_rejected() -> None:
    with pytest.raises(MarketDataError):
        candles_from_ohlcv("X/USDT", "1m", [[0, 1, 0.5, 0.9, 1, 1]], now_ms=0)


@pytest.mark.parametrize(
    ("raw_status", "ccxt_status", "filled", "expected"),
    [
        ("NEW", "open", "0", OrderStatus.OPEN),
        ("PARTIALLY_FILLED", "open", "5", OrderStatus.PARTIALLY_FILLED),
        ("FILLED", "closed", "10", OrderStatus.FILLED),
        ("CANCELED", "canceled", "0", OrderStatus.CANCELED),
        ("EXPIRED", "expired", "0", OrderStatus.EXPIRED),
        ("REJECTED", "rejected", "0", OrderStatus.REJECTED),
        (None, "open", "5", OrderStatus.PARTIALLY_FILLED),
        (None, "closed", "10", OrderStatus.FILLED),
    ],
    ids=["new", "partial", "filled", "canceled", "expired", "rejected", "ccxt-partial", "ccxt-closed"],
)
def test_order_status(raw_status: str | None, ccxt_status: str, filled: str, expected: OrderStatus) -> None:
    info = {"origQty": "10.00000000", "executedQty": filled, "price": "0.30000000", "transactTime": 99}
    if raw_status:
        info["status"] = raw_status
    raw = {
        "id": "7", "clientOrderId": "hc-1", "symbol": "DOGE/USDT", "side": "buy", "type": "limit",
        "status": ccxt_status, "amount": 10.0, "filled": float(filled), "price": 0.3, "average": 0.3,
        "timestamp": -1, "fee": {"cost": 0.01, "currency": "DOGE"}, "info": info,
    }
    order = order_from_ccxt(raw)
    assert order.status is expected
    assert order.quantity == Decimal(10) and order.price == Decimal("0.3")
    assert order.created_ms == 99  # Binance's workingTime -1 does not leak in
    assert order.fee_quote == pytest.approx(0.003)  # 0.01 DOGE at 0.3


@pytest.mark.parametrize(
    ("fee", "reported"),
    [(None, False), ({"cost": None, "currency": None}, False), ({"cost": 0.0, "currency": "BNB"}, True)],
    ids=["order-lookup-has-no-fee", "fee-without-cost", "zero-fee-is-a-fee"],
)
def test_an_order_says_whether_it_reported_fees(fee: dict[str, Any] | None, reported: bool) -> None:
    raw = {
        "id": "7", "clientOrderId": "hc-1", "symbol": "DOGE/USDT", "side": "buy", "type": "market",
        "status": "closed", "amount": 10.0, "filled": 10.0, "average": 0.3, "fee": fee, "fees": [],
        "info": {"origQty": "10", "executedQty": "10", "status": "FILLED"},
    }
    order = order_from_ccxt(raw)
    assert order.fees_reported is reported and order.fee_quote == 0.0 and order.fee_base == 0.0


def test_balances_exact_from_rest_and_nonzero_only() -> None:
    rest = {"info": {"balances": [
        {"asset": "USDT", "free": "10.10000000", "locked": "1.00000000"},
        {"asset": "BNB", "free": "0.00000000", "locked": "0.00000000"},
    ]}}
    assert balances_from_ccxt(rest) == {"USDT": Balance(Decimal("10.1"), Decimal(1))}
    ws = {"info": {"e": "outboundAccountPosition"}, "free": {"DOGE": 5.0, "BTC": 0.0}, "used": {"DOGE": 1.0}}
    assert balances_from_ccxt(ws) == {"DOGE": Balance(Decimal(5), Decimal(1))}


@pytest.mark.parametrize(
    ("fee", "fee_base", "fee_quote"),
    [
        ({"currency": "DOGE", "cost": 0.1}, 0.1, 0.03),
        ({"currency": "USDT", "cost": 0.03}, 0.0, 0.03),
        ({"currency": "BNB", "cost": 0.0001}, 0.0, 0.0),
    ],
    ids=["fee-in-coins", "fee-in-quote", "fee-in-bnb"],
)
def test_fees_keep_the_part_taken_in_the_base_asset(fee: dict[str, Any], fee_base: float, fee_quote: float) -> None:
    from engine.market.ccxt_parse import fill_from_ccxt

    trade = {"id": "7", "symbol": "DOGE/USDT", "side": "buy", "price": 0.3, "amount": 100.0, "timestamp": 1, "fee": fee}
    fill = fill_from_ccxt(trade, "hc-1")
    assert fill.fee_base == pytest.approx(fee_base)
    assert fill.fee_quote == pytest.approx(fee_quote)


def test_market_lot_size_and_percent_price_by_side_survive_the_exchange_info_round_trip() -> None:
    """The sim's exchangeInfo entry read back as ccxt hands it over (raw filters in `info`)
    gives the same filters: what the precheck cuts and bands by is what the exchange enforces."""
    from engine.sim.server.codec import symbol_info
    from tests.kit.domain import make_market

    market = make_market(
        "DOGE/USDT", market_max_qty="76.13", market_step_size="0.01", market_min_qty="0.02",
        bid_multiplier_up="5", bid_multiplier_down="0.2", ask_multiplier_up="1.2", ask_multiplier_down="0.8",
        avg_price_mins=5,
    )  # fmt: skip
    info = symbol_info(market)
    assert {f["filterType"] for f in info["filters"]} >= {"MARKET_LOT_SIZE", "PERCENT_PRICE_BY_SIDE"}
    raw = {"symbol": "DOGE/USDT", "id": "DOGEUSDT", "base": "DOGE", "quote": "USDT", "info": info}
    assert market_from_ccxt(raw).filters == market.filters
