"""Slow discovery inputs reach a running engine: posts appended to a JSONL file are folded
into discovery's mention counts at the next cycle; no source runs unless configured."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest

from engine.config import HotcoinConfig, load_config
from engine.discovery.social.source import SocialPost
from engine.errors import ConfigError
from engine.runtime.snapshot import Mode
from engine.runtime.sources import discovery_sources
from tests.kit.engine import START_MS, pump_rig, quiet_config
from tests.kit.waiting import eventually


async def test_jsonl_posts_reach_discovery(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("")
    # Polled every 20 ms: the lockstep engine runs hours of sim time per wall second, and a post
    # older than the mention horizon is (rightly) dropped as stale.
    config = quiet_config(**{"discovery.social.jsonl_path": str(posts), "discovery.social.jsonl_poll_ms": 20})
    async with pump_rig(tmp_path / "j.sqlite", config) as rig:
        engine = rig.engine
        base = rig.pump_symbol.split("/")[0]
        async with discovery_sources(config, Mode.SIM, engine) as names:
            assert names == ["jsonl"]
            task = asyncio.create_task(engine.run())
            await eventually(lambda: engine.stats.cycles > 0, timeout=30)
            now = engine.hub.latest.ts_ms if engine.hub.latest else START_MS
            lines = [
                {"id": i, "ts_ms": now + i, "text": f"${base} to the moon, bullish!", "followers": 50_000}
                for i in range(5)
            ]
            posts.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
            await eventually(lambda: engine.discovery.social.counters["mentions"] >= 5, timeout=30)
            engine.stop()
            await asyncio.wait_for(task, 10)


async def test_no_source_runs_unless_configured(tmp_path: Path) -> None:
    async with pump_rig(tmp_path / "j.sqlite") as rig, discovery_sources(quiet_config(), Mode.SIM, rig.engine) as names:
        assert names == []


def webhook_config(port: int) -> HotcoinConfig:
    env = {"HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_TOKEN": TOKEN}
    quiet = {"sim.symbols": 40, "sim.pumps_per_day": 0, "sim.dumps_per_day": 0, "sim.listings_per_day": 0, "ops.http_enabled": False}
    return load_config(env=env, cli={**quiet, "discovery.social.webhook_port": port}).config  # secrets: not on the CLI


TOKEN = "a-long-random-webhook-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_configured_webhook_takes_posts_only_with_its_token(tmp_path: Path) -> None:
    port = free_port()
    config = webhook_config(port)
    url = f"http://127.0.0.1:{port}/posts"
    async with pump_rig(tmp_path / "j.sqlite", config) as rig, discovery_sources(config, Mode.SIM, rig.engine) as names:
        assert names == ["webhook"]
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.stats.cycles > 0, timeout=30)  # markets loaded: the coins are known
        engine.stop()
        await asyncio.wait_for(task, 10)
        post = {"id": "1", "ts_ms": engine.feed.now_ms(), "text": f"${rig.pump_symbol.split('/')[0]} to the moon"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=post) as resp:
                assert resp.status == 401
            async with http.post(url, json=post, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
                assert await resp.json() == {"accepted": 1, "rejected": 0, "rejections": []}


async def test_the_webhook_says_why_a_post_will_not_count_and_metrics_count_it(tmp_path: Path) -> None:
    """The webhook answered {"accepted": 1} for a post discovery dropped at once (epoch seconds,
    a fixed old time, no known coin), and no counter of discovery or its sources reached /metrics."""
    port = free_port()
    config = webhook_config(port)
    async with pump_rig(tmp_path / "j.sqlite", config) as rig, discovery_sources(config, Mode.SIM, rig.engine):
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.stats.cycles > 0, timeout=30)
        engine.stop()
        await asyncio.wait_for(task, 10)
        now = engine.feed.now_ms()
        base = rig.pump_symbol.split("/")[0]
        posts = [
            {"id": "s", "ts_ms": now // 1000, "text": f"${base} moon"},
            {"id": "u", "ts_ms": now, "text": "$NOSUCHCOIN moon"},
            {"id": "ok", "ts_ms": now, "text": f"${base}USDT moon"},
        ]
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{port}/posts", json=posts, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            answer = await resp.json()
        assert answer["accepted"] == 1
        assert [(r["id"], r["reason"]) for r in answer["rejections"]] == [("s", "stale_post"), ("u", "unknown_symbol")]
        assert "epoch milliseconds" in answer["rejections"][0]["detail"]
        engine.discovery.on_posts([SocialPost("jsonl", "old", now - 86_400_000, "", 0, f"${base}", (base,))], now)
        metrics = engine.metrics.render().decode()
        assert 'hotcoin_discovery_events_total{kind="social.stale_post"} 1.0' in metrics
        assert 'hotcoin_discovery_events_total{kind="webhook.rejected:stale_post"} 1.0' in metrics
        assert 'hotcoin_discovery_events_total{kind="webhook.webhook_posts"} 1.0' in metrics


async def test_a_missing_jsonl_file_is_counted_on_metrics(tmp_path: Path) -> None:
    """A mistyped jsonl_path ran silently forever: its file_missing counter reached nothing."""
    config = quiet_config(**{"discovery.social.jsonl_path": str(tmp_path / "typo.jsonl"), "discovery.social.jsonl_poll_ms": 10})
    async with pump_rig(tmp_path / "j.sqlite", config) as rig, discovery_sources(config, Mode.SIM, rig.engine):
        await eventually(lambda: 'kind="jsonl.file_missing"' in rig.engine.metrics.render().decode(), timeout=10)


async def test_a_webhook_port_in_use_stops_the_start_with_a_config_error(tmp_path: Path) -> None:
    """A port in use crashed `hotcoin run` with a raw OSError traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = webhook_config(port)
        async with pump_rig(tmp_path / "j.sqlite", config) as rig:
            with pytest.raises(ConfigError, match=rf"^discovery\.social\.webhook_port={port}: cannot listen on 127\.0\.0\.1:{port} .*pick a free port"):
                async with discovery_sources(config, Mode.SIM, rig.engine):
                    pass
