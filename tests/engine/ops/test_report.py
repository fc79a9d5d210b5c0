"""The daily report: a pure function of one UTC day's journal events, its renderings, and
the 00:00 UTC schedule."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.journal.events import JournalEvent
from engine.journal.writer import Journal
from engine.ops.notify.base import DeliveryError, FakeNotifier, Notification
from engine.ops.notify.dispatcher import DispatchSettings
from engine.ops.notify.oneshot import Outcome, deliver, longest_delivery_s
from engine.ops.report import (
    SILENCE_GRACE_MS,
    DailyReporter,
    RunTail,
    build_report,
    day_bounds,
    load_report,
    next_report_at,
    render_rich,
    render_text,
    report_notification,
)
from tests.kit.waiting import eventually

DAY = date(2026, 11, 24)
D0, D1 = day_bounds(DAY)
H = 3_600_000
CLUSTERS = {"DOGE/USDT": "meme", "PEPE/USDT": "meme"}


def pos(action: str, qty: float, entry: float, pnl: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"action": action, "quantity": qty, "entry_price": entry, "realised_pnl": pnl, **extra}


# (ts_ms, kind, symbol, payload): a day with two closed trades, one still open, an outage and a stop
DAY_EVENTS: list[tuple[int, str, str | None, dict[str, Any]]] = [
    (D0 - 1, "position_update", "BTC/USDT", pos("close", 0, 1, 99.0)),  # yesterday: ignored
    (D0 + 1 * H, "run_start", None, {"run_id": "r1", "config_hash": "c", "mode": "SIM"}),
    (D0 + 2 * H, "position_update", "DOGE/USDT", pos("open", 100, 0.3, reason="hot")),
    (D0 + 2 * H + 1, "fill", "DOGE/USDT", {"client_order_id": "a", "side": "buy", "price": 0.3, "quantity": 100, "fee_quote": 0.03}),
    (D0 + 3 * H, "position_update", "PEPE/USDT", pos("open", 1_000_000, 0.00001)),
    (D0 + 4 * H, "position_update", "DOGE/USDT", pos("partial_close", 50, 0.3, 2.0, total_realised_pnl=2.0)),
    (D0 + 5 * H, "position_update", "DOGE/USDT", pos("close", 0, 0.3, 3.0, total_realised_pnl=5.0, reason="take_profit")),
    (D0 + 6 * H, "state_change", None, {"from": "tradeable", "to": "degraded", "reasons": ["data_stale"]}),
    (D0 + 9 * H, "state_change", None, {"from": "degraded", "to": "tradeable", "reasons": []}),
    (D0 + 10 * H, "position_update", "PEPE/USDT", pos("close", 0, 0.00001, -1.5, total_realised_pnl=-1.5, reason="stop")),
    (D0 + 11 * H, "position_update", "SOL/USDT", pos("open", 1, 100.0)),
    (D0 + 12 * H, "risk_event", None, {"code": "daily_loss_limit", "level": "L3", "detail": "x"}),
    (D0 + 12 * H, "command", None, {"command": "pause", "origin": "telegram:owner"}),
    (D0 + 20 * H, "run_stop", None, {"run_id": "r1", "reason": "SIGTERM"}),
    (D1, "position_update", "ETH/USDT", pos("close", 0, 1, 50.0)),  # tomorrow: ignored
]


def events(rows: list[tuple[int, str, str | None, dict[str, Any]]]) -> list[JournalEvent]:
    return [JournalEvent(i + 1, ts, kind, payload, f"t{i}", symbol) for i, (ts, kind, symbol, payload) in enumerate(rows)]


def test_a_full_day() -> None:
    r = build_report(DAY, events(DAY_EVENTS), clusters=CLUSTERS)
    assert (r.realised_pnl, r.fees, r.trades, r.wins, r.opened) == (3.5, 0.03, 2, 1, 3)
    assert r.win_rate == 0.5
    assert r.best is not None and (r.best.symbol, r.best.pnl, r.best.reason) == ("DOGE/USDT", 5.0, "take_profit")
    assert r.worst is not None and (r.worst.symbol, r.worst.pnl) == ("PEPE/USDT", -1.5)
    assert [(c.cluster, c.peak_exposure, c.realised_pnl, c.trades) for c in r.clusters] == [
        ("SOL/USDT", 100.0, 0.0, 0),
        ("meme", 40.0, 3.5, 2),
    ]
    assert dict(r.state_shares) == {"tradeable": 16 / 24, "stopped": 5 / 24, "degraded": 3 / 24}
    assert r.open_at_end == ("SOL/USDT",)
    assert dict(r.risk_events) == {"daily_loss_limit": 1}
    assert dict(r.commands) == {"pause": 1}
    assert r.events == 13


def test_a_trade_whose_last_sell_left_dust_exits_by_that_sell() -> None:
    """Audit: the README's tour journal's one take-profit trade was reported with reason "dust":
    the report took the final `close`, the write-off of the crumbs the last sell left. A trade's
    exit reason is its last sell's (docs/backtest.md); one that was all dust is still "dust"."""
    def upd(at: int, symbol: str, action: str, qty: float, reason: str, pnl: float, trace: str) -> tuple[int, str, str, dict[str, Any]]:
        extra = {"reason": reason, "position_trace_id": trace, "total_realised_pnl": pnl}
        return (D0 + at * H, "position_update", symbol, pos(action, qty, 0.026, pnl, **extra))

    rows = [
        upd(1, "PON/USDT", "open", 1898.1, "entry", 0.0, "a585"),
        upd(2, "DENT/USDT", "open", 50.0, "entry", 0.0, "d1"),
        upd(3, "PON/USDT", "partial_close", 949.1, "take_profit", 1.22, "a585"),
        upd(4, "DENT/USDT", "partial_close", 0.1, "trailing_stop", -0.5, "d1"),
        upd(5, "PON/USDT", "partial_close", 0.1, "take_profit", 3.67, "a585"),
        upd(5, "PON/USDT", "close", 0.0, "dust", 3.6700256, "a585"),
        upd(6, "DENT/USDT", "close", 0.0, "dust", -0.51, "d1"),
        upd(7, "DUST/USDT", "open", 0.5, "entry", 0.0, "z9"),
        upd(8, "DUST/USDT", "close", 0.0, "dust", -0.01, "z9"),  # nothing sold: all of it dust
    ]
    r = build_report(DAY, events(rows))
    assert r.best is not None and (r.best.symbol, r.best.reason) == ("PON/USDT", "take_profit")
    assert r.worst is not None and (r.worst.symbol, r.worst.reason) == ("DENT/USDT", "trailing_stop")
    closed = [ev for ev in events(rows) if ev.payload["action"] == "close"]
    assert build_report(DAY, [closed[-1]]).best.reason == "dust"  # type: ignore[union-attr]


