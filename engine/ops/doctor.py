"""`hotcoin doctor`: is this box fit to trade unattended? Each check says ok, warn or fail,
what it saw, and the fix.

Checks: the config (and settings that are legal but risky), the model the engine would load
(through the same loader, passed in by the command as the engine gets it), whether the data dir and the
journal's folder can be made or written in, the journal (SQLite quick_check
on the main file and archives, naming the full `hotcoin journal check` on a large journal,
size against rotation, and a rotation that cannot write its archive), free disk space (the data dir's filesystem and the journal's), the clock against
the exchange's (signed requests fail beyond recvWindow; skipped against a sim-exchange at a speed
other than x1, whose time is simulated), the secrets file's permissions, whether
other users can read the data dir and the journal, the API key's own restrictions (a key that
can *withdraw* is the loudest failure there is), and whether the exchange and the notification
channels can be reached (Telegram by the read-only getMe; a Feishu webhook has no read-only
call, so its host is only connected to, TLS included: doctor never posts a message).

Network checks take the things they talk to as arguments (a base URL, an aiohttp session, a
clock), so tests point them at the simulated exchange or a local fake on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import math
import os
import shutil
import sqlite3
import ssl
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from engine.config import HotcoinConfig, LoadedConfig
from engine.config.locations import folder_problem
from engine.config.sections.notify import http_url_problem
from engine.errors import JournalError
from engine.journal.files import ROTATION_KEY, PendingRotation, list_archives, pending_rotation
from engine.journal.lock import is_held, lock_path
from engine.journal.reader import open_read_only
from engine.journal.wal import inspect_settled
from engine.loopback import is_loopback_host
from engine.ops.check import Check, Status
from engine.ops.doctor_social import check_counts, check_social, configured, read_events
from engine.ops.http import NOT_LOOPBACK, NOT_LOOPBACK_FIX
from engine.ops.notify.base import DeliveryError
from engine.ops.notify.factory import telegram_bot
from engine.runtime.socket_server import AttachError, default_socket_path, is_served, served_status
from engine.signals.scorer import ModelLoad
from engine.timefmt import utc_second

BINANCE_API = "https://api.binance.com"
GIB = 1024**3
# Past this many bytes of journal (main file and archives), doctor's quick_check ok says what it
# did not look at: a box that has traded for months is the one whose history is worth the full,
# slower `hotcoin journal check` now and then; a fresh journal is not.
FULL_CHECK_HINT_BYTES = 100_000_000


# -- local checks -------------------------------------------------------------------------------


def check_config(loaded: LoadedConfig) -> list[Check]:
    """Settings that load fine but deserve a second look."""
    c = loaded.config
    out: list[Check] = []
    where = str(loaded.config_file) if loaded.config_file else "defaults (no config file)"
    out.append(Check("config", Status.OK, f"loaded from {where}; hash {c.config_hash()}"))
    keys = c.exchange.api_key is not None and c.exchange.api_secret is not None
    if c.mode == "live" and not keys:
        out.append(Check("config.mode", Status.FAIL, "mode = live but no API key/secret is configured",
                         "put exchange.api_key and exchange.api_secret in the secrets file, or set mode = paper"))  # fmt: skip
    if c.ops.http_enabled and not is_loopback_host(c.ops.http_host):
        out.append(Check("config.ops", Status.WARN, NOT_LOOPBACK.format(host=c.ops.http_host), NOT_LOOPBACK_FIX))
    tg = c.notify.telegram
    if (tg.bot_token is None) != (tg.chat_id is None):
        missing = "notify.telegram.chat_id" if tg.chat_id is None else "notify.telegram.bot_token"
        out.append(Check("config.telegram", Status.WARN, f"Telegram is half configured: {missing} is not set",
                         f"set {missing}, or remove the other Telegram setting"))  # fmt: skip
    if tg.bot_token is None and c.notify.feishu.webhook_url is None:
        out.append(Check("config.notify", Status.WARN, "no notification channel: nobody hears about a stop-out or a halt",
                         "configure notify.telegram (bot_token + chat_id) or notify.feishu.webhook_url"))  # fmt: skip
    return out


DATA_DIR_FIX = "point paths.data_dir (or HOTCOIN_PATHS__DATA_DIR) at a folder you can write in"
JOURNAL_FOLDER_FIX = "point journal.path (or HOTCOIN_JOURNAL, --journal) at a file in a folder you can write in"


def check_data_dir(path: Path) -> Check:
    """Whether a run can make the data dir, or write in the one there (`folder_problem`): an
    engine that cannot refuses to start, and doctor said OK."""
    problem = folder_problem(path)
    if problem is not None:
        return Check("data_dir", Status.FAIL, f"{path} {problem}", DATA_DIR_FIX)
    return Check("data_dir", Status.OK, f"{path} is writable" if path.is_dir() else f"{path} can be created (on the first run)")


def check_journal(
    path: Path, rotate_max_bytes: int, *, full_check_hint_bytes: int = FULL_CHECK_HINT_BYTES, engine_running: bool = False
) -> list[Check]:
    """SQLite `quick_check` of the main file and every archive, what SQLite reads back of the
    -wal (`wal`), and the main file's size; for a journal not made yet, whether its folder can
    take it.

    A journal that does not exist while an engine holds its writer lock, or (`engine_running`)
    serves the attach socket of this data dir, is not one "created on the first run": it was
    deleted under that engine (`rm j.sqlite*`), and doctor said OK. That fails (`missing_journal`).

    quick_check reads every page but does not match indexes against their rows, nor decode an
    event: on a large journal an ok says so and names the full check."""
    folder = folder_problem(path.parent)
    if not path.exists():
        held = is_held(path)
        if engine_running or held:
            return [missing_journal(path, held=held)]
        if folder is not None:
            return [Check("journal", Status.FAIL, f"{path} cannot be created, as its folder {path.parent} {folder}", JOURNAL_FOLDER_FIX)]
        return [Check("journal", Status.OK, f"{path} does not exist yet (created on the first run)")]
    out: list[Check] = []
    if folder is not None:
        out.append(Check("journal.folder", Status.FAIL, f"the journal's folder {path.parent} {folder}: a run writes the "
                         "journal's lock, -wal and -shm files there", JOURNAL_FOLDER_FIX))  # fmt: skip
    files = [path, *(a.path for a in list_archives(path))]
    bad: list[str] = []
    pending: PendingRotation | None = None
    for f in files:
        try:
            conn = open_read_only(f)  # an archive a crash left mid-rotation is rolled back first
            try:
                verdict = "; ".join(r[0] for r in conn.execute("PRAGMA quick_check"))
                if f == path and verdict == "ok":
                    row = conn.execute("SELECT value FROM meta WHERE key = ?", (ROTATION_KEY,)).fetchone()
                    pending = pending_rotation(path, None if row is None else str(row[0]))
            finally:
                conn.close()
        except (sqlite3.Error, JournalError) as exc:
            verdict = str(exc)
        if verdict != "ok":
            bad.append(f"{f.name}: {verdict[:200]}")
    try:
        found = inspect_settled(path)  # SQLite stops at a damaged -wal frame without a word: quick_check is ok
    except OSError as exc:
        bad.append(f"{path.name}-wal: {exc}")
    else:
        if found is not None and found.damaged:
            bad.append(found.describe())
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    total = size + sum(f.stat().st_size for f in files[1:])
    if bad:
        out.append(Check("journal.integrity", Status.FAIL, "; ".join(bad),
                         "stop the engine, keep a copy, and run `hotcoin journal check` for details"))  # fmt: skip
    elif total > full_check_hint_bytes:
        out.append(Check("journal.integrity", Status.OK,
                         f"quick_check ok on {len(files)} file(s), {total / 1e6:,.0f} MB; it does not match indexes "
                         "to rows or decode events: `hotcoin journal check` does both (SQLite's full integrity_check, slower)"))  # fmt: skip
    else:
        out.append(Check("journal.integrity", Status.OK, f"quick_check ok on {len(files)} file(s)"))
    status = Status.WARN if size > 1.5 * rotate_max_bytes else Status.OK
    out.append(Check("journal.size", status, f"main {size / 1e6:,.1f} MB (rotates at {rotate_max_bytes / 1e6:,.0f} MB), "
                     f"{len(files) - 1} archive(s), {total / 1e6:,.1f} MB in all",
                     "rotation is behind: is the engine running? see journal.rotate_max_bytes" if status is Status.WARN else ""))  # fmt: skip
    if pending is not None and pending.error is not None:
        out.append(stuck_rotation(pending))
    return out


def missing_journal(path: Path, *, held: bool) -> Check:
    """The journal file is gone while an engine runs: `held`, that engine holds its writer lock
    (it writes this journal); else one serves this data dir, and may write another `--journal`."""
    if held:
        who = f"an engine holds its writer lock ({lock_path(path)})"
    else:
        who = "an engine is running on this data dir (unless that engine was started with another --journal)"
    return Check(
        "journal",
        Status.FAIL,
        f"{path} does not exist, yet {who}: the file was deleted or moved under the engine, which saves what it "
        "journals to a spill file beside it, exits-only, once it notices",
        "stop that engine, restore the journal from a backup if you have one (or move it back), and check positions "
        "on the exchange before starting again",
    )


def stuck_rotation(pending: PendingRotation) -> Check:
    """A rotation that could not write its archive the last time the engine tried (`meta`
    'rotation', see `files.PendingRotation`): the archive folder may be on a disk of its own
    (a link) that the disk checks do not look at. Nothing is lost, so a warning, with that
    disk's free space now."""
    folder = pending.archive.parent
    try:
        free = f"; {shutil.disk_usage(_existing(folder)).free / 1e6:,.1f} MB free there now"
    except OSError as exc:
        free = f"; its disk cannot be read now ({exc.strerror or exc})"
    return Check("journal.rotation", Status.WARN, f"{pending.describe()}{free}", pending.fix or "")


