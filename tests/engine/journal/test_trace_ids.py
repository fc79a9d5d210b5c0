"""`TraceIds`: the ids `make_trace_id` derives, with the shared leading parts hashed once."""

from __future__ import annotations

import copy
import pickle

import pytest

from engine.journal.events import TraceIds, make_trace_id


@pytest.mark.parametrize("prefix", [("run",), ("bt-20210401-0a1b",), ("", ""), ("run", 7), ("rün\x1f", "ü")])
@pytest.mark.parametrize("symbol", ["BTC/USDT", "PEPE/USDT", "", "ÆON/USDT"])
@pytest.mark.parametrize("ts_ms", [0, 1_617_235_200_000, -60_000])
def test_trace_ids_are_make_trace_id(prefix: tuple[object, ...], symbol: str, ts_ms: int) -> None:
    assert TraceIds(*prefix).of(symbol, ts_ms) == make_trace_id(*prefix, symbol, ts_ms)


def test_one_trace_ids_serves_many_ids() -> None:
    """The shared hash is copied per id, never updated: ids do not depend on those made before."""
    ids = TraceIds("run")
    first = [ids.of(s, t) for s in ("A/USDT", "B/USDT") for t in (0, 60_000)]
    assert first == [ids.of(s, t) for s in ("A/USDT", "B/USDT") for t in (0, 60_000)]
    assert len(set(first)) == 4


def test_trace_ids_copy_and_pickle() -> None:
    """A `Discovery` holding one stays copyable: rebuilt from its prefix, it makes the same ids."""
    ids = TraceIds("run", 3)
    for clone in (copy.deepcopy(ids), pickle.loads(pickle.dumps(ids))):
        assert clone.of("A/USDT", 60_000) == ids.of("A/USDT", 60_000) == make_trace_id("run", 3, "A/USDT", 60_000)


@pytest.mark.parametrize("symbol", ["BTC/USDT", "", "ÆON/USDT"])
def test_a_symbols_ids_over_many_bars_are_make_trace_id(symbol: str) -> None:
    """`of_each` (a member's bars over a run, the symbol hashed once) is `of` bar by bar."""
    times = [0, 60_000, 60_000, 1_617_235_200_000, -60_000]
    assert TraceIds("run", 7).of_each(symbol, times) == [make_trace_id("run", 7, symbol, t) for t in times]
    assert TraceIds("run").of_each(symbol, []) == []
