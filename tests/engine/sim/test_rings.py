"""`MinuteRings`' rolling 24 h high and low against a brute-force pass over the ring, minute by
minute: the whole hour blocks inside the window are reduced once an hour, the loose minutes at
both ends every minute (in a ring just long enough for the window too), a sub-step's trade
moves the current minute between two reads, a listing adds a column mid-run, and history
loaded in bulk rewrites the ring."""

from __future__ import annotations

import numpy as np
import pytest

from engine.sim.rings import WINDOW_MINUTES, MinuteRings

M0 = 26_958_000  # an epoch minute on an hour boundary (2021-04-04 00:00 UTC)


@pytest.mark.parametrize("ring_minutes", [WINDOW_MINUTES + 1, WINDOW_MINUTES + 160])
def test_rolling_high_and_low_are_exact_at_every_minute(ring_minutes: int) -> None:
    rng = np.random.default_rng(5)
    rings = MinuteRings(ring_minutes, M0, capacity=4)
    rings.add_symbols(np.array([10.0, 20.0, 30.0]), M0)
    checked = 0
    for k in range(1, 3 * WINDOW_MINUTES // 2):
        n = rings.n
        high = 10.0 + 90.0 * rng.random(n)  # every minute can be the day's extreme
        low = high * rng.uniform(0.01, 1.0, n)
        close = (high + low) / 2
        rings.set_current(close, high, low, close, np.ones(n), np.ones(n), np.ones(n, np.bool_))
        rings.begin_minute(M0 + k, close)
        if k == WINDOW_MINUTES + 30:
            rings.add_symbols(np.array([5.0]), M0 + k)  # a listing: a column, its past at its price
        if k == WINDOW_MINUTES + 95:  # history rewritten in bulk, mid-hour
            shape = (WINDOW_MINUTES, rings.n)
            h = 10.0 + 90.0 * rng.random(shape)
            rings.load_history(h, h, h / 2, h, np.ones(shape), np.ones(shape), np.ones(shape, np.int64), np.ones(shape, np.bool_))
        for _ in range(2):  # a sub-step's trade moves the current minute, then the figures are read again
            stats = rings.stats()
            window = np.arange(rings.minute - WINDOW_MINUTES + 1, rings.minute + 1) % rings.ring_minutes
            np.testing.assert_array_equal(stats.high, rings.high[window, : rings.n].max(axis=0), err_msg=f"minute {k}")
            np.testing.assert_array_equal(stats.low, rings.low[window, : rings.n].min(axis=0), err_msg=f"minute {k}")
            price = 10.0 + 95.0 * rng.random(rings.n)
            rings.trade(price, np.ones(rings.n), np.ones(rings.n), np.ones(rings.n, np.int32))
        checked += 1
    assert rings.n == 4 and checked > WINDOW_MINUTES
