"""`--help` of every command at 80 and 120 columns: wrapped to the width, never cut short."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from hotcoin_tui.cli import app


def command_paths() -> list[list[str]]:
    """Every command and subcommand, as the arguments that reach it."""
    paths: list[list[str]] = [[]]
    root = typer.main.get_command(app)
    stack = [([], root)]
    while stack:
        prefix, group = stack.pop()
        for name, command in getattr(group, "commands", {}).items():
            paths.append([*prefix, name])
            stack.append(([*prefix, name], command))
    return paths


def option_names(path: list[str]) -> list[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return [opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")]


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "hotcoin")
def test_help_wraps_within_the_width_and_cuts_nothing(path: list[str], columns: int) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "…" not in text
    assert not re.search(r"[^\s\]]\.\.\.$", text, re.MULTILINE), "a summary cut to '...'"
    assert max(len(line) for line in text.splitlines()) <= columns
    names = set(text.split())
    missing = [opt for opt in option_names(path) if opt not in names and f"{opt}," not in text]
    assert not missing, f"cut or missing from help: {missing}"
