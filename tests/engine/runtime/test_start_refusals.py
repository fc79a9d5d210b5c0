"""A start refused for bad input says so in one line and leaves nothing behind: a data dir or
journal folder it cannot write in, a journal it must not run on, a `--speed` the sim-exchange
does not run at.

The box may run the tests as root, who can write anywhere: an unwritable folder is simulated
by answering `os.access` for it (`deny_writes_in`); a file where a folder belongs is real."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from engine.config import load_config
from engine.errors import ConfigError, JournalError
from engine.execution.paper import FillModel, PaperBroker
from engine.journal.events import BACKTEST_MODE
from engine.journal.writer import Journal
from engine.runtime.session import RunOptions, check_sim_speed, exchange_feed, open_session
from engine.sim.saved import saved_market_path
from tests.engine.config.test_locations import deny_writes_in
from tests.kit.domain import T0
from tests.kit.engine import quiet_config
from tests.kit.exchange_rig import exchange_config
from tests.kit.sim_exchange import running_sim_exchange

REPO = Path(__file__).resolve().parents[3]
OPTIONS = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.sqlite"
    path.write_text("not a folder")
    return path


async def test_a_data_dir_that_is_a_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    journal = tmp_path / "j" / "journal.sqlite"
    config = quiet_config(**{"paths.data_dir": str(_file(tmp_path)), "journal.path": str(journal)})
    with pytest.raises(ConfigError, match=rf"^paths.data_dir {tmp_path}/garbage.sqlite is a file, not a folder; "
                                          r"point paths.data_dir \(or HOTCOIN_PATHS__DATA_DIR\) at a folder you can write in$"):  # fmt: skip
        async with open_session(config, OPTIONS):
            pass
    assert not journal.parent.exists()  # no journal, lock or market was made for a start that cannot run


async def test_a_data_dir_under_a_folder_it_cannot_write_in_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes_in(monkeypatch, ro)
    config = quiet_config(**{"paths.data_dir": str(ro / "data")})
    with pytest.raises(ConfigError, match=rf"^paths.data_dir {ro}/data cannot be created: {ro} is not writable; point paths.data_dir"):
        async with open_session(config, OPTIONS):
            pass
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("case", ["file", "unwritable"])
async def test_a_journal_folder_it_cannot_use_is_refused_naming_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    if case == "file":
        folder = _file(tmp_path)
        problem = "is a file, not a folder"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        deny_writes_in(monkeypatch, folder)
        problem = "is not writable"
    config = quiet_config(**{"paths.data_dir": str(tmp_path / "data"), "journal.path": str(folder / "journal.sqlite")})
    with pytest.raises(ConfigError, match=rf"^the journal's folder {folder} {problem}; point --journal \(or journal.path, HOTCOIN_JOURNAL\) "
                                          "at a file in a folder you can write in$"):  # fmt: skip
        async with open_session(config, OPTIONS):
            pass
    assert not (tmp_path / "garbage.sqlite.lock").exists()


def test_the_commands_refuse_an_impossible_path_in_one_line(tmp_path: Path) -> None:
    """`hotcoin run` with a file where the data dir or the journal's folder belongs printed a
    FileExistsError traceback from the journal's lock."""
    blocked = _file(tmp_path)
    for args, env, words in [
        (["-j", str(blocked / "journal.sqlite")], {}, f"hotcoin: the journal's folder {blocked} is a file, not a folder; point --journal"),
        ([], {"HOTCOIN_PATHS__DATA_DIR": str(blocked)}, f"hotcoin: paths.data_dir {blocked} is a file, not a folder; point paths.data_dir"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "hotcoin_tui.cli", "run", "--no-http", "--duration", "1", *args],
            capture_output=True, text=True, timeout=120, env={**os.environ, **env}, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(words), done.stderr


# -- a refused start leaves no demo market ---------------------------------------------------------


async def test_a_start_refused_for_a_folder_given_as_the_journal_leaves_no_market(tmp_path: Path) -> None:
    """The demo's 27 MB market was built and saved beside the journal before the journal was
    opened; the next start "resumed" a market that never traded."""
    folder = tmp_path / "jdir"
    folder.mkdir()
    config = quiet_config(**{"paths.data_dir": str(tmp_path / "data"), "journal.path": str(folder)})
    with pytest.raises(JournalError, match="is a directory"):
        async with open_session(config, OPTIONS):
            pass
    assert not saved_market_path(folder).exists()


async def test_a_start_refused_on_a_backtests_journal_leaves_no_market(tmp_path: Path) -> None:
    path = tmp_path / "bt.sqlite"
    async with Journal.open(path) as journal:
        journal.emit("run_start", ts_ms=T0, payload={"run_id": "bt-1", "config_hash": "x", "mode": BACKTEST_MODE})
    config = quiet_config(**{"paths.data_dir": str(tmp_path / "data"), "journal.path": str(path)})
    with pytest.raises(JournalError, match="holds a backtest"):
        async with open_session(config, OPTIONS):
            pass
    assert not saved_market_path(path).exists()


async def test_an_accepted_start_keeps_its_new_market(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    config = quiet_config(**{"paths.data_dir": str(tmp_path / "data"), "journal.path": str(path)})
    async with open_session(config, OPTIONS):
        assert saved_market_path(path).exists()  # at once: a crash too resumes it


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize("which", ["ops", "webhook"])
async def test_a_start_refused_for_a_taken_port_leaves_nothing_behind(tmp_path: Path, which: str) -> None:
    """The ports were bound after the journal was opened: a busy /health port or webhook port
    left an empty journal, the demo's 27 MB saved market and a `.lock`, and the next start took
    the empty journal for a run that had happened."""
    data = tmp_path / "data"
    with _taken_port() as port:
        if which == "ops":
            config = quiet_config(**{"paths.data_dir": str(data), "ops.http_enabled": True, "ops.http_port": port})
            refusal = rf"^ops\.http_port={port}: cannot listen on 127\.0\.0\.1:{port} \(.*\); .*pass --no-http$"
        else:
            env = {"HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_TOKEN": "a-long-random-webhook-token"}
            cli = {"paths.data_dir": str(data), "ops.http_enabled": False, "sim.symbols": 40, "discovery.social.webhook_port": port}
            config = load_config(env=env, cli=cli).config
            refusal = rf"^discovery\.social\.webhook_port={port}: cannot listen on 127\.0\.0\.1:{port} .*pick a free port"
        with pytest.raises(ConfigError, match=refusal):
            async with open_session(config, RunOptions(demo=True, http=True, attach_socket=False, lockstep_ms=5_000)):
                pass
    assert not config.journal_path.exists()
    assert sorted(p.name for p in data.rglob("*") if p.is_file()) == []  # no journal, saved market or lock


async def test_the_ports_bound_before_the_start_are_the_ones_served(tmp_path: Path) -> None:
    """Bound first and handed over: /health answers on the configured port, and the port is
    free again once the engine has stopped."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = quiet_config(**{"paths.data_dir": str(tmp_path / "data"), "ops.http_enabled": True, "ops.http_port": port})
    async with open_session(config, RunOptions(demo=True, http=True, attach_socket=False, lockstep_ms=5_000)) as session:
        assert session.ops_port == port
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as reply:
            assert reply.status == 200
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


# -- the sim-exchange's speed ----------------------------------------------------------------------


async def test_a_speed_other_than_the_sim_exchanges_is_refused_at_start(tmp_path: Path) -> None:
    """At --speed 100 against a sim-exchange at x1 the engine blocked on data_stale, and no
    message named the speed."""
    async with running_sim_exchange(speed=1.0) as server:
        config = exchange_config(**{"exchange.endpoint": server.base_url})
        with pytest.raises(ConfigError, match=rf"^the sim-exchange at {server.base_url} runs at x1 but --speed is 100; pass --speed 1 "):
            await exchange_feed(config, RunOptions(demo=False, speed=100.0), PaperBroker(FillModel()))
        feed, _ = await exchange_feed(config, RunOptions(demo=False, speed=1.0), PaperBroker(FillModel()))
        await feed.close()


async def test_an_endpoint_without_the_sims_stats_is_taken_on_trust() -> None:
    """Only the sim-exchange says its speed; a host without `/_sim/stats` goes on as before."""

    async def server_time(_: web.Request) -> web.Response:
        return web.json_response({"serverTime": 1})

    app = web.Application()
    app.router.add_get("/api/v3/time", server_time)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await check_sim_speed(f"http://127.0.0.1:{port}", 100.0, 2000)  # no 404 raised
    finally:
        await runner.cleanup()