def test_text_rendering() -> None:
    text = render_text(build_report(DAY, events(DAY_EVENTS), clusters=CLUSTERS))
    assert text.splitlines() == [
        "Daily report 2026-11-24 UTC",
        "PnL +3.50 (fees 0.03) · 2 trade(s) · win rate 50% (1/2)",
        "best DOGE/USDT +5.00 · worst PEPE/USDT -1.50",
        "opened 3 · open at end 1: SOL/USDT",
        "peak exposure by cluster: SOL/USDT 100.00 (PnL +0.00, 0); meme 40.00 (PnL +3.50, 2)",
        "time: tradeable 67% · stopped 21% · degraded 12%",
        "risk: daily_loss_limit ×1",
        "commands: pause ×1",
    ]


def test_notification_and_rich_rendering() -> None:
    r = build_report(DAY, events(DAY_EVENTS), clusters=CLUSTERS)
    note = report_notification(r)
    assert note.title == "Daily report 2026-11-24 UTC"
    assert note.text.startswith("PnL +3.50")
    console = Console(width=100, record=True, color_system=None)
    console.print(render_rich(r))
    out = console.export_text()
    assert "realised PnL  +3.50" in out
    assert "exposure by cluster" in out
    assert "meme" in out


def test_an_empty_day() -> None:
    r = build_report(DAY, [])
    assert (r.trades, r.realised_pnl, r.win_rate, r.best, r.clusters) == (0, 0.0, None, None, ())
    assert dict(r.state_shares) == {"unknown": 1.0}
    assert render_text(r).splitlines()[1] == "PnL +0.00 (fees 0.00) · 0 trade(s) · no closed trades"


@pytest.mark.parametrize(
    ("rows", "prior", "shares"),
    [
        ([(D0 + 12 * H, "state_change", None, {"from": "blocked", "to": "tradeable", "reasons": []})], None, {"blocked": 0.5, "tradeable": 0.5}),
        ([(D0 + 6 * H, "run_start", None, {"run_id": "r", "config_hash": "c", "mode": "SIM"})], None, {"tradeable": 0.75, "stopped": 0.25}),
        ([], "degraded", {"degraded": 1.0}),
        ([(D0 + 18 * H, "run_stop", None, {"run_id": "r", "reason": "crash"})], "tradeable", {"tradeable": 0.75, "stopped": 0.25}),
    ],
    ids=["from-first-change", "started-mid-day", "prior-only", "stopped-at-18h"],
)  # fmt: skip
def test_state_shares_at_the_start_of_the_day(rows: list[tuple[int, str, str | None, dict[str, Any]]], prior: str | None, shares: dict[str, float]) -> None:
    assert dict(build_report(DAY, events(rows), prior_state=prior).state_shares) == shares


def test_today_so_far() -> None:
    so_far = [row for row in DAY_EVENTS if row[0] < D0 + 6 * H]  # what a journal holds at 06:00
    r = build_report(DAY, events(so_far), clusters=CLUSTERS, until_ms=D0 + 6 * H)
    assert (r.end_ms, r.trades, r.realised_pnl) == (D0 + 6 * H, 1, 5.0)
    assert dict(r.state_shares) == {"tradeable": 5 / 6, "stopped": 1 / 6}
    assert render_text(r).startswith("Daily report 2026-11-24 UTC (so far)")


