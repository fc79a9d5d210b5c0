"""`hotcoin run`: the headless engine. Ctrl-C, SIGTERM and SIGHUP (the terminal went away: an
SSH connection that dropped) shut it down cleanly (journal flushed, positions recorded,
`run_stop` written) with exit status 0: a run has no end of its own, so a signal is how one
ends as asked, and the console reads 0 from its engine as a clean stop. (`backtest optimize`
exits 128 + the signal instead: its search was cut short and its result is partial.)"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from hotcoin_tui.commands.options import (
    ConfigOpt,
    JournalOpt,
    http_endpoint,
    market_name,
    number,
    refuse_confirmation_without_live,
    refuse_demo_with_a_market,
    refuse_sim_flags_off_the_sim,
)


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def cli_overrides(
    *,
    exchange: str | None,
    endpoint: str | None,
    journal: Path | None,
    seed: int | None,
    symbols: int | None,
    http_port: int | None,
) -> dict[str, Any]:
    """Flags as dotted config keys: the top layer of the config (defaults < file < env < flags)."""
    out: dict[str, Any] = {}
    if exchange is not None:
        out["exchange.name"] = exchange
    if endpoint is not None:
        out["exchange.endpoint"] = endpoint
    if journal is not None:
        out["journal.path"] = str(journal)
    if seed is not None:
        out["sim.seed"] = seed
    if symbols is not None:
        out["sim.symbols"] = symbols
    if http_port is not None:
        out["ops.http_port"] = http_port
    return out


def _seconds(value: float | None) -> float | None:
    """`--duration`: a count of seconds, 0 or more (inf: no end). Checked here rather than by
    `min=0`, which let NaN through to a range message ("should be >= 0") that named the wrong problem."""
    if value is not None and math.isnan(value):
        raise typer.BadParameter("nan is not a number of seconds; give e.g. --duration 60")
    if value is not None and value < 0:
        raise typer.BadParameter(f"{value:g} is negative; give 0 or more seconds, e.g. --duration 60")
    return value


def run(
    config: ConfigOpt = None,
    journal: JournalOpt = None,
    demo: Annotated[bool, typer.Option("--demo", help="Simulated market in-process, paper broker (default when no exchange is configured).")] = False,
    exchange: Annotated[
        str | None,
        typer.Option(
            "--exchange",
            help="`binance`: Binance spot (paper fills from its book; --live for real orders). "
            "`sim`: the simulated market in-process, or with --endpoint the `hotcoin sim-exchange` at that URL "
            "over the network, traded through its order API (no keys needed).",
        ),
    ] = None,
    live: Annotated[bool, typer.Option("--live/--paper", help="Real orders (needs mode = \"live\", keys and the confirmation flag below) or paper fills (default).")] = False,
    yes_really: Annotated[bool, typer.Option("--yes-really-trade-live", help="Confirm that --live sends real orders.")] = False,
    speed: Annotated[float, typer.Option("--speed", parser=number(1, 1000), help="Simulated clock speed (x1 to x1000); with --exchange sim --endpoint, the speed the sim-exchange runs at.")] = 1.0,
    duration: Annotated[
        float | None, typer.Option("--duration", callback=_seconds, help="Stop after this many wall seconds (the start included).")
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", callback=http_endpoint, help="Another Binance-compatible host, e.g. the URL `hotcoin sim-exchange` prints."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the simulated market.")] = None,
    symbols: Annotated[int | None, typer.Option("--symbols", help="Symbols in the simulated market.")] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Do not serve /health and /metrics.")] = False,
    http_port: Annotated[int | None, typer.Option("--http-port", help="Port for /health and /metrics (0: any free port).")] = None,
) -> None:
    """Run the engine headless: discover, decide, trade, journal."""
    import asyncio

    from engine.config import load_config
    from engine.ops.logs import configure_logging, secret_values
    from engine.runtime.headless import run_headless
    from engine.runtime.session import RunOptions, paper_despite_mode

    refuse_demo_with_a_market(demo, exchange, endpoint)
    refuse_confirmation_without_live(live, yes_really)
    loaded = load_config(
        config,
        cli=cli_overrides(exchange=exchange, endpoint=endpoint, journal=journal, seed=seed, symbols=symbols, http_port=http_port),
    )
    market = loaded.config.exchange
    sim_in_process = demo or (market.name == "sim" and market.endpoint is None)
    refuse_sim_flags_off_the_sim(sim_in_process, market_name(market.name, market.endpoint), {"--seed": seed, "--symbols": symbols})
    configure_logging(loaded.config.log_level, secrets=secret_values(loaded.config))
    from ml.runtime import load_scorer

    options = RunOptions(
        model_loader=load_scorer,
        demo=sim_in_process,
        live=live,
        confirm_live=yes_really,
        speed=speed,
        http=not no_http,
    )
    warning = paper_despite_mode(loaded.config, options)
    if warning:
        typer.secho(f"hotcoin: warning: {warning}", fg=typer.colors.YELLOW, err=True)
    summary = asyncio.run(run_headless(loaded.config, options, duration))
    _say(summary)


def _say(summary: str) -> None:
    """Print the exit summary. A terminal that went away (SIGHUP) cannot take it (EIO), and the
    run stopped cleanly all the same: the log and the journal say what it did. Unhandled, the
    failed write made the exit status 1, with a traceback nobody could read."""
    with contextlib.suppress(OSError):
        typer.echo(summary)
