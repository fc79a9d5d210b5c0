"""What a model's task and interval may be, and the registry folder they name: both end up in
file names. Apart from the contract (which re-exports `check_task_interval`), so that
`ml.runtime.load_scorer` can find a registry that holds no such model without importing the
contract, promotion and registry modules (~5-8 ms of every command's start; nothing of them
runs for a model that is not there)."""

from __future__ import annotations

import re
from pathlib import Path

from ml.governance.errors import ContractError

_TASK_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_INTERVAL_RE = re.compile(r"^[1-9][0-9]*[smhdw]$")


def check_task_interval(task: str, interval: str) -> None:
    """Both end up in file names: reject anything that is not a plain identifier / interval."""
    if not _TASK_RE.match(task):
        raise ContractError(f"task {task!r} is not a valid name; use lower-case letters, digits and _")
    if not _INTERVAL_RE.match(interval):
        raise ContractError(f"interval {interval!r} is not valid; use forms like 1m, 5m, 1h")


def model_folder(root: Path, task: str, interval: str) -> Path:
    """The folder of `task` on `interval`'s versions in the registry at `root` (checked names)."""
    check_task_interval(task, interval)
    return root / f"{task}_{interval}"
