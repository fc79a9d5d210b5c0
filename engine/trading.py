"""`TradingCore`: from ranked candidates to order intents, and from fills to exits.

The synchronous heart of trading, shared by the live runtime, paper trading and the backtester:
it is handed market data, candidates, order updates and the time, and answers with
`OrderIntent`s while journaling each step under the candidate's trace. It never awaits, never
reads the clock, never touches the network; the async layer (`OrderRouter`, brokers,
`close_all`) carries its intents out and feeds the answers back through `on_order_update`.

    on_candle(candle), on_bars(bars)  closed bars for the features
    on_tickers(batch, now_ms)         prices: marks, risk update, exits  -> exit intents
    on_candidates(cands, now_ms, ..)  signals, risk, sizing, pre-check   -> entry intents
    on_order_update(update, now_ms)   fills -> positions, PnL, reservations released
    begin_close_all / close_all_intents   the emergency exit, as one trace
    resume_close_all                  a close-all a restart found unfinished, taken over

Journal: signal_snapshot (cause: candidate_snapshot) -> risk_check -> (router) order_attempt
-> order_result -> fill -> position_update; exits: signal_snapshot(stage=exit_policy) ->
order_attempt ...; a held coin's signal exit or hold: signal_snapshot(stage=exit, cause: the
position's open); risk_event for limits that fire.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any

from engine.config.sections.trading import TradingSection, max_spread_in_force
from engine.domain import (
    Bars,
    Candidate,
    Candle,
    EngineState,
    Fill,
    Market,
    Order,
    OrderIntent,
    OrderPurpose,
    OrderStatus,
    OrderType,
    SignalDecision,
    TickerBatch,
)
from engine.domain.market import to_decimal
from engine.domain.trading import Side
from engine.errors import ErrorClass, MarketDataError, OrderError
from engine.execution.broker import OrderUpdate
from engine.execution.client_ids import client_order_id
from engine.execution.precheck import OrderRequest, PrecheckResult, precheck
from engine.journal.events import TRAIL_ACTION, EventSink, check, make_trace_id
from engine.portfolio.allocator import Allocator
from engine.portfolio.clusters import Clusters
from engine.portfolio.exits import ExitDecision, ExitPolicy
from engine.portfolio.positions import (
    MISSING_REASON,
    WRITE_OFF_REASON,
    BookChange,
    Holding,
    PositionBook,
    PositionError,
    as_booked,
)
from engine.portfolio.risk import DAY_MS, RiskEvent, RiskManager
from engine.signals.bars import BarHistory, BarSource
from engine.signals.columns import ColumnPool, MemberColumns, by_rank
from engine.signals.scorer import Scorer
from engine.signals.stage import SignalStage

_SEEN_TRADES = 10_000  # duplicates arrive within seconds (stream + REST re-check), not days apart
_CLOSED_LEGS = 1_000  # traces closed lately whose entry may still fill: a reopen is minutes away
_rank = attrgetter("rank")  # fresh candidates are evaluated best first
_HELD_NOTED = 1_000  # candidate traces already told their coin is held or ordered (one trace per coin and bar)
# After an exit the exchange refused (non-retryable), the next one waits 30 s, doubling per refusal
# in a row up to 15 min: resending every tick cost request weight (a ban risk) and, counted as
# order errors, blocked the engine. A write-down to the real balance resets it (sell at once).
EXIT_RETRY_MS = 30_000
EXIT_RETRY_MAX_MS = 15 * 60_000
# An armed trailing stop's peak is journaled (`position_update`, action `trail`) at most this often
# per position: a pumping coin makes a new high most seconds, and one event per new high is one a
# second per position. The first rise after a quiet spell is journaled at once, and the runtime
# journals every peak not yet on disk when it stops (`journal_trails`), so a restart rebuilds the
# very stop the owner last saw; a crash loses at most this much of the rise, and the stop it
# rebuilds is then a little looser, never tighter.
TRAIL_JOURNAL_MS = 30_000


@dataclass(slots=True)
class _PendingEntry:
    symbol: str
    trace_id: str
    reserved: float  # quote set aside for the unfilled part, fee included
    notional: float  # exposure the unfilled part will add


@dataclass(slots=True)
class _CloseAll:
    """A running close-all. `traces` are the positions it sells, by trace: those held or with
    an entry in flight at a press (every press adds what is held then). A position opened
    after a resume is not among them: the operator resumed entries, and a close-all still
    retrying a halted coin sold each new buy at once (and refused every entry while it ran)."""

    trace_id: str
    seq: int
    traces: set[str] = field(default_factory=set)
    legs: int = 0
    presses: int = 1


@dataclass(frozen=True, slots=True)
class CloseAllStart:
    trace_id: str
    seq: int
    repeat: bool  # True when a close-all was already running: same trace, nothing new decided


_INF = float("inf")


def _unsellable(refused: PrecheckResult, cost: float, market: Market) -> bool:
    """Whether a refused exit is of a position the exchange will never take: a quantity under
    its minimums, or one under the minimum notional even at what it cost (`cost`: quantity x
    entry price). A notional under the minimum only at this tick's price is a crash or a bad
    quote (one flash tick wrote whole positions off as dust): the position is held, its exit
    refusal journaled once, and the exit retried as the price comes back."""
    failed = {c["name"] for c in refused.checks if not c["passed"]}
    if failed & {"min_qty", "quantity_positive"}:
        return True
    return "min_notional" in failed and cost < float(market.filters.min_notional)


@dataclass(slots=True)
class _Quotes:
    batch: TickerBatch | None = None
    index: dict[str, int] | None = None
    last: dict[str, tuple[float, float]] = field(default_factory=dict)  # held symbols' and `kept` pairs' last (bid, ask)
    # Pairs whose last quote is kept whatever is held: those of the assets fills may pay
    # commissions in (BNB/USDT), as a fee is valued at that pair's mid (`TradingCore._value_fee`).
    # Binance's ticker batches carry only the symbols that changed that second: valued from the
    # latest batch alone, a fill booked while BNB/USDT had not changed left its fee out of PnL.
    kept: tuple[str, ...] = ()

    def get(self, symbol: str) -> tuple[float, float] | None:
        """The latest usable (bid, ask) of `symbol`: this batch's if it is a price, else the
        last one a held coin was marked at (None for a coin not held).

        A broken tick is no price: a bid or ask of 0 or infinity, or a crossed one (bid over
        ask: nobody sells above what somebody bids). A crossed bid passed the spread check as a
        negative spread, an entry was sent, and the position was marked at that bid, an
        instant gain it never had (and a trailing peak no sell could reach)."""
        tick = self.tick(symbol)
        if tick is not None and 0.0 < tick[0] <= tick[1] < _INF:
            return tick
        return self.last.get(symbol)

    def tick(self, symbol: str) -> tuple[float, float] | None:
        """This batch's (bid, ask) of `symbol` as it came, broken or not (None: not in it)."""
        if self.batch is None:
            return None
        if self.index is None:
            self.index = {s: i for i, s in enumerate(self.batch.symbols)}
        i = self.index.get(symbol)
        return None if i is None else (float(self.batch.bid[i]), float(self.batch.ask[i]))