def _existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (a first run has made neither yet)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_disk(
    path: Path,
    *,
    name: str = "disk",
    journal: bool = True,
    warn_bytes: int = 2 * GIB,
    fail_bytes: int = 256 * 1024**2,
    holds: str = "",
) -> Check:
    """Free space on the filesystem of `path` (named in the result, with what it `holds`).
    `journal`: the journal is on it, so a full disk stops trading records (the fixes say so)."""
    free = shutil.disk_usage(_existing(path)).free
    text = f"{free / GIB:,.1f} GiB free on the filesystem of {path}{f' ({holds})' if holds else ''}"
    if journal:
        fail_fix = "free space: the journal stops accepting events when the disk fills"
        warn_fix = "free some space or lower journal.retention_archives"
    else:
        fail_fix = "free space: models, job folders and the engine's log are written there"
        warn_fix = "free some space on it"
    if free < fail_bytes:
        return Check(name, Status.FAIL, text, fail_fix)
    if free < warn_bytes:
        return Check(name, Status.WARN, text, warn_fix)
    return Check(name, Status.OK, text)


def _device(path: Path) -> int:
    return os.stat(_existing(path)).st_dev


def check_disks(
    data_dir: Path,
    journal: Path,
    *,
    warn_bytes: int = 2 * GIB,
    fail_bytes: int = 256 * 1024**2,
    device: Callable[[Path], int] | None = None,
) -> list[Check]:
    """Free space where the data dir is and where the journal is (`journal.path` may put it on
    another filesystem: only the data dir's was looked at, and a full journal disk passed).
    One check when both are on the same filesystem (`device`: `st_dev`), else one each, each
    naming its path."""
    folder = journal.parent
    disk = functools.partial(check_disk, warn_bytes=warn_bytes, fail_bytes=fail_bytes)
    device = device or _device
    if device(data_dir) == device(folder):
        holds = "data dir and journal" if folder == data_dir else f"data dir; the journal's folder {folder} too"
        return [disk(data_dir, holds=holds)]
    return [disk(data_dir, journal=False, holds="data dir"), disk(folder, name="disk.journal", holds="journal")]


