from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import aiohttp
import pytest

from engine.config import load_config
from engine.errors import ConfigError
from engine.ops.http import OpsServer, health_document, health_status
from engine.ops.listen import listening_socket
from engine.ops.metrics import EngineMetrics
from engine.ops.notify import ChannelReport
from engine.runtime.session import RunOptions, open_session
from engine.runtime.snapshot import EngineSnapshot, StreamRow
from tests.engine.ops.notify_sink import HttpSink
from tests.kit.domain import T0
from tests.kit.snapshots import make_snapshot, make_status


def test_health_document_before_first_cycle() -> None:
    doc = health_document(None, {"journal": 3}, T0)
    assert doc["state"] == "starting"
    assert doc["queues"] == {"journal": 3}


def test_health_document_reports_freshness_and_reasons() -> None:
    snap = make_snapshot(status=make_status(state="degraded", reasons=("data_stale 95s >= 90s",)))
    doc = health_document(snap, {}, T0)
    assert doc["state"] == "degraded"
    assert doc["reasons"] == ["data_stale 95s >= 90s"]
    streams = doc["streams"]
    assert isinstance(streams, list)
    assert streams[0]["age_s"] == pytest.approx(1.5)
    assert doc["snapshot_age_s"] == 0.0


def test_ages_grow_with_the_clock_when_snapshots_stop() -> None:
    doc = health_document(make_snapshot(), {}, T0 + 40_000)
    assert doc["snapshot_age_s"] == pytest.approx(40.0)
    streams = doc["streams"]
    assert isinstance(streams, list)
    assert streams[0]["age_s"] == pytest.approx(41.5)


@pytest.mark.parametrize(
    ("state", "reasons", "age_ms", "code"),
    [
        ("tradeable", (), 0, 200),
        ("degraded", ("spread_wide",), 29_000, 200),
        ("degraded", ("data_stale 95s >= 90s",), 0, 503),
        ("tradeable", (), 31_000, 503),
        ("blocked", (), 0, 503),
    ],
    ids=["fresh", "degraded-not-stale", "data-stale", "loop-stopped", "blocked"],
)
def test_health_status(state: str, reasons: tuple[str, ...], age_ms: int, code: int) -> None:
    doc = health_document(make_snapshot(status=make_status(state=state, reasons=reasons)), {}, T0 + age_ms)
    assert health_status(doc, 30.0) == code


def test_health_status_while_starting_is_200() -> None:
    assert health_status(health_document(None, {}, T0), 30.0) == 200


def test_a_start_that_never_sees_the_market_answers_503_once_past_the_allowance() -> None:
    """/health said 200 "starting" forever when no cycle ever completed (a half-open ticker
    stream): the wait for the first batch is held to the snapshot allowance; the warm-up is not."""
    tickers = (StreamRow("tickers", "connected", None, "subscribed, no message yet"),)
    warming = health_document(None, {}, T0, waiting_s=None, max_wait_s=30.0, streams=tickers)
    assert warming["reasons"] == ["no cycle completed yet (warming up)"]
    assert health_status(warming, 30.0) == 200
    waiting = health_document(None, {}, T0, waiting_s=12.0, max_wait_s=30.0, streams=tickers)
    assert waiting["reasons"] == ["no cycle completed yet"]
    assert health_status(waiting, 30.0) == 200
    stalled = health_document(None, {}, T0, waiting_s=45.2, max_wait_s=30.0, streams=tickers)
    assert stalled["state"] == "starting"
    assert stalled["reasons"] == ["no cycle since start (45 s)"]
    assert stalled["waiting_s"] == 45.2
    assert stalled["streams"] == [
        {"name": "tickers", "status": "connected", "last_message_ms": None, "detail": "subscribed, no message yet", "age_s": None}
    ]
    assert health_status(stalled, 30.0) == 503


async def test_the_server_holds_the_first_batch_wait_to_the_wall_allowance() -> None:
    """At --speed 60 the snapshot allowance is 60x in sim time; the wait for the first batch is
    read on the wall clock, so it is held to the unscaled allowance. Without the engine's wait
    the server counts from its own start."""
    wait: list[float | None] = [None]
    tickers = (StreamRow("tickers", "connected", None),)
    server = OpsServer(
        EngineMetrics(), lambda: None, dict, "127.0.0.1", 0, max_snapshot_age_s=5.0, now_ms=lambda: T0, clock_speed=60.0,
        first_batch_wait=lambda: wait[0], streams=lambda now: tickers,
    )
    bare = OpsServer(EngineMetrics(), lambda: None, dict, "127.0.0.1", 0, max_snapshot_age_s=0.05, now_ms=lambda: T0)
    await server.start()
    await bare.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{server.port}/health"
            async with http.get(url) as resp:
                assert resp.status == 200  # warming up
            wait[0] = 6.0
            async with http.get(url) as resp:
                assert resp.status == 503
                doc = await resp.json()
            assert doc["reasons"] == ["no cycle since start (6 s)"]
            assert [s["name"] for s in doc["streams"]] == ["tickers"]
            await asyncio.sleep(0.1)
            async with http.get(f"http://127.0.0.1:{bare.port}/health") as resp:
                assert resp.status == 503
    finally:
        await server.stop()
        await bare.stop()


