"""Paper fills: the shared fill model's prices and fees, and the async broker around it."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from engine.config.sections.trading import BuyFeeAsset, ExecutionSettings
from engine.domain import OrderStatus, OrderType, Side, TickerBatch
from engine.errors import NonRetryableOrderError, RetryableOrderError
from engine.execution.broker import OrderUpdate
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from tests.kit.domain import T0, make_batch, make_intent
from tests.kit.events import RecordingSink

MODEL = FillModel(taker_fee_rate=0.001, maker_fee_rate=0.0005, slippage_bps=10.0)


@pytest.mark.parametrize(
    ("side", "price"),
    [pytest.param(Side.BUY, 1.01 * 1.001, id="buy-at-ask-plus-slippage"), pytest.param(Side.SELL, 0.99 * 0.999, id="sell-at-bid-minus-slippage")],
)
def test_market_fill_prices_and_fee(side: Side, price: float) -> None:
    ex = MODEL.market(side, 100.0, bid=0.99, ask=1.01)
    assert ex.price == pytest.approx(price, rel=1e-12)
    assert ex.fee_quote == pytest.approx(price * 100.0 * 0.001, rel=1e-12)
    assert not ex.is_maker


def test_default_fee_is_ten_bps() -> None:
    assert FillModel().taker_fee_rate == 0.001


BUY_FEE_CASES = [
    pytest.param("base", Side.BUY, None, 0.1, id="market-buy-fee-in-the-coins-bought"),
    pytest.param("base", Side.BUY, True, 0.05, id="resting-buy-maker-fee-in-the-coins-bought"),
    pytest.param("base", Side.SELL, None, 0.0, id="sell-fee-in-quote"),
    pytest.param("quote", Side.BUY, None, 0.0, id="buy-fee-in-cash-when-set-to-quote"),
]


@pytest.mark.parametrize(("asset", "side", "resting", "fee_base"), BUY_FEE_CASES)
def test_a_buys_fee_is_taken_in_the_coins_bought_as_binance_takes_it(
    asset: BuyFeeAsset, side: Side, resting: bool | None, fee_base: float
) -> None:
    """Binance without BNB (and the sim, and the exchange broker's estimate) keeps a buy's fee
    out of the coins bought; `fee_quote` is the whole fee's value either way. (`resting=None`:
    a market order.)"""
    model = replace(MODEL, buy_fee_asset=asset)
    if resting is None:
        ex = model.market(side, 100.0, bid=0.99, ask=1.01)
    else:
        ex = model.limit(side, 100.0, 1.02, bid=0.99, ask=1.01, resting=resting)
    assert ex is not None
    assert ex.fee_base == pytest.approx(fee_base)
    assert ex.fee_quote == pytest.approx(ex.price * 100.0 * (0.0005 if resting else 0.001))


async def test_a_paper_buy_holds_its_fee_in_coins_on_the_order_and_the_fill() -> None:
    """From the config (`trading.execution.paper_buy_fee_asset`, Binance's way by default)."""
    settings = ExecutionSettings()
    assert FillModel.from_settings(settings).buy_fee_asset == "base"
    assert FillModel.from_settings(settings.model_copy(update={"paper_buy_fee_asset": "quote"})).buy_fee_asset == "quote"
    broker = PaperBroker(FillModel.from_settings(settings))
    broker.update_book(make_batch({"DOGE/USDT": 0.3}))
    update = await broker.submit(make_intent(quantity=Decimal("100")), T0)
    (fill,) = update.fills
    assert fill.fee_base == update.order.fee_base == pytest.approx(0.1)
    assert fill.fee_quote == pytest.approx(fill.price * 0.1)


LIMIT_CASES = [
    pytest.param(Side.BUY, 1.00, False, None, id="buy-below-ask-rests"),
    pytest.param(Side.BUY, 1.05, False, 1.01 * 1.001, id="marketable-buy-fills-as-taker"),
    pytest.param(Side.BUY, 1.0105, False, 1.0105, id="marketable-buy-capped-at-limit"),
    pytest.param(Side.BUY, 1.02, True, 1.02, id="resting-buy-fills-at-its-price"),
    pytest.param(Side.SELL, 1.00, False, None, id="sell-above-bid-rests"),
    pytest.param(Side.SELL, 0.95, False, 0.99 * 0.999, id="marketable-sell-taker"),
    pytest.param(Side.SELL, 0.98, True, 0.98, id="resting-sell-maker"),
]


@pytest.mark.parametrize(("side", "limit", "resting", "price"), LIMIT_CASES)
def test_limit_fill_model(side: Side, limit: float, resting: bool, price: float | None) -> None:
    ex = MODEL.limit(side, 10.0, limit, bid=0.99, ask=1.01, resting=resting)
    if price is None:
        assert ex is None
    else:
        assert ex is not None and ex.price == pytest.approx(price, rel=1e-12)
        rate = 0.0005 if resting else 0.001
        assert ex.fee_quote == pytest.approx(ex.price * 10.0 * rate) and ex.is_maker is resting


# A crossed quote (bid over ask): the ticker's bid and ask came from different moments.
CROSSED = {"bid": 1.02, "ask": 0.98}

CROSSED_MARKET_CASES = [
    pytest.param(Side.SELL, 0.98 * 0.999, id="sell-at-the-lower-side-not-the-crossed-bid"),
    pytest.param(Side.BUY, 1.02 * 1.001, id="buy-at-the-higher-side-not-the-crossed-ask"),
]


@pytest.mark.parametrize(("side", "price"), CROSSED_MARKET_CASES)
def test_a_market_order_on_a_crossed_quote_fills_at_its_worse_side(side: Side, price: float) -> None:
    """Filled at the crossed bid, an exit sold above the ask (a buy under the bid): a price no
    live order gets. Either side may be the stale one, so the order gets the worse of the two,
    what a book at that side (bid = ask) would give it."""
    ex = MODEL.market(side, 100.0, **CROSSED)
    assert ex.price == pytest.approx(price, rel=1e-12)
    assert ex.fee_quote == pytest.approx(price * 100.0 * 0.001, rel=1e-12)


CROSSED_LIMIT_CASES = [
    pytest.param(Side.SELL, 1.00, True, None, id="resting-sell-the-crossed-bid-reaches-waits"),
    pytest.param(Side.SELL, 1.00, False, None, id="sell-the-crossed-bid-reaches-rests"),
    pytest.param(Side.SELL, 0.95, False, 0.98 * 0.999, id="marketable-sell-at-the-lower-side"),
    pytest.param(Side.SELL, 0.97, True, 0.97, id="resting-sell-both-sides-reach-fills-at-its-price"),
    pytest.param(Side.BUY, 1.00, True, None, id="resting-buy-the-crossed-ask-reaches-waits"),
    pytest.param(Side.BUY, 1.00, False, None, id="buy-the-crossed-ask-reaches-rests"),
    pytest.param(Side.BUY, 1.05, False, 1.02 * 1.001, id="marketable-buy-at-the-higher-side"),
    pytest.param(Side.BUY, 1.03, True, 1.03, id="resting-buy-both-sides-reach-fills-at-its-price"),
]


@pytest.mark.parametrize(("side", "limit", "resting", "price"), CROSSED_LIMIT_CASES)
def test_a_limit_on_a_crossed_quote_fills_only_where_both_sides_reach_it(
    side: Side, limit: float, resting: bool, price: float | None
) -> None:
    """A resting sell at 1.00 filled on a crossed bid of 1.02 over an ask of 0.98, and a
    marketable one sold at the crossed bid. A limit fills where the quote's worse side for it
    reaches it, as a limit on a book at that side would, and no better."""
    ex = MODEL.limit(side, 10.0, limit, resting=resting, **CROSSED)
    if price is None:
        assert ex is None
    else:
        assert ex is not None and ex.price == pytest.approx(price, rel=1e-12) and ex.is_maker is resting


@pytest.mark.parametrize(("bid", "ask"), [(float("inf"), 1.0), (1.0, float("inf")), (0.0, 1.0), (1.0, float("nan"))])
def test_a_quote_that_is_no_price_fills_nothing(bid: float, ask: float) -> None:
    """0, NaN or infinity on either side (the core refuses the same ticks): a market order is
    retried on the next ticker, a limit is not filled."""
    with pytest.raises(RetryableOrderError):
        MODEL.market(Side.SELL, 1.0, bid=bid, ask=ask)
    assert MODEL.limit(Side.BUY, 1.0, 2.0, bid=bid, ask=ask, resting=True) is None
    assert MODEL.limit(Side.SELL, 1.0, 0.5, bid=bid, ask=ask, resting=True) is None


def _book(bid: float, ask: float, ts_ms: int = T0) -> TickerBatch:
    return make_batch({"DOGE/USDT": (bid + ask) / 2}, ts_ms=ts_ms, bid={"DOGE/USDT": bid}, ask={"DOGE/USDT": ask})


async def test_a_paper_exit_on_a_crossed_quote_sells_no_higher_than_its_ask() -> None:
    """A close-all (a market sell) on a tick whose bid stands over its ask fills at the ask less
    slippage, on the order and on the fill the journal books; a market buy at the bid plus it."""
    broker = PaperBroker(MODEL)
    broker.update_book(_book(0.31, 0.29))
    sell = await broker.submit(make_intent(side=Side.SELL, quantity=Decimal("100"), client_order_id="s"), T0)
    (fill,) = sell.fills
    assert fill.price == sell.order.average_price == pytest.approx(0.29 * 0.999)
    assert fill.fee_quote == pytest.approx(fill.price * 100 * 0.001)
    buy = await broker.submit(make_intent(quantity=Decimal("100"), client_order_id="b"), T0)
    assert buy.fills[0].price == buy.order.average_price == pytest.approx(0.31 * 1.001)


async def test_a_resting_limit_a_crossed_quote_reaches_waits_for_a_sound_one() -> None:
    """A take-profit sell resting at 0.30 and an entry buy resting at 0.29: a crossed tick (bid
    0.31 over ask 0.28) reaches both and fills neither; the next sound quote through each fills
    it at its price, as a maker."""
    broker = PaperBroker(MODEL)
    broker.update_book(_book(0.294, 0.296))
    for side, price, cid in ((Side.SELL, "0.30", "tp"), (Side.BUY, "0.29", "e")):
        intent = make_intent(side=side, order_type=OrderType.LIMIT, price=Decimal(price), client_order_id=cid)
        assert (await broker.submit(intent, T0)).order.status is OrderStatus.OPEN
    broker.update_book(_book(0.31, 0.28, T0 + 5_000))
    assert await broker.sync(T0 + 5_000) == []
    assert [o.client_order_id for o in await broker.open_orders()] == ["tp", "e"]
    broker.update_book(_book(0.301, 0.302, T0 + 10_000))
    (tp,) = await broker.sync(T0 + 10_000)
    assert tp.order.client_order_id == "tp" and tp.fills[0].price == 0.30 and tp.fills[0].is_maker
    broker.update_book(_book(0.288, 0.289, T0 + 15_000))
    (entry,) = await broker.sync(T0 + 15_000)
    assert entry.order.client_order_id == "e" and entry.fills[0].price == 0.29 and entry.fills[0].is_maker


def test_no_book_is_retryable() -> None:
    with pytest.raises(RetryableOrderError):
        MODEL.market(Side.BUY, 1.0, bid=float("nan"), ask=1.0)


async def test_market_order_fills_at_once_with_one_fill() -> None:
    broker = PaperBroker(MODEL)
    broker.update_book(make_batch({"DOGE/USDT": 0.3}))
    update = await broker.submit(make_intent(quantity=Decimal("100")), T0)
    assert update.order.status is OrderStatus.FILLED and update.order.filled_qty == Decimal("100")
    (fill,) = update.fills
    assert fill.price == pytest.approx(0.3 * 1.0005 * 1.001)
    assert fill.fee_quote == pytest.approx(fill.price * 100 * 0.001)
    assert fill.trace_id == "0123456789abcdef"


async def test_order_and_trade_ids_carry_the_prefix_and_repeat_without_one() -> None:
    """An engine gives its run id (ids unique in a journal that outlives restarts); a backtest
    keeps the plain prefix, so the same backtest run twice journals the same ids."""

    async def ids(broker: PaperBroker) -> tuple[str | None, str]:
        broker.update_book(make_batch({"DOGE/USDT": 0.3}))
        update = await broker.submit(make_intent(), T0)
        return update.order.exchange_order_id, update.fills[0].trade_id

    assert await ids(PaperBroker(MODEL, id_prefix="paper-run1")) == ("paper-run1-1", "paper-run1-t1")
    assert await ids(PaperBroker(MODEL)) == await ids(PaperBroker(MODEL)) == ("paper-1", "paper-t1")


async def test_duplicate_client_id_is_refused() -> None:
    broker = PaperBroker(MODEL)
    broker.update_book(make_batch({"DOGE/USDT": 0.3}))
    await broker.submit(make_intent(), T0)
    with pytest.raises(NonRetryableOrderError, match="duplicate"):
        await broker.submit(make_intent(), T0)


async def test_a_coin_missing_from_the_latest_batch_fills_at_its_last_quote() -> None:
    """Binance's `!ticker@arr` carries only the symbols that changed that second, and a stalled
    stream gives empty heartbeats. The book was replaced by each batch: a held coin that did
    not trade that second had no book, and its paper exit was refused "no book" (an order
    error, every retry) where the core priced it and a live market sell would fill."""
    broker = PaperBroker(MODEL)
    broker.update_book(make_batch({"DOGE/USDT": 0.3, "PEPE/USDT": 1.0}))
    broker.update_book(make_batch({"PEPE/USDT": 1.1}, T0 + 1000))
    broker.update_book(make_batch({}, T0 + 2000))  # a heartbeat
    assert broker.quote("DOGE/USDT") == pytest.approx((0.3 * 0.9995, 0.3 * 1.0005))
    assert broker.quote("PEPE/USDT") == pytest.approx((1.1 * 0.9995, 1.1 * 1.0005))  # the newer batch's
    assert broker.quote("SHIB/USDT") != broker.quote("SHIB/USDT")  # never quoted: NaNs
    update = await broker.submit(make_intent(side=Side.SELL, quantity=Decimal("100")), T0 + 2000)
    assert update.order.status is OrderStatus.FILLED
    assert update.fills[0].price == pytest.approx(0.3 * 0.9995 * 0.999)
    broker.update_book(make_batch({"DOGE/USDT": 0.31}, T0 + 3000))  # back in a batch: its new quote
    assert broker.quote("DOGE/USDT") == pytest.approx((0.31 * 0.9995, 0.31 * 1.0005))
    assert broker.quote("PEPE/USDT") == pytest.approx((1.1 * 0.9995, 1.1 * 1.0005))


async def test_market_order_without_book_is_retryable() -> None:
    with pytest.raises(RetryableOrderError):
        await PaperBroker(MODEL).submit(make_intent(), T0)


async def test_resting_limit_fills_when_crossed_and_stale_one_expires() -> None:
    broker = PaperBroker(MODEL)
    broker.update_book(make_batch({"DOGE/USDT": 0.3, "PEPE/USDT": 0.3}))
    a = await broker.submit(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.29"), client_order_id="a", expires_ms=T0 + 30_000), T0)
    b = await broker.submit(
        make_intent("PEPE/USDT", order_type=OrderType.LIMIT, price=Decimal("0.29"), client_order_id="b", expires_ms=T0 + 30_000), T0
    )
    assert a.order.status is b.order.status is OrderStatus.OPEN and not a.fills
    assert len(await broker.open_orders()) == 2
    broker.update_book(make_batch({"DOGE/USDT": 0.28, "PEPE/USDT": 0.3}))
    (filled,) = await broker.sync(T0 + 10_000)
    assert filled.order.client_order_id == "a" and filled.fills[0].price == 0.29 and filled.fills[0].is_maker
    assert await broker.sync(T0 + 30_000) == []  # stale, not crossed: the router cancels it
    (stale,) = broker.expired(T0 + 30_000)
    (expired,) = await OrderRouter(broker, RecordingSink()).sync(T0 + 30_000)
    assert stale.client_order_id == expired.order.client_order_id == "b" and expired.order.status is OrderStatus.CANCELED
    assert await broker.open_orders() == []
    again = await broker.cancel("PEPE/USDT", "b", T0 + 31_000)  # idempotent on a terminal order
    assert again.order.status is OrderStatus.CANCELED


async def test_open_orders_and_sync_see_only_resting_orders_in_placement_order() -> None:
    """Filled and cancelled orders leave the resting set (sync walks that set, not the history)."""
    broker = PaperBroker(MODEL)
    broker.update_book(make_batch({"DOGE/USDT": 0.3}))
    for i in range(20):
        await broker.submit(make_intent(quantity=Decimal("1"), client_order_id=f"m{i}"), T0)
    for cid in ("r1", "r2", "r3"):
        await broker.submit(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2"), client_order_id=cid), T0)
    await broker.cancel("DOGE/USDT", "r2", T0 + 1)
    assert [o.client_order_id for o in await broker.open_orders()] == ["r1", "r3"]
    broker.update_book(make_batch({"DOGE/USDT": 0.19}))
    filled = await broker.sync(T0 + 2)
    assert [u.order.client_order_id for u in filled] == ["r1", "r3"]
    assert await broker.open_orders() == [] and await broker.sync(T0 + 3) == []


class _SyncCounted(PaperBroker):
    """A paper broker that counts the syncs it is asked for."""

    def __init__(self) -> None:
        super().__init__(MODEL)
        self.asked = 0

    async def sync(self, now_ms: int) -> list[OrderUpdate]:
        self.asked += 1
        return await super().sync(now_ms)


async def test_a_paper_broker_at_rest_is_one_a_sync_has_nothing_from() -> None:
    """`at_rest` (the router then skips the sync) holds exactly while nothing rests: a walk of
    resting limits placed, filled and expired, each step's at_rest beside what the whole sync
    and expiry say; a subclass that brings its own sync is never at rest, so it is always asked."""
    broker = PaperBroker(MODEL)
    broker.update_book(_book(0.294, 0.296))
    assert broker.at_rest() and await broker.sync(T0) == [] and broker.expired(T0) == []
    for side, price, cid in ((Side.SELL, "0.30", "tp"), (Side.BUY, "0.29", "e")):
        intent = make_intent(side=side, order_type=OrderType.LIMIT, price=Decimal(price), client_order_id=cid)
        await broker.submit(replace(intent, expires_ms=T0 + 20_000), T0)
        assert not broker.at_rest()
    for i, (bid, ask) in enumerate([(0.295, 0.296), (0.301, 0.302), (0.295, 0.296), (0.295, 0.296)], start=1):
        now = T0 + i * 10_000
        broker.update_book(_book(bid, ask, now))
        rest = broker.at_rest()
        assert rest == (not await broker.open_orders())
        said = await broker.sync(now) + [await broker.cancel("DOGE/USDT", o.client_order_id, now) for o in broker.expired(now)]
        assert said == [] or not rest
    assert broker.at_rest() and await broker.open_orders() == []
    counted = _SyncCounted()
    assert not counted.at_rest()
    await OrderRouter(counted, RecordingSink()).sync(T0)
    assert counted.asked == 1
