"""Build a running engine from config and options: market feed, broker, journal, ops server.

`hotcoin run` (headless) and `hotcoin tui` (in-process UI) both open an `EngineSession`;
the only difference is who watches it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import aiohttp
from pydantic import SecretStr

from engine.clock import SimClock
from engine.config import HotcoinConfig
from engine.config.locations import make_folder
from engine.config.sections.exchange import ExchangeSection
from engine.config.sections.sim import SimSection
from engine.discovery.social.ingest import bind_webhook_port
from engine.errors import ConfigError
from engine.execution.broker import Broker
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import Durable
from engine.journal.events import JournalEvent
from engine.journal.files import is_blank
from engine.journal.lock import journal_lock
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.exchange_clock import DAY_MS, ExchangeClock
from engine.ops.http import OpsServer, bind_ops_port
from engine.ops.notify.service import open_notifications
from engine.runtime import checkpoint
from engine.runtime.engine import Engine, trace_events
from engine.runtime.feed import MarketFeed, SimFeed
from engine.runtime.gateway_feed import GatewayFeed
from engine.runtime.local_client import LocalEngineClient
from engine.runtime.quiet_log import NoticeLog
from engine.runtime.recovery import BalanceAudit, Recovery, read_journal
from engine.runtime.snapshot import Mode
from engine.runtime.socket_server import default_socket_path, serve_engine_socket
from engine.runtime.sources import discovery_sources
from engine.signals.scorer import ModelLoad
from engine.sim.base import RingMarket
from engine.sim.market import SimMarket, open_market
from engine.sim.saved import NotResumable, load_market, save_market, saved_market_path, saved_time
from engine.sim.scenario import Move, PumpEvent
from engine.timefmt import utc_second

log = logging.getLogger("hotcoin.session")

SIM_API_KEY = "hotcoin-sim"  # the key (and secret) every run signs with on the simulated exchange

# Discovery's longest window is 60 minutes; the simulated market starts this much earlier and
# is fast-forwarded so the demo trades from its first minute.
WARMUP_MS = 65 * 60_000
# Random pumps come about once an hour market-wide; a demo watched for a minute at x60 should
# still see one whole trade, so the demo market scripts its first pump a few minutes in.
DEMO_PUMP_AFTER_MS = 3 * 60_000
# A demo restarted within this much market time of where its saved market stopped goes on
# trading that market. Every start steps through the warm-up; what lies beyond it (here at
# most 55 minutes) is stepped through too, at about 3 s an hour at 300 symbols on a slow
# machine. Further off, a new market starts, so a demo restarted days later starts in seconds.
RESUME_MAX_GAP_MS = 2 * 3_600_000


def script_demo_pump(market: SimMarket, at_ms: int) -> PumpEvent | None:
    """A +60% pump over 20 minutes on the most liquid free plain alt coin (recorded in ground
    truth); None, with a log line, where no alt coin is free: a small market (`--symbols 20`
    lists only majors, stablecoins and leveraged tokens) is a valid demo, just without the
    scripted pump, so it runs rather than stops."""
    batch = market.tickers()
    skip = ("BTC", "ETH", "BNB", "USDC", "BUSD", "TUSD")
    alts = [
        (float(batch.quote_volume_24h[i]), s)
        for i, s in enumerate(batch.symbols)
        if not s.split("/")[0].startswith(skip) and not s.split("/")[0].endswith(("UP", "DOWN"))
    ]
    for _, symbol in sorted(alts, reverse=True):
        move = Move(symbol, at_ms, at_ms + 20 * 60_000, at_ms + 60 * 60_000, math.log1p(0.6), 0.4, 15.0, 120_000)
        try:
            market.script(move)
        except ValueError:  # this coin already has a random move planned then: take the next
            continue
        return move.event()
    if alts:
        why = f"each of its {len(alts)} alt coins has a move planned then (lower sim.pumps_per_day, or raise sim.symbols)"
    else:
        why = f"the market has no alt coin (sim.symbols={len(batch.symbols)}: the first 10 are majors, stablecoins and leveraged tokens)"
    log.info("demo: no scripted pump, as %s", why)
    return None


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What the command line chose, beyond the config file."""

    demo: bool = True
    live: bool = False
    confirm_live: bool = False
    speed: float = 1.0
    http: bool = True
    start_ms: int | None = None  # sim start time; default: now
    demo_pump: bool = True  # script one pump early in a generated market, so a demo shows a trade
    # Simulated market only: every batch exactly this much sim time after the last, as fast as the
    # engine goes (deterministic; tests and soak runs). None follows the sim clock (`speed`).
    lockstep_ms: int | None = None
    attach_socket: bool = True  # serve the engine client on a 0600 Unix socket for `hotcoin tui --attach`
    # Loads the verified model for the signal path (`ml.runtime.load_scorer`); None: rules alone.
    model_loader: Callable[[HotcoinConfig], ModelLoad] | None = None


