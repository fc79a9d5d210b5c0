"""The replay's minute grid (`parquet_source._Grid`, built minute-major a chunk at a time)
equals the pair-major construction written the obvious way: same candles, same held prices
through the outage, across chunk edges and before the listing, same validity, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.sim.parquet_source import Columns, _Grid, _read

MINUTE_MS = 60_000


def reference(loaded: list[tuple[str, np.ndarray, Columns]], start: int, minutes: int) -> dict[str, np.ndarray]:
    """Pair by pair: candles where they exist, else the last close, else the first open."""
    n = len(loaded)
    out = {k: np.zeros((minutes, n)) for k in ("open", "high", "low", "close", "volume")}
    valid = np.zeros((minutes, n), np.bool_)
    for j, (_, ts, columns) in enumerate(loaded):
        values = np.column_stack(columns)  # (rows, 5): a candle a row
        rows = ts // MINUTE_MS - start
        held = values[0, 0]
        at = dict(zip(rows.tolist(), range(len(rows)), strict=True))
        for m in range(minutes):
            i = at.get(m)
            if i is None:
                for k in ("open", "high", "low", "close"):
                    out[k][m, j] = held
                continue
            valid[m, j] = True
            for col, k in enumerate(("open", "high", "low", "close", "volume")):
                out[k][m, j] = values[i, col]
            held = values[i, 3]
    return out | {"valid": valid}


@pytest.mark.parametrize("chunk", [7, 1440, 100_000])
def test_grid_equals_the_pair_by_pair_construction(store: Path, chunk: int) -> None:
    loaded = sorted((_read(p, "USDT") for p in sorted(store.glob("*_USDT-1m.parquet"))), key=lambda s: (int(s[1][0]), s[0]))
    start = min(int(ts[0]) // MINUTE_MS for _, ts, _ in loaded)
    minutes = max(int(ts[-1]) // MINUTE_MS for _, ts, _ in loaded) - start + 1
    grid = _Grid(loaded, start, chunk)
    assert grid.minutes == minutes
    want = reference(loaded, start, minutes)
    assert not want["valid"].all()  # the store has an outage and a late listing to fill
    n = len(loaded)
    rows = [grid.row(r, n) for r in range(minutes)]
    for name, expected in want.items():
        got = np.stack([getattr(row, name) for row in rows])
        assert got.dtype == expected.dtype, name
        assert got.tobytes() == expected.tobytes(), name
    assert grid.last_close.tobytes() == want["close"][-1].tobytes()  # what the replay holds past the end
    part = grid.row(minutes // 2, 3)  # the first pairs only (the ones listed by then)
    assert part.close.tobytes() == want["close"][minutes // 2, :3].tobytes()
