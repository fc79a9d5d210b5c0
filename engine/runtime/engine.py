"""The live engine loop: one asyncio loop that feeds market data into the synchronous core
with a clock, carries out its intents through a broker, journals, and publishes snapshots.

One cycle per full-market ticker batch:

    feed.next_batch()            (the only wait on the market)
    journal.wait_writable()      back-pressure: never drop an event, never grow without bound
    discovery.on_batch()         pool + candidate_snapshot events
    candles for the pool         closed bars for features, once per bar per symbol
    state machine step           tradeable | degraded | blocked (state_change events)
    core.step()                  exits and entries as order intents
    router.send_all()            order_attempt / order_result, fills booked back into the core
    broker.sync()                resting orders, expiries
    publish snapshot             for the TUI, /health and /metrics

Commands (pause, resume, close-all, shutdown) arrive through a queue and run between cycles,
so the core is only ever touched by this loop: no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.config import HotcoinConfig
from engine.discovery.listings import Announcement
from engine.discovery.pipeline import Discovery, DiscoveryCycle
from engine.discovery.social.source import SocialPost
from engine.domain import Candle, Fill, Market, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import OrderError
from engine.execution.broker import Broker, OrderUpdate
from engine.execution.close_all import close_all
from engine.execution.paper import PaperBroker
from engine.execution.router import OrderRouter
from engine.journal.events import EventSink, JournalEvent
from engine.ops.metrics import EngineMetrics
from engine.runtime.client import Command, CommandResult
from engine.runtime.feed import MarketFeed
from engine.runtime.local_client import SnapshotHub
from engine.runtime.recovery import BalanceAudit, Recovery
from engine.runtime.snapshot import (
    CandidateRow,
    CloseAllProgress,
    EngineSnapshot,
    EngineStatus,
    EventRow,
    Mode,
    PositionRow,
    Totals,
)
from engine.runtime.state_machine import EngineStateMachine, HealthInputs
from engine.signals.features import WINDOW
from engine.signals.scorer import ModelLoad
from engine.trading import TradingCore

log = logging.getLogger("hotcoin.engine")

MARKETS_REFRESH_MS = 5 * 60_000
SYNC_EVERY_MS = 5_000
RECENT_EVENTS = 200
CYCLE_STATS_EVERY = 50  # cycles between refreshes of the cycle-time percentiles in status
CANDIDATE_SEQS = 8_192


@dataclass
class EngineStats:
    cycles: int = 0
    batches_rejected: int = 0
    intents: int = 0
    fills: int = 0
    decision_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # batch -> orders sent
    cycle_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # batch -> cycle done


EventObserver = Callable[[str, Mapping[str, Any], "str | None"], object]


class _Tap:
    """An `EventSink` in front of the journal: keeps the last events for the UI's event stream
    and remembers which candidate_snapshot started each trace (the `cause` of its signal)."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.recent: deque[EventRow] = deque(maxlen=RECENT_EVENTS)
        self.observers: list[EventObserver] = []  # e.g. notifications; each must be cheap and non-blocking
        self.candidate_seq: dict[str, int] = {}
        self.last_signal: dict[str, str] = {}  # symbol -> latest signal decision, for the pool view
        self.on_order_error: Callable[[int], None] | None = None  # failed order calls, for the state machine

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
        if kind == "candidate_snapshot" and trace_id is not None:
            self.candidate_seq[trace_id] = seq
            # A trace is a cause only within its own bar (<= one snapshot per symbol per bar), so
            # the newest 4,096 cover two full bars of a 2,000-symbol market; a larger map only
            # grew RSS over a simulated week (bench_soak).
            if len(self.candidate_seq) > CANDIDATE_SEQS:
                for old in list(self.candidate_seq)[: CANDIDATE_SEQS // 2]:
                    del self.candidate_seq[old]
        elif kind == "signal_snapshot" and symbol is not None:
            self.last_signal[symbol] = str(payload.get("decision", ""))
        elif kind == "order_result" and payload.get("error_class") and self.on_order_error is not None:
            self.on_order_error(ts_ms)
        for observe in self.observers:
            observe(kind, payload, symbol)
        self.recent.append(EventRow(seq, ts_ms, kind, symbol, trace_id, _summary(kind, payload)))
        return seq


def _summary(kind: str, p: Mapping[str, Any]) -> str:
    get = p.get
    if kind == "candidate_snapshot":
        return f"heat {get('heat', 0):.0f} rank {get('rank', '?')} {'accepted' if get('accepted') else 'rejected'}"
    if kind == "signal_snapshot":
        return f"{get('decision')}: {get('reason')}"
    if kind == "order_attempt":
        return f"{get('purpose')} {get('side')} {get('quantity')}"
    if kind == "order_result":
        return f"{get('status')}" + (f" ({get('error')})" if get("error") else "")
    if kind == "fill":
        return f"{get('side')} {get('quantity')} @ {get('price')}"
    if kind == "position_update":
        return f"{get('action')} pnl {get('realised_pnl', 0):+.2f}"
    if kind == "state_change":
        return f"{get('from')} -> {get('to')}"
    return str(get("detail") or get("command") or get("code") or "")


class Engine:
    def __init__(
        self,
        config: HotcoinConfig,
        feed: MarketFeed,
        broker: Broker,
        journal: EventSink,
        *,
        run_id: str,
        mode: Mode,
        metrics: EngineMetrics | None = None,
        recovery: Recovery | None = None,
        audit: BalanceAudit | None = None,
        model: ModelLoad | None = None,
    ) -> None:
        self.config = config
        self.feed = feed
        self.broker = broker
        self.journal = journal
        self.tap = _Tap(journal)
        self.run_id = run_id
        self.mode = mode
        self.config_hash = config.config_hash()  # hashing the config costs ~1 ms: once per run
        self.metrics = metrics or EngineMetrics()
        self.recovery = recovery  # state rebuilt from the journal, installed once the core exists
        self.model = model  # the verified model in the signal path (production or shadow), if any
        self._model_label = f"{model.model} ({model.mode})" if model is not None and model.scorer is not None else None
        self.audit = audit  # exchange balances vs our records, every 5 minutes (exchange mode)
        self.hub = SnapshotHub()
        self.observe(self._count_signal)
        self.stats = EngineStats()
        self.state = EngineStateMachine(config.state)
        self.tap.on_order_error = self.state.errors.record
        self.discovery = Discovery(config.discovery, self.tap, quote_asset=config.exchange.quote_asset, run_id=run_id)
        self.router = OrderRouter(broker, self.tap)
        self.core: TradingCore | None = None
        self.paused = False
        self._commands: asyncio.Queue[tuple[Command, str, asyncio.Future[CommandResult]]] = asyncio.Queue(maxsize=64)
        self._stop = asyncio.Event()
        self._inbox: deque[tuple[str, list[Any]]] = deque(maxlen=1000)  # slow inputs between cycles
        self._command_waiting = asyncio.Event()
        self._markets: dict[str, Market] = {}
        self._markets_at = 0
        self._fed_bar: dict[str, int] = {}
        self._fills: dict[str, deque[Fill]] = {}
        self._last_sync = 0
        self._now = 0
        self._seq = 0
        self._close_all: CloseAllProgress | None = None
        self._cycle_pct = (0.0, 0.0)  # p50, p99 of recent cycles (ms), refreshed every CYCLE_STATS_EVERY
        self._tf_ms = timeframe_ms(config.trading.signals.timeframe)

    # ------------------------------------------------------------------ public
    async def run(self, duration_s: float | None = None) -> None:
        """Trade until `duration_s` of wall time passed, a SHUTDOWN command, or `stop()`."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        warm = 0
        async for past in self.feed.warmup(self.config.discovery.windows.slot_ms):
            if not warm:
                await self._refresh_markets(past.ts_ms, force=True)
            self.discovery.on_batch(past)
            warm += 1
        if warm:
            log.info("discovery warmed up", extra={"batches": warm})
        first = await self.feed.next_batch()
        self._now = first.ts_ms
        await self._refresh_markets(first.ts_ms, force=True)
        scorer = self.model.scorer if self.model is not None else None
        self.core = TradingCore(self.config.trading, self._markets, self.tap, run_id=self.run_id, scorer=scorer)
        self.tap.emit(
            "run_start",
            ts_ms=first.ts_ms,
            payload={
                "run_id": self.run_id,
                "config_hash": self.config_hash,
                "mode": self.mode.value,
                "model": self.model.model if self.model is not None else None,
                "model_status": self.model.status if self.model is not None else "no model loader",
            },
        )
        if self.recovery is not None:
            await self.recovery.apply(self, first.ts_ms)
        batch: TickerBatch | None = first
        reason = "stopped"
        try:
            while True:
                if batch is None:
                    batch = await self._next_or_command()
                if batch is not None:
                    await self._cycle(batch)
                    batch = None
                await self._drain_commands()
                if self._stop.is_set():
                    reason = "shutdown"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    reason = "duration"
                    break
        finally:
            self.tap.emit("run_stop", ts_ms=self._now, payload={"run_id": self.run_id, "reason": reason})
            await self.hub.close()

    def stop(self) -> None:
        self._stop.set()

    def deliver_posts(self, posts: list[SocialPost]) -> None:
        """Social posts from a source task; folded into discovery at the next cycle."""
        self._inbox.append(("posts", posts))

    def deliver_announcements(self, announcements: list[Announcement]) -> None:
        """Exchange announcements from the poller; folded into discovery at the next cycle."""
        self._inbox.append(("announcements", announcements))

    def _count_signal(self, kind: str, payload: Mapping[str, Any], symbol: str | None) -> None:
        if kind == "signal_snapshot":
            self.metrics.signals.labels(str(payload.get("decision", ""))).inc()

    def observe(self, observer: EventObserver) -> None:
        """Call `observer(kind, payload, symbol)` for every journaled event (after it is journaled)."""
        self.tap.observers.append(observer)

    async def command(self, command: Command, origin: str) -> CommandResult:
        """Queue a command for the loop and wait for its result (the client's `send`)."""
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        await self._commands.put((command, origin, future))
        self._command_waiting.set()
        return await future

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return await self.feed.candles(symbol, timeframe, limit)

    async def fills(self, symbol: str) -> list[Fill]:
        return list(self._fills.get(symbol, ()))

    # ------------------------------------------------------------------ the cycle
    async def _next_or_command(self) -> TickerBatch | None:
        """The next batch, unless a command arrives first (commands never wait for the market)."""
        batch_task = asyncio.ensure_future(self.feed.next_batch())
        cmd_task = asyncio.ensure_future(self._command_waiting.wait())
        done, _ = await asyncio.wait({batch_task, cmd_task}, return_when=asyncio.FIRST_COMPLETED)
        cmd_task.cancel()
        if batch_task in done:
            return batch_task.result()
        await self._drain_commands()
        if self._stop.is_set():  # a shutdown does not wait for the market's next message
            batch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batch_task
            return None
        return await batch_task

    async def _cycle(self, batch: TickerBatch) -> None:
        core = self.core
        assert core is not None
        t0 = time.perf_counter()
        now = self._now = batch.ts_ms
        wait = getattr(self.journal, "wait_writable", None)
        if wait is not None:
            await wait()
        await self._refresh_markets(now)
        if isinstance(self.broker, PaperBroker):
            self.broker.update_book(batch)
        while self._inbox:
            kind, items = self._inbox.popleft()
            if kind == "posts":
                self.discovery.on_posts(items, now)
            else:
                self.discovery.on_announcements(items, now)
        cycle = self.discovery.on_batch(batch)
        if not cycle.accepted:
            self.stats.batches_rejected += 1
        await self._feed_candles(cycle, now)
        self._step_state(now)
        intents = core.step(batch, cycle.snapshot.candidates, now, self.tap.candidate_seq)
        if intents:
            self.stats.intents += len(intents)
            updates = await self.router.send_all(intents, now, core.causes)
            self.stats.decision_ms.append((time.perf_counter() - t0) * 1000)
            self.metrics.decision_latency.observe(time.perf_counter() - t0)
            self._book(updates, now)
        if now - self._last_sync >= SYNC_EVERY_MS:
            self._last_sync = now
            try:
                self._book(await self.broker.sync(now), now)
            except OrderError as exc:  # the exchange failed a reconcile (429, 5xx, timeout): next sync retries
                log.warning("broker sync failed: %s", exc)
                self.state.errors.record(now)
        if self.audit is not None and self.audit.due(now):
            await self.audit.run(core, self.tap, now)
        self.stats.cycles += 1
        self.stats.cycle_ms.append((time.perf_counter() - t0) * 1000)
        self.metrics.cycle_latency.observe(time.perf_counter() - t0)
        await self._publish(cycle, now)

    def _book(self, updates: list[OrderUpdate], now: int) -> None:
        assert self.core is not None
        for update in updates:
            self.core.on_order_update(update, now)
            self.metrics.orders.labels(update.order.status.value).inc()
            for fill in update.fills:
                self.stats.fills += 1
                self._fills.setdefault(fill.symbol, deque(maxlen=500)).append(fill)

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
        """Closed bars for every symbol the core may decide on this bar (pool, holdings, regime)."""
        assert self.core is not None
        bar = now // self._tf_ms
        wanted = {c.symbol for c in cycle.snapshot.candidates}
        wanted.update(self.core.book.holdings)
        wanted.add(self.config.trading.signals.regime_symbol)
        for symbol in wanted:
            if self._fed_bar.get(symbol) == bar or symbol not in self._markets:
                continue
            first = symbol not in self._fed_bar
            self._fed_bar[symbol] = bar
            candles = await self.feed.candles(symbol, self.config.trading.signals.timeframe, WINDOW + 2 if first else 3)
            for candle in candles:
                if candle.closed:
                    self.core.on_candle(candle)
        if len(self._fed_bar) > 4 * max(64, len(wanted)):
            self._fed_bar = {s: b for s, b in self._fed_bar.items() if s in wanted}

    def _step_state(self, now: int) -> None:
        assert self.core is not None
        risk_level = int(self.core.risk.level)
        health = HealthInputs(now, data_age_s=self.feed.data_age_s(now), ws_down_s=self.feed.ws_down_s(now), risk_level=risk_level)
        transition = self.state.step(health)
        if transition is not None:
            self.tap.emit(
                "state_change",
                ts_ms=now,
                payload=transition.payload(),
            )
        self.core.set_engine_state(self.state.state)
        self.core.paused = self.paused

    # ------------------------------------------------------------------ commands
    async def _drain_commands(self) -> None:
        self._command_waiting.clear()
        while not self._commands.empty():
            command, origin, future = self._commands.get_nowait()
            try:
                result = await self._execute(command, origin)
            except Exception as exc:  # a failed command must answer, not kill the loop
                log.exception("command %s failed", command)
                result = CommandResult(False, f"{command} failed: {exc}")
            if not future.done():
                future.set_result(result)

    async def _execute(self, command: Command, origin: str) -> CommandResult:
        core = self.core
        now = self._now
        if command is Command.PAUSE or command is Command.RESUME:
            self.paused = command is Command.PAUSE
            self.tap.emit("command", ts_ms=now, payload={"command": command.value, "origin": origin})
            self._step_state(now)
            return CommandResult(True, "new entries paused" if self.paused else "entries resumed")
        if command is Command.SHUTDOWN:
            self.tap.emit("command", ts_ms=now, payload={"command": command.value, "origin": origin})
            self._stop.set()
            return CommandResult(True, "shutting down")
        if core is None:
            return CommandResult(False, "engine not started yet")
        held = len(core.book.holdings)
        self._close_all = CloseAllProgress(requested_ms=now, total=held, remaining=held)
        await self._publish(None, now)
        report = await close_all(core, self.router, now, origin)
        errors = tuple(f"{s}: still open" for s in report.still_open)
        self._close_all = CloseAllProgress(now, held, len(report.still_open), errors)
        await self._publish(None, now)
        if report.still_open:
            return CommandResult(False, f"close-all: {len(report.still_open)} position(s) still open: {', '.join(report.still_open)}")
        return CommandResult(True, f"close-all: flat ({report.exits_filled} exit(s) filled, {report.cancelled} order(s) cancelled)")

    # ------------------------------------------------------------------ snapshots
    async def _publish(self, cycle: DiscoveryCycle | None, now: int) -> None:
        core = self.core
        assert core is not None
        self._seq += 1
        prev = self.hub.latest
        candidates = prev.candidates if cycle is None and prev is not None else self._candidate_rows(cycle)
        marks = core.marks()
        positions = tuple(
            PositionRow(
                symbol=s,
                trace_id=h.position.trace_id,
                quantity=h.position.quantity,
                entry_price=h.position.entry_price,
                mark=marks.get(s, h.position.entry_price),
                unrealised_pnl=h.position.unrealised_pnl(marks.get(s, h.position.entry_price)),
                realised_pnl=h.position.realised_pnl,
                tp_tier=len(h.position.tp_tiers_hit),
                stop_price=h.position.stop_price,
                opened_ms=h.position.opened_ms,
            )
            for s, h in sorted(core.book.holdings.items())
        )
        risk = core.risk
        equity = core.equity()
        totals = Totals(
            equity=equity,
            cash=core.cash,
            exposure=core.exposure(),
            day_pnl=equity - risk.start_equity if risk.start_equity else 0.0,
            daily_loss_limit=-risk.start_equity * self.config.trading.risk.daily_loss_limit,
        )
        status = EngineStatus(
            state=self.state.state.value,
            reasons=tuple(f"{r.code}: {r.detail} ({_num(r.value)} vs {_num(r.threshold)})" for r in self.state.reasons),
            mode=self.mode,
            paused=self.paused,
            risk_level=int(risk.level),
            order_error_rate=float(self.state.errors.count(now)),
            streams=self.feed.streams(now),
            run_id=self.run_id,
            config_hash=self.config_hash,
            model_version=self._model_label,
            cycle_p50_ms=self._cycle_pct[0],
            cycle_p99_ms=self._cycle_pct[1],
        )
        if self.stats.cycles % CYCLE_STATS_EVERY == 0 and self.stats.cycle_ms:
            recent = list(self.stats.cycle_ms)[-1000:]
            self._cycle_pct = (float(np.percentile(recent, 50)), float(np.percentile(recent, 99)))
        if self._close_all is not None and self._close_all.remaining:
            left = len(core.book.holdings)
            self._close_all = CloseAllProgress(self._close_all.requested_ms, self._close_all.total, left, self._close_all.errors)
        snap = EngineSnapshot(
            seq=self._seq,
            ts_ms=now,
            status=status,
            candidates=candidates,
            positions=positions,
            totals=totals,
            events=tuple(self.tap.recent),
            close_all=self._close_all,
        )
        await self.hub.publish(snap)
        self.metrics.update_from_snapshot(snap)

    def _candidate_rows(self, cycle: DiscoveryCycle | None) -> tuple[CandidateRow, ...]:
        if cycle is None:
            return ()
        core = self.core
        assert core is not None
        rows = []
        for c in cycle.snapshot.candidates:
            state = "in_position" if c.symbol in core.book else self.tap.last_signal.get(c.symbol, "")
            rows.append(
                CandidateRow(
                    symbol=c.symbol,
                    trace_id=c.trace_id,
                    heat=c.heat,
                    rank=c.rank,
                    price=c.price,
                    ret_1m=c.returns.get("1m", 0.0),
                    ret_5m=c.returns.get("5m", 0.0),
                    ret_1h=c.returns.get("60m", 0.0),
                    volume_surge=c.volume_surge,
                    coin_age_days=c.coin_age_days,
                    sources=c.sources,
                    signal_state=state,
                )
            )
        return tuple(rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


async def trace_events(journal_path: str, trace_id: str) -> list[JournalEvent]:
    """A trace's events from the journal file, read off the loop (sqlite3 is blocking)."""
    from engine.journal.reader import JournalReader

    def read() -> list[JournalEvent]:
        with JournalReader(journal_path) as reader:
            return reader.trace(trace_id)

    return await asyncio.to_thread(read)

