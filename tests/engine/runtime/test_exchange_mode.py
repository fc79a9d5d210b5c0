"""Exchange mode end to end: the engine trades a scripted pump on the simulated exchange
through the real ccxt.pro gateway (`GatewayFeed`), with the exchange broker (orders really
reach the sim's matching engine) and with the paper broker (fills from the feed's book); the
trace is the same shape as the in-process demo's and `hotcoin replay` renders it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from typer.testing import CliRunner

from engine.config.sections.state import StateSection
from engine.domain import Side
from engine.errors import MarketDataError, NonRetryableOrderError, RetryableOrderError
from engine.execution.exchange_broker import ExchangeBroker
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.events import JournalEvent
from engine.journal.reader import JournalReader
from engine.market.fake import FakeGateway, ManualClock
from engine.market.gateway import REST_STREAM, StreamHealth
from engine.runtime.gateway_feed import GatewayFeed
from engine.runtime.session import RunOptions, exchange_feed, open_session, uses_exchange
from engine.runtime.state_machine import EngineStateMachine, HealthInputs
from hotcoin_tui.cli import app
from tests.kit.domain import T0, make_batch, make_candle, make_intent, make_market
from tests.kit.events import AttemptCheckingBroker
from tests.kit.exchange_rig import ExchangeRig, exchange_config, exchange_rig
from tests.kit.sim_exchange import running_sim_exchange
from tests.kit.waiting import eventually, eventually_sync


async def trade_the_pump(rig: ExchangeRig, *, or_until_order_error: bool = False) -> None:
    """Run until the pump was entered and the position closed again, then stop."""
    engine = rig.engine
    task = asyncio.create_task(engine.run())

    def done() -> bool:
        if or_until_order_error and engine.state.errors.count(engine.hub.latest.ts_ms if engine.hub.latest else 0):
            return True
        return task.done() or (engine.stats.fills >= 2 and engine.core is not None and not engine.core.book.holdings)

    await eventually(done, timeout=60)
    engine.stop()
    await asyncio.wait_for(task, 10)
    await rig.journal.flush()


def entered_trace(path: Path) -> list[JournalEvent]:
    with JournalReader(path) as reader:
        entered = reader.traces(outcome="entered", limit=10)
        assert entered, "no trace entered"
        return reader.trace(entered[-1].trace_id)


def assert_pump_trace(events: list[JournalEvent], symbol: str | None) -> None:
    """The shape `test_engine_pump` asserts for the in-process demo."""
    kinds = [e.kind for e in events]
    assert {e.symbol for e in events} == {symbol}
    for kind in ("candidate_snapshot", "signal_snapshot", "risk_check", "order_attempt", "order_result", "fill", "position_update"):
        assert kind in kinds, f"{kind} missing from the trace"
    purposes = [e.payload["purpose"] for e in events if e.kind == "order_attempt"]
    assert purposes[0] == "entry"
    assert "take_profit" in purposes
    assert events[-1].kind == "position_update"
    assert events[-1].payload["action"] == "close"
    by_seq = {e.seq: e for e in events}
    chain = [events[-1]]
    while chain[-1].cause in by_seq:
        chain.append(by_seq[chain[-1].cause])
    assert chain[-1].kind == "candidate_snapshot"


@pytest.mark.parametrize("broker", ["exchange", "paper"])
async def test_scripted_pump_is_traded_and_explained(tmp_path: Path, broker: Literal["exchange", "paper"]) -> None:
    path = tmp_path / "journal.sqlite"
    async with exchange_rig(path, broker=broker) as rig:
        await trade_the_pump(rig)
        account = rig.account()
        assert rig.feed.batches > 0 and rig.feed.bad_batches == 0
        metrics = rig.engine.metrics.render().decode()
        assert 'hotcoin_feed_errors_total{kind="bad_batch"} 0.0' in metrics
        assert 'hotcoin_feed_errors_total{kind="rejected_batch"} 0.0' in metrics
    events = entered_trace(path)
    assert_pump_trace(events, rig.pump_symbol)
    assert rig.pump_symbol is not None
    market_id = rig.pump_symbol.replace("/", "")
    sent = [e.payload["client_order_id"] for e in events if e.kind == "order_attempt"]
    if broker == "exchange":
        # Every order of the trace reached the sim's matching engine once, and filled there.
        for cid in sent:
            assert cid in account.by_client_id, f"{cid} never reached the exchange"
        trades = [t for t in account.trades if t.symbol == market_id]
        bought = sum((t.qty for t in trades if t.side.value == "BUY"), Decimal(0))
        fills = [e for e in events if e.kind == "fill"]
        assert sum(Decimal(str(e.payload["quantity"])) for e in fills if e.payload["side"] == Side.BUY.value) == bought
        step = rig.server.venue.market(market_id).filters.step_size
        assert bought > 0 and account.free(market_id.removesuffix("USDT")) < step, "the position was not flat on the exchange"
    else:
        assert not account.trades, "paper mode sent an order to the exchange"

    result = CliRunner().invoke(app, ["replay", events[0].trace_id[:10], "--journal", str(path)])  # type: ignore[index]
    assert result.exit_code == 0, result.output
    assert "entered and closed" in result.output
    assert "take_profit" in result.output


async def test_buy_commission_in_base_asset_is_kept_out_of_the_position(tmp_path: Path) -> None:
    """Binance (and the sim) charge a buy's commission in the coin bought: the position holds
    the net quantity, so every exit is covered by the account and the last one empties it."""
    path = tmp_path / "journal.sqlite"
    async with exchange_rig(path) as rig:
        await trade_the_pump(rig, or_until_order_error=True)
        account = rig.account()
    with JournalReader(path) as reader:
        failed = [e for e in reader.events(kinds=["order_result"]) if e.payload.get("error_class")]
    assert not failed, failed[0].payload["error"]
    assert rig.pump_symbol is not None
    market_id = rig.pump_symbol.replace("/", "")
    fees = [t.commission for t in account.trades if t.symbol == market_id and t.side.value == "BUY"]
    assert fees and all(f > 0 for f in fees)
    step = rig.server.venue.market(market_id).filters.step_size
    assert account.free(rig.pump_symbol.split("/")[0]) < step, "more than dust left after the last exit"


async def test_session_wires_the_sim_exchange_to_the_exchange_broker(tmp_path: Path) -> None:
    async with running_sim_exchange() as server:
        config = exchange_config(**{"exchange.endpoint": server.base_url, "trading.execution.reconcile_interval_ms": 4000})
        options = RunOptions(demo=False, speed=60.0)
        assert uses_exchange(config, options)
        assert not uses_exchange(config, RunOptions(demo=True))
        paper = PaperBroker(FillModel())
        feed, broker = await exchange_feed(config, options, paper)
        try:
            assert isinstance(feed, GatewayFeed)
            assert isinstance(broker, ExchangeBroker)
            assert broker.reconcile_interval_ms == 4000  # the setting was never handed over
            markets = await feed.markets()
            assert "BTC/USDT" in markets
            batch = await feed.next_batch()
            assert batch.ts_ms >= server.venue.clock.start_ms  # the exchange's clock, not ours
        finally:
            await feed.close()


async def test_binance_paper_mode_keeps_the_paper_broker(tmp_path: Path) -> None:
    async with running_sim_exchange() as server:
        config = exchange_config(**{"exchange.name": "binance", "exchange.endpoint": server.base_url})
        paper = PaperBroker(FillModel())
        feed, broker = await exchange_feed(config, RunOptions(demo=False), paper)
        try:
            assert broker is paper
            batch = await feed.next_batch()
            bid, ask = feed.book("BTC/USDT")
            assert 0 < bid < ask
            assert len(batch) == 3
        finally:
            await feed.close()


def test_hotcoin_run_trades_against_a_sim_exchange_process(tmp_path: Path) -> None:
    """`hotcoin run --exchange sim --endpoint URL` against `hotcoin sim-exchange` in another
    process: it connects, cycles on the exchange's data for a few seconds, exits 0 with a summary."""
    exe = Path(sys.executable).parent / "hotcoin"
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    server = subprocess.Popen(
        [str(exe), "sim-exchange", "--port", "0", "--symbols", "40", "--speed", "10", "--push-interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:"), base
        journal = tmp_path / "journal.sqlite"
        run = subprocess.run(
            [str(exe), "run", "--exchange", "sim", "--endpoint", base, "--speed", "10", "--duration", "3",
             "--no-http", "--journal", str(journal)],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        match = re.search(r"run \S+: (\d+) cycles, (\d+) orders sent, (\d+) fills", run.stdout)
        assert match is not None, run.stdout
        assert int(match.group(1)) > 3
        assert f"journal {journal}" in run.stdout
    finally:
        server.terminate()
        eventually_sync(lambda: server.poll() is not None, timeout=10)
        server.communicate()
    with JournalReader(journal) as reader:
        kinds = {e.kind for e in reader.events(kinds=["run_start", "run_stop"])}
    assert kinds == {"run_start", "run_stop"}


# ---------------------------------------------------------------------- GatewayFeed on a fake gateway


def fake_feed(*, markets_refresh_s: float = 3600.0) -> tuple[FakeGateway, GatewayFeed]:
    """A feed over `FakeGateway` whose clock only moves when the test says (heartbeats after
    10 ms; a failed first market load retried twice, at once)."""
    gateway = FakeGateway({"DOGE/USDT": make_market("DOGE/USDT")}, clock=ManualClock(T0))
    feed = GatewayFeed(
        gateway, clock=gateway.clock, idle_s=0.01, markets_refresh_s=markets_refresh_s, first_load_delays_s=(0.0, 0.0)
    )
    return gateway, feed


async def test_a_silent_stream_yields_heartbeats_at_the_exchange_time() -> None:
    gateway, feed = fake_feed()
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.3}, ts_ms=T0 - 500))
    first = await feed.next_batch()
    assert first.ts_ms == T0 - 500  # the exchange's event time, not the local clock
    assert feed.book("DOGE/USDT") == (first.bid[0], first.ask[0])
    gateway.clock.advance(120)
    beat = await feed.next_batch()
    assert len(beat) == 0 and beat.ts_ms == T0 + 120_000
    assert feed.data_age_s(beat.ts_ms) == pytest.approx(120.5)
    assert feed.heartbeats == 1
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.31}, ts_ms=T0 + 60_000))  # older than the heartbeat
    late = await feed.next_batch()
    assert late.ts_ms == T0 + 120_001  # never backwards: the engine's time only moves on
    assert feed.data_age_s(late.ts_ms) == pytest.approx(60.001)
    await feed.close()


