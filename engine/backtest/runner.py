"""The backtest runner: history through the very code that trades, on a virtual clock.

The market is the candle store replayed minute by minute (`ParquetMarket` behind a
`HistoryFeed`), and each batch goes through `engine.runtime.cycle.TradingCycle`, the object
the live `Engine` steps too: discovery, candles, state machine, `TradingCore`, `OrderRouter`
and a `PaperBroker` with the shared `FillModel`, in one order. What the runner adds is what a
backtest reports: the trade log (fills grouped into round trips) and the equity curve.
`tests/engine/backtest/test_parity.py` runs the same history through `Engine` and through this
runner and compares the journals event for event.

The replay sees the market once a minute, so discovery's slot and per-batch settings are
fitted to that cadence first (`engine.backtest.cadence`; the report lists what changed).

Point in time: the replay market holds only candles that have closed by the clock's time, the
universe is the markets listed by then (a pair appears with its first candle), and warm-up
starts `warmup_minutes` before `start`: a decision at time t depends on nothing after t.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.backtest import discovery_process
from engine.backtest.cadence import replay_cadence
from engine.backtest.feed import CandleSlicer, HistoryFeed
from engine.backtest.history import HistoryIndex, HistoryStore, index_history
from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.discovery.pipeline import Discovery
from engine.domain import Fill, OrderPurpose
from engine.domain.candle import timeframe_ms
from engine.domain.ticker import TickerBatch, TickerRun
from engine.errors import ConfigError
from engine.journal.events import BACKTEST_MODE, EventSink
from engine.journal.sinks import NullSink
from engine.runtime.discovery_driver import DiscoveryStage
from engine.runtime.feed import MarketFeed
from engine.sim.parquet_source import ParquetMarket, SharedDays, TapeLink, replay_files
from engine.timefmt import span

if TYPE_CHECKING:
    from engine.backtest.benchmark import MarketChange
    from engine.backtest.reuse import WindowReuse
    from engine.execution.broker import OrderUpdate
    from engine.portfolio.positions import BookChange
    from engine.runtime.cycle import TradingCycle
    from engine.signals.scorer import ModelLoad
    from engine.trading import TradingCore

MINUTE_MS = 60_000
PROGRESS_EVERY = 240  # cycles (4 replayed hours) between progress reports: about half a second of replay here


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Where a running replay stands, for a progress bar: reported at the first cycle, every
    `PROGRESS_EVERY` cycles and at the last (a month of 1m history runs for a minute or more)."""

    now_ms: int
    start_ms: int
    end_ms: int
    cycles: int
    trades: int  # round trips closed so far

    @property
    def fraction(self) -> float:
        span = self.end_ms - self.start_ms
        return 1.0 if span <= 0 else min(1.0, max(0.0, (self.now_ms - self.start_ms) / span))


@dataclass(frozen=True, slots=True)
class ExitPart:
    """What one exit took of a position: a sell fill, by its order's purpose, or the crumbs
    written off as dust. A trade's take-profit tier and the trailing stop that sold the rest
    made different money; the exits split (`metrics.by_exit_reason`) credits each its own."""

    reason: str  # the order's purpose (take_profit, trailing_stop, signal_exit, ...) or "dust"
    rules: tuple[str, ...]  # a signal exit's rules that fired
    ts_ms: int
    quantity: float  # coins it took from the position
    pnl: float  # realised by it, fees included: the position book's figure for it
    fees: float  # its own fee plus the entry fees the quantity it took carried (as the book charges them)


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip: every fill of one position, entry to last exit."""

    symbol: str
    trace_id: str
    opened_ms: int
    closed_ms: int
    quantity: float
    entry_price: float  # quantity-weighted over entry fills
    exit_price: float  # quantity-weighted over exit fills
    fees: float
    pnl: float  # realised, fees included (the position book's figure)
    exit_reason: str
    exit_rules: tuple[str, ...] = ()  # a signal exit's rules (momentum_fade, heat_decay, reversal)
    exits: tuple[ExitPart, ...] = ()  # each exit's share: their pnl adds up to `pnl`

    @property
    def return_pct(self) -> float:
        cost = self.quantity * self.entry_price
        return 100.0 * self.pnl / cost if cost else 0.0


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A position still held when the window ends. The final equity holds it at its mark (the
    last bid, or a halted pair's last close) before any exit fee or slippage, so it moves the
    total return without being a trade of the table, the win rate or the profit factor: the
    report shows it apart, with the trace that explains it."""

    symbol: str
    trace_id: str
    opened_ms: int
    quantity: float
    entry_price: float
    mark_price: float
    unrealised_pnl: float  # (mark - entry) x quantity, less the entry fees the held quantity carries
    realised_pnl: float  # of its partial closes so far (a take-profit tier), fees included


