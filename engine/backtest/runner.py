"""The backtest runner: history through the very code that trades, on a virtual clock.

The market is the candle store replayed minute by minute (`ParquetMarket` behind a
`HistoryFeed`), and each batch goes through the runtime's cycle, step for step, in the order
`engine.runtime.engine.Engine._cycle` uses:

    paper book <- batch                  (PaperBroker.update_book: fills see this batch's quotes)
    discovery.on_batch(batch)            pool + candidate_snapshot
    closed candles for pool + holdings + regime symbol (WINDOW+2 on first sight, then 3)
    state machine step                   data age from the history (outages go stale)
    core.step(batch, candidates, now, candidate seqs)
    router.send_all(intents) -> core.on_order_update
    broker.sync every 5 s of sim time

Discovery, `TradingCore`, `PaperBroker` (the shared `FillModel`), `OrderRouter` and
`EngineStateMachine` are the runtime's own classes, fed the same way; only snapshot publishing
(for a UI nobody watches) is left out. `tests/engine/backtest/test_parity.py` runs the same
history through `Engine` and through this runner and compares every fill.

Point in time: the replay market holds only candles that have closed by the clock's time, the
universe is the markets listed by then (a pair appears with its first candle), and warm-up
starts `warmup_minutes` before `start`: a decision at time t depends on nothing after t.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.backtest.feed import HistoryFeed
from engine.backtest.history import HistoryIndex, HistoryStore, index_history
from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.discovery.pipeline import Discovery, DiscoveryCycle
from engine.domain import EngineState, Fill, Market, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import ConfigError
from engine.execution.broker import OrderUpdate
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.journal.events import EventSink
from engine.journal.sinks import NullSink
from engine.runtime.state_machine import EngineStateMachine, HealthInputs
from engine.signals.features import WINDOW
from engine.signals.scorer import ModelLoad
from engine.sim.parquet_source import ParquetMarket
from engine.trading import TradingCore

MINUTE_MS = 60_000
# The runtime's cadences (engine.runtime.engine): market info every 5 min, broker sync every 5 s.
MARKETS_REFRESH_MS = 5 * 60_000
SYNC_EVERY_MS = 5_000


class _Tap:
    """In front of the sink: the seq of each trace's candidate_snapshot (the cause of its signal),
    bounded as the runtime's tap is."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.candidate_seq: dict[str, int] = {}
        self.events = 0

    def emit(
        self,
        kind: str,
        *,
        ts_ms: int,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
        symbol: str | None = None,
        cause: int | None = None,
    ) -> int:
        seq = self.sink.emit(kind, ts_ms=ts_ms, payload=payload, trace_id=trace_id, symbol=symbol, cause=cause)
        self.events += 1
        if kind == "candidate_snapshot" and trace_id is not None:
            self.candidate_seq[trace_id] = seq
            if len(self.candidate_seq) > 50_000:
                for old in list(self.candidate_seq)[:25_000]:
                    del self.candidate_seq[old]
        return seq


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

    @property
    def return_pct(self) -> float:
        cost = self.quantity * self.entry_price
        return 100.0 * self.pnl / cost if cost else 0.0