@dataclass(frozen=True, slots=True)
class EngineSession:
    engine: Engine
    client: LocalEngineClient
    journal_path: Path
    run_id: str
    ops_port: int | None


def new_run_id(now_ms: int) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ms / 1000)) + "-" + secrets.token_hex(3)


def mode_of(config: HotcoinConfig, options: RunOptions) -> Mode:
    if options.demo or config.exchange.name == "sim":
        return Mode.SIM
    return Mode.LIVE if options.live else Mode.PAPER


def check_live(config: HotcoinConfig, options: RunOptions) -> None:
    """Live trading needs `mode = "live"`, keys *and* an explicit confirmation; anything less is
    refused. The config key and the flag must agree: either alone is not enough to trade."""
    if not options.live:
        return
    if options.demo or config.exchange.name == "sim":
        raise ConfigError(
            "--live trades real money and cannot run on the simulated market (--demo, or no exchange "
            "configured: exchange.name = \"sim\" is the default); for Binance pass --exchange binance with "
            "API keys in the secrets file, or drop --live"
        )
    if config.mode != "live":
        raise ConfigError(
            f"--live sends real orders but the config says mode = \"{config.mode}\"; set mode = \"live\" in the "
            "config file (or HOTCOIN_MODE=live) to trade live, or drop --live"
        )
    if config.exchange.api_key is None or config.exchange.api_secret is None:
        raise ConfigError(
            "--live needs exchange.api_key and exchange.api_secret in the secrets file (chmod 600) "
            "or HOTCOIN_EXCHANGE__API_KEY / HOTCOIN_EXCHANGE__API_SECRET"
        )
    if not options.confirm_live:
        raise ConfigError("--live sends real orders; add --yes-really-trade-live to confirm")


JOURNAL_FOLDER_FIX = "point --journal (or journal.path, HOTCOIN_JOURNAL) at a file in a folder you can write in"


def check_folders(config: HotcoinConfig) -> None:
    """Make (or check) the folders a run writes in, refusing in one line with the setting to
    change: the data dir (the attach socket, spilled events, models) and the journal's folder
    (the journal, its lock, the saved demo market). Left to the first file made there, an
    unwritable or impossible path (a file where a folder belongs) was a traceback."""
    make_folder(
        config.paths.data_dir, "paths.data_dir", "point paths.data_dir (or HOTCOIN_PATHS__DATA_DIR) at a folder you can write in"
    )
    make_folder(config.journal_path.parent, "the journal's folder", JOURNAL_FOLDER_FIX)


def paper_despite_mode(config: HotcoinConfig, options: RunOptions) -> str | None:
    """The warning for a config saying `mode = "live"` on a run without --live: it runs paper, and
    whoever set the key expecting real orders should hear so rather than find out later."""
    if config.mode != "live" or options.live:
        return None
    return (
        "the config says mode = \"live\" but --live was not given: this run trades paper (no real orders); "
        "add --live --yes-really-trade-live to trade live, or set mode = \"paper\""
    )


def uses_exchange(config: HotcoinConfig, options: RunOptions) -> bool:
    """Market data from an exchange over the network, rather than the in-process simulated market:
    Binance (or a Binance-compatible `exchange.endpoint`), or the simulated exchange at an endpoint."""
    if options.demo:
        return False
    return config.exchange.name == "binance" or config.exchange.endpoint is not None


