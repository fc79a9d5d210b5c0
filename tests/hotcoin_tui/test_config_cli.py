"""`hotcoin config show`: every setting named whole, wherever the output goes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from hotcoin_tui.cli import app
from hotcoin_tui.commands.config_cmd import _descriptions, _print_lines

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))


def test_piped_output_names_every_setting_whole() -> None:
    """Piped or redirected, the table fell back to 80 columns and cut 164 key names to
    `trading.signals.min…` (four settings alike); now one setting a line, grep-able."""
    result = runner.invoke(app, ["config", "show", "--sources", "--doc"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    lines = result.output.splitlines()
    keys = {line.split(" = ", 1)[0] for line in lines if " = " in line}
    described = [k for k in _descriptions() if "<name>" not in k]
    assert all(k in keys or any(x.startswith(f"{k}.") for x in keys) for k in described)  # a table: its leaves
    heat = next(line for line in lines if line.startswith("trading.signals.min_heat = "))
    assert "# from: default; " in heat


def test_json_with_doc_and_sources_carries_them() -> None:
    """`--json --doc` silently dropped the documentation."""
    result = runner.invoke(app, ["config", "show", "--json", "--doc", "--sources"])
    entries = orjson.loads(result.output)
    assert entries["trading.signals.min_heat"]["from"] == "default"
    assert entries["trading.signals.min_heat"]["meaning"]
    plain = orjson.loads(runner.invoke(app, ["config", "show", "--json"]).output)
    assert plain["trading"]["signals"]["min_heat"] == entries["trading.signals.min_heat"]["value"]


def test_a_narrow_terminal_puts_the_meaning_under_its_key(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [["trading.signals.max_vwap_dist_60", "0.08", "default", "word " * 40]]
    _print_lines(rows, "h", 80, sources=True, doc=True)
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "trading.signals.max_vwap_dist_60 = 0.08  (from: default)"
    assert all(line.startswith("    word") and len(line) <= 79 for line in out[2:])


def test_config_path_prints_the_files_this_config_uses(tmp_path: Path) -> None:
    """`config path` printed the XDG defaults whatever --config, HOTCOIN_CONFIG or `paths.*`
    said: an owner with `paths.secrets_file` elsewhere was sent to the wrong file."""
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[paths]\ndata_dir = "{tmp_path / "trade"}"\nsecrets_file = "{tmp_path / "keys.toml"}"\n')
    expected = [
        f"config:  {cfg}",
        f"secrets: {tmp_path / 'keys.toml'} (does not exist)",
        f"data:    {tmp_path / 'trade'}",
        f"journal: {tmp_path / 'trade' / 'journal.sqlite'}",
    ]
    for args, env in ((["--config", str(cfg)], {}), ([], {"HOTCOIN_CONFIG": str(cfg)})):
        result = runner.invoke(app, ["config", "path", *args], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == expected
    result = runner.invoke(app, ["config", "path"], env={"HOTCOIN_JOURNAL": str(tmp_path / "j.sqlite")})
    assert result.stdout.splitlines() == [
        f"config:  none ({tmp_path / 'hotcoin' / 'config.toml'} does not exist: running on defaults)",
        f"secrets: {tmp_path / 'hotcoin' / 'secrets.toml'} (does not exist)",
        f"data:    {tmp_path / 'hotcoin'}",
        f"journal: {tmp_path / 'j.sqlite'}",
    ]