@dataclass
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
    open_positions: dict[str, float]
    cycles: int
    candles: int
    events: int
    wall_s: float
    symbols: int
    stats: dict[str, Any] = field(default_factory=dict)

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
            f"--from {start} is before the first candle ({first}); choose a later start or collect older data"
        )
    if end > index.end_ms:
        end = index.end_ms
    if end <= start:
        raise ConfigError(
            f"the window is empty: start {start} >= end {end} (data {index.start_ms}..{index.end_ms}); "
            "check --from/--to"
        )
    return start, end


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
    ) -> None:
        bt = config.backtest
        if bt.timeframe != "1m":
            raise ConfigError(
                f"backtest.timeframe={bt.timeframe!r}: the replay market is built from 1m candles; "
                "collect and replay 1m (signals may still use longer bars: trading.signals.timeframe)"
            )
        self.config = config
        self.data_dir = Path(data_dir)
        self.index = index or index_history(self.data_dir, "1m", config.exchange.quote_asset)
        self.sink: EventSink = sink if sink is not None else NullSink()
        self.run_id = run_id or f"bt-{secrets.token_hex(3)}"
        self.model = model  # the same verified model the runtime would load: production decides, shadow watches

    async def run(self, start_ms: int | None = None, end_ms: int | None = None) -> BacktestResult:
        t0 = time.perf_counter()
        config = self.config
        start, end = window(self.index, config, start_ms, end_ms)
        warm_ms = config.backtest.warmup_minutes * MINUTE_MS
        sim = config.sim.model_copy(
            update={
                "data_dir": self.data_dir,
                "history_minutes": config.backtest.initial_history_minutes,
                "quote_asset": config.exchange.quote_asset,
            }
        )
        market_start = max(self.index.start_ms // MINUTE_MS * MINUTE_MS, start - warm_ms)
        market = ParquetMarket(sim, market_start)
        feed = HistoryFeed(
            market, SimClock(start), self.index, store=HistoryStore(self.data_dir),
            earliest_ms=market_start - sim.history_minutes * MINUTE_MS, ring_minutes=sim.candle_ring_minutes,
        )  # fmt: skip
        cycle = _Cycle(config, feed, self.sink, self.run_id, self.model)
        await cycle.warmup()
        eq_ts, eq, expo = [], [], []
        now = start
        while True:
            batch = await feed.next_batch()
            now = batch.ts_ms
            if cycle.core is None:
                await cycle.begin(batch)
            core = cycle.core
            assert core is not None
            await cycle.step(batch)
            eq_ts.append(now)
            eq.append(core.equity())
            expo.append(core.exposure())
            if now >= end:
                break
        cycle.tap.emit("run_stop", ts_ms=now, payload={"run_id": self.run_id, "reason": "end_of_data"})
        core = cycle.core
        assert core is not None
        return BacktestResult(
            run_id=self.run_id,
            start_ms=start,
            end_ms=end,
            initial_equity=config.trading.capital.active.capital,
            equity_ts=np.asarray(eq_ts, np.int64),
            equity=np.asarray(eq),
            exposure=np.asarray(expo),
            trades=cycle.trades.closed,
            fills=cycle.fills,
            open_positions={s: h.position.quantity for s, h in core.book.holdings.items()},
            cycles=cycle.cycles,
            candles=self.index.candles_between(start, end),
            events=cycle.tap.events,
            wall_s=time.perf_counter() - t0,
            symbols=len(self.index.symbols),
            stats={"state_changes": cycle.state_changes, "suppressed": cycle.router.suppressed},
        )


class _TradeLog:
    """Fills grouped into round trips as positions open and close."""

    def __init__(self) -> None:
        self.open: dict[str, list[tuple[Fill, str]]] = {}
        self.closed: list[Trade] = []

    def add(self, fill: Fill, purpose: str) -> None:
        self.open.setdefault(fill.symbol, []).append((fill, purpose))

    def close(self, symbol: str, trace_id: str, pnl: float, opened_ms: int, closed_ms: int) -> None:
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
            )
        )


