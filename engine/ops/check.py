"""One row of `hotcoin doctor`: what was checked, how it stands, and the fix where it is not
fine. Apart from the checks themselves so each group of them can live in its own module."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def worst(checks: list[Check]) -> Status:
    order = [Status.SKIP, Status.OK, Status.WARN, Status.FAIL]
    return max((c.status for c in checks), key=order.index, default=Status.OK)
