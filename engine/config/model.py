"""The whole configuration: one frozen model composed of per-subsystem sections."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, Self, cast

import orjson
from pydantic import Field, SecretStr, model_validator

from engine.config.sections.backtest import BacktestSection
from engine.config.sections.base import Section
from engine.config.sections.discovery import DiscoverySection
from engine.config.sections.exchange import ExchangeSection
from engine.config.sections.gpu import GpuProfile
from engine.config.sections.journal import JournalSection
from engine.config.sections.ml import MlSection
from engine.config.sections.notify import NotifySection
from engine.config.sections.ops import OpsSection
from engine.config.sections.paths import PathsSection
from engine.config.sections.sim import SimSection
from engine.config.sections.state import StateSection
from engine.config.sections.trading import TradingSection
from engine.config.sections.tui import TuiSection

# Dotted paths of every secret field: accepted only from the secrets file or the environment,
# never from the main config file or the command line (where they would land in shell history).
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "exchange.api_key",
        "exchange.api_secret",
        "discovery.social.x_bearer_token",
        "discovery.social.webhook_token",
        "notify.telegram.bot_token",
        "notify.feishu.webhook_url",
        "notify.feishu.secret",
    }
)


class HotcoinConfig(Section):
    mode: Literal["paper", "live"] = Field(
        "paper", description="`paper` simulates fills; `live` sends real orders, with --live --yes-really-trade-live "
        "(--live is refused without it; without --live a run warns and trades paper)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log verbosity.")
    paths: PathsSection = Field(default_factory=PathsSection)
    exchange: ExchangeSection = Field(default_factory=ExchangeSection)
    journal: JournalSection = Field(default_factory=JournalSection)
    state: StateSection = Field(default_factory=StateSection)
    trading: TradingSection = Field(default_factory=TradingSection)
    discovery: DiscoverySection = Field(default_factory=DiscoverySection)
    tui: TuiSection = Field(default_factory=TuiSection)
    sim: SimSection = Field(default_factory=SimSection)
    ops: OpsSection = Field(default_factory=OpsSection)
    ml: MlSection = Field(default_factory=MlSection)
    backtest: BacktestSection = Field(default_factory=BacktestSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    gpu: dict[str, GpuProfile] = Field(default_factory=dict, description="GPU training boxes, one [gpu.<profile>] table each.")

    @model_validator(mode="after")
    def _history_fits_the_ring(self) -> Self:
        """The backtest loads `initial_history_minutes` into rings of `sim.candle_ring_minutes`
        (the sim section's own check sees only its `history_minutes`): refused here, at load,
        rather than as a traceback once the replay has started."""
        history, ring = self.backtest.initial_history_minutes, self.sim.candle_ring_minutes
        if history > ring:
            raise ValueError(
                f"backtest.initial_history_minutes={history} exceeds sim.candle_ring_minutes={ring}, the 1m "
                "candles the replay market keeps per symbol; lower the first or raise the second (up to 20000)"
            )
        return self

    @property
    def sim_market(self) -> SimSection:
        """The in-process simulated market's settings (`hotcoin run --demo`, the backtest's replay
        market): quoted in `exchange.quote_asset`, the asset discovery trades, whatever
        `sim.quote_asset` says (that one is for `hotcoin sim-exchange`); a demo quoted in another
        asset never traded, every coin refused by the quote filter."""
        return self.sim.model_copy(update={"quote_asset": self.exchange.quote_asset})

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data with every secret shown as '***' (or None if unset)."""
        return cast(dict[str, Any], _redact(self.model_dump(mode="python")))

    def config_hash(self) -> str:
        """Short stable hash of the effective config without secrets: ties journal events to a config."""
        blob = orjson.dumps(self.redacted(), option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def journal_path(self) -> Path:
        return self.journal.path or (self.paths.data_dir / "journal.sqlite")


def _redact(value: object) -> object:
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value
