"""`ThreadedEngineClient`: calls cross to the engine's loop, and a call the engine's loop never
gets to (the engine stopping as the console quits) leaves no coroutine behind."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

from engine.domain import Candle
from engine.runtime.threaded import ThreadedEngineClient


class Inner:
    """The engine-side client: only what these tests call."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        self.asked.append(symbol)
        if symbol == "BAD/USDT":
            raise ValueError("unknown symbol BAD/USDT")
        await asyncio.sleep(0)
        return []

    async def updates(self) -> AsyncIterator[int]:
        for n in (1, 2):
            yield n


@pytest.fixture
def engine_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def test_calls_run_on_the_engine_loop_and_bring_back_results_and_errors(engine_loop: asyncio.AbstractEventLoop) -> None:
    inner = Inner()
    client = ThreadedEngineClient(inner, engine_loop)  # type: ignore[arg-type]
    assert await client.candles("DOGE/USDT", "1m", 10) == []
    with pytest.raises(ValueError, match="unknown symbol BAD/USDT"):
        await client.candles("BAD/USDT", "1m", 10)
    got: list[object] = [n async for n in client.updates()]
    assert got == [1, 2] and inner.asked == ["DOGE/USDT", "BAD/USDT"]


async def test_a_call_the_stopped_engine_never_runs_leaves_no_unawaited_coroutine(engine_loop: asyncio.AbstractEventLoop) -> None:
    inner = Inner()
    client = ThreadedEngineClient(inner, engine_loop)  # type: ignore[arg-type]
    stopped = threading.Event()

    def stop() -> None:
        engine_loop.stop()
        stopped.set()

    engine_loop.call_soon_threadsafe(stop)
    assert stopped.wait(5)
    await asyncio.sleep(0.05)  # the loop has left run_forever: nothing scheduled now runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.candles("DOGE/USDT", "1m", 10), 0.1)  # the console gives up
        engine_loop.close()  # drops what was scheduled and never ran
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert inner.asked == []  # and nothing ran later on
