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

The replay is only offered to a run with the same inputs: every setting outside `trading`
(discovery, exchange, sim, backtest), the data (directory and candle count), the window and
the run id (trace ids are derived from it). Anything else records afresh. A recorded run journals its
candidate snapshots; a replayed one does not (nothing journals in an optimize trial, and the
replay refuses a journaling sink). `tests/engine/backtest/test_reuse.py` checks that a
replayed trial's trades, fills and equity curve are those of running it from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from engine.config import HotcoinConfig
from engine.discovery.listings import Announcement
from engine.discovery.pipeline import Discovery, DiscoveryCycle
from engine.discovery.social.source import SocialPost
from engine.domain import Market, TickerBatch
from engine.errors import ConfigError
from engine.runtime.cycle import DiscoveryStage
from engine.signals.stage import FeatureMemo


class _Recording:
    """A real `Discovery`; every batch's result kept, by batch time."""

    def __init__(self, discovery: Discovery, tape: dict[int, DiscoveryCycle]) -> None:
        self._discovery = discovery
        self._tape = tape

    def on_batch(self, batch: TickerBatch) -> DiscoveryCycle:
        cycle = self._discovery.on_batch(batch)
        self._tape[batch.ts_ms] = cycle
        return cycle

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> object:
        return self._discovery.on_markets(markets, now_ms)

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> object:
        return self._discovery.on_posts(posts, now_ms)

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> object:
        return self._discovery.on_announcements(announcements, now_ms)


class _Replay:
    """The recorded results, batch by batch; slow inputs were folded in when they were recorded."""

    def __init__(self, tape: dict[int, DiscoveryCycle]) -> None:
        self._tape = tape

    def on_batch(self, batch: TickerBatch) -> DiscoveryCycle:
        cycle = self._tape.get(batch.ts_ms)
        if cycle is None:  # the key matched, so the feed went off the recorded minutes: a bug, not bad input
            raise RuntimeError(f"no recorded discovery result for the batch at {batch.ts_ms}; the replay diverged")
        return cycle

    def on_markets(self, markets: Iterable[Market], now_ms: int) -> object:
        return None

    def on_posts(self, posts: Iterable[SocialPost], now_ms: int) -> object:
        return None

    def on_announcements(self, announcements: Iterable[Announcement], now_ms: int) -> object:
        return None


class WindowReuse:
    """Record discovery in the first run of a window; replay it in the runs after (see above).

    One instance per process and study fold: it holds one window's results, about a few KB a
    minute (a fold of ten days: tens of MB)."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._tape: dict[int, DiscoveryCycle] = {}
        self._complete = False
        self.replays = 0  # runs served from the recording
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
        self._key, self._tape, self._complete = key, {}, False
        self.features = {}
        return _Recording(build(), self._tape)

    def finished(self, key: str) -> None:
        """The run under `key` reached its end: its recording may be replayed."""
        if key == self._key:
            self._complete = True
