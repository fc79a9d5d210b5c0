"""Structured logs: one JSON object per line on stderr (machines parse them; `jq` reads them).

Secrets never reach a log, at any level. Three layers, because any one alone has failed:
config values are logged only through `HotcoinConfig.redacted()` (and a SecretStr renders as
'**********' even if someone logs it by mistake); libraries that echo request headers (ccxt
logs `X-MBX-APIKEY` with every request at DEBUG) are held at INFO even when we ask for DEBUG;
and every line is written through `Redactor`, which replaces each configured secret's value
with '***' in the final text, message and traceback alike. A log file is created 0600: it is
the one place a secret could still land if a library logged one in a shape we did not foresee.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from pydantic import BaseModel, SecretStr

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
REDACTED = "***"
# Shorter values cannot be real credentials, and replacing them would mangle every line.
MIN_SECRET_CHARS = 4
# Loggers that write request headers (so API keys) at DEBUG: never below INFO.
_HEADER_ECHOING = ("ccxt", "aiohttp.access")


class Redactor:
    """Replaces every secret value in a formatted line with '***'.

    Each secret is matched both as itself and as a JSON string body would carry it (a `"` or a
    backslash in a secret is escaped there), longest first so that a secret containing another
    is removed whole."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for s in secrets if len(s) >= MIN_SECRET_CHARS for form in (s, orjson.dumps(s).decode()[1:-1])}
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


def secret_values(config: BaseModel) -> list[str]:
    """The plain value of every `SecretStr` anywhere in `config` (API key and secret, bot
    token, webhook URL, ...): what `Redactor` must never let through."""
    out: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            out.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(config)
    return out


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return self._redact(orjson.dumps(doc, default=str).decode())


def open_private(path: Path) -> int:
    """A file descriptor appending to `path`, created 0600 in a 0700 folder if new, and made 0600
    if it exists (a log written before this rule may hold what the rule now keeps out)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def configure_logging(level: str = "INFO", path: Path | None = None, secrets: Iterable[str] = ()) -> None:
    """JSON lines on stderr, or appended to `path` (when a full-screen UI owns the terminal),
    with every value in `secrets` (see `secret_values`) written as '***'."""
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        os.close(open_private(path))  # the file exists, 0600, before the handler opens it
        handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter(Redactor(secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    debug = level == "DEBUG"
    logging.getLogger("asyncio").setLevel(logging.DEBUG if debug else logging.WARNING)
    # Third-party chatter stays at warnings; under DEBUG, header-echoing libraries go to INFO only.
    for noisy in _HEADER_ECHOING:
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