def check_engine(socket_path: Path) -> Check:
    """Whether an engine serves the attach socket (informational: doctor runs either way)."""
    try:
        running = is_served(socket_path)
    except AttachError as exc:
        return Check("engine", Status.WARN, str(exc))
    if running:
        return Check("engine", Status.OK, f"an engine is running; attach with `hotcoin tui --attach` ({socket_path})")
    return Check("engine", Status.SKIP, "no engine is running on this data dir")


def check_running_config(socket_path: Path, loaded: LoadedConfig) -> Check | None:
    """Whether the running engine trades on the config as it reads now. It reads its config once,
    at start: an edit made since does nothing until a restart, and nothing else says so (doctor
    said "config OK" beside "an engine is running"). An edit is told from an engine started with
    other flags by the file's change time against the engine's socket's (made at its start).
    None where no engine answers, or it runs on this very config."""
    try:
        status = served_status(socket_path)
    except AttachError:
        return None  # `check_engine` says what is wrong with the socket
    running = None if status is None else status.get("config_hash")
    here = loaded.config.config_hash()
    if not isinstance(running, str) or running == here:
        return None
    file = loaded.config_file
    try:
        started_s = socket_path.stat().st_mtime
        changed_s = None if file is None else file.stat().st_mtime
    except OSError:
        return None
    if changed_s is not None and changed_s > started_s:
        return Check(
            "engine.config", Status.WARN,
            f"{file} changed at {utc_second(int(changed_s * 1000))}, after the running engine started "
            f"({utc_second(int(started_s * 1000))}): it still trades on the settings it read then (config hash "
            f"{running}; the file now gives {here})",
            "restart the engine to apply the change (stop it, then `hotcoin run` or `hotcoin tui` again), or undo the edit",
        )  # fmt: skip
    return Check(
        "engine.config", Status.OK,
        f"the running engine's config hash {running} is not this one ({here}): it was started with other flags, "
        "environment or config file",
    )  # fmt: skip


