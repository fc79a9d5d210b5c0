"""The `hotcoin` command. Each command is a thin wrapper: options in, one call to the
function that does the work, exit code out. Errors the user can fix exit 2 with a message
that names the problem and the fix; nothing prints a traceback at them."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import typer
from typer.main import get_group

from hotcoin_tui.commands.help_format import command_group

# The command modules (`hotcoin_tui.commands.*`), in the order `hotcoin --help` lists what they
# add, with the names of the commands and groups each one's `register` adds. `hotcoin CMD`
# imports CMD's module alone (`command_only`): importing all of them (the console's, training's
# and the others' option dataclasses and imports) cost ~5 ms of every command's start.
# `tests/hotcoin_tui/test_help.py` holds each module's names to what it registers.
COMMAND_MODULES: tuple[tuple[str, frozenset[str]], ...] = (
    ("config_cmd", frozenset({"config"})),
    ("journal_cmd", frozenset({"replay", "traces", "journal"})),
    ("backtest_cmd", frozenset({"collect", "backtest", "optimize"})),
    ("run_cmd", frozenset({"run"})),
    ("tui_cmd", frozenset({"tui"})),
    ("train_cmd", frozenset({"train"})),
    ("jobs_cmd", frozenset({"jobs"})),
    ("models_cmd", frozenset({"models"})),
    ("ops_cmd", frozenset({"report", "doctor"})),
    ("sim_cmd", frozenset({"sim-exchange"})),
)


def hotcoin_app(modules: Iterable[str]) -> typer.Typer:
    """The `hotcoin` app with the commands of `modules` (names from `COMMAND_MODULES`), in order."""
    hotcoin = command_group(
        name="hotcoin",
        help="Find coins turning hot on Binance spot, trade them (paper or live), explain every decision.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for module in modules:
        importlib.import_module(f"hotcoin_tui.commands.{module}").register(hotcoin)
    return hotcoin


@functools.cache
def whole_app() -> typer.Typer:
    """`hotcoin` with every command: what `hotcoin`, `hotcoin --help` and a mistyped command run."""
    return hotcoin_app(module for module, _ in COMMAND_MODULES)


def __getattr__(name: str) -> typer.Typer:
    """`app` (`whole_app()`), made when first asked for rather than at import (PEP 562): a
    command run from the command line builds only its own module's (`command_only`)."""
    if name == "app":
        return whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def command_only(args: list[str]) -> Callable[[], Any]:
    """What runs `hotcoin ARGS`: where the first argument names a command or group, the app's
    click group built with that one alone, from its module alone (its help, errors and options
    are the same: none of them mentions the others), else the whole app. Typer builds every
    command's click parameters from its annotations first thing, ~30 ms of a `hotcoin backtest`
    for the 14 commands it does not run. `hotcoin`, `hotcoin --help` and a mistyped command
    still list them all (`tests/hotcoin_tui/test_help.py` compares the two)."""
    name = args[0] if args else None
    module = next((module for module, names in COMMAND_MODULES if name in names), None)
    if module is None:
        return whole_app()
    alone = hotcoin_app((module,))
    alone.registered_commands = [c for c in alone.registered_commands if c.name == name]
    alone.registered_groups = [g for g in alone.registered_groups if g.name == name]
    return get_group(alone)  # a group even with one command (typer would make it the whole program)


# Everything hotcoin writes (the data dir, the journal and its -wal/-shm, models, job folders,
# caches, logs) is the owner's trading record: private from birth, whatever the login umask.
PRIVATE_UMASK = 0o077


def main() -> None:
    """Console-script entry point: known errors become a one-line message and exit code 2.

    The umask is set here, once, before any command runs: a mode on each `mkdir` and `open`
    misses the files others create for us (SQLite's -wal and -shm, LightGBM's model files)."""
    from engine.errors import HotcoinError

    os.umask(PRIVATE_UMASK)
    try:
        command_only(sys.argv[1:])()
    except HotcoinError as exc:
        typer.secho(f"hotcoin: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except SystemExit as done:  # how click ends every command, done or not
        if done.code in (0, None) and sys.argv[1:2] and sys.argv[1] in QUICK_EXIT:
            quick_exit()
        raise


# Commands that are done when they return: their output written, their files closed, their
# processes joined. Their process leaves without the interpreter's teardown (`quick_exit`).
QUICK_EXIT = frozenset({"backtest"})


def quick_exit() -> None:
    """End the process now, as the interpreter would after a clean exit, less its teardown:
    freeing module by module a heap the kernel frees whole took ~25-35 ms of a month's
    backtest on the 2-core box (its ~55,000 objects, the decoded candles, the libraries'
    pools). What its exit handlers did that matters is done here: logging's handlers flushed
    and closed, stdout and stderr flushed (the others: pyarrow's S3 finalizer, never started;
    multiprocessing's, whose child is joined; the collector freeze, moot). A flush that fails
    (a closed pipe) returns, for the usual exit to report it as it always did."""
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return
    os._exit(0)


if __name__ == "__main__":
    main()
