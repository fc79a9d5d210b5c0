"""Options shared by several commands, declared once."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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


def journal_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Every `--journal` names a file: refuse a directory here, once, for every command.

    An empty path (`-j "$J"` with J unset) reaches us as `.`, the current folder. Left to the
    commands, `run`, `tui`, `backtest` and `doctor` derived the journal's archive folder and
    saved-market file from it and died on a traceback (`PosixPath('.') has an empty name`),
    while the journal readers each said it in their own words; one check before any command
    runs gives them all the same usage error."""
    if value is None:
        return value
    path = value.expanduser()
    if path.is_dir():
        flag = param.opts[0] if param.opts else "--journal"
        empty = " (an empty path is the current folder)" if value == Path() else ""
        raise typer.BadParameter(
            f"{path} is a directory{empty}; point {flag} at the journal file, e.g. {path / 'journal.sqlite'}"
        )
    return value


JournalOpt = Annotated[
    Path | None,
    typer.Option(
        "--journal",
        "-j",
        help="Journal SQLite file (default: <data_dir>/journal.sqlite).",
        envvar="HOTCOIN_JOURNAL",
        show_envvar=True,
        callback=journal_file,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def number(min: float | None = None, max: float | None = None) -> Callable[[str | float], float]:
    """The parser of a float option (`typer.Option(parser=...)`), `min` to `max` (inclusive)
    when given, that refuses NaN by name. Typer's own bounds refused it by a bound it was not
    past (every comparison with NaN is false): `run --speed nan` said "Input should be less
    than or equal to 1000", and a float option with no bounds took it as a value (a fault
    rate, a ban of NaN seconds). Infinity is a number, and left to the bounds."""

    def parse(given: str | float) -> float:
        try:
            value = float(given)
        except ValueError:
            raise typer.BadParameter(f"{given!r} is not a number") from None
        if math.isnan(value):
            raise typer.BadParameter("nan is not a number")
        if min is not None and value < min:
            raise typer.BadParameter(f"Input should be greater than or equal to {min:g}")
        if max is not None and value > max:
            raise typer.BadParameter(f"Input should be less than or equal to {max:g}")
        return value

    return parse


def http_endpoint(value: str | None) -> str | None:
    """`--endpoint` must be an http(s) URL with a host, checked as `hotcoin collect` checks it
    (`endpoint_parts`), before the command does anything: `run --endpoint 127.0.0.1:8765` (no
    scheme) went on to ask that "URL" for the server time and failed in ccxt's words."""
    from engine.errors import ConfigError
    from engine.market.endpoint import endpoint_parts

    if value is not None:
        try:
            endpoint_parts(value, what="--endpoint")
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def refuse_demo_with_a_market(demo: bool, exchange: str | None, endpoint: str | None) -> None:
    """`--demo` is the in-process simulated market; with `--exchange binance` or `--endpoint`
    on the same line the owner asked for two markets, and running the demo silently would
    look like trading the other one."""
    if not demo:
        return
    other = f"--endpoint {endpoint}" if endpoint else f"--exchange {exchange}" if exchange not in (None, "sim") else None
    if other:
        raise typer.BadParameter(
            f"--demo runs the simulated market in-process and cannot be combined with {other}; "
            "drop --demo to trade there, or drop the other to run the demo",
            param_hint="--demo",
        )


def refuse_confirmation_without_live(live: bool, yes_really: bool) -> None:
    """`--yes-really-trade-live` confirms `--live`; alone it traded paper without a word, and an
    owner who meant to trade real orders (and forgot `--live`) learnt it from the fills."""
    if yes_really and not live:
        raise typer.BadParameter(
            "--yes-really-trade-live confirms --live, which is not on this line, so this run would trade paper; "
            "add --live to send real orders, or drop --yes-really-trade-live to trade paper",
            param_hint="--yes-really-trade-live",
        )


def refuse_sim_flags_off_the_sim(sim_in_process: bool, market: str, flags: Mapping[str, object]) -> None:
    """The simulated market's flags (`flags`: name -> value, None when not given) shape only the
    market the engine generates in-process (`sim_in_process`). Trading elsewhere (`market`: the
    sim-exchange at an --endpoint, Binance, an engine attached to) they were taken and ignored,
    so the owner believed in a seed or a symbol count the market never had."""
    if sim_in_process:
        return
    for flag, value in flags.items():
        if value is not None:
            raise typer.BadParameter(
                f"{flag} shapes the simulated market run in-process, and this run trades on {market}, where it has no "
                f"effect; drop {flag} (a `hotcoin sim-exchange` takes its own --seed and --symbols)",
                param_hint=flag,
            )


def market_name(exchange: str, endpoint: str | None) -> str:
    """The market a run that is not the in-process sim trades on, in words."""
    return f"the exchange at {endpoint}" if endpoint else f"{exchange}"


# The times a time option takes, as epoch ms: 1970-01-01 to 9999-12-31 (UTC). Outside them a
# number is no time the journal or the candles can hold: datetime, SQLite and the C library
# overflow on it (an OverflowError, errno 75), so it is refused as "not a time" instead.
FIRST_MS = 0
LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def is_calendar_ms(ms: float) -> bool:
    """Whether `ms` (epoch ms) is a time between 1970 and 9999; NaN and infinities are not."""
    return FIRST_MS <= ms <= LAST_MS
