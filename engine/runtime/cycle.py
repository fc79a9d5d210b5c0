"""`TradingCycle`: one market batch through the decision core, in the order the live engine and
the backtester share.

    paper book <- batch          PaperBroker fills see this batch's quotes
    market info                  refreshed every 5 min of market time (listings appear)
    slow inputs                  social posts and announcements delivered since the last cycle
    discovery.on_batch()         pool + candidate_snapshot events
                                 (these three: `DiscoveryDriver`, discovery's half of the cycle)
    candles for the core         closed bars of pool members, holdings and the regime symbol:
                                 WINDOW+2 on first sight, then the last 3, less what was fed
    state machine step           tradeable | degraded | blocked (state_change events); leaving
                                 tradeable cancels the entry orders still resting (exits stay)
    core.step()                  exits and entries as order intents
    router.send_all()            order_attempt / order_result; each update booked into the core
                                 as its reply comes
    router.sync()                every 5 s of market time: the broker's resting orders and
                                 expiries, each journaled as an order_result, then booked

`Engine` (wall clock, commands, snapshots, audits) and `BacktestRunner` (virtual clock, trade
log, equity curve) each wrap one of these, so there is one orchestration to keep right; the
parity test (`tests/engine/backtest/test_parity.py`) runs the same history through both
wrappers and compares the journals event for event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from engine.config import HotcoinConfig
from engine.discovery.pipeline import Discovery, DiscoveryCycle
from engine.domain import Candidate, EngineState, Market, TickerBatch, TickerRun
from engine.domain.candle import timeframe_ms
from engine.domain.slots_init import direct_init
from engine.errors import FAULT_ERRORS, InsufficientBalanceError, OrderError
from engine.execution.broker import Broker, OrderUpdate, SyncIncomplete
from engine.execution.paper import PaperBroker
from engine.execution.router import Durable, JournalFailure, OrderRouter
from engine.runtime.discovery_driver import DiscoveryDriver, DiscoveryStage
from engine.runtime.feed import MarketFeed
from engine.runtime.quiet_log import RepeatedFailure
from engine.runtime.state_machine import EngineStateMachine, Transition
from engine.runtime.tap import Tap
from engine.signals.bars import BarStore
from engine.signals.columns import MemberColumns, pool_of, symbols_of
from engine.signals.features import WINDOW
from engine.signals.scorer import ModelLoad
from engine.trading import TradingCore

log = logging.getLogger("hotcoin.engine")

SYNC_EVERY_MS = 5_000
BARS_RETRY_MS = 5_000  # a symbol whose just-closed bar has not come yet is asked again this often


@runtime_checkable
class ResultsAhead(Protocol):
    """A discovery stage whose results were computed ahead of the core (a backtest's,
    `engine.backtest.discovery_process`): results can be read before they are taken, so the
    cycle can tell a run of quiet minutes before stepping it (`TradingCycle.step_quiet`)."""

    def ahead(self) -> Iterator[tuple[int, MemberColumns | Sequence[Candidate]]]:
        """The results not taken yet (those ready), in order, as their times and pools as the
        core reads them first (`pool_of` a cycle's snapshot: a pool of members as its columns,
        in rank order), none built; read before the next `take`."""

    def take(self, n: int) -> None:
        """Take the next `n` results, their events re-emitted as `on_batch` would."""


def _faults_only(exc: OrderError) -> bool:
    """Whether a failed sync failed only on faults the state machine shows by themselves
    (`FAULT_ERRORS`: a refused key, clock skew)."""
    errors = exc.errors if isinstance(exc, SyncIncomplete) else [exc]
    return all(isinstance(e, FAULT_ERRORS) for e in errors)


@direct_init  # one a minute: a backtest's month builds 40,000
@dataclass(frozen=True, slots=True)
class CycleOutcome:
    """What one batch did: discovery's result, and when its intents were handed to the broker
    (`perf_counter()` seconds; None when the cycle decided nothing)."""

    discovery: DiscoveryCycle
    intents: int
    sent_at: float | None


class TradingCycle:
    """Discovery, state machine, core and router over one feed and broker (see the module doc).

    `on_update(update)` sees every order update after the core booked it; `on_stepped()` runs
    right after `core.step` (positions the core closed without a fill, e.g. dust written off).
    """

    def __init__(
        self,
        config: HotcoinConfig,
        feed: MarketFeed,
        broker: Broker,
        tap: Tap,
        *,
        run_id: str,
        model: ModelLoad | None = None,
        discovery: DiscoveryStage | None = None,
        on_update: Callable[[OrderUpdate], None] | None = None,
        on_stepped: Callable[[], None] | None = None,
        on_transition: Callable[[Transition], None] | None = None,
        durable: Durable | None = None,
        journal_failed: JournalFailure | None = None,
    ) -> None:
        """`on_transition`: told of each state change as it is journaled (the live engine logs
        it; a backtest has only the journal)."""
        self.config = config
        self.feed = feed
        self.broker = broker
        self.tap = tap
        self.run_id = run_id
        self.model = model
        self.config_hash = config.config_hash()  # hashing the config costs ~1 ms: once per run
        self.state = EngineStateMachine(config.state)
        tap.on_order_error = self.state.errors.record
        self.driver = DiscoveryDriver(
            discovery or Discovery(config.discovery, tap, quote_asset=config.exchange.quote_asset, run_id=run_id),
            feed,
            config.discovery.windows.slot_ms,
        )
        stage = self.driver.discovery
        self._ahead = stage if isinstance(stage, ResultsAhead) else None  # asked once: a protocol check costs ~10 us
        self._journal_failed = journal_failed
        self.router = OrderRouter(broker, tap, durable=durable, journal_failed=journal_failed)
        self.core: TradingCore | None = None
        self.paused = False  # the operator paused new entries (exits continue)
        self._on_update = on_update
        self._on_stepped = on_stepped
        self._on_transition = on_transition
        # symbol -> (bar it is fed for, open time of the last candle fed, no new fetch before this time)
        self._fed: dict[str, tuple[int, int | None, int]] = {}
        self._store: BarStore | None = None  # the feed's bars, read in place (a backtest's store)
        self._markets_given: tuple[TradingCore, Mapping[str, Market]] | None = None  # the refresh handed, to which core
        self._last_sync = 0
        self._sync_log = RepeatedFailure(log, "broker sync")  # an outage fails every sync alike
        self._tf = config.trading.signals.timeframe
        self._tf_ms = timeframe_ms(self._tf)
        self._regime = config.trading.signals.regime_symbol

    # ------------------------------------------------------------------ start
    @property
    def markets(self) -> dict[str, Market]:
        """Market info as of the latest refresh (the core's, less any coin it still holds
        that the refresh left out: `TradingCore.markets`)."""
        return self.driver.markets

    async def warmup(self) -> int:
        """Discovery through the feed's warm-up batches (before trading starts); their count."""
        return await self.driver.warmup()

    async def begin(self, first: TickerBatch, mode: str) -> TradingCore:
        """Create the core at the first batch and journal `run_start`."""
        await self.driver.open(first)
        model = self.model
        scorer = model.scorer if model is not None else None
        self._store = self.feed.bar_store(self._tf)
        if self._regime not in self.driver.markets:
            log.warning(
                "regime symbol %s is not among the %d markets: the btc_* features are NaN for the whole run; "
                "set trading.signals.regime_symbol to a listed pair", self._regime, len(self.driver.markets),
            )
        self.core = TradingCore(
            self.config.trading, self.driver.markets, self.tap, run_id=self.run_id, scorer=scorer, history=self._store,
            fee_assets=self.broker.fee_assets,
        )
        self.tap.emit(
            "run_start",
            ts_ms=first.ts_ms,
            payload={
                "run_id": self.run_id,
                "config_hash": self.config_hash,
                "mode": mode,
                # What this run's cash starts from: a restart under another one is a deposit or
                # withdrawal (`RiskManager.restore`), and replay says which capital each run had.
                "capital": self.config.trading.capital.active.capital,
                "model": model.model if model is not None else None,
                "model_status": model.status if model is not None else "no model loader",
                # A model there but refused (or unreadable), and warnings about the one installed:
                # the owner's "Engine started" message says them, not only the log.
                "model_failed": model.failed if model is not None else False,
                "model_warnings": list(model.warnings) if model is not None else [],
                # Its warm-up journaled nothing (`DiscoveryDriver.warmup`): the event before this
                # one is the last of the run before (`engine.ops.report.run_end_before`).
                "warmup_journaled": False,
            },
        )
        return self.core

    # ------------------------------------------------------------------ the cycle
    def deliver(self, kind: str, items: list[Any]) -> None:
        """Social posts ("posts") or announcements, folded into discovery at the next cycle."""
        self.driver.deliver(kind, items)

    def post_queued(self, post_id: str) -> bool:
        """Whether a post with this id is delivered and not folded into discovery yet."""
        return self.driver.post_queued(post_id)

    async def step(self, batch: TickerBatch) -> CycleOutcome:
        core = self.core
        assert core is not None, "begin() first"
        now = batch.ts_ms
        if isinstance(self.broker, PaperBroker):
            self.broker.update_book(batch)
        # A minute's steps are called, not awaited, where they have nothing to wait for (most
        # minutes: nothing due in discovery, a store to follow, no state change): a coroutine
        # each costs more than what most of them do.
        driver = self.driver
        cycle = await driver.on_batch(batch) if driver.due(now) else driver.discovery.on_batch(batch)
        pool = pool_of(cycle.snapshot)  # read as columns until something needs them built (`ColumnPool`)
        self.hand_markets(core)
        if self._store is not None:
            self._follow(self._store, pool, core, now)
        else:
            await self._feed_candles(pool, now)
        transition = self._measure_state(now)
        if transition is not None:
            await self._state_changed(transition, now)
        intents = core.step(batch, pool, now, self.tap.candidate_seq)
        if self._on_stepped is not None:
            self._on_stepped()
        sent_at = None
        if intents:
            # Each answer booked as it comes (`OrderRouter.send_all`): its fills are journaled
            # then, not once the slowest reply of the bar is back.
            updates = await self.router.send_all(intents, now, core.causes, book=lambda u: self.book([u], now))
            sent_at = time.perf_counter()
            await self.exits_short(updates, now)
        if now - self._last_sync >= SYNC_EVERY_MS:
            self._last_sync = now
            if self.router.at_rest():  # the sync would find nothing: its success, without its coroutines
                self._sync_log.ok()
            else:
                self.book(await self._sync(now), now)
        return CycleOutcome(cycle, len(intents), sent_at)

    @property
    def steps_quiet(self) -> bool:
        """Whether `step_quiet` may step any minute at all: discovery's results come ahead of the
        core (`ResultsAhead`), the core reads a store's bars in place, and nothing reads an
        event but its count. Else a feed's run of minutes would be stepped one by one anyway."""
        return self._ahead is not None and self._store is not None and self.tap.counts_only

    async def step_quiet(self, run: TickerRun, j: int, limit: int) -> int:
        """Minutes j, j+1, ... of `run` (the feed's next minutes; `step` took the one before j),
        up to `limit` of them, stepped at once while each is quiet, and how many: the core
        rests (`TradingCore.rests`) and its pool is empty or cold columns
        (`TradingCore.skip_cold_columns`), the engine stays tradeable and healthy, market info
        and the broker are as they were, and nothing reads a minute's events but their count
        (`Tap.counts_only`). The first that is not is left to `step`.

        Such a minute's `step` changes only what is set again the next: the paper book and the
        core's quotes (the last minute's kept), the readable bars (each symbol's last minute),
        the state machine's counts, the risk day (marked at each UTC day's first minute), the
        sync's time, and its events' counts. So each is done once for the run, and the checks
        a minute needs are read in one loop (~2-4 us a minute against ~15 for `step`; 36,500 of
        a replayed month's 40,255 minutes). `tests/engine/backtest/test_quiet_minutes.py` holds
        the two ways to the same results, minute for minute."""
        core, stage, store = self.core, self._ahead, self._store
        assert core is not None
        if stage is None or store is None or not (self.tap.counts_only and core.rests and self.router.at_rest()):
            return 0
        driver, state, feed, journal_failed = self.driver, self.state, self.feed, self._journal_failed
        level, causes, due = int(core.risk.level), self.tap.candidate_seq, driver.due
        followed: dict[str, int] = {}  # symbol -> the last quiet minute its pool named it
        times: list[int] = []
        # The run's minutes against discovery's results: either may end first (the results
        # ready so far; the run's `limit`), and the run's end pulls no result past it.
        for now, (ts, pool) in zip(run.ts_ms[j : j + limit].tolist(), stage.ahead(), strict=False):
            if ts != now:  # diverged: `step` says so
                break
            if due(now) and not await driver.refresh_unchanged(now):
                break
            failure = None if journal_failed is None else journal_failed()
            if not state.healthy_in_tradeable(
                now, feed.data_age_s(now), feed.ws_down_s(now), level, failure, feed.exchange_fault()
            ):  # fmt: skip
                break
            if isinstance(pool, MemberColumns):
                if not core.skip_cold_columns(pool, now, causes):
                    break
                for symbol in pool.symbols:
                    followed[symbol] = now
            elif pool:  # built candidates (not a replay's columns): `step` decides them
                break
            times.append(now)
        if not times:
            return 0
        stage.take(len(times))
        last = run.batch(j + len(times) - 1)
        if isinstance(self.broker, PaperBroker):
            self.broker.update_book(last)
        self.hand_markets(core)
        markets, follow = self.markets, store.follow
        for symbol, now in followed.items():
            if symbol in markets:
                follow(symbol, now)
        if self._regime in markets:
            follow(self._regime, times[-1])
        state.count_healthy(len(times))
        self.push_state()
        core.rest_minutes(last, times)
        if self._on_stepped is not None:
            self._on_stepped()
        synced = self._last_sync
        for now in times:
            if now - synced >= SYNC_EVERY_MS:
                synced = now
        if synced != self._last_sync:
            self._last_sync = synced
            self._sync_log.ok()  # the router at rest: the sync's success, as `step` has it
        return len(times)

    def hand_markets(self, core: TradingCore) -> None:
        """Give `core` the latest refresh's markets, once per refresh (or core installed).
        Judged by what was handed, not by the core's own: it keeps the last Market of a coin it
        holds that a refresh left out (`TradingCore.markets`), in a dict of its own, and every
        batch would then hand the same refresh over again."""
        given = self._markets_given
        if given is None or given[0] is not core or given[1] is not self.driver.markets:
            core.markets = self.driver.markets
            self._markets_given = (core, self.driver.markets)

    @property
    def journal_failure(self) -> str | None:
        """The journal's failure as soon as its writer has one (None while it writes): the state
        machine blocks on it and the router refuses entries. Asked of the journal each time, which
        keeps it once failed, rather than copied here."""
        return None if self._journal_failed is None else self._journal_failed()

    async def exits_short(self, updates: list[OrderUpdate], now: int) -> None:
        """Exits refused for insufficient balance: ask the exchange what it holds of the coin,
        free and locked, so the core sells that (or lets the position go) instead of resending
        the same exit; coins locked in an order (placed in the Binance app) are still held, not
        lost. A balance that cannot be fetched leaves the core's backoff to pace the retries.
        A cycle's exits come here, and so do a close-all press's (`close_all`'s `short`)."""
        core = self.core
        assert core is not None
        for update in updates:
            order = update.order
            if not (isinstance(update.error, InsufficientBalanceError) and order.purpose.is_exit):
                continue
            market = core.markets.get(order.symbol)  # the core's: it keeps a held coin's a refresh left out
            free: float | None = None
            locked = 0.0
            if market is not None:
                try:
                    held = await self.broker.coin_balance(market.base)
                except OrderError as exc:
                    log.warning("balance of %s after a refused exit: %s", market.base, exc)
                else:
                    if held is not None:
                        free, locked = float(held.free), float(held.locked)
            core.on_exit_short(order.symbol, free, now, cause=update.journal_seq, locked=locked)

    async def _sync(self, now: int) -> list[OrderUpdate]:
        """The broker's progress, journaled by the router. A failed exchange call (429, 5xx,
        timeout) is logged and counted (not a refused key or clock skew: the state machine blocks
        on those under their own reason) and the next sync retries it; what the broker absorbed
        before or after it comes back inside `SyncIncomplete` and is booked now, since the broker
        never reports it again. The log says the first failure of a run, a new kind of failure,
        a summary now and then, and the sync that works again (`RepeatedFailure`); the error
        window counts every failure."""
        try:
            updates = await self.router.sync(now)
        except OrderError as exc:
            self._sync_log.failed(str(exc))
            if not _faults_only(exc):
                self.state.errors.record(now)
            return exc.updates if isinstance(exc, SyncIncomplete) else []
        self._sync_log.ok()
        return updates

    def book(self, updates: list[OrderUpdate], now: int) -> None:
        """Order updates, each already journaled by the router (`journal_seq`), into the core,
        then to `on_update`."""
        core = self.core
        assert core is not None
        for update in updates:
            core.on_order_update(update, now)
            if self._on_update is not None:
                self._on_update(update)

    async def _feed_candles(self, candidates: Sequence[Candidate], now: int) -> None:
        """Closed bars for every symbol the core may decide on this bar (pool, holdings, regime),
        once per bar per symbol: the last WINDOW+2 on first sight, then every bar since the
        symbol was last fed (a symbol back in the pool after a while needs all the bars it
        missed, or its window has holes and its features are NaN for an hour), at most
        WINDOW+2, less the candles already fed (a closed candle never changes). A symbol counts
        as fed for the bar only once the bar that just closed has arrived: a failed fetch (the
        feed answers nothing on an exchange error) or a candle the exchange has not published
        yet is asked for again `BARS_RETRY_MS` later, not left missing (and every feature NaN)
        until the next bar. A feed whose bars the core reads in place (`bar_store`) is told how
        far instead: the same bars (`_follow`, which `step` calls itself, without a coroutine)."""
        core = self.core
        assert core is not None
        if self._store is not None:
            self._follow(self._store, candidates, core, now)
            return
        bar = now // self._tf_ms
        wanted = set(symbols_of(candidates))
        wanted.update(core.book.holdings)
        wanted.add(self._regime)
        just_closed = (bar - 1) * self._tf_ms
        asks: list[tuple[str, tuple[int, int | None, int] | None, int | None, int]] = []
        for symbol in wanted:
            fed = self._fed.get(symbol)
            if (fed is not None and (fed[0] == bar or now < fed[2])) or symbol not in self.markets:
                continue
            if fed is None or fed[1] is None:  # nothing fed yet: the whole window
                limit, after = WINDOW + 2, None
            else:
                limit, after = min(WINDOW + 2, bar - fed[0] + 2), fed[1]
            asks.append((symbol, fed, after, limit))
        # Asked all at once, and booked in the same order: one after the other, an exchange whose
        # REST hangs held the cycle (exits included) for a request timeout per symbol, 20 of
        # them 200 s, while the tickers still came; the requests' weight is the same either way.
        answers = await asyncio.gather(*(self.feed.closed_bars(s, self._tf, n, after_ms=a) for s, _, a, n in asks))
        for (symbol, fed, after, _), bars in zip(asks, answers, strict=True):
            if len(bars):
                core.on_bars(bars)
                after = int(bars.open_ms[-1])
            if after is not None and after >= just_closed:
                self._fed[symbol] = (bar, after, now)
            else:  # not there yet: keep the bar it was fed for (the next fetch spans the gap), retry soon
                self._fed[symbol] = (bar - 1 if fed is None else fed[0], after, now + BARS_RETRY_MS)
        if len(self._fed) > 4 * max(64, len(wanted)):
            self._fed = {s: b for s, b in self._fed.items() if s in wanted}

    def _follow(self, store: BarStore, candidates: Sequence[Candidate], core: TradingCore, now: int) -> None:
        """`_feed_candles` for a store: the core may read every wanted symbol up to `now`.
        Following is idempotent within a minute, so a symbol named twice (a held candidate) is
        simply told twice, and no set of the wanted symbols is built (every minute, mostly
        for the regime symbol alone)."""
        markets, follow = self.markets, store.follow
        for symbol in symbols_of(candidates):
            if symbol in markets:
                follow(symbol, now)
        for symbol in core.book.holdings:
            if symbol in markets:
                follow(symbol, now)
        if self._regime in markets:
            follow(self._regime, now)

    async def step_state(self, now: int) -> None:
        """Health into the state machine, one step per market batch (state_change journaled);
        the core obeys its verdict. A transition to a state without entries (leaving tradeable,
        or degraded -> blocked, which retries a cancel that failed) cancels the entries still
        resting."""
        transition = self._measure_state(now)
        if transition is not None:
            await self._state_changed(transition, now)

    def _measure_state(self, now: int) -> Transition | None:
        """`step_state`'s step of the machine, and the state into the core: all of it, the
        minutes the state stays (nearly all), without a coroutine."""
        core = self.core
        assert core is not None
        feed = self.feed
        journal_failed = self._journal_failed
        # Measured every minute: the machine builds its `HealthInputs` only for a cycle that is
        # not a healthy one of a tradeable engine (`step_measured`).
        transition = self.state.step_measured(
            now, feed.data_age_s(now), feed.ws_down_s(now), int(core.risk.level),
            None if journal_failed is None else journal_failed(), feed.exchange_fault(),
        )  # fmt: skip
        self.push_state()
        return transition

    async def _state_changed(self, transition: Transition, now: int) -> None:
        """`step_state` for a step that changed the state: journaled, told, and the entries
        still resting cancelled where the new state allows none."""
        seq = self.tap.emit("state_change", ts_ms=now, payload=transition.payload())
        if self._on_transition is not None:
            self._on_transition(transition)
        if not transition.to_state.allows_entries:
            await self._cancel_entries(now, seq, transition.to_state)

    def push_state(self) -> None:
        """The machine's current state and the operator's pause into the core, without a step:
        an operator command is no market cycle and must not count towards recovery."""
        core = self.core
        assert core is not None
        core.set_engine_state(self.state.state)
        core.paused = self.paused

    async def _cancel_entries(self, now: int, cause: int, state: EngineState) -> None:
        """Cancel the entry orders still open, each in its own trace and caused by the
        `state_change`: a limit resting when the engine stopped trading would otherwise fill
        at the next sync and open the very position the state forbids. Exits are left alone;
        a cancel that fails is journaled (`cancel_failed`) and the order left to its expiry."""
        core = self.core
        assert core is not None
        entries = core.pending_entries()
        if not entries:
            return
        orders = [o for o in await self.broker.open_orders() if o.client_order_id in entries]
        reason = f"engine {state.value}"
        cancels = await asyncio.gather(*(self.router.cancel(o, now, cause=cause, reason=reason) for o in orders))
        self.book([u for u in cancels if u is not None], now)