async def exchange_feed(config: HotcoinConfig, options: RunOptions, paper: PaperBroker) -> tuple[GatewayFeed, Broker]:
    """The gateway feed, and the broker that trades on it.

    Binance: `paper` (fills from the feed's book) unless `--live` (checked by `check_live`).
    The simulated exchange (`exchange.name = "sim"` with an endpoint): the exchange broker,
    since no real money is at stake and its order path is the thing worth exercising; it signs
    as `SIM_API_KEY` whatever keys are configured (`sim_section`). Its clock
    runs at `options.speed` (`--speed`, which must match the sim-exchange's: `check_sim_speed`)
    from the time it reports, and the gateway keeps that time (`ExchangeClock`), re-read from the
    same endpoint when the feed finds it moved (a sim-exchange restarted mid-run).
    """
    section = config.exchange
    on_sim = section.name == "sim"
    clock: ExchangeClock | None = None
    if on_sim:
        section = sim_section(section)
        assert section.endpoint is not None  # uses_exchange: the sim is only reached at an endpoint
        await check_sim_speed(section.endpoint, options.speed, section.request_timeout_ms)
        endpoint, timeout_ms = section.endpoint, section.request_timeout_ms
        clock = ExchangeClock(
            await server_time_ms(endpoint, timeout_ms), options.speed, fetch_time=lambda: server_time_ms(endpoint, timeout_ms)
        )
        newest = journal_newest_ms(config.journal_path)
        if newest is not None and clock.continue_after(newest):
            log.warning(
                "the sim-exchange's clock is behind this journal's newest event (%s): its times are shown %d day(s) "
                "later, so this run's events follow the earlier run's", utc_second(newest), clock.shift_ms // DAY_MS,
            )  # fmt: skip
    gateway = CcxtGateway(section, clock=clock, notify=notice_log())
    feed = GatewayFeed(gateway, clock=clock, markets_refresh_s=section.markets_refresh_s, quote_asset=section.quote_asset)
    if options.live or on_sim:
        ex = config.trading.execution
        broker = ExchangeBroker(
            gateway, taker_fee_rate=ex.fee_rate, maker_fee_rate=ex.maker_fee_rate,
            reconcile_interval_ms=ex.reconcile_interval_ms,
        )  # fmt: skip
        return feed, broker
    return feed, paper


def sim_section(section: ExchangeSection) -> ExchangeSection:
    """`section` signing as the simulated exchange's own `SIM_API_KEY`, whatever keys it holds.

    The sim accepts any key, so there is never a reason to send it the owner's: the keys in the
    secrets file are Binance's, and an endpoint that is "the sim" is only a URL in the config,
    a server anyone on the box (or the network) may run, which would then log the real key and
    could replay requests signed with the real secret. With keys configured the log says once
    that they are not used, so that no one wonders which account the sim is trading."""
    if section.api_key is not None or section.api_secret is not None:
        log.info(
            "exchange.name is \"sim\": the configured API keys (exchange.api_key, exchange.api_secret) are not sent to "
            "the simulated exchange at %s; this run signs with the sim's own key (%s)", section.endpoint, SIM_API_KEY,
        )  # fmt: skip
    return section.model_copy(update={"api_key": SecretStr(SIM_API_KEY), "api_secret": SecretStr(SIM_API_KEY)})


async def server_time_ms(endpoint: str, timeout_ms: int) -> int:
    """The exchange's clock (`GET /api/v3/time`); a host that does not answer is a named error."""
    url = endpoint.rstrip("/") + "/api/v3/time"
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as reply:
            reply.raise_for_status()
            return int((await reply.json())["serverTime"])
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"exchange.endpoint {endpoint}: no server time from {url} ({type(exc).__name__}: {exc}); "
            "start `hotcoin sim-exchange` and pass the URL it prints"
        ) from None


