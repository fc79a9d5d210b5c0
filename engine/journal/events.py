"""The journal's event contract: what an event is, which kinds exist, and what each must carry.

An event is (seq, ts_ms, trace_id, cause, kind, symbol, payload, v). `seq` is assigned by the
journal when the event is emitted (monotonic, never reused), so the core can name an event as
the `cause` of the next one in the same cycle, before either is on disk: a trace is a tree.
A cause is in the event's own trace (or traceless: the `state_change` that cancels resting
entries); an event of another trace that prompted one is named in the payload instead (a held position's exit decision names the candidate it saw:
`candidate_seq`), so `replay` never shows part of a trace as a separate root.

Payloads are validated on emit against `KINDS`: required fields with their types, numbers
finite. Extra fields are allowed (a payload may say more than the contract asks), missing or
mistyped ones are not: such an event raises `EventValidationError` and is counted. Read back,
each event is checked again (`check_stored`): the reader calls one that fails damaged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from operator import itemgetter
from typing import Any, Protocol

from engine.errors import EventValidationError, JournalError

Num = (int, float)
OptStr = (str, type(None))


@dataclass(frozen=True, slots=True)
class KindSchema:
    """Version and required payload fields (name -> accepted types) of one event kind."""

    v: int
    required: Mapping[str, type | tuple[type, ...]]
    doc: str


# Each "check" (filter, rule, risk check) is {"name", "passed", "value", "threshold"} so replay
# can say exactly which one said no, with the value it saw and the limit it applied. Which way
# value and threshold compare is not journaled: `engine.journal.checks` has it by name, for
# every journal alike (a new check name needs its entry there; a test fails without it).
KINDS: dict[str, KindSchema] = {
    "run_start": KindSchema(1, {"run_id": str, "config_hash": str, "mode": str}, "an engine run began; later events belong to it"),
    "run_stop": KindSchema(1, {"run_id": str, "reason": str}, "an engine run ended cleanly"),
    "candidate_snapshot": KindSchema(
        1,
        {"heat": Num, "components": dict, "rank": int, "price": Num, "filters": list, "accepted": bool},
        "discovery's view of one symbol: heat and its components, filters passed/failed",
    ),
    "signal_snapshot": KindSchema(
        1,
        {"decision": str, "reason": str, "rules": list, "features": dict},
        "one evaluation of the signal rules: each rule's outcome, the decision and why",
    ),
    "risk_check": KindSchema(
        1, {"approved": bool, "checks": list}, "capital and risk checks for an entry, each with value and limit"
    ),
    "order_attempt": KindSchema(
        1,
        {"client_order_id": str, "side": str, "order_type": str, "purpose": str, "quantity": str},
        "an order handed to a broker (quantity and price as exact decimal strings)",
    ),
    "order_result": KindSchema(
        1,
        {"client_order_id": str, "status": str, "error_class": OptStr},
        "an order's state as the broker answered or later learned it (placement reply, sync, cancel):"
        " status, filled quantity, average price; rejected (with error class) or unknown",
    ),
    "fill": KindSchema(
        1,
        {"client_order_id": str, "side": str, "price": Num, "quantity": Num, "fee_quote": Num},
        "one execution",
    ),
    "order_anomaly": KindSchema(
        1,
        {"client_order_id": str, "detail": str},
        "what the exchange said of an order that the broker did not take as it came (`Anomaly`): a fee it"
        " estimated, an order that landed late, the exchange's state accepted over ours or ignored; caused"
        " by the `order_result` it explains (or the order's attempt); traceless for an order not ours",
    ),
    "position_update": KindSchema(
        1,
        {"action": str, "quantity": Num, "entry_price": Num, "realised_pnl": Num},
        "a position opened, changed or closed (realised PnL includes fees); action `trail`"
        " (`TRAIL_ACTION`): no fill, its armed trailing stop's peak rose (`trailing_high`, `stop`)",
    ),
    "state_change": KindSchema(1, {"from": str, "to": str, "reasons": list}, "engine_state moved"),
    "risk_event": KindSchema(1, {"code": str, "level": str, "detail": str}, "a risk limit fired"),
    "model_shadow": KindSchema(
        1, {"model": str, "score": Num}, "a research_only model's score, journaled and never acted on"
    ),
    "command": KindSchema(1, {"command": str, "origin": str}, "an operator command (pause, resume, close-all)"),
    "checkpoint": KindSchema(
        1,
        {"through_seq": int, "capital": Num, "digest": str, "state": dict},
        "restart recovery's state through a seq (`engine.runtime.checkpoint`), journaled at a rotation:"
        " recovery replays only the events after it, and retention may delete the archives below it",
    ),
    "listing": KindSchema(
        1,
        {"listed_ms": int, "reason": str},
        "discovery dated a coin's listing (`reason`: new_symbol, now_trading, announced; `listed_ms`):"
        " restart recovery hands the recent ones to the next run, whose first market load is a baseline",
    ),
    "command_refused": KindSchema(
        1,
        {"command": str, "origin": str, "reason": str},
        "a remote command refused before reaching the engine (unknown chat or sender; rate-limited)",
    ),
}

# `position_update.action` when an armed trailing stop's peak rose (`TradingCore._journal_trails`):
# no fill changed the position, but its stop moved, and restart recovery rebuilds the peak from
# the payload's `trailing_high` (the stop in force then is its `stop`). Its `realised_pnl` is 0
# (nothing sold). A reader that knows only the fill actions passes over it: no version change.
TRAIL_ACTION = "trail"

# `run_start.mode` of a backtest's run (an engine's is its `Mode`: SIM, PAPER, LIVE). What tells
# the two apart in a journal: a backtest's trades are replayed history, never the engine's money.
BACKTEST_MODE = "backtest"


@dataclass(frozen=True, slots=True)
class JournalEvent:
    seq: int
    ts_ms: int
    kind: str
    payload: Mapping[str, Any]
    trace_id: str | None = None
    symbol: str | None = None
    cause: int | None = None
    v: int = 1


def known_versions(events: Iterable[JournalEvent], source: object) -> Iterator[JournalEvent]:
    """`events` as they come, refusing one whose `v` is newer than `KINDS` knows for its kind:
    a newer hotcoin wrote it, and recovering from a payload shape this code has never seen
    would guess at positions and cash (`source`: the journal, named in the error)."""
    for event in events:
        schema = KINDS.get(event.kind)
        if schema is not None and event.v > schema.v:
            raise JournalError(
                f"journal {source}: event seq {event.seq} ({event.kind}) is version {event.v}, this hotcoin "
                f"knows up to {schema.v}; it was written by a newer hotcoin: upgrade hotcoin to recover from it"
            )
        yield event


def unknown_version(kind: str, v: int) -> str | None:
    """Why this hotcoin cannot tell what an event of `kind` at version `v` holds (a newer hotcoin
    wrote it, or a kind it has never heard of), in a few words; None when it can. `check_stored`
    passes such events through unchecked (it cannot say what they must hold), so `journal check`,
    `replay` and `report` ask here to name them rather than read them as the version they know:
    `hotcoin run` refuses to start on them (`known_versions`)."""
    schema = KINDS.get(kind)
    if schema is None:
        return f"kind {kind!r} is unknown to this hotcoin"
    if v != schema.v:
        return f"{kind} is version {v}, this hotcoin knows version {schema.v}"
    return None


class EventSink(Protocol):
    """Where the synchronous core sends events. `emit` never blocks and never drops:
    it validates, assigns `seq` and queues; the writer persists asynchronously.

    `keeps_payloads` is False for a sink that only counts and numbers events (a backtest with
    its journal off): the per-minute emitters (candidate and signal snapshots) then skip
    building payloads nobody reads. Every event is still emitted, so seqs, causes and counts
    are the same either way."""

    @property
    def keeps_payloads(self) -> bool: ...

    def emit(
        self,
        kind: str,
        *,
        ts_ms: int,
        payload: Mapping[str, Any],
        trace_id: str | None = None,
        symbol: str | None = None,
        cause: int | None = None,
    ) -> int: ...


def validate_event(kind: str, ts_ms: int, payload: Mapping[str, Any]) -> int:
    """Check an event against the contract; returns its schema version.

    Hot path (every journal event): exact-type set lookups first, the full isinstance rules
    (subclasses such as StrEnum, bool-is-not-a-number, finiteness) only when those miss."""
    compiled = _COMPILED.get(kind)
    if compiled is None:
        raise EventValidationError(f"unknown event kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    if (type(ts_ms) is not int and (not isinstance(ts_ms, int) or isinstance(ts_ms, bool))) or ts_ms < 0:
        raise EventValidationError(f"{kind}: ts_ms must be a non-negative int (epoch ms), got {ts_ms!r}")
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise EventValidationError(f"{kind}: payload must be a mapping, got {type(payload).__name__}")
    v, fields = compiled
    for name, exact, types in fields:
        if name not in payload:
            raise EventValidationError(f"{kind}: payload lacks required field {name!r}")
        value = payload[name]
        t = type(value)
        if t in exact:
            if t is float and not math.isfinite(value):
                raise EventValidationError(f"{kind}.{name}: {value!r} is not a finite number")
            continue
        _check_field(kind, name, types, value)
    return v


def check_stored(kind: str, v: int, ts_ms: int, payload: Mapping[str, Any]) -> None:
    """Check an event read back from a journal against the contract it was written under;
    raises `EventValidationError`. `emit` validated it, so one that fails now was changed on
    disk (an edited or half-restored file): recovery and replay would read it as the engine's
    record and crash on, or worse book, a missing or mistyped field. An unknown kind, or a
    version other than the one `KINDS` describes, is left to the callers (`known_versions`):
    this code cannot say what such a payload must hold.

    Every event a reader decodes passes here, so the usual case is one C-level lookup of the
    required fields' types among the combinations the contract accepts (`payload` as orjson
    parsed it: plain types, and JSON has no NaN or infinity); anything else goes through
    `validate_event`, which names what is wrong."""
    stored = _STORED.get(kind)
    if stored is None or v != stored[0]:
        return
    _, fields, accepted = stored
    try:
        if type(ts_ms) is int and ts_ms >= 0 and tuple(map(type, fields(payload))) in accepted:
            return
    except (KeyError, TypeError):  # a field missing; a payload that is not a mapping
        pass
    validate_event(kind, ts_ms, payload)


def _check_field(kind: str, name: str, types: type | tuple[type, ...], value: Any) -> None:
    """The full rule for one field whose type is not one of the exact accepted types."""
    if isinstance(value, bool) and types is not bool and not (isinstance(types, tuple) and bool in types):
        raise EventValidationError(f"{kind}.{name}: expected {_names(types)}, got bool")
    if not isinstance(value, types):
        raise EventValidationError(f"{kind}.{name}: expected {_names(types)}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EventValidationError(f"{kind}.{name}: {value!r} is not a finite number")


def _compile(schema: KindSchema) -> tuple[int, tuple[tuple[str, frozenset[type], type | tuple[type, ...]], ...]]:
    fields = []
    for name, types in schema.required.items():
        exact = frozenset(types) if isinstance(types, tuple) else frozenset({types})
        fields.append((name, exact, types))
    return schema.v, tuple(fields)


_COMPILED = {kind: _compile(schema) for kind, schema in KINDS.items()}


def _stored(schema: KindSchema) -> tuple[int, Callable[[Mapping[str, Any]], tuple[Any, ...]], frozenset[tuple[type, ...]]]:
    """`check_stored`'s quick check of a kind: its version, a getter of its required fields as
    a tuple, and every tuple of their types the contract accepts exactly (a few per kind)."""
    names = tuple(schema.required)
    getter = itemgetter(*names)
    fields = getter if len(names) > 1 else lambda payload: (getter(payload),)
    exact = (types if isinstance(types, tuple) else (types,) for types in schema.required.values())
    return schema.v, fields, frozenset(product(*exact))


_STORED = {kind: _stored(schema) for kind, schema in KINDS.items()}


def _names(types: type | tuple[type, ...]) -> str:
    if isinstance(types, tuple):
        return " | ".join("None" if t is type(None) else t.__name__ for t in types)
    return types.__name__


def make_trace_id(*parts: object) -> str:
    """A 16-hex-char id derived from its parts (e.g. run id, symbol, bar time, counter).

    Derived rather than random so a backtest replayed twice journals the same ids.
    """
    blob = "\x1f".join(map(str, parts)).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


class TraceIds:
    """`make_trace_id(*prefix, symbol, ts_ms)` for the many ids that share their leading parts
    (a run's: discovery derives one per candidate per bar, some 45,000 a replayed month): the
    hash of the shared parts is taken once and copied, at about a third of the cost per id
    (`tests/engine/journal/test_trace_ids.py` holds the two equal)."""

    def __init__(self, *prefix: object) -> None:
        self._prefix = prefix
        self._hash = hashlib.blake2b("".join(f"{p}\x1f" for p in prefix).encode(), digest_size=8)

    def __reduce__(self) -> tuple[type[TraceIds], tuple[object, ...]]:
        """Rebuilt from the prefix: a hash object neither pickles nor copies, and the `Discovery`
        holding this one must stay copyable (`copy.deepcopy`, pickle) as it was."""
        return TraceIds, self._prefix

    def of(self, symbol: str, ts_ms: int) -> str:
        h = self._hash.copy()
        h.update(f"{symbol}\x1f{ts_ms}".encode())
        return h.hexdigest()

    def of_each(self, symbol: str, times: Iterable[int]) -> list[str]:
        """`of(symbol, t)` for each of `times` (a member's bars over a run of minutes): the hash
        of the symbol's part too is taken once, at about half the cost per id."""
        h = self._hash.copy()
        h.update(f"{symbol}\x1f".encode())
        out = []
        for ts_ms in times:
            x = h.copy()
            x.update(b"%d" % ts_ms)
            out.append(x.hexdigest())
        return out


def check(name: str, passed: bool, value: Any = None, threshold: Any = None) -> dict[str, Any]:
    """One filter / rule / risk-check outcome in the shape replay renders."""
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold}
