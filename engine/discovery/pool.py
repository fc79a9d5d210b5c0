"""The candidate pool: the hottest symbols right now, each kept a while, with its heat history.

Membership, each batch:
- a symbol *qualifies* when it passes the filters, has heat >= `min_heat` and is among the
  `size` hottest qualifying symbols; qualifying (re)sets its expiry to now + `ttl_ms`;
- a member that stops qualifying stays, with its current figures, until it expires (a pump's
  pause for breath does not throw it out), unless a filter now rejects it or it left the
  market, which removes it at once;
- above `size` members the coolest leave first.

Readers get a `PoolSnapshot`: a tuple of frozen `Candidate`s (their `returns` are read-only
mappings), so a snapshot held by the UI or the signal stage never changes under it. The pool
hands its ranked members to its user (`update`'s `rank`), which returns them as a `Ranked`:
their candidates are built from it on first read (`PoolSnapshot.deferred`), so a snapshot
nobody reads as candidates (the backtest's discovery process sends its members' figures as
columns, `engine.backtest.discovery_process._columns`) costs no `Candidate` at all.
Heat history is one sample per bar (the bar's latest), at most `history_len` bars.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol

from engine.config.sections.discovery import PoolSection
from engine.domain.discovery import Candidate
from engine.domain.slots_init import direct_init


class Ranked(Protocol):
    """A snapshot's members, hottest first, as their maker holds them until they are read."""

    @property
    def symbols(self) -> Sequence[str]: ...

    def build(self) -> tuple[Candidate, ...]:
        """The members' candidates, `rank` 1 first."""
        ...


class PoolSnapshot:
    """The pool at one moment, hottest first (`rank` 1 is the hottest): frozen, equal, hashed
    and written as the dataclass `PoolSnapshot(ts_ms, candidates)` it was, with `candidates`
    built on first read where the snapshot was made `deferred` (module doc)."""

    __slots__ = ("_candidates", "deferred", "ts_ms")
    ts_ms: int
    _candidates: tuple[Candidate, ...] | None
    deferred: Ranked | None  # what `candidates` is (or was) built from; None: given built

    def __init__(self, ts_ms: int, candidates: tuple[Candidate, ...] = ()) -> None:
        _set_ts(self, ts_ms)
        _set_candidates(self, candidates)
        _set_deferred(self, None)

    @classmethod
    def of(cls, ts_ms: int, deferred: Ranked) -> PoolSnapshot:
        """The snapshot of `deferred`'s members, built when first read."""
        return _restored(ts_ms, None, deferred)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        built = self._candidates
        if built is None:
            assert self.deferred is not None
            built = self.deferred.build()
            _set_candidates(self, built)
        return built

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, PoolSnapshot)
        return (self.ts_ms, self.candidates) == (other.ts_ms, other.candidates)

    def __hash__(self) -> int:
        return hash((self.ts_ms, self.candidates))

    def __repr__(self) -> str:
        return f"PoolSnapshot(ts_ms={self.ts_ms!r}, candidates={self.candidates!r})"

    def __reduce__(self) -> tuple[Callable[..., PoolSnapshot], tuple[Any, ...]]:
        """Pickled and copied as it stands, built or not (its slots, set past `__setattr__`)."""
        return _restored, (self.ts_ms, self._candidates, self.deferred)

    def __len__(self) -> int:
        return len(self.candidates if self.deferred is None else self.deferred.symbols)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    @property
    def symbols(self) -> tuple[str, ...]:
        if self.deferred is not None:
            return tuple(self.deferred.symbols)
        return tuple(c.symbol for c in self.candidates)

    def get(self, symbol: str) -> Candidate | None:
        for c in self.candidates:
            if c.symbol == symbol:
                return c
        return None


_set_ts = PoolSnapshot.__dict__["ts_ms"].__set__
_set_candidates = PoolSnapshot.__dict__["_candidates"].__set__
_set_deferred = PoolSnapshot.__dict__["deferred"].__set__


def _restored(ts_ms: int, candidates: tuple[Candidate, ...] | None, deferred: Ranked | None) -> PoolSnapshot:
    """A `PoolSnapshot` from its slots as they stand: `PoolSnapshot.of`, and a pickled or copied
    one (`PoolSnapshot.__reduce__`)."""
    snapshot = PoolSnapshot.__new__(PoolSnapshot)
    _set_ts(snapshot, ts_ms)
    _set_candidates(snapshot, candidates)
    _set_deferred(snapshot, deferred)
    return snapshot


@direct_init
@dataclass(frozen=True, slots=True)
class PoolChange:
    """What one update did: who entered, who left and why, and the new snapshot."""

    entered: tuple[str, ...]
    left: tuple[tuple[str, str], ...]  # (symbol, reason)
    snapshot: PoolSnapshot


@dataclass(slots=True)
class _Member:
    expires_ms: int
    history: deque[tuple[int, float]] = field(default_factory=deque)


