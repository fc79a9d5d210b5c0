"""The daily report: what one UTC day of trading came to, from the journal alone.

`build_report(day, events, ...)` is a pure function of that day's events: realised PnL and
fees, closed trades with win rate, best and worst, exposure by cluster (the peak cost basis
held in each cluster during the day, with its PnL), and how the day's time split between
engine states. A trade counts by what it realised that day (a position partly sold before
midnight and closed after it is judged on the closing day by its sells of that day), with the
position's total shown beside it where the two differ. `load_report(journal, day)` reads those events; `render_text` (notifiers) and
`render_rich` (terminal) show it; `next_report_at(now_ms)` and `DailyReporter` send it at
00:00 UTC for the day that just ended.

State time shares need the state the day began in. It comes from, in order: the events
themselves (a first `state_change` names where it came `from`; a first `run_start` means the
engine was stopped before it), the last such event before the day however long ago (an engine
may trade for weeks without a state change), and otherwise "unknown". A `run_start` with no
`run_stop` before it follows a crash (kill -9, power loss): the run before it is counted in its
state up to its last journaled event (`run_end_before`) and as stopped from there.

Positions carried into the day (`held_before`: each symbol's last `position_update` before it,
however long ago) count in exposure from the day's start and are open at its end unless the
day closed them: a position held through a whole day has no update that day.

The run still going at the end of the day's events is checked the same way (`run_tail`): a
crash with no restart that day must not count the rest of the day in the run's last state. A
later `run_start` (a restart on another day) shows it died: stopped from its last event. With
no later run boundary, the journal ends with that run and cannot say whether it died or was
quiet: the engine journals nothing on a schedule (candidate snapshots only while some coin is
hot), so a silence up to `SILENCE_GRACE_MS` before the span's end keeps the run's state, and a
longer one counts as "unknown" from the run's last event (too little time traded rather than
downtime as traded; a quiet stretch at the end is unknown too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.journal.events import JournalEvent, unknown_version
from engine.journal.reader import JournalReader
from engine.ops.notify.base import Notification
from engine.portfolio.positions import ExitReasons

if TYPE_CHECKING:
    from rich.console import RenderableType

log = logging.getLogger("hotcoin.report")

DAY_MS = 86_400_000
STOPPED = "stopped"
UNKNOWN = "unknown"
# Risk events that record state for a restart, not a limit that fired: not counted as risk.
_BOOKKEEPING = frozenset({"day_start", "daily_reset"})
REPORT_KINDS = ("position_update", "fill", "state_change", "risk_event", "command", "run_start", "run_stop")
_STATE_KINDS = ("state_change", "run_start", "run_stop")
# What a starting engine journaled before its `run_start` until its warm-up stopped journaling
# (a `run_start` saying `warmup_journaled: false`): discovery's warm-up over recent history,
# stamped with the past times it replays (see `run_end_before`).
_WARMUP_KIND = "candidate_snapshot"
_RUN_KINDS = ("run_start", "run_stop")
# How long a run the journal ends with may be silent before the span's end and still count in
# its state (module docstring): a running engine is seldom quiet this long, a dead one is.
SILENCE_GRACE_MS = 30 * 60_000


@dataclass(frozen=True, slots=True)
class RunTail:
    """How the run still going at the end of a day's events ended, as far as the journal shows.

    `last_ms`: its last journaled event. `died`: a later `run_start` shows the run was killed;
    else the journal ends with it (dead, or silent since)."""

    last_ms: int
    died: bool


@dataclass(frozen=True, slots=True)
class TradeLine:
    """A position the day closed. `pnl` is the day's share of it, what its sells realised that
    day: the figure best, worst and the win count go by, so they agree with the day's realised
    PnL and its clusters'. `total_pnl` is the whole position's, sells on earlier days included:
    a position partly sold before midnight once had that part counted on both days."""

    symbol: str
    pnl: float
    closed_ms: int
    reason: str
    trace_id: str | None
    total_pnl: float


@dataclass(frozen=True, slots=True)
class ClusterLine:
    cluster: str
    peak_exposure: float  # highest cost basis held in the cluster at once during the day
    realised_pnl: float
    trades: int


@dataclass(frozen=True, slots=True)
class DailyReport:
    day: date
    start_ms: int
    end_ms: int  # end of the span covered: 24 h later, or "now" for today
    realised_pnl: float
    fees: float
    trades: int
    wins: int
    opened: int
    best: TradeLine | None
    worst: TradeLine | None
    clusters: tuple[ClusterLine, ...]
    state_shares: Mapping[str, float]  # state -> share of the span, summing to 1
    risk_events: Mapping[str, int]  # code -> count
    commands: Mapping[str, int]  # command -> count
    open_at_end: tuple[str, ...]
    events: int

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None


def day_bounds(day: date) -> tuple[int, int]:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return start, start + DAY_MS


def utc_day(ts_ms: int) -> date:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).date()


def next_report_at(now_ms: int) -> int:
    """The next 00:00 UTC strictly after `now_ms` (epoch ms)."""
    return (now_ms // DAY_MS + 1) * DAY_MS


# -- the pure part ------------------------------------------------------------------------------


@dataclass
class _Tracker:
    clusters: Mapping[str, str]
    held: dict[str, float] = field(default_factory=dict)  # symbol -> cost basis held
    peak: dict[str, float] = field(default_factory=dict)
    pnl: dict[str, float] = field(default_factory=dict)
    trades: dict[str, int] = field(default_factory=dict)

    def cluster(self, symbol: str) -> str:
        return self.clusters.get(symbol, symbol)

    def hold(self, symbol: str, cost: float) -> None:
        if cost > 0:
            self.held[symbol] = cost
        else:
            self.held.pop(symbol, None)
        name = self.cluster(symbol)
        total = sum(v for s, v in self.held.items() if self.cluster(s) == name)
        self.peak[name] = max(self.peak.get(name, 0.0), total)

    def lines(self) -> tuple[ClusterLine, ...]:
        names = set(self.peak) | set(self.pnl)
        rows = [ClusterLine(n, self.peak.get(n, 0.0), self.pnl.get(n, 0.0), self.trades.get(n, 0)) for n in names]
        return tuple(sorted(rows, key=lambda r: (-r.peak_exposure, r.cluster)))


def _num(payload: Mapping[str, Any], name: str) -> float:
    value = payload.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def build_report(
    day: date,
    events: Iterable[JournalEvent],
    *,
    clusters: Mapping[str, str] | None = None,
    prior_state: str | None = None,
    until_ms: int | None = None,
    run_end: Callable[[JournalEvent], int | None] | None = None,
    tail: RunTail | None = None,
    held: Mapping[str, float] | None = None,
) -> DailyReport:
    """The report of `day` (UTC) from its events in seq order. Events outside the day are
    ignored; `until_ms` ends the span early (a report of today so far), though never before
    the day's last event: a journal written on a clock running ahead of the wall (`hotcoin run
    --demo --speed 60`) holds today's events from later than now, and they happened.

    `run_end(run_start)` is asked for a `run_start` that comes while the engine is not
    stopped (the run before died without a `run_stop`): when that run journaled its last
    event, from which on it counts as stopped. Without it the whole gap keeps the last state.

    `tail` (`run_tail`) says how the run still going after the day's last state event ended:
    None, it went on past the span (a later event, or a clean `run_stop`).

    `held` (`held_before`): the positions carried into the day, symbol -> cost basis."""
    start, day_end = day_bounds(day)
    end = day_end
    tracker = _Tracker(clusters or {})
    exits = ExitReasons()
    for symbol, cost in (held or {}).items():
        tracker.hold(symbol, cost)
    realised = fees = 0.0
    trades: list[TradeLine] = []
    today: dict[str, float] = {}  # position -> what its sells realised in the day so far
    opened = count = 0
    risk: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    state_time: Counter[str] = Counter()
    state, since = (prior_state or UNKNOWN), start
    latest = start  # the day's latest event
    for ev in events:
        if not start <= ev.ts_ms < end:
            continue
        count += 1
        latest = max(latest, ev.ts_ms)
        p = ev.payload
        if ev.kind in _STATE_KINDS:
            if ev.kind == "run_start":
                new, before = "tradeable", STOPPED
                if state not in (STOPPED, UNKNOWN) and run_end is not None:
                    last = run_end(ev)
                    died = ev.ts_ms if last is None else min(max(last, since), ev.ts_ms)
                    state_time[state] += died - since
                    state, since = STOPPED, died
            elif ev.kind == "run_stop":
                new, before = STOPPED, state
            else:
                new, before = str(p.get("to", UNKNOWN)), str(p.get("from", UNKNOWN))
            state_time[before if state == UNKNOWN else state] += ev.ts_ms - since
            state, since = new, ev.ts_ms
        elif ev.kind == "position_update":
            symbol = ev.symbol or "?"
            action = p.get("action")
            tracker.hold(symbol, _num(p, "quantity") * _num(p, "entry_price"))
            if action == "open":
                opened += 1
            elif action in ("partial_close", "close"):
                pnl = _num(p, "realised_pnl")
                realised += pnl
                name = tracker.cluster(symbol)
                tracker.pnl[name] = tracker.pnl.get(name, 0.0) + pnl
                key = str(p.get("position_trace_id") or symbol)
                today[key] = today.get(key, 0.0) + pnl
                # The last sell's reason, not the dust write-off's that closes after it.
                why = exits.on_update(key, action, str(p.get("reason", "")))
                if action == "close":
                    share = today.pop(key)
                    total = _num(p, "total_realised_pnl") if "total_realised_pnl" in p else share
                    trades.append(TradeLine(symbol, share, ev.ts_ms, why or "", ev.trace_id, total))
                    tracker.trades[name] = tracker.trades.get(name, 0) + 1
        elif ev.kind == "fill":
            fees += _num(p, "fee_quote")
        elif ev.kind == "risk_event" and p.get("code") not in _BOOKKEEPING:
            risk[str(p.get("code", "?"))] += 1
        elif ev.kind == "command":
            commands[str(p.get("command", "?"))] += 1
    if until_ms is not None:
        end = min(day_end, max(until_ms, latest + 1 if count else start))
    gone = _gone(tail, end) if state not in (STOPPED, UNKNOWN) else None
    if gone is not None:
        at, after = min(max(gone[0], since), end), gone[1]
        state_time[state] += at - since
        state, since = after, at
    state_time[state] += end - since
    span = end - start
    shares = {k: v / span for k, v in sorted(state_time.items(), key=lambda kv: -kv[1]) if v > 0} if span else {}
    return DailyReport(
        day=day,
        start_ms=start,
        end_ms=end,
        realised_pnl=realised,
        fees=fees,
        trades=len(trades),
        wins=sum(1 for t in trades if t.pnl > 0),
        opened=opened,
        best=max(trades, key=lambda t: t.pnl) if trades else None,
        worst=min(trades, key=lambda t: t.pnl) if trades else None,
        clusters=tracker.lines(),
        state_shares=shares,
        risk_events=dict(risk),
        commands=dict(commands),
        open_at_end=tuple(sorted(tracker.held)),
        events=count,
    )


def _gone(tail: RunTail | None, end: int) -> tuple[int, str] | None:
    """When the running engine stopped counting in its state before `end`, and as what."""
    if tail is None or tail.last_ms >= end:
        return None
    if tail.died:
        return tail.last_ms, STOPPED
    return (tail.last_ms, UNKNOWN) if end - tail.last_ms > SILENCE_GRACE_MS else None


# -- reading the journal ------------------------------------------------------------------------


def state_before(reader: JournalReader, start_ms: int) -> str | None:
    """The engine's state at `start_ms` from the last state event before it, however long ago."""
    last = reader.last_event(until_ms=start_ms, kinds=_STATE_KINDS)
    if last is None:
        return None
    if last.kind == "run_start":
        return "tradeable"
    if last.kind == "run_stop":
        return STOPPED
    return str(last.payload.get("to", UNKNOWN))


def held_before(reader: JournalReader, start_ms: int) -> dict[str, float]:
    """The positions held at `start_ms`, symbol -> cost basis, from each symbol's last
    `position_update` before it (what it left held, at its entry price)."""
    held = {}
    for symbol, ev in reader.last_by_symbol(until_ms=start_ms, kind="position_update").items():
        cost = _num(ev.payload, "quantity") * _num(ev.payload, "entry_price")
        if cost > 0:
            held[symbol] = cost
    return held


def run_end_before(reader: JournalReader, run_start: JournalEvent) -> int | None:
    """When the run before `run_start` journaled its last event (None: no event before it).

    A run whose `run_start` says `warmup_journaled: false` journaled nothing before it: the
    event just before is the old run's last. An older engine's warm-up came between the two:
    candidate snapshots journaled just before `run_start`, stamped with the past minutes they
    replay. Walking back from such a `run_start`, those are passed over; the old run ended at
    the first event of another kind, or where the stamps jump up (going back), because the
    warm-up replayed from before the old run's end. Where neither shows (a downtime longer
    than the warm-up, on a run that journaled only candidate snapshots since its last other
    event), that event is taken: the report then counts too little time traded, never
    downtime as traded."""
    headers = reader.headers_before(run_start.seq)
    if run_start.payload.get("warmup_journaled") is False:
        return next((ts for _, ts, _ in headers), None)
    newer = run_start.ts_ms
    for _, ts, kind in headers:
        if kind != _WARMUP_KIND or ts > newer:
            return ts
        newer = ts
    return None


def run_tail(reader: JournalReader, end_ms: int) -> RunTail | None:
    """How the run going at `end_ms` ended, from the first run boundary at or after it: a
    `run_start` (the run was killed: its last event before the restart), a `run_stop` (it ran
    on: None), or none (the journal ends with it: its newest event)."""
    later = reader.first_event(since_ms=end_ms, kinds=_RUN_KINDS)
    if later is not None and later.kind == "run_stop":
        return None
    last = reader.last_ts_ms() if later is None else run_end_before(reader, later)
    return None if last is None else RunTail(last, died=later is not None)


def load_report(
    journal: Path,
    day: date,
    *,
    clusters: Mapping[str, str] | None = None,
    now_ms: int | None = None,
    notes: list[str] | None = None,
) -> DailyReport:
    """Read `day`'s events from `journal` (main file and archives) and build its report.
    Blocking (SQLite): call it through `asyncio.to_thread` from async code.

    `now_ms` (the wall clock) ends the span of a day not yet over. A journal written on a clock
    ahead of the wall (`--demo --speed`) can be further on: a day it has moved past is whole,
    and one it is still in runs to its newest event of any kind (the report's own kinds are
    rare: a span ending at the last of them counted hours of trading as nothing).

    `notes`, when given, gets what the report may lack, one line each, and the reader passes
    over an archive SQLite cannot read unless the day's events may be in it (`JournalReader`'s
    `skip_damaged`): a damaged old archive made every report fail. Events of a version or kind
    this hotcoin does not know are left out and named there: read as the version it knows, a
    newer fill's fields may mean something else."""
    start, end = day_bounds(day)
    with JournalReader(journal, skip_damaged=notes is not None) as reader:
        prior = state_before(reader, start)
        until = now_ms
        if now_ms is not None and now_ms < end:
            newest = reader.last_ts_ms()
            if newest is not None:
                until = None if newest >= end else max(now_ms, newest + 1)
        events: Iterable[JournalEvent] = reader.events(since_ms=start, until_ms=end, kinds=REPORT_KINDS)
        unknown: list[int] = []
        if notes is not None:
            events = _known_only(events, unknown)
        report = build_report(
            day,
            events,
            clusters=clusters,
            prior_state=prior,
            until_ms=until,
            run_end=lambda run_start: run_end_before(reader, run_start),
            tail=run_tail(reader, end),
            held=held_before(reader, start),
        )
        if notes is not None:
            if unknown:
                more = " …" if len(unknown) > 10 else ""
                notes.append(
                    f"left out {len(unknown)} event(s) of a version or kind this hotcoin does not know (seq "
                    f"{', '.join(map(str, unknown[:10]))}{more}): a newer hotcoin wrote them; upgrade hotcoin"
                )
            notes.extend(reader.notes())
        return report


def _known_only(events: Iterable[JournalEvent], unknown: list[int]) -> Iterator[JournalEvent]:
    """`events` less those this hotcoin cannot read (`unknown_version`), their seqs put in `unknown`."""
    for ev in events:
        if unknown_version(ev.kind, ev.v) is None:
            yield ev
        else:
            unknown.append(ev.seq)


# -- rendering --------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _trade(t: TradeLine) -> str:
    """The trade's figure for the day, and the position's total beside it where sells on an
    earlier day make them differ (as shown, to the cent)."""
    day, total = f"{t.pnl:+,.2f}", f"{t.total_pnl:+,.2f}"
    return f"{t.symbol} {day}" if day == total else f"{t.symbol} {day} today, {total} in all"


def summary_lines(r: DailyReport) -> list[str]:
    """The report as short lines, shared by both renderings."""
    partial = "" if r.end_ms - r.start_ms == DAY_MS else " (so far)"
    lines = [f"Daily report {r.day.isoformat()} UTC{partial}"]
    win = f"win rate {_pct(r.win_rate)} ({r.wins}/{r.trades})" if r.win_rate is not None else "no closed trades"
    lines.append(f"PnL {r.realised_pnl:+,.2f} (fees {r.fees:,.2f}) · {r.trades} trade(s) · {win}")
    if r.best is not None and r.worst is not None:
        lines.append(f"best {_trade(r.best)} · worst {_trade(r.worst)}")
    held = f": {', '.join(r.open_at_end[:10])}" + (" …" if len(r.open_at_end) > 10 else "") if r.open_at_end else ""
    lines.append(f"opened {r.opened} · open at end {len(r.open_at_end)}{held}")
    if r.clusters:
        parts = [f"{c.cluster} {c.peak_exposure:,.2f} (PnL {c.realised_pnl:+,.2f}, {c.trades})" for c in r.clusters[:8]]
        lines.append("peak exposure by cluster: " + "; ".join(parts))
    if r.state_shares:
        lines.append("time: " + " · ".join(f"{s} {_pct(v)}" for s, v in r.state_shares.items()))
    if r.risk_events:
        lines.append("risk: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r.risk_events.items())))
    if r.commands:
        lines.append("commands: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r.commands.items())))
    return lines


def render_text(r: DailyReport) -> str:
    """Plain text for Telegram / Feishu."""
    return "\n".join(summary_lines(r))


def report_notification(r: DailyReport) -> Notification:
    title, *body = summary_lines(r)
    return Notification(title, "\n".join(body), category="report", key=f"report:{r.day.isoformat()}:{r.end_ms}")


def render_rich(r: DailyReport) -> RenderableType:
    """Tables for the terminal (`hotcoin report`)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    partial = "" if r.end_ms - r.start_ms == DAY_MS else " (so far)"
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    pnl_style = "green" if r.realised_pnl >= 0 else "red"
    head.add_row("realised PnL", Text(f"{r.realised_pnl:+,.2f}", style=pnl_style))
    head.add_row("fees", f"{r.fees:,.2f}")
    head.add_row("trades", f"{r.trades} closed, {r.opened} opened, {len(r.open_at_end)} open at end")
    head.add_row("win rate", f"{_pct(r.win_rate)} ({r.wins}/{r.trades})" if r.win_rate is not None else "-")
    head.add_row("best", _trade(r.best) if r.best else "-")
    head.add_row("worst", _trade(r.worst) if r.worst else "-")
    head.add_row("time", " · ".join(f"{s} {_pct(v)}" for s, v in r.state_shares.items()) or "-")
    if r.risk_events:
        head.add_row("risk events", ", ".join(f"{k} ×{v}" for k, v in sorted(r.risk_events.items())))
    if r.commands:
        head.add_row("commands", ", ".join(f"{k} ×{v}" for k, v in sorted(r.commands.items())))
    parts: list[RenderableType] = [Text(f"Daily report {r.day.isoformat()} UTC{partial}", style="bold"), head]
    if r.clusters:
        table = Table(title="exposure by cluster", title_justify="left")
        table.add_column("cluster")
        table.add_column("peak exposure", justify="right")
        table.add_column("realised PnL", justify="right")
        table.add_column("trades", justify="right")
        for c in r.clusters:
            table.add_row(c.cluster, f"{c.peak_exposure:,.2f}", f"{c.realised_pnl:+,.2f}", str(c.trades))
        parts.append(table)
    return Group(*parts)


# -- scheduling -------------------------------------------------------------------------------


class DailyReporter:
    """Sends yesterday's report at every 00:00 UTC while the engine runs.

    `send` receives the notification (e.g. `NotificationBridge.send`); a failing journal read
    is logged and the next day is tried again, never raised into the engine. It reads
    `settle_s` after midnight so the writer has flushed the day's last events."""

    def __init__(
        self,
        journal: Path,
        send: Callable[[Notification], object],
        *,
        clusters: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        settle_s: float = 5.0,
    ) -> None:
        self._journal = journal
        self._settle_s = settle_s
        self._send = send
        self._clusters = dict(clusters or {})
        self._clock = clock
        self._sleep = sleep

    async def run(self) -> None:
        while True:
            now_ms = int(self._clock() * 1000)
            fire = next_report_at(now_ms)
            await self._sleep((fire - now_ms) / 1000 + self._settle_s)
            await self.send_for(utc_day(fire) - timedelta(days=1))

    async def send_for(self, day: date) -> DailyReport | None:
        try:
            report = await asyncio.to_thread(load_report, self._journal, day, clusters=self._clusters)
        except Exception:  # a report is worth a log line, never the engine
            log.exception("daily report failed", extra={"day": day.isoformat()})
            return None
        self._send(report_notification(report))
        return report