def check_secrets_file(path: Path) -> Check:
    if not path.exists():
        return Check("secrets", Status.SKIP, f"no secrets file at {path}")
    if path.is_dir():
        return Check("secrets", Status.FAIL, f"{path} is a directory, not a secrets file",
                     "remove it, or point paths.secrets_file at a file (chmod 600)")  # fmt: skip
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check("secrets", Status.FAIL, f"{path} is mode {mode:04o}: readable by others", f"chmod 600 {path}")
    if st.st_uid != os.getuid():
        return Check("secrets", Status.WARN, f"{path} belongs to uid {st.st_uid}, not to you ({os.getuid()})",
                     f"chown $(id -u) {path}")  # fmt: skip
    return Check("secrets", Status.OK, f"{path} is mode {mode:04o}")


def check_private(data_dir: Path, journal: Path) -> Check:
    """Whether other local users can read the trading record: the data dir (journal, models,
    job folders, the engine's log) and the journal files wherever they are. hotcoin makes them
    private, but not retroactively: a folder or file made before (or by hand) keeps its mode."""
    seen: list[str] = []
    fixes: list[str] = []
    if data_dir.is_dir() and (mode := stat.S_IMODE(data_dir.stat().st_mode)) & 0o077:
        seen.append(f"{data_dir} (mode {mode:04o})")
        fixes.append(f"chmod 700 {data_dir}")
    for f in (journal, journal.with_name(journal.name + "-wal"), journal.with_name(journal.name + "-shm")):
        if f.is_file() and (mode := stat.S_IMODE(f.stat().st_mode)) & 0o044:
            seen.append(f"{f} (mode {mode:04o})")
            fixes.append(f"chmod 600 {f}")
    if not seen:
        return Check("privacy", Status.OK, f"{data_dir} and the journal are private to you")
    return Check("privacy", Status.WARN, "readable by other local users (positions, PnL, orders): " + ", ".join(seen),
                 "; ".join(fixes))  # fmt: skip


# Settings that mean something only with a model: one set by the owner says a model is expected.
_MODEL_SETTINGS = ("ml.", "trading.signals.ml_min_score")
MODELS_FIX = "`hotcoin models` lists every version, whether its files verify and which one the engine would load"


def check_model(load: ModelLoad, loaded: LoadedConfig) -> Check:
    """The model the engine would trade with, as its own loader (`model_loader`, the engine's
    `ml.runtime.load_scorer`) finds it: WARN on a model that is there but refused or unreadable,
    on a registry the config names but that is not there, on no model at all when the config
    sets a model setting (`ml.*`, `trading.signals.ml_min_score`), on versions passed over as
    damaged, and on the loader's warnings. WARN, not FAIL: the engine runs on its rules alone
    without a model, but doctor said nothing while a refused production model left it so."""
    if load.failed:
        return Check("model", Status.WARN, load.status, MODELS_FIX)
    if load.scorer is None:
        asked = [
            f"{key} ({loaded.source_of(key)})"
            for key in sorted(loaded.sources)
            if key.startswith(_MODEL_SETTINGS) and loaded.source_of(key) != "default"
        ]
        if asked:
            return Check("model", Status.WARN, f"{load.status}; yet the config sets {', '.join(asked)}",
                         "train one (`hotcoin train --task hot_lgbm`), or point ml.registry_dir at the registry that holds it")  # fmt: skip
        return Check("model", Status.SKIP, load.status)
    if load.warnings:
        return Check("model", Status.WARN, "; ".join((load.status, *load.warnings)), MODELS_FIX)
    if load.skipped:
        return Check("model", Status.WARN, load.status,
                     "register the damaged version's model again to restore it (the `hotcoin train` or `hotcoin jobs "
                     f"fetch` that made it); {MODELS_FIX}")  # fmt: skip
    return Check("model", Status.OK, load.status)


