"""Who sends a console's commands, as the engine journals them and notifications name them.

Every console once sent "tui": two operators on two SSH sessions, or a console on the box and
one over SSH, could not be told apart in the journal (`command` events) or in a "Command:
close-all from tui" notification. A console now names its host and process, and where it is
typed at: the SSH client's address, else the terminal.

    tui@trader-box:41822 (ssh from 203.0.113.7)
    tui@trader-box:41822 (/dev/pts/3)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def console_origin(environ: Mapping[str, str] | None = None) -> str:
    """This console's origin: `tui@{host}:{pid}`, then the SSH client's address from
    $SSH_CONNECTION ("client-ip client-port server-ip server-port"), else its terminal's name
    if it has one."""
    env = os.environ if environ is None else environ
    origin = f"tui@{socket.gethostname()}:{os.getpid()}"
    ssh = env.get("SSH_CONNECTION", "").split()
    if ssh:
        return f"{origin} (ssh from {ssh[0]})"
    tty = _terminal()
    return f"{origin} ({tty})" if tty else origin


def _terminal() -> str | None:
    """The terminal the console runs on (its first standard stream that is one), or None."""
    for fd in (0, 1, 2):
        try:
            return os.ttyname(fd)
        except OSError:
            continue
    return None
