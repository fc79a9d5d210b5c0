"""The live engine loop: one asyncio loop that feeds market data into the synchronous core
with a clock, carries out its intents through a broker, journals, and publishes snapshots.

One cycle per full-market ticker batch:

    feed.next_batch()            (the only wait on the market)
    journal.wait_writable()      back-pressure: never drop an event, never grow without bound;
                                 a failed writer that still saves its events: exits-only
    pushed order updates         what the exchange's user stream pushed since the last batch
                                 (`_watch_orders`, a task of its own), booked before the step
    TradingCycle.step()          discovery -> candles -> state machine -> core -> orders -> sync,
                                 the very steps the backtester runs (`engine.runtime.cycle`)
    balance audit                every 5 minutes in exchange mode
    publish snapshot             for the TUI, /health and /metrics

Commands (pause, resume, close-all, shutdown) arrive through a queue and run between cycles,
so the core is only ever touched by this loop: no locks.

When the journal can no longer write (disk full, I/O error, a rotation the main file refuses)
but its writer still saves every event to a spill file, the engine goes exits-only rather than
stopping: the state machine blocks with reason `journal` (no new entries, resting entries
cancelled), while stops, trailing stops, take-profit tiers, max hold, signal exits and
close-all go on, each step saved in seq order for the next start to take back. It stops,
raising the `JournalError`, once nothing is held and no entry is in flight, or at once when
saving fails too: a stop would otherwise leave open positions unwatched, and trading with no
record must not go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.config import HotcoinConfig
from engine.discovery.listings import Announcement
from engine.discovery.pipeline import Discovery, DiscoveryCycle
from engine.discovery.social.source import Refusal, SocialPost
from engine.domain import Candle, EngineState, Fill, Order, StateReason, TickerBatch
from engine.errors import JournalError
from engine.execution.broker import Broker, OrderUpdate
from engine.execution.close_all import close_all
from engine.execution.router import Durable
from engine.journal.events import EventSink, JournalEvent
from engine.ops.metrics import EngineMetrics
from engine.runtime.client import Command, CommandResult
from engine.runtime.cycle import TradingCycle
from engine.runtime.feed import MarketFeed
from engine.runtime.local_client import SnapshotHub
from engine.runtime.recovery import BalanceAudit, Recovery
from engine.runtime.snapshot import (
    STILL_OPEN,
    CandidateRow,
    CloseAllProgress,
    EngineSnapshot,
    EngineStatus,
    Mode,
    PositionRow,
    Totals,
)
from engine.runtime.state_machine import Transition
from engine.runtime.tap import EventObserver, Tap
from engine.signals.scorer import ModelLoad
from engine.trading import TradingCore

log = logging.getLogger("hotcoin.engine")

CYCLE_STATS_EVERY = 50  # cycles between refreshes of the cycle-time percentiles in status
CHART_FILLS = 500  # fills kept per symbol for the chart's marks (`Engine.fills`)
CLOSE_ALL_SHOWN_S = 10.0  # a finished close-all stays in the snapshots this long (wall clock), then goes
ORDER_STREAM_RETRY_S = (1.0, 60.0)  # first and longest wait before the user stream is asked again after a failure

OrderStream = Callable[[], Awaitable[list[Order]]]  # the exchange's user stream: the next order snapshots it pushes


@dataclass
class EngineStats:
    cycles: int = 0
    batches_rejected: int = 0
    fills: int = 0
    decision_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # batch -> orders sent
    cycle_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # batch -> cycle done


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
        durable: Durable | None = None,
        order_stream: OrderStream | None = None,
    ) -> None:
        """`durable` makes order attempts reach the disk before their orders leave (`OrderRouter`).
        `order_stream`: the exchange's user stream (`Gateway.watch_orders`), for a broker on a
        real exchange: a resting order's fill is booked at the next batch instead of the next
        reconcile (`reconcile_interval_ms`, 15 s), which stays as the safety net for a stream
        that drops or lags."""
        self.config = config
        self.feed = feed
        self.broker = broker
        self.journal = journal
        self.tap = Tap(journal)
        self.run_id = run_id
        self.mode = mode
        self.metrics = metrics or EngineMetrics()
        self.recovery = recovery  # state rebuilt from the journal, installed once the core exists
        self.model = model  # the verified model in the signal path (production or shadow), if any
        self._model_label = f"{model.model} ({model.mode})" if model is not None and model.scorer is not None else None
        self.audit = audit  # exchange balances vs our records, every 5 minutes (exchange mode)
        self.order_stream = order_stream  # listened to from the first batch on (`_watch_orders`)
        self._pushed: list[Order] = []  # what the user stream pushed since the last cycle, oldest first
        self.hub = SnapshotHub()
        self.observe(self._count_signal)
        self.stats = EngineStats()
        self.metrics.count_feed_errors(self._feed_errors)
        self.discovery = Discovery(config.discovery, self.tap, quote_asset=config.exchange.quote_asset, run_id=run_id)
        self._source_counters: dict[str, Counter[str]] = {}
        self.metrics.count_discovery(self.discovery_counts)
        self.cycle = TradingCycle(
            config, feed, broker, self.tap, run_id=run_id, model=model, discovery=self.discovery, on_update=self._on_update,
            on_transition=_log_transition, durable=durable, journal_failed=lambda: getattr(journal, "failure", None),
        )
        self.config_hash = self.cycle.config_hash
        self.state = self.cycle.state
        self.router = self.cycle.router
        self._commands: asyncio.Queue[tuple[Command, str, asyncio.Future[CommandResult]]] = asyncio.Queue(maxsize=64)
        self._stop = asyncio.Event()
        self._exits_only = False  # the journal failed and that was logged: closing what is held, then stopping
        self._command_waiting = asyncio.Event()
        self._fills: dict[str, deque[Fill]] = {}
        self._now = 0
        self._seq = 0
        self._close_all: CloseAllProgress | None = None
        self._close_all_flat_at: float | None = None  # time.monotonic() when `_close_all` went flat
        self._cycle_pct = (0.0, 0.0)  # p50, p99 of recent cycles (ms), refreshed every CYCLE_STATS_EVERY
        self._waiting_since: float | None = None  # time.monotonic() when the wait for the first batch began

    @property
    def core(self) -> TradingCore | None:
        return self.cycle.core

    @core.setter
    def core(self, core: TradingCore | None) -> None:  # recovery tests install a prepared core
        self.cycle.core = core

    @property
    def paused(self) -> bool:
        return self.cycle.paused

    # ------------------------------------------------------------------ public
    async def run(self, duration_s: float | None = None) -> None:
        """Trade until `duration_s` of wall time passed, a SHUTDOWN command, or `stop()`.

        Any of them ends the start too (the warm-up, the wait for the first batch): a feed
        that never delivers (a half-open stream) kept SIGTERM and `--duration` waiting for it.
        The duration counts from this call, the start included, so 0 ends a run before its
        first batch (it used to mean "one cycle", an accident of checking only after cycles).
        A run stopped before its first batch journals nothing, neither `run_start` (no core
        was made, and no batch stamps one) nor a `run_stop` with no start to pair with: it
        traded nothing, and its log says it stopped before the market answered."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        if self.recovery is not None:  # before the warm-up's first market load, which takes every coin trading then as old
            self.discovery.restore_listings(self.recovery.state.listings)
        first = await self._start(deadline)
        if first is None:
            reason = "shutdown" if self._stop.is_set() else "duration"
            log.warning("engine stopped (%s) before the market's first batch: nothing traded, nothing journaled", reason)
            await self.hub.close()
            return
        self._now = first.ts_ms
        await self.cycle.begin(first, self.mode.value)
        if self.recovery is not None:
            await self.recovery.apply(self, first.ts_ms)
        self._journal_lost_events(first.ts_ms)
        # Listening starts once recovery has handed the journal's open orders to the broker: a
        # push taken before would adopt one as new, from nothing filled, and book its fills twice.
        watcher = None if self.order_stream is None else asyncio.create_task(self._watch_orders(self.order_stream))
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
                failure = self.cycle.journal_failure
                if failure is not None and self._nothing_left():
                    raise JournalError(failure)
        except JournalError as exc:
            reason = self._journal_failed(exc)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            try:
                if self.core is not None:  # the stops as the owner last saw them, for the next start to rebuild
                    self.core.journal_trails(self._now)
            finally:
                self.tap.emit("run_stop", ts_ms=self._now, payload={"run_id": self.run_id, "reason": reason})
                await self.hub.close()

    def stop(self) -> None:
        self._stop.set()

    def first_batch_wait_s(self) -> float | None:
        """Wall seconds this engine has waited for the market's first batch, counted from the
        end of its warm-up; None while warming up and once trading. /health reads it: a feed
        that never delivers must turn the probe red, a long warm-up (one REST call per symbol,
        each bounded by its timeout) must not (`engine.ops.http`)."""
        since = self._waiting_since
        return None if since is None else time.monotonic() - since

    async def _start(self, deadline: float | None) -> TickerBatch | None:
        """The warm-up, then the first batch; None when `stop()`, a SHUTDOWN command or the
        deadline comes first (the warm-up or the wait is cancelled, the feed is left to close)."""
        start = asyncio.ensure_future(self._warm_then_first())
        stop = asyncio.ensure_future(self._stop.wait())
        shutdown = asyncio.ensure_future(self._shutdown_before_start())
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait({start, stop, shutdown}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stop, shutdown, start):
                if not task.done():
                    task.cancel()
            await asyncio.gather(stop, shutdown, return_exceptions=True)
            self._waiting_since = None
        if start in done:
            return start.result()
        with contextlib.suppress(asyncio.CancelledError):
            await start
        return None

    async def _warm_then_first(self) -> TickerBatch:
        warm = await self.cycle.warmup()
        if warm:
            log.info("discovery warmed up", extra={"batches": warm})
        self._waiting_since = time.monotonic()
        return await self.feed.next_batch()

    async def _shutdown_before_start(self) -> None:
        """Answer SHUTDOWN commands that come before the first batch (the TUI's stop), then
        return; other commands stay queued for the first cycle, which journals them after
        `run_start`, stamped with the market's time, as they always were."""
        while not self._stop.is_set():
            await self._command_waiting.wait()
            self._command_waiting.clear()  # the first cycle drains what stays queued anyway
            kept = []
            while not self._commands.empty():
                command, origin, future = self._commands.get_nowait()
                if command is not Command.SHUTDOWN:
                    kept.append((command, origin, future))
                    continue
                self._stop.set()
                if not future.done():
                    future.set_result(CommandResult(True, "shutting down"))
            for item in kept:
                self._commands.put_nowait(item)

    def _journal_lost_events(self, now_ms: int) -> None:
        """The journal opened on a damaged -wal (`Journal.wal_damage`): journal it as a
        `risk_event` (code `journal_wal_damaged`), which the console shows and the owner is
        told of. Recovery rebuilt positions and cash without the events it lost."""
        damage = getattr(self.journal, "wal_damage", None)
        if damage and self.core is not None:
            payload = {"code": "journal_wal_damaged", "level": self.core.risk.level.name, "detail": str(damage)}
            self.tap.emit("risk_event", ts_ms=now_ms, payload=payload)

    def _journal_failed(self, exc: JournalError) -> str:
        """The stop reason when the journal failed: exits-only ended flat, or saving the events
        failed too. The owner's "Engine stopped" notification must say why, and which positions,
        if any, are left open, unwatched."""
        held = sorted(self.core.book.holdings) if self.core is not None else []
        left = f"{len(held)} position(s) left open: {', '.join(held)}" if held else "no position open"
        log.error("journal failed, engine stopping; %s: %s", left, exc)
        return f"journal error ({left}): {exc}"

    async def _check_journal(self) -> None:
        """Back-pressure (`wait_writable`, which raises once events are being lost), then the
        journal's health: a writer that failed but saves its events has made the engine
        exits-only (the cycle reads the failure from the journal); the owner is told once."""
        wait = getattr(self.journal, "wait_writable", None)
        if wait is not None:
            await wait()
        failure = self.cycle.journal_failure
        if failure is None or self._exits_only:
            return
        self._exits_only = True
        core = self.core
        held = sorted(core.book.holdings) if core is not None else []
        late = self.broker.watching_late()
        log.error(
            "%s; engine blocked, exits only: %s%s, then it stops",
            failure,
            f"closing {len(held)} position(s) ({', '.join(held)})" if held else "nothing held",
            f", watching {len(late)} order(s) that may still land late" if late else "",
        )

    def _nothing_left(self) -> bool:
        """Nothing held, no entry in flight and no order the broker still watches as maybe
        landing late (`watching_late`): nothing left for exits-only to watch. A watched entry
        the exchange takes late buys coins: stopping first left them with no stop at all; once
        it lands it is a position, closed exits-only like any other, and once its watch ends
        unfound, nothing is left."""
        core = self.core
        return (
            core is not None
            and not core.book.holdings
            and not core.pending_entries()
            and not self.broker.watching_late()
        )

    def deliver_posts(self, posts: list[SocialPost]) -> None:
        """Social posts from a source task; folded into discovery at the next cycle."""
        self.cycle.deliver("posts", posts)

    def screen_post(self, post: SocialPost) -> tuple[str, ...] | Refusal:
        """Discovery's verdict on `post` now (market time): the coins it would count for, or why
        none. The webhook answers it to the sender; the post is still folded in at the next cycle.
        A post whose id is delivered and waiting for that cycle (from any feed) is a repeat too:
        discovery will count the first copy only."""
        if self.cycle.post_queued(post.post_id):
            return Refusal("duplicate_post", f"post id {post.post_id!r} is queued already: it counts at the next cycle")
        return self.discovery.screen_post(post, self.feed.now_ms())

    def count_source(self, name: str, counters: Counter[str]) -> None:
        """Export a discovery source's own counters (as `<name>.<key>`) with discovery's."""
        self._source_counters[name] = counters

    def discovery_counts(self) -> dict[str, int]:
        """Discovery's counters and its sources' (`hotcoin_discovery_events_total`)."""
        out = self.discovery.all_counters()
        for name, counters in self._source_counters.items():
            out.update((f"{name}.{key}", value) for key, value in counters.items())
        return out

    def deliver_announcements(self, announcements: list[Announcement]) -> None:
        """Exchange announcements from the poller; folded into discovery at the next cycle."""
        self.cycle.deliver("announcements", announcements)

    def _feed_errors(self) -> dict[str, int]:
        return {**self.feed.error_counts(), "rejected_batch": self.stats.batches_rejected}

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
        """The symbol's fills kept for the chart (`keep_fills`), oldest first."""
        return list(self._fills.get(symbol, ()))

    # ------------------------------------------------------------------ the cycle
    async def _next_or_command(self) -> TickerBatch | None:
        """The next batch; commands that arrive meanwhile are carried out as they come, however
        many (commands never wait for the market: a resume or a shutdown pressed after a
        close-all waited for the next batch, seconds on a quiet or stalled feed)."""
        batch_task = asyncio.ensure_future(self.feed.next_batch())
        while True:
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

    async def _cycle(self, batch: TickerBatch) -> None:
        core = self.core
        assert core is not None
        t0 = time.perf_counter()
        now = self._now = batch.ts_ms
        await self._check_journal()
        if self._pushed:  # before the step, so the core decides on what the exchange has done
            pushed, self._pushed = self._pushed, []
            self.cycle.book(await self.router.pushed(pushed, now), now)
        outcome = await self.cycle.step(batch)
        if not outcome.discovery.accepted:
            self.stats.batches_rejected += 1
        if outcome.sent_at is not None:
            self.stats.decision_ms.append((outcome.sent_at - t0) * 1000)
            self.metrics.decision_latency.observe(outcome.sent_at - t0)
        if self.audit is not None and self.audit.due(now):
            await self.audit.run(core, self.tap, now)
        self.stats.cycles += 1
        self.stats.cycle_ms.append((time.perf_counter() - t0) * 1000)
        self.metrics.cycle_latency.observe(time.perf_counter() - t0)
        await self._publish(outcome.discovery, now)

    async def _watch_orders(self, stream: OrderStream) -> None:
        """Keep what the user stream pushes for the next cycle, which books it (only the loop
        touches the core). The gateway reconnects a dropped stream and resyncs what its gap
        missed; a failure it raises (a refused key, an exchange down for long) is logged and
        the stream asked again after a growing wait, while the sync's reconcile goes on
        finding fills every `reconcile_interval_ms` meanwhile."""
        first_wait, longest_wait = ORDER_STREAM_RETRY_S
        wait = first_wait
        while True:
            try:
                orders = await stream()
            except Exception as exc:  # whatever it is, the reconcile still covers meanwhile
                log.warning(
                    "order stream failed (%s: %s); asking again in %.0f s, fills are still found by the reconcile",
                    type(exc).__name__, exc, wait,
                )  # fmt: skip
                await asyncio.sleep(wait)
                wait = min(wait * 2, longest_wait)
                continue
            wait = first_wait
            self._pushed.extend(orders)

    def _on_update(self, update: OrderUpdate) -> None:
        self.metrics.orders.labels(update.order.status.value).inc()
        self.stats.fills += len(update.fills)
        self.keep_fills(update.fills)

    def keep_fills(self, fills: Iterable[Fill]) -> None:
        """Keep `fills` (oldest first) for the chart's buy and sell marks (`fills`): this run's,
        and at a restart those recovery read back from the journal, so a position bought
        before it still shows its buy."""
        for fill in fills:
            self._fills.setdefault(fill.symbol, deque(maxlen=CHART_FILLS)).append(fill)

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
            self.cycle.paused = command is Command.PAUSE
            self.tap.emit("command", ts_ms=now, payload={"command": command.value, "origin": origin})
            self.cycle.push_state()
            if self.hub.latest is not None:
                # Out before the answer: a reader of the latest snapshot right after "done:
                # entries resumed" (Telegram's /status in the same batch of updates) read
                # "(paused)" until the next market batch. Before the first cycle there is no
                # snapshot to correct; the first one carries the pause.
                await self._publish(None, now)
            if self.paused:
                return CommandResult(True, "new entries paused")
            return CommandResult(True, "entries resumed" + _still_selling(core, now))
        if command is Command.SHUTDOWN:
            self.tap.emit("command", ts_ms=now, payload={"command": command.value, "origin": origin})
            self._stop.set()
            return CommandResult(True, "shutting down")
        if core is None:
            return CommandResult(False, "engine not started yet")
        held = len(core.book.holdings)
        # The panic button stops new entries too, until the operator resumes: otherwise the
        # next hot coin is bought a second after everything was sold (the fake engine agrees).
        if not self.cycle.paused:
            self.cycle.paused = True
            self.tap.emit("command", ts_ms=now, payload={"command": Command.PAUSE.value, "origin": f"{origin} (close-all)"})
            self.cycle.push_state()  # the core learns it is paused before it plans anything
        self._close_all = CloseAllProgress(requested_ms=now, total=held, remaining=held)
        self._close_all_flat_at = None
        await self._publish(None, now)
        report = await close_all(core, self.router, now, origin, book=self.cycle.book, short=self.cycle.exits_short)
        errors = _still_open(core, report.still_open, now)
        self._close_all = CloseAllProgress(now, held, len(report.still_open), errors)
        await self._publish(None, now)
        if report.still_open:
            # Not a failure: the core keeps selling what is left at every price update (the
            # progress in the snapshots shows it), so the console keeps its progress dialog.
            left = f"{len(report.still_open)} position(s) still open ({'; '.join(errors)})"
            return CommandResult(True, f"close-all: {left}, still closing; new entries paused until resume")
        flat = f"close-all: flat ({report.exits_filled} exit(s) filled, {report.cancelled} order(s) cancelled)"
        return CommandResult(True, f"{flat}; new entries paused until resume")

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
                stop_price=core.exit_policy.stop_in_force(h),
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
            reasons=tuple(_reason(r) for r in self.state.reasons),
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
        self._close_all = self._close_all_progress(core, now)
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

    def _close_all_progress(self, core: TradingCore, now: int) -> CloseAllProgress | None:
        """The running close-all with the positions still held left, and once its first pass
        has reported (it has errors), why each is still held as of now: a refusal seen in a
        later cycle shows, and its retry counts down (none once flat: a close that got there
        later did not fail). Once flat it is shown for `CLOSE_ALL_SHOWN_S` (the FLAT badge and
        the dialog's last word), then dropped, so the banner does not say FLAT for good over
        positions opened after a resume. Wall-clock seconds, not market time: a demo at
        --speed 60 would flash it for a sixth of a second."""
        progress = self._close_all
        if progress is None:
            return None
        if progress.remaining:
            held = core.close_all_left()  # not a position opened after a resume: the close-all leaves it be
            errors = _still_open(core, held, now) if progress.errors else ()
            progress = CloseAllProgress(progress.requested_ms, progress.total, len(held), errors)
        if progress.remaining:
            return progress
        if self._close_all_flat_at is None:
            self._close_all_flat_at = time.monotonic()
        return progress if time.monotonic() - self._close_all_flat_at < CLOSE_ALL_SHOWN_S else None

    def close_all_restored(self, requested_ms: int, now: int) -> None:
        """Show the close-all a restart took over (`Recovery.apply`) as in progress, with what
        it still sells: the snapshots, the console's banner and Telegram's /status said nothing
        of it, as if it had been forgotten."""
        core = self.core
        assert core is not None
        left = core.close_all_left()
        if not left:
            return
        self._close_all = CloseAllProgress(requested_ms, len(left), len(left), _still_open(core, left, now))
        self._close_all_flat_at = None

    def _candidate_rows(self, cycle: DiscoveryCycle | None) -> tuple[CandidateRow, ...]:
        if cycle is None:
            return ()
        core = self.core
        assert core is not None
        rows = []
        for c in cycle.snapshot.candidates:
            state = "in_position" if c.symbol in core.book else self.tap.last_signal.get(c.symbol, "")
            ret = {k: v for k, v in c.returns.items() if v == v}  # NaN (unknown) left out: shown as n/a
            rows.append(
                CandidateRow(
                    symbol=c.symbol,
                    trace_id=c.trace_id,
                    heat=c.heat,
                    rank=c.rank,
                    price=c.price,
                    ret_1m=ret.get("1m"),
                    ret_5m=ret.get("5m"),
                    ret_1h=ret.get("60m"),
                    volume_surge=c.volume_surge,
                    coin_age_days=c.coin_age_days,
                    sources=c.sources,
                    signal_state=state,
                )
            )
        return tuple(rows)


