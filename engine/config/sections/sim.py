"""The simulated market: what it generates (or replays) and how the sim exchange serves it."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from engine.config.sections.base import AssetCode, Section, UserPath

MINUTE_MS = 60_000


class SimSection(Section):
    seed: int = Field(
        7, ge=0, description="Seed of the generator: the same seed always gives the same market."
    )
    symbols: int = Field(
        300,
        ge=1,
        le=2000,
        description="Symbols trading when the simulation starts (BTC, ETH, BNB, stablecoins and "
        "leveraged tokens first, then generated alt coins); listings add more as they come.",
    )
    quote_asset: AssetCode = Field(
        "USDT",
        min_length=2,
        description="Quote asset of the markets `hotcoin sim-exchange` serves. The in-process market of "
        "`hotcoin run --demo` and `hotcoin backtest` is quoted in exchange.quote_asset, the asset discovery trades.",
    )
    step_ms: int = Field(
        1000,
        ge=100,
        le=MINUTE_MS,
        description="Length of one simulation sub-step; must divide a minute (1m candles are built from them).",
    )
    pumps_per_day: float = Field(
        24.0, ge=0, le=1000, description="Scheduled pumps per simulated day, market-wide."
    )
    pump_size_min: float = Field(
        0.3, gt=0, le=20, description="Smallest pump, as peak/start - 1 (0.3 = +30%)."
    )
    pump_size_max: float = Field(1.2, gt=0, le=20, description="Largest pump, as peak/start - 1.")
    pump_minutes_min: int = Field(
        10, ge=1, le=600, description="Shortest ramp from pump start to peak, minutes."
    )
    pump_minutes_max: int = Field(
        60, ge=1, le=600, description="Longest ramp from pump start to peak, minutes."
    )
    pump_volume_surge_min: float = Field(
        5.0,
        ge=1,
        description="Smallest volume multiple at a pump's peak (the surge starts just before the move).",
    )
    pump_volume_surge_max: float = Field(
        30.0, ge=1, description="Largest volume multiple at a pump's peak."
    )
    dumps_per_day: float = Field(
        6.0, ge=0, le=1000, description="Scheduled dumps per simulated day, market-wide."
    )
    dump_size_min: float = Field(
        0.15, gt=0, lt=1, description="Smallest dump, as a fall from start (0.15 = -15%)."
    )
    dump_size_max: float = Field(0.5, gt=0, lt=1, description="Largest dump, as a fall from start.")
    listings_per_day: float = Field(
        4.0,
        ge=0,
        le=100,
        description="New listings per simulated day; each appears mid-run at a whole hour.",
    )
    listing_wick_max: float = Field(
        10.0,
        ge=1,
        le=1000,
        description="Largest high of a listing's first candle as a multiple of its open (TKO opened at "
        "0.10 and printed 10.00 in its first minute).",
    )
    history_minutes: int = Field(
        1440,
        ge=0,
        description="Warm-up 1m candles generated before the start time, so klines have history and "
        "the rolling 24 h stats are defined from the first tick.",
    )
    candle_ring_minutes: int = Field(
        1500,
        ge=1441,
        le=20_000,
        description="1m candles kept per symbol (a ring buffer: memory stays flat however long the run); "
        "at least a day and a minute, since the rolling 24 h stats are read from it.",
    )
    start_balance_usdt: float = Field(
        10_000.0,
        gt=0,
        description="Quote balance each new account of the simulated exchange starts with.",
    )
    speed: float = Field(
        1.0,
        ge=1,
        le=1000,
        description="Sim seconds per wall second when the server runs the market live.",
    )
    data_dir: UserPath | None = Field(
        None,
        description="Directory of real 1m candles ({BASE}_{QUOTE}-1m.parquet) to replay instead of "
        "generating a market; None generates one from the seed.",
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        if MINUTE_MS % self.step_ms:
            raise ValueError(
                f"step_ms={self.step_ms} must divide 60000 (e.g. 100, 250, 500, 1000, 5000, 60000)"
            )
        for low, high in (
            ("pump_size_min", "pump_size_max"),
            ("pump_minutes_min", "pump_minutes_max"),
            ("pump_volume_surge_min", "pump_volume_surge_max"),
            ("dump_size_min", "dump_size_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low}={getattr(self, low)} exceeds {high}={getattr(self, high)}; swap or widen them"
                )
        if self.history_minutes > self.candle_ring_minutes:
            raise ValueError(
                f"history_minutes={self.history_minutes} exceeds candle_ring_minutes={self.candle_ring_minutes}; "
                "raise the ring or shorten the warm-up"
            )
        return self
