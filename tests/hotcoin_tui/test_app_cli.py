"""`hotcoin tui`: options in, one client out of `build_client`, the [tui] config section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config import load_config
from engine.errors import ConfigError
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.snapshot import Mode
from hotcoin_tui.cli import app
from hotcoin_tui.commands.tui_cmd import TuiOptions, build_client

REPO = Path(__file__).resolve().parents[2]


def test_fake_option_builds_the_fake_client_as_asked() -> None:
    client = build_client(TuiOptions(fake=True, seed=3, candidates=40, positions=4, fake_mode="live"))
    assert isinstance(client, FakeEngineClient)
    snap = client.latest()
    assert snap is not None and len(snap.candidates) == 40 and len(snap.positions) == 4
    assert snap.status.mode is Mode.LIVE


@pytest.mark.parametrize(("options", "message"), [
    (TuiOptions(), "run `hotcoin tui --fake`"),
    (TuiOptions(fake=True, fake_mode="REAL"), "--fake-mode 'REAL': use SIM, PAPER or LIVE"),
    (TuiOptions(fake=True, candidates=3, positions=9), "--positions between 0 and --candidates"),
], ids=["no-engine", "bad-mode", "bad-counts"])  # fmt: skip
def test_unusable_options_are_named(options: TuiOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_client(options)


def test_command_is_registered_and_documents_its_options() -> None:
    result = CliRunner().invoke(app, ["tui", "--help"])
    assert result.exit_code == 0
    for option in ("--fake", "--seed", "--candidates", "--positions", "--fake-mode", "--step-s", "--config"):
        assert option in result.output


def test_without_an_engine_the_command_fails_with_the_fix() -> None:
    result = CliRunner().invoke(app, ["tui"])
    assert isinstance(result.exception, ConfigError)
    assert "hotcoin tui --fake" in str(result.exception)


def test_tui_section_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[tui]\ncandidate_rows = 80\nchart_refresh_s = 2.0\n[tui.keymap]\nclose_all = "ctrl+k"\npause = "p,f9"\n')
    tui = load_config(path).config.tui
    assert tui.candidate_rows == 80 and tui.chart_refresh_s == 2.0
    assert tui.keymap == {"close_all": "ctrl+k", "pause": "p,f9"}


@pytest.mark.parametrize("body", [
    '[tui.keymap]\npause = "p f9"\n',
    '[tui.keymap]\n"Pause!" = "p"\n',
    "[tui]\nchart_refresh_s = 0.01\n",
    "[tui]\nrows = 10\n",
], ids=["space-in-keys", "bad-id", "refresh-too-fast", "unknown-key"])  # fmt: skip
def test_bad_tui_settings_are_rejected(tmp_path: Path, body: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError):
        load_config(path)


def test_start_up_leaves_heavy_modules_unimported() -> None:
    """plotext, the replay model and the fake engine load on first use, not at start."""
    code = (
        "import sys, hotcoin_tui.cli, hotcoin_tui.app;"
        "heavy = [m for m in ('plotext', 'engine.journal.trace', 'hotcoin_tui.replay_view', 'pandas')"
        " if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
