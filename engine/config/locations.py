"""Where hotcoin keeps its files (XDG base directories), in one place."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "hotcoin"


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "hotcoin"


def default_config_file() -> Path:
    return config_dir() / "config.toml"


def default_secrets_file() -> Path:
    return config_dir() / "secrets.toml"
