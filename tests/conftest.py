"""Test-run wide fixtures: the loopback-only network guard, shared-data location, temp homes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_GUARD_DIR = Path(__file__).parent / "netguard"
# Child processes (CLI runs, killed writers, the sim exchange) get the same guard.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_GUARD_DIR), os.environ.get("PYTHONPATH", "")]))
sys.path.insert(0, str(_GUARD_DIR))
import sitecustomize as netguard  # noqa: E402

netguard.install()

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "binance"


@pytest.fixture
def shared_data() -> Path:
    """The real Binance candles in ../shared/data/binance; skips where ../shared is absent."""
    if not (SHARED_DATA / "events.csv").is_file():
        pytest.skip("../shared/data/binance is not present in this checkout")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real ~/.config, ~/.local/share or ~/.cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    for name in list(os.environ):
        if name.startswith("HOTCOIN_"):
            monkeypatch.delenv(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if netguard.ATTEMPTS:
        print(f"\nnetguard refused {len(netguard.ATTEMPTS)} non-loopback attempt(s): {netguard.ATTEMPTS[:5]}")
        session.exitstatus = 1
