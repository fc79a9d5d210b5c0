"""`hotcoin doctor`'s checks: local ones on temp files, clock skew against the simulated
exchange, and key restrictions against a local fake of Binance's endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web

from engine.config import load_config
from engine.journal.writer import Journal
from engine.ops import doctor
from engine.ops.check import Check, Status, worst
from engine.ops.doctor import (
    api_restrictions,
    binance_time,
    check_clock,
    check_config,
    check_data_dir,
    check_disk,
    check_disks,
    check_feishu,
    check_journal,
    check_model,
    check_private,
    check_secrets_file,
    judge_restrictions,
    measure_clock,
    run_doctor,
    sim_exchange_speed,
)
from engine.runtime.local_client import LocalEngineClient, SnapshotHub
from engine.runtime.socket_server import serve_engine_socket
from tests.engine.config.test_locations import deny_writes_in
from tests.engine.ops.notify_sink import HttpSink
from tests.kit.models import MODEL, Load, loaded, register_unloadable
from tests.kit.sim_exchange import FakeMarketSource, running_sim_exchange
from tests.kit.snapshots import make_snapshot, make_status

KEY, SECRET = "doctor-key", "doctor-secret"
SAFE = {"ipRestrict": True, "enableWithdrawals": False, "enableSpotAndMarginTrading": True, "enableReading": True}


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "name", "status", "words"),
    [
        ({}, "config.notify", Status.WARN, "no notification channel"),
        ({"HOTCOIN_MODE": "live"}, "config.mode", Status.FAIL, "no API key/secret"),
        ({"HOTCOIN_OPS__HTTP_HOST": "0.0.0.0"}, "config.ops", Status.WARN, "not loopback"),
        ({"HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": "5"}, "config.telegram", Status.WARN, "notify.telegram.bot_token is not set"),
    ],
    ids=["no-channel", "live-without-keys", "public-ops-port", "half-telegram"],
)
def test_risky_settings_are_named(env: dict[str, str], name: str, status: Status, words: str) -> None:
    checks = by_name(check_config(load_config(env=env)))
    assert checks["config"].status is Status.OK
    assert checks[name].status is status
    assert words in checks[name].detail
    assert checks[name].fix


# -- journal, disk, secrets -------------------------------------------------------------------


async def test_journal_checks(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    assert [c.status for c in check_journal(path, 2_000_000_000)] == [Status.OK]
    async with Journal.open(path) as j:
        for i in range(50):
            j.emit("risk_event", ts_ms=1000 + i, payload={"code": "x", "level": "L1", "detail": "y" * 200})
    healthy = by_name(check_journal(path, 2_000_000_000))
    assert healthy["journal.integrity"].status is Status.OK
    assert healthy["journal.size"].status is Status.OK
    assert by_name(check_journal(path, 1000))["journal.size"].status is Status.WARN
    assert "hotcoin journal check" not in healthy["journal.integrity"].detail  # a small journal: nothing to add


async def test_a_journal_deleted_under_a_running_engine_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit: after `rm j.sqlite*` under a running engine, doctor said "journal OK ... does not
    exist yet (created on the first run)". A missing journal while an engine runs is flagged:
    one that holds its lock (`mv` left the lock) or that serves this data dir (`rm j.sqlite*`
    took the lock too)."""
    from engine.journal.lock import journal_lock

    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        j.emit("risk_event", ts_ms=1000, payload={"code": "x", "level": "L1", "detail": "y"})
    with journal_lock(path):
        path.rename(tmp_path / "moved.sqlite")
        [held] = check_journal(path, 2_000_000_000)
    assert held.status is Status.FAIL
    assert held.detail.startswith(f"{path} does not exist, yet an engine holds its writer lock ({path}.lock)")
    assert "restore the journal" in held.fix
    assert check_journal(path, 2_000_000_000)[0].status is Status.OK  # no engine: one made on the first run
    [running] = check_journal(path, 2_000_000_000, engine_running=True)
    assert running.status is Status.FAIL and "an engine is running on this data dir" in running.detail
    data = tmp_path / "data"
    monkeypatch.setattr(doctor, "is_served", lambda socket: True)
    named = by_name(await run_doctor(load_config(env={"HOTCOIN_PATHS__DATA_DIR": str(data), "HOTCOIN_JOURNAL__PATH": str(path)})))
    assert named["engine"].status is Status.OK
    assert named["journal"].status is Status.FAIL and "does not exist, yet an engine is running" in named["journal"].detail


