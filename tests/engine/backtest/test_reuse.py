"""Discovery and the market recorded by one run and replayed to the next: the trading outcome
is that of a fresh run, whatever the trading settings; any other change records afresh."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.backtest.feed import CandleSlicer
from engine.backtest.history import HistoryStore, index_history
from engine.backtest.optimize import apply
from engine.backtest.reuse import WindowReuse
from engine.backtest.runner import BacktestResult, BacktestRunner
from engine.config import HotcoinConfig
from engine.discovery.pipeline import Discovery
from engine.errors import ConfigError
from engine.sim.parquet_source import ParquetMarket
from tests.engine.backtest.conftest import START, T0, minute_config
from tests.kit.events import RecordingSink

LOOSE = {
    "min_heat": 40.0, "max_hold_min": 60, "tp1_gain": 0.02, "tp1_fraction": 0.5, "tp2_extra": 0.04,
    "stop_loss": 0.03, "trailing_stop": 0.01, "exit_fade_ret_5": -0.02, "exit_upper_wick": 0.6,
}  # fmt: skip
STRICT = {**LOOSE, "min_heat": 70.0, "max_hold_min": 240, "tp1_fraction": 1.0, "stop_loss": 0.08, "exit_fade_ret_5": -0.06}


def run(config: HotcoinConfig, store: Path, reuse: WindowReuse | None, end: int | None = None) -> BacktestResult:
    return asyncio.run(BacktestRunner(config, store, run_id="fold-1", reuse=reuse).run(START, end))


def outcome(r: BacktestResult) -> tuple[object, ...]:
    return (r.trades, r.fills, r.open_positions, r.cycles, r.stats["state_changes"], r.equity_ts.tolist())


@pytest.mark.parametrize("params", [LOOSE, STRICT], ids=["loose", "strict"])
def test_a_replayed_discovery_trades_as_a_fresh_run(config: HotcoinConfig, store: Path, params: dict[str, float]) -> None:
    reuse = WindowReuse()
    run(config, store, reuse)  # records discovery, and the features it asked for
    assert reuse.replays == 0 and reuse.features
    cfg = apply(config, params)
    fresh = run(cfg, store, None)
    built = ParquetMarket.__init__
    with pytest.MonkeyPatch.context() as mp:  # the replayed run must not build a market at all
        mp.setattr(ParquetMarket, "__init__", lambda *a, **k: pytest.fail("a replayed run built the market"))
        replayed = run(cfg, store, reuse)
    assert ParquetMarket.__init__ is built
    assert reuse.replays == reuse.market_replays == 1
    assert fresh.trades, "the window should trade, or this proves little"
    assert outcome(replayed) == outcome(fresh)
    assert np.array_equal(replayed.equity, fresh.equity) and np.array_equal(replayed.exposure, fresh.exposure)
    assert replayed.events < fresh.events  # the replay journals no candidate snapshots


def test_anything_but_trading_settings_records_afresh(config: HotcoinConfig, store: Path) -> None:
    reuse = WindowReuse()
    end = T0 + (1440 + 150) * 60_000
    run(config, store, reuse, end)
    other_pool = minute_config(
        discovery={**config.discovery.model_dump(), "pool": {**config.discovery.pool.model_dump(), "min_heat": 55.0}}
    )
    run(other_pool, store, reuse, end)  # another discovery setting
    run(other_pool, store, reuse, end + 60_000)  # another window
    assert reuse.replays == 0
    run(other_pool, store, reuse, end + 60_000)
    assert reuse.replays == 1
    grown = [WindowReuse.key(config, store, rows, START, end, "fold-1") for rows in (1000, 1001)]
    assert grown[0] != grown[1]  # candles appended to the store meanwhile: record again


def test_an_unfinished_recording_is_not_replayed_and_a_journal_refuses_one(config: HotcoinConfig, store: Path) -> None:
    reuse = WindowReuse()
    end = T0 + (1440 + 120) * 60_000
    key = WindowReuse.key(config, store, index_history(store).rows, START, end, "fold-1")
    reuse.stage(key, lambda: Discovery(config.discovery), journaled=False)  # a run that never finished
    reuse.stage(key, lambda: Discovery(config.discovery), journaled=False)
    assert reuse.replays == 0
    run(config, store, reuse, end)
    with pytest.raises(ConfigError, match="journal a fresh run"):
        asyncio.run(BacktestRunner(config, store, RecordingSink(), run_id="fold-1", reuse=reuse).run(START, end))
    assert reuse.replays == 0


def test_signals_on_longer_bars_replay_discovery_but_read_a_fresh_market(config: HotcoinConfig, store: Path) -> None:
    """3m signals build their bars from the market's rings, which a recorded market does not
    have: such a run replays discovery only, and still trades as a fresh run."""
    three = minute_config(
        discovery=config.discovery.model_dump(),
        trading={**config.trading.model_dump(), "signals": {**config.trading.signals.model_dump(), "timeframe": "3m"}},
    )
    reuse = WindowReuse()
    run(three, store, reuse)
    replayed = run(three, store, reuse)
    assert (reuse.replays, reuse.market_replays) == (1, 0)
    assert outcome(replayed) == outcome(run(three, store, None))


def test_a_replayed_market_serves_the_recorded_batches_and_refuses_to_go_past_them(
    config: HotcoinConfig, store: Path
) -> None:
    reuse = WindowReuse()
    end = T0 + (1440 + 120) * 60_000
    run(config, store, reuse, end)
    index = index_history(store)
    key = WindowReuse.key(config, store, index.rows, START, end, "fold-1")
    reuse.stage(key, lambda: pytest.fail("a complete recording is replayed"), journaled=False)
    slicer = CandleSlicer(index, HistoryStore(store), T0, 1500)
    feed = reuse.feed(key, lambda: pytest.fail("the recorded market is replayed"), slicer, sliced=True)

    async def read() -> list[int]:
        times: list[int] = []
        async for batch in feed.warmup(60_000):
            times.append(batch.ts_ms)
            if len(times) == 1:  # the recording run refreshed its markets at its first warm-up batch
                assert "BTC/USDT" in await feed.markets()
                with pytest.raises(RuntimeError, match="diverged"):
                    await feed.markets()  # it made no second refresh at that time
        for _ in range((end - START) // 60_000):  # a batch a minute after the warm-up's last, at the start
            times.append((await feed.next_batch()).ts_ms)
        with pytest.raises(RuntimeError, match="past the recorded window"):
            await feed.next_batch()
        return times

    times = asyncio.run(read())
    assert times == sorted(times) and times[-1] == end and len(set(times)) == len(times)
