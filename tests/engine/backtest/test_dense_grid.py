"""The replay's minute grid (`parquet_source._dense`, built minute-major) equals the pair-major
construction written the obvious way: same candles, same held prices through the outage and
before the listing, same validity, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.sim.parquet_source import _dense, _read

MINUTE_MS = 60_000


def reference(loaded: list[tuple[str, np.ndarray, np.ndarray]], start: int, minutes: int) -> dict[str, np.ndarray]:
    """Pair by pair: candles where they exist, else the last close, else the first open."""
    n = len(loaded)
    out = {k: np.zeros((minutes, n)) for k in ("open", "high", "low", "close", "volume")}
    valid = np.zeros((minutes, n), np.bool_)
    for j, (_, ts, values) in enumerate(loaded):
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


def test_grid_equals_the_pair_by_pair_construction(store: Path) -> None:
    loaded = sorted((_read(p, "USDT") for p in sorted(store.glob("*_USDT-1m.parquet"))), key=lambda s: (int(s[1][0]), s[0]))
    start = min(int(ts[0]) // MINUTE_MS for _, ts, _ in loaded)
    minutes = max(int(ts[-1]) // MINUTE_MS for _, ts, _ in loaded) - start + 1
    grid = _dense(loaded, start, minutes)
    want = reference(loaded, start, minutes)
    assert not want["valid"].all()  # the store has an outage and a late listing to fill
    for name, expected in want.items():
        got = getattr(grid, name)
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        assert np.ascontiguousarray(got).tobytes() == expected.tobytes(), name
