"""`hotcoin tui`: the trading console.

The command is options in, one `EngineClient` (in-process engine, attached engine, or the
scripted fake) and the app run on it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from engine.runtime.client import EngineClient


@dataclass(frozen=True, slots=True)
class TuiOptions:
    fake: bool = False
    seed: int = 7
    candidates: int = 300
    positions: int = 6
    fake_mode: str = "PAPER"
    step_s: float = 0.5
    config: Path | None = None


def build_fake_client(options: TuiOptions) -> EngineClient:
    """The scripted fake engine (generated market, no journal, no network)."""
    from engine.errors import ConfigError
    from engine.runtime.fake_client import FakeEngineClient
    from engine.runtime.snapshot import Mode

    try:
        mode = Mode(options.fake_mode.upper())
    except ValueError:
        raise ConfigError(f"--fake-mode {options.fake_mode!r}: use SIM, PAPER or LIVE") from None
    if options.candidates < 1 or not 0 <= options.positions <= options.candidates:
        raise ConfigError("--candidates must be >= 1 and --positions between 0 and --candidates")
    return FakeEngineClient(
        seed=options.seed,
        candidates=options.candidates,
        positions=options.positions,
        mode=mode,
        step_ms=round(options.step_s * 1000),
        clock=lambda: time.time_ns() // 1_000_000,
        autoplay_s=options.step_s,
    )


def run_tui(options: TuiOptions, engine: EngineOptions) -> int:
    """Run the console on the engine the options choose; the exit code.

    - default: the console's own engine in a child process (`hotcoin_tui.child_engine`: a
      repaint never delays a market batch), on the simulated market with paper trading unless
      an exchange is configured; quitting shuts it down cleanly;
    - `--in-process`: the same engine on a thread of this process (one interpreter lock);
    - `--attach`: an engine already running (`hotcoin run`) through its local socket; quitting
      detaches and the engine keeps trading;
    - `--fake`: the scripted fake engine.

    With an engine in another process (the default and `--attach`) the console lowers its own
    priority to `tui.nice`; with `--in-process` and `--fake` it does not (the engine shares its
    process: there is nothing to yield to, and a lowered thread holding the interpreter lock
    would hold up the engine).
    """
    import asyncio

    from engine.config import load_config
    from engine.runtime.session import RunOptions, check_folders, check_live
    from engine.runtime.threaded import EngineThread
    from hotcoin_tui.app import HotcoinApp
    from hotcoin_tui.commands.run_cmd import cli_overrides

    loaded = load_config(
        options.config,
        cli=cli_overrides(
            exchange=engine.exchange,
            endpoint=engine.endpoint,
            journal=engine.journal,
            seed=engine.seed,
            symbols=engine.symbols,
            http_port=None,
        ),
    )
    settings = loaded.config.tui
    market = loaded.config.exchange
    sim_flags = {"--sim-seed": engine.seed, "--symbols": engine.symbols}
    if engine.attach:
        refuse_sim_flags_off_the_sim(False, "the engine already running (--attach)", sim_flags)
    elif not options.fake:
        sim_in_process = engine.demo or (market.name == "sim" and market.endpoint is None)
        refuse_sim_flags_off_the_sim(sim_in_process, market_name(market.name, market.endpoint), sim_flags)
    if options.fake:
        app = HotcoinApp(build_fake_client(options), settings)
        app.run()
        return app.return_code or 0
    if engine.attach:
        from engine.runtime.remote_client import RemoteEngineClient
        from engine.runtime.socket_server import default_socket_path
        from hotcoin_tui.priority import lower_priority

        lower_priority(settings.nice)  # the engine is another process on this machine

        async def attached() -> int:
            path = default_socket_path(loaded.config.paths.data_dir)
            async with RemoteEngineClient(path, max_hz=settings.refresh_hz) as client:
                app = HotcoinApp(client, settings, attached=True, reconnect=client.reconnect)
                await app.run_async()
                return app.return_code or 0

        return asyncio.run(attached())
    demo = engine.demo or (loaded.config.exchange.name == "sim" and loaded.config.exchange.endpoint is None)
    # refused here, with its reason on the terminal, rather than by the engine once it starts
    check_live(loaded.config, RunOptions(demo=demo, live=engine.live, confirm_live=engine.yes_really))
    check_folders(loaded.config)
    log_path = loaded.config.journal_path.with_suffix(".log")  # the screen is the console's
    check_log(log_path)
    if not engine.in_process:
        from hotcoin_tui.child_engine import child_engine, run_args

        args = run_args(
            config=options.config,
            demo=engine.demo,
            exchange=engine.exchange,
            live=engine.live,
            yes_really=engine.yes_really,
            speed=engine.speed,
            journal=engine.journal,
            endpoint=engine.endpoint,
            sim_seed=engine.seed,
            symbols=engine.symbols,
            no_http=engine.no_http,
        )

        async def own_engine() -> int:
            data_dir = loaded.config.paths.data_dir
            async with child_engine(args, data_dir, log_path, nice=settings.nice, max_hz=settings.refresh_hz) as child:
                app = HotcoinApp(child.client, settings, engine_process=child)
                await app.run_async()
                return app.return_code or 0

        return asyncio.run(own_engine())
    from ml.runtime import load_scorer

    run_options = RunOptions(
        model_loader=load_scorer,
        demo=demo,
        live=engine.live,
        confirm_live=engine.yes_really,
        speed=engine.speed,
        http=not engine.no_http,
    )
    from engine.ops.logs import configure_logging, secret_values

    configure_logging(loaded.config.log_level, path=log_path, secrets=secret_values(loaded.config))
    with EngineThread(loaded.config, run_options) as client:
        app = HotcoinApp(client, settings)
        app.run()
    return app.return_code or 0


def check_log(path: Path) -> None:
    """Create the engine's log (beside the journal, 0600) before the engine starts or the screen
    is taken: a log that cannot be written (a folder by that name, a full disk) is refused in one
    line here, where it was a traceback from the console's start."""
    import os

    from engine.errors import ConfigError
    from engine.ops.logs import open_private

    try:
        os.close(open_private(path))
    except OSError as exc:
        raise ConfigError(
            f"cannot write the engine's log {path} ({exc.strerror}); the console keeps it beside the journal: "
            "clear that path, or point --journal (or journal.path, HOTCOIN_JOURNAL) at a file in a folder you can write in"
        ) from None


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """The same engine flags as `hotcoin run`."""

    demo: bool = False
    attach: bool = False
    exchange: str | None = None
    live: bool = False
    yes_really: bool = False
    speed: float = 1.0
    journal: Path | None = None
    endpoint: str | None = None
    seed: int | None = None
    symbols: int | None = None
    no_http: bool = False
    in_process: bool = False


