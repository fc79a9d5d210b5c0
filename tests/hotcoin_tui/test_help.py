"""`--help` of every command at 80 and 120 columns: wrapped to the width, never cut short."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hotcoin_tui.cli import COMMAND_MODULES, app, command_only, hotcoin_app
from hotcoin_tui.commands.help_format import WrappedCommandsGroup


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


@pytest.mark.parametrize(
    "args",
    [
        *([*path, "--help"] for path in command_paths()),
        [],
        ["backtst"],
        ["--help", "backtest"],
        ["backtest", "--no-such-option"],
        ["backtest", "--data"],
        ["backtest", "--from", "2021-04-01", "--to", "nope", "--data", "/nonexistent/candles"],
        ["collect"],
        ["config", "nope"],
        ["journal"],
        ["sim-exchange", "--port", "x"],
    ],
    ids=lambda a: " ".join(a) or "hotcoin",
)
def test_a_command_alone_answers_as_the_whole_app(args: list[str]) -> None:
    """`hotcoin CMD ...` runs the app's group built with CMD alone (`command_only`, ~30 ms of
    typer's building saved): its help, usage errors and refusals are the whole app's, word for
    word; no command or an unknown one gets the whole app."""
    alone = command_only(args)
    if not args or args[0].startswith("-") or args[0] == "backtst":
        assert alone is app
    else:
        assert isinstance(alone, WrappedCommandsGroup) and list(alone.commands) == [args[0]]
    assert _run(alone, args) == _run(typer.main.get_command(app), args)


def _run(command: Callable[..., Any], args: list[str]) -> tuple[object, bytes, bytes]:
    """(exit status, stdout, stderr) of a click command run on `args`, as `hotcoin` runs it."""
    with CliRunner().isolation(env={"COLUMNS": "100"}) as (out, err, _):
        try:
            command(args=args, prog_name="hotcoin")
        except SystemExit as stop:
            return stop.code, out.getvalue(), err.getvalue()
    raise AssertionError("a click command in standalone mode always exits")


def test_each_command_module_adds_the_names_the_cli_finds_it_by() -> None:
    """`command_only` imports the module `COMMAND_MODULES` names for a command: each module
    adds exactly those commands and groups, no name is two modules', and together they are
    the whole app's."""
    added = {}
    for module, names in COMMAND_MODULES:
        alone = hotcoin_app((module,))
        added[module] = [c.name for c in alone.registered_commands] + [g.name for g in alone.registered_groups]
        assert sorted(added[module]) == sorted(names), module
    every = [name for names in added.values() for name in names]
    assert len(every) == len(set(every))
    assert set(every) == set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_a_command_imports_no_other_command_s_module() -> None:
    """`hotcoin backtest` (as `main` runs it) imports its own command module, not the others'."""
    code = (
        "import sys; from hotcoin_tui.cli import command_only; command_only(['backtest']);"
        "print(sorted(m for m in sys.modules if m.endswith('_cmd')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    assert done.stdout.split() == ["['hotcoin_tui.commands.backtest_cmd']"]
