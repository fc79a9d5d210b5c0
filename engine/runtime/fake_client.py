"""A scripted `EngineClient` test double: a small generated market behind the real interface.

Readers (the TUI, its tests and benchmarks, `hotcoin tui --fake`) need an engine that publishes
hundreds of candidates, a few positions, state changes and stream freshness, answers chart and
trace queries, and reacts to commands the way the real one does, without a network or a clock
they cannot control. Everything here is derived from a seed: with the default virtual clock
two runs publish identical snapshots, which is what the TUI's snapshot tests rely on.

The world advances one cycle per `step()`. `updates()` starts a ticker that calls `step()`
every `autoplay_s` seconds (when given); tests leave it off and step by hand. Commands act at
once (a snapshot is published immediately); CLOSE_ALL then flattens `close_per_step` positions
per cycle, publishing `CloseAllProgress` until nothing is left, and pauses new entries until
RESUME; as in the engine, a resume opens entries while it goes on, and it closes only the
positions held at its presses, never one opened after the resume. `fail_next()` makes the next call of one operation raise, to test error handling.
"""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.domain import Candle, Fill, Side
from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError, TraceNotFoundError
from engine.journal.events import JournalEvent, check, make_trace_id, validate_event
from engine.runtime.client import Command, CommandResult, EngineClient
from engine.runtime.snapshot import (
    CandidateRow,
    CloseAllProgress,
    EngineSnapshot,
    EngineStatus,
    EventRow,
    Mode,
    PositionRow,
    StreamRow,
    Totals,
)
from engine.runtime.tap import event_line

FAKE_T0 = 1_767_614_400_000  # 2026-01-05 12:00 UTC: the virtual clock's start
OPERATIONS = ("send", "candles", "fills", "trace", "updates")
_OUTAGE_PERIOD, _OUTAGE_START, _OUTAGE_END = 80, 50, 62  # scripted ticker-stream outage, in cycles
_SIGNALS = ("skip", "skip", "skip", "hold", "", "enter")
_SOURCES = (("ticker",), ("ticker",), ("ticker", "social"), ("listing",), ("ticker", "listing"), ("social",))
_START_CASH = 10_000.0
_DAY_LOSS_LIMIT = -500.0  # the day's PnL limit in quote, as the totals show it


@dataclass(slots=True)
class _Coin:
    symbol: str
    price: float
    heat: float
    ret_1m: float
    ret_5m: float
    ret_1h: float
    surge: float
    age_days: float | None
    sources: tuple[str, ...]
    signal: str
    trace_id: str


