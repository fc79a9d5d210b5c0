"""An `exchange.endpoint` URL taken apart, with no exchange library loaded: the CLI checks an
`--endpoint` with it before a command does anything, and `ccxt_client` moves ccxt's URLs with it."""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.errors import ConfigError


def endpoint_parts(endpoint: str, *, what: str = "exchange.endpoint") -> tuple[str, str, str]:
    """(scheme, netloc, path prefix) of `endpoint`; `ConfigError` naming `what` (the setting or
    flag it came from) when it is not an http(s) URL with a host: `127.0.0.1:8765` parses as
    the scheme `127.0.0.1`, and reached the engine as an unusable URL."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{what} {endpoint!r} is not an http(s) URL with a host; "
            "use e.g. http://127.0.0.1:8765 (or leave it unset for Binance itself)"
        )
    return parts.scheme, parts.netloc, parts.path.rstrip("/")
