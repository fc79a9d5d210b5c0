"""Recovery checkpoints: `rebuild`'s state through a seq, journaled so restarts need no older history.

Why: restart recovery replays every fill, order, command, risk and state event ever journaled,
so retention could never delete an archive of a journal that trades, and the disk filled. At
each rotation, before it moves anything, the journal asks for a checkpoint of its flushed
history (`Journal.checkpointer`, set here by `install`: the journal does not import the
runtime) and moves only the seqs it covers; retention may then delete archives wholly below it.

A `checkpoint` event's payload is `{"through_seq", "capital", "digest", "state"}`: `state` is a
`Replay` taken before `finish` (the maps `rebuild` needs to go on, not just its result), floats
exact (JSON round-trips them), decimals as strings, sets sorted; `digest` is a BLAKE2b of it,
so a damaged or edited checkpoint is never taken for a true one.

`start` picks where a restart begins: the newest checkpoint that parses, checks out and is not
older than what retention deleted (`pruned_through` in the journal's meta), else the full
history when nothing was deleted, else a `JournalError` naming the checkpoints refused and the
fix. A refused checkpoint is logged; recovery is never silently built on one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from engine.domain import EngineState, Fill, OrderPurpose, OrderType, Position, Side
from engine.errors import JournalError
from engine.journal.events import KINDS as EVENT_KINDS
from engine.journal.events import JournalEvent
from engine.journal.reader import JournalReader
from engine.journal.writer import Journal
from engine.portfolio.positions import BookChange, ClosedTrade, Holding
from engine.portfolio.risk import RiskDay, RiskLevel
from engine.runtime.recovery import (
    FILLS_KEPT,
    ORDER_ERRORS_KEPT,
    ClosingAll,
    OpenOrder,
    RecoveredState,
    Replay,
    UnbookedFill,
    replay_journal,
)

log = logging.getLogger("hotcoin.recovery")

KIND = "checkpoint"


class CheckpointError(ValueError):
    """A checkpoint payload that cannot be trusted (malformed, damaged, of a newer hotcoin)."""


def payload(replay: Replay, through_seq: int, capital: float) -> dict[str, Any]:
    """The `checkpoint` event payload for `replay`, which has seen every recovery event up to
    `through_seq` (and none after)."""
    state = _dump(replay)
    return {"through_seq": through_seq, "capital": capital, "digest": _digest(state), "state": state}


def restore(event: JournalEvent, capital: float) -> tuple[int, Replay]:
    """(through_seq, the replay it holds) from a `checkpoint` event; `CheckpointError` when it
    cannot be trusted. Cash is journaled with the capital it started from: a changed
    `capital` moves it as it would have moved a full replay."""
    schema = EVENT_KINDS[KIND]
    if event.v > schema.v:
        raise CheckpointError(f"version {event.v}, this hotcoin knows up to {schema.v} (written by a newer hotcoin)")
    p = event.payload
    try:
        through, cp_capital, digest, state = int(p["through_seq"]), float(p["capital"]), str(p["digest"]), p["state"]
        if not isinstance(state, dict) or _digest(state) != digest:
            raise CheckpointError("its digest does not match its state (damaged or edited)")
        replay = _load(state)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise CheckpointError(f"malformed ({type(exc).__name__}: {exc})") from exc
    if through >= event.seq or replay.state.last_seq > through:
        raise CheckpointError(f"through_seq {through} does not fit its own seq {event.seq}")
    if cp_capital != capital:
        replay.state.cash = replay.state.cash - cp_capital + capital
    return through, replay


def start(reader: JournalReader, path: Path, capital: float) -> tuple[int, Replay]:
    """Where recovery starts: (seq it covers, replay so far); see the module doc."""
    pruned = int(reader.meta("pruned_through") or 0)
    refused: list[str] = []
    for seq, event in reader.newest_first(KIND):
        try:
            if isinstance(event, Exception):
                raise CheckpointError(str(event))
            through, replay = restore(event, capital)
        except CheckpointError as exc:
            refused.append(f"seq {seq}: {exc}")
            log.warning("journal %s: checkpoint seq %d is unusable (%s); trying an older one", path, seq, exc)
            continue
        if through < pruned:
            refused.append(f"seq {seq}: covers seq {through}, retention deleted archives through seq {pruned}")
            break
        return through, replay
    if pruned:
        raise JournalError(
            f"journal {path}: no usable checkpoint covers the archives retention deleted (through seq {pruned}): "
            f"{'; '.join(refused) or 'none found'}. Recovery cannot rebuild cash and positions: restore the deleted "
            "archives from a backup, or move the journal aside and start fresh after checking positions on the exchange"
        )
    if refused:
        log.warning("journal %s: recovering from the full history instead", path)
    return 0, Replay(RecoveredState(cash=capital))


def install(journal: Journal, path: Path, capital: float) -> None:
    """Have `journal` checkpoint its flushed history at each rotation (see `Journal.checkpointer`)."""
    def checkpoint(through_seq: int) -> dict[str, Any]:
        return payload(replay_journal(path, capital, through_seq=through_seq), through_seq, capital)

    journal.checkpointer = checkpoint


# -- (de)serialising a Replay -------------------------------------------------------------------


def _digest(state: Mapping[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps(state, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _order(o: OpenOrder) -> dict[str, Any]:
    d = _fields(o)
    d.update(side=o.side.value, order_type=o.order_type.value, purpose=o.purpose.value, quantity=str(o.quantity))
    d["price"] = None if o.price is None else str(o.price)
    return d


def _order_back(d: Mapping[str, Any]) -> OpenOrder:
    price = d["price"]
    return OpenOrder(**{
        **d,
        "side": Side(d["side"]), "order_type": OrderType(d["order_type"]), "purpose": OrderPurpose(d["purpose"]),
        "quantity": Decimal(d["quantity"]), "price": None if price is None else Decimal(price),
    })  # fmt: skip


def _holding(h: Holding) -> dict[str, Any]:
    return {**_fields(h), "position": _fields(h.position)}


def _holding_back(d: Mapping[str, Any]) -> Holding:
    pos = d["position"]
    position = Position(**{**pos, "tp_tiers_hit": tuple(pos["tp_tiers_hit"])})
    return Holding(**{**d, "position": position, "exit_rules": tuple(d["exit_rules"])})


def _dump(replay: Replay) -> dict[str, Any]:
    s = replay.state
    risk = _fields(s.risk)
    risk["level"] = s.risk.level.name
    return {
        "cash": s.cash,
        "holdings": {sym: _holding(h) for sym, h in s.book.holdings.items()},
        "closed": [_fields(c) for c in s.book.closed],
        "written_off": s.book.written_off,
        "sent_ids": sorted(s.sent_ids),
        "open_orders": [_order(o) for o in s.open_orders.values()],
        "maybe_late": [_order(o) for o in s.maybe_late.values()],
        "anomalies": s.anomalies,
        "last_seq": s.last_seq,
        "last_ts_ms": s.last_ts_ms,
        "fills": s.fills,
        "risk": risk,
        "paused": s.paused,
        "close_all": None if s.close_all is None else {**_fields(s.close_all), "traces": sorted(s.close_all.traces)},
        "engine_state": s.engine_state.value,
        "order_errors": list(s.order_errors),
        "last_action_ms": s.last_action_ms,
        "purposes": {cid: p.value for cid, p in replay.purposes.items()},
        "legs": replay.legs,
        "tiers": replay.tiers,
        "tp_filled": sorted(replay.tp_filled),
        "opened_seq": replay.opened_seq,
        "answered": replay.answered,
        "unbooked": [{"fill_seq": u.fill_seq, "trace_id": u.trace_id, "change": _fields(u.change)} for u in replay.unbooked.values()],
        # Only those a restart hands the chart: every fill of every coin ever traded would grow each checkpoint.
        "chart_fills": {sym: [{**_fields(f), "side": f.side.value} for f in fills] for sym, fills in replay.chart_fills().items()},
        "listings": replay.recent_listings(),  # the recent ones: a listing restored a month on heats nothing
    }


def _load(d: Mapping[str, Any]) -> Replay:
    state = RecoveredState(cash=float(d["cash"]))
    book = state.book
    book.holdings = {str(sym): _holding_back(h) for sym, h in d["holdings"].items()}
    book.closed = [ClosedTrade(**{**c, "exit_rules": tuple(c["exit_rules"])}) for c in d["closed"]]
    book.written_off = {str(k): float(v) for k, v in d["written_off"].items()}
    state.sent_ids = {str(c) for c in d["sent_ids"]}
    state.open_orders = {o.client_order_id: o for o in map(_order_back, d["open_orders"])}
    state.maybe_late = {o.client_order_id: o for o in map(_order_back, d["maybe_late"])}
    state.anomalies = [str(a) for a in d["anomalies"]]
    state.last_seq, state.last_ts_ms, state.fills = int(d["last_seq"]), int(d["last_ts_ms"]), int(d["fills"])
    risk = dict(d["risk"])
    state.risk = RiskDay(**{**risk, "level": RiskLevel[risk["level"]]})
    state.paused = bool(d["paused"])
    # A checkpoint written before close-all was recovered has none: a close-all it covers is not taken over.
    ca = d.get("close_all")
    state.close_all = None if ca is None else ClosingAll(**{**ca, "traces": frozenset(str(t) for t in ca["traces"])})
    state.engine_state = EngineState(d["engine_state"])
    state.order_errors = deque((int(t) for t in d["order_errors"]), maxlen=ORDER_ERRORS_KEPT)
    state.last_action_ms = {str(k): int(v) for k, v in d["last_action_ms"].items()}
    # A checkpoint written before listings were journaled has none: coins listed before it are of unknown age.
    state.listings = {str(k): int(v) for k, v in d.get("listings", {}).items()}
    unbooked = (UnbookedFill(int(u["fill_seq"]), str(u["trace_id"]), BookChange(**u["change"])) for u in d["unbooked"])
    # A checkpoint written before the chart's fills were kept has none: the chart marks only later fills.
    fills = {str(sym): deque((Fill(**{**f, "side": Side(f["side"])}) for f in fs), maxlen=FILLS_KEPT) for sym, fs in d.get("chart_fills", {}).items()}
    return Replay(
        state,
        purposes={str(c): OrderPurpose(p) for c, p in d["purposes"].items()},
        legs={str(k): int(v) for k, v in d["legs"].items()},
        tiers={str(k): int(v) for k, v in d["tiers"].items()},
        tp_filled={str(c) for c in d["tp_filled"]},
        opened_seq={str(k): int(v) for k, v in d["opened_seq"].items()},
        answered={str(k): int(v) for k, v in d["answered"].items()},
        unbooked={u.fill_seq: u for u in unbooked},
        fills=fills,
    )
