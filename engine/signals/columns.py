"""A pool's candidates read as columns before any `Candidate` is built.

Most minutes of a replay that have candidates have only cold ones (heat under the entry bar):
the core then reads of each no more than its symbol, trace id, rank and heat (`SignalStage`
journals its skip, `TradingCycle` follows its bars), and building the `Candidate`s (their
heat components, returns mapping) and freeing them again was the largest cost such a minute
had on the trading side of a backtest (57,000 a replayed month). A pool whose maker holds
those four as columns (the backtest's discovery process sends them: `MemberColumns`) reaches
the core as a `ColumnPool`: a sequence of its candidates, built on first read (through the
snapshot, so every reader sees the same objects), that the stage's cold path and the cycle
read as columns without building. Everything else reads it as the candidates it is.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from typing import overload

from engine.discovery.pool import PoolSnapshot
from engine.domain import Candidate
from engine.domain.slots_init import direct_init

_rank = attrgetter("rank")


@direct_init  # one a minute with candidates
@dataclass(frozen=True, slots=True)
class MemberColumns:
    """The pool's members hottest first, as columns: what each would be as a `Candidate`."""

    symbols: Sequence[str]
    trace_ids: Sequence[str]
    ranks: Sequence[int]
    heats: Sequence[float]


class ColumnPool(Sequence[Candidate]):
    """The candidates `build()` makes (on first read, once), with `columns` to read before."""

    __slots__ = ("_build", "_built", "columns")

    def __init__(self, columns: MemberColumns, build: Callable[[], Sequence[Candidate]]) -> None:
        self.columns = columns
        self._build = build
        self._built: Sequence[Candidate] | None = None

    def built(self) -> Sequence[Candidate]:
        if self._built is None:
            self._built = self._build()
        return self._built

    def __len__(self) -> int:
        return len(self.columns.symbols)

    @overload
    def __getitem__(self, i: int) -> Candidate: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Candidate]: ...

    def __getitem__(self, i: int | slice) -> Candidate | Sequence[Candidate]:
        return self.built()[i]

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.built())

    def without(self, taken: Container[str]) -> ColumnPool:
        """The candidates whose symbol is not `taken`, in order, still as columns: the core's
        fresh ones where a coin is held or ordered (`TradingCore.on_candidates`), whose cold
        minutes are then decided without building the pool either. Built, they are this pool's
        own candidates. Itself where none is taken (a held coin out of the pool: nearly always)."""
        c = self.columns
        keep = [i for i, symbol in enumerate(c.symbols) if symbol not in taken]
        if len(keep) == len(c.symbols):
            return self
        columns = MemberColumns(
            [c.symbols[i] for i in keep], [c.trace_ids[i] for i in keep], [c.ranks[i] for i in keep],
            [c.heats[i] for i in keep],
        )  # fmt: skip
        return ColumnPool(columns, lambda: tuple(x for x in self.built() if x.symbol not in taken))


def pool_of(snapshot: PoolSnapshot) -> Sequence[Candidate]:
    """`snapshot.candidates`, as a `ColumnPool` where its maker holds them as `MemberColumns`
    (its `deferred` has them as `columns`): built when first read, then the snapshot's own."""
    columns = getattr(snapshot.deferred, "columns", None)
    if isinstance(columns, MemberColumns):
        return ColumnPool(columns, lambda: snapshot.candidates)
    return snapshot.candidates


def by_rank(candidates: Sequence[Candidate]) -> Sequence[Candidate]:
    """`sorted(candidates, key=rank)`: a `ColumnPool` whose ranks never fall already is in that
    order (the sort is stable), and is returned as it is, still unbuilt."""
    if isinstance(candidates, ColumnPool):
        ranks = candidates.columns.ranks
        # A rising range (what the backtest's discovery process sends: ranks 1..n) is known
        # in order without walking it: ~0.4 us a minute with candidates.
        if (ranks.__class__ is range and ranks.step > 0) or all(a <= b for a, b in pairwise(ranks)):
            return candidates
    return sorted(candidates, key=_rank)


def symbols_of(candidates: Sequence[Candidate]) -> Sequence[str]:
    """The candidates' symbols, in order, read from the columns where there are some. An
    empty pool (half the minutes of a replay) answers at once, without a comprehension."""
    if isinstance(candidates, ColumnPool):
        return candidates.columns.symbols
    if not candidates:
        return []
    return [c.symbol for c in candidates]
