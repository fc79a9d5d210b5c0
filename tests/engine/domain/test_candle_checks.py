"""`candle_problem`'s fast answer (`_sound`: column reductions) against its row masks
(`_first_problem`): sound columns pass both ways, and every kind of bad value, anywhere,
is found by the masks the reductions hand it to."""

from __future__ import annotations

import numpy as np
import pytest

from engine.domain.candle import _first_problem, _sound, candle_problem


def _columns(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    o = rng.uniform(0.5, 2.0, n)
    c = o * rng.uniform(0.95, 1.05, n)
    h = np.maximum(o, c) * rng.uniform(1.0, 1.02, n)
    lo = np.minimum(o, c) * rng.uniform(0.98, 1.0, n)
    lo[::7] = np.minimum(o, c)[::7]  # a low on its open or close: sound
    h[::5] = np.maximum(o, c)[::5]
    v = rng.uniform(0.0, 10.0, n)
    v[::3] = 0.0
    return [o, h, lo, c, v]


BAD = [np.nan, np.inf, -np.inf, 0.0, -1.0, -0.0, 1e-300]


@pytest.mark.parametrize("seed", range(6))
def test_reductions_answer_as_the_row_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cols = _columns(rng, 500)
    assert _sound(*cols) and _first_problem(*cols) is None and candle_problem(*cols) is None
    for _ in range(60):
        broken = [x.copy() for x in cols]
        for _ in range(rng.integers(1, 3)):
            column, row = int(rng.integers(5)), int(rng.integers(500))
            broken[column][row] = BAD[int(rng.integers(len(BAD)))] if rng.random() < 0.7 else broken[column][row] * 3.0
        found = _first_problem(*broken)
        assert _sound(*broken) == (found is None)
        assert candle_problem(*broken) == found


def test_no_rows_is_sound() -> None:
    empty = [np.zeros(0)] * 5
    assert _sound(*empty) and candle_problem(*empty) is None
