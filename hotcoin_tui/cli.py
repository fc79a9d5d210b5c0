"""The `hotcoin` command. Each command is a thin wrapper: options in, one call to the
function that does the work, exit code out. Errors the user can fix exit 2 with a message
that names the problem and the fix; nothing prints a traceback at them."""

from __future__ import annotations

import os
import sys

import typer

from hotcoin_tui.commands import (
    backtest_cmd,
    config_cmd,
    jobs_cmd,
    journal_cmd,
    models_cmd,
    ops_cmd,
    run_cmd,
    sim_cmd,
    train_cmd,
    tui_cmd,
)
from hotcoin_tui.commands.help_format import command_group

app = command_group(
    name="hotcoin",
    help="Find coins turning hot on Binance spot, trade them (paper or live), explain every decision.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(config_cmd.app, name="config")
journal_cmd.register(app)
backtest_cmd.register(app)
run_cmd.register(app)
tui_cmd.register(app)
app.command("train")(train_cmd.train)
app.add_typer(jobs_cmd.app, name="jobs")
models_cmd.register(app)
ops_cmd.register(app)
app.command("sim-exchange")(sim_cmd.sim_exchange)


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
        app()
    except HotcoinError as exc:
        typer.secho(f"hotcoin: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
