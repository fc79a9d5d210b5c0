"""A ccxt.pro instance as one `engine.market.stream.Connection`, and the watch calls it runs.

ccxt resolves a watch only if one is pending when the message arrives; an update that lands
between two calls stays in ccxt's cache unannounced until the *next* message (an order's
FILLED right after its NEW would wait for some later, unrelated order event). So
`CcxtConnection` keeps the watch armed with a pump task that re-calls it in the same step it
receives a result, and merges results the consumer has not taken yet (`merge_*`) instead of
dropping or queueing them without bound.

A message the call cannot make sense of (`MarketDataError`) costs that message only: the pump
keeps the watch armed and `next()` raises the error once. Any other error ends the pump, and
`next()` raises it until `ResilientStream` replaces the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engine.domain import Order
from engine.errors import MarketDataError
from engine.market.ccxt_client import EndpointBinance
from engine.market.stream import Connection

T = TypeVar("T")


class CcxtConnection(Connection[T]):
    """A ccxt.pro instance bound to one `watch_*` call, kept armed by a pump task."""

    def __init__(
        self,
        exchange: EndpointBinance,
        call: Callable[[EndpointBinance], Awaitable[T]],
        merge: Callable[[T, T], T],
    ) -> None:
        self.exchange = exchange
        self._call = call
        self._merge = merge
        self._ready: list[T] = []  # at most one item: later results are merged into it
        self._error: BaseException | None = None
        self._bad: MarketDataError | None = None  # the last bad message not yet reported
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            while True:
                try:
                    item = await self._call(self.exchange)
                except MarketDataError as exc:
                    self._bad = exc  # ending the pump here would wedge the stream on this error
                else:
                    self._ready[:] = [self._merge(self._ready[0], item)] if self._ready else [item]
                self._wake.set()
        except Exception as exc:
            self._error = exc
            self._wake.set()

    async def next(self) -> T:
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._run())
        while not self._ready and self._bad is None and self._error is None:
            self._wake.clear()
            await self._wake.wait()
        if self._ready:
            return self._ready.pop()
        if self._bad is not None:
            bad, self._bad = self._bad, None
            raise bad
        assert self._error is not None
        raise self._error

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.exchange.close()


def merge_tickers(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {**old, **new}


def merge_orders(old: list[Order], new: list[Order]) -> list[Order]:
    return old + new


def latest(old: T, new: T) -> T:
    return new


def merge_candles(
    old: tuple[list[list[Any]], int], new: tuple[list[list[Any]], int]
) -> tuple[list[list[Any]], int]:
    rows = {int(r[0]): r for r in old[0]}
    rows.update({int(r[0]): r for r in new[0]})
    return [rows[k] for k in sorted(rows)], max(old[1], new[1])


async def watch_all_tickers(ex: EndpointBinance) -> dict[str, Any]:
    tickers = await ex.watch_tickers()
    if not isinstance(tickers, dict):
        raise MarketDataError(f"watch_tickers returned {type(tickers).__name__}, expected a dict")
    return tickers


async def subscribe_user_data(conn: Connection[Any]) -> None:
    """Subscribe the user-data stream and wait for the exchange's confirmation."""
    assert isinstance(conn, CcxtConnection)
    await conn.exchange.ensure_user_data_stream_ws_subscribe_signature("spot")

