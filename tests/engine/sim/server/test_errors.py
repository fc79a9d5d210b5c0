"""Every refusal the sim sends reaches ccxt as the exception class the notes list
(ccxt-binance.md section 4), observed through the real client on a loopback URL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import ccxt
import pytest

Call = Callable[[Any], Awaitable[Any]]


async def _duplicate_client_id(ex: Any) -> None:
    # Binance refuses a duplicate only while the first order is open: a limit that rests.
    await ex.create_order("DOGE/USDT", "limit", "buy", 100, 0.2, {"clientOrderId": "twice"})
    await ex.create_order("DOGE/USDT", "market", "buy", 100, None, {"clientOrderId": "twice"})


async def _stale_timestamp(ex: Any) -> None:
    ex.options["timeDifference"] = 60_000  # ccxt signs with local time minus this
    await ex.fetch_balance()


CASES: list[Any] = [
    pytest.param(
        lambda ex: ex.create_order("DOGE/USDT", "market", "buy", 100, None, {"quantity": "100.05"}),
        ccxt.InvalidOrder,
        "LOT_SIZE",
        id="-1013-lot-size",
    ),
    pytest.param(
        lambda ex: ex.create_order("DOGE/USDT", "limit", "buy", 100, 0.25, {"price": "0.2500001"}),
        ccxt.InvalidOrder,
        "PRICE_FILTER",
        id="-1013-price-filter",
    ),
    pytest.param(
        lambda ex: ex.create_order("DOGE/USDT", "market", "buy", 10),
        ccxt.BadRequest,
        "NOTIONAL",
        id="-1013-notional",
    ),
    pytest.param(
        lambda ex: ex.create_order("BTC/USDT", "market", "buy", 1),
        ccxt.InsufficientFunds,
        "insufficient balance",
        id="-2010-insufficient",
    ),
    pytest.param(_duplicate_client_id, ccxt.InvalidOrder, "Duplicate order sent.", id="-2010-duplicate"),
    pytest.param(lambda ex: ex.cancel_order("424242", "BTC/USDT"), ccxt.OrderNotFound, "-2011", id="-2011-cancel"),
    pytest.param(lambda ex: ex.fetch_order("424242", "BTC/USDT"), ccxt.OrderNotFound, "-2013", id="-2013-fetch"),
    pytest.param(
        lambda ex: ex.publicGetTicker24hr({"symbol": "NOPEUSDT"}), ccxt.BadSymbol, "-1121", id="-1121-symbol"
    ),
    pytest.param(_stale_timestamp, ccxt.InvalidNonce, "-1021", id="-1021-recv-window"),
    pytest.param(
        lambda ex: ex.privatePostOrder({"symbol": "BTCUSDT", "type": "MARKET", "quantity": "0.001"}),
        ccxt.BadRequest,
        "-1102",
        id="-1102-missing-side",
    ),
]


@pytest.mark.parametrize(("call", "exc_type", "text"), CASES)
async def test_binance_error_maps_to_ccxt_exception(ex: Any, call: Call, exc_type: type[Exception], text: str) -> None:
    with pytest.raises(exc_type) as info:
        await call(ex)
    assert text in str(info.value)


async def test_a_rejected_order_leaves_the_account_untouched(ex: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "market", "buy", 1)
    balance = await ex.fetch_balance()
    assert balance["USDT"]["free"] == pytest.approx(10_000.0)
    assert "BTC" not in balance["total"] or balance["BTC"]["total"] == 0


async def test_unknown_api_path_is_exchange_not_available(ex: Any) -> None:
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.sapiGetCapitalConfigGetall()
