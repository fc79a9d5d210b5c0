"""Pre-check: table of rejections by name, the cut of a MARKET order to MARKET_LOT_SIZE, the
PERCENT_PRICE_BY_SIDE band of a LIMIT price, and the property that rounding never produces an
order the exchange would refuse (`Market.check_order` passes for every approved order)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import Market, MarketFilters, MarketStatus, OrderPurpose, OrderType, Side
from engine.execution.precheck import OrderRequest, cap_market_qty, precheck
from tests.kit.domain import make_market

MARKET = make_market("DOGE/USDT", tick_size="0.00001", step_size="1", min_qty="1", max_qty="1000000", min_notional="5")


def request(**kw: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": "hc-0123456789abcdef-e1",
        "trace_id": "0123456789abcdef",
        "symbol": "DOGE/USDT",
        "side": Side.BUY,
        "order_type": OrderType.MARKET,
        "purpose": OrderPurpose.ENTRY,
        "quantity": 100.7,
        "reference_price": 0.3,
    }
    fields.update(kw)
    return OrderRequest(**fields)


CASES = [
    pytest.param({}, {}, [], id="passes"),
    pytest.param({"quantity": 0.4}, {}, ["quantity_positive", "min_qty", "min_notional"], id="rounds-to-zero"),
    pytest.param({"quantity": 10.0}, {}, ["min_notional"], id="below-min-notional"),
    pytest.param(
        {"order_type": OrderType.LIMIT, "limit_price": 0.3, "quantity": 2_000_000.0},
        {"max_order_quote": 1e9, "quote_free": 1e9},
        ["max_qty"],
        id="limit-above-max-qty",
    ),
    pytest.param({"quantity": 5000.0}, {"quote_free": 1e4}, ["max_order_size"], id="above-max-order-size"),
    pytest.param({}, {"quote_free": 20.0}, ["balance"], id="not-enough-quote"),
    pytest.param({"side": Side.SELL, "purpose": OrderPurpose.STOP_LOSS}, {"base_free": 50.0}, ["balance"], id="not-enough-base"),
    pytest.param({"reference_price": 0.0}, {}, ["price_positive", "min_price", "min_notional"], id="no-price"),
    pytest.param({"reference_price": float("nan")}, {}, ["price_positive", "min_price", "min_notional"], id="nan-price"),
    pytest.param({"quantity": float("nan")}, {}, ["quantity_positive", "min_qty", "min_notional"], id="nan-qty"),
    pytest.param({"quantity": float("inf")}, {}, ["quantity_positive", "min_qty", "min_notional"], id="inf-qty"),
    pytest.param({"reference_price": 500.0, "quantity": 0.9}, {}, ["quantity_positive", "min_qty", "min_notional"], id="tiny-qty-pricey"),
    pytest.param({"order_type": OrderType.LIMIT, "limit_price": 5000.0, "quantity": 1}, {"max_order_quote": 1e9, "quote_free": 1e9}, ["max_price"], id="limit-above-max-price"),
]


@pytest.mark.parametrize(("kw", "env", "failed"), CASES)
def test_precheck_table(kw: dict[str, Any], env: dict[str, Any], failed: list[str]) -> None:
    args = {"quote_free": 1000.0, "base_free": 1000.0, "buy_cost_rate": 0.001, "max_order_quote": 1000.0} | env
    result = precheck(request(**kw), MARKET, **args)
    assert result.failed == failed
    assert result.approved is (not failed)
    assert (result.intent is None) is bool(failed)


def test_rounding_is_exact_and_side_safe() -> None:
    r = precheck(
        request(order_type=OrderType.LIMIT, limit_price=0.300019, quantity=100.99),
        MARKET, quote_free=1e3, base_free=0, buy_cost_rate=0.001, max_order_quote=1e3,
    )
    assert r.intent is not None
    assert r.intent.quantity == Decimal("100") and r.intent.price == Decimal("0.30001")  # buy: price rounded down
    s = precheck(
        request(side=Side.SELL, order_type=OrderType.LIMIT, limit_price=0.300011, quantity=100.0),
        MARKET, quote_free=0, base_free=1e3, buy_cost_rate=0.001, max_order_quote=1e3,
    )
    assert s.intent is not None and s.intent.price == Decimal("0.30002")  # sell: price rounded up


@pytest.mark.parametrize(
    ("market", "name"),
    [
        pytest.param(make_market(status=MarketStatus.HALT), "market_active", id="halted"),
        pytest.param(make_market(order_types=("LIMIT",)), "order_type", id="market-orders-not-allowed"),
    ],
)
def test_market_state_is_checked(market: Market, name: str) -> None:
    assert name in precheck(request(), market, quote_free=1e3, base_free=0, buy_cost_rate=0.001, max_order_quote=1e3).failed


def test_exits_have_no_order_size_cap() -> None:
    r = precheck(request(side=Side.SELL, quantity=50_000.0), MARKET, quote_free=0, base_free=1e6, buy_cost_rate=0.001, max_order_quote=None)
    assert r.approved


# MARKET_LOT_SIZE far below LOT_SIZE, as on many real pairs; a 0.8x..1.2x price band.
CAPPED = make_market(
    "DOGE/USDT", tick_size="0.00001", step_size="1", min_qty="1", max_qty="1000000", min_notional="5",
    market_max_qty="1000", bid_multiplier_down="0.8", bid_multiplier_up="1.2",
    ask_multiplier_down="0.8", ask_multiplier_up="1.2", avg_price_mins=5,
)


def sell(qty: float, market: Market = CAPPED, **kw: Any) -> Any:
    req = request(side=Side.SELL, purpose=OrderPurpose.STOP_LOSS, quantity=qty, **kw)
    return precheck(req, market, quote_free=0, base_free=1e9, buy_cost_rate=0.0, max_order_quote=None)


@pytest.mark.parametrize(
    ("qty", "market", "sent", "of"),
    [
        pytest.param(800.0, CAPPED, "800", None, id="under-the-cap"),
        pytest.param(5000.0, CAPPED, "1000", "5000", id="cut-to-max"),
        # 1005 - 1000 leaves 5 (1.5 USDT, under minNotional 5): cut to 988, leaving 17 (5.1 USDT)
        pytest.param(1005.0, CAPPED, "988", "1005", id="rest-kept-sellable"),
        pytest.param(1234.0, make_market(market_max_qty="5000", market_step_size="10"), "1230", None, id="market-step"),
        pytest.param(5000.0, make_market(max_qty="2000", market_max_qty="3000"), "2000", "5000", id="lot-size-cap-is-lower"),
    ],
)
def test_market_order_is_cut_to_market_lot_size(qty: float, market: Market, sent: str, of: str | None) -> None:
    result = sell(qty, market)
    assert result.approved and result.intent is not None
    assert result.intent.quantity == Decimal(sent)
    assert market.check_order(result.intent.quantity, Decimal("0.3"), market_order=True) is None
    (cap,) = [c for c in result.checks if c["name"] == "market_max_qty"]
    assert cap["passed"] and cap["value"] == (sent if of is None else f"{sent} of {of} (the rest in a later order)")


def test_an_entry_cut_to_market_lot_size_says_the_rest_is_not_bought() -> None:
    """No later order follows an entry, so its journal line must not promise one (an exit's does)."""
    req = request(quantity=5000.0)
    result = precheck(req, CAPPED, quote_free=1e4, base_free=0, buy_cost_rate=0.001, max_order_quote=None)
    assert result.approved and result.intent is not None and result.intent.quantity == Decimal(1000)
    (cap,) = [c for c in result.checks if c["name"] == "market_max_qty"]
    assert cap["value"] == "1000 of 5000 (cut to the maximum, the rest not bought)"


def test_market_lot_size_minimum_refuses() -> None:
    market = make_market(market_min_qty="50")
    assert sell(20.0, market).failed == ["market_min_qty"]


def limit(side: Side, price: float, **kw: Any) -> Any:
    req = request(side=side, order_type=OrderType.LIMIT, limit_price=price, quantity=100.0, reference_price=0.3)
    return precheck(req, CAPPED, quote_free=1e3, base_free=1e3, buy_cost_rate=0.001, max_order_quote=1e3, **kw)


@pytest.mark.parametrize(
    ("side", "price", "avg", "passed"),
    [
        pytest.param(Side.BUY, 0.35, None, True, id="buy-inside"),
        pytest.param(Side.BUY, 0.37, None, False, id="buy-above-bid-up"),
        pytest.param(Side.BUY, 0.23, None, False, id="buy-below-bid-down"),
        pytest.param(Side.SELL, 0.239, None, False, id="sell-below-ask-down"),
        pytest.param(Side.SELL, 0.36, None, True, id="sell-at-ask-up"),
        # the exchange's average lags a pump: a price fine against the ask is over the band
        pytest.param(Side.BUY, 0.3, 0.2, False, id="avg-price-given"),
    ],
)
def test_limit_price_must_lie_in_the_percent_price_band(side: Side, price: float, avg: float | None, passed: bool) -> None:
    result = limit(side, price, avg_price=avg)
    (band,) = [c for c in result.checks if c["name"] == "percent_price_by_side"]
    assert band["passed"] is passed and result.approved is passed
    if not passed:
        assert result.failed == ["percent_price_by_side"] and result.intent is None
        assert "avg" in band["threshold"]


def test_market_orders_ignore_the_price_band() -> None:
    result = sell(100.0, reference_price=0.3)
    assert result.approved and all(c["name"] != "percent_price_by_side" for c in result.checks)


STEPS = ["0.00000001", "0.000001", "0.001", "0.01", "0.1", "1", "10", "0.5", "0.25"]


@st.composite
def markets(draw: st.DrawFn) -> Market:
    tick = Decimal(draw(st.sampled_from(STEPS)))
    step = Decimal(draw(st.sampled_from(STEPS)))
    min_qty = step * draw(st.integers(0, 5))
    max_qty = Decimal(draw(st.sampled_from(["0", "1000", "9000000"])))
    min_price = tick * draw(st.integers(0, 3))
    max_price = Decimal(draw(st.sampled_from(["0", "100000"])))
    min_notional = Decimal(draw(st.sampled_from(["0", "1", "5", "10"])))
    market_max = Decimal(draw(st.sampled_from(["0", "500", "1000000"])))
    market_step = step * draw(st.sampled_from([0, 1, 10]))
    market_min = step * draw(st.integers(0, 20))
    band = [Decimal(draw(st.sampled_from(["0", "0.97", "0.99"]))), Decimal(draw(st.sampled_from(["0", "1.01", "1.03"])))]
    filters = MarketFilters(
        tick, step, min_qty, max_qty, min_price, max_price, min_notional, market_min, market_max, market_step,
        band[1], band[0], band[1], band[0], 5,
    )
    return Market("X/USDT", "XUSDT", "X", "USDT", filters)


@settings(max_examples=400, deadline=None)
@given(
    market=markets(),
    side=st.sampled_from(list(Side)),
    order_type=st.sampled_from(list(OrderType)),
    qty=st.floats(0, 1e7, allow_nan=False),
    price=st.floats(1e-7, 2e5, allow_nan=False),
    offset=st.floats(-0.05, 0.05),
)
def test_approved_orders_always_pass_the_exchange_filters(
    market: Market, side: Side, order_type: OrderType, qty: float, price: float, offset: float
) -> None:
    req = request(
        symbol="X/USDT", side=side, order_type=order_type, quantity=qty, reference_price=price,
        limit_price=price * (1 + offset) if order_type is OrderType.LIMIT else None,
    )
    result = precheck(req, market, quote_free=1e15, base_free=1e15, buy_cost_rate=0.001, max_order_quote=1e15)
    is_market = order_type is OrderType.MARKET
    # The precheck measures the band from the reference price (the exchange's average unknown).
    band = {"market_order": is_market, "is_buy": side is Side.BUY, "avg_price": Decimal(repr(price))}
    if result.intent is not None:
        intent = result.intent
        check_price = intent.price if intent.price is not None else market.round_price(price)
        assert market.check_order(intent.quantity, check_price, **band) is None
        assert intent.quantity <= Decimal(repr(qty))  # never more than asked
    else:
        # Refused only for a reason the exchange would also give on the rounded (and cut) order.
        qty_d = market.round_qty(qty, market_order=is_market)
        limit = req.limit_price if req.limit_price is not None else price
        p = market.round_price(limit, side_safe="down" if side is Side.BUY else "up") if order_type is OrderType.LIMIT else market.round_price(price)
        cap = market.filters.market_order_max_qty
        if is_market and cap > 0 and qty_d > cap:
            qty_d = cap_market_qty(market, qty_d, p)
        assert market.check_order(qty_d, p, **band) is not None
