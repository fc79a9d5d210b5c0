"""What backtests of one window share: discovery's output, and the signal stage's features.

An optimize study runs one window through the backtester dozens of times with different
trading settings (entry threshold, exits). Discovery reads the market and nothing else:
listings, tickers, social posts; never a position or an order (data flows one way, market ->
discovery -> core). So every trial of a fold computes the same pool, minute for minute, and
discovery is about half of a replayed minute. `WindowReuse` runs the real `Discovery` in a
study's first trial, keeps each batch's `DiscoveryCycle`, and hands those back to later trials
in place of recomputing them; the core, signals, risk, router and paper broker still run in
every trial.

Features, the other big part of a minute, are a pure function of their inputs: the symbols'
bars (the store's candles: `tests/engine/backtest/test_signal_windows.py`), the candidate
info discovery attached, and the bar. `features` maps those inputs, exactly, to the rows the
signal stage computed (`SignalStage.memo`), so a later trial asking the same question gets the
same array back instead of recomputing it; different inputs (a symbol held in one trial only,
ranks that moved differently) are computed as usual.

The market itself is recorded too: each ticker batch the replay market built (immutable
values), the warm-up's batches and the markets listed at each refresh. A later trial reads
them back instead of running `ParquetMarket` again (most of what a replayed minute still cost:
a later trial of three real days, 2.85 -> 1.01 s), and slices
its candles from the store as `HistoryFeed` does (`CandleSlicer`, the same code). This needs
the signals to read the store's own timeframe (1m); a config whose signals read longer bars
builds those from the market's rings, so it replays discovery only.

The replay is only offered to a run with the same inputs: every setting outside `trading`
(discovery, exchange, sim, backtest), the data (directory and candle count), the window and
the run id (trace ids are derived from it). Anything else records afresh. A recorded run journals its
candidate snapshots; a replayed one does not (nothing journals in an optimize trial, and the
replay refuses a journaling sink). `tests/engine/backtest/test_reuse.py` checks that a
replayed trial's trades, fills and equity curve are those of running it from scratch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.backtest.feed import CandleSlicer, HistoryFeed, history_streams
from engine.backtest.history import HistoryIndex
from engine.backtest.stored_bars import StoredBars
from engine.config import HotcoinConfig
from engine.discovery.listings import Announcement
from engine.discovery.pipeline import Discovery, DiscoveryCycle
from engine.discovery.social.source import SocialPost
from engine.domain import Bars, Candle, Market, MinuteVolumes, TickerBatch
from engine.errors import ConfigError
from engine.runtime.discovery_driver import DiscoveryStage
from engine.runtime.feed import MarketFeed
from engine.runtime.snapshot import StreamRow
from engine.signals.bars import BarStore
from engine.signals.stage import FeatureMemo


class _Recording:
    """A real `Discovery`; every batch's result kept, by batch time."""

    def __init__(self, discovery: Discovery, tape: dict[int, DiscoveryCycle]) -> None:
        self._discovery = discovery
        self._tape = tape

    def on_batch(self, batch: TickerBatch, *, journal: bool = True) -> DiscoveryCycle:
        cycle = self._discovery.on_batch(batch, journal=journal)
        self._tape[batch.ts_ms] = cycle
        return cycle

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> object:
        return self._discovery.on_markets(markets, now_ms)

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> object:
        return self._discovery.on_posts(posts, now_ms)

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> object:
        return self._discovery.on_announcements(announcements, now_ms)

    def seed_day(self, volumes: MinuteVolumes) -> object:
        return self._discovery.seed_day(volumes)


