"""`hotcoin doctor`'s rows for the social post sources: whether the configured ones can work,
and what a running engine's sources have counted.

A source in trouble never stops the engine: the JSONL tail waits for a missing file, a poller
retries a failing API, the webhook refuses a bad post or a wrong token. Each says so once in
the log and counts it on /metrics (`hotcoin_discovery_events_total`), where nobody looks until
the heat score's social part has sat at 0 for a day. The doctor is where the owner asks
"is everything set up?", so it checks what it can before a start and reads the same counters
from a running engine.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from engine.config.sections.discovery import SocialSection
from engine.ops.check import Check, Status
from engine.ops.listen import listening_socket

# The sources' names, as their counters are prefixed on /metrics (`Engine.count_source`).
JSONL, WEBHOOK = "jsonl", "webhook"
# Counters that mean a source is not getting posts through; the rest count work done.
TROUBLE = re.compile(r"^(bad_|file_missing|file_unreadable|not_a_file|unauthorized)")
_EVENT = re.compile(r'^hotcoin_discovery_events_total\{kind="([^"]+)"\} ([0-9.e+]+)$')


def configured(social: SocialSection) -> list[str]:
    """The sources a start would run, by their counters' prefix."""
    names = []
    if social.x_bearer_token is not None:
        names.append("x")
    if social.square_url is not None:
        names.append("binance_square")
    if social.jsonl_path is not None:
        names.append(JSONL)
    if social.webhook_port is not None and social.webhook_token is not None:
        names.append(WEBHOOK)
    return names


def check_social(social: SocialSection, *, engine_running: bool) -> list[Check]:
    """What can be told before a start: which sources are on, whether the JSONL file can be
    tailed, and (with no engine running to hold it) whether the webhook's port is free."""
    names = configured(social)
    if not names:
        return [Check("social", Status.SKIP, "no social source configured: the heat score's social part stays 0")]
    checks = [Check("social", Status.OK, f"sources: {', '.join(names)}")]
    if social.jsonl_path is not None:
        checks.append(check_jsonl(Path(social.jsonl_path)))
    if WEBHOOK in names and social.webhook_port is not None and not engine_running:
        checks.append(check_webhook_port(social.webhook_port))
    return checks


def check_jsonl(path: Path) -> Check:
    """The file the tail reads, judged as the tail would (`JsonlTail.read_new`)."""
    fix = "point discovery.social.jsonl_path at the file your scraper appends posts to"
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check(
            "social.jsonl", Status.WARN,
            f"{path} does not exist: the tail reads nothing until it appears (and counts jsonl.file_missing each poll)", fix,
        )  # fmt: skip
    except OSError as exc:
        return Check("social.jsonl", Status.FAIL, f"{path} cannot be read ({exc.strerror or exc})", fix)
    if not stat.S_ISREG(st.st_mode):
        return Check("social.jsonl", Status.FAIL, f"{path} is not a regular file: the tail reads only a file posts are appended to", fix)
    if not os.access(path, os.R_OK):
        return Check("social.jsonl", Status.FAIL, f"{path} is not readable by this user", f"{fix}, readable by the engine's user")
    return Check("social.jsonl", Status.OK, f"{path} ({st.st_size:,} bytes)")


def check_webhook_port(port: int) -> Check:
    """Whether `hotcoin run` could listen on the webhook's port: a taken one refuses the start."""
    try:
        listening_socket("127.0.0.1", port).close()
    except OSError as exc:
        return Check(
            "social.webhook", Status.FAIL,
            f"port {port} on 127.0.0.1 is taken ({exc.strerror or exc}): `hotcoin run` would refuse to start",
            "stop what listens there, or set discovery.social.webhook_port to a free port",
        )  # fmt: skip
    return Check("social.webhook", Status.OK, f"port {port} on 127.0.0.1 is free")


def parse_events(metrics: str) -> dict[str, int]:
    """`hotcoin_discovery_events_total` by kind, from a /metrics page."""
    out = {}
    for line in metrics.splitlines():
        if m := _EVENT.match(line):
            out[m.group(1)] = int(float(m.group(2)))
    return out


async def read_events(session: aiohttp.ClientSession, host: str, port: int) -> dict[str, int] | str:
    """The running engine's discovery counters from its /metrics, or why they could not be read.
    An engine listening on every interface ("0.0.0.0", "::") is asked on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
    try:
        async with session.get(url) as reply:
            if reply.status != 200:
                return f"{url} answered HTTP {reply.status}"
            return parse_events(await reply.text())
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{url} could not be read ({exc or type(exc).__name__})"


def check_counts(names: list[str], events: Mapping[str, int] | str) -> Check:
    """The running engine's counters for the configured sources: a warning naming each source
    whose posts are not getting through (a missing file, bad lines, a wrong token)."""
    if isinstance(events, str):
        return Check(
            "social.counters", Status.WARN, f"the running engine's counters: {events}",
            "check ops.http_port is the running engine's (and that it was not started with --no-http)",
        )
    parts, trouble = [], []
    for name in names:
        mine = {k.split(".", 1)[1]: v for k, v in sorted(events.items()) if k.startswith(f"{name}.") and v}
        parts.append(f"{name}: " + (", ".join(f"{k} {v:,}" for k, v in mine.items()) or "nothing counted"))
        trouble += [f"{name}.{k}" for k in mine if TROUBLE.match(k)]
    mentions = events.get("social.mentions", 0)
    detail = f"since the engine started: {'; '.join(parts)}; {mentions:,} coin mentions taken"
    if trouble:
        return Check(
            "social.counters", Status.WARN, detail,
            f"{', '.join(trouble)} mean posts are not getting through: the engine's log says why (`social source ...`)",
        )  # fmt: skip
    return Check("social.counters", Status.OK, detail)
