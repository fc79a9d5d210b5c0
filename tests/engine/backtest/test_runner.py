"""The runner end to end on the small store: trades the pumps, books consistently, goes
stale through the outage, refuses windows and timeframes it cannot replay."""

from __future__ import annotations

import asyncio
import itertools
import operator
from pathlib import Path

import pytest

from engine.backtest.api import metrics_of
from engine.backtest.runner import (
    MINUTE_MS,
    PROGRESS_EVERY,
    BacktestResult,
    BacktestRunner,
    ReplayProgress,
    _TradeLog,
    utc_minute,
)
from engine.config import HotcoinConfig
from engine.domain import Fill, Side
from engine.errors import ConfigError
from engine.journal.checks import ZERO_IS_NO_LIMIT, op_of
from tests.engine.backtest.conftest import GAP, LISTING_AT, PUMPS, START, T0, minute_config
from tests.kit.events import RecordingSink


@pytest.fixture(scope="module")
def run(config: HotcoinConfig, store: Path) -> tuple[BacktestResult, RecordingSink]:
    sink = RecordingSink()
    result = asyncio.run(BacktestRunner(config, store, sink, run_id="bt").run(START, None))
    return result, sink


def test_trades_the_pumps_it_could_see(run: tuple[BacktestResult, RecordingSink]) -> None:
    result, _ = run
    traded = {t.symbol for t in result.trades}
    assert {"PUMP/USDT", "ALT/USDT"} <= traded
    for t in result.trades:
        pump = T0 + PUMPS[t.symbol] * MINUTE_MS
        assert pump < t.opened_ms < t.closed_ms < pump + 60 * MINUTE_MS


def test_books_add_up(run: tuple[BacktestResult, RecordingSink]) -> None:
    result, _ = run
    assert not result.open_positions
    assert result.final_equity == pytest.approx(result.initial_equity + sum(t.pnl for t in result.trades))
    fees = sum(f.fee_quote for f in result.fills)
    assert fees == pytest.approx(sum(t.fees for t in result.trades))
    m = metrics_of(result)
    assert m.trades == len(result.trades)
    assert m.total_return == pytest.approx(result.final_equity / result.initial_equity - 1)
    # the batch at START is the warm-up's last (as in the runtime); trading cycles follow it
    assert result.cycles == len(result.equity) == (result.end_ms - START) // MINUTE_MS
    assert result.equity_ts[0] == START + MINUTE_MS and result.equity_ts[-1] == result.end_ms


def test_progress_is_reported_through_the_replay_and_changes_nothing(
    config: HotcoinConfig, store: Path, run: tuple[BacktestResult, RecordingSink]
) -> None:
    reports: list[ReplayProgress] = []
    result = asyncio.run(BacktestRunner(config, store, RecordingSink(), run_id="bt").run(START, None, progress=reports.append))
    assert result.trades == run[0].trades and result.events == run[0].events
    assert [p.cycles for p in reports[:-1]] == [1, *range(PROGRESS_EVERY, result.cycles, PROGRESS_EVERY)]
    first, last = reports[0], reports[-1]
    assert first.fraction < 0.01 and last.fraction == 1.0
    assert (last.now_ms, last.start_ms, last.end_ms, last.cycles) == (result.end_ms, result.start_ms, result.end_ms, result.cycles)
    assert last.trades == len(result.trades)
    assert all(a.now_ms < b.now_ms and a.trades <= b.trades for a, b in itertools.pairwise(reports))


def test_journal_off_decides_the_same_without_building_payloads(
    config: HotcoinConfig, store: Path, run: tuple[BacktestResult, RecordingSink]
) -> None:
    """With no journal the snapshots are emitted empty (NullSink keeps nothing): the same
    trades, the same number of events, the same state changes as the journaled run."""
    journaled, sink = run
    quiet = asyncio.run(BacktestRunner(config, store, run_id="bt").run(START, None))
    assert quiet.trades == journaled.trades and quiet.fills == journaled.fills
    assert quiet.events == journaled.events == len(sink.events)
    assert quiet.stats == journaled.stats
    assert quiet.stats["state_changes"] == sum(e.kind == "state_change" for e in sink.events) == 3


def test_outage_degrades_and_blocks_then_recovers(run: tuple[BacktestResult, RecordingSink]) -> None:
    _, sink = run
    changes = [(e.ts_ms, e.payload["to"]) for e in sink.events if e.kind == "state_change"]
    assert [to for _, to in changes] == ["degraded", "blocked", "tradeable"]
    assert T0 + GAP[0] * MINUTE_MS < changes[0][0] < T0 + GAP[1] * MINUTE_MS