def _still_open(core: TradingCore, symbols: Collection[str], now: int) -> tuple[str, ...]:
    """Close-all's errors, "SYMBOL: what went wrong" for each position still held: the core's
    latest word on its exit (a refusal and when it is retried), "still open" when it knows of
    nothing wrong (an exit in flight). The journal had the reason; the operator needs it too."""
    return tuple(f"{s}: {core.exit_trouble(s, now) or STILL_OPEN}" for s in symbols)


def _still_selling(core: TradingCore | None, now: int) -> str:
    """What a resume leaves running, for its answer: the close-all goes on selling the coins it
    was asked to ("; close-all still selling OLRP/USDT (exit refused: ..., retrying in 30 s)"),
    never a position bought after the resume. Empty when no close-all runs."""
    if core is None or not (left := core.close_all_left()):
        return ""
    said = [s if (why := core.exit_trouble(s, now)) is None else f"{s} ({why})" for s in left]
    return f"; close-all still selling {', '.join(said)}"


def _log_transition(transition: Transition) -> None:
    """A state change in the log, with its reasons: the owner watching `hotcoin run` over SSH
    learns that entries stopped, and why, without opening the journal. A worse state is a
    warning, a better one news."""
    worse = transition.to_state is not EngineState.TRADEABLE and (
        transition.from_state is EngineState.TRADEABLE or transition.to_state is EngineState.BLOCKED
    )
    why = "; ".join(_reason(r) for r in transition.reasons) or (
        "healthy again" if transition.to_state is EngineState.TRADEABLE else "no reason recorded"
    )
    log.log(
        logging.WARNING if worse else logging.INFO, "engine %s -> %s: %s",
        transition.from_state.value, transition.to_state.value, why,
    )  # fmt: skip


def _reason(r: StateReason) -> str:
    """`code: detail (value vs threshold)`; a reason without numbers (the journal's) is just words."""
    if r.value is None and r.threshold is None:
        return f"{r.code}: {r.detail}"
    return f"{r.code}: {r.detail} ({_num(r.value)} vs {_num(r.threshold)})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


async def trace_events(journal_path: str, trace_id: str) -> list[JournalEvent]:
    """A trace's events from the journal file, read off the loop (sqlite3 is blocking)."""
    from engine.journal.reader import JournalReader

    def read() -> list[JournalEvent]:
        with JournalReader(journal_path) as reader:
            return reader.trace(trace_id)

    return await asyncio.to_thread(read)