class TradingCore:
    def __init__(
        self,
        settings: TradingSection,
        markets: Mapping[str, Market],
        sink: EventSink,
        *,
        scorer: Scorer | None = None,
        history: BarSource | None = None,
        run_id: str = "run",
        fee_assets: tuple[str, ...] = (),
    ) -> None:
        """`fee_assets`: what the broker's fills may pay commissions in besides the pair's own
        assets (`Broker.fee_assets`), whose prices are then kept from batch to batch."""
        self.settings = settings
        self._markets = markets  # see `markets`
        self.sink = sink
        self.run_id = run_id
        self.history: BarSource = history or BarHistory(settings.signals.timeframe)
        self.signals = SignalStage(settings.signals, self.history, sink, scorer)
        self.book = PositionBook()
        self.exit_policy = ExitPolicy(settings.exits)
        ex = settings.execution
        self.allocator = Allocator(
            settings.capital, settings.risk, buy_cost_rate=ex.entry_cost_rate, max_order_quote=ex.max_order_quote
        )
        self.risk = RiskManager(settings.risk, settings.capital.active.capital)
        self.clusters = Clusters(settings.risk)
        self.max_spread = max_spread_in_force(settings.risk, settings.exits)
        # The heat an entry needs: the signals' floor or the capital profile's, whichever is
        # higher (both frozen settings, so read once rather than through a property each cycle).
        self._min_heat = max(settings.signals.min_heat, settings.capital.active.min_heat)
        self.cash = settings.capital.active.capital
        self.engine_state = EngineState.TRADEABLE
        self.paused = False  # the operator paused new entries (exits continue)
        # Equity at the first prices this core saw, before its first decision (after a restart:
        # what was recovered, at market): where this run's PnL starts.
        self.start_equity: float | None = None
        self.causes: dict[str, int] = {}  # client order id -> seq of the event that decided it
        self._quotes = _Quotes()
        quotes = {m.quote for m in markets.values()}
        self._quotes.kept = tuple(sorted(p for a in fee_assets for q in quotes if (p := f"{a}/{q}") in markets))
        self._pending: dict[str, _PendingEntry] = {}
        self._last_action_ms: dict[str, int] = {}
        self._exit_signal: dict[str, tuple[str, ...]] = {}  # symbol -> exit rules its latest signal fired
        self._seen_trades: OrderedDict[str, None] = OrderedDict()  # recent trade ids: a fill is booked once
        # trace -> exit legs sent for its closed position. A resting entry that fills after its
        # part was stopped out reopens the position under the same trace; its exits go on from
        # the next leg (restarting at 1 reused a sent client id, the router dropped it as a
        # duplicate, and the position never exited again).
        self._closed_legs: OrderedDict[str, int] = OrderedDict()
        self._close_all: _CloseAll | None = None
        self._close_all_count = 0
        self._held_noted: OrderedDict[str, None] = OrderedDict()  # candidate traces told "already held" or "in flight"
        # symbol -> (position trace, trailing peak last journaled, when): see `_journal_trails`
        self._trails: dict[str, tuple[str, float, int]] = {}
        # Sees every change to the book as it is journaled, with its reason (the order's purpose,
        # or `dust` for a write-off) and time: a backtest splits realised PnL by what each sell
        # made, which the closed trade's total (one figure, one last exit) cannot tell.
        self.on_book_change: Callable[[BookChange, str, int], None] | None = None

    # ----------------------------------------------------------------- state seen from outside
    @property
    def markets(self) -> Mapping[str, Market]:
        """Market info (filters, step sizes) by symbol: the latest refresh's, plus the last one
        known of each coin still held or bought that the refresh left out."""
        return self._markets

    @markets.setter
    def markets(self, markets: Mapping[str, Market]) -> None:
        """Take a markets refresh. A coin held (or with an entry in flight) that it leaves out,
        delisted or halted, keeps the Market it had: without one its exits were never decided
        and nothing was journaled, the position stuck for good. With it the exit is sent, and
        an exchange that refuses it is journaled and backed off (`exit_refused`) like any other
        refusal. Another refresh without the coin keeps it again; once the coin is sold it goes.
        `markets` itself is kept (not copied) when nothing held is missing from it."""
        old = self._markets
        wanted = self.book.holdings.keys() | {p.symbol for p in self._pending.values()}
        kept = {s: old[s] for s in wanted if s not in markets and s in old}
        self._markets = {**markets, **kept} if kept else markets

    @property
    def wants_blocked(self) -> bool:
        """Risk level L5: the runtime's state machine should move to `blocked`."""
        return self.risk.wants_blocked

    @property
    def close_all_active(self) -> bool:
        return self._close_all is not None

    def close_all_left(self) -> list[str]:
        """The coins the running close-all still has to sell, sorted (none when none runs):
        what was held at its presses and is still held, not a position opened after a resume."""
        ca = self._close_all
        if ca is None:
            return []
        return sorted(s for s, h in self.book.holdings.items() if h.position.trace_id in ca.traces)

    def set_engine_state(self, state: EngineState) -> None:
        """The runtime's state machine decides; the core obeys (entries only when tradeable)."""
        self.engine_state = state

    @property
    def last_action_ms(self) -> Mapping[str, int]:
        """Per coin, when the core last decided an entry or exit of it or booked its close: its
        re-entry cool-down (`signals.cooldown_ms`) runs from there."""
        return self._last_action_ms

    def restore(
        self,
        holdings: Mapping[str, Holding],
        cash: float,
        written_off: Mapping[str, float] | None = None,
        last_action_ms: Mapping[str, int] | None = None,
    ) -> None:
        """Take over the positions, cash, dust written off and each coin's last entry or exit
        rebuilt from the journal after a restart (`engine.runtime.recovery`), before the first
        cycle; marks restart at the entry prices, armed trailing peaks where the journal left
        them (one not armed starts again from the next bid, as it did at entry). A
        coin held with no entry left in the journal counts from its open."""
        self.book.holdings = dict(holdings)
        self.book.written_off = dict(written_off or {})
        self.cash = cash
        self._last_action_ms = dict(last_action_ms or {})
        for symbol, held in holdings.items():
            self._last_action_ms.setdefault(symbol, held.position.opened_ms)
        # The peaks came from the journal: the next rise is journaled at once, the same peak never again.
        self._trails = {s: (h.position.trace_id, h.position.trailing_high, 0) for s, h in holdings.items()}

    def pending_entries(self) -> frozenset[str]:
        """Client ids of the entry orders in flight (sent, not finished): the runtime cancels
        those still open when the engine stops trading."""
        return frozenset(self._pending)

    def slots_taken(self) -> int:
        """Positions against `max_concurrent`: the coins held or with an entry in flight, each
        once. A limit entry partly filled is both held and pending; counted twice it took two
        slots and refused the next coin with one position open."""
        return len(self.book.holdings.keys() | {p.symbol for p in self._pending.values()})

    def reserved_cash(self) -> float:
        return sum(p.reserved for p in self._pending.values())

    def marks(self) -> dict[str, float]:
        out = {}
        for symbol, held in self.book.holdings.items():
            q = self._quotes.get(symbol)
            out[symbol] = q[0] if q else held.position.entry_price
        return out

    def notionals(self) -> dict[str, float]:
        """Per symbol: the position at its bid plus any entry still in flight (at its order price)."""
        marks = self.marks()
        out = {s: h.position.quantity * marks[s] for s, h in self.book.holdings.items()}
        for p in self._pending.values():
            out[p.symbol] = out.get(p.symbol, 0.0) + p.notional
        return out

    def exposure(self) -> float:
        """Open positions at current bids plus the entries still in flight."""
        if not self.book.holdings and not self._pending:
            return 0  # what the sums give for nothing held or in flight: most of a backtest's minutes
        return self.book.exposure(self.marks()) + sum(p.notional for p in self._pending.values())

    def equity(self) -> float:
        if not self.book.holdings:  # no marks to take (cash + 0, as the empty sum adds: -0.0 reads 0.0)
            return self.cash + 0
        return self.cash + self.book.exposure(self.marks())

    # ----------------------------------------------------------------- inputs
    def on_candle(self, candle: Candle) -> None:
        self._fed_history().add(candle)

    def on_bars(self, bars: Bars) -> None:
        self._fed_history().add_bars(bars)

    def _fed_history(self) -> BarHistory:
        if not isinstance(self.history, BarHistory):
            raise MarketDataError(
                "this core reads its bars from a candle store (a backtest's); nothing is fed to it: follow the symbol instead"
            )
        return self.history

    def on_tickers(self, batch: TickerBatch, now_ms: int) -> list[OrderIntent]:
        """New prices: mark positions, update risk, and decide exits."""
        self._quotes.batch, self._quotes.index = batch, None
        for pair in self._quotes.kept:
            if (q := self._quotes.get(pair)) is not None:
                self._quotes.last[pair] = q
        holdings = self.book.holdings
        if holdings:  # else nothing to mark, no trail to journal, no exit to decide (most minutes of a replay)
            self._mark(holdings, now_ms)
            self._journal_trails(now_ms)
        equity = self.equity()
        if self.start_equity is None:
            self.start_equity = equity
        fired = self.risk.update(now_ms, equity)
        if fired:
            self._emit_risk(fired, now_ms)
        ca = self._close_all
        if ca is None:
            return self._exits(list(holdings), now_ms) if holdings else []
        # A position opened after a resume is no part of the close-all: its own exits apply.
        others = [s for s, h in self.book.holdings.items() if h.position.trace_id not in ca.traces]
        return self.close_all_intents(now_ms) + self._exits(others, now_ms)

    def _mark(self, holdings: Mapping[str, Holding], now_ms: int) -> None:
        """Each held coin at this batch's bid (its last quote kept for the batches without it),
        and its market info's loss or return alerted."""
        for symbol, held in holdings.items():
            q = self._quotes.get(symbol)
            if q is not None:
                self._quotes.last[symbol] = q
                self.book.mark(symbol, q[0])
            missing = symbol not in self._markets
            if missing is not held.no_market_alerted:
                self._no_market(held, missing, now_ms)

    def journal_trails(self, now_ms: int) -> None:
        """Journal every armed trailing peak that rose since it was last journaled, whenever
        that was: the runtime calls it as it stops, so the next start rebuilds each stop exactly
        as the owner last saw it (`TRAIL_JOURNAL_MS` holds the rest back while running)."""
        self._journal_trails(now_ms, every_ms=0)

    def _journal_trails(self, now_ms: int, *, every_ms: int = TRAIL_JOURNAL_MS) -> None:
        """Journal the peak of each position whose armed trailing stop rose (a `position_update`
        with action `trail`, under the position's trace, caused by its open), at most once per
        `every_ms` each: restart recovery rebuilds the peak from it, where it once restarted at
        the entry price and the stop fell back to the stop loss. A peak that has not armed the
        trail is not journaled: it moves no stop, and once the bid arms the trail, the peak
        is that bid, above any earlier one."""
        for symbol, held in self.book.holdings.items():
            pos = held.position
            if self.exit_policy.trail_price(held) is None:
                continue
            last = self._trails.get(symbol)
            if last is not None and last[0] == pos.trace_id and (pos.trailing_high <= last[1] or now_ms - last[2] < every_ms):
                continue
            self._trails[symbol] = (pos.trace_id, pos.trailing_high, now_ms)
            self.sink.emit(
                "position_update",
                ts_ms=now_ms,
                payload={
                    "action": TRAIL_ACTION,
                    "quantity": pos.quantity,
                    "entry_price": pos.entry_price,
                    "realised_pnl": 0.0,  # nothing sold
                    "total_realised_pnl": pos.realised_pnl,
                    "reason": OrderPurpose.TRAILING_STOP.value,
                    "position_trace_id": pos.trace_id,
                    "trailing_high": pos.trailing_high,
                    "stop": self.exit_policy.stop_in_force(held),
                },
                trace_id=pos.trace_id,
                symbol=symbol,
                cause=held.opened_seq,
            )

    def _exits(self, symbols: Sequence[str], now_ms: int) -> list[OrderIntent]:
        intents = []
        for symbol in symbols:
            held = self.book.get(symbol)
            if held is None or held.pending_exit is not None or now_ms < held.exit_retry_ms:
                continue
            q = self._quotes.get(symbol)
            if q is None:
                continue
            decision = self.exit_policy.evaluate(held, q[0], now_ms, signal_exit=self._exit_signal.get(symbol, ()))
            if decision is not None:
                intent = self._exit(held, decision, q[0], now_ms)
                if intent is not None:
                    intents.append(intent)
        return intents

    def on_candidates(
        self, candidates: Sequence[Candidate], now_ms: int, causes: Mapping[str, int] | None = None
    ) -> list[OrderIntent]:
        """A ranked candidate cycle: exit signals for held coins, entry decisions for the rest.

        `causes` maps each candidate's trace id to the seq of its `candidate_snapshot`.
        """
        holdings = self.book.holdings
        if not candidates and not holdings:
            # Nothing held to decide an exit on, no candidate to note or evaluate (nearly half
            # the minutes of a replay): the stages below would each find nothing to do.
            return []
        by_symbol: dict[str, Candidate] | None = None  # built when first needed: most minutes never need it
        intents: list[OrderIntent] = []
        if holdings:  # no coin held (most minutes of a replay): no exit signal to evaluate
            # A pool read as columns is built only where it names a held coin (its heat is the
            # exit's): else no held coin has a candidate, and `by_symbol` waits for an entry.
            if not isinstance(candidates, ColumnPool) or any(s in holdings for s in candidates.columns.symbols):
                by_symbol = {c.symbol: c for c in candidates}
            held = [(s, h.position.trace_id) for s, h in holdings.items()]
            opened = {h.position.trace_id: h.opened_seq for h in holdings.values() if h.opened_seq is not None}
            fired = []
            exits = self.signals.evaluate_exits(held, now_ms, candidates=by_symbol or {}, causes=causes, opened=opened)
            for ev in exits:
                exiting = ev.signal.decision is SignalDecision.EXIT
                self._exit_signal[ev.signal.symbol] = tuple(r for r, ok in ev.signal.rules.items() if not ok) if exiting else ()
                if exiting:
                    fired.append(ev.signal.symbol)
            # An exit signal acts now, not at the next price update (the close-all sells its own coins).
            closing = set(self.close_all_left())
            intents = self._exits([s for s in fired if s not in closing], now_ms)
        # symbol -> trace of its entry order
        in_flight = {p.symbol: p.trace_id for p in self._pending.values()} if self._pending else {}
        if holdings or in_flight:  # else no candidate is taken: nothing to note, every one is fresh
            fresh = self._untaken(candidates, in_flight, now_ms, causes or {})
        else:
            fresh = by_rank(candidates)  # a pool still read as columns stays so (`ColumnPool`)
        entering = self.signals.evaluate_entries(
            fresh, now_ms, min_heat=self._min_heat, last_action_ms=self._last_action_ms, causes=causes, enter_only=True
        )
        gate: list[dict[str, Any]] | None = None  # taken at the first entry signal: most cycles have none
        gate_open = False
        limit = 0
        shut: dict[int, list[dict[str, Any]]] = {}  # one (read-only) check list per slot count
        for ev in entering:
            if gate is None:  # nothing changed since the signals: the state they were taken in
                gate = self._entry_gate(now_ms)
                gate_open = all(c["passed"] for c in gate)
                limit = self.allocator.max_concurrent
            if by_symbol is None:
                by_symbol = {c.symbol: c for c in candidates}
            cand = by_symbol[ev.signal.symbol]
            slots = self.slots_taken()
            if not gate_open or slots >= limit:
                # Nothing about this candidate can change the answer: say which gate is shut.
                if slots not in shut:
                    shut[slots] = [*gate, check("max_concurrent", slots < limit, slots, limit)]
                self.sink.emit(
                    "risk_check",
                    ts_ms=now_ms,
                    payload={"approved": False, "checks": shut[slots]},
                    trace_id=cand.trace_id,
                    symbol=cand.symbol,
                    cause=ev.seq,
                )
                continue
            intent = self._entry(cand, gate, ev.seq, now_ms)
            if intent is not None:
                intents.append(intent)
        return intents

    def _untaken(
        self, candidates: Sequence[Candidate], in_flight: Mapping[str, str], now_ms: int, causes: Mapping[str, int]
    ) -> Sequence[Candidate]:
        """The candidates for coins neither held nor with an entry in flight, by rank, the others
        noted (`_note_taken`). A pool read as columns is noted and cut as columns
        (`ColumnPool.without`), so a held minute's cold pool reaches the entry signals unbuilt
        as an idle minute's does; `tests/engine/test_trading_core.py` steps both side by side."""
        holdings = self.book.holdings
        if isinstance(candidates, ColumnPool):
            columns = candidates.columns
            self._note_taken(columns.symbols, columns.trace_ids, in_flight, now_ms, causes)
            return by_rank(candidates.without({*holdings, *in_flight}))
        self._note_taken([c.symbol for c in candidates], [c.trace_id for c in candidates], in_flight, now_ms, causes)
        return sorted((c for c in candidates if c.symbol not in holdings and c.symbol not in in_flight), key=_rank)

    def _note_taken(
        self, symbols: Sequence[str], trace_ids: Sequence[str], in_flight: Mapping[str, str], now_ms: int,
        causes: Mapping[str, int],
    ) -> None:
        """A candidate (`symbols`, `trace_ids`) for a coin already held, or whose entry order is
        still in flight (a limit resting from an earlier bar), is not evaluated: say so in its
        trace, once, so its replay and `hotcoin traces` read why (and which trace holds the coin
        or the order) rather than "no decision recorded". The position's or order's own trace
        is left alone."""
        for symbol, trace_id in zip(symbols, trace_ids, strict=True):
            held = self.book.get(symbol)
            if held is not None:
                owner, stage = held.position.trace_id, "held"
                reason = f"already holding {symbol} (trace {owner})"
            elif symbol in in_flight:
                owner, stage = in_flight[symbol], "in_flight"
                reason = f"entry order in flight for {symbol} (trace {owner})"
            else:
                continue
            if owner == trace_id or trace_id in self._held_noted:
                continue
            self._held_noted[trace_id] = None
            if len(self._held_noted) > _HELD_NOTED:
                self._held_noted.popitem(last=False)
            self.sink.emit(
                "signal_snapshot",
                ts_ms=now_ms,
                payload={
                    "decision": "skip",
                    "reason": reason,
                    "rules": [],
                    "features": {},
                    "stage": stage,
                    "model": None if self.signals.scorer.mode == "off" else self.signals.scorer.version,
                },
                trace_id=trace_id,
                symbol=symbol,
                cause=causes.get(trace_id),
            )

    def step(
        self,
        batch: TickerBatch,
        candidates: Sequence[Candidate],
        now_ms: int,
        causes: Mapping[str, int] | None = None,
    ) -> list[OrderIntent]:
        """Prices then candidates, in the order the runtime and the backtester both use.

        A core at rest (nothing held, no close-all running, no pair's quote kept from batch to
        batch: nine minutes in ten of a replay) takes the prices as `on_tickers` does with
        nothing to mark or exit (`_rest_tickers`), and an empty pool decides nothing: the
        same state and events in a third of the calls. `tests/engine/test_trading_core.py`
        steps cores both ways side by side."""
        if self.book.holdings or self._close_all is not None or self._quotes.kept:
            return self.on_tickers(batch, now_ms) + self.on_candidates(candidates, now_ms, causes)
        self._rest_tickers(batch, now_ms)
        if not candidates:
            return []
        # No entry in flight either: a pool of cold columns is decided without the rest of
        # `on_candidates`.
        if not self._pending and self.skip_cold(candidates, now_ms, causes):
            return []
        return self.on_candidates(candidates, now_ms, causes)

    @property
    def rests(self) -> bool:
        """At rest with no entry in flight: nothing held, no close-all running, no quote kept,
        no entry pending. Such a core's minute with an empty pool, or one `skip_cold` decides,
        is its prices alone (`rest_minutes`)."""
        return not (self.book.holdings or self._close_all is not None or self._quotes.kept or self._pending)

    def skip_cold(self, candidates: Sequence[Candidate], now_ms: int, causes: Mapping[str, int] | None) -> bool:
        """A resting core's pool decided where it is cold columns: it goes to the entry signals
        as it is (`by_rank`), which skip it without a `Candidate` (`skip_cold_columns`: True,
        the skips journaled and kept) or decline (False, nothing done)."""
        return (
            isinstance(candidates, ColumnPool)
            and by_rank(candidates) is candidates
            and self.skip_cold_columns(candidates.columns, now_ms, causes)
        )

    def skip_cold_columns(self, pool: MemberColumns, now_ms: int, causes: Mapping[str, int] | None) -> bool:
        """`skip_cold` of a pool's columns in rank order (`by_rank` would keep them as they are:
        a replay's ranks 1..n): `SignalStage.skip_cold_pool`."""
        return self.signals.skip_cold_pool(pool, now_ms, self._min_heat, causes)

    def rest_minutes(self, batch: TickerBatch, times: Sequence[int]) -> None:
        """`_rest_tickers` of a resting core's minutes at `times` (each decided already: its pool
        empty or skipped by `skip_cold`), `batch` the last one's: with nothing held the equity
        is the cash throughout, so the risk day is marked at the first minute and at each UTC
        day's first (the others would return at once), and only the last quotes stay."""
        day = None
        for now_ms in times:
            if now_ms // DAY_MS != day:
                day = now_ms // DAY_MS
                self._rest_tickers(batch, now_ms)
        self._rest_tickers(batch, times[-1])

    def _rest_tickers(self, batch: TickerBatch, now_ms: int) -> None:
        """`on_tickers` of a core at rest (`step`): this batch's quotes, the equity (the cash,
        as `equity` gives it with nothing held) and the risk day marked to it; no exit."""
        quotes = self._quotes
        quotes.batch, quotes.index = batch, None
        equity = self.cash + 0
        if self.start_equity is None:
            self.start_equity = equity
        fired = self.risk.update(now_ms, equity)
        if fired:
            self._emit_risk(fired, now_ms)

    # ----------------------------------------------------------------- entries
    def _entry_gate(self, now_ms: int) -> list[dict[str, Any]]:
        """The checks that are the same for every candidate of one cycle.

        A running close-all is none of them: it pauses entries (`begin_close_all`) and a resume
        opens them again while it goes on selling what it was asked to. A check of its own
        refused every entry, after "entries resumed", for as long as a halted coin it retried
        was held: for good, with a delisted one."""
        return [
            check("engine_state", self.engine_state.allows_entries, self.engine_state.value, EngineState.TRADEABLE.value),
            check("operator_pause", not self.paused, self.paused, False),
            *self.risk.entry_checks(now_ms),
        ]

    def _entry(self, cand: Candidate, gate: list[dict[str, Any]], signal_seq: int, now_ms: int) -> OrderIntent | None:
        symbol = cand.symbol
        market = self._markets.get(symbol)
        quote = self._quotes.get(symbol)
        notionals = self.notionals()
        equity = self.equity()
        exposure = sum(notionals.values())
        checks: list[dict[str, Any]] = [
            *gate,
            check("market_known", market is not None, symbol, "listed market"),
            self._quote_check(quote, self._quotes.tick(symbol)),
            self._spread_check(quote, self._quotes.tick(symbol)),
            *self.clusters.checks(symbol, notionals, equity),
        ]
        sizing = self.allocator.size(
            equity=equity,
            exposure=exposure,
            cluster_room=self.clusters.room(symbol, notionals, equity),
            cash=self.cash - self.reserved_cash(),
            open_positions=self.slots_taken(),
            size_multiplier=self.risk.level.size_multiplier,
        )
        checks += sizing.checks
        result: PrecheckResult | None = None
        cid = client_order_id(cand.trace_id, OrderPurpose.ENTRY, 1)
        if all(c["passed"] for c in checks) and market is not None and quote is not None:
            ex = self.settings.execution
            ask = quote[1]
            limit = ex.entry_order_type == "limit"
            request = OrderRequest(
                client_order_id=cid,
                trace_id=cand.trace_id,
                symbol=symbol,
                side=Side.BUY,
                order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                purpose=OrderPurpose.ENTRY,
                quantity=sizing.quote / (ask * (1.0 + ex.limit_offset) if limit else ask),
                reference_price=ask,
                limit_price=ask * (1.0 + ex.limit_offset) if limit else None,
                expires_ms=now_ms + ex.limit_expiry_ms if limit else None,
            )
            result = precheck(
                request,
                market,
                quote_free=self.cash - self.reserved_cash(),
                base_free=0.0,
                buy_cost_rate=ex.entry_cost_rate,
                max_order_quote=ex.max_order_quote,
            )
            checks += [{**c, "name": f"precheck:{c['name']}"} for c in result.checks]
        approved = result is not None and result.approved
        seq = self.sink.emit(
            "risk_check",
            ts_ms=now_ms,
            payload={"approved": approved, "checks": checks, "allocation_quote": sizing.quote, "equity": equity},
            trace_id=cand.trace_id,
            symbol=symbol,
            cause=signal_seq,
        )
        if not approved or result is None or result.intent is None:
            return None
        intent = result.intent
        price = float(intent.price) if intent.price is not None else intent.reference_price
        notional = float(intent.quantity) * price
        self._pending[intent.client_order_id] = _PendingEntry(
            symbol, cand.trace_id, notional * (1.0 + self.settings.execution.entry_cost_rate), notional
        )
        self._last_action_ms[symbol] = now_ms
        self.causes[intent.client_order_id] = seq
        return intent

    @staticmethod
    def _quote_check(quote: tuple[float, float] | None, tick: tuple[float, float] | None) -> dict[str, Any]:
        """A usable bid and ask (`_Quotes.get`: 0 < bid <= ask < infinity; the threshold keeps
        the words journals have always had). A tick refused as no price says why in its detail
        (a crossed book, a zero bid), so the trace reads more than "no quote"."""
        if quote is not None:
            return check("quote_available", True, quote[1], "bid/ask > 0")
        failed = check("quote_available", False, None, "bid/ask > 0")
        return failed if tick is None else {**failed, "detail": _broken(tick)}

    def _spread_check(self, quote: tuple[float, float] | None, tick: tuple[float, float] | None = None) -> dict[str, Any]:
        """(ask - bid) / ask against `max_spread`: a buy pays the ask while the position is
        marked and stopped at the bid, so it opens that far down (a 6 % spread went in and was
        stopped out on the next tick, book unchanged, against a 4 % stop). With no usable
        bid/ask there is no spread to judge, and no entry (`quote_available` fails too): a
        crossed one (bid over ask, `tick`) read as a negative spread and passed."""
        if quote is None:
            said = "no bid/ask known" if tick is None else _broken(tick)
            return {**check("spread", False, None, self.max_spread), "detail": said}
        bid, ask = quote
        spread = round((ask - bid) / ask, 6)  # judged as journaled
        return check("spread", spread <= self.max_spread, spread, self.max_spread)

    # ----------------------------------------------------------------- exits
    def _exit(
        self, held: Holding, decision: ExitDecision, bid: float, now_ms: int, *, trace_id: str | None = None,
        leg: int | None = None, cause: int | None = None,
    ) -> OrderIntent | None:
        pos = held.position
        market = self._markets.get(pos.symbol)
        if market is None:
            return None
        qty = decision.quantity
        if not decision.is_full:
            rest = pos.quantity - qty
            f = market.filters
            if market.round_qty(rest) < max(f.min_qty, f.step_size) or rest * bid < float(f.min_notional):
                qty = pos.quantity  # a remainder the exchange would refuse to sell later: sell it now
        trace = trace_id or pos.trace_id
        leg_no = leg if leg is not None else held.exit_legs + 1
        cid = client_order_id(trace, decision.purpose, leg_no)

        def attempt(q: float) -> PrecheckResult:
            req = OrderRequest(cid, trace, pos.symbol, Side.SELL, OrderType.MARKET, decision.purpose, q, bid)
            return precheck(req, market, quote_free=0.0, base_free=pos.quantity, buy_cost_rate=0.0, max_order_quote=None)

        result = attempt(qty)
        if not result.approved and qty < pos.quantity:
            qty = pos.quantity
            result = attempt(qty)
        blocked = ", ".join(result.failed) or None
        if blocked is not None and blocked == held.exit_blocked:
            return None  # the same refusal as last time: already journaled
        held.exit_blocked = blocked
        payload = {
            "decision": SignalDecision.EXIT.value,
            "reason": decision.reason,
            "rules": decision.checks + [{**c, "name": f"precheck:{c['name']}"} for c in result.checks],
            # peak None: no bid has marked the position yet (it filled after this tick's marks)
            "features": {"bid": bid, "entry_price": pos.entry_price, "peak": pos.trailing_high or None, "quantity": pos.quantity},
            "stage": "exit_policy",
            "purpose": decision.purpose.value,
            "model": None if self.signals.scorer.mode == "off" else self.signals.scorer.version,
        }
        if cause is None and trace == pos.trace_id:
            cause = held.opened_seq
        seq = self.sink.emit("signal_snapshot", ts_ms=now_ms, payload=payload, trace_id=trace, symbol=pos.symbol, cause=cause)
        if result.intent is None:
            if _unsellable(result, pos.quantity * pos.entry_price, market):
                # Worth less than the exchange lets us sell: write the remainder off rather than retry forever.
                self._journal_change(self.book.write_off(pos.symbol, now_ms), now_ms, WRITE_OFF_REASON, trace, seq)
                self._after_close(pos.symbol, now_ms, held.exit_legs)
            return None
        if trace == pos.trace_id:
            held.exit_legs = leg_no
        held.pending_exit = cid
        held.exit_rules = decision.signal_rules
        held.pending_tier = decision.tier if qty < pos.quantity else None
        self._last_action_ms[pos.symbol] = now_ms
        self.causes[cid] = seq
        return replace(result.intent, tier=held.pending_tier)

    # ----------------------------------------------------------------- order updates
    def on_order_update(self, update: OrderUpdate, now_ms: int) -> None:
        """Book the fills of one order update and release what a finished order reserved.

        A fill the book refuses (a sell of coins not held, or of more than is held; a price of
        0) is journaled as a `fill_refused` risk event and booked as nothing: cash and the seen
        trade ids stay as they were (a redelivery of the fill as it should be is booked then).
        The order's lifecycle still goes on: a finished order is released, so its position's
        exits and a close-all are not held up forever by an exit "in flight". (Raised instead,
        it left the exit pending for good, or stopped the engine.)"""
        order = update.order
        cid = order.client_order_id
        cause = update.journal_seq if update.journal_seq is not None else self.causes.get(cid)
        for fill in update.fills:
            if fill.trade_id in self._seen_trades:
                continue
            # The book checks the fill before anything else moves: one it refuses raises with
            # cash, journal and the seen ids untouched.
            held = self.book.get(fill.symbol)
            legs = held.exit_legs if held is not None else 0
            fill, fee_rate = self._value_fee(fill)
            booked, cash_moved = as_booked(fill)  # a fee taken in coins: fewer coins, no cash fee
            try:
                change = self.book.apply(booked)
            except PositionError as exc:
                self._alert(
                    "fill_refused",
                    f"{fill.symbol}: a fill of order {cid} was not booked: {exc}; compare the exchange's "
                    "balances with the positions (`hotcoin doctor`) and settle by hand",
                    ts_ms=now_ms, trace_id=fill.trace_id or order.trace_id or None, symbol=fill.symbol, cause=cause,
                    value=fill.quantity, threshold=held.position.quantity if held is not None else 0.0,
                )  # fmt: skip
                continue
            self._seen_trades[fill.trade_id] = None
            if len(self._seen_trades) > _SEEN_TRADES:
                self._seen_trades.popitem(last=False)
            trace = fill.trace_id or order.trace_id
            cause = self.sink.emit(
                "fill",
                ts_ms=fill.ts_ms,
                payload={
                    "client_order_id": cid,
                    "side": fill.side.value,
                    "price": fill.price,
                    "quantity": fill.quantity,
                    "fee_quote": fill.fee_quote,
                    "trade_id": fill.trade_id,
                    "is_maker": fill.is_maker,
                    "fee_base": fill.fee_base,
                    **(
                        {"fee_asset": fill.fee_asset, "fee_other": fill.fee_other, "fee_rate": fee_rate}
                        if fill.fee_other
                        else {}
                    ),
                },
                trace_id=trace,
                symbol=fill.symbol,
                cause=cause,
            )
            if fill.fee_other and fee_rate is None:
                self._fee_unpriced(fill, cause)
            self.cash += cash_moved
            pending = self._pending.get(cid)
            if pending is not None and fill.side is Side.BUY:
                pending.reserved = max(0.0, pending.reserved + cash_moved)
                pending.notional = max(0.0, pending.notional - fill.notional)
            seq = self._journal_change(change, fill.ts_ms, order.purpose.value, trace, cause)
            held = self.book.get(fill.symbol)
            if change.action == "close":
                self._after_close(fill.symbol, now_ms, legs)
            elif held is not None and change.action == "open":
                held.opened_seq = seq
                held.exit_legs = self._closed_legs.pop(change.trace_id, 0)
            elif held is not None and held.pending_exit == cid and held.pending_tier is not None:
                # A take-profit tier counts as hit once it sold something; then the stop may go to entry.
                pos = held.position
                stop = pos.entry_price if self.settings.exits.breakeven_after_tp else pos.stop_price
                self.book.set_stop(fill.symbol, stop, tier_hit=held.pending_tier)
            elif held is not None and fill.side is Side.SELL and order.status.is_terminal and self._is_dust(held, fill.price):
                # A full exit sells what the step size allows; the crumbs left (e.g. after a fee
                # taken in coins) can never be sold: write them off now, not on the next tick.
                # At the fill's time, not the decision's: the exchange filled after we decided,
                # and an earlier stamp reads backwards in the trace (a close near midnight lands
                # on the previous day).
                at = max(now_ms, fill.ts_ms)
                self._journal_change(self.book.write_off(fill.symbol, at), at, WRITE_OFF_REASON, trace, seq)
                self._after_close(fill.symbol, at, held.exit_legs)
        if order.status.is_terminal:
            self._finish(order)
        if order.purpose.is_exit:
            self._exit_answered(update, now_ms)
        self._close_all_over()

    def _value_fee(self, fill: Fill) -> tuple[Fill, float | None]:
        """`fill` with its commission paid in a third asset (BNB) valued into `fee_quote`, and
        the rate used: the mid of <asset>/<quote> in the latest tickers, the best price the core
        knows as it books the fill. None when it knows none: the fill is booked without that
        part (the core does no I/O to ask) and `_fee_unpriced` says so.

        The value is charged to cash as well: the BNB was bought with quote once, so the fee is
        a cost of the capital like any other (the exchange's quote balance is then above our
        cash by the fees paid in BNB, which the balance audit allows).
        """
        if fill.fee_other <= 0:
            return fill, None
        market = self._markets.get(fill.symbol)
        quote = market.quote if market is not None else fill.symbol.split("/")[-1]
        q = self._quotes.get(f"{fill.fee_asset}/{quote}")
        if q is None:
            return fill, None
        rate = (q[0] + q[1]) / 2
        return replace(fill, fee_quote=fill.fee_quote + fill.fee_other * rate), rate

    def _fee_unpriced(self, fill: Fill, cause: int | None) -> None:
        """Journal that a fill's third-asset commission could not be valued: its PnL leaves it out."""
        self._alert(
            "fee_unpriced",
            f"{fill.symbol}: a fee of {fill.fee_other:.10g} {fill.fee_asset} was booked without its value, "
            f"as no {fill.fee_asset} price is known yet; PnL is overstated by that much",
            ts_ms=fill.ts_ms, trace_id=fill.trace_id, symbol=fill.symbol, cause=cause,
            asset=fill.fee_asset, value=fill.fee_other,
        )  # fmt: skip

    def _exit_answered(self, update: OrderUpdate, now_ms: int) -> None:
        """Back off after an exit the exchange refused as sent (non-retryable), and alert once
        per distinct refusal; an exit it took resets the backoff. A retryable failure (429,
        network) is retried at the next tick as before: a stop-loss must not wait on it."""
        order, error = update.order, update.error
        held = self.book.get(order.symbol)
        if held is None:
            return
        held.exit_failed = None if error is None else _exit_failure(error)
        if error is None or order.status is not OrderStatus.REJECTED:
            held.exit_refusals, held.exit_retry_ms, held.exit_refused = 0, 0, None
            return
        if error.error_class is not ErrorClass.NON_RETRYABLE:
            return
        held.exit_refusals += 1
        wait = min(EXIT_RETRY_MAX_MS, EXIT_RETRY_MS * 2 ** min(held.exit_refusals - 1, 16))
        held.exit_retry_ms = now_ms + wait
        said = f"{type(error).__name__} {error.code}"
        if said == held.exit_refused:
            return
        held.exit_refused = said
        self._alert(
            "exit_refused",
            f"{order.symbol}: the exchange refused the exit {order.client_order_id} ({error}); "
            f"retrying after {wait // 1000} s, backing off up to {EXIT_RETRY_MAX_MS // 60_000} min "
            "while it refuses the same way: check the coin on the exchange",
            ts_ms=now_ms, trace_id=held.position.trace_id, symbol=order.symbol, cause=update.journal_seq,
            value=float(held.exit_refusals), threshold=None,
        )  # fmt: skip

    def on_exit_short(
        self, symbol: str, free: float | None, now_ms: int, cause: int | None = None, *, locked: float = 0.0
    ) -> None:
        """An exit of `symbol` was refused for want of coins, and the exchange says `free` of
        them can be sold and `locked` more sit in open orders (None: it could not be asked; the
        backoff alone applies).

        Coins the exchange does not have at all, free or locked (sold in the Binance app, say),
        are written down as a loss (`MISSING_REASON`, journaled, with a `balance_mismatch` risk
        event), so the next exit sells what is there, at once; if nothing is left, the position
        is gone (the crumbs left, if any, are dust, written off as usual). Not counted in the
        losing streak: what happened to those coins is no trade of ours. Coins locked in an
        order (one placed in the app) are still the position's: never written down, the backoff
        stands and a `coins_locked` alert tells the owner to free them (once per amount).
        """
        held = self.book.get(symbol)
        market = self._markets.get(symbol)
        if held is None or market is None or free is None:
            return
        pos = held.position
        tol = 1e-9 * max(1.0, pos.quantity)
        there = free + locked
        if locked > tol and pos.quantity - free > tol:
            self._alert_locked(held, free, locked, now_ms, cause)
        # In decimal: the write-down is journaled, and 50.7 - 25.3 in binary floats journals as
        # 25.399999999999995 coins gone where the account shows 25.4.
        missing = float(to_decimal(pos.quantity) - to_decimal(free) - to_decimal(locked))
        if missing <= tol:
            return
        trace = pos.trace_id
        seq = self._alert(
            "balance_mismatch",
            f"{symbol}: the exchange holds {free:.10g} free and {locked:.10g} locked, the position was "
            f"{pos.quantity:.10g}; an exit was refused for insufficient balance, so {missing:.10g} is "
            "written down as a loss "
            + ("and the position is gone" if there <= 0 else f"and {there:.10g} stays held")
            + " (sold outside the engine?)",
            ts_ms=now_ms, trace_id=trace, symbol=symbol, cause=cause,
            value=there, threshold=pos.quantity, asset=market.base,
        )  # fmt: skip
        change = self.book.write_down(symbol, missing, now_ms)
        seq = self._journal_change(change, now_ms, MISSING_REASON, trace, seq)
        if change.action == "close":
            self._after_close(symbol, now_ms, held.exit_legs, record=False)
            return
        if locked <= tol:  # all that is left is free: sell it at once (locked coins: backoff stands)
            held.exit_refusals, held.exit_retry_ms, held.exit_refused = 0, 0, None
        q = self._quotes.get(symbol)
        if self._is_dust(held, q[0] if q is not None else pos.entry_price):
            self._journal_change(self.book.write_off(symbol, now_ms), now_ms, WRITE_OFF_REASON, trace, seq)
            self._after_close(symbol, now_ms, held.exit_legs)

    def _alert_locked(self, held: Holding, free: float, locked: float, now_ms: int, cause: int | None) -> None:
        """Tell the owner the exit waits on coins locked in an order on the exchange (placed in
        the Binance app, say): the engine cannot sell them until that order is cancelled or
        fills, and it must not take them for lost. Once per locked amount, not every retry."""
        if held.locked_alerted == locked:
            return
        held.locked_alerted = locked
        symbol = held.position.symbol
        self._alert(
            "coins_locked",
            f"{symbol}: coins locked on the exchange: {locked:.10g} ({free:.10g} free, the position is "
            f"{held.position.quantity:.10g}); the exit cannot sell them: cancel the order in the Binance "
            "app or let it fill; the engine keeps the position and retries with backoff",
            ts_ms=now_ms, trace_id=held.position.trace_id, symbol=symbol, cause=cause,
            value=locked, threshold=held.position.quantity,
        )  # fmt: skip

    def _no_market(self, held: Holding, missing: bool, now_ms: int) -> None:
        """Alert once that a held coin has no market info to exit on (`missing`), or note that
        it has one again (a later loss alerts anew). A refresh keeps a held coin's last Market
        (`markets`), so this is a coin this run never knew: held across a restart while it was
        delisted, say. No exit can be sent for it (no step size, no minimums), and it once
        stayed held with nothing journaled: the owner must see to it on the exchange."""
        held.no_market_alerted = missing
        if not missing:
            return
        pos = held.position
        symbol = pos.symbol
        self._alert(
            "no_market",
            f"{symbol}: held ({pos.quantity:.10g}) but the exchange lists no market for it (delisted or "
            "halted?); no exit can be sent, not even by close-all: check the coin on the exchange "
            "and sell it there if it still trades",
            ts_ms=now_ms, trace_id=pos.trace_id, symbol=symbol, cause=held.opened_seq,
            value=pos.quantity, threshold=None,
        )  # fmt: skip

    def _is_dust(self, held: Holding, price: float) -> bool:
        market = self._markets.get(held.position.symbol)
        if market is None:
            return False
        f = market.filters
        qty = market.round_qty(held.position.quantity)
        return qty < max(f.min_qty, f.step_size) or float(qty) * price < float(f.min_notional)

    def _finish(self, order: Order) -> None:
        cid = order.client_order_id
        self._pending.pop(cid, None)
        self.causes.pop(cid, None)
        held = self.book.get(order.symbol)
        if held is not None and held.pending_exit == cid:
            held.pending_exit = held.pending_tier = None

    def _after_close(self, symbol: str, now_ms: int, legs: int, *, record: bool = True) -> None:
        trade = self.book.closed[-1]
        if legs:
            self._closed_legs[trade.trace_id] = legs
            if len(self._closed_legs) > _CLOSED_LEGS:
                self._closed_legs.popitem(last=False)
        self._exit_signal.pop(symbol, None)
        if symbol not in self._quotes.kept:
            self._quotes.last.pop(symbol, None)
        self._trails.pop(symbol, None)
        self._last_action_ms[symbol] = now_ms
        if record:
            self._emit_risk(self.risk.record_trade(trade.realised_pnl, now_ms), now_ms)

    def _journal_change(self, change: BookChange, ts_ms: int, reason: str, trace_id: str, cause: int | None) -> int:
        if self.on_book_change is not None:
            self.on_book_change(change, reason, ts_ms)
        return self.sink.emit(
            "position_update",
            ts_ms=ts_ms,
            payload={
                "action": change.action,
                "quantity": change.quantity,
                "fill_quantity": change.fill_qty,
                "entry_price": change.entry_price,
                "realised_pnl": change.realised_pnl,
                "total_realised_pnl": change.total_realised_pnl,
                "fee_quote": change.fee_quote,
                "reason": reason,
                "position_trace_id": change.trace_id,
            },
            trace_id=trace_id,
            symbol=change.symbol,
            cause=cause,
        )

    def _alert(
        self, code: str, detail: str, *, ts_ms: int, trace_id: str | None, symbol: str, cause: int | None, **fields: Any
    ) -> int:
        """One `risk_event` about a position or fill (an exchange refusal, a balance the exchange
        disagrees on, an unpriced fee), in its trace, at the risk level in force; returns its seq.
        The payload names the symbol too, as the balance audit's `balance_mismatch` does."""
        payload = {"code": code, "level": self.risk.level.name, "detail": detail, **fields, "symbol": symbol}
        return self.sink.emit("risk_event", ts_ms=ts_ms, payload=payload, trace_id=trace_id, symbol=symbol, cause=cause)

    def _emit_risk(self, events: list[RiskEvent], now_ms: int) -> None:
        for ev in events:
            self.sink.emit("risk_event", ts_ms=now_ms, payload=ev.payload())

    def exit_trouble(self, symbol: str, now_ms: int) -> str | None:
        """Why `symbol` is still held though its exit was asked for, as the operator needs it
        in an emergency (close-all's progress): the exchange's latest answer to its exit and
        what happens next, or the precheck that keeps one from being sent. None when nothing
        is known to be wrong (an exit the exchange took and has not filled yet, or none tried)."""
        held = self.book.get(symbol)
        if held is None:
            return None
        if symbol not in self._markets:
            return "exit not sent: no market info for the coin (delisted?)"
        if held.exit_failed is None:
            return None if held.exit_blocked is None else f"exit not sent: precheck {held.exit_blocked}"
        wait_s = -(-(held.exit_retry_ms - now_ms) // 1000)
        if wait_s > 0:
            then = f"retrying in {wait_s} s" if wait_s < 120 else f"retrying in {-(-wait_s // 60)} min"
        elif held.pending_exit is not None:
            then = "reconciling"  # only an exit whose outcome is unknown stays in flight after failing
        else:
            then = "retrying at the next price update"
        return f"{held.exit_failed}, {then}"

    # ----------------------------------------------------------------- close-all
    def begin_close_all(self, now_ms: int, origin: str = "operator") -> CloseAllStart:
        """Start the emergency close (or join the one running): one trace for the whole operation.

        Every press sells every coin held then, at once: each one's exit backoff (a run of
        refusals, up to 15 min apart) starts over, so a coin whose halt has lifted is sold now,
        not when a backoff taken before the press runs out; the backoff then paces only the
        close-all's own retries. A press while one runs adds what is held now (bought after a
        resume) to what it sells. It pauses new entries too, as the runtime's pause does (that
        one overrides this at the next cycle, `TradingCycle.push_state`)."""
        self.paused = True
        ca = self._close_all
        if ca is not None:
            ca.presses += 1
            self.sink.emit(
                "command",
                ts_ms=now_ms,
                payload={"command": "close_all", "origin": origin, "repeat": True, "press": ca.presses},
                trace_id=ca.trace_id,
                cause=ca.seq,
            )
            ca.traces |= self._close_all_targets()
            self._sell_now()
            return CloseAllStart(ca.trace_id, ca.seq, repeat=True)
        self._close_all_count += 1
        trace = make_trace_id(self.run_id, "close_all", now_ms, self._close_all_count)
        seq = self.sink.emit(
            "command",
            ts_ms=now_ms,
            payload={
                "command": "close_all",
                "origin": origin,
                "repeat": False,
                "positions": sorted(self.book.holdings),
                "pending_entries": sorted(self._pending),
            },
            trace_id=trace,
        )
        self._close_all = _CloseAll(trace, seq, self._close_all_targets())
        self._sell_now()
        self._close_all_over()  # nothing to close: done as soon as it began
        return CloseAllStart(trace, seq, repeat=False)

    def resume_close_all(self, trace_id: str, seq: int, traces: Iterable[str], *, legs: int = 0, presses: int = 1) -> list[str]:
        """Take over a close-all the journal has unfinished (`engine.runtime.recovery`): the
        same trace (its `command` event at `seq`), the positions it sells (`traces`), its
        exit legs sent so far (the next client id follows them). Returns the coins it still
        sells; none when nothing of it is held, and then nothing is armed. Forgotten at a
        restart, its coins were left to the ordinary exits (a take-profit half, hours on)."""
        self._close_all = _CloseAll(trace_id, seq, set(traces), legs=legs, presses=presses)
        self._close_all_over()
        return self.close_all_left()

    def close_all_intents(self, now_ms: int) -> list[OrderIntent]:
        """A market sell of each coin the close-all sells that has no exit in flight, in its trace."""
        ca = self._close_all
        if ca is None:
            return []
        intents = []
        for symbol, held in sorted(self.book.holdings.items()):
            if held.position.trace_id not in ca.traces or held.pending_exit is not None or now_ms < held.exit_retry_ms:
                continue
            q = self._quotes.get(symbol)
            bid = q[0] if q is not None else held.position.entry_price
            decision = ExitDecision(OrderPurpose.CLOSE_ALL, held.position.quantity, "emergency close-all", [])
            ca.legs += 1
            intent = self._exit(held, decision, bid, now_ms, trace_id=ca.trace_id, leg=ca.legs, cause=ca.seq)
            if intent is not None:
                intents.append(intent)
        self._close_all_over()
        return intents

    def _close_all_targets(self) -> set[str]:
        """What a press sells, by position trace: every coin held, and every entry in flight
        (cancelled by the close-all; should it fill first, its coins are sold too)."""
        return {h.position.trace_id for h in self.book.holdings.values()} | {p.trace_id for p in self._pending.values()}

    def _sell_now(self) -> None:
        """Lift the exit backoff of every coin the close-all sells (see `begin_close_all`)."""
        ca = self._close_all
        assert ca is not None
        for held in self.book.holdings.values():
            if held.position.trace_id in ca.traces:
                held.exit_refusals, held.exit_retry_ms, held.exit_refused = 0, 0, None

    def _close_all_over(self) -> None:
        """End the close-all once nothing it sells is held and none of its entries is in flight."""
        ca = self._close_all
        if ca is None:
            return
        if any(h.position.trace_id in ca.traces for h in self.book.holdings.values()):
            return
        if any(p.trace_id in ca.traces for p in self._pending.values()):
            return
        self._close_all = None


def _broken(tick: tuple[float, float]) -> str:
    """Why a tick's (bid, ask) is no price, as the risk check's detail says it."""
    bid, ask = tick
    if 0.0 < bid < _INF and 0.0 < ask < _INF and bid > ask:
        return f"crossed quote: bid {bid:.10g} > ask {ask:.10g}"
    return f"broken quote: bid {bid:.10g}, ask {ask:.10g}"


_FAILED = {ErrorClass.NON_RETRYABLE: "refused", ErrorClass.RETRYABLE: "failed", ErrorClass.UNKNOWN: "outcome unknown"}


def _exit_failure(error: OrderError) -> str:
    """An exit's failure as the operator reads it: the exchange's words and code ("exit
    refused: Market is closed. (-1013)"), not the exception's type."""
    code = "" if error.code is None or str(error.code) in error.reason else f" ({error.code})"
    return f"exit {_FAILED[error.error_class]}: {error.reason}{code}"