async def test_a_quick_check_ok_on_a_large_journal_names_the_full_check(tmp_path: Path) -> None:
    """quick_check neither matches indexes to rows nor decodes events; on a journal past the
    hint size the ok says so and where the full check is, still ok."""
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        j.emit("risk_event", ts_ms=1000, payload={"code": "x", "level": "L1", "detail": "y"})
    check = by_name(check_journal(path, 2_000_000_000, full_check_hint_bytes=1000))["journal.integrity"]
    assert check.status is Status.OK
    assert check.detail.startswith("quick_check ok on 1 file(s)")
    assert "`hotcoin journal check`" in check.detail and "integrity_check, slower" in check.detail


def test_a_journal_killed_mid_rotation_passes_its_check(tmp_path: Path) -> None:
    """Audit: an archive a kill -9 left mid-rotation (its rollback journal beside it) failed the
    doctor's check with "attempt to write a readonly database" until the engine ran again; the
    crash's write is rolled back and the archive checked like the others."""
    from tests.engine.journal.rotation_killer import killed_mid_rotation

    path = killed_mid_rotation(tmp_path)
    check = by_name(check_journal(path, 2_000_000_000))["journal.integrity"]
    assert (check.status, check.detail) == (Status.OK, "quick_check ok on 3 file(s)")


async def test_a_rotation_that_cannot_write_its_archive_is_a_warning_naming_that_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive folder may be a link to a disk of its own, full while the journal's has
    room: the disk checks pass, and the pending rotation the engine keeps trying is named, with
    the archive folder's fix."""
    from engine.journal import rotation
    from engine.journal.files import archive_dir
    from tests.kit.sqlite_faults import sqlite_error

    async def full(*_: object) -> None:
        raise sqlite_error("SQLITE_FULL")

    path = tmp_path / "journal.sqlite"
    async with Journal.open(path) as j:
        for i in range(5):
            j.emit("risk_event", ts_ms=1000 + i, payload={"code": "x", "level": "L1", "detail": "y"})
        monkeypatch.setattr(rotation, "_copy", full)
        assert await j.rotate(now_ms=1000 + 100 * 86_400_000) == []
    check = by_name(check_journal(path, 2_000_000_000))["journal.rotation"]
    folder = archive_dir(path)
    assert check.status is Status.WARN
    assert check.detail.startswith(
        f"the rotation of seq 1..5 cannot write its archive {folder / 'journal-1-5.sqlite'}: database or disk is full; "
    )
    assert "MB free there now" in check.detail
    assert check.fix.startswith(f"the disk holding the archive folder {folder} is full: free space there")
    monkeypatch.undo()
    async with Journal.open(path):  # the next start finishes it
        pass
    assert "journal.rotation" not in by_name(check_journal(path, 2_000_000_000))