def test_today_from_a_journal_ahead_of_the_wall_clock() -> None:
    """A demo at --speed 60 journals today's events up to an hour ahead of now: they count,
    and the span runs to the latest of them (it was all the report showed: nothing)."""
    r = build_report(DAY, events(DAY_EVENTS), clusters=CLUSTERS, until_ms=D0 + 6 * H)
    assert (r.end_ms, r.trades, r.realised_pnl, r.events) == (D0 + 20 * H + 1, 2, 3.5, 13)
    assert set(r.state_shares) == {"tradeable", "stopped", "degraded"}
    assert render_text(r).startswith("Daily report 2026-11-24 UTC (so far)")


@pytest.mark.parametrize(
    ("now", "expected"),
    [(D0, D1), (D0 + 1, D1), (D1 - 1, D1), (D0 + 13 * H, D1)],
    ids=["exactly-midnight", "just-after", "just-before", "afternoon"],
)
def test_next_report_is_the_next_midnight_utc(now: int, expected: int) -> None:
    assert next_report_at(now) == expected


CANDIDATE = {"heat": 1, "components": {}, "rank": 1, "price": 1, "filters": [], "accepted": True}
SIGNAL = {"decision": "skip", "reason": "x", "rules": [], "features": {}}
RUN = {"run_id": "r", "config_hash": "c", "mode": "SIM"}


