"""Rolling (median, MAD, count) along timelines, in compiled code where it was built; and, in
the same library, a block's heat (`heat_block`: its parts, rank counts and climbs) and a fold's
volume estimates and day-ring sums (`fold_volume`, `fold_day_ring`): loops numpy could only run
as dozens of calls on small arrays.

A block of batches' baselines are windows of one timeline per row (`RingBlock`): window j
is columns j + first .. j + last, and consecutive windows share all but a value each way.
numpy can only sort every window again (`robust_center_scale`: 120 windows x 64 slots per
row and block, the discovery process's largest cost); `rolling_robust.c` keeps each row's
window sorted and updates it with one shift per batch, and finds the MAD as the k-th smallest
of the two sorted runs of deviations, walked from the window before's split. Its figures are numpy's bit for bit
(tests pin it against `robust_center_scale` on the same windows).

The library is built by `make` (`make native`) next to this file, with the machine's C
compiler. Where it was not built (no compiler, a plain `pip install`), `load()` is None and
the baselines take the numpy path: the same figures, slower. `HOTCOIN_NO_NATIVE=1` forces
the numpy path (what the tests compare against, and a way out should a build misbehave).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.domain.ticker import FloatArray, IntArray

log = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
VolumeSample = tuple[IntArray, FloatArray, IntArray]  # each row's last ticker event time, 24 h figure, time

# A shared library, not a Python module: with a plain `.so` suffix, anything walking the package
# (pkgutil, an import of every module) would take it for an extension module and fail on it.
LIBRARY = Path(__file__).with_name("librolling_robust.so.1")

_F64P = ctypes.POINTER(ctypes.c_double)
_I64P = ctypes.POINTER(ctypes.c_int64)


class Carry:
    """Each row's last window of one `center_scale` call, for the next: its values as on the
    timeline, its known ones sorted, and how many (-1: none). A block's first window is the
    block before's last one a slot on, so the kernel slides it one value instead of sorting
    the window anew (where the values show it does follow on: see rolling_robust.c)."""

    def __init__(self) -> None:
        self._raw: FloatArray = np.empty((0, 0))
        self._sorted: FloatArray = np.empty((0, 0))
        self._n: IntArray = np.empty(0, np.int64)

    def fit(self, rows: int, width: int) -> tuple[int, int, int]:
        """The kept arrays' addresses for `rows` windows of `width` values; where they do not fit,
        new ones, nothing kept."""
        if self._raw.shape != (rows, width):
            self._raw, self._sorted = np.empty((rows, width)), np.empty((rows, width))
            self._n = np.full(rows, -1, np.int64)
        return self._raw.ctypes.data, self._sorted.ctypes.data, self._n.ctypes.data


def _bind(lib: ctypes.CDLL, name: str, restype: type | None, argtypes: list[type]) -> Any:
    """`lib`'s function `name`, its result and argument types declared (ctypes checks and
    converts each argument by them)."""
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


class RollingRobust:
    """The compiled kernel, called on numpy arrays."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        p, i, d = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
        self._fn = _bind(lib, "rolling_center_scale", None, [p, i, i, i, i, i, p, p, p, p, p, p, p])
        self._fold = _bind(lib, "fold_volume", i, [p, i, i, p, p, i, p, p, p, p, p, i, i, d, d, p, p])
        self._day = _bind(lib, "fold_day_ring", None, [p, i, i, p, i, p])
        self._heat = _bind(lib, "heat_block", i, [i, i, p, p, p, i, *[p] * 13])

    def center_scale(
        self, line: FloatArray, k: int, first: int, last: int, med: FloatArray, mad: FloatArray, n: IntArray,
        carry: Carry | None = None,
    ) -> None:  # fmt: skip
        """Write window j's (median, MAD, count) of row i of `line` [row, column] (rows may be
        strided, columns contiguous) to med/mad/n[j * rows + i], for j in [0, k): batch-major,
        `robust_center_scale`'s row order on a block's windows. NaN median and MAD where a
        window holds no value. `carry`: each row's last window, kept from the call before
        and for the next (`Carry`)."""
        rows, cols = line.shape
        if line.dtype != np.float64 or (rows > 1 and line.strides[1] != 8) or line.strides[0] % 8:
            raise ValueError("rolling_center_scale reads float64 timelines, contiguous along time")
        if not 0 <= first <= last or k < 0 or (k and last + k > cols):
            raise ValueError(f"windows {first}..{last} of {k} batches do not fit timelines of {cols} columns")
        for out, dtype in ((med, np.float64), (mad, np.float64), (n, np.int64)):
            if out.dtype != dtype or not out.flags.c_contiguous or out.size != rows * k:
                raise ValueError(f"an output of {rows * k} contiguous {np.dtype(dtype)} is needed")
        if not rows or not k:
            return
        buffer = np.empty(last - first + 1)
        kept = (None, None, None) if carry is None else carry.fit(rows, last - first + 1)
        self._fn(
            line.ctypes.data, rows, line.strides[0] // 8, k, first, last,
            med.ctypes.data, mad.ctypes.data, n.ctypes.data, buffer.ctypes.data, *kept,
        )  # fmt: skip

    def fold_volume(
        self, ts: IntArray, qv: FloatArray, event: IntArray, departing: FloatArray, sample: VolumeSample,
        since: IntArray, limits: tuple[int, int, float, float],
    ) -> tuple[FloatArray, BoolArray, VolumeSample, int]:  # fmt: skip
        """A fold's volume estimates (`TickerWindows._fold_volume`, whose numpy path is the
        reference): (estimates, fresh tickers [batch, row], each row's last sample after the
        fold as (event time, 24 h figure, time), resets counted). `sample` is each row's last
        sample before it, `since` its first sample's time, `limits` (bucket ms, gap ms, share
        kept after a reset, noise share)."""
        k, e = qv.shape
        if qv.strides != event.strides or qv.strides[1] != 8 or qv.dtype != np.float64 or event.dtype != np.int64:
            qv, event = np.ascontiguousarray(qv, np.float64), np.ascontiguousarray(event, np.int64)
        ts, departing = np.ascontiguousarray(ts, np.int64), np.ascontiguousarray(departing, np.float64)
        if ts.shape != (k,) or departing.shape != (k, e) or since.shape != (e,) or any(a.shape != (e,) for a in sample):
            raise ValueError(f"a fold of {k} batches over {e} rows needs [{k}] times and [{k}, {e}] departures")
        seen: IntArray = np.array(sample[0], np.int64)  # copies: the kernel leaves them as after the fold
        last_qv: FloatArray = np.array(sample[1], np.float64)
        last_ms: IntArray = np.array(sample[2], np.int64)
        since = np.ascontiguousarray(since, np.int64)
        est: FloatArray = np.empty((k, e))
        fresh: BoolArray = np.empty((k, e), np.bool_)
        bucket_ms, gap_ms, keep, noise = limits
        resets = self._fold(
            ts.ctypes.data, k, e, qv.ctypes.data, event.ctypes.data, qv.strides[0] // 8, departing.ctypes.data,
            seen.ctypes.data, last_qv.ctypes.data, last_ms.ctypes.data, since.ctypes.data, bucket_ms, gap_ms, keep,
            noise, est.ctypes.data, fresh.ctypes.data,
        ) if k and e else 0  # fmt: skip
        return est, fresh, (seen, last_qv, last_ms), int(resets)


    def fold_day_ring(self, ring: npt.NDArray[np.float32], cols: IntArray, est: FloatArray) -> None:
        """Add `est` [batch, row] to the float32 sums of `ring` [row, bucket] (rows contiguous;
        its first len(est[0]) rows), batch j's to column cols[j], batch after batch (windows.py
        `_fold_day_ring`)."""
        k, e = est.shape
        if ring.dtype != np.float32 or ring.strides[1] != 4 or len(ring) < e or cols.shape != (k,):
            raise ValueError(f"a float32 [row, bucket] ring of {e} rows or more and {k} columns are needed")
        if k and e and (cols.min() < 0 or cols.max() >= ring.shape[1]):
            raise ValueError("a column outside the ring")
        cols, est = np.ascontiguousarray(cols, np.int64), np.ascontiguousarray(est, np.float64)
        if k and e:
            self._day(ring.ctypes.data, ring.strides[0] // 4, e, cols.ctypes.data, k, est.ctypes.data)

    def heat_block(
        self, figures: tuple[FloatArray, ...], ret: FloatArray, traded: BoolArray, active: BoolArray, extents: IntArray,
        cfg: FloatArray, bars: tuple[FloatArray, FloatArray],
    ) -> tuple[FloatArray, FloatArray, int]:  # fmt: skip
        """Heat of a block of batches that each open a bar (heat.py `rank_block`, whose numpy path
        is the reference): `figures` price z, volume z, run-up, listing freshness (numpy's exp;
        NaN: 0), social velocity and sentiment [batch, row]; `ret` the returns [batch, horizon,
        row] (1, 5, 15 min first); `cfg` the 11 figures rolling_robust.c's heat_block names;
        `bars` the stored previous-bar and bar percentiles (a row each, updated in place).
        (heat [batch, row], parts [component, batch, row], the last ranked batch or -1.)"""
        k, n_ret, e = ret.shape
        flat = [np.ascontiguousarray(a, np.float64) for a in figures]
        traded, active = np.ascontiguousarray(traded, np.bool_), np.ascontiguousarray(active, np.bool_)
        ret = np.ascontiguousarray(ret, np.float64)
        extents, cfg = np.ascontiguousarray(extents, np.int64), np.ascontiguousarray(cfg, np.float64)
        if n_ret < 3 or len(flat) != 6 or extents.shape != (k,) or cfg.shape != (11,):
            raise ValueError("heat_block reads six figures, three return horizons or more, extents and 11 settings")
        for a in (*flat, traded, active):
            if a.shape != (k, e):
                raise ValueError(f"[{k}, {e}] arrays are needed")
        prev_bar, bar = bars
        for a in bars:
            if a.dtype != np.float64 or a.shape != (e,) or not a.flags.c_contiguous:
                raise ValueError(f"the stored percentiles are {e} contiguous float64 values each")
        heat, parts, pct = np.empty((k, e)), np.empty((6, k, e)), np.empty((k, e))
        last = self._heat(
            k, e, flat[0].ctypes.data, flat[1].ctypes.data, ret.ctypes.data, n_ret, flat[2].ctypes.data,
            traded.ctypes.data, flat[3].ctypes.data, flat[4].ctypes.data, flat[5].ctypes.data, active.ctypes.data,
            extents.ctypes.data, cfg.ctypes.data, parts.ctypes.data, heat.ctypes.data, pct.ctypes.data,
            prev_bar.ctypes.data, bar.ctypes.data,
        ) if k and e else -1  # fmt: skip
        return heat, parts, int(last)


ABI = 3  # rolling_robust.c's `rolling_robust_abi()`: the interface this module calls


@functools.cache
def load() -> RollingRobust | None:
    """The built kernel, or None where it was not built (or `HOTCOIN_NO_NATIVE` is set), or
    was built from another version of rolling_robust.c (the code updated and `make native`
    not run since: its functions' arguments may differ, and calling them would misread
    memory), which a warning says, with the fix."""
    if os.environ.get("HOTCOIN_NO_NATIVE") or not LIBRARY.exists():
        return None
    try:
        lib = ctypes.CDLL(str(LIBRARY))
        abi = lib.rolling_robust_abi
    except (OSError, AttributeError):
        abi = None
    if abi is not None:
        abi.restype = ctypes.c_int64
        abi.argtypes = []
        if abi() == ABI:
            return RollingRobust(lib)
    log.warning("%s was built from another version of rolling_robust.c; the numpy path runs instead "
                "(same figures, slower): run `make native` to rebuild it", LIBRARY)  # fmt: skip
    return None
