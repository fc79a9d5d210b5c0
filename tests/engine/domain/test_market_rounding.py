from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain import Market
from engine.errors import NonRetryableOrderError
from tests.kit.domain import make_market


@pytest.mark.parametrize(
    ("tick", "price", "mode", "expected"),
    [
        ("0.01", 0.1 + 0.2, "nearest", "0.30"),
        ("0.00001", 0.300019, "down", "0.30001"),
        ("0.00001", 0.300011, "up", "0.30002"),
        ("1", 64854.49, "nearest", "64854"),
        ("0.00000001", 7.5e-05, "nearest", "0.00007500"),
    ],
    ids=["float-artefact", "down", "up", "whole-tick", "micro-price"],
)
def test_round_price_is_exact_multiple(tick: str, price: float, mode: str, expected: str) -> None:
    market = make_market(tick_size=tick, min_price="0")
    assert str(market.round_price(price, side_safe=mode)) == expected


@pytest.mark.parametrize(
    ("step", "qty", "expected"),
    [("1", 123.999, "123"), ("0.001", 0.1 + 0.2, "0.300"), ("0.1", 5.55, "5.5")],
    ids=["integer-step", "float-artefact", "floors"],
)
def test_round_qty_floors_to_step(step: str, qty: float, expected: str) -> None:
    assert str(make_market(step_size=step).round_qty(qty)) == expected


def test_non_finite_price_is_refused() -> None:
    with pytest.raises(NonRetryableOrderError, match="non-finite"):
        make_market().round_price(float("nan"))


@pytest.mark.parametrize(
    ("qty", "price", "reason"),
    [
        ("0", "0.3", "must be positive"),
        ("0.5", "0.3", "LOT_SIZE"),
        ("10", "0.300001", "PRICE_FILTER"),
        ("10", "0.3", "NOTIONAL"),
        ("100000000", "0.3", "maxQty"),
    ],
    ids=["zero-qty", "off-step", "off-tick", "min-notional", "max-qty"],
)
def test_check_order_names_the_failing_filter(qty: str, price: str, reason: str) -> None:
    problem = make_market().check_order(Decimal(qty), Decimal(price))
    assert problem is not None
    assert reason in problem


@given(
    price=st.floats(min_value=1e-5, max_value=1e5, allow_nan=False, allow_infinity=False),
    notional=st.floats(min_value=6, max_value=1e5),
    tick_exp=st.integers(min_value=-8, max_value=0),
    step_exp=st.integers(min_value=-8, max_value=0),
)
def test_rounded_orders_pass_the_filters(price: float, notional: float, tick_exp: int, step_exp: int) -> None:
    """Whatever the float, rounding yields a price and quantity the exchange would accept
    (as long as the order is big enough to clear the minimums at all)."""
    tick = Decimal(1).scaleb(tick_exp)
    step = Decimal(1).scaleb(step_exp)
    market: Market = make_market(tick_size=str(tick), step_size=str(step), min_qty=str(step), min_price=str(tick), max_price="1000000", min_notional="5")
    rp = market.round_price(price, side_safe="down")
    if rp <= 0:
        return
    qty = market.round_qty(notional / float(rp))
    if qty < step or qty * rp < 5 or qty > market.filters.max_qty:
        return
    assert market.check_order(qty, rp) is None
    assert rp == rp.quantize(tick) and qty == qty.quantize(step)
