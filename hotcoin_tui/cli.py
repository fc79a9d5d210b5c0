"""The `hotcoin` command. Each command is a thin wrapper: options in, one call to the
function that does the work, exit code out. Errors the user can fix exit 2 with a message
that names the problem and the fix; nothing prints a traceback at them."""

from __future__ import annotations

import sys

import typer

from hotcoin_tui.commands import config_cmd

app = typer.Typer(
    name="hotcoin",
    help="Find coins turning hot on Binance spot, trade them (paper or live), explain every decision.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(config_cmd.app, name="config")


def main() -> None:
    """Console-script entry point: known errors become a one-line message and exit code 2."""
    from engine.errors import HotcoinError

    try:
        app()
    except HotcoinError as exc:
        typer.secho(f"hotcoin: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
