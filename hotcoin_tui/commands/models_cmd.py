"""`hotcoin models`: the registered versions of the model the engine trades with.

One row per version of `hot_lgbm` on `trading.signals.timeframe`: its verdict (as registered,
and under today's `[ml.gates]` where that differs), the figures its promotion decision stores,
whether its files verify against this engine (model file, decision, contract), and which one
the engine would load now, found by the engine's own loader (`ml.runtime.load_scorer`).

Exit codes: 0 listed (an empty registry included, and the default `<data_dir>/models` not made
yet: a fresh install has trained nothing, which is no fault), 2 when a configured
`ml.registry_dir` does not exist (mistyped: the engine would run without its model).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from hotcoin_tui.commands.options import ConfigOpt, JsonOpt

if TYPE_CHECKING:
    from ml.governance.promotion import GateResult
    from ml.runtime import Inventory

# The decision's gate names, as the table's column of figures shortens them.
_SHORT = {
    "oos_median_lift": "lift",
    "oos_worst_fold_lift": "worst",
    "fold_stability_cv": "cv",
    "oos_samples": "samples",
    "oos_folds": "folds",
}


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the registered versions of the engine's model: verdict, decision figures, whether each verifies, and which one the engine would load now."""  # one line: the help keeps line breaks
    from engine.config import load_config
    from ml.runtime import inventory

    cfg = load_config(config).config
    found = inventory(cfg)
    if as_json:
        import orjson

        typer.echo(orjson.dumps(_as_json(found, cfg.ml.registry_dir is not None), option=orjson.OPT_INDENT_2).decode())
    else:
        _print(found, cfg.ml.registry_dir is not None)
    if not found.registry_exists and cfg.ml.registry_dir is not None:
        raise typer.Exit(2)


def _missing(found: Inventory, configured: bool) -> str:
    where = "ml.registry_dir" if configured else "the default, <data_dir>/models"
    fix = (
        "fix ml.registry_dir, or remove it to use <data_dir>/models"
        if configured
        else f"train one (`hotcoin train --task {found.task}`), or set ml.registry_dir to the registry that holds them"
    )
    return f"no model registry at {found.root} ({where}); {fix}"


def _figure(gate: GateResult) -> str:
    if gate.value is None:
        return "n/a"
    return f"{int(gate.value):,}" if gate.value.is_integer() and gate.value >= 10 else f"{gate.value:.4g}"


def _as_json(found: Inventory, configured: bool) -> dict[str, Any]:
    load = found.load
    return {
        "model": f"{found.task}_{found.interval}",
        "registry": str(found.root),
        "registry_exists": found.registry_exists,
        "message": None if found.registry_exists else _missing(found, configured),
        "engine": {
            "model": load.model if load.scorer is not None else None,
            "mode": load.mode,
            "failed": load.failed,
            "status": load.status,
            "warnings": list(load.warnings),
        },
        "versions": [
            {
                "name": v.name,
                "version": v.version,
                "path": str(v.path),
                "verdict": v.verdict,
                "verdict_now": v.verdict_now,
                "decided_ms": v.decided_ms,
                "gates": [
                    {"name": g.name, "value": g.value, "threshold": g.threshold, "comparator": g.comparator, "passed": g.passed}
                    for g in v.gates
                ],
                "verifies": v.problem is None,
                "problem": v.problem,
                "loaded": v.loaded,
            }
            for v in found.versions
        ],
        "other_models": list(found.others),
    }


def _print(found: Inventory, configured: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    if not found.registry_exists:
        if configured:
            typer.secho(f"hotcoin: {_missing(found, configured)}", fg=typer.colors.RED, err=True)
        else:
            console.print(escape(_missing(found, configured)))
        return
    if not found.versions:
        console.print(f"no {found.task}_{found.interval} versions in {escape(str(found.root))}; "
                      f"train one with `hotcoin train --task {found.task}`")  # fmt: skip
    else:
        table = Table(title=f"{found.task}_{found.interval} in {escape(str(found.root))}", show_header=True, header_style="bold")
        table.add_column("version", no_wrap=True)
        table.add_column("verdict", overflow="fold")
        table.add_column("decision figures", overflow="fold")
        table.add_column("decided", overflow="fold")
        table.add_column("verifies", no_wrap=True)
        table.add_column("engine", overflow="fold")
        for v in found.versions:
            verdict = v.verdict if v.verdict_now in (None, v.verdict) else f"{v.verdict} ({v.verdict_now} under today's gates)"
            figures = ", ".join(f"{_SHORT.get(g.name, g.name)} {_figure(g)}" + ("" if g.passed else " ✗") for g in v.gates)
            decided = "" if v.decided_ms is None else datetime.fromtimestamp(v.decided_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            verifies = "[green]yes[/]" if v.problem is None else "[red]no[/] (below)"
            engine = f"[bold]loads ({found.load.mode})[/]" if v.loaded else ""
            table.add_row(f"v{v.version:04d}", verdict, figures, decided, verifies, engine)
        console.print(table)
        for v in found.versions:  # whole, below the table: a reason folded into a column is unreadable
            if v.problem is not None:
                console.print(f"[red]v{v.version:04d}[/]: {escape(v.problem)}")
    style = "red" if found.load.failed else "yellow" if found.load.scorer is None or found.load.warnings else "green"
    console.print(f"engine: [{style}]{escape(found.load.status)}[/]")
    for note in found.load.warnings:
        console.print(f"  [yellow]{escape(note)}[/]")
    if found.others:
        console.print(f"also registered (not loaded by the engine): {', '.join(found.others)}")