def test_a_damaged_journal_fails(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    check = by_name(check_journal(path, 2_000_000_000))["journal.integrity"]
    assert check.status is Status.FAIL
    assert "hotcoin journal check" in check.fix


@pytest.mark.parametrize(
    ("warn", "fail", "status"),
    [(1, 0, Status.OK), (2**62, 0, Status.WARN), (2**62, 2**62, Status.FAIL)],
    ids=["plenty", "low", "critical"],
)
def test_disk_space(tmp_path: Path, warn: int, fail: int, status: Status) -> None:
    assert check_disk(tmp_path / "not" / "created", warn_bytes=warn, fail_bytes=fail).status is status


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def _usage(free: dict[Path, int]) -> Any:
    """A `shutil.disk_usage` with `free` bytes at each path (and plenty elsewhere)."""

    def usage(path: str | Path) -> Any:
        left = free.get(Path(path), 10**12)
        return Usage(10**13, 10**13 - left, left)

    return usage


def test_the_journal_on_another_filesystem_has_its_own_disk_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`journal.path` on a nearly full disk passed: only the data dir's filesystem was looked at."""
    data, elsewhere = tmp_path / "data", tmp_path / "mnt"
    data.mkdir()
    elsewhere.mkdir()
    monkeypatch.setattr(shutil, "disk_usage", _usage({elsewhere: 10 * 1024**2}))
    checks = check_disks(data, elsewhere / "j.sqlite", device=lambda p: 2 if elsewhere in (p, *p.parents) else 1)
    assert [(c.name, c.status) for c in checks] == [("disk", Status.OK), ("disk.journal", Status.FAIL)]
    assert str(data) in checks[0].detail and "data dir" in checks[0].detail
    assert str(elsewhere) in checks[1].detail and "journal" in checks[1].detail
    assert "journal stops accepting events" in checks[1].fix


def test_one_disk_check_when_the_journal_shares_the_data_dirs_filesystem(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (checks,) = check_disks(data, tmp_path / "journals" / "j.sqlite")  # neither exists yet: their parents are probed
    assert checks.name == "disk"
    assert str(data) in checks.detail and str(tmp_path / "journals") in checks.detail
    (same,) = check_disks(data, data / "journal.sqlite")
    assert "data dir and journal" in same.detail


async def test_run_doctor_checks_the_journals_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journals = tmp_path / "small"
    journals.mkdir()
    monkeypatch.setattr(shutil, "disk_usage", _usage({journals: 10 * 1024**2}))
    monkeypatch.setattr(doctor, "_device", lambda p: 2 if journals in (p, *p.parents) else 1)
    env = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"), "HOTCOIN_JOURNAL__PATH": str(journals / "j.sqlite")}
    named = by_name(await run_doctor(load_config(env=env)))
    assert named["disk"].status is Status.OK
    assert named["disk.journal"].status is Status.FAIL
    assert str(journals) in named["disk.journal"].detail


@pytest.mark.parametrize(("mode", "status"), [(0o600, Status.OK), (0o400, Status.OK), (0o640, Status.FAIL), (0o644, Status.FAIL)])
def test_secrets_file_permissions(tmp_path: Path, mode: int, status: Status) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text("")
    path.chmod(mode)
    check = check_secrets_file(path)
    assert check.status is status
    if status is Status.FAIL:
        assert check.fix == f"chmod 600 {path}"
    assert check_secrets_file(tmp_path / "none.toml").status is Status.SKIP


def test_a_secrets_file_that_is_a_directory_is_named_as_such(tmp_path: Path) -> None:
    """A directory at the secrets path was told to `chmod 600` (its mode is 0755), which cannot help."""
    path = tmp_path / "secrets.toml"
    path.mkdir()
    check = check_secrets_file(path)
    assert check.status is Status.FAIL
    assert check.detail == f"{path} is a directory, not a secrets file" and "chmod 600" not in check.detail


# -- can a run write where it must --------------------------------------------------------------


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.sqlite"
    path.write_text("not a folder")
    return path


def test_a_data_dir_a_run_can_make_or_write_is_ok(tmp_path: Path) -> None:
    assert check_data_dir(tmp_path / "new" / "data") == Check("data_dir", Status.OK, f"{tmp_path}/new/data can be created (on the first run)")
    assert check_data_dir(tmp_path).detail == f"{tmp_path} is writable"
    assert not (tmp_path / "new").exists()  # doctor creates nothing


def test_a_data_dir_a_run_cannot_make_or_write_fails_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`HOTCOIN_PATHS__DATA_DIR=<a file, or under a folder it cannot write> hotcoin doctor` said
    OK and exited 0; the run then refused to start."""
    garbage = _file(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes_in(monkeypatch, ro)
    for path, seen in [
        (garbage, f"{garbage} is a file, not a folder"),
        (garbage / "data", f"{garbage}/data cannot be created: {garbage} is a file, not a folder"),
        (ro, f"{ro} is not writable"),
        (ro / "data", f"{ro}/data cannot be created: {ro} is not writable"),
    ]:
        check = check_data_dir(path)
        assert (check.status, check.detail) == (Status.FAIL, seen)
        assert check.fix == "point paths.data_dir (or HOTCOIN_PATHS__DATA_DIR) at a folder you can write in"


async def test_a_journal_whose_folder_a_run_cannot_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = _file(tmp_path)
    [check] = check_journal(garbage / "journal.sqlite", 2_000_000_000)
    assert check.status is Status.FAIL
    assert check.detail == f"{garbage}/journal.sqlite cannot be created, as its folder {garbage} is a file, not a folder"
    assert "--journal" in check.fix
    ro = tmp_path / "ro"
    ro.mkdir()
    async with Journal.open(ro / "journal.sqlite") as j:
        j.emit("risk_event", ts_ms=1000, payload={"code": "x", "level": "L1", "detail": "y"})
    deny_writes_in(monkeypatch, ro)
    folder = by_name(check_journal(ro / "journal.sqlite", 2_000_000_000))["journal.folder"]
    assert folder.status is Status.FAIL and folder.detail.startswith(f"the journal's folder {ro} is not writable")


def test_a_data_dir_or_journal_others_can_read_is_a_warning(tmp_path: Path) -> None:
    """Positions, PnL and orders were readable by every local user (0755 / 0644 under umask 022)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    journal = data / "journal.sqlite"
    wal = data / "journal.sqlite-wal"
    for f in (journal, wal):
        f.write_bytes(b"")
        f.chmod(0o600)
    check = check_private(data, journal)
    assert check.status is Status.OK
    wal.chmod(0o644)
    data.chmod(0o755)
    check = check_private(data, journal)
    assert check.status is Status.WARN
    assert f"{data} (mode 0755)" in check.detail
    assert f"{wal} (mode 0644)" in check.detail
    assert str(journal) + " " not in check.detail  # the main file is still private
    assert check.fix == f"chmod 700 {data}; chmod 600 {wal}"
    elsewhere = tmp_path / "j.sqlite"  # --journal outside the data dir: its folder is the user's business
    elsewhere.write_bytes(b"")
    elsewhere.chmod(0o640)
    data.chmod(0o700)
    assert check_private(data, elsewhere).fix == f"chmod 600 {elsewhere}"
    assert check_private(tmp_path / "not-yet", tmp_path / "not-yet" / "journal.sqlite").status is Status.OK


# -- clock ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skew", "status"),
    [(0, Status.OK), (-400, Status.OK), (700, Status.WARN), (-2500, Status.WARN), (1500, Status.FAIL), (-6000, Status.FAIL)],
    ids=["in-sync", "slightly-behind", "ahead-700ms", "behind-2.5s", "ahead-past-1s", "behind-past-recv-window"],
)
def test_clock_skew_thresholds(skew: int, status: Status) -> None:
    check = check_clock(1_000_000, 1_000_000 + skew, recv_window_ms=5000)
    assert check.status is status
    assert f"{skew:+,d} ms" in check.detail


@pytest.mark.parametrize(
    ("skew", "says"),
    [(1016, "more than 1,000 ms ahead, Binance rejects"), (-6000, "beyond recvWindow (5000 ms)")],
)
def test_a_clock_failure_names_the_rule_that_tripped(skew: int, says: str) -> None:
    """+1,016 ms failed with "(recvWindow 5000 ms)" beside it, a window it was well inside."""
    check = check_clock(1_000_000, 1_000_000 + skew, recv_window_ms=5000)
    assert check.status is Status.FAIL and says in check.detail


@pytest.mark.parametrize(("offset_ms", "status"), [(0, Status.OK), (-3000, Status.WARN), (8000, Status.FAIL)], ids=["synced", "behind-3s", "ahead-8s"])
async def test_clock_skew_against_the_sim_exchange(offset_ms: int, status: Status) -> None:
    source = FakeMarketSource(start_ms=time.time_ns() // 1_000_000)
    async with running_sim_exchange(source, speed=1.0) as sim, aiohttp.ClientSession() as session:
        check = await measure_clock(
            lambda: binance_time(session, sim.base_url), lambda: sim.venue.clock.now_ms() + offset_ms
        )
    assert check.status is status


@pytest.mark.parametrize(("speed", "status"), [(10.0, Status.SKIP), (1.0, Status.OK)], ids=["x10", "x1"])
async def test_run_doctor_skips_the_clock_of_a_paced_sim_exchange(tmp_path: Path, speed: float, status: Status) -> None:
    """`hotcoin sim-exchange --speed 10` answers /api/v3/time with its simulated clock (the
    engine's clock on it is built from that) but judges signed requests on the wall clock: doctor
    failed the box's clock against it. At x1 its clock is the wall's, and is measured."""
    wall = time.time_ns() // 1_000_000
    # At x10 the sim's clock runs ahead of the wall from its start (a restart starts it after
    # the journal's newest event, later still): a minute ahead is a FAIL when measured.
    source = FakeMarketSource(start_ms=wall + (60_000 if speed > 1 else 0))
    async with running_sim_exchange(source, speed=speed) as sim:
        env = {
            "HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"),
            "HOTCOIN_EXCHANGE__NAME": "sim",
            "HOTCOIN_EXCHANGE__ENDPOINT": sim.base_url,
        }
        named = by_name(await run_doctor(load_config(env=env)))
    clock = named["clock"]
    assert clock.status is status, clock
    if status is Status.SKIP:
        assert "x10" in clock.detail and "simulated clock" in clock.detail
    assert named["reach.exchange"].status is Status.OK


async def test_the_clock_of_a_host_without_sim_stats_is_measured(binance: FakeBinance) -> None:
    async with aiohttp.ClientSession() as session:
        assert await sim_exchange_speed(session, binance.base_url) is None


async def test_an_unreachable_exchange_clock_is_a_warning() -> None:
    async def broken() -> int:
        raise aiohttp.ClientConnectionError("down")

    check = await measure_clock(broken, lambda: 0)
    assert (check.status, check.detail) == (Status.WARN, "could not read the exchange's time: ClientConnectionError")


# -- API key restrictions against a local fake --------------------------------------------------


@dataclass
class FakeBinance:
    restrictions: dict[str, Any] = field(default_factory=lambda: dict(SAFE))
    seen: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    async def restrictions_handler(self, request: web.Request) -> web.Response:
        query = request.query_string
        params = dict(parse_qsl(query))
        self.seen.append(params)
        unsigned = query.rsplit("&signature=", 1)[0]
        good = hmac.new(SECRET.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
        if request.headers.get("X-MBX-APIKEY") != KEY or params.get("signature") != good:
            return web.json_response({"code": -1022, "msg": "Signature for this request is not valid."}, status=401)
        return web.json_response(self.restrictions)

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": time.time_ns() // 1_000_000})


@pytest.fixture
async def binance() -> AsyncIterator[FakeBinance]:
    fake = FakeBinance()
    app = web.Application()
    app.router.add_get("/sapi/v1/account/apiRestrictions", fake.restrictions_handler)
    app.router.add_get("/api/v3/ping", fake.ping)
    app.router.add_get("/api/v3/time", fake.time)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


async def test_restrictions_request_is_signed(binance: FakeBinance) -> None:
    async with aiohttp.ClientSession() as session:
        got = await api_restrictions(session, binance.base_url, KEY, SECRET, now_ms=1_700_000_000_000, recv_window_ms=5000)
        assert got == SAFE
        assert binance.seen[0]["timestamp"] == "1700000000000"
        with pytest.raises(ValueError, match="HTTP 401: Signature for this request is not valid"):
            await api_restrictions(session, binance.base_url, KEY, "wrong", now_ms=1)
        # A host without the endpoint (a 404 page, a proxy's 502) was reported as a JSON parser's
        # "unexpected content after document", with advice about keys and clocks.
        with pytest.raises(ValueError, match=r"^HTTP 404, not a Binance answer \(b'404: Not Found'\)$"):
            await api_restrictions(session, binance.base_url.replace("/sapi", "") + "/nowhere", KEY, SECRET, now_ms=1)


@pytest.mark.parametrize(
    ("change", "name", "status"),
    [
        ({}, "api_key.withdrawals", Status.OK),
        ({"enableWithdrawals": True}, "api_key.withdrawals", Status.FAIL),
        ({"ipRestrict": False}, "api_key.ip", Status.WARN),
        ({"enableSpotAndMarginTrading": False}, "api_key.trading", Status.WARN),
        ({"permitsUniversalTransfer": True}, "api_key.transfers", Status.WARN),
    ],
    ids=["safe", "can-withdraw", "any-ip", "no-trading", "transfers"],
)
def test_judging_key_restrictions(change: dict[str, Any], name: str, status: Status) -> None:
    checks = by_name(judge_restrictions({**SAFE, **change}))
    assert checks[name].status is status
    if name == "api_key.withdrawals" and status is Status.FAIL:
        assert "CAN WITHDRAW" in checks[name].detail


def _secrets(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(f'[exchange]\napi_key = "{KEY}"\napi_secret = "{SECRET}"\n[notify.telegram]\nbot_token = "1:tok"\n')
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


async def test_run_doctor_end_to_end_loudly_fails_a_withdrawing_key(binance: FakeBinance, tmp_path: Path) -> None:
    binance.restrictions["enableWithdrawals"] = True
    sink = HttpSink()
    await sink.start()
    try:
        env = {
            "HOTCOIN_PATHS__SECRETS_FILE": str(_secrets(tmp_path)),
            "HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"),
            "HOTCOIN_EXCHANGE__NAME": "binance",
            "HOTCOIN_EXCHANGE__ENDPOINT": binance.base_url,
            "HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": "5",
            "HOTCOIN_NOTIFY__TELEGRAM__BASE_URL": sink.base_url,
        }
        checks = await run_doctor(load_config(env=env))
    finally:
        await sink.stop()
    named = by_name(checks)
    assert named["reach.exchange"].status is Status.OK
    assert named["clock"].status is Status.OK
    assert named["api_key.withdrawals"].status is Status.FAIL
    assert named["secrets"].status is Status.OK
    assert named["reach.telegram"].status is Status.OK
    assert sink.paths() == ["/bot1:tok/getMe"]
    assert named["engine"].status is Status.SKIP
    assert worst(checks) is Status.FAIL


async def test_run_doctor_sends_no_signed_request_to_a_sim_exchange(binance: FakeBinance, tmp_path: Path) -> None:
    """With exchange.name = "sim" and an endpoint, doctor signed `apiRestrictions` with the keys
    in the secrets file and sent it there: the owner's Binance key, and a request signed with
    its secret, to whatever answers at the URL. A run never signs with them there, so the key
    checks are skipped, in a row that says why."""
    env = {
        "HOTCOIN_PATHS__SECRETS_FILE": str(_secrets(tmp_path)),
        "HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"),
        "HOTCOIN_EXCHANGE__NAME": "sim",
        "HOTCOIN_EXCHANGE__ENDPOINT": binance.base_url,
    }
    named = by_name(await run_doctor(load_config(env=env)))
    assert binance.seen == []
    assert named["reach.exchange"].status is Status.OK
    assert named["api_key"].status is Status.SKIP
    assert "sim" in named["api_key"].detail and "not checked" in named["api_key"].detail
    assert not [name for name in named if name.startswith("api_key.")]


async def test_run_doctor_on_the_simulated_market_needs_no_network(tmp_path: Path) -> None:
    env = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data")}
    named = by_name(await run_doctor(load_config(env=env)))
    assert named["exchange"].status is Status.SKIP
    assert "api_key" not in named
    assert named["journal"].status is Status.OK
    assert named["privacy"].status is Status.OK


# -- the Feishu webhook (connect only: a webhook takes no call that does not message the owner) -


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_reachable_feishu_host_passes_without_a_message_sent() -> None:
    sink = HttpSink()
    await sink.start()
    try:
        check = await check_feishu(f"{sink.base_url}/open-apis/bot/v2/hook/abc", timeout_s=5)
    finally:
        await sink.stop()
    assert check.status is Status.OK
    assert check.detail.startswith(f"webhook host {sink.base_url.removeprefix('http://')} accepted a connection in ")
    assert check.detail.endswith("(no test message sent)")
    assert sink.requests == []


async def test_a_feishu_host_that_does_not_speak_tls_fails_an_https_webhook() -> None:
    sink = HttpSink()
    await sink.start()
    try:
        check = await check_feishu(f"{sink.base_url.replace('http://', 'https://')}/hook/abc", timeout_s=5)
    finally:
        await sink.stop()
    assert check.status is Status.FAIL
    assert "cannot connect to the webhook's host 127.0.0.1:" in check.detail and "SSL" in check.detail
    assert "notify.feishu.webhook_url" in check.fix


async def test_a_bad_feishu_url_fails_without_a_connection() -> None:
    check = await check_feishu("ftp://x/hook/abc")
    assert (check.status, check.detail) == (Status.FAIL, "the webhook URL does not start with https:// (or http://)")


async def test_run_doctor_fails_a_feishu_only_config_whose_webhook_host_is_down(tmp_path: Path) -> None:
    """doctor checked only Telegram: a Feishu-only config whose webhook could not be reached passed."""
    port = _closed_port()
    env = {
        "HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"),
        "HOTCOIN_NOTIFY__FEISHU__WEBHOOK_URL": f"http://127.0.0.1:{port}/open-apis/bot/v2/hook/FSSECRET",
    }
    named = by_name(await run_doctor(load_config(env=env)))
    assert "reach.telegram" not in named
    feishu = named["reach.feishu"]
    assert feishu.status is Status.FAIL
    assert feishu.detail.startswith(f"cannot connect to the webhook's host 127.0.0.1:{port}: ConnectionRefusedError")
    assert "FSSECRET" not in feishu.detail + feishu.fix


