"""`hotcoin doctor`'s social rows: what a start would run and whether it can, and a running
engine's own counters (a missing JSONL file was counted only on /metrics, and doctor said
nothing about social sources at all)."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from engine.config import LoadedConfig, load_config
from engine.ops.check import Check, Status
from engine.ops.doctor import run_doctor
from engine.ops.doctor_social import check_counts, check_social, parse_events, read_events
from engine.ops.http import OpsServer
from engine.ops.listen import listening_socket
from engine.ops.metrics import EngineMetrics
from engine.runtime.session import RunOptions, open_session
from tests.kit.waiting import eventually

TOKEN = "a-long-random-webhook-token"


def _social(tmp_path: Path, **cli: object) -> LoadedConfig:
    env = {"HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_TOKEN": TOKEN} if "discovery.social.webhook_port" in cli else {}
    return load_config(env=env, cli={"paths.data_dir": str(tmp_path / "data"), **cli})


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_no_source_configured_is_a_skip_that_says_what_it_costs(tmp_path: Path) -> None:
    [row] = check_social(_social(tmp_path).config.discovery.social, engine_running=False)
    assert (row.name, row.status) == ("social", Status.SKIP) and "social part stays 0" in row.detail


@pytest.mark.parametrize(
    ("make", "status", "says"),
    [
        pytest.param(None, Status.WARN, "does not exist: the tail reads nothing until it appears", id="missing"),
        pytest.param("dir", Status.FAIL, "is not a regular file", id="a-folder"),
        pytest.param("file", Status.OK, "(12 bytes)", id="a-file"),
    ],
)
def test_the_jsonl_file_is_judged_as_the_tail_would(tmp_path: Path, make: str | None, status: Status, says: str) -> None:
    path = tmp_path / "posts.jsonl"
    if make == "dir":
        path.mkdir()
    elif make == "file":
        path.write_text('{"id": "1"}\n')
    named = by_name(check_social(_social(tmp_path, **{"discovery.social.jsonl_path": str(path)}).config.discovery.social, engine_running=False))
    assert named["social"].detail == "sources: jsonl"
    assert named["social.jsonl"].status is status and says in named["social.jsonl"].detail, named["social.jsonl"]


def test_a_taken_webhook_port_fails_before_a_start_would(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        social = _social(tmp_path, **{"discovery.social.webhook_port": port}).config.discovery.social
        row = by_name(check_social(social, engine_running=False))["social.webhook"]
        assert row.status is Status.FAIL and f"port {port} on 127.0.0.1 is taken" in row.detail and "would refuse to start" in row.detail
        assert "social.webhook" not in by_name(check_social(social, engine_running=True))  # a running engine holds it: not asked
    row = by_name(check_social(social, engine_running=False))["social.webhook"]
    assert row.status is Status.OK and "is free" in row.detail


def test_the_counters_warn_for_a_source_whose_posts_do_not_get_through() -> None:
    events = {"jsonl.file_missing": 40, "webhook.webhook_posts": 3, "webhook.unauthorized": 0, "social.mentions": 7, "windows.x": 1}
    row = check_counts(["jsonl", "webhook"], events)
    assert row.status is Status.WARN
    assert row.detail == "since the engine started: jsonl: file_missing 40; webhook: webhook_posts 3; 7 coin mentions taken"
    assert row.fix.startswith("jsonl.file_missing mean posts are not getting through")
    fine = check_counts(["webhook"], {"webhook.webhook_posts": 3})
    assert fine.status is Status.OK and "webhook: webhook_posts 3; 0 coin mentions" in fine.detail
    assert check_counts(["x"], {}).detail == "since the engine started: x: nothing counted; 0 coin mentions taken"


async def test_the_counters_are_read_from_the_engines_metrics_page() -> None:
    metrics = EngineMetrics()
    metrics.count_discovery(lambda: {"jsonl.bad_line": 2, "social.mentions": 5})
    server = OpsServer(metrics, lambda: None, dict, "127.0.0.1", 0)
    await server.start(listening_socket("127.0.0.1", 0))
    try:
        assert server.port is not None
        async with aiohttp.ClientSession() as session:
            assert await read_events(session, "127.0.0.1", server.port) == {"jsonl.bad_line": 2, "social.mentions": 5}
    finally:
        await server.stop()
    async with aiohttp.ClientSession() as session:
        said = await read_events(session, "127.0.0.1", server.port)
    assert isinstance(said, str) and f"http://127.0.0.1:{server.port}/metrics could not be read" in said
    assert parse_events('hotcoin_discovery_events_total{kind="x.bad_post"} 3.0\nother 1\n') == {"x.bad_post": 3}


async def test_doctor_shows_a_running_engines_missing_jsonl_file(tmp_path: Path) -> None:
    """End to end: an engine tailing a file that does not exist, and `run_doctor` beside it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli = {
        "discovery.social.jsonl_path": str(tmp_path / "typo.jsonl"), "discovery.social.jsonl_poll_ms": 10,
        "ops.http_enabled": True, "ops.http_port": port, "sim.symbols": 40,
    }  # fmt: skip
    loaded = _social(tmp_path, **cli)
    async with open_session(loaded.config, RunOptions(demo=True, attach_socket=True, lockstep_ms=5_000)) as session:
        await eventually(lambda: 'kind="jsonl.file_missing"' in session.engine.metrics.render().decode(), timeout=10)
        named = by_name(await run_doctor(loaded))
    assert named["engine"].status is Status.OK
    assert named["social.jsonl"].status is Status.WARN
    counters = named["social.counters"]
    assert counters.status is Status.WARN and "jsonl: file_missing " in counters.detail, counters