async def _journal(path: Path) -> None:
    async with Journal.open(path) as j:
        j.emit("state_change", ts_ms=D0 - 2 * H, payload={"from": "tradeable", "to": "degraded", "reasons": ["x"]})
        j.emit("signal_snapshot", ts_ms=D0 + H // 2, payload=SIGNAL, symbol="X/USDT")  # that run's last sign of life
        for ts, kind, symbol, payload in DAY_EVENTS[1:-1]:
            j.emit(kind, ts_ms=ts, payload=payload, symbol=symbol)
        j.emit("candidate_snapshot", ts_ms=D0 + H, payload=CANDIDATE, symbol="X/USDT")


async def test_load_report_reads_the_day_and_the_state_it_began_in(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    await _journal(path)
    r = await asyncio.to_thread(load_report, path, DAY, clusters=CLUSTERS)
    assert (r.realised_pnl, r.trades, r.opened) == (3.5, 2, 3)
    # the day began "degraded" (the last state change, 2 h before midnight; no run_stop followed
    # it): 00:00-00:30, when that run journaled its last event, and the 06:00-09:00 outage;
    # stopped from 00:30 to the run_start at 01:00, and after the run_stop at 20:00
    assert r.state_shares["degraded"] == pytest.approx(3.5 / 24)
    assert r.state_shares["stopped"] == pytest.approx(4.5 / 24)
    assert r.events == 13


@pytest.mark.parametrize(
    ("after", "end", "shares"),
    [
        ([], D0 + 11 * H + 1, {"stopped": 2 * H / (11 * H + 1), "tradeable": 9 * H / (11 * H + 1)}),
        ([(D1 + H, "signal_snapshot", "A/USDT", SIGNAL)], D1, {"stopped": 2 / 24, "tradeable": 22 / 24}),
    ],
    ids=["journal-still-in-the-day", "journal-moved-past-the-day"],
)  # fmt: skip
async def test_a_day_ahead_of_the_wall_clock_runs_to_the_journals_newest_event(
    tmp_path: Path, after: list[tuple[int, str, str | None, dict[str, Any]]], end: int, shares: dict[str, float]
) -> None:
    """A demo at --speed ahead of the wall: stopped 00:00-01:00 and 02:00-03:00, trading since
    03:00 with only signal snapshots after it. The span ended at the last event of the report's
    own kinds (03:00: stopped 34 % instead of 11 %), and a day the journal had moved past was
    titled "(so far)"."""
    path = tmp_path / "journal.sqlite"
    stop = {"run_id": "r", "reason": "SIGTERM"}
    async with Journal.open(path) as j:
        rows = [(D0 + H, "run_start", None, RUN), (D0 + 2 * H, "run_stop", None, stop), (D0 + 3 * H, "run_start", None, RUN)]
        rows += [(ts, "signal_snapshot", "A/USDT", SIGNAL) for ts in range(D0 + 4 * H, D0 + 12 * H, H)]
        for ts, kind, symbol, payload in [*rows, *after]:
            j.emit(kind, ts_ms=ts, payload=payload, symbol=symbol)
    r = await asyncio.to_thread(load_report, path, DAY, now_ms=D0 - 5 * H)
    assert r.end_ms == end
    assert dict(r.state_shares) == pytest.approx(shares)
    assert render_text(r).startswith(f"Daily report 2026-11-24 UTC{' (so far)' if end < D1 else ''}\n")


async def test_a_position_held_through_the_day_is_open_at_its_end(tmp_path: Path) -> None:
    """DOGE bought the day before and held all day (no update that day) read "open at end 0"
    and was missing from the exposure; PEPE, carried in and closed at 05:00, counts until then;
    SOL, closed the day before, is not carried; WIF's part left after a partial close is."""
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        for ts, symbol, payload in [
            (D0 - 5 * H, "SOL/USDT", pos("open", 1, 100.0)),
            (D0 - 4 * H, "SOL/USDT", pos("close", 0, 100.0, 2.0)),
            (D0 - 3 * H, "PEPE/USDT", pos("open", 1_000_000, 0.00001)),
            (D0 - 2 * H, "DOGE/USDT", pos("open", 100, 0.3)),
            (D0 - 2 * H, "WIF/USDT", pos("open", 10, 2.0)),
            (D0 - H, "WIF/USDT", pos("partial_close", 4, 2.0, 1.0)),
            (D0 + 5 * H, "PEPE/USDT", pos("close", 0, 0.00001, -1.5, total_realised_pnl=-1.5, reason="stop")),
        ]:
            j.emit("position_update", ts_ms=ts, payload=payload, symbol=symbol)
    r = await asyncio.to_thread(load_report, path, DAY, clusters=CLUSTERS)
    assert r.open_at_end == ("DOGE/USDT", "WIF/USDT")
    assert {c.cluster: c.peak_exposure for c in r.clusters} == pytest.approx({"meme": 40.0, "WIF/USDT": 8.0})
    assert (r.trades, r.opened) == (1, 0)
    assert "open at end 2: DOGE/USDT, WIF/USDT" in render_text(r)


@pytest.mark.parametrize(
    ("last", "shares"),
    [(D0 + 6 * H, {"tradeable": 18 / 24, "stopped": 6 / 24}), (D0 - H, {"tradeable": 0.5, "stopped": 0.5}), (None, {"tradeable": 1.0})],
    ids=["died-at-06h", "died-yesterday", "unknown"],
)  # fmt: skip
def test_a_run_start_after_a_crash_counts_the_downtime_as_stopped(last: int | None, shares: dict[str, float]) -> None:
    """No run_stop before a run_start: the run before was killed. It counted as tradeable up to
    its last journaled event (`run_end`), and as stopped from there to the restart at 12:00."""
    asked: list[int] = []

    def run_end(ev: JournalEvent) -> int | None:
        asked.append(ev.seq)
        return last

    rows = [(D0 + 12 * H, "run_start", None, RUN), (D0 + 13 * H, "run_stop", None, {"run_id": "r", "reason": "x"}), (D0 + 13 * H, "run_start", None, RUN)]
    r = build_report(DAY, events(rows[:1]), prior_state="tradeable", run_end=run_end)
    assert dict(r.state_shares) == shares and asked == [1]
    clean = build_report(DAY, events(rows[1:]), prior_state="tradeable", run_end=run_end)  # a run_stop: nothing to ask
    assert dict(clean.state_shares) == {"tradeable": 1.0} and asked == [1]


def _warmup(start: int, end: int) -> list[tuple[int, str, str | None, dict[str, Any]]]:
    """What a starting engine journals before its run_start: candidate snapshots of the past
    minutes it replays through discovery, two symbols a minute."""
    return [(ts, "candidate_snapshot", sym, CANDIDATE) for ts in range(start, end, 60_000) for sym in ("A/USDT", "B/USDT")]


OLD_RUN = [(D0 + H, "run_start", None, RUN), (D0 + H + 1, "signal_snapshot", "A/USDT", SIGNAL)]
RESTART = [(D0 + 3 * H, "run_start", None, RUN), (D0 + 4 * H, "run_stop", None, {"run_id": "r", "reason": "duration"})]


@pytest.mark.parametrize(
    "middle",
    [
        [(D0 + 2 * H, "signal_snapshot", "A/USDT", SIGNAL), *_warmup(D0 + H + H // 2, D0 + 3 * H)],
        [*_warmup(D0 + H + 60_000, D0 + 2 * H + 1), *_warmup(D0 + H + H // 2, D0 + 3 * H)],
        [(D0 + 2 * H, "signal_snapshot", "A/USDT", SIGNAL), *_warmup(D0 + 2 * H + H // 2, D0 + 3 * H)],
    ],
    ids=["warm-up-replays-past-the-old-end", "old-run-ends-in-candidates", "down-longer-than-the-warm-up"],
)  # fmt: skip
async def test_a_killed_run_counts_as_traded_only_up_to_its_last_event(
    tmp_path: Path, middle: list[tuple[int, str, str | None, dict[str, Any]]]
) -> None:
    """kill -9 at about 02:00 (no run_stop), restart at 03:00 after a warm-up whose candidate
    snapshots are stamped with the past minutes they replay: tradeable 01:00-02:00 and
    03:00-04:00, stopped the rest; the warm-up's stamps are not taken for the old run's."""
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        for ts, kind, symbol, payload in [*OLD_RUN, *middle, *RESTART]:
            j.emit(kind, ts_ms=ts, payload=payload, symbol=symbol)
    r = await asyncio.to_thread(load_report, path, DAY)
    assert r.state_shares["tradeable"] == pytest.approx(2 / 24, abs=1e-6)
    assert r.state_shares["stopped"] == pytest.approx(22 / 24, abs=1e-6)


async def test_a_run_whose_warm_up_journaled_nothing_ends_the_killed_run_at_the_event_before_it(tmp_path: Path) -> None:
    """kill -9 at 02:00 of a run that journaled only candidate snapshots since 01:00 (hot coins
    a filter refused), restart at 03:00 by an engine whose warm-up journals nothing (its
    `run_start` says so): tradeable 01:00-02:00 and 03:00-04:00. Taken for an older engine's
    warm-up, the old run's own snapshots were passed over back to 01:00."""
    path = tmp_path / "journal.sqlite"
    restart = [(D0 + 3 * H, "run_start", None, {**RUN, "warmup_journaled": False}), RESTART[1]]
    async with Journal.open(path) as j:
        for ts, kind, symbol, payload in [*OLD_RUN, *_warmup(D0 + H + 60_000, D0 + 2 * H + 1), *restart]:
            j.emit(kind, ts_ms=ts, payload=payload, symbol=symbol)
    r = await asyncio.to_thread(load_report, path, DAY)
    assert r.state_shares["tradeable"] == pytest.approx(2 / 24, abs=1e-6)
    assert r.state_shares["stopped"] == pytest.approx(22 / 24, abs=1e-6)


@pytest.mark.parametrize(
    ("before", "shares"),
    [
        ([(D0 - 3 * 24 * H, "run_start", None, RUN)], {"tradeable": 1.0}),
        ([(D0 - 40 * H, "state_change", None, {"from": "tradeable", "to": "degraded", "reasons": ["x"]})], {"degraded": 1.0}),
    ],
    ids=["started-3-days-ago", "degraded-since-40h"],
)  # fmt: skip
async def test_the_state_the_day_began_in_is_found_however_long_ago(
    tmp_path: Path, before: list[tuple[int, str, str | None, dict[str, Any]]], shares: dict[str, float]
) -> None:
    """An engine that has run for days without a state change began the day in its state, not
    "unknown": the last state event is looked up however far back it is."""
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        for ts, kind, symbol, payload in before:
            j.emit(kind, ts_ms=ts, payload=payload, symbol=symbol)
        for ts in range(D0 - 30 * H, D1 + 2 * H, H):  # events every hour, none a state change, on past the day
            j.emit("signal_snapshot", ts_ms=ts, payload=SIGNAL, symbol="A/USDT")
    r = await asyncio.to_thread(load_report, path, DAY)
    assert dict(r.state_shares) == shares


@pytest.mark.parametrize(
    ("tail", "until", "shares"),
    [
        (RunTail(D0 + 14 * H, died=False), None, {"tradeable": 14 / 24, "unknown": 10 / 24}),
        (RunTail(D0 + 14 * H, died=True), None, {"tradeable": 14 / 24, "stopped": 10 / 24}),
        (RunTail(D1 - SILENCE_GRACE_MS, died=False), None, {"tradeable": 1.0}),
        (RunTail(D1 + H, died=False), None, {"tradeable": 1.0}),
        (RunTail(D0 + 5 * H, died=False), D0 + 6 * H, {"tradeable": 5 / 6, "unknown": 1 / 6}),
        (RunTail(D0 + 6 * H - 60_000, died=False), D0 + 6 * H, {"tradeable": 1.0}),
        (None, None, {"tradeable": 1.0}),
    ],
    ids=["silent-since-14h", "restarted-another-day", "quiet-within-grace", "went-on-past-midnight",
         "today-silent-an-hour", "today-quiet-a-minute", "stopped-cleanly-later"],
)  # fmt: skip
def test_a_run_that_ends_the_day_silent_is_not_counted_as_trading(
    tail: RunTail | None, until: int | None, shares: dict[str, float]
) -> None:
    """Killed at 14:00 with no restart that day: the rest of the day is unknown when the journal
    ends there, stopped when a restart on another day shows the run died; a silence shorter
    than the grace, or a run seen after the span, keeps its state."""
    assert dict(build_report(DAY, [], prior_state="tradeable", until_ms=until, tail=tail).state_shares) == shares


@pytest.mark.parametrize(
    ("after", "shares"),
    [
        ([], {"stopped": 1 / 24, "tradeable": 13 / 24, "unknown": 10 / 24}),
        ([*_warmup(D1 + 8 * H, D1 + 9 * H), (D1 + 9 * H, "run_start", None, RUN)], {"stopped": 11 / 24, "tradeable": 13 / 24}),
        ([(D1 + 9 * H, "run_stop", None, {"run_id": "r", "reason": "SIGTERM"})], {"stopped": 1 / 24, "tradeable": 23 / 24}),
        ([(D1 + 9 * H, "signal_snapshot", "A/USDT", SIGNAL)], {"stopped": 1 / 24, "tradeable": 23 / 24}),
    ],
    ids=["journal-ends", "restart-next-day", "clean-stop-next-day", "still-journaling-next-day"],
)  # fmt: skip
async def test_a_crash_with_no_restart_that_day_counts_the_rest_of_it_as_down(
    tmp_path: Path, after: list[tuple[int, str, str | None, dict[str, Any]]], shares: dict[str, float]
) -> None:
    """Started 01:00, journaled up to 14:00, then killed: no run_stop, nothing else that day."""
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        rows = [(D0 + H, "run_start", None, RUN), *((ts, "signal_snapshot", "A/USDT", SIGNAL) for ts in range(D0 + 2 * H, D0 + 15 * H, H))]
        for ts, kind, symbol, payload in [*rows, *after]:
            j.emit(kind, ts_ms=ts, payload=payload, symbol=symbol)
    r = await asyncio.to_thread(load_report, path, DAY)
    assert dict(r.state_shares) == pytest.approx(shares)


async def test_daily_reporter_sends_yesterday_at_midnight(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    await _journal(path)
    sent: list[Notification] = []
    slept: list[float] = []

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 1:
            raise Stop

    reporter = DailyReporter(path, sent.append, clusters=CLUSTERS, clock=lambda: (D1 - 60_000) / 1000, sleep=sleep)
    with pytest.raises(Stop):
        await reporter.run()
    assert slept[0] == 65.0  # a minute to midnight, plus 5 s for the writer to flush
    assert [n.title for n in sent] == ["Daily report 2026-11-24 UTC"]


async def test_a_missing_journal_costs_the_report_not_the_engine(tmp_path: Path) -> None:
    sent: list[Notification] = []
    assert await DailyReporter(tmp_path / "none.sqlite", sent.append).send_for(DAY) is None
    assert sent == []


# -- the command --------------------------------------------------------------------------------


def test_hotcoin_report_command(tmp_path: Path) -> None:
    import orjson
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    path = tmp_path / "journal.sqlite"
    asyncio.run(_journal(path))
    runner = CliRunner()
    shown = runner.invoke(app, ["report", "--date", "2026-11-24", "--journal", str(path)], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert "Daily report 2026-11-24 UTC" in shown.output
    assert "+3.50" in shown.output
    as_json = runner.invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), "--json"])
    doc = orjson.loads(as_json.output)
    assert (doc["day"], doc["trades"], doc["win_rate"]) == ("2026-11-24", 2, 0.5)
    nothing = runner.invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), "--send"])
    assert "no notification channel configured" in nothing.output
    bad = runner.invoke(app, ["report", "--date", "24/11/2026", "-j", str(path)], env={"COLUMNS": "200"})
    assert bad.exit_code == 2
    assert "use YYYY-MM-DD, today or yesterday" in bad.output
    missing = runner.invoke(app, ["report", "-j", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2
    # a day that has not started was a report "(so far)" of nothing
    for future in ("2999-06-01", "9999-12-31"):
        ahead = runner.invoke(app, ["report", "-d", future, "-j", str(path), "--json"], env={"COLUMNS": "200"})
        assert ahead.exit_code == 2 and f"{future} UTC has not started" in ahead.output and "so far" not in ahead.output


def _sold_across_midnight(path: Path) -> None:
    """WIN sold +1.20 before midnight and +2.52 after (its close the dust write-off); LOSE sold
    +2.00 before and -0.50 after; DOGE traded within the day for +1.00."""
    def upd(at: int, symbol: str, action: str, pnl: float, total: float, reason: str) -> tuple[int, str, str, dict[str, Any]]:
        extra = {"reason": reason, "position_trace_id": symbol[:4].lower(), "total_realised_pnl": total}
        return (at, "position_update", symbol, pos(action, 0 if action == "close" else 10, 1.0, pnl, **extra))

    rows = [
        upd(D0 - 30 * 60_000, "WIN/USDT", "open", 0.0, 0.0, "entry"),
        upd(D0 - 30 * 60_000, "LOSE/USDT", "open", 0.0, 0.0, "entry"),
        upd(D0 - 20 * 60_000, "WIN/USDT", "partial_close", 1.20, 1.20, "take_profit"),
        upd(D0 - 10 * 60_000, "LOSE/USDT", "partial_close", 2.00, 2.00, "take_profit"),
        upd(D0 + 60_000, "WIN/USDT", "partial_close", 2.52, 3.72, "take_profit"),
        upd(D0 + 60_000, "WIN/USDT", "close", 0.0, 3.72, "dust"),
        upd(D0 + 5 * 60_000, "LOSE/USDT", "close", -0.50, 1.50, "stop"),
        upd(D0 + H, "DOGE/USDT", "open", 0.0, 0.0, "entry"),
        upd(D0 + 2 * H, "DOGE/USDT", "close", 1.00, 1.00, "take_profit"),
    ]

    async def write() -> None:
        async with Journal.open(path) as j:
            for ts, kind, symbol, payload in rows:
                j.emit(kind, ts_ms=ts, payload=payload, symbol=symbol)

    asyncio.run(write())


def test_a_position_sold_across_midnight_counts_the_days_share(tmp_path: Path) -> None:
    """Audit: WIN, sold +1.20 before midnight and +2.52 after, was the closing day's best at
    +3.72 while the day's PnL had +2.52 of it: the +1.20 counted on both days, and LOSE (-0.50
    that day, +1.50 in all) counted as a win. Best, worst and wins go by the day's share, with
    the position's total beside it, in the text, the terminal and --json."""
    import orjson
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    path = tmp_path / "journal.sqlite"
    _sold_across_midnight(path)
    r = load_report(path, DAY, clusters=CLUSTERS)
    assert (r.trades, r.wins, r.realised_pnl) == (3, 2, pytest.approx(3.02))
    assert r.best is not None and (r.best.symbol, r.best.pnl, r.best.total_pnl, r.best.reason) == (
        "WIN/USDT", pytest.approx(2.52), 3.72, "take_profit"
    )
    assert r.worst is not None and (r.worst.symbol, r.worst.pnl, r.worst.total_pnl) == ("LOSE/USDT", -0.50, 1.50)
    lines = render_text(r).splitlines()
    assert lines[1] == "PnL +3.02 (fees 0.00) · 3 trade(s) · win rate 67% (2/3)"
    assert lines[2] == "best WIN/USDT +2.52 today, +3.72 in all · worst LOSE/USDT -0.50 today, +1.50 in all"
    doge = build_report(DAY, [ev for ev in load_events(path) if ev.symbol == "DOGE/USDT"])
    assert render_text(doge).splitlines()[2] == "best DOGE/USDT +1.00 · worst DOGE/USDT +1.00"  # no total where it is the same

    runner = CliRunner()
    shown = runner.invoke(app, ["report", "-d", "2026-11-24", "-j", str(path)], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert "WIN/USDT +2.52 today, +3.72 in all" in shown.output and "67% (2/3)" in shown.output
    doc = orjson.loads(runner.invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), "--json"]).output)
    assert (doc["wins"], doc["best"]["symbol"], doc["best"]["pnl"], doc["best"]["total_pnl"]) == (2, "WIN/USDT", pytest.approx(2.52), 3.72)
    assert (doc["worst"]["pnl"], doc["worst"]["total_pnl"]) == (-0.50, 1.50)


def load_events(path: Path) -> list[JournalEvent]:
    from engine.journal.reader import JournalReader

    with JournalReader(path) as reader:
        return list(reader.events(since_ms=D0, until_ms=D1))


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`report --send` logs its deliveries (configure_logging rewires the root logger): put
    back what pytest had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_hotcoin_report_send_goes_to_the_channels(tmp_path: Path) -> None:
    result, texts = _report_to_telegram(tmp_path, "--send")
    assert result.exit_code == 0, result.output
    assert "sent to telegram" in result.output
    assert texts[0].startswith("Daily report 2026-11-24 UTC\nPnL +3.50")


def _report_to_telegram(tmp_path: Path, *args: str) -> tuple[Any, list[str]]:
    """`hotcoin report` for the test journal's day with Telegram pointed at a local sink: the
    CLI's result and the texts the sink received."""
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    path = tmp_path / "journal.sqlite"
    asyncio.run(_journal(path))
    sink = HttpSinkThread()
    with sink:
        env = {
            "HOTCOIN_NOTIFY__TELEGRAM__BOT_TOKEN": "1:tok",
            "HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": "9",
            "HOTCOIN_NOTIFY__TELEGRAM__BASE_URL": sink.base_url,
        }
        result = CliRunner().invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), *args], env=env)
    return result, sink.texts


@pytest.mark.usefixtures("root_logging")
def test_hotcoin_report_send_with_no_channel_exits_1(tmp_path: Path) -> None:
    """Audit: `report --send` with no channel configured said "nothing sent" and exited 0, so a
    cron job sending the report looked fine forever while none ever left the box."""
    import orjson
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    path = tmp_path / "journal.sqlite"
    asyncio.run(_journal(path))
    result = CliRunner().invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), "--send"])
    assert result.exit_code == 1, result.output
    assert "no notification channel configured (notify.telegram / notify.feishu); nothing sent" in result.stderr
    assert "Daily report 2026-11-24 UTC" in result.stdout  # the report itself is still shown
    as_json = CliRunner().invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), "--send", "--json"])
    assert as_json.exit_code == 1, as_json.output
    doc = orjson.loads(as_json.stdout)
    assert doc["send"] == {"delivered": False, "channels": []}
    assert doc["trades"] == 2