# -- exchange checks ----------------------------------------------------------------------------


def check_clock(exchange_ms: int, local_ms: int, *, recv_window_ms: int = 5000) -> Check:
    """Skew between our clock and the exchange's. Signed requests fail beyond recvWindow
    (and Binance rejects timestamps more than 1 s ahead of it)."""
    skew = local_ms - exchange_ms
    text = f"local clock is {skew:+,d} ms from the exchange's"
    fix = "enable time sync (timedatectl set-ntp true; chrony or systemd-timesyncd)"
    if abs(skew) >= recv_window_ms:
        return Check("clock", Status.FAIL, text + f": beyond recvWindow ({recv_window_ms} ms), signed requests fail", fix)
    if skew > 1000:  # the rule that trips must be the one named: 1,016 ms is well inside recvWindow
        return Check("clock", Status.FAIL, text + ": more than 1,000 ms ahead, Binance rejects such timestamps", fix)
    if abs(skew) > 500:
        return Check("clock", Status.WARN, text, fix)
    return Check("clock", Status.OK, text)


async def measure_clock(
    exchange_time: Callable[[], Awaitable[int]], local_ms: Callable[[], int], *, recv_window_ms: int = 5000
) -> Check:
    """Ask the exchange for its time and compare with ours at the midpoint of the round trip."""
    before = local_ms()
    try:
        server = await exchange_time()
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        return Check("clock", Status.WARN, f"could not read the exchange's time: {type(exc).__name__}", "check reachability")
    after = local_ms()
    return check_clock(server, (before + after) // 2, recv_window_ms=recv_window_ms)


async def sim_exchange_speed(session: aiohttp.ClientSession, base_url: str) -> float | None:
    """The speed of the hotcoin sim-exchange at `base_url` (it says at `GET /_sim/stats`); None
    for any other host, or one that does not answer that route."""
    try:
        async with session.get(f"{base_url.rstrip('/')}/_sim/stats") as resp:
            if resp.status != 200:
                return None
            return float(orjson.loads(await resp.read())["speed"])
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def check_exchange_clock(
    session: aiohttp.ClientSession, base_url: str, local_ms: Callable[[], int], *, recv_window_ms: int, probe_sim: bool
) -> Check:
    """The clock check, except against a sim-exchange whose clock is paced (`probe_sim`: the
    endpoint is not Binance's own, so it may be one). A sim at --speed X answers
    `/api/v3/time` with its simulated clock, which runs X times the wall's and must (the
    engine's `ExchangeClock` and the gateway's clock resync are built on it), but judges
    signed requests on the wall clock (`engine.sim.server.venue`): measured against its
    time, this box's clock read as seconds or hours off, a false FAIL. At x1 its clock is
    started at the wall's time and the check means what it does on Binance."""
    speed = await sim_exchange_speed(session, base_url) if probe_sim else None
    if speed is not None and not math.isclose(speed, 1.0):
        return Check("clock", Status.SKIP, f"the sim-exchange at {base_url} runs at x{speed:g}: its /api/v3/time is its "
                     "simulated clock, which no system clock matches, and it judges signed requests on the wall clock; "
                     "nothing to measure")  # fmt: skip
    return await measure_clock(lambda: binance_time(session, base_url), local_ms, recv_window_ms=recv_window_ms)


async def binance_time(session: aiohttp.ClientSession, base_url: str) -> int:
    async with session.get(f"{base_url.rstrip('/')}/api/v3/time") as resp:
        resp.raise_for_status()
        return int(orjson.loads(await resp.read())["serverTime"])


async def api_restrictions(
    session: aiohttp.ClientSession, base_url: str, api_key: str, api_secret: str, now_ms: int, recv_window_ms: int = 5000
) -> dict[str, Any]:
    """Binance `GET /sapi/v1/account/apiRestrictions` (USER_DATA: signed with the secret)."""
    query = urlencode({"timestamp": now_ms, "recvWindow": recv_window_ms})
    signature = hmac.new(api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    url = f"{base_url.rstrip('/')}/sapi/v1/account/apiRestrictions?{query}&signature={signature}"
    async with session.get(url, headers={"X-MBX-APIKEY": api_key}) as resp:
        raw = await resp.read()
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            # A proxy's 502 page or a 404 is not JSON: say what came back, not a parser's complaint.
            raise ValueError(f"HTTP {resp.status}, not a Binance answer ({raw[:60]!r})") from None
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status}: {body.get('msg', '') if isinstance(body, dict) else ''}")
        if not isinstance(body, dict):
            raise ValueError("unexpected answer")
        return body


def judge_restrictions(r: Mapping[str, Any]) -> list[Check]:
    out: list[Check] = []
    if r.get("enableWithdrawals"):
        out.append(Check("api_key.withdrawals", Status.FAIL,
                         "!!! THIS API KEY CAN WITHDRAW FUNDS !!! A leaked key could empty the account",
                         "edit the key on Binance (API Management) and untick 'Enable Withdrawals'; a trading bot never needs it"))  # fmt: skip
    else:
        out.append(Check("api_key.withdrawals", Status.OK, "withdrawals disabled for this key"))
    if r.get("enableInternalTransfer") or r.get("permitsUniversalTransfer"):
        out.append(Check("api_key.transfers", Status.WARN, "this key may move funds between accounts",
                         "untick internal/universal transfer on the key"))  # fmt: skip
    if not r.get("ipRestrict"):
        out.append(Check("api_key.ip", Status.WARN, "the key works from any IP address",
                         "restrict it to this box's IP in Binance API Management"))  # fmt: skip
    if not r.get("enableSpotAndMarginTrading"):
        out.append(Check("api_key.trading", Status.WARN, "spot trading is not enabled for this key: live orders will be refused",
                         "tick 'Enable Spot & Margin Trading' on the key"))  # fmt: skip
    return out


async def check_reachable(session: aiohttp.ClientSession, name: str, url: str, clock: Callable[[], float] = time.monotonic) -> Check:
    start = clock()
    try:
        async with session.get(url) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check(f"reach.{name}", Status.FAIL, f"cannot reach {name}: {type(exc).__name__}", "check DNS, routes and firewall")
    ms = (clock() - start) * 1000
    if status >= 400:
        return Check(f"reach.{name}", Status.WARN, f"{name} answered HTTP {status} in {ms:.0f} ms")
    return Check(f"reach.{name}", Status.OK, f"{name} answered in {ms:.0f} ms")


async def check_feishu(webhook_url: str, *, timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> Check:
    """Whether the webhook's host accepts a connection (and a verified TLS handshake for
    https). Posting is the only call a webhook takes and would message the owner, so this
    stops before the request: a wrong token in the path is found by `hotcoin report --send`."""
    fix = "check notify.feishu.webhook_url (copy it again from the bot's settings), DNS, routes and firewall"
    problem = http_url_problem(webhook_url)
    if problem is not None:  # the config refuses it first; kept for a caller that skips the config
        return Check("reach.feishu", Status.FAIL, f"the webhook URL {problem}", fix)
    parts = urlsplit(webhook_url)
    host = parts.hostname or ""
    tls = parts.scheme.lower() == "https"
    port = parts.port or (443 if tls else 80)
    start = clock()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port, ssl=ssl.create_default_context() if tls else None)
    except (OSError, TimeoutError) as exc:  # refused, no route, DNS (gaierror), TLS (SSLError)
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Check("reach.feishu", Status.FAIL, f"cannot connect to the webhook's host {host}:{port}: {why}", fix)
    ms = (clock() - start) * 1000
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    how = "TLS connection" if tls else "connection"
    return Check("reach.feishu", Status.OK, f"webhook host {host}:{port} accepted a {how} in {ms:.0f} ms (no test message sent)")


# -- the whole run ------------------------------------------------------------------------------


def exchange_base(config: HotcoinConfig) -> str | None:
    """The REST base URL to check, or None for the in-process simulated market."""
    if config.exchange.endpoint:
        return config.exchange.endpoint
    return None if config.exchange.name == "sim" else BINANCE_API


async def run_doctor(
    loaded: LoadedConfig,
    *,
    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    timeout_s: float = 10.0,
    model_loader: Callable[[HotcoinConfig], ModelLoad] | None = None,
) -> list[Check]:
    """Every check, local first, then the network ones the config calls for. `model_loader` is
    the engine's (`ml.runtime.load_scorer`, handed in by the command as `hotcoin run` hands it to
    the engine, the core importing no ML); None: the model is not checked, and the row says so."""
    c = loaded.config
    checks = check_config(loaded)
    if model_loader is None:
        checks.append(Check("model", Status.SKIP, "not checked: no model loader was given"))
    else:
        checks.append(check_model(await asyncio.to_thread(model_loader, c), loaded))
    checks.append(check_data_dir(c.paths.data_dir))
    engine = check_engine(default_socket_path(c.paths.data_dir))
    checks += check_journal(c.journal_path, c.journal.rotate_max_bytes, engine_running=engine.status is Status.OK)
    checks += check_disks(c.paths.data_dir, c.journal_path)
    checks.append(check_secrets_file(c.paths.secrets_file))
    checks.append(check_private(c.paths.data_dir, c.journal_path))
    checks.append(engine)
    if engine.status is Status.OK and (running := check_running_config(default_socket_path(c.paths.data_dir), loaded)):
        checks.append(running)
    checks += check_social(c.discovery.social, engine_running=engine.status is Status.OK)
    base = exchange_base(c)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        if engine.status is Status.OK and (sources := configured(c.discovery.social)):
            if c.ops.http_enabled:
                checks.append(check_counts(sources, await read_events(session, c.ops.http_host, c.ops.http_port)))
            else:
                checks.append(Check("social.counters", Status.SKIP, "the running engine counts on /metrics, which ops.http_enabled = false turns off"))
        if base is None:
            checks.append(Check("exchange", Status.SKIP, "simulated market in-process: nothing to reach"))
        else:
            reach = await check_reachable(session, "exchange", f"{base.rstrip('/')}/api/v3/ping")
            checks.append(reach)
            if reach.status is not Status.FAIL:
                checks.append(await check_exchange_clock(
                    session, base, wall_ms, recv_window_ms=c.exchange.recv_window_ms, probe_sim=base != BINANCE_API
                ))  # fmt: skip
                checks += await _key_checks(session, c, base, wall_ms)
        checks += await _telegram_check(c)
    fs = c.notify.feishu.webhook_url
    if fs is not None:
        checks.append(await check_feishu(fs.get_secret_value(), timeout_s=c.notify.timeout_s))
    return checks


async def _key_checks(session: aiohttp.ClientSession, c: HotcoinConfig, base: str, wall_ms: Callable[[], int]) -> list[Check]:
    """The configured key's restrictions, read from the exchange with a request signed by it.
    Not on the simulated exchange: `hotcoin run` signs there with the sim's own key, never the
    configured one (`engine.runtime.session.sim_section`), so the key has nothing to be judged
    against there, and the signed request would hand the owner's Binance key and a signature
    made with its secret to whatever answers at `exchange.endpoint`."""
    if c.exchange.name == "sim":
        return [Check("api_key", Status.SKIP, "exchange.name is \"sim\": the simulated exchange is never sent the configured "
                      "API key (a run signs with the sim's own), so the key is not checked there")]  # fmt: skip
    key, secret = c.exchange.api_key, c.exchange.api_secret
    if key is None or secret is None:
        return [Check("api_key", Status.SKIP, "no API key configured (paper trading needs none)")]
    try:
        r = await api_restrictions(session, base, key.get_secret_value(), secret.get_secret_value(), wall_ms(), c.exchange.recv_window_ms)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [Check("api_key", Status.WARN, f"could not read the key's restrictions ({exc})",
                      "check the key is valid and the clock is in sync")]  # fmt: skip
    return judge_restrictions(r)


async def _telegram_check(c: HotcoinConfig) -> list[Check]:
    bot = telegram_bot(c)
    if bot is None:
        return []
    try:
        me = await bot.get_me()
    except DeliveryError as exc:
        return [Check("reach.telegram", Status.FAIL, str(exc), "check notify.telegram.bot_token and notify.telegram.base_url")]
    finally:
        await bot.aclose()
    return [Check("reach.telegram", Status.OK, f"bot @{me.get('username', '?')} reachable")]