# -- the model ----------------------------------------------------------------------------------

NO_MODEL = "no hot_lgbm_1m model in /m; the engine runs on its rules alone (train one with `hotcoin train --task hot_lgbm`)"


@pytest.mark.parametrize(
    ("load", "env", "status", "detail"),
    [
        pytest.param(loaded("production"), {}, Status.OK, f"{MODEL}: production", id="production"),
        pytest.param(loaded("shadow"), {}, Status.OK, f"{MODEL}: shadow", id="shadow"),
        pytest.param(Load(None, NO_MODEL, None, "off"), {}, Status.SKIP, NO_MODEL, id="fresh-install"),
        pytest.param(
            Load(None, NO_MODEL, None, "off"), {"HOTCOIN_TRADING__SIGNALS__ML_MIN_SCORE": "0.3"}, Status.WARN,
            f"{NO_MODEL}; yet the config sets trading.signals.ml_min_score (env:HOTCOIN_TRADING__SIGNALS__ML_MIN_SCORE)",
            id="none-but-asked",
        ),
        pytest.param(
            Load(None, f"REFUSED {MODEL} refused: model_sha256 differs; rules alone", MODEL, "off", failed=True), {},
            Status.WARN, f"REFUSED {MODEL} refused: model_sha256 differs; rules alone", id="refused",
        ),
        pytest.param(
            Load(loaded("production").scorer, f"{MODEL} in production", MODEL, "production", warnings=("above every score",)),
            {}, Status.WARN, f"{MODEL} in production; above every score", id="warned",
        ),
        pytest.param(
            Load(loaded("shadow").scorer, f"{MODEL} in shadow; skipped unreadable v2 (gone)", MODEL, "shadow", skipped=("v2 (gone)",)),
            {}, Status.WARN, f"{MODEL} in shadow; skipped unreadable v2 (gone)", id="damaged-version-passed-over",
        ),
    ],
)
def test_the_model_check_judges_the_engine_s_own_load(load: Load, env: dict[str, str], status: Status, detail: str) -> None:
    check = check_model(load, load_config(env=env))
    assert (check.name, check.status, check.detail) == ("model", status, detail)
    assert bool(check.fix) == (status is Status.WARN)