def test_metrics_follow_the_snapshot() -> None:
    m = EngineMetrics()
    m.update_from_snapshot(make_snapshot())
    text = m.render().decode()
    assert "hotcoin_positions 1.0" in text
    assert "hotcoin_engine_state 0.0" in text
    assert 'hotcoin_stream_age_seconds{stream="tickers"} 1.5' in text


async def test_snapshot_gauges_are_not_exported_before_the_first_snapshot() -> None:
    """For about a second after a restart, /metrics said equity 0 and 0 positions while the
    journal held a position: every alert on equity falling or positions at 0 fired at each
    restart. Those gauges are now absent until a snapshot knows them."""
    latest: EngineSnapshot | None = None
    server = OpsServer(EngineMetrics(), lambda: latest, dict, "127.0.0.1", 0, now_ms=lambda: T0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as r:
                starting = await r.text()
            latest = make_snapshot()
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as r:
                known = await r.text()
    finally:
        await server.stop()
    gauges = ("pool_size", "equity_quote", "day_pnl_quote", "unrealised_pnl_quote", "exposure_quote", "positions", "engine_state")
    for name in gauges:
        assert f"hotcoin_{name} " not in starting and f"hotcoin_{name} " in known, name
    assert "hotcoin_positions 1.0" in known
    assert "hotcoin_cycle_seconds_count 0.0" in starting  # the rest is served from the start, as before


def test_feed_errors_are_counters_read_at_each_scrape() -> None:
    """The feed's error tallies were kept and never shown: a feed failing all day looked the
    same on /metrics as a healthy one."""
    counts = {"stream": 0, "bad_batch": 0}
    m = EngineMetrics()
    m.count_feed_errors(lambda: counts)
    assert 'hotcoin_feed_errors_total{kind="stream"} 0.0' in m.render().decode()
    counts["stream"] = 3
    text = m.render().decode()
    assert "# TYPE hotcoin_feed_errors_total counter" in text
    assert 'hotcoin_feed_errors_total{kind="stream"} 3.0' in text


async def test_a_scrape_measures_stream_ages_now_and_reports_queue_depths() -> None:
    """`hotcoin_stream_age_seconds` went on reading the last snapshot's age when snapshots
    stopped, and `hotcoin_queue_depth` was declared and never set."""
    server = OpsServer(EngineMetrics(), make_snapshot, lambda: {"journal": 7}, "127.0.0.1", 0, now_ms=lambda: T0 + 40_000)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/metrics") as r:
            text = await r.text()
    finally:
        await server.stop()
    assert 'hotcoin_stream_age_seconds{stream="tickers"} 41.5' in text
    assert 'hotcoin_queue_depth{queue="journal"} 7.0' in text


@pytest.mark.parametrize(("speed", "code"), [(1.0, 503), (60.0, 200)])
async def test_the_stalled_loop_allowance_is_wall_seconds_on_a_fast_sim_clock(speed: float, code: int) -> None:
    """At --speed 60 the engine's clock runs 60x: a snapshot 40 clock-seconds old is 0.7 s of
    wall time, a healthy engine, which read as a dead one (503) against the 30 s allowance."""
    server = OpsServer(
        EngineMetrics(), make_snapshot, dict, "127.0.0.1", 0, max_snapshot_age_s=30.0, now_ms=lambda: T0 + 40_000,
        clock_speed=speed,
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/health") as r:
            assert r.status == code
    finally:
        await server.stop()


@pytest.mark.parametrize(("state", "code"), [("tradeable", 200), ("degraded", 200), ("blocked", 503)])
async def test_server_serves_health_and_metrics_on_loopback(state: str, code: int) -> None:
    latest: EngineSnapshot = make_snapshot(status=make_status(state=state))
    metrics = EngineMetrics()
    metrics.orders.labels("filled").inc()
    server = OpsServer(metrics, lambda: latest, lambda: {"journal": 0}, "127.0.0.1", 0, now_ms=lambda: T0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/health") as resp:
                assert resp.status == code
                body = await resp.json()
                assert body["state"] == state
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
                text = await resp.text()
                assert 'hotcoin_orders_total{result="filled"} 1.0' in text
    finally:
        await server.stop()


async def test_a_stalled_loop_answers_503() -> None:
    now = [T0]
    server = OpsServer(EngineMetrics(), make_snapshot, dict, "127.0.0.1", 0, max_snapshot_age_s=5.0, now_ms=lambda: now[0])
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/health") as resp:
                assert resp.status == 200
            now[0] = T0 + 6_000
            async with http.get(f"http://127.0.0.1:{server.port}/health") as resp:
                assert resp.status == 503
                assert (await resp.json())["snapshot_age_s"] == pytest.approx(6.0)
    finally:
        await server.stop()


async def test_a_taken_port_is_a_config_error_naming_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = OpsServer(EngineMetrics(), lambda: None, dict, "127.0.0.1", port)
        with pytest.raises(ConfigError, match=rf"ops.http_port={port}.*--no-http"):
            await server.start()
        await server.stop()  # nothing left to clean up: stopping again is harmless


@pytest.mark.parametrize(("host", "warns"), [("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("localhost", False)])
async def test_listening_beyond_loopback_is_a_warning_at_start(
    host: str, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """ops.http_host = 0.0.0.0 put /health and /metrics on the network and only `hotcoin doctor`
    said so. It is served on a 127.0.0.1 listener here whatever the host (tests reach nothing else)."""
    server = OpsServer(EngineMetrics(), make_snapshot, dict, host, 0, now_ms=lambda: T0)
    with caplog.at_level(logging.WARNING, logger="hotcoin.ops.http"):
        await server.start(listening_socket("127.0.0.1", 0))
    await server.stop()
    said = [r.getMessage() for r in caplog.records]
    if warns:
        assert said == [f"/health and /metrics listen on {host}, not loopback; set ops.http_host = 127.0.0.1 unless a firewall guards the port"]
    else:
        assert said == []


FAILING = ChannelReport(queued=4, sent=10, failed=2, dropped=1, retries=7, failing=3, last_error="telegram sendMessage: HTTP 502")
FINE = ChannelReport(queued=0, sent=12, failed=0, dropped=0, retries=0, failing=0, last_error="")


async def test_notification_channels_show_on_health_and_metrics_without_a_503() -> None:
    """A channel failing all day showed only in the log: /health and /metrics said nothing, so
    whoever watched them never learnt the alerts were not arriving. A failing channel is shown,
    and /health stays 200: restarting the engine would not mend Telegram."""
    metrics = EngineMetrics()
    server = OpsServer(metrics, make_snapshot, dict, "127.0.0.1", 0, now_ms=lambda: T0)
    await server.start()
    server.watch_notifications(lambda: {"telegram": FAILING, "feishu": FINE})
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/health") as resp:
                assert resp.status == 200
                notify = (await resp.json())["notify"]
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
                text = await resp.text()
    finally:
        await server.stop()
    assert notify["telegram"] == {
        "ok": False, "queued": 4, "sent": 10, "failed": 2, "dropped": 1, "retries": 7, "failing": 3,
        "last_error": "telegram sendMessage: HTTP 502", "unreported": 0, "last_lost": "", "last_lost_ago_s": None,
    }
    assert notify["feishu"]["ok"] is True
    for line in (
        'hotcoin_notify_queue_depth{channel="telegram"} 4.0',
        'hotcoin_notifications_total{channel="telegram",outcome="sent"} 10.0',
        'hotcoin_notifications_total{channel="telegram",outcome="failed"} 2.0',
        'hotcoin_notifications_total{channel="telegram",outcome="dropped"} 1.0',
        'hotcoin_notify_retries_total{channel="telegram"} 7.0',
        'hotcoin_notify_failing_attempts{channel="telegram"} 3.0',
        'hotcoin_notify_failing_attempts{channel="feishu"} 0.0',
        'hotcoin_notify_unreported_losses{channel="telegram"} 0.0',
    ):
        assert line in text, line


def test_health_lists_no_channels_when_none_is_watched() -> None:
    assert health_document(None, {}, T0)["notify"] == {}
    assert health_status(health_document(make_snapshot(), {}, T0, {"telegram": FAILING}), 30.0) == 200


async def test_a_session_shows_its_notification_channels(tmp_path: Path) -> None:
    """The runtime handed /health and /metrics only the journal's queue."""
    sink = HttpSink()
    await sink.start()
    cli = {
        "sim.symbols": 40, "sim.pumps_per_day": 0, "sim.dumps_per_day": 0, "sim.listings_per_day": 0,
        "ops.http_port": 0, "journal.path": str(tmp_path / "j.sqlite"), "paths.data_dir": str(tmp_path / "data"),
    }
    config = load_config(env={"HOTCOIN_NOTIFY__FEISHU__WEBHOOK_URL": f"{sink.base_url}/feishu/hook/x"}, cli=cli).config
    try:
        async with open_session(config, RunOptions(demo=True, attach_socket=False, lockstep_ms=5_000)) as session:
            base = f"http://127.0.0.1:{session.ops_port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/health") as resp:
                    notify = (await resp.json())["notify"]
                async with http.get(f"{base}/metrics") as resp:
                    text = await resp.text()
    finally:
        await sink.stop()
    assert list(notify) == ["feishu"] and notify["feishu"]["ok"] is True
    assert 'hotcoin_notify_queue_depth{channel="feishu"}' in text


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused_not_read_as_every_interface(host: str) -> None:
    """The resolver reads an empty host as 0.0.0.0: /health and /metrics would have listened
    on every interface for an `ops.http_host` left blank."""
    from engine.errors import ConfigError
    from engine.ops.http import bind_ops_port

    with pytest.raises(ConfigError, match=r"cannot listen on .*:0 \(an empty host would listen on every interface; name one"):
        bind_ops_port(host, 0)
