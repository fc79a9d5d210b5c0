"""FakeGateway: the scriptable double others test against behaves like a small exchange."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.domain import OrderStatus, OrderType
from engine.errors import NonRetryableOrderError, RetryableOrderError
from engine.market.fake import FakeGateway, ManualClock
from engine.market.gateway import Balance, Gateway, StreamHealth
from tests.kit.domain import make_batch, make_candle, make_intent, make_market


def make_fake() -> FakeGateway:
    return FakeGateway(
        {"DOGE/USDT": make_market("DOGE/USDT")}, balances={"USDT": Balance(Decimal(100), Decimal(0))}
    )


def test_it_is_a_gateway() -> None:
    assert isinstance(make_fake(), Gateway)


async def test_tickers_are_delivered_in_order_and_fetch_gives_the_latest() -> None:
    fake = make_fake()
    with pytest.raises(NonRetryableOrderError, match="push_tickers"):
        await fake.fetch_tickers()
    fake.push_tickers(make_batch({"DOGE/USDT": 0.3}))
    fake.push_tickers(make_batch({"DOGE/USDT": 0.31}))
    assert (await fake.watch_tickers()).last[0] == 0.3
    assert (await fake.fetch_tickers()).last[0] == 0.31
    assert (await fake.watch_tickers()).last[0] == 0.31


async def test_candles_stream_and_history() -> None:
    fake = make_fake()
    candles = [make_candle(open_ms=t * 60_000) for t in range(5)]
    fake.push_candles(candles)
    assert await fake.watch_candles("DOGE/USDT", "1m") == candles
    assert await fake.fetch_candles("DOGE/USDT", "1m", limit=2) == candles[-2:]
    assert await fake.fetch_candles("DOGE/USDT", "1m", since_ms=120_000, limit=2) == candles[2:4]


async def test_market_orders_fill_at_the_last_price_and_leave_a_fill() -> None:
    fake = make_fake()
    fake.push_tickers(make_batch({"DOGE/USDT": 0.25}))
    order = await fake.create_order(make_intent(quantity=Decimal("100.5")))
    assert order.status is OrderStatus.FILLED and order.average_price == 0.25
    assert order.quantity == Decimal(100)  # floored to stepSize 1
    assert [f.price for f in await fake.fetch_my_trades("DOGE/USDT")] == [0.25]
    assert fake.created[0].client_order_id == order.client_order_id


async def test_limit_orders_rest_until_filled_or_cancelled() -> None:
    fake = make_fake()
    watcher = asyncio.ensure_future(fake.watch_orders())
    limit = await fake.create_order(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2")))
    assert limit.status is OrderStatus.OPEN
    assert await fake.fetch_open_orders("DOGE/USDT") == [limit]
    filled = fake.fill_order(limit.client_order_id)
    assert (await watcher)[0] == filled and filled.status is OrderStatus.FILLED
    other = await fake.create_order(make_intent(client_order_id="c2", order_type=OrderType.LIMIT, price=Decimal("0.2")))
    assert (await fake.cancel_order("DOGE/USDT", "c2")).status is OrderStatus.CANCELED
    assert fake.cancelled == [other.client_order_id]
    with pytest.raises(NonRetryableOrderError) as caught:
        await fake.cancel_order("DOGE/USDT", "c2")
    assert caught.value.code == -2011


async def test_a_duplicate_open_client_id_is_refused() -> None:
    fake = make_fake()
    await fake.create_order(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2")))
    with pytest.raises(NonRetryableOrderError, match="duplicate"):
        await fake.create_order(make_intent(order_type=OrderType.LIMIT, price=Decimal("0.2")))


async def test_scripted_failures_come_in_order_then_calls_succeed() -> None:
    fake = make_fake()
    fake.fail_next("fetch_balance", RetryableOrderError("timeout"))
    with pytest.raises(RetryableOrderError):
        await fake.fetch_balance()
    assert await fake.fetch_balance() == {"USDT": Balance(Decimal(100), Decimal(0))}
    assert fake.calls == ["fetch_balance", "fetch_balance"]


async def test_balance_updates_health_and_close() -> None:
    fake = make_fake()
    fake.push_balance({"DOGE": Balance(Decimal(1), Decimal(0))})
    assert await fake.watch_balance() == {"DOGE": Balance(Decimal(1), Decimal(0))}
    fake.set_health(StreamHealth("tickers", connected=True, last_message_ms=5))
    assert fake.health()["tickers"].stale_ms(10) == 5
    await fake.close()
    with pytest.raises(RuntimeError, match="closed"):
        await fake.fetch_balance()


async def test_manual_clock_wakes_sleepers_only_when_their_time_comes() -> None:
    clock = ManualClock(start_ms=0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.ensure_future(sleeper("a", 1)), asyncio.ensure_future(sleeper("b", 5))]
    await asyncio.sleep(0)
    clock.advance(2)
    await asyncio.sleep(0)
    assert woke == ["a"] and clock.sleepers == 1
    clock.advance(3)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b"] and clock.now_ms() == 5000