def test_replay_timeframe_must_be_1m(store: Path) -> None:
    with pytest.raises(ConfigError, match="1m"):
        BacktestRunner(minute_config(backtest={"timeframe": "5m"}), store)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (T0 - MINUTE_MS, None, r"--from \d{4}-\d\d-\d\d \d\d:\d\d UTC is before the first candle"),
        (START, START - MINUTE_MS, r"window is empty: .* UTC \(the data spans .* UTC .. .* UTC\)"),
        (
            T0 + (GAP[0] + 2) * MINUTE_MS, T0 + (GAP[1] - 2) * MINUTE_MS,
            rf"the window .* holds no candle: it lies inside an outage of the data \(no pair has a candle from "
            rf"{utc_minute(T0 + GAP[0] * MINUTE_MS)} to {utc_minute(T0 + GAP[1] * MINUTE_MS)}\), so there is nothing "
            "to replay; choose a window with candles in it",
        ),
    ],
    ids=["before-data", "empty", "inside-an-outage"],
)
def test_bad_windows_say_what_to_change(config: HotcoinConfig, store: Path, start: int, end: int | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        asyncio.run(BacktestRunner(config, store).run(start, end))


def test_a_start_inside_the_warm_up_says_so(config: HotcoinConfig, store: Path, run: tuple[BacktestResult, RecordingSink]) -> None:
    """A --from at the first candle runs, and says its first hour decided on part-empty windows."""
    assert not any(w.startswith("warm-up") for w in run[0].warnings)  # START leaves the whole warm-up
    result = asyncio.run(BacktestRunner(config, store).run(T0, T0 + 10 * MINUTE_MS))
    (warning,) = result.warnings
    warm = config.backtest.warmup_minutes
    assert warning.startswith(f"warm-up: 0 of {warm} minutes before --from")
    assert f"Start at {utc_minute(T0 + warm * MINUTE_MS)} or later" in warning


@pytest.mark.parametrize("start", [T0, START], ids=["at-the-first-candle", "after-the-warm-up"])
def test_n_minutes_are_n_cycles_wherever_the_window_starts(config: HotcoinConfig, store: Path, start: int) -> None:
    """A window at the store's first minute had one cycle more than any other, at --from itself,
    before a candle of the window had closed: 61 cycles for an hour."""
    result = asyncio.run(BacktestRunner(config, store).run(start, start + 60 * MINUTE_MS))
    assert result.cycles == len(result.equity) == 60
    assert (result.equity_ts[0], result.equity_ts[-1]) == (start + MINUTE_MS, start + 60 * MINUTE_MS)


def test_the_store_s_surprises_are_warnings(config: HotcoinConfig, store: Path, run: tuple[BacktestResult, RecordingSink]) -> None:
    """A file starting late is read as a listing and a regime pair with no candles switches the
    btc_* features off, and a --to past the data is cut short: each changed the run, and
    `--json` said nothing of it (the regime pair only reached the log)."""
    outage, listing = run[0].warnings
    assert outage.startswith("outages: no pair has a candle from")
    assert listing.startswith(f"listings: NEW/USDT at {utc_minute(T0 + LISTING_AT * MINUTE_MS)} start trading")
    assert "collected over a shorter span" in listing
    cfg = minute_config(trading={"signals": {"regime_symbol": "XRP/USDT"}})
    far = T0 + 10 * 1440 * MINUTE_MS
    result = asyncio.run(BacktestRunner(cfg, store).run(START + 300 * MINUTE_MS, far))
    assert result.warnings == (
        "regime pair XRP/USDT has no candles in the store: the btc_* features are unknown (NaN) for the whole run",
        f"--to is after the data: the run ends at the last candle's close, {utc_minute(result.end_ms)}",
    )


def test_an_outage_in_the_window_is_a_warning(run: tuple[BacktestResult, RecordingSink]) -> None:
    """Twelve minutes without a candle for any pair, inside the window: no warning said so, and
    the hours of a longer outage read like a quiet market in the report."""
    outage = next(w for w in run[0].warnings if w.startswith("outages"))
    down, back = T0 + GAP[0] * MINUTE_MS, T0 + GAP[1] * MINUTE_MS
    assert outage.startswith(f"outages: no pair has a candle from {utc_minute(down)} to {utc_minute(back)} (12m): prices hold")
    assert "an exchange that was down, not a quiet market" in outage


def _fill(side: Side, price: float, qty: float, fee: float) -> Fill:
    return Fill(f"t{price}{qty}", "c", "X/USDT", side, price, qty, fee, T0, "tr")


def test_round_trips_from_partial_exits_and_dust() -> None:
    log = _TradeLog()
    log.add(_fill(Side.BUY, 1.0, 10.0, 0.01), "entry")
    log.add(_fill(Side.SELL, 1.1, 5.0, 0.0055), "take_profit")
    log.add(_fill(Side.SELL, 1.3, 5.0, 0.0065), "take_profit")
    log.close("X/USDT", "tr", 1.978, T0, T0 + MINUTE_MS)
    log.add(_fill(Side.BUY, 2.0, 1.0, 0.002), "entry")
    log.close("X/USDT", "tr2", -2.002, T0, T0 + 2 * MINUTE_MS)  # written off: no sell at all
    first, dust = log.closed
    assert (first.quantity, first.entry_price) == (10.0, 1.0)
    assert first.exit_price == pytest.approx(1.2)
    assert first.fees == pytest.approx(0.022) and first.exit_reason == "take_profit"
    assert (dust.quantity, dust.exit_price, dust.exit_reason) == (1.0, 0.0, "dust")
    assert not log.open


_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def test_every_journaled_check_reads_the_way_it_was_decided(run: tuple[BacktestResult, RecordingSink]) -> None:
    """A replay shows each check as the condition it needs (`engine.journal.checks`); on a
    real run's journal that condition, taken at its word, says what the check decided (a
    direction the wrong way round would read `50.06 ≥ 100 ✔`)."""
    _, sink = run
    fields = {"candidate_snapshot": "filters", "signal_snapshot": "rules", "risk_check": "checks"}
    seen: set[str] = set()
    compared = 0
    for e in sink.events:
        for raw in e.payload.get(fields.get(e.kind, ""), ()):
            op = op_of(raw["name"])
            assert op is not None, raw
            seen.add(raw["name"])
            value, limit = _as_number(raw["value"]), _as_number(raw["threshold"])
            if op not in _COMPARE or value is None or limit is None or (raw["name"] in ZERO_IS_NO_LIMIT and limit <= 0):
                continue
            compared += 1
            assert _COMPARE[op](value, limit) == raw["passed"], (e.kind, raw)
    assert {"heat", "cash", "max_concurrent", "precheck:balance", "stop_loss"} <= seen and compared > 1000


def _as_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None
