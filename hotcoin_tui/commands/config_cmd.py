"""`hotcoin config ...`: see the effective configuration, redacted, and where each value came from."""

from __future__ import annotations

import shutil
import sys
import textwrap
import typing
from typing import Annotated, Any

import typer

from hotcoin_tui.commands.help_format import command_group
from hotcoin_tui.commands.options import ConfigOpt, JsonOpt

app = command_group(help="Inspect the effective configuration (secrets redacted).", no_args_is_help=True)


def register(hotcoin: typer.Typer) -> None:
    """Add the `config` group to the `hotcoin` app."""
    hotcoin.add_typer(app, name="config")


@app.command("show")
def show(
    config: ConfigOpt = None,
    sources: Annotated[bool, typer.Option("--sources", help="Say which layer set each value.")] = False,
    doc: Annotated[bool, typer.Option("--doc", help="Print every setting's documentation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective config: defaults < file < HOTCOIN_* env < flags, secrets as ***."""
    import orjson

    from engine.config import load_config

    loaded = load_config(config)
    flat = _flatten(loaded.config.redacted())
    docs = _descriptions() if doc else {}
    if as_json:
        if not (sources or doc):
            typer.echo(orjson.dumps(loaded.config.redacted(), default=str, option=orjson.OPT_INDENT_2).decode())
            return
        entries: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            entry: dict[str, Any] = {"value": value}
            if sources:
                entry["from"] = loaded.source_of(key)
            if doc:
                entry["meaning"] = docs.get(key, "")
            entries[key] = entry
        typer.echo(orjson.dumps(entries, default=str, option=orjson.OPT_INDENT_2).decode())
        return
    rows = []
    for key, value in flat.items():
        row = [key, repr(value) if isinstance(value, str) else str(value)]
        if sources:
            row.append(loaded.source_of(key))
        if doc:
            row.append(docs.get(key, ""))
        rows.append(row)
    # Settings of named tables (e.g. [gpu.<name>]) have no value until a table exists.
    rows += [[key, "", *([""] if sources else []), meaning] for key, meaning in docs.items() if "<name>" in key]
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    key_width = max(len(r[0]) for r in rows)
    if width is not None and width >= key_width + 24 + 12 * sources + 30 * doc:
        _print_table(rows, loaded.config.config_hash(), key_width, sources=sources, doc=doc)
    else:
        _print_lines(rows, loaded.config.config_hash(), width, sources=sources, doc=doc)
    if loaded.config_file is None:
        typer.echo("(no config file found; running on defaults)")


def _print_table(rows: list[list[str]], config_hash: str, key_width: int, *, sources: bool, doc: bool) -> None:
    """A table, for a terminal wide enough. Key names are never cut (an ellipsis made
    `trading.signals.min…` four different settings): their column takes the longest key,
    values fold, and only the meaning wraps."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"hotcoin config (hash {config_hash})", show_lines=False)
    table.add_column("key", no_wrap=True, min_width=key_width)
    table.add_column("value", overflow="fold")
    if sources:
        table.add_column("from", overflow="fold")
    if doc:
        table.add_column("meaning", ratio=1)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    Console().print(table)


def _print_lines(rows: list[list[str]], config_hash: str, width: int | None, *, sources: bool, doc: bool) -> None:
    """One setting a line: `key = value  # from: …; meaning`, for a pipe or a file (`config
    show --doc > settings.txt`, grep), where a table is cut to 80 columns. On a terminal too
    narrow for the table (`width`), the meaning goes under its key, wrapped and indented."""
    typer.echo(f"# hotcoin config (hash {config_hash})")
    for row in rows:
        line = f"{row[0]} = {row[1]}"
        origin = [f"from: {row[2]}"] if sources else []
        meaning = row[-1] if doc else ""
        if width is None:
            notes = origin + ([meaning] if meaning else [])
            typer.echo(f"{line}  # {'; '.join(notes)}" if notes else line)
            continue
        typer.echo(f"{line}  ({origin[0]})" if origin else line)
        if meaning:
            typer.echo(textwrap.fill(meaning, max(40, width - 1), initial_indent="    ", subsequent_indent="    "))


@app.command("path")
def path(config: ConfigOpt = None) -> None:
    """Print the config file in effect and the secrets file, data folder and journal it names."""
    from engine.config import load_config, locations

    # Loaded, not the defaults: --config, HOTCOIN_CONFIG, paths.* and journal.path (file or
    # HOTCOIN_* variable) move these, and the defaults alone sent an owner to the wrong files.
    loaded = load_config(config)
    cfg = loaded.config
    if loaded.config_file is None:
        typer.echo(f"config:  none ({locations.default_config_file()} does not exist: running on defaults)")
    else:
        typer.echo(f"config:  {loaded.config_file.absolute()}")
    secrets = cfg.paths.secrets_file.absolute()
    typer.echo(f"secrets: {secrets}{'' if secrets.exists() else ' (does not exist)'}")
    typer.echo(f"data:    {cfg.paths.data_dir.absolute()}")
    typer.echo(f"journal: {cfg.journal_path.absolute()}")


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
