"""An `EventSink` that writes nothing: journaling off (backtests without `--journal`) and
benchmarks that time the decision code without SQLite.

It still assigns seqs, so `cause` links are formed exactly as with the real journal, and it
can validate each event against the contract, as `Journal.emit` does before queueing. Unless it
validates, it tells the emitters it keeps no payloads (`keeps_payloads`), so the per-minute
snapshots are not built only to be dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.journal.events import validate_event


class NullSink:
    def __init__(self, *, validate: bool = False) -> None:
        self.count = 0
        self._validate = validate
        self.keeps_payloads = validate  # validating needs the payloads; counting does not

    def emit(
        self,
        kind: str,
        *,
        ts_ms: int,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
        symbol: str | None = None,
        cause: int | None = None,
    ) -> int:
        if self._validate:
            validate_event(kind, ts_ms, payload)
        self.count += 1
        return self.count

    def skip(self, n: int) -> int:
        """`n` events counted and numbered at once, payloads unread (`Tap.tally`); the last seq."""
        if self._validate:
            raise ValueError("a validating sink reads every payload: emit() each event")
        self.count += n
        return self.count
