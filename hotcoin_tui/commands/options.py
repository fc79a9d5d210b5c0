"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config TOML file (default: $XDG_CONFIG_HOME/hotcoin/config.toml).",
        envvar="HOTCOIN_CONFIG",
        show_envvar=True,
    ),
]
JournalOpt = Annotated[
    Path | None,
    typer.Option(
        "--journal",
        "-j",
        help="Journal SQLite file (default: <data_dir>/journal.sqlite).",
        envvar="HOTCOIN_JOURNAL",
        show_envvar=True,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