async def check_sim_speed(endpoint: str, speed: float, timeout_ms: int) -> None:
    """Refuse a `--speed` other than the sim-exchange's own. The engine's clock runs at `speed`
    from the time the exchange reports; at another speed the two part at once, every candle
    looks minutes old, and the engine blocked on `data_stale` with nothing naming the cause.
    The sim says its speed at `GET /_sim/stats`; a host without that route (another
    Binance-compatible endpoint), or one that does not answer it, is taken on trust as before."""
    url = endpoint.rstrip("/") + "/_sim/stats"
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as reply:
            if reply.status != 200:
                return
            theirs = float((await reply.json())["speed"])
    except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError):
        return
    if not math.isclose(theirs, speed):
        raise ConfigError(
            f"the sim-exchange at {endpoint} runs at x{theirs:g} but --speed is {speed:g}; pass --speed {theirs:g} "
            f"(or restart the sim-exchange with --speed {speed:g})"
        )


def sim_start_ms(start_ms: int, journal: Path) -> int:
    """Where the simulated clock starts: at `start_ms`, or just after the journal's newest event
    if that is later. A sim clock runs `speed` times faster than the wall, so an earlier run's
    events can lie ahead of the wall clock, and a restart at wall time would stamp its events
    (the `recovered` one first) before the fills it recovered."""
    newest = journal_newest_ms(journal)
    return start_ms if newest is None else max(start_ms, newest + 1)


def journal_newest_ms(journal: Path) -> int | None:
    """The time of the journal's newest event; None for no journal yet (a 0-byte file is a new
    one) or one with no events."""
    if not journal.is_file() or is_blank(journal):
        return None
    with JournalReader(journal) as reader:
        return reader.last_ts_ms()


class DemoMarket(NamedTuple):
    """The in-process market, the time its sim clock starts at (`sim_start_ms`, or later where
    the market's own time is), and whether it is a new one, still to be kept beside the journal."""

    market: RingMarket
    sim_ms: int
    new: bool


def demo_market(config: HotcoinConfig, options: RunOptions, start_ms: int) -> DemoMarket:
    """The in-process market for a start at `start_ms` (see `DemoMarket`).

    A generated market is one market for the journal's whole life: the one saved beside the
    journal when it stopped is resumed (`engine.sim.saved`), and stepped on to `WARMUP_MS`
    before the start if it stopped earlier, so positions recovered from the journal are marked
    at the prices their own market goes on to print. A new one starts when none was saved, or
    the saved one cannot be resumed: then the old market's prices are gone, and the warning says
    what that means for positions. The caller keeps a new one (`keep_demo_market`) once the
    journal has opened and been read, so that a crash too resumes it, but a start the journal
    refuses leaves no market file behind for the next start to "resume". A replay
    (`sim.data_dir`) is a function of time already: it is opened at the time."""
    sim_ms = sim_start_ms(start_ms, config.journal_path)
    settings = config.sim_market
    if settings.data_dir is not None:
        return DemoMarket(open_market(settings, sim_ms - WARMUP_MS), sim_ms, new=False)
    path = saved_market_path(config.journal_path)
    try:
        market = _resumed(path, settings, sim_ms) if path.exists() else None
    except (NotResumable, OSError) as exc:
        log.warning(
            "demo market: not resuming the one saved in %s, as %s; a new market starts, its prices unrelated "
            "to the old one's: positions recovered from the journal are marked, and their stops and targets "
            "checked, at the new market's prices", path, exc,
        )  # fmt: skip
        market = None
    if market is not None:
        sim_ms = max(sim_ms, market.now_ms)
        log.info("demo market: resumed from %s, where it stopped %.0f s of market time before this start", path, (sim_ms - market.now_ms) / 1000)
        market.advance_to(max(market.now_ms, sim_ms - WARMUP_MS))
        return DemoMarket(market, sim_ms, new=False)
    market = SimMarket(settings, sim_ms - WARMUP_MS)
    if options.demo_pump:
        script_demo_pump(market, sim_ms + DEMO_PUMP_AFTER_MS)
    return DemoMarket(market, sim_ms, new=True)


