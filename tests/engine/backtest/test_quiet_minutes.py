"""Quiet minutes stepped at once (`TradingCycle.step_quiet`) against the same minutes stepped one
by one (`TradingCycle.step`): the same results minute for minute (the equity curve is one
figure a minute), and the same state left in every part a minute touches."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.backtest.api import run_backtest
from engine.backtest.runner import BacktestResult, BacktestRunner, ReplayProgress
from engine.config import HotcoinConfig
from engine.domain import TickerRun
from engine.runtime.cycle import TradingCycle
from tests.engine.backtest.conftest import START, T0, minute_config
from tests.engine.backtest.test_discovery_process import with_process

END = T0 + (1440 + 420) * 60_000  # through the outage, the listing and the pumps


class _Seen:
    """The cycles a run built, and how many minutes each way stepped."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, quiet: bool) -> None:
        self.cycles: list[TradingCycle] = []
        self.stepped = self.quiet = 0
        step, step_quiet = TradingCycle.step, TradingCycle.step_quiet

        async def counted_step(cycle: TradingCycle, batch: Any) -> Any:
            if not self.cycles or self.cycles[-1] is not cycle:
                self.cycles.append(cycle)
            self.stepped += 1
            return await step(cycle, batch)

        async def counted_quiet(cycle: TradingCycle, run: TickerRun, j: int, limit: int) -> int:
            n = await step_quiet(cycle, run, j, limit) if quiet else 0
            self.quiet += n
            return n

        monkeypatch.setattr(TradingCycle, "step", counted_step)
        monkeypatch.setattr(TradingCycle, "step_quiet", counted_quiet)


def _replay(
    config: HotcoinConfig, store: Path, start: int, end: int, quiet: bool, progress: list[ReplayProgress] | None = None
) -> tuple[BacktestResult, _Seen]:
    with pytest.MonkeyPatch.context() as mp:
        seen = _Seen(mp, quiet)
        runner = BacktestRunner(config, store, run_id="quiet")
        result = asyncio.run(runner.run(start, end, progress=None if progress is None else progress.append))
    return result, seen


def _state(cycle: TradingCycle) -> dict[str, Any]:
    """What a minute's `step` may leave behind, part by part."""
    core = cycle.core
    assert core is not None
    store = cycle._store
    signals = core.signals
    risk = core.risk
    return {
        "machine": (cycle.state.state, dict(cycle.state._runs), cycle.state.reasons),
        "sync": cycle._last_sync,
        "markets_at": cycle.driver._markets_at,
        "markets": sorted(cycle.markets),
        "risk": (risk.day, risk.start_equity, risk.drawdown, risk.level, risk.paused, risk.paused_at_ms),
        "ranks": (list(signals._ranks.items()), list(signals._prev_ranks.items())),
        "entries": (signals._entries._bar_ms, list(signals._entries._values.items())),
        "marks": sorted(store._marks.items()) if store is not None else None,  # type: ignore[attr-defined]
        "quotes": _batch(core._quotes.batch),
        "kinds": sorted(cycle.tap.kinds.items()),
        "last_signal": list(cycle.tap.last_signal.items()),
        "cash": core.cash,
    }


def _batch(batch: Any) -> tuple[Any, ...] | None:
    if batch is None:
        return None
    return (batch.ts_ms, tuple(batch.symbols), batch.bid.tolist(), batch.ask.tolist(), batch.last.tolist())


def _same(a: BacktestResult, b: BacktestResult) -> None:
    assert a.trades == b.trades
    assert a.fills == b.fills
    assert a.cycles == b.cycles
    assert a.events == b.events
    assert a.stats == b.stats
    assert a.open_positions == b.open_positions
    assert a.dust == b.dust
    np.testing.assert_array_equal(a.equity_ts, b.equity_ts)
    np.testing.assert_array_equal(a.equity, b.equity)  # minute for minute, to the bit
    np.testing.assert_array_equal(a.exposure, b.exposure)


@pytest.mark.parametrize("process", ["on", "off"])
def test_quiet_minutes_at_once_decide_as_minute_by_minute(store: Path, process: str) -> None:
    config = with_process(minute_config(), process)
    one, slow = _replay(config, store, START, END, quiet=False)
    many, fast = _replay(config, store, START, END, quiet=True)
    _same(many, one)
    assert _state(fast.cycles[-1]) == _state(slow.cycles[-1])
    # Trades made, and minutes stepped at once: in the child's pools of columns, cold ones too
    # (in this process, discovery's pools are candidates, and only empty ones are quiet).
    assert one.trades and fast.quiet > (many.cycles // 5 if process == "on" else 0)
    assert fast.stepped + fast.quiet == slow.stepped == one.cycles


def test_progress_is_reported_at_the_same_minutes(store: Path) -> None:
    config = with_process(minute_config(), "on")
    slow: list[ReplayProgress] = []
    fast: list[ReplayProgress] = []
    _replay(config, store, START, END, quiet=False, progress=slow)
    _, seen = _replay(config, store, START, END, quiet=True, progress=fast)
    assert fast == slow and len(slow) > 2 and seen.quiet


def test_a_journaled_run_steps_every_minute(store: Path, tmp_path: Path) -> None:
    """The journal reads each event: no minute is stepped at once (`Tap.counts_only`)."""
    with pytest.MonkeyPatch.context() as mp:
        seen = _Seen(mp, quiet=True)
        result, _ = asyncio.run(run_backtest(minute_config(), store, START, END, tmp_path / "j.sqlite", run_id="quiet"))
    assert seen.quiet == 0 and seen.stepped == result.cycles


def _ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)


def test_real_candles_over_days_listings_and_halts(shared_data: Path) -> None:
    config = HotcoinConfig()
    start, end = _ms("2021-04-09T20:00"), _ms("2021-04-12T02:00")  # two UTC day ends, real pumps
    one, slow = _replay(config, shared_data, start, end, quiet=False)
    many, fast = _replay(config, shared_data, start, end, quiet=True)
    _same(many, one)
    assert _state(fast.cycles[-1]) == _state(slow.cycles[-1])
    assert fast.quiet > many.cycles // 2
