"""`CcxtConnection` under `ResilientStream`: one bad message costs that message, not the stream."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import ccxt
import pytest

from engine.errors import MarketDataError
from engine.market.backoff import RateLimitBackoff, ReconnectBackoff
from engine.market.ccxt_stream import CcxtConnection, merge_tickers, watch_all_tickers
from engine.market.fake import ManualClock
from engine.market.stream import ResilientStream


class ScriptedExchange:
    """Stands in for a ccxt.pro instance: `watch_tickers` answers what was pushed, in order."""

    def __init__(self, *replies: Any) -> None:
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        self.push(*replies)

    def push(self, *replies: Any) -> None:
        for reply in replies:
            self.replies.put_nowait(reply)

    async def watch_tickers(self) -> Any:
        reply = await self.replies.get()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def close(self) -> None:
        pass


def ticker_stream(*exchanges: ScriptedExchange) -> tuple[ResilientStream[dict[str, Any]], list[ScriptedExchange]]:
    """A ticker stream that dials `exchanges` in order; the list records those dialled."""
    dialled: list[ScriptedExchange] = []

    def connect() -> CcxtConnection[dict[str, Any]]:
        dialled.append(exchanges[len(dialled)])
        exchange: Any = dialled[-1]
        return CcxtConnection(exchange, watch_all_tickers, merge_tickers)

    stream: ResilientStream[dict[str, Any]] = ResilientStream(
        "tickers",
        connect,
        clock=ManualClock(auto=True),
        backoff=ReconnectBackoff(rng=random.Random(0)),
        rate=RateLimitBackoff(),
        max_age_ms=0,
    )
    return stream, dialled


async def test_a_bad_message_costs_that_message_and_the_stream_goes_on() -> None:
    exchange = ScriptedExchange({"BTC/USDT": {"last": 1.0}})
    stream, dialled = ticker_stream(exchange)
    assert await stream.next() == {"BTC/USDT": {"last": 1.0}}
    exchange.push([])  # not a ticker dict
    with pytest.raises(MarketDataError, match="expected a dict"):
        await stream.next()
    exchange.push({"BTC/USDT": {"last": 3.0}})
    assert await asyncio.wait_for(stream.next(), 5) == {"BTC/USDT": {"last": 3.0}}  # not the same error again
    assert len(dialled) == 1  # the connection was fine all along
    await stream.close()


async def test_a_drop_after_a_bad_message_still_redials() -> None:
    after = {"ETH/USDT": {"last": 2.0}}
    stream, dialled = ticker_stream(ScriptedExchange([], ccxt.NetworkError("closing code 1006")), ScriptedExchange(after))
    with pytest.raises(MarketDataError):
        await stream.next()
    assert await asyncio.wait_for(stream.next(), 5) == after
    assert len(dialled) == 2 and stream.health.reconnects == 1
    await stream.close()
