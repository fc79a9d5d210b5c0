"""Real orders need an exchange, keys *and* an explicit confirmation: each missing piece is
refused with the fix, before anything starts."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from engine.config import HotcoinConfig
from engine.errors import ConfigError
from engine.runtime.session import RunOptions, check_live, mode_of
from engine.runtime.snapshot import Mode
from hotcoin_tui.cli import app

KEYS = {"api_key": "k" * 64, "api_secret": "s" * 64}


def config(**exchange: Any) -> HotcoinConfig:
    return HotcoinConfig.model_validate({"exchange": exchange})


@pytest.mark.parametrize(
    ("cfg", "options", "refusal"),
    [
        (config(), RunOptions(demo=True, live=True, confirm_live=True), "cannot run on the simulated market"),
        (config(name="sim", **KEYS), RunOptions(demo=False, live=True, confirm_live=True), "cannot run on the simulated market"),
        (config(name="binance"), RunOptions(demo=False, live=True, confirm_live=True), "needs exchange.api_key"),
        (config(name="binance", api_key="k" * 64), RunOptions(demo=False, live=True, confirm_live=True), "needs exchange.api_key"),
        (config(name="binance", **KEYS), RunOptions(demo=False, live=True), "--yes-really-trade-live"),
    ],
    ids=["demo", "sim-exchange", "no-keys", "no-secret", "unconfirmed"],
)
def test_live_without_every_piece_is_refused(cfg: HotcoinConfig, options: RunOptions, refusal: str) -> None:
    with pytest.raises(ConfigError, match=refusal):
        check_live(cfg, options)


def test_live_with_every_piece_passes_and_paper_is_never_checked() -> None:
    live = RunOptions(demo=False, live=True, confirm_live=True)
    check_live(config(name="binance", **KEYS), live)
    assert mode_of(config(name="binance", **KEYS), live) is Mode.LIVE
    check_live(config(), RunOptions())  # not live: nothing to refuse
    assert mode_of(config(name="binance"), RunOptions(demo=False)) is Mode.PAPER


@pytest.mark.parametrize("command", [["run", "--duration", "1"], ["tui"]])
def test_the_command_line_refuses_live_on_the_default_simulated_market(command: list[str]) -> None:
    """Before any engine starts: the console says why on the terminal, not from a child's log."""
    result = CliRunner().invoke(app, [*command, "--live", "--yes-really-trade-live", "--no-http"])
    assert isinstance(result.exception, ConfigError)
    assert "cannot run on the simulated market" in str(result.exception)