class FakeEngineClient(EngineClient):
    """Generated snapshots, recorded commands, in-memory journal. See the module docstring."""

    def __init__(
        self,
        *,
        seed: int = 7,
        candidates: int = 300,
        positions: int = 6,
        mode: Mode = Mode.PAPER,
        step_ms: int = 500,
        clock: Callable[[], int] | None = None,
        autoplay_s: float | None = None,
        close_per_step: int = 2,
        scripted_outages: bool = True,
    ) -> None:
        if candidates < 1 or positions < 0 or positions > candidates or close_per_step < 1:
            raise ValueError("FakeEngineClient: need candidates >= 1, 0 <= positions <= candidates, close_per_step >= 1")
        self._rng = random.Random(seed)
        self._mode, self._step_ms, self._clock = mode, step_ms, clock
        self._autoplay_s, self._close_per_step = autoplay_s, close_per_step
        self._scripted_outages = scripted_outages
        self._pool_size = candidates
        self._cycle = 0
        self._now = clock() if clock else FAKE_T0
        self._run_id = make_trace_id("fake-run", seed)[:8]
        self.commands: list[tuple[Command, str]] = []
        self._latest: EngineSnapshot | None = None
        self._seq = 0
        self._waiters: set[asyncio.Event] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._shut_down = False
        self._failures: dict[str, Exception] = {}
        self._journal: list[JournalEvent] = []
        self._traces: dict[str, list[JournalEvent]] = {}
        self._events: deque[EventRow] = deque(maxlen=500)
        self._fills: dict[str, list[Fill]] = {}
        self._paused = False
        self._state: str = "tradeable"
        self._reasons: tuple[str, ...] = ()
        self._forced_state: tuple[str, tuple[str, ...]] | None = None
        self._forced_streams: dict[str, str] = {}
        self._stream_last: dict[str, int] = dict.fromkeys(("ticker", "kline", "listing"), self._now)
        self._close_all: CloseAllProgress | None = None
        self._close_all_done_cycles = 0
        self._closing: set[str] = set()  # the positions the close-all closes: those held at its presses
        self._day_pnl = 0.0
        self._cash = _START_CASH
        taken: set[str] = set()
        self._coins = [self._new_coin(taken) for _ in range(candidates + candidates // 5 + 1)]
        self._positions: dict[str, PositionRow] = {}
        self._emit("run_start", None, None, {"run_id": self._run_id, "config_hash": "fake", "mode": mode.value})
        for coin in sorted(self._coins, key=lambda c: -c.heat)[:positions]:
            coin.heat, coin.surge = max(coin.heat, 60.0), max(coin.surge, 3.0)  # they passed the entry rules
            self._open_position(coin, opened_ms=self._now - self._rng.randrange(60_000, 7_200_000))
        self._publish()

    # -- EngineClient -------------------------------------------------------------------

    def latest(self) -> EngineSnapshot | None:
        return self._latest

    async def updates(self) -> AsyncIterator[EngineSnapshot]:
        self._raise_if_failing("updates")
        self._ensure_ticking()
        seen = -1
        while True:
            snap = self._latest
            if snap is not None and snap.seq != seen:
                seen = snap.seq
                yield snap
                continue
            if self._shut_down:
                return
            waiter = asyncio.Event()
            self._waiters.add(waiter)
            try:
                await waiter.wait()
            finally:
                self._waiters.discard(waiter)
            self._raise_if_failing("updates")

    async def send(self, command: Command, origin: str) -> CommandResult:
        self._raise_if_failing("send")
        if self._shut_down:
            return CommandResult(False, "engine is shut down")
        self.commands.append((command, origin))
        self._emit("command", None, None, {"command": command.value, "origin": origin})
        message = self._apply(command)
        self._publish()
        return CommandResult(True, message)

    async def candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        self._raise_if_failing("candles")
        coin = self._coin(symbol)
        bar_ms = timeframe_ms(timeframe)
        rng = random.Random(zlib.crc32(f"{symbol}|{timeframe}".encode()))
        vol = 0.004 * math.sqrt(bar_ms / 60_000)
        last_open = self._now - self._now % bar_ms
        close, out = coin.price, []
        for i in range(max(0, min(limit, 1000))):
            open_ = close / math.exp(rng.gauss(0.0, vol))
            high = max(open_, close) * (1 + abs(rng.gauss(0.0, vol / 2)))
            low = min(open_, close) * (1 - abs(rng.gauss(0.0, vol / 2)))
            out.append(Candle(symbol, timeframe, last_open - i * bar_ms, open_, high, low, close, rng.uniform(1e3, 1e5), i > 0))
            close = open_
        out.reverse()
        return out

    async def fills(self, symbol: str) -> list[Fill]:
        self._raise_if_failing("fills")
        return list(self._fills.get(symbol, ()))

    async def trace(self, trace_id: str) -> list[JournalEvent]:
        self._raise_if_failing("trace")
        matches = [t for t in self._traces if t.startswith(trace_id)] if trace_id else []
        if len(matches) == 1:
            return list(self._traces[matches[0]])
        if matches:
            raise TraceNotFoundError(f"trace id {trace_id!r} is ambiguous ({len(matches)} traces); give more characters", matches[:5])
        nearest = sorted(self._traces, key=lambda t: -_common_prefix(t, trace_id))[:5]
        raise TraceNotFoundError(f"no trace {trace_id!r} in the journal", nearest)

    # -- controls for tests and demos ---------------------------------------------------

    def step(self, cycles: int = 1) -> EngineSnapshot:
        """Advance the world `cycles` engine cycles, publishing a snapshot after each."""
        for _ in range(cycles):
            self._cycle += 1
            self._now = self._clock() if self._clock else self._now + self._step_ms
            self._advance_market()
            self._advance_state()
            self._advance_positions()
            self._publish()
        assert self._latest is not None
        return self._latest

    def fail_next(self, operation: str, error: Exception) -> None:
        """Make the next call of `operation` (one of OPERATIONS) raise `error`."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; use one of {', '.join(OPERATIONS)}")
        self._failures[operation] = error

    def force_state(self, state: str | None, reasons: tuple[str, ...] = ()) -> None:
        """Pin engine_state (None returns it to the script)."""
        self._forced_state = None if state is None else (state, reasons)

    def force_stream(self, name: str, status: str | None) -> None:
        """Pin one stream's status; a non-connected stream stops receiving messages."""
        if status is None:
            self._forced_streams.pop(name, None)
        else:
            self._forced_streams[name] = status

    async def stop(self) -> None:
        """Stop the ticker and end every `updates()` iterator (what SHUTDOWN does, without a command)."""
        self._shut_down = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._wake()

    @property
    def journal(self) -> list[JournalEvent]:
        return list(self._journal)

    # -- the world ----------------------------------------------------------------------

    def _new_coin(self, taken: set[str]) -> _Coin:
        rng = self._rng
        symbol = ""
        while not symbol or symbol in taken:
            symbol = "".join(rng.choice("ABCDEFGHIJKLMNOPRSTUVWXYZ") for _ in range(rng.choice((3, 4, 4, 5)))) + "/USDT"
        taken.add(symbol)
        micro = rng.random() < 0.12
        price = 10 ** rng.uniform(-8, -5) if micro else 10 ** rng.uniform(-3, 2.5)
        return _Coin(
            symbol=symbol,
            price=price,
            heat=rng.uniform(5, 95),
            ret_1m=rng.gauss(0, 0.01),
            ret_5m=rng.gauss(0, 0.03),
            ret_1h=rng.gauss(0, 0.08),
            surge=rng.uniform(0.5, 8.0),
            age_days=None if rng.random() < 0.05 else round(rng.uniform(0.2, 1500), 1),
            sources=rng.choice(_SOURCES),
            signal=rng.choice(_SIGNALS),
            trace_id=make_trace_id(self._run_id, symbol, 0),
        )

    def _coin(self, symbol: str) -> _Coin:
        for coin in self._coins:
            if coin.symbol == symbol:
                return coin
        raise MarketDataError(f"unknown symbol {symbol!r}; the fake engine lists {len(self._coins)} symbols")

    def _advance_market(self) -> None:
        rng = self._rng
        ticker_live = self._stream_status("ticker") == "connected"
        for coin in self._coins:
            if ticker_live:
                move = rng.gauss(0.0, 0.002)
                coin.price *= math.exp(move)
                coin.ret_1m = 0.9 * coin.ret_1m + move
                coin.ret_5m = 0.98 * coin.ret_5m + move
                coin.ret_1h = 0.998 * coin.ret_1h + move
            coin.heat = min(100.0, max(0.0, coin.heat + rng.gauss(0.0, 1.5)))
            coin.surge = max(0.1, coin.surge * math.exp(rng.gauss(0.0, 0.05)))
            if rng.random() < 0.02:
                coin.signal = rng.choice(_SIGNALS)
                coin.trace_id = make_trace_id(self._run_id, coin.symbol, self._cycle)
                self._journal_candidate(coin)
        for name in self._stream_last:
            if self._stream_status(name) == "connected":
                self._stream_last[name] = self._now

    def _advance_state(self) -> None:
        if self._forced_state is not None:
            new = self._forced_state
        elif self._stream_status("ticker") != "connected":
            age_s = (self._now - self._stream_last["ticker"]) / 1000
            new = ("degraded", (f"market data stale {age_s:.0f}s (ticker stream)",))
        else:
            new = ("tradeable", ())
        if new != (self._state, self._reasons):
            self._emit("state_change", None, None, {"from": self._state, "to": new[0], "reasons": list(new[1])})
            self._state, self._reasons = new

    def _advance_positions(self) -> None:
        for symbol, pos in list(self._positions.items()):
            mark = self._coin(symbol).price
            self._positions[symbol] = replace(pos, mark=mark, unrealised_pnl=(mark - pos.entry_price) * pos.quantity)
        if self._close_all is not None:
            self._advance_close_all()
        elif self._cycle % 25 == 0 and self._positions:
            oldest = min(self._positions.values(), key=lambda p: p.opened_ms)
            self._close_position(oldest.symbol, "take_profit")
        can_enter = not self._paused and self._state == "tradeable"
        if can_enter and self._cycle % 10 == 0 and len(self._positions) < 20:
            free = [c for c in self._coins if c.symbol not in self._positions and c.heat >= 60 and c.surge >= 3]
            if free:
                self._open_position(max(free, key=lambda c: c.heat), opened_ms=self._now)

    def _advance_close_all(self) -> None:
        progress = self._close_all
        assert progress is not None
        if progress.done:
            self._close_all_done_cycles += 1
            if self._close_all_done_cycles > 10:
                self._close_all = None
            return
        for symbol in [s for s in self._positions if s in self._closing][: self._close_per_step]:
            self._close_position(symbol, "close_all")
        self._closing &= self._positions.keys()
        self._close_all = replace(progress, remaining=len(self._closing))

    def _apply(self, command: Command) -> str:
        if command is Command.PAUSE:
            self._paused = True
            return "new entries paused; exits continue"
        if command is Command.RESUME:
            self._paused = False
            return "new entries resumed"
        if command is Command.CLOSE_ALL:
            self._paused = True
            self._close_all_done_cycles = 0
            self._closing = set(self._positions)
            count = len(self._positions)
            self._close_all = CloseAllProgress(requested_ms=self._now, total=count, remaining=count)
            return f"closing {count} position(s); new entries paused until resume"
        self._emit("run_stop", None, None, {"run_id": self._run_id, "reason": f"shutdown from {self.commands[-1][1]}"})
        self._shut_down = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        return "engine stopped; journal flushed"

    # -- positions and their journal trail ----------------------------------------------

    def _open_position(self, coin: _Coin, opened_ms: int) -> None:
        trace = make_trace_id(self._run_id, coin.symbol, "entry", self._cycle)
        coin.trace_id, coin.signal = trace, "in_position"
        quantity = round(self._rng.uniform(150, 800) / coin.price, 2 if coin.price > 0.01 else 0)
        cause = self._journal_candidate(coin)
        cause = self._emit("signal_snapshot", trace, coin.symbol, {
            "decision": "enter", "reason": "hot with a volume surge",
            "rules": [check("heat", coin.heat >= 60, round(coin.heat, 2), 60.0), check("volume", coin.surge >= 3, round(coin.surge, 2), 3.0)],
            "features": {"ret_5m": round(coin.ret_5m, 4), "volume_surge": round(coin.surge, 2)}}, cause)  # fmt: skip
        cause = self._emit("risk_check", trace, coin.symbol, {
            "approved": True, "checks": [check("max_concurrent", True, len(self._positions), 20), self._daily_loss_check()]}, cause)  # fmt: skip
        fill = self._trade(coin.symbol, trace, Side.BUY, coin.price, quantity, "entry", cause)
        self._positions[coin.symbol] = PositionRow(
            symbol=coin.symbol, trace_id=trace, quantity=quantity, entry_price=fill.price, mark=coin.price,
            unrealised_pnl=(coin.price - fill.price) * quantity, realised_pnl=0.0,
            tp_tier=self._rng.choice((0, 0, 1, 2)), stop_price=fill.price * 0.95, opened_ms=opened_ms,
        )  # fmt: skip
        self._cash -= fill.notional

    def _daily_loss_check(self) -> dict[str, Any]:
        """As the engine journals it (`RiskManager`): the day's drawdown, a fraction of the
        starting cash, under the limit (here the -500 of the totals' day limit), so a replay of
        the fake reads the way a real one does."""
        return check("daily_loss", True, round(max(0.0, -self._day_pnl) / _START_CASH, 6), -_DAY_LOSS_LIMIT / _START_CASH)

    def _close_position(self, symbol: str, purpose: str) -> None:
        pos = self._positions.pop(symbol)
        coin = self._coin(symbol)
        fill = self._trade(symbol, pos.trace_id, Side.SELL, coin.price, pos.quantity, purpose, None)
        pnl = (fill.price - pos.entry_price) * pos.quantity - fill.fee_quote
        self._day_pnl += pnl
        self._cash += fill.notional
        coin.signal = "skip"

    def _trade(self, symbol: str, trace: str, side: Side, price: float, qty: float, purpose: str, cause: int | None) -> Fill:
        coid = f"hc-{trace}-{purpose[:2]}{self._cycle}"
        cause = self._emit("order_attempt", trace, symbol, {
            "client_order_id": coid, "side": side.value, "order_type": "market", "purpose": purpose, "quantity": f"{qty}"}, cause)  # fmt: skip
        cause = self._emit("order_result", trace, symbol, {"client_order_id": coid, "status": "filled", "error_class": None}, cause)
        fill = Fill(f"t{len(self._journal)}", coid, symbol, side, price, qty, price * qty * 0.001, self._now, trace)
        self._fills.setdefault(symbol, []).append(fill)
        cause = self._emit("fill", trace, symbol, {
            "client_order_id": coid, "side": side.value, "price": price, "quantity": qty, "fee_quote": fill.fee_quote}, cause)  # fmt: skip
        action = "open" if side is Side.BUY else "close"
        self._emit("position_update", trace, symbol, {"action": action, "quantity": qty, "entry_price": price, "realised_pnl": 0.0}, cause)
        return fill

    def _journal_candidate(self, coin: _Coin) -> int:
        accepted = coin.heat >= 20
        return self._emit("candidate_snapshot", coin.trace_id, coin.symbol, {
            "heat": round(coin.heat, 2), "components": {"momentum": round(coin.ret_5m, 4), "volume_surge": round(coin.surge, 2)},
            "rank": 1, "price": coin.price, "filters": [check("min_heat", accepted, round(coin.heat, 2), 20.0)], "accepted": accepted})  # fmt: skip

    def _emit(self, kind: str, trace: str | None, symbol: str | None, payload: Mapping[str, Any], cause: int | None = None) -> int:
        v = validate_event(kind, self._now, payload)
        seq = len(self._journal) + 1
        event = JournalEvent(seq, self._now, kind, payload, trace, symbol, cause, v)
        self._journal.append(event)
        if trace is not None:
            self._traces.setdefault(trace, []).append(event)
        self._events.append(EventRow(seq, self._now, kind, symbol, trace, event_line(kind, payload)))
        return seq

    # -- publishing ---------------------------------------------------------------------

    def _stream_status(self, name: str) -> str:
        if name in self._forced_streams:
            return self._forced_streams[name]
        in_outage = _OUTAGE_START <= self._cycle % _OUTAGE_PERIOD < _OUTAGE_END
        return "stale" if self._scripted_outages and name == "ticker" and in_outage else "connected"

    def _publish(self) -> None:
        self._seq += 1
        pool = sorted(self._coins, key=lambda c: -c.heat)[: self._pool_size]
        rows = tuple(
            CandidateRow(
                c.symbol, c.trace_id, c.heat, rank, c.price, c.ret_1m, c.ret_5m, c.ret_1h, c.surge, c.age_days,
                c.sources, "in_position" if c.symbol in self._positions else c.signal,
            )
            for rank, c in enumerate(pool, start=1)
        )  # fmt: skip
        exposure = sum(p.mark * p.quantity for p in self._positions.values())
        streams = (
            *(StreamRow(name, self._stream_status(name), last) for name, last in self._stream_last.items()),
            StreamRow("social", "down", None, "x_bearer_token not set"),
        )
        status = EngineStatus(
            state=self._state, reasons=self._reasons, mode=self._mode, paused=self._paused,
            risk_level=2 if self._state == "tradeable" else 3, order_error_rate=0.0 if self._state == "tradeable" else 1.0,
            streams=streams, run_id=self._run_id, config_hash="fake", model_version="lgbm-2026-01-02",
        )  # fmt: skip
        upnl = sum(p.unrealised_pnl for p in self._positions.values())
        self._latest = EngineSnapshot(
            seq=self._seq, ts_ms=self._now, status=status, candidates=rows, positions=tuple(self._positions.values()),
            totals=Totals(self._cash + exposure, self._cash, exposure, self._day_pnl + upnl, _DAY_LOSS_LIMIT),
            events=tuple(self._events)[-200:], close_all=self._close_all,
        )  # fmt: skip
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def _ensure_ticking(self) -> None:
        if self._autoplay_s is not None and self._ticker is None and not self._shut_down:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(self._autoplay_s))

    async def _tick(self, every_s: float) -> None:
        while not self._shut_down:
            await asyncio.sleep(every_s)
            self.step()

    def _raise_if_failing(self, operation: str) -> None:
        error = self._failures.pop(operation, None)
        if error is not None:
            raise error


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
