"""Whether an address is this machine's own: the exchange client relaxes its rate limiter for
a loopback endpoint (the simulated exchange), and the ops listener warns when it is not on one."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether `host` is reachable only from this machine ("0.0.0.0" and "::" are every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