def tui(
    demo: Annotated[bool, typer.Option("--demo", help="Simulated market in-process, paper trading (the default with no exchange configured).")] = False,
    attach: Annotated[bool, typer.Option("--attach", help="Attach to an engine started with `hotcoin run`; quitting detaches.")] = False,
    exchange: Annotated[str | None, typer.Option("--exchange", help="`binance` for Binance spot; `sim` for the simulated market.")] = None,
    live: Annotated[bool, typer.Option("--live/--paper", help="Real orders (needs mode = \"live\", keys and the confirmation flag below) or paper fills.")] = False,
    yes_really: Annotated[bool, typer.Option("--yes-really-trade-live", help="Confirm that --live sends real orders.")] = False,
    speed: Annotated[float, typer.Option("--speed", parser=number(1, 1000), help="Simulated clock speed (x1 to x1000).")] = 1.0,
    journal: JournalOpt = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", callback=http_endpoint, help="Another Binance-compatible host, e.g. http://127.0.0.1:8765.")] = None,
    sim_seed: Annotated[int | None, typer.Option("--sim-seed", help="Seed of the simulated market.")] = None,
    symbols: Annotated[int | None, typer.Option("--symbols", help="Symbols in the simulated market.")] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Do not serve /health and /metrics.")] = False,
    in_process: Annotated[bool, typer.Option("--in-process", help="Run the engine on a thread of this process instead of a child process (shares the interpreter lock with the screen).")] = False,
    fake: Annotated[bool, typer.Option("--fake", help="Run on the scripted fake engine (generated data, no network).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Fake engine: random seed.")] = 7,
    candidates: Annotated[int, typer.Option("--candidates", help="Fake engine: candidates in the pool.")] = 300,
    positions: Annotated[int, typer.Option("--positions", help="Fake engine: positions open at start.")] = 6,
    fake_mode: Annotated[str, typer.Option("--fake-mode", help="Fake engine: SIM, PAPER or LIVE (the banner).")] = "PAPER",
    step_s: Annotated[float, typer.Option("--step-s", parser=number(0.05), help="Fake engine: seconds per engine cycle (at least 0.05).")] = 0.5,
    config: ConfigOpt = None,
) -> None:
    """The trading console: candidates, positions, engine state, events, chart; close-all on ctrl+x."""
    refuse_demo_with_a_market(demo, exchange, endpoint)
    refuse_confirmation_without_live(live, yes_really)
    if fake:
        refuse_engine_flags_with_fake(
            {"--attach": attach, "--demo": demo, "--live": live, "--in-process": in_process, "--exchange": exchange, "--endpoint": endpoint,
             "--sim-seed": sim_seed, "--symbols": symbols}
        )  # fmt: skip
    options = TuiOptions(fake, seed, candidates, positions, fake_mode, step_s, config)
    engine = EngineOptions(demo, attach, exchange, live, yes_really, speed, journal, endpoint, sim_seed, symbols, no_http, in_process)
    raise typer.Exit(run_tui(options, engine))


def refuse_engine_flags_with_fake(flags: Mapping[str, object]) -> None:
    """`--fake` is the scripted fake engine: no market, no orders, no journal. A flag choosing the
    real engine beside it (`--fake --live`, `--attach --fake`) was dropped without a word, and the
    owner watched generated data believing it was the engine asked for."""
    for flag, value in flags.items():
        if value not in (None, False):
            raise typer.BadParameter(
                f"--fake runs the scripted fake engine (generated data, no orders) and cannot be combined with {flag}; "
                f"drop --fake to run the engine {flag} asks for, or drop {flag}",
                param_hint="--fake",
            )


def register(app: typer.Typer) -> None:
    app.command("tui")(tui)
