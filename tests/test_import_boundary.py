"""The core never knows the UI exists: engine/, ml/ and gpu_jobs/ import neither textual nor
hotcoin_tui. import-linter checks the static graph in CI; this checks what really loads."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import engine
import gpu_jobs
import ml


def _modules(package: object) -> list[str]:
    path = getattr(package, "__path__", [])
    name = getattr(package, "__name__", "")
    return [name] + [m.name for m in pkgutil.walk_packages(path, prefix=f"{name}.")]


CORE_MODULES = [m for pkg in (engine, ml, gpu_jobs) for m in _modules(pkg)]


def test_core_packages_do_not_load_the_ui() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'hotcoin_tui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core imported UI modules: {out.stdout.strip()}"


@pytest.mark.parametrize("name", ["engine", "ml", "gpu_jobs"])
def test_package_is_walkable(name: str) -> None:
    assert any(m == name for m in CORE_MODULES)
