"""The shell lines the trading box runs on the GPU box to unpack a job and measure its disk, and
how the box's failures read: a full disk, or a Python traceback cut down to the line that says
what went wrong. Pure functions of strings; `client` runs them."""

from __future__ import annotations

import re
import shlex

UNPACK_BAD_SHA = 10  # the copy on the box is not the pack we sent
UNPACK_ALREADY = 11  # another ship of the same job unpacked it first
STALE_MIN = 24 * 60  # leftovers of a ship killed mid-way (ctrl-C, lost link) older than this go
_NO_SPACE = ("no space left on device", "errno 28", "enospc", "wrote only")  # tar: a short write
# torch on CUDA ("CUDA out of memory", torch.OutOfMemoryError), its CPU allocator ("not enough
# memory"), Python's MemoryError
_OUT_OF_MEMORY = re.compile(r"out of memory|outofmemoryerror|not enough memory|\bmemoryerror\b", re.IGNORECASE)
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)')
# Run by the profile's python before a pack is sent: can it train here? (find_spec: no slow
# torch import just to learn it is installed.) Its answer reads like `python -m gpu_jobs check`.
PRECHECK = """import json, sys
from importlib.util import find_spec
gone = [m for m in ("numpy", "torch") if find_spec(m) is None]
fix = "point the profile's `python` at an interpreter that has torch and numpy, or activate one in `env_setup`"
print(json.dumps({"error": f"{sys.executable} cannot import {gone[0]}", "fix": fix} if gone else {"ok": True}))
sys.exit(3 if gone else 0)
"""


def unpack_script(*, incoming: str, staging: str, jobdir: str, sha256: str) -> str:
    """Check the copied pack, unpack it into this ship's own `staging` folder and rename that
    to `jobdir`. Every way out but success removes `incoming` and `staging`, so a failure
    (a full disk) leaves nothing behind. Two ships of one job at once each have their own
    `incoming` and `staging`; the one that renames second finds the job there and exits
    `UNPACK_ALREADY`. `mv -T` (GNU) refuses to move a folder *into* an existing one. The
    job's folder is private (umask 077) by the script itself, not only by the transport that
    runs it (`gpu_jobs.transport.base.private`): it holds the owner's dataset."""
    q = shlex.quote
    inc, stg, job = q(incoming), q(staging), q(jobdir)
    return "\n".join(
        [
            "umask 077",
            f"clean() {{ rm -rf {stg}; rm -f {inc}; }}",
            f"if ! echo {q(sha256 + '  ' + incoming)} | sha256sum -c --status; then clean; exit {UNPACK_BAD_SHA}; fi",
            f"if [ -f {job}/.unpacked ]; then clean; exit {UNPACK_ALREADY}; fi",
            f"if ! {{ mkdir {stg} && tar -xzf {inc} -C {stg} && touch {stg}/.unpacked; }}; then clean; exit 1; fi",
            f"if mv -T {stg} {job} 2>/dev/null; then rm -f {inc}; exit 0; fi",
            f"if [ -f {job}/.unpacked ]; then clean; exit {UNPACK_ALREADY}; fi",
            f"mv -T {stg} {job}; rc=$?; clean; exit $rc",
        ]
    )


def sweep_script(root: str) -> str:
    """Remove packs and staging folders left by ships killed before they could clean up."""
    q = shlex.quote
    return (
        f"find {q(root + '/incoming')} -maxdepth 1 -name '*.tar.gz' -mmin +{STALE_MIN} -exec rm -f {{}} + 2>/dev/null; "
        f"find {q(root + '/jobs')} -maxdepth 1 -name '*.tmp-*' -mmin +{STALE_MIN} -exec rm -rf {{}} + 2>/dev/null; true"
    )


def df_script(root: str) -> str:
    return f"df -Pk {shlex.quote(root)}"


def free_kib(df_output: str) -> int | None:
    """Free KiB from `df -Pk` (POSIX format: the 4th field of the last line is available KiB)."""
    lines = [ln.split() for ln in df_output.strip().splitlines() if ln.strip()]
    if len(lines) < 2 or len(lines[-1]) < 4 or not lines[-1][3].isdigit():
        return None
    return int(lines[-1][3])


def free_mb(df_output: str) -> int | None:
    """Free MB (whole, rounded down) from `df -Pk`."""
    kib = free_kib(df_output)
    return None if kib is None else kib // 1024


def is_no_space(text: str) -> bool:
    """True when a failure on the box was a write that found the disk full (ENOSPC)."""
    low = text.lower()
    return any(s in low for s in _NO_SPACE)


def is_out_of_memory(text: str) -> bool:
    """True when a job failed for lack of (GPU or host) memory: the fix is a smaller batch, not
    a rerun of the same job."""
    return _OUT_OF_MEMORY.search(text) is not None


def brief(text: str) -> str:
    """A failure's text for a one-line error: a Python traceback becomes its last line (the
    exception) and the innermost frame; anything else stays, cut to its last 2000 characters."""
    text = text.strip()
    if "Traceback (most recent call last)" not in text:
        return text[-2000:]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    frames = [m for ln in lines if (m := _FRAME.match(ln))]
    where = f" (at {frames[-1][1]}:{frames[-1][2]})" if frames else ""
    return f"{lines[-1].strip()}{where}"