class CandidatePool:
    """Top-N by heat with a TTL and a bounded heat history per member."""

    def __init__(self, cfg: PoolSection) -> None:
        self.cfg = cfg
        self._members: dict[str, _Member] = {}
        self._snapshot = PoolSnapshot(ts_ms=0)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._members

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[str]:
        """The members' symbols, oldest member first (as `members`, without the tuple)."""
        return iter(self._members)

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._members)

    def snapshot(self) -> PoolSnapshot:
        return self._snapshot

    def idle(self, now_ms: int) -> PoolChange:
        """`update` of an empty pool nothing qualifies for (most minutes of a replay): nobody
        enters, leaves or is built; the snapshot moves to `now_ms`."""
        if self._members:
            raise ValueError(f"idle() is for an empty pool; {len(self._members)} members need update()")
        self._snapshot = PoolSnapshot(ts_ms=now_ms)
        return PoolChange(entered=(), left=(), snapshot=self._snapshot)

    def expires_ms(self, symbol: str) -> int:
        """When a member leaves unless it qualifies again before."""
        return self._members[symbol].expires_ms

    def history(self, symbol: str) -> tuple[tuple[int, float], ...]:
        """(bar-time ms, heat) samples of a member, oldest first; empty for non-members."""
        m = self._members.get(symbol)
        return tuple(m.history) if m else ()

    def update(
        self,
        now_ms: int,
        heats: Mapping[str, float],
        qualifying: frozenset[str] | set[str],
        rejected: Mapping[str, str],
        rank: Callable[[list[str]], Ranked],
    ) -> PoolChange:
        """Fold one batch in.

        `heats`: current heat of every qualifying symbol and every present member;
        `qualifying`: symbols that qualify now; `rejected`: members a filter now rejects, with
        the reason; `rank(symbols)`: the members, hottest first, as the snapshot holds them (`Ranked`).
        """
        cfg, size = self.cfg, self.cfg.size
        entered: list[str] = []
        left: list[tuple[str, str]] = []
        members = self._members
        for symbol, reason in rejected.items():
            if members.pop(symbol, None) is not None:
                left.append((symbol, reason))
        for symbol, member in list(members.items()):
            if symbol not in heats:
                del members[symbol]
                left.append((symbol, "left the market"))
            elif symbol not in qualifying and member.expires_ms <= now_ms:
                del members[symbol]
                left.append((symbol, "expired"))
        expires = now_ms + cfg.ttl_ms
        for symbol in qualifying:
            known = members.get(symbol)
            if known is None:
                members[symbol] = _Member(expires, deque(maxlen=cfg.history_len))
                entered.append(symbol)
            else:
                known.expires_ms = expires
        ranked = sorted(members, key=lambda s: (-heats[s], s)) if len(members) > 1 else list(members)
        if len(ranked) > size:
            for symbol in ranked[size:]:
                del members[symbol]
                if symbol in entered:
                    entered.remove(symbol)
                else:
                    left.append((symbol, "displaced by hotter symbols"))
            del ranked[size:]
        bar_ms = now_ms - now_ms % cfg.bar_ms
        for symbol in ranked:
            heat = heats[symbol]
            history = members[symbol].history
            if history and history[-1][0] == bar_ms:
                history[-1] = (bar_ms, heat)
            else:
                history.append((bar_ms, heat))
        self._snapshot = PoolSnapshot.of(now_ms, rank(ranked))
        return PoolChange(tuple(entered), tuple(left), self._snapshot)

    def keep_run(
        self, times: Sequence[int], heats: Mapping[str, Sequence[float]], qualifies: Mapping[str, Sequence[bool]],
        arrivals: Callable[[int], Iterable[str]], rank: Callable[[int, list[str]], Ranked],
    ) -> KeptRun | None:
        """`update` of each batch at `times` in turn, where no batch rejects a member or leaves
        one out of the market: `heats` and `qualifies` give every member's and every other
        symbol's that qualifies in the run (none else does) heat and whether it qualifies,
        batch by batch. Most busy minutes of a replay are such: symbols enter, have their
        expiry put off, rank and expire, each on its own, so a run of them is folded at once,
        symbol by symbol (`_spans`: runs cut at each entry and expiry were 2,216 a replayed
        month, beside 1,568 `update`s, against 645 and 630, each with its fixed costs). The run
        stops before a batch that would hold more than `size` members (one displaced; None,
        nothing done, where that is the first) and after one that leaves the pool empty.
        `arrivals(batch)`: the symbols qualifying at a batch where somebody enters, in the
        order `update` is given them (entrants join in it); `rank(batch, ranked)`: the last
        batch's members (`test_filters_pool.py` holds this to `update` batch by batch)."""
        members, ttl = self._members, self.cfg.ttl_ms
        spans = {symbol: _spans(members.get(symbol), times, q, ttl) for symbol, q in qualifies.items()}
        n = _taken(spans, len(times), self.cfg.size)
        if not n:
            return None
        spans = {symbol: [(a, min(b, n)) for a, b in span if a < n] for symbol, span in spans.items()}
        joined: dict[int, set[str]] = {}
        for symbol, span in spans.items():
            for a, _ in span:
                if a or symbol not in members:
                    joined.setdefault(a, set()).add(symbol)
        entered = {t: tuple(s for s in arrivals(t) if s in joined[t]) for t in sorted(joined)}
        place = {symbol: k for k, symbol in enumerate(members)}

        def key(symbol: str, a: int) -> tuple[int, ...]:  # `members`' order at a batch: the old, then entrants
            return (0, place[symbol]) if not a and symbol in place else (1, a, entered[a].index(symbol))

        left: dict[int, tuple[tuple[str, str], ...]] = {}
        for t, gone in groupby(sorted((b, key(s, a), s) for s, span in spans.items() for a, b in span if b < n),
                               key=itemgetter(0)):  # fmt: skip
            left[t] = tuple((s, "expired") for _, _, s in gone)
        self._fold(spans, times[:n], heats, qualifies, key)
        ranked = sorted(members, key=lambda s: (-heats[s][n - 1], s)) if len(members) > 1 else list(members)
        self._snapshot = PoolSnapshot.of(times[n - 1], rank(n - 1, ranked))
        return KeptRun(n, spans, entered, left, self._snapshot)

    def _fold(
        self, spans: Mapping[str, list[tuple[int, int]]], times: Sequence[int], heats: Mapping[str, Sequence[float]],
        qualifies: Mapping[str, Sequence[bool]], key: Callable[[str, int], tuple[int, ...]],
    ) -> None:  # fmt: skip
        """The members after `keep_run`'s batches `times`, as `update` leaves them: the old ones
        that stayed in, their expiries put off and heat history extended, and those in at the
        end that entered in the run, new, in the order they entered (`key`)."""
        members, cfg, n = self._members, self.cfg, len(times)
        joining = []
        for symbol, span in spans.items():
            member = members.get(symbol)
            if member is not None and span[0][1] < n:  # it left in the run
                del members[symbol]
            if not span or span[-1][1] < n:
                continue
            a = span[-1][0]
            last = next((t for t in range(n - 1, a - 1, -1) if qualifies[symbol][t]), None)
            if member is None or a:
                member = _Member(0, deque(maxlen=cfg.history_len))
                joining.append((key(symbol, a), symbol, member))
            if last is not None:
                member.expires_ms = times[last] + cfg.ttl_ms
            member.history.extend(_samples(member.history, times[a:], heats[symbol][a:n], cfg.bar_ms))
        members.update((symbol, member) for _, symbol, member in sorted(joining, key=itemgetter(0)))


