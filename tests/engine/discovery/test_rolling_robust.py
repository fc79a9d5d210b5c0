"""The compiled rolling baselines (`rolling_robust`) give `robust_center_scale`'s figures on
every window of a timeline, bit for bit; the numpy path is what runs where it was not built."""

from __future__ import annotations

import _ctypes
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.config.sections.discovery import WindowsSection
from engine.discovery import rolling_robust
from engine.discovery import windows as windows_module
from engine.discovery.anomaly import robust_center_scale
from engine.discovery.windows import TickerWindows
from engine.domain.ticker import FloatArray, IntArray
from tests.engine.discovery.test_robust_center_scale import same_bits


@pytest.fixture
def kernel() -> rolling_robust.RollingRobust:
    """The built kernel; a machine with a C compiler must have built it (`make native`)."""
    got = rolling_robust.load()
    if got is None:
        if os.environ.get("HOTCOIN_NO_NATIVE"):
            pytest.skip("HOTCOIN_NO_NATIVE is set: the numpy path only")
        if shutil.which(os.environ.get("CC", "cc")) is None:
            pytest.skip("no C compiler here: the kernel is not built, the numpy path runs")
        pytest.fail(f"{rolling_robust.LIBRARY} is missing: run `make native`")
    return got


def timelines(seed: int, rows: int, cols: int, signed_zeros: bool = False) -> FloatArray:
    """Log-return-like timelines: heavy tails, runs of ties, zeros, NaN stretches and single
    NaNs, a change of regime, a row with nothing known and one knowing a single value."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(rows, cols)) * 1e-3
    coarse = rng.random(rows) < 0.4
    x[coarse] = np.round(x[coarse] * 2e3) / 2e3 + 0.0  # ties; + 0.0: rounding leaves -0.0
    x[rng.random(x.shape) < 0.08] = 0.0
    if signed_zeros:
        x[rng.random(x.shape) < 0.08] = -0.0
    x[rng.random(x.shape) < 0.1] = np.nan
    for row in range(2, rows, 5):  # an outage: a stretch of nothing known
        start = int(rng.integers(0, cols))
        x[row, start : start + int(rng.integers(1, 80))] = np.nan
    x[3:4, cols // 3 :] *= 1e4  # a change of regime: the MAD's split moves far from one window to the next
    x[4:5, ::2] += 0.5  # a spread that swings every batch
    x[0] = np.nan
    x[1] = np.nan
    x[1, cols // 2] = 0.25
    return x


def numpy_windows(line: FloatArray, k: int, first: int, last: int) -> tuple[FloatArray, FloatArray, IntArray]:
    """`robust_center_scale` of every window, batch-major: what the numpy path computes."""
    windows = np.stack([line[:, j + first : j + last + 1] for j in range(k)])
    return robust_center_scale(windows.reshape(k * len(line), last - first + 1))


def rolled(
    kernel: rolling_robust.RollingRobust, line: FloatArray, k: int, first: int, last: int
) -> tuple[FloatArray, FloatArray, IntArray]:
    m = k * len(line)
    med, mad, n = np.empty(m), np.empty(m), np.empty(m, np.int64)
    kernel.center_scale(line, k, first, last, med, mad, n)
    return med, mad, n


@pytest.mark.parametrize(
    ("k", "first", "last"),
    [(120, 2, 63), (120, 1, 63), (1, 2, 63), (7, 0, 0), (64, 0, 63), (200, 3, 10), (33, 0, 1)],
)
def test_every_window_is_robust_center_scale_bit_for_bit(
    kernel: rolling_robust.RollingRobust, k: int, first: int, last: int
) -> None:
    for seed in range(4):
        line = timelines(seed, 23, k + last + 1 + seed)
        got, want = rolled(kernel, line, k, first, last), numpy_windows(line, k, first, last)
        assert np.array_equal(got[2], want[2])
        assert same_bits(got[0], want[0]) and same_bits(got[1], want[1])


def test_signed_zeros_give_the_same_values(kernel: rolling_robust.RollingRobust) -> None:
    """Which of -0.0 and 0.0 a sort puts first is the sort's affair, so a zero median's sign
    may differ (returns and log volumes hold no -0.0: x - x is +0.0); every value and every
    MAD's bits are the same."""
    line = timelines(7, 31, 190, signed_zeros=True)
    (med, mad, n), (want_med, want_mad, want_n) = rolled(kernel, line, 120, 2, 63), numpy_windows(line, 120, 2, 63)
    assert np.array_equal(n, want_n) and same_bits(mad, want_mad)
    assert np.array_equal(med, want_med, equal_nan=True)


