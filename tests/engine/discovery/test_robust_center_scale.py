"""`robust_center_scale` selects the MAD from the two sorted runs of the deviations instead of
sorting them: pinned bit for bit to the two-sort version it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from engine.discovery.anomaly import robust_center_scale
from engine.domain.ticker import FloatArray, IntArray


def two_sorts(x: FloatArray) -> tuple[FloatArray, FloatArray, IntArray]:
    """The straightforward version: sort, median, sort |sorted - median|, median again."""
    m, r = x.shape
    s = np.sort(x, axis=1)
    n = np.argmax(np.isnan(s), axis=1)
    n[~np.isnan(s[:, -1])] = r
    lo, hi, ar = np.maximum((n - 1) // 2, 0), n // 2, np.arange(m)
    med = 0.5 * (s[ar, lo] + s[ar, hi])
    d = np.sort(np.abs(s - med[:, None]), axis=1)
    mad = 0.5 * (d[ar, lo] + d[ar, hi])
    med[n == 0] = np.nan
    mad[n == 0] = np.nan
    return med, mad, n


def same_bits(a: FloatArray, b: FloatArray) -> bool:
    """Equal to the last bit and the sign of zero (NaN's payload aside)."""
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan].view(np.uint64), b[~nan].view(np.uint64)))


def rows(seed: int, m: int, r: int) -> FloatArray:
    """Rows of every count from 0 to r (even and odd), few distinct values (ties), ±0.0."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(m, r)) * 1e-3
    coarse = rng.random(m) < 0.3
    x[coarse] = np.round(x[coarse] * 2e3) / 2e3  # many ties
    x[rng.random(x.shape) < 0.05] = 0.0
    x[rng.random(x.shape) < 0.05] = -0.0
    known = rng.integers(0, r + 1, size=m)
    known[: r + 1] = np.arange(r + 1)
    for row, k in enumerate(known):
        x[row, rng.permutation(r)[k:]] = np.nan
    return x


@pytest.mark.parametrize(("m", "r"), [(200, 64), (300, 128), (80, 7), (5, 1), (40, 2)])
def test_the_mad_is_the_two_sort_mad_bit_for_bit(m: int, r: int) -> None:
    for seed in range(5):
        x = rows(seed, m, r)
        for got, want in zip(robust_center_scale(x), two_sorts(x), strict=True):
            assert same_bits(np.asarray(got, np.float64), np.asarray(want, np.float64))


def test_signed_zeros_around_a_zero_median() -> None:
    x = np.array([[0.0, -0.0, -0.0, 1.0], [-0.0, 0.0, 0.0, np.nan], [-0.0, -0.0, 0.0, 0.0]])
    for got, want in zip(robust_center_scale(x), two_sorts(x), strict=True):
        assert same_bits(np.asarray(got, np.float64), np.asarray(want, np.float64))


def test_no_rows() -> None:
    med, mad, n = robust_center_scale(np.empty((0, 64)))
    assert med.shape == mad.shape == n.shape == (0,)
