"""Where hotcoin keeps its files (XDG base directories), and whether it can, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ConfigError


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "hotcoin"


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "hotcoin"


def cache_dir() -> Path:
    """What hotcoin can rebuild at will (decoded candles: `engine.sim.candle_cache`)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "hotcoin"


def default_config_file() -> Path:
    return config_dir() / "config.toml"


def default_secrets_file() -> Path:
    return config_dir() / "secrets.toml"


def folder_problem(path: Path) -> str | None:
    """Why hotcoin could not keep its files in the folder `path`, or None when it can.

    Nothing is created, so `hotcoin doctor` can ask before the first run. A missing folder is
    made with its parents, so what decides is the nearest part of the path that exists: it must
    be a folder this user may write in. The phrase follows the path: "/x/data cannot be
    created: /x is not writable". Checked by `os.access`, which also sees a read-only mount and
    an immutable folder (root may write anywhere else)."""
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing == path:
        if not path.is_dir():
            return "is a file, not a folder"
        return None if _writable(path) else "is not writable"
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file, not a folder"
    return None if _writable(existing) else f"cannot be created: {existing} is not writable"


def _writable(folder: Path) -> bool:
    """Whether files can be created in `folder` (write, and search to reach them)."""
    return os.access(folder, os.W_OK | os.X_OK)


def make_folder(path: Path, name: str, fix: str) -> None:
    """Make the folder `path` (0700, as hotcoin's files are private) or check the one there:
    a `ConfigError` naming it as `name` ("paths.data_dir") with `fix` when files cannot be
    written in it. Found at start, one line; found later, it was a traceback from whichever
    file came first (the journal's lock, the attach socket, the engine's log)."""
    problem = folder_problem(path)  # first: a refused path is left as it was, no parent half made
    if problem is None:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # what `folder_problem` cannot foresee: a full disk, a broken link in the path
            problem = folder_problem(path) or f"cannot be created ({exc.strerror})"
    if problem is not None:
        raise ConfigError(f"{name} {path} {problem}; {fix}")
