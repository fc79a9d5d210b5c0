"""A payload validated and serialised where it was made, so the journal writes its text as is.

A backtest's discovery runs in a second process (`engine.backtest.discovery_process`) and its
events cross a pipe to the trading process, whose journal validates and serialises each one.
For the month that was 43,000 `candidate_snapshot` payloads of nested dicts pickled in the
child, unpickled in the parent (0.6 + 0.7 s) and then turned into JSON there (another 0.3 s):
all of it on the trading process, the slower of the two. `encode` does the journal's own work
(`validate_event`, then `dumps`) where the event is made instead, and what crosses is one
string; `Journal.emit` writes an `Encoded` payload's `text` without looking inside it.

`Encoded` is still a read-only mapping for anyone else who reads payloads (the tap's console
rows, observers, a validating `NullSink`): the few fields the writer and the tap read for
every event (`HEAD_FIELDS`) are kept beside the text, anything else decodes the text once.
A decoded payload is the JSON's: a tuple reads back as a list, exactly as a journal reader
sees it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from engine.errors import EventValidationError
from engine.journal.events import validate_event

# Read for every event without decoding: the writer's trace outcome (`writer._outcome_of`) and
# the tap's per-symbol signal state (`Tap.emit`).
HEAD_FIELDS = ("accepted", "decision", "approved", "purpose", "side", "status", "command", "client_order_id")


def dumps(kind: str, payload: Mapping[str, Any]) -> str:
    """The payload as the journal stores it (orjson; a read-only mapping as the dict it wraps)."""
    try:
        return orjson.dumps(payload, default=_json_default).decode()
    except orjson.JSONEncodeError as exc:
        raise EventValidationError(f"{kind}: payload is not JSON-serialisable ({exc}); send decimals as strings") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


class Encoded(Mapping[str, Any]):
    """A `kind` payload that passed `validate_event` (schema version `v`), as its JSON `text`."""

    __slots__ = ("_full", "head", "kind", "text", "v")

    def __init__(self, kind: str, v: int, text: str, head: dict[str, Any]) -> None:
        self.kind = kind
        self.v = v
        self.text = text
        self.head = head
        self._full: dict[str, Any] | None = None

    def __reduce__(self) -> tuple[type[Encoded], tuple[str, int, str, dict[str, Any]]]:
        return Encoded, (self.kind, self.v, self.text, self.head)

    def __getitem__(self, key: str) -> Any:
        head = self.head
        if key in head:
            return head[key]
        return self._decoded()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.head or key in self._decoded()

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def _decoded(self) -> dict[str, Any]:
        full = self._full
        if full is None:
            full = self._full = orjson.loads(self.text)
        return full


def encode(kind: str, ts_ms: int, payload: Mapping[str, Any]) -> Encoded:
    """Validate the event (`EventValidationError` as `Journal.emit` raises it) and serialise its payload."""
    v = validate_event(kind, ts_ms, payload)
    head = {name: payload[name] for name in HEAD_FIELDS if name in payload}
    return Encoded(kind, v, dumps(kind, payload), head)