@dataclass(frozen=True, slots=True)
class DustWrittenOff:
    """The crumbs of coins written off over the run (`PositionBook.write_off`): what a full
    exit could not sell (below the lot step or the minimum notional), their cost booked as a
    loss. The coins stay on the exchange, but the equity counts them as 0, as live: the
    report says how much that is, since on the April 2021 month it was a quarter of the loss."""

    pnl: float  # the write-offs' realised PnL (cost of the coins and the entry fees they carried)
    count: int
    value: float  # the written-off coins at the last bid of the run: left out of the equity

    def as_dict(self) -> dict[str, float | int | bool]:
        return {"pnl": self.pnl, "count": self.count, "value_at_last_bid": self.value, "in_equity": False}


@dataclass(repr=False)  # asyncio.run's SIGINT bookkeeping reprs the task holding it: ~30 ms of a month's curve and trades
class BacktestResult:
    run_id: str
    start_ms: int
    end_ms: int
    initial_equity: float
    equity_ts: np.ndarray
    equity: np.ndarray
    exposure: np.ndarray
    trades: list[Trade]
    fills: list[Fill]
    open_positions: dict[str, OpenPosition]
    cycles: int
    candles: int
    events: int
    wall_s: float
    symbols: int
    adjusted: tuple[str, ...] = ()  # settings `replay_cadence` fitted to the minute replay
    stats: dict[str, Any] = field(default_factory=dict)
    market: MarketChange | None = None  # buy and hold over the window, when asked for (`run(benchmark=True)`)
    processes: int = 1  # 2: discovery ran in a second process (`engine.backtest.discovery_process`)
    warnings: tuple[str, ...] = ()  # what makes this run less than it asked for (a short warm-up)
    dust: DustWrittenOff = DustWrittenOff(0.0, 0, 0.0)

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1]) if len(self.equity) else self.initial_equity