@pytest.mark.usefixtures("root_logging")
def test_hotcoin_report_send_json_names_each_channel_and_whether_it_was_delivered(tmp_path: Path) -> None:
    import orjson

    result, _ = _report_to_telegram(tmp_path, "--send", "--json")
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert doc["send"] == {"delivered": True, "channels": [{"channel": "telegram", "attempts": 1, "error": None}]}


@pytest.mark.usefixtures("root_logging")
def test_hotcoin_report_send_waits_out_the_retry_schedule(tmp_path: Path) -> None:
    """It gave up after 5 s: a channel that answered the retry 5.5 s later was reported
    "sent to no channel; failed: telegram (see the log)", with exit code 0 and nothing logged."""
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    path = tmp_path / "journal.sqlite"
    asyncio.run(_journal(path))
    sink = HttpSinkThread()
    sink.fail(500, times=1)
    with sink:
        env = {
            "HOTCOIN_NOTIFY__TELEGRAM__BOT_TOKEN": "1:tok",
            "HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": "9",
            "HOTCOIN_NOTIFY__TELEGRAM__BASE_URL": sink.base_url,
            "HOTCOIN_NOTIFY__BACKOFF_S": "5.5",
        }
        result = CliRunner().invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), "--send"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("sent to telegram")
    assert len(sink.texts) == 2 and sink.texts[1].startswith("Daily report 2026-11-24 UTC")


