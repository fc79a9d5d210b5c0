"""Candle fetches remembered for most of a bar, so the same bars are never fetched twice in one.

Discovery and signals ask for the same recent candles of a hot symbol many times a minute;
each `klines` call costs request weight, and weight spent twice brings a 429 closer. Within
one bar the answer cannot change except for the open bar's last tick, so an entry lives for
0.8 x the bar length (a 1m fetch is reused for 48 s, then refreshed before the next bar is
long under way). Entries are bounded (LRU, 500 by default) so a week of scanning thousands
of symbols keeps memory flat. Concurrent identical requests share one fetch. Time comes from
the injected `Clock`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.domain import Candle
from engine.domain.candle import timeframe_ms
from engine.market.backoff import Clock

CandleKey = tuple[str, str, int | None, int]  # symbol, timeframe, since_ms, limit


@dataclass(frozen=True, slots=True)
class _Entry:
    candles: tuple[Candle, ...]
    expires_ms: int


class CandleCache:
    """LRU of candle fetches keyed by (symbol, timeframe, since_ms, limit), TTL 0.8 bar."""

    def __init__(self, clock: Clock, *, max_entries: int = 500, ttl_fraction: float = 0.8) -> None:
        if max_entries < 1 or not 0 < ttl_fraction <= 1:
            raise ValueError(f"need max_entries >= 1 and 0 < ttl_fraction <= 1; got {max_entries}, {ttl_fraction}")
        self._clock = clock
        self.max_entries = max_entries
        self.ttl_fraction = ttl_fraction
        self._entries: OrderedDict[CandleKey, _Entry] = OrderedDict()
        self._inflight: dict[CandleKey, asyncio.Future[tuple[Candle, ...]]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: CandleKey, fetch: Callable[[], Awaitable[list[Candle]]]) -> list[Candle]:
        """The cached candles for `key`, or `fetch()`'s (stored) if absent or expired."""
        now = self._clock.now_ms()
        entry = self._entries.get(key)
        if entry is not None and now < entry.expires_ms:
            self._entries.move_to_end(key)
            self.hits += 1
            return list(entry.candles)
        pending = self._inflight.get(key)
        if pending is not None:
            self.hits += 1
            return list(await asyncio.shield(pending))
        self.misses += 1
        future: asyncio.Future[tuple[Candle, ...]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            candles = tuple(await fetch())
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # consumed here; waiters re-raise it
            raise
        else:
            future.set_result(candles)
        finally:
            del self._inflight[key]
        ttl = int(timeframe_ms(key[1]) * self.ttl_fraction)
        self._entries[key] = _Entry(candles, self._clock.now_ms() + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return list(candles)
