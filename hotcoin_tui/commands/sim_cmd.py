"""`hotcoin sim-exchange`: serve the simulated market as a Binance-compatible exchange.

Prints `http://127.0.0.1:PORT` on its own line as soon as it listens (scripts and tests
read that line), then serves until Ctrl-C or SIGTERM and shuts down cleanly. Faults can be
set here and changed while it runs with `POST /_sim/faults` on the same port.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hotcoin_tui.commands.options import ConfigOpt, number

if TYPE_CHECKING:
    from engine.config.sections.sim import SimSection
    from engine.sim.server import FaultPlan


PUSH_EXCHANGE_S = 30.0  # at most this many exchange seconds between market pushes by default


def register(app: typer.Typer) -> None:
    app.command("sim-exchange")(sim_exchange)


def sim_exchange(
    config: ConfigOpt = None,
    port: Annotated[int, typer.Option("--port", help="TCP port on 127.0.0.1; 0 picks a free one.", min=0, max=65535)] = 0,
    seed: Annotated[int | None, typer.Option("--seed", help="Market seed (default: sim.seed from config).")] = None,
    speed: Annotated[
        float | None, typer.Option("--speed", parser=number(), help="Sim seconds per wall second, 1..1000 (default: sim.speed).")
    ] = None,
    symbols: Annotated[int | None, typer.Option("--symbols", help="Symbols at start (default: sim.symbols).")] = None,
    balance: Annotated[
        float | None, typer.Option("--balance", parser=number(), help="USDT each new API key starts with (default: sim.start_balance_usdt).")
    ] = None,
    push_interval: Annotated[
        float | None,
        typer.Option(
            "--push-interval",
            parser=number(0.01),
            help="Wall seconds between market-stream pushes (default: 1, or 30 exchange seconds' worth when faster; at least 0.01).",
        ),
    ] = None,
    drop_ws_every: Annotated[
        float | None, typer.Option("--drop-ws-every", parser=number(), help="Drop every WebSocket this often (seconds).")
    ] = None,
    drop_ws_abrupt: Annotated[
        bool, typer.Option("--drop-ws-abrupt", help="Drops abort TCP instead of sending close 1001.")
    ] = False,
    latency_ms: Annotated[int, typer.Option("--latency-ms", help="Added delay on REST replies and WS frames.")] = 0,
    rate_limit_burst: Annotated[int, typer.Option("--rate-limit-burst", help="The first K REST calls get 429.")] = 0,
    ban_s: Annotated[float, typer.Option("--ban", parser=number(0), help="Answer every REST call 418 for this many seconds (0 or more).")] = 0.0,
    server_errors: Annotated[int, typer.Option("--server-errors", help="The first K REST calls get a 5xx.")] = 0,
    hang_requests: Annotated[int, typer.Option("--hang-requests", help="The first K REST calls hang.")] = 0,
    hang_s: Annotated[float, typer.Option("--hang-s", parser=number(), help="How long a hung REST call waits.")] = 30.0,
    late_orders: Annotated[
        int,
        typer.Option(
            "--late-orders",
            help="The first K orders get no reply (as --lost-reply-as says) and are placed --late-order-s later.",
        ),
    ] = 0,
    late_order_s: Annotated[
        float, typer.Option("--late-order-s", parser=number(), help="How late a late order is placed (exchange seconds).")
    ] = 30.0,
    lost_reply_as: Annotated[
        str,
        typer.Option(
            "--lost-reply-as",
            help="A late order's lost reply: timeout (none for --hang-s, then -1007), 5xx or -1007 (at once).",
        ),
    ] = "-1007",
    ticker_nan_rate: Annotated[
        float, typer.Option("--ticker-nan-rate", parser=number(), help="Share of tickers with NaN bid/ask/high/low.")
    ] = 0.0,
    ticker_malformed_rate: Annotated[
        float, typer.Option("--ticker-malformed-rate", parser=number(), help="Share of tickers with an unparsable last price.")
    ] = 0.0,
    ws_duplicate_rate: Annotated[float, typer.Option("--ws-duplicate-rate", parser=number(), help="Share of WS messages sent twice.")] = 0.0,
    ws_reorder_rate: Annotated[
        float, typer.Option("--ws-reorder-rate", parser=number(), help="Share of WS messages sent after the next one.")
    ] = 0.0,
    ws_half_open: Annotated[
        bool, typer.Option("--ws-half-open", help="WebSockets go silent and ignore pings.")
    ] = False,
) -> None:
    """Serve a simulated Binance spot exchange (REST + WebSocket) on 127.0.0.1."""
    faults = {
        "drop_ws_every_s": drop_ws_every,
        "drop_ws_abrupt": drop_ws_abrupt,
        "latency_ms": latency_ms,
        "rate_limit_burst": rate_limit_burst,
        "server_errors": server_errors,
        "hang_requests": hang_requests,
        "hang_s": hang_s,
        "late_orders": late_orders,
        "late_order_s": late_order_s,
        "lost_reply_as": lost_reply_as,
        "ticker_nan_rate": ticker_nan_rate,
        "ticker_malformed_rate": ticker_malformed_rate,
        "ws_duplicate_rate": ws_duplicate_rate,
        "ws_reorder_rate": ws_reorder_rate,
        "ws_half_open": ws_half_open,
    }
    overrides = {"seed": seed, "speed": speed, "symbols": symbols, "start_balance_usdt": balance}
    run_sim_exchange(config, port, {k: v for k, v in overrides.items() if v is not None}, faults, ban_s, push_interval)


def run_sim_exchange(
    config: Path | None,
    port: int,
    sim_overrides: dict[str, Any],
    faults: dict[str, Any],
    ban_s: float,
    push_interval_s: float | None,
) -> None:
    """Build the market and the server from config < flags, then serve until a signal."""
    from pydantic import ValidationError

    from engine.config import load_config
    from engine.config.sections.sim import SimSection
    from engine.errors import ConfigError
    from engine.sim.server import FaultPlan

    base = load_config(config).config.sim
    try:
        settings = SimSection.model_validate({**base.model_dump(), **sim_overrides})
        plan = FaultPlan.model_validate(faults)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid sim-exchange option ({problems}); see `hotcoin sim-exchange --help`") from None
    asyncio.run(_serve(settings, plan, port, ban_s, push_interval(push_interval_s, settings.speed)))


def push_interval(asked_s: float | None, speed: float) -> float:
    """Wall seconds between market pushes: as asked, else 1 s, or less at a speed where 1 s
    of wall time is more than `PUSH_EXCHANGE_S` of the exchange's. At x300 a 1 s push left an
    engine's data 300 exchange seconds old just before each push, past the 300 s block: it
    flipped between tradeable and blocked twice a minute. An interval asked for that spans
    more than that is served, with a warning."""
    if asked_s is None:
        return min(1.0, PUSH_EXCHANGE_S / speed)
    if asked_s * speed > PUSH_EXCHANGE_S:
        typer.secho(
            f"warning: --push-interval {asked_s:g} at --speed {speed:g} pushes every {asked_s * speed:g} exchange "
            f"seconds: an engine reads its data as that old before each push (it degrades at 90 s, blocks at 300 s "
            f"by default); give --push-interval {PUSH_EXCHANGE_S / speed:.2g} or less",
            fg=typer.colors.YELLOW, err=True,
        )  # fmt: skip
    return asked_s


async def _serve(settings: SimSection, plan: FaultPlan, port: int, ban_s: float, push_interval_s: float) -> None:
    from engine.errors import ConfigError
    from engine.sim.market import open_market
    from engine.sim.server import SimExchangeServer

    now = int(time.time() * 1000)
    source = open_market(settings, now - now % settings.step_ms)
    # Building the market took a while and its start is rounded to a step: bring it to the
    # wall's time now, so the exchange's clock starts in step with ours (`hotcoin doctor`
    # read a sim-exchange at --speed 1 as ~1 s behind and failed the clock check).
    source.advance_to(max(source.now_ms, int(time.time() * 1000)))
    server = SimExchangeServer(
        source,
        speed=settings.speed,
        start_balance=Decimal(str(settings.start_balance_usdt)),
        port=port,
        push_interval_s=push_interval_s,
        faults=plan,
        seed=settings.seed,
    )
    if ban_s > 0:
        server.faults.ban(ban_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as exc:  # the port is taken, or not ours to bind
        raise ConfigError(
            f"cannot serve on 127.0.0.1:{port} ({exc.strerror}); pick a free --port (0 lets the system choose one)"
        ) from exc
    try:
        sys.stdout.write(server.base_url + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()