@pytest.mark.usefixtures("root_logging")
def test_hotcoin_report_send_names_each_channel_it_failed_and_exits_1(tmp_path: Path) -> None:
    """Every channel failing still exited 0, naming the channels but not why."""
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    path = tmp_path / "journal.sqlite"
    asyncio.run(_journal(path))
    sink = HttpSinkThread()
    sink.fail(400, times=1, description="Bad Request: chat not found")
    with sink:
        env = {
            "HOTCOIN_NOTIFY__TELEGRAM__BOT_TOKEN": "1:tok",
            "HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": "9",
            "HOTCOIN_NOTIFY__TELEGRAM__BASE_URL": sink.base_url,
            "HOTCOIN_NOTIFY__FEISHU__WEBHOOK_URL": f"{sink.base_url}/open-apis/bot/v2/hook/abc",
        }
        result = CliRunner().invoke(app, ["report", "-d", "2026-11-24", "-j", str(path), "--send"], env=env)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()[-3:]
    assert lines == [
        "sent to feishu",
        "NOT sent to telegram (1 attempt): telegram sendMessage: HTTP 400 Bad Request: chat not found",
        "fix the channel, then send it again: hotcoin report --send --date 2026-11-24",
    ]


def test_report_send_waits_as_long_as_a_message_can_be_retried() -> None:
    settings = DispatchSettings(max_retries=4, backoff_s=1.0, max_backoff_s=120.0)
    assert longest_delivery_s(settings, timeout_s=10.0) == 5 * 10.0 + 4 * 120.0 + 1.0
    assert longest_delivery_s(DispatchSettings(max_retries=0), timeout_s=3.0) == 4.0