def test_strided_rows_are_read_in_place(kernel: rolling_robust.RollingRobust) -> None:
    """A block's timelines are the first columns of wider arrays (`RingBlock`): views."""
    wide = timelines(3, 12, 300)
    line = wide[:, :184]
    got, want = rolled(kernel, line, 120, 1, 63), numpy_windows(np.ascontiguousarray(line), 120, 1, 63)
    assert all(same_bits(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in zip(got, want, strict=True))


def test_bad_arguments_are_refused_before_any_memory_is_read(kernel: rolling_robust.RollingRobust) -> None:
    line = timelines(1, 4, 100)
    out = np.empty(4 * 10), np.empty(4 * 10), np.empty(4 * 10, np.int64)
    with pytest.raises(ValueError, match="do not fit"):
        kernel.center_scale(line, 10, 2, 95, *out)
    with pytest.raises(ValueError, match="float64 timelines"):
        kernel.center_scale(line.astype(np.float32), 10, 2, 63, *out)
    with pytest.raises(ValueError, match="float64 timelines"):
        kernel.center_scale(line[:, ::2], 10, 2, 30, *out)
    with pytest.raises(ValueError, match="40 contiguous int64"):
        kernel.center_scale(line, 10, 2, 63, out[0], out[1], np.empty(40))
    with pytest.raises(ValueError, match="40 contiguous float64"):
        kernel.center_scale(line, 10, 2, 63, out[0], np.empty(39), out[2])


def test_without_the_library_the_numpy_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`HOTCOIN_NO_NATIVE` (or no built library) leaves `load` None: the caller sorts."""
    rolling_robust.load.cache_clear()
    monkeypatch.setenv("HOTCOIN_NO_NATIVE", "1")
    try:
        assert rolling_robust.load() is None
    finally:
        rolling_robust.load.cache_clear()
    monkeypatch.delenv("HOTCOIN_NO_NATIVE")
    monkeypatch.setattr(rolling_robust, "LIBRARY", rolling_robust.LIBRARY.with_name("not_built.so"))
    try:
        assert rolling_robust.load() is None
    finally:
        rolling_robust.load.cache_clear()


def test_a_library_built_from_another_version_is_set_aside(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A library whose interface version is not this module's (rebuilt from an older
    rolling_robust.c, or not ours at all: no version to ask) is never called: the numpy path
    runs, and a warning says to run `make native`."""
    if not rolling_robust.LIBRARY.exists():
        pytest.skip("the library is not built (make native)")
    monkeypatch.delenv("HOTCOIN_NO_NATIVE", raising=False)
    rolling_robust.load.cache_clear()
    try:
        assert rolling_robust.load() is not None  # this build is this version
        rolling_robust.load.cache_clear()
        monkeypatch.setattr(rolling_robust, "ABI", rolling_robust.ABI + 1)
        with caplog.at_level("WARNING", logger=rolling_robust.__name__):
            assert rolling_robust.load() is None
        assert "make native" in caplog.text
        rolling_robust.load.cache_clear()
        monkeypatch.setattr(rolling_robust, "LIBRARY", Path(_ctypes.__file__))  # a shared library, not ours
        assert rolling_robust.load() is None  # no version function to ask
    finally:
        rolling_robust.load.cache_clear()


def test_windows_carried_from_block_to_block_are_the_windows_rolled_anew(kernel: rolling_robust.RollingRobust) -> None:
    """A timeline cut into blocks the way `RingBlock` cuts it (each block's timeline starts with
    the last block's final ring) gives, with each row's last window carried from one call to
    the next (`Carry`), every block's figures bit for bit as without; a row whose timeline does
    not follow on (a new owner, a gap) and a change in the rows' count are sorted anew."""
    first, last, k = 2, 63, 40
    line = timelines(11, 9, 6 * k + last + 1)
    carry = rolling_robust.Carry()
    for b in range(6):
        part = np.ascontiguousarray(line[:, b * k : b * k + k + last])
        if b == 3:
            part[4, first + 5] += 1.0  # row 4 no longer follows on from its last window
        if b == 5:
            part = part[:7]  # fewer rows: nothing kept fits
        m = len(part) * k
        got = np.empty(m), np.empty(m), np.empty(m, np.int64)
        kernel.center_scale(part, k, first, last, *got, carry)
        want = rolled(kernel, part, k, first, last)
        assert np.array_equal(got[2], want[2]) and same_bits(got[0], want[0]) and same_bits(got[1], want[1]), b


@pytest.mark.parametrize("seed", range(4))
def test_fold_volume_is_the_numpy_fold(kernel: rolling_robust.RollingRobust, seed: int) -> None:
    """The compiled fold's estimates, fresh tickers, last samples and resets are numpy's
    (`TickerWindows._fold_estimates`) bit for bit: repeated tickers, counter resets, gaps,
    unknown departures and 24 h figures, rows with no sample yet and rows a day old; the
    figures read through [batch, row] views of wider arrays, as a replay's run holds them."""
    rng = np.random.default_rng(seed)
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=60_000, history_slots=64))
    e, k, t0 = 12, 90, 1_617_235_200_000
    for i in range(e):
        w._allocate(f"S{i}/USDT", t0)
    ts = t0 + 60_000 * np.arange(1, k + 1, dtype=np.int64)
    ts[40:] += 600_000  # a gap longer than volume_gap_slots
    wide_qv = np.abs(rng.standard_normal((k, e + 3))).cumsum(axis=0) * 1e4 + 1e6
    wide_qv[rng.random(wide_qv.shape) < 0.05] *= 0.01  # counter resets
    wide_event = ts[:, None] - rng.integers(0, 50_000, (k, e + 3))
    repeat = rng.random(wide_event.shape) < 0.2
    wide_event[1:][repeat[1:]] = wide_event[:-1][repeat[1:]]  # repeated tickers: no sample
    qv, event = wide_qv[:, :e], wide_event[:, :e]
    departing = rng.random((k, e)) * 50.0
    departing[rng.random(departing.shape) < 0.1] = np.nan
    since = w._volume_since_ms[:e]
    since[:4] = t0 - 2 * 86_400_000  # a day of history
    since[4:8] = t0  # not yet
    sample = (np.full(e, t0 - 10_000), rng.random(e) * 1e6 + 1e6, np.full(e, t0, np.int64))
    sample[1][8] = np.nan  # no 24 h figure known
    sample[0][9] = np.iinfo(np.int64).min  # no sample yet
    limits = (w._bucket_ms, w._gap_ms, w._keep_after_reset, windows_module.VOLUME_NOISE)
    got = kernel.fold_volume(ts, qv, event, departing, sample, since, limits)
    want = w._fold_estimates(ts, qv, event, departing.copy(), sample)
    assert same_bits(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[3] == want[3]
    assert all(same_bits(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in zip(got[2], want[2], strict=True))
    assert want[3] > 0 and (~want[1]).any() and np.isnan(want[0]).any()  # resets, repeats and unknowns were there