def _resumed(path: Path, settings: SimSection, sim_ms: int) -> SimMarket:
    """The market saved at `path`, if it stopped no more than `RESUME_MAX_GAP_MS` before `sim_ms`."""
    gap = sim_ms - saved_time(path, settings)
    if gap > RESUME_MAX_GAP_MS:
        raise NotResumable(
            f"it stopped {gap / 3_600_000:.1f} h of market time ago, longer than the "
            f"{RESUME_MAX_GAP_MS / 3_600_000:.0f} h a start catches up"
        )
    return load_market(path, settings)


def keep_demo_market(market: SimMarket, path: Path) -> bool:
    """Save the demo's market for the next start; a failure costs only that (it starts a new one)."""
    try:
        save_market(market, path)
    except OSError as exc:
        log.warning("demo market: cannot save it to %s (%s); the next start begins a new market", path, exc)
        return False
    return True


def order_durability(broker: Broker, journal: Journal) -> Durable | None:
    """What an order waits for before it leaves: a broker with state outside this process (an
    exchange) gets each `order_attempt` committed first, so a crash right after the exchange
    accepted it still leaves the attempt for recovery to look up; the paper broker needs none.
    After a journal failure, saved to the spill file counts: the exits still go out."""
    return None if isinstance(broker, PaperBroker) else journal.secure


def notice_log() -> NoticeLog:
    """The gateway's notices as the engine logs them: one line when a stream drops, one when it
    is back, not one per redial (`engine.runtime.quiet_log`)."""
    return NoticeLog(log)


@contextlib.asynccontextmanager
async def open_session(config: HotcoinConfig, options: RunOptions) -> AsyncIterator[EngineSession]:
    """A running engine's parts, for the `async with` block. The journal's writer lock is taken
    first, before the journal is read for recovery or the exchange is reached, and held until
    the session closes: a second engine on the same journal is refused, whatever its data dir."""
    check_live(config, options)
    check_folders(config)
    with bound_ports(config, options) as ports, journal_lock(config.journal_path):
        async with _started(config, options, ports) as session:
            yield session


@dataclass(frozen=True)
class Ports:
    """The engine's listening sockets: /health and /metrics, the social webhook."""

    ops: socket.socket | None
    webhook: socket.socket | None


@contextlib.contextmanager
def bound_ports(config: HotcoinConfig, options: RunOptions) -> Iterator[Ports]:
    """The ports this engine serves on, bound before anything is written: a start refused
    because a port is taken leaves no journal, saved market or `.lock` behind (it left all
    three, and the next start read the empty journal as a run that had happened). Closed at
    the end of the block; a server that took one closes it first."""
    social = config.discovery.social
    with contextlib.ExitStack() as stack:
        ops = webhook = None
        if options.http and config.ops.http_enabled:
            ops = stack.enter_context(contextlib.closing(bind_ops_port(config.ops.http_host, config.ops.http_port)))
        if social.webhook_port is not None and social.webhook_token is not None:
            webhook = stack.enter_context(contextlib.closing(bind_webhook_port(social.webhook_port)))
        yield Ports(ops, webhook)


