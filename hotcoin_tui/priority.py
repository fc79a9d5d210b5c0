"""The console steps back when the engine needs a core.

On a small machine the console process and the engine process compete for the same cores; a
50-90 ms repaint that holds a core while an engine cycle waits shows up in the engine's p99
cycle time. A higher niceness for the console (never the engine) lets the kernel's scheduler
hand the core to the engine the moment it wakes, and costs the console only when the machine
is really full. Linux nice values belong to threads: this is called on the console's main
thread before Textual starts any of its own, which inherit it.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("hotcoin.tui")


def lower_priority(nice: int) -> int:
    """Raise this process's niceness to `nice` (absolute, never lowered: calling it twice does
    not stack, unlike `os.nice`); 0 does nothing. Returns the niceness now in force."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= current:
        return current
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:  # a sandbox may forbid it: the console still works, just less politely
        log.warning("could not lower the console's priority to nice %d: %s", nice, exc)
        return current
    return nice
