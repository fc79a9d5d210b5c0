"""`DayRowBatch` (a tape minute's batch, its rows cut when read) against `TickerBatch.trusted`
of the same rows: the straightforward batch it stands for."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from engine.domain import TickerBatch
from engine.domain.ticker import _ARRAY_FIELDS, DayRowBatch


def _tables(minutes: int, pairs: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(7)
    event_ms = rng.integers(0, 10**12, (minutes, pairs))
    floats = [rng.random((minutes, pairs)) for _ in range(8)]
    counts = np.broadcast_to(np.full(pairs, -1, np.int64), (minutes, pairs))
    tables = (event_ms, *floats, counts)
    for table in tables[:-1]:
        table.setflags(write=False)
    return tables


def _trusted(ts_ms: int, symbols: tuple[str, ...], tables: tuple[np.ndarray, ...], i: int) -> TickerBatch:
    n = len(symbols)
    return TickerBatch.trusted(ts_ms, symbols, *(t[i, :n] for t in tables))


@pytest.mark.parametrize(("i", "n"), [(0, 5), (3, 5), (9, 2), (9, 0)])
def test_day_row_batch_reads_as_the_trusted_batch_of_its_rows(i: int, n: int) -> None:
    tables = _tables(10, 5)
    symbols = tuple(f"S{k}/USDT" for k in range(n))
    lazy, plain = DayRowBatch.of(60_000 * i, symbols, tables, i), _trusted(60_000 * i, symbols, tables, i)
    assert isinstance(lazy, TickerBatch)
    assert (lazy.ts_ms, lazy.symbols, len(lazy)) == (plain.ts_ms, plain.symbols, len(plain))
    for name in _ARRAY_FIELDS:
        got, want = getattr(lazy, name), getattr(plain, name)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
        assert not got.flags.writeable
    assert lazy.tickers() == plain.tickers()


def test_day_row_batch_pickles_as_the_plain_batch() -> None:
    tables = _tables(4, 3)
    symbols = ("A/USDT", "B/USDT", "C/USDT")
    back = pickle.loads(pickle.dumps(DayRowBatch.of(120_000, symbols, tables, 2)))
    assert type(back) is TickerBatch
    assert back.tickers() == _trusted(120_000, symbols, tables, 2).tickers()
