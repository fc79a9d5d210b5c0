"""A console's commands name it: host, process, and where it is typed at."""

from __future__ import annotations

import os
import socket

import pytest

from hotcoin_tui import origin
from hotcoin_tui.origin import console_origin

HERE = f"tui@{socket.gethostname()}:{os.getpid()}"


def test_over_ssh_the_client_address_is_named() -> None:
    assert console_origin({"SSH_CONNECTION": "203.0.113.7 52114 10.0.0.2 22"}) == f"{HERE} (ssh from 203.0.113.7)"


def test_without_ssh_the_terminal_is_named_if_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(origin, "_terminal", lambda: "/dev/pts/3")
    assert console_origin({}) == f"{HERE} (/dev/pts/3)"
    assert console_origin({"SSH_CONNECTION": ""}) == f"{HERE} (/dev/pts/3)"
    monkeypatch.setattr(origin, "_terminal", lambda: None)
    assert console_origin({}) == HERE
