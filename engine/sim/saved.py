"""A generated market written to disk and read back, so that it goes on where it stopped.

`SimMarket` builds its whole path from its start time: two markets started at different
times give each coin a different price at the same moment. A demo restarted on its journal
must trade the market its positions were bought in, at the prices that market goes on to
print, not a new one's (whose stops would fire at prices that never traded). So the demo
saves its market beside its journal and a restart resumes it (`engine.runtime.session`).

The file is one JSON header line (a fingerprint of the simulator's code and numpy's version,
the settings that shape the path, the market's time), then the pickled `SimMarket`: its
random streams, plan, prices and candle rings, everything its next step depends on, so the
resumed market steps exactly as the one saved would have. A file written by other code or
for other settings is refused with the reason (`NotResumable`), from its header alone:
unpickling into changed classes would give an object its code no longer matches. Pickle runs
code as it loads, so only the file an engine wrote beside its own journal is read.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from engine.config.sections import sim as sim_section
from engine.config.sections.sim import SimSection
from engine.domain import market as domain_market
from engine.sim import base, rings, scenario, universe
from engine.sim import market as sim_market
from engine.sim.market import SimMarket

# What a pickled SimMarket is made of (and this module, the file's layout): a change to any of
# these makes older files unreadable.
_CODE: tuple[types.ModuleType, ...] = (sim_market, base, rings, scenario, universe, domain_market, sim_section)
# Settings that do not shape the generated path (`hotcoin sim-exchange`'s pace and accounts).
_NOT_SHAPING = frozenset({"speed", "start_balance_usdt"})


class NotResumable(Exception):
    """A saved market that cannot be resumed; the message says why."""


def saved_market_path(journal: Path) -> Path:
    """Where the demo on `journal` keeps its market: beside it, under the journal's writer lock."""
    return journal.with_name(journal.name + ".market")


def save_market(sim: SimMarket, path: Path) -> None:
    """Write `sim` to `path` whole or not at all (a temp file renamed into place), private to the user."""
    header = {"code": _fingerprint(), "settings": _shaping(sim.settings), "now_ms": sim.now_ms}
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(header) + b"\n")
            pickle.dump(sim, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def saved_time(path: Path, settings: SimSection) -> int:
    """The time of the market saved at `path`, if this code can resume it for `settings`;
    `NotResumable` (why) if not. Reads the header only."""
    with path.open("rb") as fh:
        return _check(_header(fh.readline()), settings)


def load_market(path: Path, settings: SimSection) -> SimMarket:
    """The market saved at `path`, as it was saved; `NotResumable` (why) if it cannot be."""
    with path.open("rb") as fh:
        _check(_header(fh.readline()), settings)
        try:
            sim = pickle.load(fh)
        except Exception as exc:  # a torn or damaged file: whatever pickle raises, it is unusable
            raise NotResumable(f"its data does not load ({type(exc).__name__}: {exc})") from None
    if not isinstance(sim, SimMarket):
        raise NotResumable(f"it holds a {type(sim).__name__}, not a generated market")
    return sim


_HEADER_FIELDS = ("code", "settings", "now_ms")  # what `save_market` writes on the first line


def _header(line: bytes) -> dict[str, Any]:
    """The saved market's header; `NotResumable` when the first line is not one. A JSON object
    without the header's fields is some other file (an event exported over the market by
    `journal export -o`): it used to pass here, and its missing `code` read as "another version
    of hotcoin saved it", which sent the owner looking for an upgrade that never happened."""
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict):
        raise NotResumable("it is not a saved market (no header)")
    if any(name not in header for name in _HEADER_FIELDS) or not isinstance(header["settings"], dict):
        raise NotResumable("it is not a saved market (its first line is not a saved market's header)")
    return header


def _check(header: dict[str, Any], settings: SimSection) -> int:
    if header.get("code") != _fingerprint():
        raise NotResumable("another version of hotcoin saved it")
    saved: dict[str, Any] = header["settings"]
    now = _shaping(settings)
    if saved != now:
        changed = sorted(k for k in now.keys() | saved.keys() if saved.get(k) != now.get(k))
        said = ", ".join(f"sim.{k}={saved.get(k)!r} then, {now.get(k)!r} now" for k in changed)
        raise NotResumable(f"the sim settings changed ({said})")
    return int(header["now_ms"])


def _shaping(settings: SimSection) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude=set(_NOT_SHAPING))


@functools.cache
def _fingerprint() -> str:
    """The simulator's code and numpy's version: what decides how the pickle reads back and steps."""
    digest = hashlib.sha256(np.__version__.encode())
    for source in (*(str(m.__file__) for m in _CODE), __file__):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]
