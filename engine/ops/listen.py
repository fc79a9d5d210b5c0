"""Listening sockets bound before the engine opens any of its files.

A start refused because a port is taken must leave nothing behind. Bound by the servers
themselves, after the journal was opened, a busy port left an empty journal, a saved demo
market of ~27 MB and a `.lock` beside them, and the next start took the empty journal for a
run that had happened. So the session binds every port first (`engine.runtime.session`) and
hands the bound sockets to the servers that serve on them.
"""

from __future__ import annotations

import errno
import socket


def listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket listening on host:port (0: any free port), as asyncio's own
    servers open theirs (`SO_REUSEADDR`, so a port in TIME_WAIT after a restart is not "taken").
    Raises OSError (a `socket.gaierror` for a host that does not resolve) when it cannot.

    An empty host is refused: the resolver reads it as every interface (0.0.0.0), which an
    empty `ops.http_host` surely did not mean. Listening beyond loopback takes an address
    the owner names ("0.0.0.0" included), warned about at start."""
    if not host.strip():
        raise OSError(errno.EINVAL, "an empty host would listen on every interface; name one, e.g. 127.0.0.1")
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
