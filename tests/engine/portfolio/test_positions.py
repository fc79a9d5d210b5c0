"""PositionBook: realised PnL fees included, and it adds up across partial closes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import Side
from engine.portfolio.positions import PositionBook, PositionError, as_booked
from tests.kit.domain import make_fill


def test_open_partial_close_close() -> None:
    book = PositionBook()
    opened = book.apply(make_fill(side=Side.BUY, price=1.0, quantity=100.0, fee_quote=0.1, trade_id="b"))
    assert opened.action == "open" and opened.quantity == 100.0
    half = book.apply(make_fill(side=Side.SELL, price=1.1, quantity=40.0, fee_quote=0.044, trade_id="s1"))
    assert half.action == "partial_close"
    assert half.realised_pnl == pytest.approx(0.1 * 40 - 0.044 - 0.1 * 0.4)
    rest = book.apply(make_fill(side=Side.SELL, price=0.9, quantity=60.0, fee_quote=0.054, trade_id="s2"))
    assert rest.action == "close" and rest.quantity == 0.0
    assert rest.realised_pnl == pytest.approx(-0.1 * 60 - 0.054 - 0.06)
    assert book.closed[-1].realised_pnl == pytest.approx(half.realised_pnl + rest.realised_pnl)
    assert "DOGE/USDT" not in book


def test_unrealised_pnl_carries_only_the_held_share_of_the_entry_fee() -> None:
    """Closing what is held at the mark realises exactly the uPnL (before the exit fee): the
    part of the entry fee a partial close charged is not charged again."""
    book = PositionBook()
    book.apply(make_fill(side=Side.BUY, price=1.0, quantity=100.0, fee_quote=0.1, trade_id="b"))
    assert book.holdings["DOGE/USDT"].position.unrealised_pnl(1.1) == pytest.approx(10.0 - 0.1)
    book.apply(make_fill(side=Side.SELL, price=1.1, quantity=40.0, fee_quote=0.0, trade_id="s1"))
    assert book.holdings["DOGE/USDT"].position.unrealised_pnl(1.1) == pytest.approx(6.0 - 0.06)
    rest = book.apply(make_fill(side=Side.SELL, price=1.1, quantity=60.0, fee_quote=0.0, trade_id="s2"))
    assert rest.realised_pnl == pytest.approx(6.0 - 0.06)


def test_adding_averages_the_entry() -> None:
    book = PositionBook()
    book.apply(make_fill(side=Side.BUY, price=1.0, quantity=100.0, trade_id="a"))
    add = book.apply(make_fill(side=Side.BUY, price=2.0, quantity=100.0, trade_id="b"))
    assert add.action == "add" and add.entry_price == pytest.approx(1.5) and add.quantity == 200.0


@pytest.mark.parametrize(
    ("fills", "match"),
    [
        pytest.param([(Side.SELL, 10.0)], "not held", id="sell-unheld"),
        pytest.param([(Side.BUY, 10.0), (Side.SELL, 10.5)], "exceeds", id="oversell"),
        pytest.param([(Side.BUY, 0.0)], "positive", id="zero-qty"),
    ],
)
def test_impossible_fills_are_refused(fills: list[tuple[Side, float]], match: str) -> None:
    book = PositionBook()
    *before, (side, qty) = fills
    for i, (s, q) in enumerate(before):
        book.apply(make_fill(side=s, quantity=q, trade_id=str(i)))
    with pytest.raises(PositionError, match=match):
        book.apply(make_fill(side=side, quantity=qty, trade_id="last"))


def test_decimal_quantities_leave_no_crumbs() -> None:
    book = PositionBook()
    book.apply(make_fill(side=Side.BUY, quantity=0.3, trade_id="a"))
    book.apply(make_fill(side=Side.SELL, quantity=0.1, trade_id="b"))
    book.apply(make_fill(side=Side.SELL, quantity=0.2, trade_id="c"))
    assert "DOGE/USDT" not in book  # 0.3 - 0.1 - 0.2 is exactly zero here, not 2.8e-17


def test_dust_written_off_after_a_signal_exit_closes_the_trade_with_its_rules() -> None:
    """A buy's fee taken in coins leaves crumbs after a full exit: the trade closes when they
    are written off, and keeps the rules of the exit that sold the rest (the backtest's exits
    table splits signal exits by them; the write-off dropped them)."""
    book = PositionBook()
    book.apply(as_booked(make_fill(side=Side.BUY, price=0.3, quantity=100.0, fee_quote=0.03, fee_base=0.1, trade_id="b"))[0])
    book.holdings["DOGE/USDT"].exit_rules = ("heat_decay",)
    book.apply(make_fill(side=Side.SELL, price=0.3, quantity=99.0, fee_quote=0.0297, trade_id="s"))
    book.write_off("DOGE/USDT", 1)
    (trade,) = book.closed
    assert trade.exit_rules == ("heat_decay",) and book.written_off == {"DOGE/USDT": pytest.approx(0.9)}


@settings(max_examples=300, deadline=None)
@given(
    buys=st.lists(st.tuples(st.floats(0.01, 100.0), st.integers(1, 10_000)), min_size=1, max_size=4),
    sells=st.lists(st.tuples(st.floats(0.01, 100.0), st.integers(1, 100)), min_size=1, max_size=6),
    fee_rate=st.sampled_from([0.0, 0.001, 0.0075]),
)
def test_realised_pnl_adds_up_across_partial_closes(
    buys: list[tuple[float, int]], sells: list[tuple[float, int]], fee_rate: float
) -> None:
    """Sum of realised PnL over every close == proceeds - cost - every fee, for a full round trip."""
    book = PositionBook()
    cost = fees = proceeds = 0.0
    total_qty = 0
    for i, (price, qty) in enumerate(buys):
        fee = price * qty * fee_rate
        book.apply(make_fill(side=Side.BUY, price=price, quantity=float(qty), fee_quote=fee, trade_id=f"b{i}"))
        cost += price * qty
        fees += fee
        total_qty += qty
    weights = [w for _, w in sells]
    parts = [total_qty * w // sum(weights) for w in weights]
    parts[-1] = total_qty - sum(parts[:-1])
    realised = []
    for i, ((price, _), qty) in enumerate(zip(sells, parts, strict=True)):
        if qty == 0:
            continue
        fee = price * qty * fee_rate
        change = book.apply(make_fill(side=Side.SELL, price=price, quantity=float(qty), fee_quote=fee, trade_id=f"s{i}"))
        realised.append(change.realised_pnl)
        proceeds += price * qty
        fees += fee
    assert "DOGE/USDT" not in book
    expected = proceeds - cost - fees
    assert sum(realised) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert book.closed[-1].realised_pnl == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_buy_has_no_trailing_peak_until_a_bid_marks_it() -> None:
    """The peak a trailing stop falls back from is the highest bid: the fill (the ask paid,
    plus slippage) is above any bid, and a peak there put an armed-at-entry trail (activation
    0) within a hair of the bid. A later buy of the position keeps its peak."""
    book = PositionBook()
    book.apply(make_fill(side=Side.BUY, price=1.026, quantity=100.0, trade_id="b"))
    assert book.holdings["DOGE/USDT"].position.trailing_high == 0.0
    book.mark("DOGE/USDT", 1.0244)
    book.mark("DOGE/USDT", 1.02)
    assert book.holdings["DOGE/USDT"].position.trailing_high == 1.0244
    book.apply(make_fill(side=Side.BUY, price=1.03, quantity=100.0, trade_id="b2"))
    assert book.holdings["DOGE/USDT"].position.trailing_high == 1.0244
