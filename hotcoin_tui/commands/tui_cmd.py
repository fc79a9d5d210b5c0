"""`hotcoin tui`: the trading console.

The command is options in, one `EngineClient` out of `build_client`, and the app run on it.
`--fake` runs on the scripted `FakeEngineClient` (generated market, no network, no keys);
the real engine's in-process client plugs in to `build_client` beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hotcoin_tui.commands.options import ConfigOpt

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


def build_client(options: TuiOptions) -> EngineClient:
    """The one place that decides which engine the console talks to."""
    from engine.errors import ConfigError

    if options.fake:
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
    raise ConfigError("hotcoin tui: no engine to connect to yet; run `hotcoin tui --fake` for the scripted demo engine")


def run_tui(options: TuiOptions) -> int:
    """Load the config's [tui] section, build the client, run the console; the exit code."""
    from engine.config import load_config
    from hotcoin_tui.app import HotcoinApp

    settings = load_config(options.config).config.tui
    client = build_client(options)
    app = HotcoinApp(client, settings)
    app.run()
    return app.return_code or 0


def tui(
    fake: Annotated[bool, typer.Option("--fake", help="Run on the scripted fake engine (generated data, no network).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Fake engine: random seed.")] = 7,
    candidates: Annotated[int, typer.Option("--candidates", help="Fake engine: candidates in the pool.")] = 300,
    positions: Annotated[int, typer.Option("--positions", help="Fake engine: positions open at start.")] = 6,
    fake_mode: Annotated[str, typer.Option("--fake-mode", help="Fake engine: SIM, PAPER or LIVE (the banner).")] = "PAPER",
    step_s: Annotated[float, typer.Option("--step-s", min=0.05, help="Fake engine: seconds per engine cycle.")] = 0.5,
    config: ConfigOpt = None,
) -> None:
    """The trading console: candidates, positions, engine state, events, chart; close-all on ctrl+x."""
    options = TuiOptions(fake, seed, candidates, positions, fake_mode, step_s, config)
    raise typer.Exit(run_tui(options))


def register(app: typer.Typer) -> None:
    app.command("tui")(tui)