async def test_run_doctor_warns_of_a_model_the_engine_would_refuse(tmp_path: Path) -> None:
    """doctor passed a box whose production model the engine refuses (here: trained under
    another listing_min_bars) and one whose ml.registry_dir was mistyped, saying nothing of
    the model; it now loads the model as the engine does."""
    from ml.runtime import load_scorer

    register_unloadable(tmp_path / "models", tmp_path, listing_min_bars=15)
    env = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"), "HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "models"),
           "HOTCOIN_TRADING__SIGNALS__LISTING_MIN_BARS": "10"}  # fmt: skip
    model = by_name(await run_doctor(load_config(env=env), model_loader=load_scorer))["model"]
    assert model.status is Status.WARN
    assert model.detail.startswith("REFUSED hot_lgbm_1m@v0001 refused: trained with trading.signals.listing_min_bars = 15")
    assert "hotcoin models" in model.fix
    typo = {**env, "HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "modles")}
    model = by_name(await run_doctor(load_config(env=typo), model_loader=load_scorer))["model"]
    assert model.status is Status.WARN
    assert model.detail.startswith(f"model registry {tmp_path / 'modles'} (ml.registry_dir) does not exist")
    fresh = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data")}
    assert by_name(await run_doctor(load_config(env=fresh), model_loader=load_scorer))["model"].status is Status.SKIP
    assert by_name(await run_doctor(load_config(env=fresh)))["model"].detail == "not checked: no model loader was given"


# -- the command --------------------------------------------------------------------------------


def test_hotcoin_doctor_command(tmp_path: Path) -> None:
    import orjson
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    runner = CliRunner()
    env = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"), "COLUMNS": "160"}
    ok = runner.invoke(app, ["doctor"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "no notification channel" in ok.output
    assert "WARN" in ok.output
    doc = orjson.loads(runner.invoke(app, ["doctor", "--json"], env=env).output)
    assert {c["name"]: c["status"] for c in doc}["exchange"] == "skip"
    assert {c["name"]: c["status"] for c in doc}["model"] == "skip"  # no model on a fresh install: nothing asked for one
    typo = orjson.loads(runner.invoke(app, ["doctor", "--json"], env={**env, "HOTCOIN_ML__REGISTRY_DIR": str(tmp_path / "modles")}).output)
    model = {c["name"]: c for c in typo}["model"]
    assert model["status"] == "warn" and "(ml.registry_dir) does not exist" in model["detail"]
    failing = runner.invoke(app, ["doctor"], env={**env, "HOTCOIN_MODE": "live"})
    assert failing.exit_code == 1
    assert "FAIL" in failing.output
    broken = runner.invoke(app, ["doctor"], env={**env, "HOTCOIN_OPS__HTTP_PORT": "-4"})
    assert broken.exit_code == 2
    assert "config: FAIL" in broken.output
    blocked = runner.invoke(app, ["doctor", "--json"], env={**env, "HOTCOIN_PATHS__DATA_DIR": str(_file(tmp_path))})
    assert blocked.exit_code == 1
    assert {c["name"]: c["status"] for c in orjson.loads(blocked.stdout)}["data_dir"] == "fail"


def test_doctor_json_reports_a_config_that_does_not_load_as_a_failed_check(tmp_path: Path) -> None:
    """`HOTCOIN_MODE=x hotcoin doctor --json` printed nothing on stdout: a script reading it
    could not tell a bad config from a crash."""
    import orjson
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    result = CliRunner().invoke(app, ["doctor", "--json"], env={"HOTCOIN_PATHS__DATA_DIR": str(tmp_path), "HOTCOIN_MODE": "x"})
    assert result.exit_code == 2
    [check] = orjson.loads(result.stdout)
    assert set(check) == {"name", "status", "detail", "fix"}
    assert (check["name"], check["status"]) == ("config", "fail")
    assert "HOTCOIN_MODE" in check["detail"] and "'paper' or 'live'" in check["detail"]


def test_hotcoin_doctor_checks_the_journal_named_by_journal(tmp_path: Path) -> None:
    """`--journal` points doctor at a journal elsewhere, as it does `report` and `replay`."""
    import orjson
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    journal = tmp_path / "elsewhere" / "j.sqlite"
    journal.parent.mkdir()
    journal.write_bytes(b"this is not a SQLite file" * 200)
    env = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"), "COLUMNS": "160"}
    out = CliRunner().invoke(app, ["doctor", "--json", "--journal", str(journal)], env=env)
    checks = {c["name"]: c for c in orjson.loads(out.output)}
    assert out.exit_code == 1
    assert checks["journal.integrity"]["status"] == "fail"
    assert "j.sqlite: file is not a database" in checks["journal.integrity"]["detail"]


@pytest.mark.parametrize(
    ("secrets", "key"),
    [
        ('[notify.feishu]\nwebhook_url = "ftp://FSSECRET"\n', "notify.feishu.webhook_url"),
        ('[notify.telegram]\nbot_token = ""\n', "notify.telegram.bot_token"),
    ],
    ids=["feishu-not-http", "telegram-empty-token"],
)
def test_hotcoin_doctor_refuses_a_notification_secret_no_channel_can_use(tmp_path: Path, secrets: str, key: str) -> None:
    """doctor passed the ftp:// webhook (then `hotcoin run` died on it with a traceback) and
    itself died with a traceback on the empty token."""
    from typer.testing import CliRunner

    from hotcoin_tui.cli import app

    path = tmp_path / "secrets.toml"
    path.write_text(secrets)
    path.chmod(0o600)
    env = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"), "HOTCOIN_PATHS__SECRETS_FILE": str(path),
           "HOTCOIN_NOTIFY__TELEGRAM__CHAT_ID": "5", "COLUMNS": "300"}  # fmt: skip
    out = CliRunner().invoke(app, ["doctor"], env=env)
    assert out.exit_code == 2, out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)
    assert f"config: FAIL invalid configuration:\n  {key} (from file:{path}): Value error, " in out.output
    assert "FSSECRET" not in out.output


async def test_a_config_edited_after_the_engine_started_is_flagged(tmp_path: Path) -> None:
    """The engine reads its config once, at start; doctor said "config OK" beside "an engine is
    running" after the file was edited, and nothing told the owner the edit had no effect."""
    cfg = tmp_path / "config.toml"
    cfg.write_text("[trading.exits]\nstop_loss = 0.04\n")
    started = load_config(cfg, env={})
    hub = SnapshotHub()
    await hub.publish(make_snapshot(status=make_status(config_hash=started.config.config_hash())))

    async def unused(*_: Any) -> Any:
        raise AssertionError("doctor only reads the greeting")

    sock = tmp_path / "engine.sock"
    async with serve_engine_socket(sock, LocalEngineClient(hub, unused, unused, unused, unused)):
        assert await asyncio.to_thread(doctor.check_running_config, sock, started) is None  # the same config
        later = time.time() + 5  # the edit, seconds after the engine made its socket
        cfg.write_text("[trading.exits]\nstop_loss = 0.02\n")
        os.utime(cfg, (later, later))
        edited = load_config(cfg, env={})
        check = await asyncio.to_thread(doctor.check_running_config, sock, edited)
        assert check is not None and check.status is Status.WARN and check.name == "engine.config"
        assert f"{cfg} changed at " in check.detail and "after the running engine started" in check.detail
        assert started.config.config_hash() in check.detail and edited.config.config_hash() in check.detail
        assert "restart the engine" in check.fix
        os.utime(cfg, (later - 3600, later - 3600))  # older than the engine: it was started otherwise
        other = await asyncio.to_thread(doctor.check_running_config, sock, edited)
        assert other is not None and other.status is Status.OK and "started with other flags" in other.detail
    assert doctor.check_running_config(sock, edited) is None  # nobody serves it any more