async def test_bad_stream_data_becomes_a_heartbeat_once_started_and_a_hard_error_before() -> None:
    gateway, feed = fake_feed()
    gateway.fail_next("watch_tickers", NonRetryableOrderError("subscription refused"))
    with pytest.raises(NonRetryableOrderError):
        await feed.next_batch()
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.3}))
    await feed.next_batch()
    gateway.fail_next("watch_tickers", MarketDataError("undecodable message"))  # type: ignore[arg-type]
    beat = await feed.next_batch()
    assert len(beat) == 0 and feed.bad_batches == 1
    assert feed.last_error is not None and "undecodable" in feed.last_error
    assert feed.error_counts() == {"bad_batch": 1, "stream": 1, "candles": 0, "markets": 0}
    await feed.close()


async def test_ws_down_and_stream_rows_follow_gateway_health() -> None:
    gateway, feed = fake_feed()
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.3}))
    await feed.next_batch()
    now = T0 + 45_000
    gateway.set_health(StreamHealth("tickers", connected=True, last_message_ms=T0))
    assert feed.ws_down_s(now) == 0.0
    gateway.set_health(
        StreamHealth("tickers", last_message_ms=T0, reconnects=2, last_error="RequestTimeout", down_since_ms=T0 + 5_000)
    )
    gateway.set_health(StreamHealth(REST_STREAM, rate_limited_until_ms=now + 30_000, last_error="DDoSProtection"))
    gateway.clock.advance(45)
    assert feed.ws_down_s(now) == pytest.approx(40.0)  # since the drop, not since the last message
    assert feed.ws_down_s(now + 60_000) == pytest.approx(40.0)  # event times ahead of the gateway's clock add nothing
    rows = {r.name: r for r in feed.streams(now)}
    assert rows["tickers"].status == "down" and "attempt 2" in rows["tickers"].detail
    assert rows["rest"].status == "error" and "rate limited for 30 s" in rows["rest"].detail
    await feed.close()