async def test_report_send_outcomes_name_the_last_error_of_each_channel() -> None:
    down, flaky = FakeNotifier("telegram"), FakeNotifier("feishu")
    down.fail_next(DeliveryError("telegram sendMessage: HTTP 403 Forbidden", retryable=False))
    flaky.fail_next(DeliveryError("feishu webhook: HTTP 500", retryable=True), times=2)
    settings = DispatchSettings(max_retries=2, backoff_s=0.01)
    outcomes = await deliver([down, flaky], settings, Notification("t", "x"), within_s=5)
    assert outcomes == [Outcome("telegram", 1, "telegram sendMessage: HTTP 403 Forbidden"), Outcome("feishu", 3, None)]
    assert down.closed and flaky.closed


async def test_an_interrupted_report_send_stops_retrying_and_closes_the_channels() -> None:
    """Ctrl-C in a long retry left the workers running and the HTTP sessions unclosed."""
    down = FakeNotifier("telegram")
    down.fail_next(DeliveryError("telegram sendMessage: HTTP 500", retryable=True), times=9)
    sending = asyncio.create_task(deliver([down], DispatchSettings(backoff_s=60), Notification("t", "x"), within_s=600))
    await eventually(lambda: down.attempts == 1)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert down.closed and down.attempts == 1


class HttpSinkThread:
    """A Bot API (and Feishu webhook) stand-in on a thread, for commands that run their own
    event loop. `fail(status, times)` makes the next requests to one channel answer an error."""

    def __init__(self) -> None:
        import http.server
        import threading

        import orjson

        sink = self
        self.texts: list[str] = []
        self._script: dict[str, list[tuple[int, bytes]]] = {"telegram": [], "feishu": []}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body.get("text", body.get("content", {}).get("text"))
                sink.texts.append(str(text))
                script = sink._script["feishu" if self.path.startswith("/open-apis/") else "telegram"]
                status, reply = script.pop(0) if script else (200, b'{"ok": true, "result": {}, "code": 0}')
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, status: int, times: int = 1, description: str = "", channel: str = "telegram") -> None:
        import orjson

        reply = orjson.dumps({"ok": False, "error_code": status, "description": description or f"error {status}"})
        self._script[channel].extend([(status, reply)] * times)

    def __enter__(self) -> HttpSinkThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
