"""Logs: no secret reaches a line at any level, and a log file is the owner's alone."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.config import SECRET_KEYS, load_config
from engine.ops.logs import Redactor, configure_logging, open_private, secret_values

KEY = "AKFAKEKEY7Q3ZP9"
SECRET = "s3cr3t-\"quoted\"-\\back"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging rewires the root logger; put back what pytest had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    others = {name: logging.getLogger(name).level for name in ("ccxt", "aiohttp.access", "asyncio")}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in others.items():
        logging.getLogger(name).setLevel(lvl)


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def test_debug_never_logs_the_api_key_from_ccxt_request_headers(tmp_path: Path) -> None:
    """ccxt logs every request's headers at DEBUG (`X-MBX-APIKEY`); under log_level = DEBUG
    that was 48 key-bearing lines in a 40 s run."""
    log = tmp_path / "engine.log"
    configure_logging("DEBUG", path=log)  # no secrets named: the level alone must hold ccxt back
    ccxt = logging.getLogger("ccxt.base.exchange")
    ccxt.debug("%s %s, Request: %s %s", "GET", "http://127.0.0.1/api/v3/account", {"X-MBX-APIKEY": KEY}, None)
    logging.getLogger("hotcoin.test").debug("our own debug lines still flow")
    text = log.read_text()
    assert KEY not in text
    assert "our own debug lines still flow" in text
    assert logging.getLogger("ccxt").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() >= logging.INFO


def test_every_configured_secret_is_redacted_from_message_fields_and_traceback(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    configure_logging("DEBUG", path=log, secrets=[KEY, SECRET])
    hc = logging.getLogger("hotcoin.test")
    hc.warning("key %s in the message", KEY, extra={"headers": {"X-MBX-APIKEY": KEY}, "note": f"secret {SECRET}"})
    try:
        raise RuntimeError(f"signature failed for {SECRET}")
    except RuntimeError:
        hc.exception("request failed")
    text = log.read_text()
    assert KEY not in text
    assert SECRET not in text
    assert orjson.dumps(SECRET).decode()[1:-1] not in text  # nor its JSON-escaped form
    first, second = lines(log)
    assert first["msg"] == "key *** in the message"
    assert first["headers"] == {"X-MBX-APIKEY": "***"}
    assert first["note"] == "secret ***"
    assert "signature failed for ***" in str(second["exc"])


def test_every_secret_setting_is_found_in_the_loaded_config() -> None:
    """New secret settings are covered without touching the logging code."""
    # A webhook URL must be a URL to load.
    values = {key: f"https://127.0.0.1/value-of-{key}" if key.endswith("_url") else f"value-of-{key}" for key in SECRET_KEYS}
    env = {f"HOTCOIN_{key.upper().replace('.', '__')}": value for key, value in values.items()}
    env["HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_PORT"] = "0"  # the webhook token is legal only with a port
    config = load_config(env=env).config
    assert sorted(secret_values(config)) == sorted(values.values())


def test_redactor_ignores_values_too_short_to_be_secrets() -> None:
    assert Redactor(["", "ab", "abcd"])("a b abcd") == "a b ***"


def test_a_log_file_is_created_0600_and_an_existing_one_made_so(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        new = tmp_path / "fresh" / "journal.log"
        configure_logging("INFO", path=new)
        logging.getLogger("hotcoin.test").info("hello")
        assert stat.S_IMODE(new.stat().st_mode) == 0o600
        assert stat.S_IMODE(new.parent.stat().st_mode) == 0o700
        before = tmp_path / "old.log"
        before.write_text("written before\n")
        before.chmod(0o644)
        os.close(open_private(before))
        assert stat.S_IMODE(before.stat().st_mode) == 0o600
        assert before.read_text() == "written before\n"
    finally:
        os.umask(old)