async def test_a_quiet_user_stream_is_connected_not_stale() -> None:
    """The user stream only speaks when one of our orders moves: an hour without a trade is
    an hour of silence. Its row read "stale" (bold yellow) 10 s after each order; a dropped
    one still reads down."""
    gateway, feed = fake_feed()
    now = T0 + 3_600_000
    gateway.set_health(StreamHealth("orders", connected=True, last_message_ms=T0))
    gateway.set_health(StreamHealth("balance", connected=True))
    gateway.set_health(StreamHealth("tickers", connected=True, last_message_ms=T0))
    rows = {r.name: r for r in feed.streams(now)}
    assert rows["tickers"].status == "stale"
    assert rows["orders"].status == "connected" and "last event 3600 s ago" in rows["orders"].detail
    assert rows["balance"].status == "connected" and "no event yet" in rows["balance"].detail
    gateway.set_health(StreamHealth("orders", last_message_ms=T0, reconnects=1, down_since_ms=T0 + 5_000))
    assert {r.name: r for r in feed.streams(now)}["orders"].status == "down"
    await feed.close()


@pytest.mark.parametrize(
    ("health", "at_s", "age_s", "down_s", "reasons"),
    [
        pytest.param(
            StreamHealth("tickers", connected=True, last_message_ms=T0), 125, 125, 0, {"data_stale"},
            id="connected-but-silent",
        ),
        pytest.param(
            StreamHealth("tickers", last_message_ms=T0, down_since_ms=T0 + 115_000), 125, 125, 10, {"data_stale"},
            id="silent-then-dropped",
        ),
        pytest.param(
            StreamHealth("tickers", last_message_ms=T0, down_since_ms=T0 + 1_000), 122, 122, 121, {"data_stale", "ws_down"},
            id="dropped-while-fresh",
        ),
        pytest.param(
            StreamHealth("tickers", connected=True, last_message_ms=T0), 60, 60, 0, set(), id="reconnected",
        ),
    ],
)
async def test_ws_down_counts_from_the_drop_and_staleness_from_the_last_data(
    health: StreamHealth, at_s: int, age_s: float, down_s: float, reasons: set[str]
) -> None:
    """Two rules, two measures: silence (`data_age_s`, degraded from 90 s) and a dropped
    socket (`ws_down_s`, degraded after 120 s). A stream that went quiet before it dropped
    has been down only since the drop; with staleness out of reach, the drop alone counts."""
    gateway, feed = fake_feed()
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.3}, ts_ms=T0))
    await feed.next_batch()
    gateway.set_health(health)
    now = T0 + at_s * 1000
    gateway.clock.advance(at_s)  # the gateway's clock, which stamps the drop, reads `now` too
    assert feed.data_age_s(now) == pytest.approx(age_s)
    assert feed.ws_down_s(now) == pytest.approx(down_s)
    inputs = HealthInputs(now, data_age_s=feed.data_age_s(now), ws_down_s=feed.ws_down_s(now))
    _, found = EngineStateMachine(StateSection()).evaluate(inputs)
    assert {r.code for r in found} == reasons
    _, found = EngineStateMachine(StateSection(stale_degraded_s=600, stale_blocked_s=900)).evaluate(inputs)
    assert {r.code for r in found} == reasons - {"data_stale"}
    await feed.close()


