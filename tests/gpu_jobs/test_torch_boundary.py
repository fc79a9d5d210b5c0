"""The trading engine never imports torch: not the engine, not governance, not the trading-box
side of GPU jobs (torch loads only in the trainer and, lazily, when a shadow scorer is built)."""

from __future__ import annotations

import subprocess
import sys

TRADING_SIDE = [
    "ml.governance.contract",
    "ml.governance.promotion",
    "ml.governance.registry",
    "gpu_jobs.client",
    "gpu_jobs.pack",
    "gpu_jobs.profiles",
    "gpu_jobs.register",
    "gpu_jobs.workflow",
    "gpu_jobs.features",
    "gpu_jobs.inference",
    "gpu_jobs.remote",
    "gpu_jobs.training",
    "gpu_jobs.__main__",
    "hotcoin_tui.commands.train_cmd",
    "hotcoin_tui.commands.jobs_cmd",
]


def test_engine_and_trading_side_do_not_load_torch() -> None:
    code = (
        "import importlib, pkgutil, sys, engine\n"
        "names = [m.name for m in pkgutil.walk_packages(engine.__path__, prefix='engine.')]\n"
        f"for name in names + {TRADING_SIDE!r}:\n"
        "    importlib.import_module(name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))[:200])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"torch was imported: {out.stdout.strip()}"
