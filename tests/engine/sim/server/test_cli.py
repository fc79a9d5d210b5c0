"""`hotcoin sim-exchange` as a user runs it: a child process on the generated market."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.kit.sim_exchange import make_binance_client

REPO = Path(__file__).resolve().parents[4]


async def _start(*flags: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hotcoin_tui.cli",
        "sim-exchange",
        *flags,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    return proc, line


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_cli_serves_the_generated_market_to_ccxt_and_stops_on_sigterm() -> None:
    proc, base_url = await _start("--symbols", "12", "--speed", "100", "--seed", "3", "--push-interval", "0.1")
    try:
        assert base_url.startswith("http://127.0.0.1:")
        ex: Any = make_binance_client(base_url)
        try:
            markets = await ex.load_markets()
            assert len(markets) == 12 and "BTC/USDT" in markets
            tickers = await ex.watch_tickers()
            assert all(t["last"] and t["last"] > 0 for t in tickers.values())
            order = await ex.create_order("BTC/USDT", "market", "buy", 0.01)
            assert order["status"] == "closed"
            assert (await ex.fetch_balance())["BTC"]["free"] == pytest.approx(0.00999)
        finally:
            await ex.close()
        async with aiohttp.ClientSession() as session:
            async with session.get(base_url + "/_sim/ground_truth") as resp:
                truth = await resp.json()
            assert set(truth) == {"now_ms", "pumps", "listings"}
            async with session.post(base_url + "/_sim/faults", json={"rate_limit_burst": 1}) as resp:
                assert resp.status == 200
            async with session.get(base_url + "/api/v3/time") as resp:
                assert resp.status == 429
    finally:
        code, err = await _stop(proc)
    assert code == 0, err


async def test_cli_rejects_bad_fault_flags_with_a_message() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hotcoin_tui.cli",
        "sim-exchange",
        "--ticker-nan-rate",
        "2",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "ticker_nan_rate" in err.decode() and out == b""


def test_cli_refuses_a_negative_ban() -> None:
    """`--ban -5` was accepted (and banned nothing): the server started."""
    done = subprocess.run(
        [sys.executable, "-m", "hotcoin_tui.cli", "sim-exchange", "--port", "0", "--ban", "-5"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert "--ban" in done.stderr and "greater than or equal to 0" in done.stderr


async def test_cli_on_a_port_in_use_says_so_and_how_to_pick_another() -> None:
    first, base_url = await _start("--symbols", "4")
    try:
        port = base_url.rsplit(":", 1)[1]
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotcoin_tui.cli", "sim-exchange", "--symbols", "4", "--port", port,
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 2 and out == b""
        assert f"cannot serve on 127.0.0.1:{port}" in err.decode() and "pick a free --port" in err.decode()
        assert "Traceback" not in err.decode()
    finally:
        code, err_text = await _stop(first)
    assert code == 0, err_text


async def test_at_speed_1_the_exchange_clock_is_the_wall_s() -> None:
    """The market's start was rounded down to a step and then built for a while, so the served
    clock ran ~1 s behind the wall and `hotcoin doctor` failed its clock check on a sim."""
    import time

    from engine.ops.check import Status
    from engine.ops.doctor import binance_time, measure_clock

    proc, base_url = await _start("--symbols", "12", "--speed", "1", "--seed", "3")
    try:
        async with aiohttp.ClientSession() as session:
            check = await measure_clock(lambda: binance_time(session, base_url), lambda: time.time_ns() // 1_000_000)
        assert check.status is Status.OK, check.detail
        skew = int(check.detail.split(" ms")[0].rsplit(" ", 1)[1].replace(",", ""))
        assert abs(skew) < 250, check.detail
    finally:
        await _stop(proc)