def window(index: HistoryIndex, config: HotcoinConfig, start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    """The trading window [start, end] on whole minutes, checked against the data."""
    warm = config.backtest.warmup_minutes * MINUTE_MS
    first = -(-index.start_ms // MINUTE_MS) * MINUTE_MS
    start = first + warm if start_ms is None else -(-start_ms // MINUTE_MS) * MINUTE_MS
    end = index.end_ms if end_ms is None else end_ms // MINUTE_MS * MINUTE_MS
    if start < first:
        raise ConfigError(
            f"--from {utc_minute(start)} is before the first candle ({utc_minute(first)}); choose a later start or collect older data"
        )
    if end > index.end_ms:
        end = index.end_ms
    if end <= start:
        raise ConfigError(
            f"the window is empty: start {utc_minute(start)} >= end {utc_minute(end)} "
            f"(the data spans {utc_minute(index.start_ms)} .. {utc_minute(index.end_ms)}); check --from/--to"
        )
    if not index.candles_between(start, end):  # replayed, it read as a market where nothing happened
        [(down, back)] = index.outages(start, end)
        raise ConfigError(
            f"the window {utc_minute(start)} .. {utc_minute(end)} holds no candle: it lies inside an outage of the "
            f"data (no pair has a candle from {utc_minute(down)} to {utc_minute(back)}), so there is nothing to "
            "replay; choose a window with candles in it"
        )
    return start, end


def utc_minute(ms: int) -> str:
    """Epoch ms as "2021-04-02 01:05 UTC": window errors and the progress bar."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _warm_up_warning(start: int, market_start: int, warm_ms: int) -> tuple[str, ...]:
    """A start closer to the data's first candle than the warm-up leaves discovery's windows
    and baselines part empty for their first hour: decisions then differ from a run that
    started earlier, so the report says so rather than a run looking like any other."""
    had = start - market_start
    if had >= warm_ms:
        return ()
    return (
        f"warm-up: {had // MINUTE_MS} of {warm_ms // MINUTE_MS} minutes before --from (the data starts at "
        f"{utc_minute(market_start)}); the first hour decides on part-empty windows. Start at "
        f"{utc_minute(market_start + warm_ms)} or later for a full warm-up",
    )


def _data_warnings(
    index: HistoryIndex, market_start: int, start: int, end: int, asked_end: int | None, regime: str
) -> tuple[str, ...]:
    """What the store makes of this window that a reader of the report must know: pairs that
    list or halt inside it (a file's first candle after the store's first is read as a
    listing, with its heat bonus; a file ending before the others' is a pair halted after
    its last candle), outages inside it (hours without trades that read like a quiet market
    otherwise), a regime pair with no candles, a `--to` past the data."""
    out: list[str] = []
    down = [f"from {utc_minute(a)} to {utc_minute(b)} ({span(b - a)})" for a, b in index.outages(start, end)]
    if down:
        out.append(
            f"outages: no pair has a candle {', '.join(down)}: prices hold at the last close and the state machine "
            "degrades, then blocks entries, as the data goes stale (as it would live); those hours are an exchange "
            "that was down, not a quiet market"
        )
    listed = sorted((t, s) for s, t in index.first_ms.items() if market_start < t <= end)
    if listed:
        out.append(
            "listings: " + ", ".join(f"{s} at {utc_minute(t)}" for t, s in listed) + " start trading at their "
            "first candle and count as new listings in heat; a file that starts late only because it was "
            "collected over a shorter span reads as a listing too (collect it again with a --days that covers the "
            "others' span: collect fills in the earlier part)"
        )
    last_close = index.end_ms
    tf = timeframe_ms(index.timeframe)
    halted = sorted((t + tf, s) for s, t in index.last_ms.items() if t + tf < last_close and market_start < t + tf <= end)
    if halted:
        out.append(
            "data ends: " + ", ".join(f"{s} at {utc_minute(t)}" for t, s in halted) + ": halted from then on "
            "(delisted, or collected over a shorter span): no orders, and a position still held stays open "
            "at its last close"
        )
    if regime not in index.first_ms:
        out.append(f"regime pair {regime} has no candles in the store: the btc_* features are unknown (NaN) for the whole run")
    elif index.first_ms[regime] > market_start:
        out.append(f"regime pair {regime} starts at {utc_minute(index.first_ms[regime])}: the btc_* features are unknown before")
    if asked_end is not None and asked_end > index.end_ms:
        out.append(f"--to is after the data: the run ends at the last candle's close, {utc_minute(index.end_ms)}")
    return tuple(out)


def _in_sample_warning(model: ModelLoad | None, start: int, end: int) -> tuple[str, ...]:
    """A model replayed over the bars it was trained on has seen the prices it scores: its
    scores there are in-sample (look-ahead), and a result with them flatters it. Said, with
    the overlap, rather than passed off as a test of the model. So is a model trained wholly
    after the replay: it learned from how the market went on, the look-ahead in its plainest
    form. Only a model whose training ends before the replay starts is tested out of sample."""
    if model is None or model.scorer is None or model.training_window is None:
        return ()
    trained_from, trained_to = model.training_window
    if trained_to < start:
        return ()
    if trained_from > end:
        return (
            f"look-ahead: model {model.model} ({model.mode}) was trained on later data ({utc_minute(trained_from)} .. "
            f"{utc_minute(trained_to)}, after this replay ends at {utc_minute(end)}): it learned from how this market "
            f"went on, so its scores flatter it. Judge a model trained on data that ends before {utc_minute(start)}",
        )
    first, last = max(start, trained_from), min(end, trained_to)
    return (
        f"look-ahead: model {model.model} ({model.mode}) was trained on {utc_minute(trained_from)} .. "
        f"{utc_minute(trained_to)}, which overlaps this replay from {utc_minute(first)} to {utc_minute(last)}: "
        f"its scores there are in-sample and flatter it. Replay after {utc_minute(trained_to)}, or judge a model "
        f"trained on data that ends before {utc_minute(start)}",
    )


class BacktestRunner:
    """One backtest over a store directory. `run()` is a coroutine only because the broker and
    router are the runtime's async ones; nothing in it waits on anything."""

    def __init__(
        self,
        config: HotcoinConfig,
        data_dir: Path,
        sink: EventSink | None = None,
        *,
        run_id: str | None = None,
        index: HistoryIndex | None = None,
        model: ModelLoad | None = None,
        reuse: WindowReuse | None = None,
    ) -> None:
        bt = config.backtest
        if bt.timeframe != "1m":
            raise ConfigError(
                f"backtest.timeframe={bt.timeframe!r}: the replay market is built from 1m candles; "
                "collect and replay 1m (signals may still use longer bars: trading.signals.timeframe)"
            )
        fitted = replay_cadence(config)
        self.config = fitted.config
        self.adjusted = fitted.changes  # discovery settings fitted to one batch a minute (cadence.py)
        self.data_dir = Path(data_dir)
        self.index = index or index_history(self.data_dir, "1m", config.exchange.quote_asset)
        self.sink: EventSink = sink if sink is not None else NullSink()
        self.run_id = run_id or f"bt-{secrets.token_hex(3)}"
        self.model = model  # the same verified model the runtime would load: production decides, shadow watches
        self.reuse = reuse  # discovery recorded by an earlier run of this window (optimize's trials)

    async def run(
        self,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        progress: Callable[[ReplayProgress], None] | None = None,
        benchmark: bool = False,
    ) -> BacktestResult:
        """Replay [start, end]; `benchmark` adds what buying and holding every pair made over the
        window (`engine.backtest.benchmark`: the report's context; it reads and checks the files
        of the pairs the run never fed to the core, which an optimize trial does without)."""
        t0 = time.perf_counter()
        config = self.config
        start, end = window(self.index, config, start_ms, end_ms)
        warm_ms = config.backtest.warmup_minutes * MINUTE_MS
        sim = config.sim_market.model_copy(
            update={"data_dir": self.data_dir, "history_minutes": config.backtest.initial_history_minutes}
        )
        market_start = max(self.index.start_ms // MINUTE_MS * MINUTE_MS, start - warm_ms)
        slicer = CandleSlicer(
            self.index, HistoryStore(self.data_dir), market_start - sim.history_minutes * MINUTE_MS,
            sim.candle_ring_minutes,
        )  # fmt: skip

        sliced = config.trading.signals.timeframe == self.index.timeframe  # every candle the core reads is sliced

        def build_feed(tape: TapeLink | None = None) -> HistoryFeed:
            return HistoryFeed(
                ParquetMarket(sim, market_start), SimClock(start), self.index, slicer=slicer, ahead=sliced,
                stored_bars=True, tape=tape,
            )  # fmt: skip

        books = _Books()
        key, process, ahead = None, None, None
        discovery: DiscoveryStage | None = None
        feed: MarketFeed

        # Pairs listed after the store's first candle, up to the market's first minute: those its
        # first load lists (a later one lists as the replay reaches it, a `listing` event then;
        # knowing its time before would be look-ahead).
        listed = {s: t for s, t in self.index.listed_after_start().items() if t <= market_start}

        def build_discovery(sink: EventSink) -> Discovery:
            """Discovery, told the data's listing times before its first market load: a pair
            listed before the replay's first minute is otherwise present at that load, of
            unknown age, and loses its listing freshness (a run starting hours after a listing
            scored it as an old coin), as a restart's recovery tells it of the listings the run
            before journaled."""
            discovery = Discovery(config.discovery, sink, quote_asset=config.exchange.quote_asset, run_id=self.run_id)
            discovery.restore_listings(listed)
            return discovery

        slot_ms = config.discovery.windows.slot_ms
        minutes = (end - market_start) // MINUTE_MS
        days: SharedDays | None = None
        if self.reuse is None and discovery_process.wanted(config.backtest.discovery_process, minutes):
            # Both processes replay the same days: the discovery process computes each once and
            # shares it (`SharedDays`: this one, the critical path, then only copies them).
            days = SharedDays(len(replay_files(self.data_dir, sim.quote_asset))) if sliced else None
            process = discovery_process.DiscoveryProcess(
                lambda: build_feed(None if days is None else days.writer()), build_discovery, slot_ms=slot_ms, end_ms=end,
                keeps_payloads=self.sink.keeps_payloads,  # the tap's (below): one keeping no recent events of its own
            )  # fmt: skip
        # The trading side, imported once the discovery process runs: forked first, the child
        # starts without it and the core, execution and portfolio (~25-40 ms) load while it replays.
        from engine.backtest.benchmark import market_change
        from engine.execution.paper import FillModel, PaperBroker
        from engine.runtime.cycle import TradingCycle
        from engine.runtime.tap import Tap

        tap = Tap(self.sink, recent=0)
        broker = PaperBroker(FillModel.from_settings(config.trading.execution))
        if process is not None:
            discovery, feed = process.stage(tap), build_feed(None if days is None else days.reader(process.running))
        elif self.reuse is not None:
            key = self.reuse.key(config, self.data_dir, self.index.rows, start, end, self.run_id)
            discovery = self.reuse.stage(
                key, lambda: build_discovery(tap), journaled=not isinstance(self.sink, NullSink)
            )  # fmt: skip
            feed = self.reuse.feed(key, build_feed, slicer, sliced=sliced)
        elif discovery_process.ahead(minutes):  # one process: discovery still runs ahead of the core
            ahead = discovery_process.AheadDiscovery(
                build_feed(), build_discovery, slot_ms=slot_ms, end_ms=end, keeps_payloads=tap.keeps_payloads
            )
            discovery, feed = ahead.stage(tap), build_feed()
        else:  # a short replay: discovery batch by batch in the cycle, as the live engine runs it
            discovery, feed = build_discovery(tap), build_feed()
        if isinstance(feed, HistoryFeed) and isinstance(self.sink, NullSink):
            feed.yields = False  # no journal writer waits on this loop: a batch need not yield to it
        cycle = TradingCycle(
            config, feed, broker, tap, run_id=self.run_id, model=self.model, discovery=discovery,
            on_update=books.on_update, on_stepped=books.on_stepped,
        )  # fmt: skip
        try:
            if ahead is not None:
                await ahead.fill()
            await cycle.warmup()
            first = await feed.next_batch()
            core = books.core = await cycle.begin(first, BACKTEST_MODE)
            core.on_book_change = books.on_book_change
            if self.reuse is not None:
                core.signals.memo = self.reuse.features
            eq_ts: list[int] = []
            eq: list[float] = []
            expo: list[float] = []
            batch, cycles = first, 0
            after = _Minutes(feed, cycle, end, ahead)  # the minutes after each one stepped
            while True:
                now = batch.ts_ms
                if ahead is not None:
                    await ahead.fill()
                await cycle.step(batch)
                cycles += 1
                eq_ts.append(now)
                eq.append(core.equity())
                expo.append(core.exposure())
                while now < end:  # the quiet minutes after it, stepped at once
                    if progress is not None and (cycles == 1 or cycles % PROGRESS_EVERY == 0):
                        progress(ReplayProgress(now, start, end, cycles, len(books.trades.closed)))
                    times = await after.quiet(now, PROGRESS_EVERY - cycles % PROGRESS_EVERY)
                    if not times:
                        break
                    cycles, now = cycles + len(times), times[-1]
                    eq_ts += times
                    eq += [core.equity()] * len(times)  # a resting core's: the cash throughout
                    expo += [core.exposure()] * len(times)
                if now >= end:
                    batch = after.last(batch)
                    break
                batch = await after.next_batch()
            if progress is not None:
                progress(ReplayProgress(now, start, end, cycles, len(books.trades.closed)))
            if process is not None:
                process.finish()
        finally:
            if process is not None:
                process.close()  # at the end, or at once when the replay failed
        if self.reuse is not None and key is not None:
            self.reuse.finished(key)
        tap.emit("run_stop", ts_ms=now, payload={"run_id": self.run_id, "reason": "end_of_data"})
        buy_hold = None
        if benchmark:  # the pairs the run read are read already
            series = (slicer.series(s) for s in self.index.symbols)
            buy_hold = market_change(series, start, end, config.trading.signals.regime_symbol)
        return BacktestResult(
            run_id=self.run_id,
            start_ms=start,
            end_ms=end,
            initial_equity=config.trading.capital.active.capital,
            equity_ts=np.asarray(eq_ts, np.int64),
            equity=np.asarray(eq),
            exposure=np.asarray(expo),
            trades=books.trades.closed,
            fills=books.fills,
            open_positions=_open_positions(core),
            cycles=cycles,
            candles=self.index.candles_between(start, end),
            events=tap.events,
            wall_s=time.perf_counter() - t0,
            symbols=len(self.index.symbols),
            adjusted=self.adjusted,
            stats={"state_changes": tap.kinds["state_change"], "suppressed": cycle.router.suppressed},
            market=buy_hold,
            processes=1 if process is None else 2,
            dust=_dust(books.trades.closed, core, batch),
            warnings=_warm_up_warning(start, market_start, warm_ms)
            + _data_warnings(self.index, market_start, start, end, end_ms, config.trading.signals.regime_symbol)
            + _in_sample_warning(self.model, start, end),
        )


class _Minutes:
    """The replay's minutes after the one just stepped. Where the cycle may step quiet minutes
    at once (`TradingCycle.steps_quiet`: journal off), the feed hands them as runs
    (`HistoryFeed.next_run`), of which `quiet` steps those the core rests through
    (`TradingCycle.step_quiet`) and `next_batch` hands the others one by one; else each
    minute is the feed's `next_batch`."""

    def __init__(
        self, feed: MarketFeed, cycle: TradingCycle, end_ms: int, ahead: discovery_process.AheadDiscovery | None
    ) -> None:
        self._feed = feed
        self._ahead = ahead  # discovery run ahead in this process: filled before its results are read
        self._runs = feed if isinstance(feed, HistoryFeed) and cycle.steps_quiet else None
        self._cycle = cycle
        self._end_ms = end_ms
        self._run: TickerRun | None = None
        self._j = 0  # the run's next minute

    async def quiet(self, now: int, limit: int) -> list[int]:
        """Step the quiet minutes after `now` at once, up to `limit` of them and the window's
        end (a run's minutes); their times."""
        core = self._cycle.core
        if self._runs is None or core is None or not core.rests:
            return []
        if self._run is None or self._j == len(self._run):
            self._run, self._j = await self._runs.next_run((self._end_ms - now) // MINUTE_MS), 0
            if self._run is None:  # the feed hands no runs (no tape): minute by minute from now on
                self._runs = None
                return []
        if self._ahead is not None:
            await self._ahead.fill()
        n = await self._cycle.step_quiet(self._run, self._j, limit)
        times: list[int] = self._run.ts_ms[self._j : self._j + n].tolist()
        self._j += n
        return times

    def last(self, stepped: TickerBatch) -> TickerBatch:
        """The last minute stepped: `stepped`, unless quiet minutes followed it."""
        if self._run is None or not self._j or int(self._run.ts_ms[self._j - 1]) <= stepped.ts_ms:
            return stepped
        return self._run.batch(self._j - 1)

    async def next_batch(self) -> TickerBatch:
        """The next minute to step as a batch: the run's next, else the feed's."""
        if self._run is not None and self._j < len(self._run):
            self._j += 1
            return self._run.batch(self._j - 1)
        return await self._feed.next_batch()


def _open_positions(core: TradingCore) -> dict[str, OpenPosition]:
    marks = core.marks()  # what the final equity holds them at
    out = {}
    for symbol, held in core.book.holdings.items():
        p = held.position
        out[symbol] = OpenPosition(
            symbol=symbol, trace_id=p.trace_id, opened_ms=p.opened_ms, quantity=p.quantity, entry_price=p.entry_price,
            mark_price=marks[symbol], unrealised_pnl=p.unrealised_pnl(marks[symbol]),
            realised_pnl=p.realised_pnl,
        )  # fmt: skip
    return out


def _dust(trades: list[Trade], core: TradingCore, last: TickerBatch) -> DustWrittenOff:
    """The write-offs of the closed trades, and the coins they left at the run's last bid
    (the coins' last close where the batch has no bid: a halted pair)."""
    # the trading side's: imported after the fork
    from engine.portfolio.positions import WRITE_OFF_REASON

    parts = [p for t in trades for p in t.exits if p.reason == WRITE_OFF_REASON]
    bids = {s: b for s, b in zip(last.symbols, last.bid.tolist(), strict=True) if math.isfinite(b)}
    closes = {s: c for s, c in zip(last.symbols, last.last.tolist(), strict=True) if math.isfinite(c)}
    value = sum(q * bids.get(s, closes.get(s, 0.0)) for s, q in core.book.written_off.items())
    return DustWrittenOff(sum(p.pnl for p in parts), len(parts), value)


class _TradeLog:
    """Fills grouped into round trips as positions open and close."""

    def __init__(self) -> None:
        self.open: dict[str, list[tuple[Fill, str]]] = {}
        self.closed: list[Trade] = []

    def add(self, fill: Fill, purpose: str) -> None:
        self.open.setdefault(fill.symbol, []).append((fill, purpose))

    def close(
        self,
        symbol: str,
        trace_id: str,
        pnl: float,
        opened_ms: int,
        closed_ms: int,
        exit_rules: tuple[str, ...] = (),
        exits: tuple[ExitPart, ...] = (),
    ) -> None:
        fills = self.open.pop(symbol, [])
        buys = [f for f, _ in fills if f.side.value == "buy"]
        sells = [(f, p) for f, p in fills if f.side.value == "sell"]
        qty = sum(f.quantity for f in buys)
        sold = sum(f.quantity for f, _ in sells)
        self.closed.append(
            Trade(
                symbol=symbol,
                trace_id=trace_id,
                opened_ms=opened_ms,
                closed_ms=closed_ms,
                quantity=qty,
                entry_price=sum(f.price * f.quantity for f in buys) / qty if qty else 0.0,
                exit_price=sum(f.price * f.quantity for f, _ in sells) / sold if sold else 0.0,
                fees=sum(f.fee_quote for f, _ in fills),
                pnl=pnl,
                exit_reason=sells[-1][1] if sells else "dust",
                exit_rules=exit_rules if sells else (),
                exits=exits,
            )
        )


class _Books:
    """What the backtest keeps beside the cycle: every fill, and the trade log, fed by the
    cycle's hooks in the order things happen."""

    def __init__(self) -> None:
        self.core: TradingCore | None = None
        self.trades = _TradeLog()
        self.fills: list[Fill] = []
        self._closed_seen = 0
        self._exits: dict[str, list[ExitPart]] = {}  # symbol -> the exits of its open position so far
        self._held: dict[str, float] = {}  # symbol -> quantity held after the book's last change
        self._entry_fees: dict[str, float] = {}  # symbol -> entry fees the held quantity carries

    def on_book_change(self, change: BookChange, reason: str, ts_ms: int) -> None:
        """Each exit's share of its position (`ExitPart`), as the core books it: its realised
        PnL is the book's, its fees its own plus the entry fees the coins it took carried,
        charged pro rata as `PositionBook` does (a write-off takes all that is left)."""
        symbol = change.symbol
        if change.action == "open":
            self._exits[symbol], self._entry_fees[symbol] = [], 0.0
        if change.action in ("open", "add"):
            self._entry_fees[symbol] = self._entry_fees.get(symbol, 0.0) + change.fee_quote
            self._held[symbol] = change.quantity
            return
        if change.action not in ("partial_close", "close"):
            return
        before = self._held.get(symbol, 0.0)
        carried = self._entry_fees.get(symbol, 0.0)
        share = carried if change.quantity <= 0 or before <= 0 else carried * (before - change.quantity) / before
        self._held[symbol], self._entry_fees[symbol] = change.quantity, carried - share
        part = ExitPart(
            reason, self._rules(symbol) if reason == OrderPurpose.SIGNAL_EXIT else (), ts_ms,
            before - change.quantity, change.realised_pnl, change.fee_quote + share,
        )  # fmt: skip
        self._exits.setdefault(symbol, []).append(part)

    def _rules(self, symbol: str) -> tuple[str, ...]:
        """The rules of the signal exit whose fill is being booked: the holding keeps them until
        the next exit order; a fill that closed it left them on its closed trade."""
        core = self.core
        assert core is not None
        held = core.book.get(symbol)
        if held is not None:
            return held.exit_rules
        closed = core.book.closed
        return closed[-1].exit_rules if closed and closed[-1].symbol == symbol else ()

    def on_update(self, update: OrderUpdate) -> None:
        for fill in update.fills:
            self.fills.append(fill)
            self.trades.add(fill, update.order.purpose.value)
        self.on_stepped()

    def on_stepped(self) -> None:
        """Round trips the book closed since the last look: by a fill, or written off as dust
        inside `core.step` (no fill at all)."""
        core = self.core
        assert core is not None
        if len(core.book.closed) == self._closed_seen:  # nothing closed since (nearly every cycle)
            return
        for trade in core.book.closed[self._closed_seen :]:
            exits = tuple(self._exits.pop(trade.symbol, ()))
            self._held.pop(trade.symbol, None)
            self._entry_fees.pop(trade.symbol, None)
            self.trades.close(
                trade.symbol, trade.trace_id, trade.realised_pnl, trade.opened_ms, trade.closed_ms, trade.exit_rules, exits
            )
        self._closed_seen = len(core.book.closed)
