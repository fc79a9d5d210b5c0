"""Real orders need an exchange, `mode = "live"`, keys *and* an explicit confirmation: each
missing piece is refused with the fix, before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.config import HotcoinConfig
from engine.errors import ConfigError
from engine.runtime.session import RunOptions, check_live, mode_of, paper_despite_mode
from engine.runtime.snapshot import Mode
from hotcoin_tui.cli import app

KEYS = {"api_key": "k" * 64, "api_secret": "s" * 64}


def config(mode: str = "live", **exchange: Any) -> HotcoinConfig:
    return HotcoinConfig.model_validate({"mode": mode, "exchange": exchange})


@pytest.mark.parametrize(
    ("cfg", "options", "refusal"),
    [
        (config(), RunOptions(demo=True, live=True, confirm_live=True), "cannot run on the simulated market"),
        (config(name="sim", **KEYS), RunOptions(demo=False, live=True, confirm_live=True), "cannot run on the simulated market"),
        (config(name="binance"), RunOptions(demo=False, live=True, confirm_live=True), "needs exchange.api_key"),
        (config(name="binance", api_key="k" * 64), RunOptions(demo=False, live=True, confirm_live=True), "needs exchange.api_key"),
        (config(name="binance", **KEYS), RunOptions(demo=False, live=True), "--yes-really-trade-live"),
        (config("paper", name="binance", **KEYS), RunOptions(demo=False, live=True, confirm_live=True),
         r'config says mode = "paper"; set mode = "live" in the config file \(or HOTCOIN_MODE=live\)'),
    ],
    ids=["demo", "sim-exchange", "no-keys", "no-secret", "unconfirmed", "mode-paper"],
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


def test_a_live_mode_without_live_flag_warns_that_it_runs_paper(tmp_path: Path) -> None:
    assert paper_despite_mode(config(), RunOptions(demo=False)) is not None
    assert paper_despite_mode(config("paper"), RunOptions(demo=False)) is None
    assert paper_despite_mode(config(name="binance", **KEYS), RunOptions(demo=False, live=True, confirm_live=True)) is None
    env = {"HOTCOIN_MODE": "live", "HOTCOIN_JOURNAL": str(tmp_path / "j.sqlite"), "XDG_DATA_HOME": str(tmp_path)}
    result = CliRunner().invoke(app, ["run", "--duration", "0", "--no-http"], env=env)
    assert result.exit_code == 0, result.output
    assert 'mode = "live" but --live was not given: this run trades paper' in result.stderr