class _Replay:
    """The recorded results, batch by batch; slow inputs were folded in when they were recorded."""

    def __init__(self, tape: dict[int, DiscoveryCycle]) -> None:
        self._tape = tape

    def on_batch(self, batch: TickerBatch, *, journal: bool = True) -> DiscoveryCycle:
        cycle = self._tape.get(batch.ts_ms)  # a replay journals nothing either way
        if cycle is None:  # the key matched, so the feed went off the recorded minutes: a bug, not bad input
            raise RuntimeError(f"no recorded discovery result for the batch at {batch.ts_ms}; the replay diverged")
        return cycle

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> object:
        return None

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> object:
        return None

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> object:
        return None

    def seed_day(self, volumes: MinuteVolumes) -> object:
        return None


@dataclass
class _MarketTape:
    """What a run read from its market, in order: every batch, and the markets at each refresh
    (with the time of the feed's latest batch then)."""

    warmup: list[TickerBatch] = field(default_factory=list)
    batches: list[TickerBatch] = field(default_factory=list)
    markets: list[tuple[int | None, dict[str, Market]]] = field(default_factory=list)


class _RecordingFeed(MarketFeed):
    """A `HistoryFeed`, with what it served kept on a tape."""

    def __init__(self, feed: HistoryFeed, tape: _MarketTape) -> None:
        self._feed = feed
        self._tape = tape
        self._now: int | None = None

    async def warmup(self, step_ms: int) -> AsyncIterator[TickerBatch]:
        async for batch in self._feed.warmup(step_ms):
            self._tape.warmup.append(batch)
            self._now = batch.ts_ms
            yield batch

    async def next_batch(self) -> TickerBatch:
        batch = await self._feed.next_batch()
        self._tape.batches.append(batch)
        self._now = batch.ts_ms
        return batch

    async def markets(self) -> dict[str, Market]:
        markets = await self._feed.markets()
        self._tape.markets.append((self._now, markets))
        return markets

    async def candles(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> list[Candle]:
        return await self._feed.candles(symbol, timeframe, limit, after_ms=after_ms)

    async def closed_bars(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> Bars:
        return await self._feed.closed_bars(symbol, timeframe, limit, after_ms=after_ms)

    def bar_store(self, timeframe: str) -> BarStore | None:
        return self._feed.bar_store(timeframe)

    def day_volumes(self, end_ms: int) -> MinuteVolumes:
        return self._feed.day_volumes(end_ms)

    def book(self, symbol: str) -> tuple[float, float]:
        return self._feed.book(symbol)

    def streams(self, now_ms: int) -> tuple[StreamRow, ...]:
        return self._feed.streams(now_ms)

    def data_age_s(self, now_ms: int) -> float | None:
        return self._feed.data_age_s(now_ms)


class _ReplayFeed(MarketFeed):
    """The recorded market, batch by batch; candles sliced from the store at each batch's time."""

    def __init__(self, tape: _MarketTape, slicer: CandleSlicer, index: HistoryIndex) -> None:
        self._tape = tape
        self._slicer = slicer
        self._index = index
        self._next = 0
        self._next_markets = 0
        self._batch: TickerBatch | None = None

    async def warmup(self, step_ms: int) -> AsyncIterator[TickerBatch]:
        for batch in self._tape.warmup:
            self._batch = batch
            yield batch

    async def next_batch(self) -> TickerBatch:
        if self._next >= len(self._tape.batches):
            raise RuntimeError("the replay asked for a batch past the recorded window; the replay diverged")
        batch = self._batch = self._tape.batches[self._next]
        self._next += 1
        return batch

    @property
    def _now(self) -> int | None:
        return None if self._batch is None else self._batch.ts_ms

    async def markets(self) -> dict[str, Market]:
        tape, k = self._tape.markets, self._next_markets
        if k >= len(tape) or tape[k][0] != self._now:
            raise RuntimeError(f"no recorded markets for the refresh at {self._now}; the replay diverged")
        self._next_markets += 1
        return tape[k][1]

    async def candles(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> list[Candle]:
        return self._slicer.candles(symbol, timeframe, limit, after_ms, self._sliced(symbol, timeframe))

    async def closed_bars(self, symbol: str, timeframe: str, limit: int, *, after_ms: int | None = None) -> Bars:
        return self._slicer.bars(symbol, timeframe, limit, after_ms, self._sliced(symbol, timeframe))

    def bar_store(self, timeframe: str) -> BarStore | None:
        """The store, read in place, as the recording run's feed offered it (`HistoryFeed.bar_store`)."""
        return StoredBars(self._slicer) if timeframe == self._index.timeframe else None

    def _sliced(self, symbol: str, timeframe: str) -> int:
        """The replay's time, where the store's slices answer for `symbol` at `timeframe`."""
        now = self._now
        if now is None or not self._slicer.covers(symbol, timeframe, now):
            raise RuntimeError(f"{symbol} {timeframe} candles at {now} are not in the store's slices; the replay diverged")
        return now

    def book(self, symbol: str) -> tuple[float, float]:
        """The latest batch's quotes: the replay market printed them by the formula its `book` uses."""
        batch = self._batch
        if batch is None or symbol not in batch.symbols:
            raise RuntimeError(f"no recorded quote for {symbol}")
        i = batch.symbols.index(symbol)
        return float(batch.bid[i]), float(batch.ask[i])

    def streams(self, now_ms: int) -> tuple[StreamRow, ...]:
        return history_streams(self._index, now_ms)

    def data_age_s(self, now_ms: int) -> float:
        return self._index.data_age_s(now_ms)


class WindowReuse:
    """Record discovery in the first run of a window; replay it in the runs after (see above).

    One instance per process and study fold: it holds one window's results, discovery's and
    the market's, about 6 KB a minute (a fold of ten days: ~90 MB)."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._tape: dict[int, DiscoveryCycle] = {}
        self._market: _MarketTape | None = None  # None: the recording run built its candles from rings
        self._complete = False
        self.replays = 0  # runs served from the recording
        self.market_replays = 0  # of those, runs that also read the recorded market
        self.features: FeatureMemo = {}  # for the recorded window only: cleared with the recording

    @staticmethod
    def key(config: HotcoinConfig, data_dir: Path, data_rows: int, start_ms: int, end_ms: int, run_id: str) -> str:
        """Everything discovery's output depends on: settings outside `trading`, the data (its
        directory and candle count: a `hotcoin collect` appending meanwhile changes it), the
        window and the run id."""
        settings = config.model_dump_json(exclude={"trading"})
        return f"{Path(data_dir).resolve()}|{data_rows}|{start_ms}|{end_ms}|{run_id}|{settings}"

    def stage(self, key: str, build: Callable[[], Discovery], *, journaled: bool) -> DiscoveryStage:
        """The discovery a run should use: a replay when `key` was recorded whole, else a
        recording of `build()` (which replaces any earlier recording)."""
        if self._complete and key == self._key:
            if journaled:
                raise ConfigError("a replayed discovery journals no candidate snapshots; journal a fresh run instead")
            self.replays += 1
            return _Replay(self._tape)
        self._key, self._tape, self._market, self._complete = key, {}, None, False
        self.features = {}
        return _Recording(build(), self._tape)

    def feed(
        self, key: str, build: Callable[[], HistoryFeed], slicer: CandleSlicer, *, sliced: bool
    ) -> MarketFeed:
        """The market a run should read, after `stage` chose for `key`: the recorded one when
        there is one and the run's signals read the store's timeframe (`sliced`), else
        `build()`, recorded if this run is recording and `sliced`."""
        if self._complete and key == self._key:
            if sliced and self._market is not None:
                self.market_replays += 1
                return _ReplayFeed(self._market, slicer, slicer.index)
            return build()
        if key == self._key and sliced:
            self._market = _MarketTape()
            return _RecordingFeed(build(), self._market)
        return build()

    def finished(self, key: str) -> None:
        """The run under `key` reached its end: its recording may be replayed."""
        if key == self._key:
            self._complete = True
