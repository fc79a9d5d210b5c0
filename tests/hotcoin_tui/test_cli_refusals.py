"""Command lines the CLI refuses before doing any work: each names the option and the fix,
exits 2 (a usage error) and prints no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hotcoin_tui.cli import app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, BaseException | None]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, " ".join(result.output.split()), result.exception


JOURNAL_COMMANDS = [
    ["run", "--duration", "0"],
    ["tui", "--in-process"],
    ["backtest", "--data", "nowhere"],
    ["doctor"],
    ["report"],
    ["traces"],
    ["replay", "abc"],
    ["journal", "check"],
    ["journal", "export"],
]


@pytest.mark.parametrize("command", JOURNAL_COMMANDS, ids=lambda c: "-".join(w for w in c if w.isalpha()))
def test_an_empty_journal_path_is_a_usage_error_for_every_command(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit: `-j ""` (`-j "$J"` with J unset) is the current folder; `run`, `tui`, `backtest`
    and `doctor` died on `PosixPath('.') has an empty name` with a traceback."""
    monkeypatch.chdir(tmp_path)
    code, out, exc = invoke(*command, "-j", "")
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert ". is a directory (an empty path is the current folder)" in out
    assert "point --journal at the journal file" in out


@pytest.mark.parametrize("command", JOURNAL_COMMANDS[:4], ids=lambda c: c[0])
def test_a_directory_as_the_journal_is_a_usage_error(command: list[str], tmp_path: Path) -> None:
    code, out, exc = invoke(*command, "--journal", str(tmp_path))
    assert code == 2, out
    assert isinstance(exc, SystemExit), exc
    assert f"{tmp_path} is a directory; point --journal at the journal file, e.g. {tmp_path}/journal.sqlite" in out