async def test_a_first_market_load_rides_out_transient_failures_only() -> None:
    """Nothing can be traded without filters: the first load is retried through transient
    failures (one per delay), then fatal; a failure no retry mends is fatal at once."""
    gateway, feed = fake_feed()
    gateway.fail_next("load_markets", RetryableOrderError("RequestTimeout"))
    gateway.fail_next("load_markets", RetryableOrderError("503"))
    assert set(await feed.markets()) == {"DOGE/USDT"}  # the third attempt
    assert feed.markets_errors == 2 and feed.last_error is not None and "503" in feed.last_error

    gateway, feed = fake_feed()
    for _ in range(3):
        gateway.fail_next("load_markets", RetryableOrderError("503"))
    with pytest.raises(RetryableOrderError):
        await feed.markets()  # out of retries
    assert set(await feed.markets()) == {"DOGE/USDT"}  # a later call starts over

    gateway, feed = fake_feed()
    gateway.fail_next("load_markets", NonRetryableOrderError("API-key format invalid", code=-2014))
    gateway.fail_next("load_markets", RetryableOrderError("503"))
    with pytest.raises(NonRetryableOrderError):
        await feed.markets()
    assert feed.markets_errors == 0


async def test_failed_candle_fetches_and_market_reloads_keep_the_loop_going() -> None:
    gateway, feed = fake_feed(markets_refresh_s=1e-6)
    assert set(await feed.markets()) == {"DOGE/USDT"}
    gateway.fail_next("load_markets", RetryableOrderError("503"))
    assert set(await feed.markets()) == {"DOGE/USDT"}  # the last good copy
    assert feed.markets_errors == 1
    gateway.push_candles([make_candle("DOGE/USDT", open_ms=T0 - 120_000 + i * 60_000) for i in range(3)])
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.3}, ts_ms=T0 + 30_000))
    await feed.next_batch()
    assert [c.open_ms for c in await feed.candles("DOGE/USDT", "1m", 2)] == [T0 - 60_000, T0]  # anchored to the bar
    gateway.fail_next("fetch_candles", RetryableOrderError("429"))
    assert await feed.candles("DOGE/USDT", "1m", 2) == []
    assert feed.candle_errors == 1
    await feed.close()


