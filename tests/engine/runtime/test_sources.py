"""Slow discovery inputs reach a running engine: posts appended to a JSONL file are folded
into discovery's mention counts at the next cycle; no source runs unless configured."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import orjson

from engine.config import load_config
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


async def test_the_configured_webhook_takes_posts_only_with_its_token(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "a-long-random-webhook-token"
    env = {"HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_TOKEN": token}
    quiet = {"sim.symbols": 40, "sim.pumps_per_day": 0, "sim.dumps_per_day": 0, "sim.listings_per_day": 0, "ops.http_enabled": False}
    config = load_config(env=env, cli={**quiet, "discovery.social.webhook_port": port}).config  # secrets: not on the CLI
    post = {"id": "1", "ts_ms": START_MS, "text": "$PEPE to the moon"}
    url = f"http://127.0.0.1:{port}/posts"
    async with pump_rig(tmp_path / "j.sqlite", config) as rig, discovery_sources(config, Mode.SIM, rig.engine) as names:
        assert names == ["webhook"]
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=post) as resp:
                assert resp.status == 401
            async with http.post(url, json=post, headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
                assert await resp.json() == {"accepted": 1, "rejected": 0}
