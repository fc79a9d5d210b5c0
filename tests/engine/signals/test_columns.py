"""A pool read as columns (`ColumnPool`) decides, journals and notes ranks as its candidates do,
and builds them only where a candidate's path needs them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from engine.config.sections.trading import SignalSettings
from engine.domain import Candidate
from engine.signals.bars import BarHistory
from engine.signals.cache import BarCache
from engine.signals.columns import ColumnPool, MemberColumns, by_rank, symbols_of
from engine.signals.stage import SignalStage
from tests.engine.signals import market_kit as mk
from tests.engine.signals.test_stage import CountingSink, _events, _plain


def _pool(cands: list[Candidate]) -> tuple[ColumnPool, list[int]]:
    """`cands` as a column pool, and a list that counts its builds."""
    built: list[int] = []

    def build() -> Sequence[Candidate]:
        built.append(1)
        return tuple(cands)

    columns = MemberColumns(
        [c.symbol for c in cands], [c.trace_id for c in cands], [c.rank for c in cands], [c.heat for c in cands]
    )
    return ColumnPool(columns, build), built


def _ranked(names: list[str], heats: Sequence[float], now: int = mk.NOW) -> list[Candidate]:
    return [replace(mk.candidates([s], now, heat=h)[0], rank=i + 1) for i, (s, h) in enumerate(zip(names, heats, strict=True))]


@pytest.mark.parametrize(
    ("heats", "builds"),
    [((50.0, 40.0, 30.0), 0), ((80.0, 40.0, 75.0), 1), ((), 0)],
    ids=["all-cold", "some-warm", "empty"],
)
def test_a_column_pool_enters_as_its_candidates(heats: tuple[float, ...], builds: int) -> None:
    """Two bars of the core's asks (`enter_only`, journal off), once with the candidates, once
    with the same pool as columns: the same signals, events (seqs, causes), bar cache and rank
    notes; the columns' pool builds its candidates only where one is warm."""
    names = mk.symbols(3)[: len(heats)]
    history = BarHistory("1m")
    mk.feed_hot(history, mk.symbols(3), mk.NOW)
    plain_sink, column_sink = CountingSink(), CountingSink()
    plain = SignalStage(SignalSettings(), history, plain_sink)
    columns = SignalStage(SignalSettings(), history, column_sink)
    built_total = 0
    for k, now in enumerate((mk.NOW, mk.NOW + 60_000)):
        cands = _ranked(names[::-1] if k else names, heats, now)  # ranks change at the next bar
        causes = {c.trace_id: 100 + i for i, c in enumerate(cands)}
        pool, built = _pool(cands)
        want = plain.evaluate_entries(cands, now, min_heat=70.0, last_action_ms={}, causes=causes, enter_only=True)
        got = columns.evaluate_entries(pool, now, min_heat=70.0, last_action_ms={}, causes=causes, enter_only=True)
        assert [_plain(e) for e in got] == [_plain(e) for e in want]
        assert _events(column_sink) == _events(plain_sink)
        assert columns._entries._values == plain._entries._values and columns._entries._bar_ms == plain._entries._bar_ms
        assert (columns._ranks, columns._prev_ranks) == (plain._ranks, plain._prev_ranks)
        built_total += len(built)
        # asked again in the bar: as the candidates are (a cold skip is kept for the bar)
        again = plain.evaluate_entries(cands, now + 5_000, min_heat=70.0, last_action_ms={}, enter_only=True)
        assert [_plain(e) for e in columns.evaluate_entries(pool, now + 5_000, min_heat=70.0, last_action_ms={}, enter_only=True)] == [
            _plain(e) for e in again
        ]
        assert _events(column_sink) == _events(plain_sink) and len(built) <= 1
    assert built_total == 2 * builds


def test_a_journaling_stage_reads_a_column_pool_as_its_candidates() -> None:
    """With payloads kept the stage takes the candidates' path: built, and the same journal."""
    names = mk.symbols(3)
    history = BarHistory("1m")
    mk.feed_hot(history, names, mk.NOW)
    cands = _ranked(names, (50.0, 40.0, 30.0))
    plain_sink, column_sink = CountingSink(), CountingSink()
    column_sink.keeps_payloads = plain_sink.keeps_payloads = True
    pool, built = _pool(cands)
    want = SignalStage(SignalSettings(), history, plain_sink).evaluate_entries(cands, mk.NOW, min_heat=70.0, last_action_ms={})
    got = SignalStage(SignalSettings(), history, column_sink).evaluate_entries(pool, mk.NOW, min_heat=70.0, last_action_ms={})
    assert [_plain(e)[:6] for e in got] == [_plain(e)[:6] for e in want] and built == [1]
    assert _events(column_sink) == _events(plain_sink)


@pytest.mark.parametrize("ranks", [[1, 2, 3], [1, 1, 2], [2, 1, 3], [3, 2, 1], []])
def test_by_rank_is_the_sort_and_keeps_an_ordered_pool_unbuilt(ranks: list[int]) -> None:
    names = mk.symbols(3)[: len(ranks)]
    cands = [replace(c, rank=r) for c, r in zip(_ranked(names, [50.0] * len(ranks)), ranks, strict=True)]
    pool, _ = _pool(cands)
    got = by_rank(pool)
    assert list(got) == sorted(cands, key=lambda c: c.rank)
    assert (got is pool) == (ranks == sorted(ranks))
    assert symbols_of(pool) == symbols_of(cands) == names
    assert list(pool) == cands and pool[0:2] == tuple(cands[:2]) and len(pool) == len(cands)


def test_put_many_is_a_put_each() -> None:
    """`BarCache.put_many` (a minute's cold skips): the cache a `put` of each leaves, across bars."""
    one: BarCache[int] = BarCache()
    many: BarCache[int] = BarCache()
    for bar, symbols in ((60_000, ["A", "B", "A"]), (60_000, ["C"]), (0, ["D"]), (120_000, []), (180_000, ["B", "E"])):
        for s in symbols:
            one.put(s, bar, bar)
        many.put_many(symbols, bar, bar)
        assert (list(many._values.items()), many._bar_ms) == (list(one._values.items()), one._bar_ms)


def test_a_pool_without_the_taken_coins_is_its_other_candidates_as_columns() -> None:
    """`ColumnPool.without`: the members not taken, in order, as columns and, once built, this
    pool's own candidates; the pool itself where none is taken, unbuilt either way."""
    names = mk.symbols(4)
    cands = _ranked(names, [40.0, 90.0, 40.0, 10.0])
    pool, built = _pool(cands)
    assert pool.without({"X/USDT"}) is pool
    cut = pool.without({names[0], names[2]})
    assert not built and list(cut.columns.symbols) == [names[1], names[3]] and list(cut.columns.ranks) == [2, 4]
    assert list(cut.columns.trace_ids) == [cands[1].trace_id, cands[3].trace_id] and list(cut.columns.heats) == [90.0, 10.0]
    assert all(a is b for a, b in zip(cut, [cands[1], cands[3]], strict=True)) and len(cut) == 2 and built == [1]