async def test_warmup_rebuilds_the_last_hour_from_klines() -> None:
    """One batch per 15 s slot from 1m candles: the price is the minute's close, and the 24 h
    quote volume walks back from today's figure so each minute adds exactly its own volume."""
    gateway, feed = fake_feed()
    minutes = 65
    start = T0 - minutes * 60_000
    candles = [
        make_candle("DOGE/USDT", open_ms=start + k * 60_000, close=0.30 + k / 1000, volume=1000.0 + k) for k in range(minutes)
    ]
    gateway.push_candles(candles)
    gateway.push_tickers(make_batch({"DOGE/USDT": 0.4}, ts_ms=T0, quote_volume_24h={"DOGE/USDT": 5e6}))
    batches = [b async for b in feed.warmup(15_000)]
    assert len(batches) == minutes * 4
    assert [b.ts_ms for b in batches] == [start + 15_000 * (i + 1) for i in range(minutes * 4)]
    assert batches[-1].quote_volume_24h[0] == pytest.approx(5e6)  # meets today's figure at the end
    minute_ends = [b for i, b in enumerate(batches) if i % 4 == 3]
    added = [minute_ends[k].quote_volume_24h[0] - minute_ends[k - 1].quote_volume_24h[0] for k in range(1, minutes)]
    assert added == pytest.approx([c.volume * c.close for c in candles[1:]])
    assert [b.last[0] for b in minute_ends] == pytest.approx([c.close for c in candles])
    first = await feed.next_batch()  # the live stream carries on after the warm-up, never before it
    assert first.ts_ms > batches[-1].ts_ms


async def test_warmup_is_skipped_where_it_would_cost_too_much_weight() -> None:
    gateway = FakeGateway({s: make_market(s) for s in ("DOGE/USDT", "XRP/USDT", "ADA/USDT")}, clock=ManualClock(T0))
    feed = GatewayFeed(gateway, clock=gateway.clock, warmup_max_symbols=2)
    assert [b async for b in feed.warmup(15_000)] == []
    assert "fetch_candles" not in gateway.calls


async def test_an_exchange_session_commits_each_order_attempt_before_the_order_leaves(tmp_path: Path) -> None:
    """The session wires the journal's flush into the router for an exchange broker (`OrderRouter`
    write-ahead): the broker sees an order only once its attempt is in the file."""
    path = tmp_path / "journal.sqlite"
    async with running_sim_exchange() as server:
        config = exchange_config(**{"exchange.endpoint": server.base_url, "journal.path": str(path)})
        options = RunOptions(demo=False, speed=60.0, http=False, attach_socket=False)
        async with open_session(config, options) as session:
            router = session.engine.router
            assert isinstance(router.broker, ExchangeBroker)
            assert session.engine.order_stream == router.broker.gateway.watch_orders  # type: ignore[attr-defined]
            broker = router.broker = AttemptCheckingBroker(path)
            await router.send_all([make_intent(client_order_id=f"hc-0123456789abcdef-e{n}") for n in (1, 2)], T0)
            await router.send(make_intent(client_order_id="hc-0123456789abcdef-e3"), T0)
    assert broker.unjournaled == []
