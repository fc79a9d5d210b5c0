"""`hotcoin config ...`: see the effective configuration, redacted, and where each value came from."""

from __future__ import annotations

import typing
from typing import Annotated, Any

import typer

from hotcoin_tui.commands.help_format import command_group
from hotcoin_tui.commands.options import ConfigOpt, JsonOpt

app = command_group(help="Inspect the effective configuration (secrets redacted).", no_args_is_help=True)


@app.command("show")
def show(
    config: ConfigOpt = None,
    sources: Annotated[bool, typer.Option("--sources", help="Say which layer set each value.")] = False,
    doc: Annotated[bool, typer.Option("--doc", help="Print every setting's documentation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective config: defaults < file < HOTCOIN_* env < flags, secrets as ***."""
    import orjson
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from engine.config import load_config

    loaded = load_config(config)
    flat = _flatten(loaded.config.redacted())
    if as_json:
        typer.echo(orjson.dumps(loaded.config.redacted(), default=str, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"hotcoin config (hash {loaded.config.config_hash()})", show_lines=False)
    table.add_column("key")
    table.add_column("value")
    if sources:
        table.add_column("from")
    if doc:
        table.add_column("meaning")
    docs = _descriptions() if doc else {}
    for key, value in flat.items():
        row = [key, repr(value) if isinstance(value, str) else str(value)]
        if sources:
            row.append(loaded.source_of(key))
        if doc:
            row.append(docs.get(key, ""))
        table.add_row(*(escape(cell) for cell in row))
    # Settings of named tables (e.g. [gpu.<name>]) have no value until a table exists.
    for key, meaning in docs.items():
        if "<name>" in key:
            table.add_row(*(escape(cell) for cell in [key, "", *([""] if sources else []), meaning]))
    Console().print(table)
    if loaded.config_file is None:
        typer.echo("(no config file found; running on defaults)")


@app.command("path")
def path() -> None:
    """Print where hotcoin looks for its config, secrets and data."""
    from engine.config import locations

    typer.echo(f"config:  {locations.default_config_file()}")
    typer.echo(f"secrets: {locations.default_secrets_file()}")
    typer.echo(f"data:    {locations.data_dir()}")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _descriptions() -> dict[str, str]:
    from pydantic import BaseModel

    from engine.config import HotcoinConfig

    out: dict[str, str] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            args = typing.get_args(ann)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            elif typing.get_origin(ann) is dict and args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
                out[f"{prefix}{name}"] = info.description or ""
                walk(args[-1], f"{prefix}{name}.<name>.")  # e.g. gpu.<name>.host
            else:
                out[f"{prefix}{name}"] = info.description or ""

    walk(HotcoinConfig, "")
    return out
