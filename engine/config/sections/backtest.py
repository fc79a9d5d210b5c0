"""Backtest, data collection and optimisation settings (`hotcoin backtest | collect | optimize`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config.sections.base import Section, UserPath


class BacktestSection(Section):
    data_dir: UserPath | None = Field(
        None,
        description="Directory of {BASE}_{QUOTE}-{tf}.parquet candle files (`hotcoin collect` writes them); "
        "`--data` overrides it.",
    )
    timeframe: str = Field(
        "1m", description="Candle files replayed; the replay market is minute-grained, so only 1m can be replayed."
    )
    warmup_minutes: int = Field(
        65,
        ge=0,
        le=1440,
        description="Minutes before --from fed to discovery (no trading) so its 60 min windows are full "
        "when trading starts, as `hotcoin run` does with the simulated market.",
    )
    discovery_process: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run discovery in a second process beside the trading core (the same decisions, "
        "about 1.5x faster on two cores): auto = for replays of 12 h or more where fork and two CPUs "
        "are available; off = one process (e.g. under a debugger), where a replay of 6 h or more "
        "still runs discovery ahead of the core in blocks.",
    )
    initial_history_minutes: int = Field(
        1440,
        ge=0,
        description="1m candles before the start loaded into the market's rings (klines, 24 h figures); "
        "only candles before the start, so nothing from the future leaks in.",
    )
    collect_days: int = Field(7, ge=1, le=365, description="`hotcoin collect`: days of candles to download.")
    collect_top: int = Field(
        30, ge=1, le=500, description="`hotcoin collect`: how many movers to download: the pairs with the widest range over the "
        "last --days x 24 h."
    )
    collect_page: int = Field(1000, ge=1, le=1000, description="Candles asked for per request (Binance allows 1000).")
    collect_max_backoff_s: float = Field(
        30.0,
        gt=0,
        description="Cap on the exponential backoff between retries (rate limits, 5xx, timeouts); the "
        "server's Retry-After (a 429's or a 418 ban's) is always waited out whole, however long.",
    )
    collect_retries: int = Field(
        8, ge=0, description="Retries per request (rate limits, 5xx, timeouts) before `collect` gives up."
    )
    optimize_trials: int = Field(40, ge=1, description="`hotcoin optimize`: trials per in-sample window.")
    optimize_jobs: int = Field(2, ge=1, le=64, description="Trials run in parallel processes.")
    optimize_folds: int = Field(2, ge=1, le=20, description="Walk-forward folds (in-sample then out-of-sample).")
    optimize_oos_fraction: float = Field(
        0.3, gt=0, lt=1, description="Share of each fold's window kept out of sample."
    )