@dataclass(frozen=True, slots=True)
class KeptRun:
    """What `CandidatePool.keep_run` did: how many batches it took (`count`), each symbol's
    stretches as a member (`spans`: its first batch in and the batch it left at, `count`
    where it is in still; an old member's first starts at 0), who entered and who left at
    each batch that has any, and the last batch's snapshot."""

    count: int
    spans: dict[str, list[tuple[int, int]]]
    entered: dict[int, tuple[str, ...]]
    left: dict[int, tuple[tuple[str, str], ...]]
    snapshot: PoolSnapshot


def _spans(member: _Member | None, times: Sequence[int], qualifies: Sequence[bool], ttl: int) -> list[tuple[int, int]]:
    """A symbol's stretches as a member over `times` (`KeptRun.spans`, the batches not cut),
    `member` before them: in at a batch it qualifies at, its expiry then put off; out at the
    first at which it does not and its expiry has come."""
    out = []
    start, expires = (0, member.expires_ms) if member is not None else (-1, 0)
    for t, (now, qualified) in enumerate(zip(times, qualifies, strict=True)):
        if qualified:
            if start < 0:
                start = t
            expires = now + ttl
        elif start >= 0 and expires <= now:
            out.append((start, t))
            start = -1
    if start >= 0:
        out.append((start, len(times)))
    return out


def _taken(spans: Mapping[str, list[tuple[int, int]]], n: int, size: int) -> int:
    """How many of `n` batches `keep_run` takes: up to one that holds more than `size` members
    (not included), or one that holds none (included)."""
    delta = [0] * (n + 1)
    for span in spans.values():
        for a, b in span:
            delta[a] += 1
            delta[b] -= 1
    count = 0
    for t in range(n):
        count += delta[t]
        if count > size:
            return t
        if not count:
            return t + 1
    return n


def _samples(
    history: deque[tuple[int, float]], times: Sequence[int], heats: Sequence[float], bar_ms: int
) -> list[tuple[int, float]]:
    """The (bar time, heat) samples `times` add to `history`, the last of each bar: one that
    falls in `history`'s last bar replaces that bar's sample there (popped), as `update` does."""
    samples: dict[int, float] = {}
    for now, heat in zip(times, heats, strict=True):
        samples[now - now % bar_ms] = heat
    if history and history[-1][0] in samples:
        history.pop()
    return list(samples.items())