@contextlib.asynccontextmanager
async def _started(config: HotcoinConfig, options: RunOptions, ports: Ports) -> AsyncIterator[EngineSession]:
    mode = mode_of(config, options)
    start_ms = options.start_ms if options.start_ms is not None else time.time_ns() // 1_000_000
    run_id = new_run_id(start_ms)
    paper = PaperBroker(FillModel.from_settings(config.trading.execution), id_prefix=f"paper-{run_id}")
    feed: MarketFeed
    broker: Broker = paper
    demo: DemoMarket | None = None
    if uses_exchange(config, options):
        feed, broker = await exchange_feed(config, options, paper)
    else:
        if config.sim.quote_asset != config.exchange.quote_asset:
            log.warning(
                "sim.quote_asset=%s is for `hotcoin sim-exchange`; this market is quoted in exchange.quote_asset=%s, "
                "the asset discovery trades", config.sim.quote_asset, config.exchange.quote_asset,
            )
        demo = demo_market(config, options, start_ms)
        clock = SimClock(demo.sim_ms, options.speed)
        if options.lockstep_ms is not None:
            feed = SimFeed(demo.market, clock, interval_ms=options.lockstep_ms, lockstep=True, warmup_ms=WARMUP_MS)
        else:
            feed = SimFeed(demo.market, clock, warmup_ms=WARMUP_MS)
    journal_path = config.journal_path
    # Should the writer fail, its unwritten events go beside the journal, else to the data dir;
    # opening takes back any an earlier run's failed writer saved there.
    async with Journal.open(journal_path, config.journal, spill_dir=config.paths.data_dir) as journal:
        # What an earlier run held and sent, read before this run writes anything.
        recovered = read_journal(
            journal_path, config.trading.capital.active.capital, breakeven_after_tp=config.trading.exits.breakeven_after_tp
        )
        recovery = None if recovered.empty else Recovery(recovered)
        if demo is not None and demo.new and isinstance(demo.market, SimMarket):  # the journal took this start
            kept = saved_market_path(journal_path)
            if keep_demo_market(demo.market, kept):
                log.info("demo market: a new one (sim.seed=%d), kept in %s for the next start to go on with", config.sim.seed, kept)
        # Each rotation journals recovery's state first, so retention may delete older archives.
        checkpoint.install(journal, journal_path, config.trading.capital.active.capital)
        model = options.model_loader(config) if options.model_loader is not None else None
        if model is not None:
            # A refused or unreadable model leaves the engine on rules alone: a warning, not an
            # info line among the start-up chatter; so is anything said about the one installed.
            about = {"model": model.model, "model_mode": model.mode}
            log.log(logging.WARNING if model.failed else logging.INFO, "model: %s", model.status, extra=about)
            for note in model.warnings:
                log.warning("model: %s", note, extra=about)
        # On an exchange, its balances are checked against our records every 5 minutes.
        # ... and its user stream pushes our orders' fills as they happen.
        audit = None
        order_stream = None
        if isinstance(broker, ExchangeBroker) and isinstance(broker.gateway, CcxtGateway):
            audit = BalanceAudit(broker.gateway, config.exchange.quote_asset)
            order_stream = broker.gateway.watch_orders
        engine = Engine(
            config, feed, broker, journal, run_id=run_id, mode=mode, model=model, recovery=recovery, audit=audit,
            durable=order_durability(broker, journal), order_stream=order_stream,
        )

        async def trace(trace_id: str) -> list[JournalEvent]:
            await journal.flush()
            return await trace_events(str(journal_path), trace_id)

        client = LocalEngineClient(engine.hub, engine.command, engine.candles, engine.fills, trace)
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(feed, SimFeed) and isinstance(feed.market, SimMarket):
                # Last out, once the engine has stopped stepping it: the next start goes on from here.
                stack.callback(keep_demo_market, feed.market, saved_market_path(journal_path))
            stack.push_async_callback(feed.close)
            ops: OpsServer | None = None
            if ports.ops is not None:
                ops = OpsServer(
                    engine.metrics,
                    lambda: engine.hub.latest,
                    lambda: {"journal": journal.unwritten},
                    config.ops.http_host,
                    config.ops.http_port,
                    max_snapshot_age_s=config.ops.health_max_snapshot_age_s,
                    now_ms=feed.now_ms,
                    clock_speed=options.speed,
                    first_batch_wait=engine.first_batch_wait_s,
                    streams=feed.streams,
                )
                await ops.start(ports.ops)
                stack.push_async_callback(ops.stop)
            if options.attach_socket:
                # `hotcoin tui --attach` reaches this engine here; closing a TUI never stops it.
                await stack.enter_async_context(serve_engine_socket(default_socket_path(config.paths.data_dir), client))
            bridge = await stack.enter_async_context(open_notifications(config, client, journal_path, engine.tap))
            engine.observe(bridge.on_event)
            if ops is not None:
                ops.watch_notifications(bridge.channels)
            await stack.enter_async_context(discovery_sources(config, mode, engine, ports.webhook))
            yield EngineSession(engine, client, journal_path, run_id, ops.port if ops else None)