class _Cycle:
    """The runtime's cycle without the UI: see the module docstring for the order."""

    def __init__(
        self, config: HotcoinConfig, feed: HistoryFeed, sink: EventSink, run_id: str, model: ModelLoad | None = None
    ) -> None:
        self.config = config
        self.model = model
        self.feed = feed
        self.tap = _Tap(sink)
        self.run_id = run_id
        self.broker = PaperBroker(FillModel.from_settings(config.trading.execution))
        self.router = OrderRouter(self.broker, self.tap)
        self.state = EngineStateMachine(config.state)
        self.discovery = Discovery(config.discovery, self.tap, quote_asset=config.exchange.quote_asset, run_id=run_id)
        self.core: TradingCore | None = None
        self.trades = _TradeLog()
        self.fills: list[Fill] = []
        self.cycles = 0
        self.state_changes = 0
        self._closed_seen = 0
        self._markets: dict[str, Market] = {}
        self._markets_at = 0
        self._fed_bar: dict[str, tuple[int, int | None]] = {}  # symbol -> (bar, last candle fed)
        self._last_sync = 0
        self._tf = config.trading.signals.timeframe
        self._tf_ms = timeframe_ms(self._tf)
        self._regime = config.trading.signals.regime_symbol

    async def warmup(self) -> None:
        warm = 0
        async for past in self.feed.warmup(self.config.discovery.windows.slot_ms):
            if not warm:
                await self._refresh_markets(past.ts_ms, force=True)
            self.discovery.on_batch(past)
            warm += 1

    async def begin(self, first: TickerBatch) -> None:
        await self._refresh_markets(first.ts_ms, force=True)
        scorer = self.model.scorer if self.model is not None else None
        self.core = TradingCore(self.config.trading, self._markets, self.tap, run_id=self.run_id, scorer=scorer)
        self.tap.emit(
            "run_start",
            ts_ms=first.ts_ms,
            payload={
                "run_id": self.run_id,
                "config_hash": self.config.config_hash(),
                "mode": "backtest",
                "model": self.model.model if self.model is not None else None,
                "model_status": self.model.status if self.model is not None else "no model loader",
            },
        )

    async def step(self, batch: TickerBatch) -> None:
        core = self.core
        assert core is not None
        now = batch.ts_ms
        await self._refresh_markets(now)
        self.broker.update_book(batch)
        cycle = self.discovery.on_batch(batch)
        await self._feed_candles(cycle, now)
        self._step_state(now)
        intents = core.step(batch, cycle.snapshot.candidates, now, self.tap.candidate_seq)
        self._closed()
        if intents:
            self._book(await self.router.send_all(intents, now, core.causes), now)
        if now - self._last_sync >= SYNC_EVERY_MS:
            self._last_sync = now
            self._book(await self.broker.sync(now), now)
        self.cycles += 1

    def _book(self, updates: list[OrderUpdate], now: int) -> None:
        core = self.core
        assert core is not None
        for update in updates:
            core.on_order_update(update, now)
            for fill in update.fills:
                self.fills.append(fill)
                self.trades.add(fill, update.order.purpose.value)
            self._closed()

    def _closed(self) -> None:
        """Round trips the book closed since the last look: by a fill, or written off as dust
        inside `core.step` (no fill at all)."""
        core = self.core
        assert core is not None
        for trade in core.book.closed[self._closed_seen :]:
            self.trades.close(trade.symbol, trade.trace_id, trade.realised_pnl, trade.opened_ms, trade.closed_ms)
        self._closed_seen = len(core.book.closed)

    async def _refresh_markets(self, now: int, force: bool = False) -> None:
        if not force and now - self._markets_at < MARKETS_REFRESH_MS:
            return
        markets = await self.feed.markets()
        self._markets_at = now
        if force or len(markets) != len(self._markets):
            self._markets = dict(markets)
            self.discovery.on_markets(markets.values(), now)
            if self.core is not None:
                self.core.markets = self._markets

    async def _feed_candles(self, cycle: DiscoveryCycle, now: int) -> None:
        core = self.core
        assert core is not None
        bar = now // self._tf_ms
        wanted = {c.symbol for c in cycle.snapshot.candidates}
        wanted.update(core.book.holdings)
        wanted.add(self._regime)
        for symbol in wanted:
            fed = self._fed_bar.get(symbol)
            if (fed is not None and fed[0] == bar) or symbol not in self._markets:
                continue
            # The runtime's requests (WINDOW+2 on first sight, then 3), less the candles this
            # symbol was already fed: re-adding a candle `BarHistory` holds changes nothing.
            limit, after = (WINDOW + 2, None) if fed is None else (3, fed[1])
            for candle in await self.feed.candles(symbol, self._tf, limit, after_ms=after):
                if candle.closed:
                    core.on_candle(candle)
                    after = candle.open_ms
            self._fed_bar[symbol] = (bar, after)
        if len(self._fed_bar) > 4 * max(64, len(wanted)):
            self._fed_bar = {s: b for s, b in self._fed_bar.items() if s in wanted}

    def _step_state(self, now: int) -> None:
        core = self.core
        assert core is not None
        transition = self.state.step(
            HealthInputs(now, data_age_s=self.feed.data_age_s(now), risk_level=int(core.risk.level))
        )
        if transition is not None:
            self.state_changes += 1
            self.tap.emit(
                "state_change",
                ts_ms=now,
                payload=transition.payload(),
            )
        effective: EngineState = self.state.state
        core.set_engine_state(effective)
