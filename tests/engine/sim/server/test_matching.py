"""The matching engine alone: pure calls, exact decimals, Binance's error codes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.sim.matching import (
    BalanceEvent,
    BinanceError,
    BookTop,
    ExecType,
    ExecutionEvent,
    MatchingEngine,
    OrderRequest,
    OrderState,
    check_request_time,
)
from tests.kit.domain import make_market

KEY = "k1"
NOW = 1_700_000_000_000
# DOGE/USDT: tick 0.00001, step 1, min qty 1, min notional 5
BOOK = BookTop(bid=D("0.29990"), bid_qty=D("1000"), ask=D("0.30010"), ask_qty=D("1000"))


def engine(**kw: object) -> MatchingEngine:
    return MatchingEngine([make_market("DOGE/USDT")], start_balance=D(10_000), **kw)  # type: ignore[arg-type]


def market(side: str, qty: str | None = None, quote: str | None = None, cid: str | None = None) -> OrderRequest:
    return OrderRequest(
        "DOGEUSDT",
        side,
        "MARKET",
        quantity=D(qty) if qty else None,
        quote_order_qty=D(quote) if quote else None,
        client_order_id=cid,
    )


def limit(side: str, qty: str, price: str, tif: str = "GTC", cid: str | None = None) -> OrderRequest:
    return OrderRequest("DOGEUSDT", side, "LIMIT", quantity=D(qty), price=D(price), time_in_force=tif, client_order_id=cid)


def balances(e: MatchingEngine, key: str = KEY) -> dict[str, tuple[D, D]]:
    return {a: (b.free, b.locked) for a, b in e.account(key).balances.items()}


def test_new_account_starts_with_quote_balance() -> None:
    assert balances(engine()) == {"USDT": (D(10_000), D(0))}


def test_market_buy_fills_at_ask_and_charges_fee_in_base() -> None:
    e = engine()
    res = e.place_order(KEY, market("BUY", qty="100"), BOOK, NOW)
    assert res.order.status is OrderState.FILLED
    assert [(t.price, t.qty, t.commission, t.commission_asset) for t in res.fills] == [
        (D("0.30010"), D(100), D("0.1"), "DOGE")
    ]
    assert balances(e) == {"USDT": (D("9969.99"), D(0)), "DOGE": (D("99.9"), D(0))}


def test_market_sell_charges_fee_in_quote() -> None:
    e = engine()
    e.place_order(KEY, market("BUY", qty="100"), BOOK, NOW)
    res = e.place_order(KEY, market("SELL", qty="50"), BOOK, NOW)
    assert res.fills[0].commission == D("0.01499500")
    assert res.fills[0].commission_asset == "USDT"
    assert balances(e)["USDT"][0] == D("9969.99") + D("14.995") - D("0.014995")


def test_market_order_beyond_displayed_qty_walks_worse_levels() -> None:
    e = engine(depth_levels=3, depth_step=D("0.001"))
    res = e.place_order(KEY, market("BUY", qty="2500"), BOOK, NOW)
    assert [(t.price, t.qty) for t in res.fills] == [
        (D("0.30010"), D(1000)),
        (D("0.30041"), D(1000)),  # 0.3001 * 1.001 rounded up to the tick
        (D("0.30071"), D(500)),
    ]
    assert res.order.status is OrderState.FILLED
    assert res.order.cumulative_quote_qty == D("300.1") + D("300.41") + D("150.355")


def test_market_order_larger_than_all_levels_expires_partially_filled() -> None:
    e = engine(depth_levels=2)
    res = e.place_order(KEY, market("BUY", qty="5000"), BOOK, NOW)
    assert res.order.status is OrderState.EXPIRED
    assert res.order.executed_qty == D(2000)
    kinds = [ev.exec_type for _, ev in e.drain_events() if isinstance(ev, ExecutionEvent)]
    assert kinds == [ExecType.NEW, ExecType.TRADE, ExecType.TRADE, ExecType.EXPIRED]


def test_quote_order_qty_spends_at_most_the_quote_amount() -> None:
    e = engine()
    res = e.place_order(KEY, market("BUY", quote="30"), BOOK, NOW)
    assert res.order.executed_qty == D(99)  # floor(30 / 0.3001) to step 1
    assert res.order.cumulative_quote_qty <= D(30)
    assert res.order.orig_quote_order_qty == D(30)


def test_resting_limit_buy_locks_quote_and_fills_when_ask_crosses() -> None:
    e = engine()
    res = e.place_order(KEY, limit("BUY", "100", "0.29000"), BOOK, NOW)
    assert res.order.status is OrderState.NEW and not res.fills
    assert balances(e)["USDT"] == (D("9971"), D("29"))
    e.drain_events()
    assert e.on_book("DOGEUSDT", BOOK, NOW + 1) == []  # ask 0.3001 above the limit
    crossed = BookTop(bid=D("0.28900"), bid_qty=D(1000), ask=D("0.28950"), ask_qty=D(1000))
    (filled,) = e.on_book("DOGEUSDT", crossed, NOW + 2)
    assert filled.status is OrderState.FILLED
    trade = e.my_trades(KEY, "DOGEUSDT")[-1]
    assert (trade.price, trade.is_maker) == (D("0.29000"), True)  # maker at its own price
    assert balances(e) == {"USDT": (D("9971"), D(0)), "DOGE": (D("99.9"), D(0))}
    events = e.drain_events()
    assert isinstance(events[-1][1], BalanceEvent)


def test_my_trades_of_one_order_like_binance_order_id() -> None:
    e = engine()
    first = e.place_order(KEY, market("BUY", qty="100"), BOOK, NOW).order
    e.place_order(KEY, market("BUY", qty="50"), BOOK, NOW)
    assert [t.qty for t in e.my_trades(KEY, "DOGEUSDT")] == [D(100), D(50)]
    assert [(t.qty, t.commission) for t in e.my_trades(KEY, "DOGEUSDT", order_id=first.order_id)] == [(D(100), D("0.1"))]


def test_resting_limit_fills_in_parts_against_displayed_qty() -> None:
    e = engine()
    e.place_order(KEY, limit("BUY", "1500", "0.29000"), BOOK, NOW)
    thin = BookTop(bid=D("0.28900"), bid_qty=D(600), ask=D("0.28950"), ask_qty=D(600))
    (first,) = e.on_book("DOGEUSDT", thin, NOW + 1)
    assert (first.status, first.executed_qty) == (OrderState.PARTIALLY_FILLED, D(600))
    e.on_book("DOGEUSDT", thin, NOW + 2)
    (last,) = e.on_book("DOGEUSDT", thin, NOW + 3)
    assert (last.status, last.executed_qty) == (OrderState.FILLED, D(1500))


def test_marketable_limit_takes_at_book_price_and_refunds_improvement() -> None:
    e = engine()
    res = e.place_order(KEY, limit("BUY", "100", "0.31000"), BOOK, NOW)
    assert res.order.status is OrderState.FILLED
    assert res.fills[0].price == D("0.30010") and not res.fills[0].is_maker
    assert balances(e)["USDT"] == (D(10_000) - D("30.01"), D(0))


def test_ioc_limit_remainder_expires_and_unlocks() -> None:
    e = engine(depth_levels=1)
    res = e.place_order(KEY, limit("BUY", "1500", "0.31000", tif="IOC"), BOOK, NOW)
    assert (res.order.status, res.order.executed_qty) == (OrderState.EXPIRED, D(1000))
    assert balances(e)["USDT"][1] == D(0)


def test_cancel_unlocks_and_has_its_own_client_id_beside_the_orders() -> None:
    e = engine()
    e.place_order(KEY, market("BUY", qty="100"), BOOK, NOW)
    placed = e.place_order(KEY, limit("SELL", "50", "0.40000", cid="mine-1"), BOOK, NOW)
    assert balances(e)["DOGE"] == (D("49.9"), D(50))
    done = e.cancel_order(KEY, "DOGEUSDT", order_id=None, client_order_id="mine-1", now_ms=NOW + 5)
    assert (done.status, done.order_id, done.client_order_id) == (OrderState.CANCELED, placed.order.order_id, "mine-1")
    assert done.cancel_client_order_id not in ("", "mine-1")  # made up, as Binance does without newClientOrderId
    assert balances(e)["DOGE"] == (D("99.9"), D(0))
    assert e.open_orders(KEY) == []
    again = e.place_order(KEY, limit("SELL", "50", "0.40000", cid="mine-2"), BOOK, NOW)
    named = e.cancel_order(
        KEY, "DOGEUSDT", order_id=again.order.order_id, client_order_id=None, now_ms=NOW + 6, cancel_client_order_id="x-1"
    )
    assert (named.client_order_id, named.cancel_client_order_id) == ("mine-2", "x-1")


@pytest.mark.parametrize(
    ("req", "code", "msg"),
    [
        pytest.param(market("BUY", qty="1.5"), -1013, "Filter failure: LOT_SIZE", id="qty-not-step"),
        pytest.param(market("BUY", qty="100000000"), -1013, "Filter failure: LOT_SIZE", id="qty-above-max"),
        pytest.param(limit("BUY", "100", "0.123456"), -1013, "Filter failure: PRICE_FILTER", id="price-not-tick"),
        pytest.param(market("BUY", qty="10"), -1013, "Filter failure: NOTIONAL", id="notional-market"),
        pytest.param(limit("BUY", "10", "0.30000"), -1013, "Filter failure: NOTIONAL", id="notional-limit"),
        pytest.param(market("BUY", qty="40000"), -2010, "Account has insufficient balance for requested action.", id="no-usdt"),
        pytest.param(market("SELL", qty="100"), -2010, "Account has insufficient balance for requested action.", id="no-doge"),
        pytest.param(limit("BUY", "40000", "0.30000"), -2010, "Account has insufficient balance for requested action.", id="limit-no-usdt"),
        pytest.param(OrderRequest("NOPEUSDT", "BUY", "MARKET", quantity=D(1)), -1121, "Invalid symbol.", id="symbol"),
        pytest.param(OrderRequest("DOGEUSDT", None, "MARKET", quantity=D(1)), -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.", id="no-side"),
        pytest.param(OrderRequest("DOGEUSDT", "BUY", "LIMIT", quantity=D(100), price=D("0.3")), -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.", id="no-tif"),
        pytest.param(OrderRequest("DOGEUSDT", "BUY", "LIMIT", quantity=D(100), time_in_force="GTC"), -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.", id="no-price"),
    ],
)
def test_rejections_carry_binance_codes(req: OrderRequest, code: int, msg: str) -> None:
    e = engine()
    with pytest.raises(BinanceError) as info:
        e.place_order(KEY, req, BOOK, NOW)
    assert (info.value.code, info.value.msg) == (code, msg)
    assert balances(e) == {"USDT": (D(10_000), D(0))}  # a rejection moves nothing
    assert e.drain_events() == []


# MARKET_LOT_SIZE maxQty 500 (LOT_SIZE allows 90 M); a buy within 0.8x..1.2x of the average
# price, a sell within 0.9x..1.1x.
BANDED = make_market(
    "DOGE/USDT", market_max_qty="500", market_step_size="10", bid_multiplier_up="1.2", bid_multiplier_down="0.8",
    ask_multiplier_up="1.1", ask_multiplier_down="0.9", avg_price_mins=5,
)  # fmt: skip
AVG = D("0.3")


@pytest.mark.parametrize(
    ("req", "avg", "msg"),
    [
        pytest.param(market("BUY", qty="510"), None, "Filter failure: MARKET_LOT_SIZE", id="market-above-max"),
        pytest.param(market("BUY", qty="105"), None, "Filter failure: MARKET_LOT_SIZE", id="market-not-step"),
        pytest.param(limit("BUY", "100", "0.36001"), AVG, "Filter failure: PERCENT_PRICE_BY_SIDE", id="buy-over-bid-up"),
        pytest.param(limit("BUY", "100", "0.23999"), AVG, "Filter failure: PERCENT_PRICE_BY_SIDE", id="buy-under-bid-down"),
        pytest.param(limit("SELL", "100", "0.33001"), AVG, "Filter failure: PERCENT_PRICE_BY_SIDE", id="sell-over-ask-up"),
        pytest.param(limit("SELL", "100", "0.26999"), AVG, "Filter failure: PERCENT_PRICE_BY_SIDE", id="sell-under-ask-down"),
    ],
)
def test_market_lot_size_and_percent_price_by_side_rejections(req: OrderRequest, avg: D | None, msg: str) -> None:
    e = MatchingEngine([BANDED], start_balance=D(10_000))
    with pytest.raises(BinanceError) as info:
        e.place_order(KEY, req, BOOK, NOW, avg)
    assert (info.value.code, info.value.msg) == (-1013, msg)
    assert balances(e) == {"USDT": (D(10_000), D(0))}


@pytest.mark.parametrize(
    ("req", "avg"),
    [
        pytest.param(market("BUY", qty="500"), None, id="market-at-max"),
        pytest.param(limit("BUY", "1000", "0.36000"), AVG, id="limit-not-held-to-market-lot-size"),
        pytest.param(limit("BUY", "100", "0.20000"), None, id="no-avg-no-band"),
        pytest.param(market("BUY", quote="200"), None, id="quote-order-qty"),
    ],
)
def test_orders_inside_the_new_filters_pass(req: OrderRequest, avg: D | None) -> None:
    e = MatchingEngine([BANDED], start_balance=D(10_000))
    assert e.place_order(KEY, req, BOOK, NOW, avg).order.status in (OrderState.FILLED, OrderState.NEW)


def test_duplicate_client_order_id_is_rejected_while_the_first_is_open_per_account() -> None:
    e = engine()
    e.place_order(KEY, limit("BUY", "100", "0.29000", cid="dup"), BOOK, NOW)
    with pytest.raises(BinanceError) as info:
        e.place_order(KEY, market("BUY", qty="100", cid="dup"), BOOK, NOW)
    assert (info.value.code, info.value.msg) == (-2010, "Duplicate order sent.")
    e.place_order("other-key", market("BUY", qty="100", cid="dup"), BOOK, NOW)  # other account: fine


@pytest.mark.parametrize("finish", ["filled", "canceled"])
def test_the_id_of_a_finished_order_may_be_used_again_as_on_binance(finish: str) -> None:
    e = engine()
    if finish == "filled":
        first = e.place_order(KEY, market("BUY", qty="100", cid="again"), BOOK, NOW).order
    else:
        first = e.place_order(KEY, limit("BUY", "100", "0.29000", cid="again"), BOOK, NOW).order
        e.cancel_order(KEY, "DOGEUSDT", order_id=first.order_id, client_order_id=None, now_ms=NOW)
    second = e.place_order(KEY, market("BUY", qty="50", cid="again"), BOOK, NOW).order
    assert second.order_id != first.order_id and second.status is OrderState.FILLED
    assert e.get_order(KEY, "DOGEUSDT", order_id=None, client_order_id="again").order_id == second.order_id


def test_unknown_orders_on_fetch_and_cancel() -> None:
    e = engine()
    with pytest.raises(BinanceError) as fetch:
        e.get_order(KEY, "DOGEUSDT", order_id=99, client_order_id=None)
    with pytest.raises(BinanceError) as cancel:
        e.cancel_order(KEY, "DOGEUSDT", order_id=99, client_order_id=None, now_ms=NOW)
    assert (fetch.value.code, fetch.value.msg) == (-2013, "Order does not exist.")
    assert (cancel.value.code, cancel.value.msg) == (-2011, "Unknown order sent.")


def test_filled_order_cannot_be_cancelled() -> None:
    e = engine()
    res = e.place_order(KEY, market("BUY", qty="100"), BOOK, NOW)
    with pytest.raises(BinanceError) as info:
        e.cancel_order(KEY, "DOGEUSDT", order_id=res.order.order_id, client_order_id=None, now_ms=NOW)
    assert info.value.code == -2011


def test_orders_are_private_to_their_account() -> None:
    e = engine()
    res = e.place_order(KEY, limit("BUY", "100", "0.29000"), BOOK, NOW)
    with pytest.raises(BinanceError):
        e.get_order("someone-else", "DOGEUSDT", order_id=res.order.order_id, client_order_id=None)


@pytest.mark.parametrize(
    ("timestamp", "recv_window", "code"),
    [
        pytest.param(NOW - 4_000, 5_000, None, id="inside"),
        pytest.param(NOW - 6_000, 5_000, -1021, id="too-old"),
        pytest.param(NOW + 1_500, 5_000, -1021, id="ahead"),
        pytest.param(NOW, 70_000, -1131, id="window-too-large"),
    ],
)
def test_request_time_rule(timestamp: int, recv_window: int, code: int | None) -> None:
    if code is None:
        check_request_time(timestamp, recv_window, NOW)
        return
    with pytest.raises(BinanceError) as info:
        check_request_time(timestamp, recv_window, NOW)
    assert info.value.code == code


def test_book_from_source_floats_treats_nan_as_empty() -> None:
    top = BookTop.of(float("nan"), 5.0, 0.3, -1.0)
    assert (top.bid, top.bid_qty, top.ask, top.ask_qty) == (D(0), D("5.0"), D("0.3"), D(0))
    e = engine()
    res = e.place_order(KEY, market("BUY", qty="100"), top, NOW)
    assert res.order.status is OrderState.EXPIRED and not res.fills
