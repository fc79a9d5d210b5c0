"""Price acceleration and volume surges, scored against each symbol's own recent behaviour.

A 3% minute is noise for a meme coin and an event for BTC, so every score is a *robust
z-score* against the symbol's own history in `TickerWindows`: per-slot log returns and
per-slot log volumes, centred on their median and scaled by their MAD (x 1.4826, so it
estimates a standard deviation when the data are normal). Median and MAD ignore the few
outliers a pump itself adds to the history, where mean and standard deviation would not.

The baselines cost a sort per symbol, so they are refreshed a slice of the active symbols per
batch (`baseline_refresh_batches`): every batch costs the same, no batch pays for all. A
block of a replay's batches (`score_block`) reads them off windows of one timeline per
symbol, rolled along it in compiled code where it was built (`rolling_robust`): the same
figures, without sorting every window again.
The current (still filling) slot is left out of its own baseline.

Scores:
- price z at horizon h (1, 5, 15 min of k slots): (log return - k x median) / (sigma x sqrt k);
  `price_z` is the best of the three: a move that is fast for its horizon, wherever it shows first.
- `accel`: the 1 min return per minute minus the 15 min return per minute (positive while a move speeds up).
- volume z: log of the mean slot volume over `surge_window_ms` against the log slot-volume baseline;
  `volume_surge` is the plain ratio to the median slot volume. The baseline is of the slots whose
  volume is known (`log_volume`: a slot with no positive volume is unknown, not a zero), and both
  count only once `min_history_slots` slots are known and the recent volume is: a symbol's first
  day (departures guessed) or the hour after an outage (a ring of empty slots) scores 0, not
  a z-score against a median of zeros.
- the return baseline is of the returns into slots a fresh ticker reached (`traded_ring`): a
  slot with none holds a carried-forward or repeated price, a return of exactly 0 that observes
  nothing. Counted as samples, an outage's zeros put every symbol's sigma at `sigma_floor` and
  scored ordinary minutes as pumps for the 30-40 min after it; `min_history_slots` counts the
  real returns only.

The scores feed heat (`heat.py`) and are journaled in each candidate_snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.config.sections.discovery import AnomalySection
from engine.discovery import rolling_robust
from engine.discovery.windows import (
    RETURN_HORIZONS_MIN,
    RETURN_KEYS,
    BoolArray,
    RingState,
    TickerWindows,
    log_volume,
)
from engine.domain.ticker import FloatArray, IntArray

MAD_TO_SIGMA = 1.4826
Z_HORIZONS_MIN: tuple[int, ...] = (1, 5, 15)


@dataclass(frozen=True, slots=True)
class AnomalyScores:
    """Per-row scores over rows [0, extent) of the windows (views valid until the next step)."""

    extent: int
    price_z: FloatArray  # best return z over 1/5/15 min; 0 where history is too short
    accel: FloatArray
    volume_z: FloatArray
    volume_surge: FloatArray  # recent mean slot volume / median slot volume
    returns: dict[str, FloatArray]  # simple returns, '1m', '5m', '15m', '60m'
    run_up: FloatArray  # last / lowest price of the last 60 min - 1
    traded: BoolArray  # a fresh ticker within `momentum_no_trade_ms`: momentum counts only there


@dataclass(frozen=True, slots=True)
class ScoreBlock:
    """Scores at K batches: [batch, row] arrays, returns as [batch, horizon, row]."""

    price_z: FloatArray
    accel: FloatArray
    volume_z: FloatArray
    volume_surge: FloatArray
    returns: FloatArray  # horizons in RETURN_HORIZONS_MIN order
    run_up: FloatArray
    traded: BoolArray

    def at(self, k: int, extent: int) -> AnomalyScores:
        """Batch `k`'s scores over rows [0, extent) (views)."""
        return AnomalyScores(
            extent=extent,
            price_z=self.price_z[k, :extent],
            accel=self.accel[k, :extent],
            volume_z=self.volume_z[k, :extent],
            volume_surge=self.volume_surge[k, :extent],
            returns=dict(zip(RETURN_KEYS, self.returns[k, :, :extent], strict=True)),
            run_up=self.run_up[k, :extent],
            traded=self.traded[k, :extent],
        )


def robust_center_scale(
    x: FloatArray, *, overwrite: bool = False, counts: IntArray | None = None
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Row-wise (median, MAD, count) of a 2-D array, ignoring NaN; NaN where a row is empty.

    One sort: NaNs sort last, so the median of a row with n values sits at (n-1)//2 and n//2
    of its sorted copy, whatever n is per row (np.nanmedian is 10x slower; np.partition, one
    kth for all rows, 3x slower than the sort on [rows, 64]). The MAD is then a selection, not
    a second sort (`_sorted_mad`). With `overwrite`, `x` itself is sorted: a caller that owns
    a scratch array spares a [rows, slots] allocation per call. `counts`, each row's non-NaN
    values where the caller knows them (`_window_counts`), spare counting them here.
    """
    m, r = x.shape
    s = x if overwrite else x.copy()
    s.sort(axis=1)
    # The count as a float32 matrix-vector product of the NaN mask (exact: counts < 2**24),
    # faster than any reduction along rows this short.
    n: IntArray = (
        r - (np.isnan(s).astype(np.float32) @ np.ones(r, np.float32)).astype(np.intp) if counts is None else counts
    )
    lo = np.maximum((n - 1) // 2, 0)
    hi = n // 2
    flat = s.ravel()
    first = np.arange(0, m * r, r)  # each row's first element in `flat`
    med = 0.5 * (flat.take(first + lo) + flat.take(first + hi))
    mad = _sorted_mad(flat, first + hi, med, n, lo, hi)
    empty = n == 0
    med[empty] = np.nan
    mad[empty] = np.nan
    return med, mad, n


def _sorted_mad(
    flat: FloatArray, mid: IntArray, med: FloatArray, n: IntArray, lo: IntArray, hi: IntArray
) -> FloatArray:  # fmt: skip
    """Row-wise median of |s - med| for sorted rows `s` (flattened), each row's median `med`
    and `hi` = n//2 at `mid` in `flat`: the values at ranks lo and hi of the deviations, as a
    sort of them would give, bit for bit.

    No second sort (it was half of `robust_center_scale`): s[:hi] <= med <= s[hi:n], so the
    deviations are two sorted runs, A = med - s[hi-1], med - s[hi-2], ... (rising: fl(med - v)
    is monotone in v, and equals |v - med|) and B = s[hi] - med, s[hi+1] - med, ... The lo+1
    smallest deviations are the first i of A and the first lo+1-i of B for the i in [0, hi]
    found by a binary search on "A[i] < B[lo-i]" (the k-th smallest of two sorted arrays),
    all rows at once, in log2(max hi) steps of [rows] arrays instead of a [rows, slots] sort.
    """
    i = np.zeros(len(mid), np.intp)  # taken from A; A[t] at mid-1-t, B[t] at mid+t
    b_end = mid + lo + 1
    step = 1 << int(hi.max(initial=0)).bit_length() >> 1
    while step:
        c = np.minimum(i + step, hi)  # a row of hi 0 stays at 0 (its reads only clipped in bounds)
        a, b = flat.take(mid - c, mode="clip"), flat.take(b_end - c, mode="clip")
        i = np.where(med - a < b - med, c, i)  # A[c-1] < B[lo+1-c]: take c from A
        step >>= 1
    j = lo + 1 - i  # taken from B
    rank_lo = np.maximum(
        np.where(i >= 1, med - flat.take(mid - i, mode="clip"), -np.inf),  # A[i-1]
        np.where(j >= 1, flat.take(mid + j - 1, mode="clip") - med, -np.inf),  # B[j-1]
    )
    rank_hi = np.minimum(
        np.where(i < hi, med - flat.take(mid - 1 - i, mode="clip"), np.inf),  # A[i]
        np.where(j < n - hi, flat.take(mid + j, mode="clip") - med, np.inf),  # B[j]
    )
    # B[0] is -0.0 where s[hi] is -0.0 and med +0.0; a sort of |s - med| has +0.0 there.
    return np.abs(0.5 * (rank_lo + np.where(hi > lo, rank_hi, rank_lo)))


# Rows `_baselines` sorts and reads at a time: what a core's cache holds (measured on a block of
# 120 batches, 8,160 rows of 64 slots: 1 MiB at a time ~20% faster than all 4 MiB at once
# behind a cache-cold start, the child ~3% less CPU over 8 days).
SORT_CHUNK_BYTES = 1 << 20


def _center_scale_in_chunks(x: FloatArray, counts: IntArray | None) -> tuple[FloatArray, FloatArray, IntArray]:
    """`robust_center_scale` of `x` (sorted in place), `SORT_CHUNK_BYTES` of rows at a time.

    Its statistics are row by row, so the pieces are the same figures. Whole, a block's rows
    were sorted past what the cache holds, and the MAD's search then read them back from
    memory; a chunk's are still cached when its search reads them."""
    m, r = x.shape
    step = max(1, SORT_CHUNK_BYTES // (r * x.itemsize))
    if m <= step:
        return robust_center_scale(x, overwrite=True, counts=counts)
    parts = [
        robust_center_scale(x[i : i + step], overwrite=True, counts=None if counts is None else counts[i : i + step])
        for i in range(0, m, step)
    ]
    med, mad, n = (np.concatenate(p) for p in zip(*parts, strict=True))
    return med, mad, n


def _window_counts(line: FloatArray, k: int, first: int, last: int) -> IntArray:
    """The non-NaN values among columns j + first .. j + last of each row of a [row, slot]
    timeline, for j in [0, k), batch-major ([j, row] flattened: `_baselines`' row order).

    What counting each window's NaNs after its sort gives, from one cumulative sum along the
    timeline (a block's windows overlap in all but a slot, so counting them one by one read
    every slot some 60 times)."""
    known = np.zeros((len(line), line.shape[1] + 1), np.intp)  # [row, c]: known values in columns < c
    np.cumsum(line == line, axis=1, out=known[:, 1:])  # NaN != NaN
    out: IntArray = (known[:, last + 1 : last + 1 + k] - known[:, first : first + k]).T.ravel()
    return out


class AnomalyDetector:
    """Robust z-scores of returns and volume per symbol, against each symbol's own history."""

    def __init__(self, cfg: AnomalySection, windows: TickerWindows) -> None:
        self.cfg = cfg
        self.windows = windows
        c = windows.capacity
        self.ret_median = np.full(c, np.nan)
        self.ret_sigma = np.full(c, np.nan)
        self.vol_median = np.full(c, np.nan)  # of log1p(slot volume)
        self.vol_sigma = np.full(c, np.nan)
        self.history = np.zeros(c, dtype=np.int64)  # return samples behind the baseline
        self.vol_history = np.zeros(c, dtype=np.int64)  # known slot volumes behind the volume baseline
        self._cursor = 0
        k = [windows.slots_for(m) for m in Z_HORIZONS_MIN]
        # The z horizons' rows of the returns block: its first ones, read as a view.
        if RETURN_HORIZONS_MIN[: len(Z_HORIZONS_MIN)] != Z_HORIZONS_MIN:
            raise ValueError("the z horizons must lead the return horizons")
        self._z_rows = slice(0, len(Z_HORIZONS_MIN))
        self._k_col = np.array(k, np.float64)[:, None]
        self._sqrt_k_col = np.array([math.sqrt(n) for n in k])[:, None]
        self._return_slots = [windows.slots_for(m) for m in RETURN_HORIZONS_MIN]
        self._surge_slots = max(1, cfg.surge_window_ms // windows.slot_ms)
        self._no_trade_slots = max(1, cfg.momentum_no_trade_ms // windows.slot_ms)
        self._scratch: FloatArray = np.empty((0, 0))  # `_baselines`' rows to sort, reused
        # The kernel's last return and volume windows of each row, which the next block's first
        # windows follow on from (`_rolled`).
        self._carry = (rolling_robust.Carry(), rolling_robust.Carry())

    def reset_rows(self, rows: IntArray) -> None:
        """Forget everything about rows that changed owner."""
        for arr in (self.ret_median, self.ret_sigma, self.vol_median, self.vol_sigma):
            arr[rows] = np.nan
        self.history[rows] = 0
        self.vol_history[rows] = 0

    def refresh(self, rows: IntArray | slice) -> None:
        """Recompute the baselines of `rows` (indices, or a slice of rows) from their ring history."""
        m = len(rows) if not isinstance(rows, slice) else len(range(*rows.indices(self.windows.capacity)))
        if not m:
            return
        w = self.windows
        with np.errstate(invalid="ignore", divide="ignore"):
            logs = np.log(w.price_ring[rows]), log_volume(w.volume_ring[rows])
        med, sig, n, vmed, vsig, vn = self._baselines(*logs, w.traded_ring[rows], w.head)
        self.ret_median[rows] = med
        self.ret_sigma[rows] = sig
        self.history[rows] = n
        self.vol_median[rows] = vmed
        self.vol_sigma[rows] = vsig
        self.vol_history[rows] = vn

    def _baselines(
        self, lp: FloatArray, log_volumes: FloatArray, traded: BoolArray, head: int | IntArray,
        log_returns: FloatArray | None = None, counts: IntArray | None = None,
    ) -> tuple[FloatArray, FloatArray, IntArray, FloatArray, FloatArray, IntArray]:  # fmt: skip
        """(return median, return sigma, return count, log-volume median, log-volume sigma,
        log-volume count) of each ring row (the leading axes flattened), from log(price ring), `log_volume(volume ring)` and
        the traded ring; `head` is the current slot's column, one for all rows or one per row.
        `log_returns`, where the caller keeps them (`RingState.log_return_ring`), are what `lp`
        and `traded` give (the returns into each slot, NaN where untraded): copied, not derived;
        `counts`, where the caller counted them (`_window_counts`), the known returns then the
        known log volumes of each row, the head and oldest columns left out as below.

        A return into a slot no fresh ticker reached is unknown, not a 0 (see the module doc)."""
        r = lp.shape[-1]
        m = lp.size // r
        # Returns in the first m rows, log volumes in the last m: robust_center_scale of both
        # at once (its statistics are row by row; a call's fixed cost is most of its time on a
        # batch's rows), a cache's worth of rows at a time (`_center_scale_in_chunks`), sorted in place in a scratch array kept from call to call (a fresh one per block
        # cost more in page faults than its sorts). The rings may be [batch, row, slot] views
        # (a block's windows of its timelines: `RingBlock`), read here straight into the scratch.
        if self._scratch.shape[0] < 2 * m or self._scratch.shape[1] != r:
            self._scratch = np.empty((2 * m, r))
        both = self._scratch[: 2 * m]
        d, lv = both[:m], both[m:]
        d_in = d.reshape(lp.shape)
        if log_returns is not None:
            d_in[...] = log_returns  # the oldest slot's column is set NaN below, whatever it holds
        else:
            np.subtract(lp[..., 1:], lp[..., :-1], out=d_in[..., 1:])
            np.subtract(lp[..., :1], lp[..., -1:], out=d_in[..., :1])
            d_in[~traded] = np.nan  # carried forward or repeated: no observation
        lv.reshape(lp.shape)[...] = log_volumes
        if isinstance(head, int):
            d[:, head] = np.nan  # the current slot is still moving
            d[:, (head + 1) % r] = np.nan  # oldest minus newest: not a return
            lv[:, head] = np.nan
        else:
            rows = np.arange(m)
            d[rows, head] = np.nan
            d[rows, (head + 1) % r] = np.nan
            lv[rows, head] = np.nan
        med, mad, n = _center_scale_in_chunks(both, counts)
        sig = np.maximum(MAD_TO_SIGMA * mad[:m], self.cfg.sigma_floor)
        vsig = np.maximum(MAD_TO_SIGMA * mad[m:], self.cfg.volume_sigma_floor)
        return med[:m], sig, n[:m], med[m:], vsig, n[m:]

    def _refresh_slice(self) -> None:
        """Refresh the next `size` active rows, circularly: with `baseline_refresh_batches = 1`
        every active row each batch, whatever the batch before refreshed (a batch that adds a
        row must not leave the others on the baselines of the batch before)."""
        active = self.windows.active_rows
        n = len(active)
        if not n:
            return
        size = -(-n // self.cfg.baseline_refresh_batches)
        if size >= n:
            rows, self._cursor = active, 0
        else:
            start = self._cursor % n
            rows = active[start : start + size]
            if len(rows) < size:  # wrap around to the first rows
                rows = np.concatenate([rows, active[: size - len(rows)]])
            self._cursor = (start + size) % n
        first, last = int(rows[0]), int(rows[-1])
        # Rows in ascending order without a hole among them are a slice, read and written
        # through views instead of gathered copies (every batch of a replay); wrapped ones never
        # pass this test (their last row is below their first).
        self.refresh(slice(first, last + 1) if last - first + 1 == len(rows) else rows)

    def step(self) -> AnomalyScores:
        """Scores for every row in use after the windows took the latest batch."""
        self._refresh_slice()
        w = self.windows
        e = w.extent
        scores = self._score(
            w.state(e), self.ret_median[None, :e], self.ret_sigma[None, :e], self.history[None, :e],
            self.vol_median[None, :e], self.vol_sigma[None, :e], self.vol_history[None, :e],
        )  # fmt: skip
        return scores.at(0, e)

    def score_block(self, state: RingState) -> ScoreBlock:
        """Scores at each batch of a block, every baseline from that batch's own rings: what
        `step` computes when `baseline_refresh_batches` is 1, for all the block's batches in
        one pass. The stored baselines are left as refreshing batch by batch would leave
        them (`_keep_last`)."""
        if self.cfg.baseline_refresh_batches != 1:
            raise ValueError("a block of batches is scored only with discovery.anomaly.baseline_refresh_batches = 1")
        k, e, r = state.price_ring.shape
        heads = state.heads()
        lp, lv, tr = state.log_price_ring, state.log1p_volume_ring, state.traded_ring
        if lp is None or lv is None or tr is None:
            raise ValueError("score_block reads the rings' logs: score a RingBlock's state")
        returns_line, volumes_line = state.log_return_line, state.log1p_volume_line
        kernel = rolling_robust.load()
        if returns_line is None or volumes_line is None or not (heads == r - 1).all():
            med, sig, n, vmed, vsig, vn = self._baselines(lp, lv, tr, np.repeat(heads, e), state.log_return_ring)
        elif kernel is not None:
            # Windows of timelines (each batch's head their last column, its oldest slot the
            # first): rolled along them where the kernel was built...
            med, sig, n, vmed, vsig, vn = self._rolled(kernel, returns_line, volumes_line, k, r)
        else:
            # ...else sorted window by window, the known values of every window counted from
            # one cumulative sum per timeline, with one head.
            counts = np.concatenate(
                [_window_counts(returns_line, k, 2, r - 1), _window_counts(volumes_line, k, 1, r - 1)]
            )
            med, sig, n, vmed, vsig, vn = self._baselines(lp, lv, tr, r - 1, state.log_return_ring, counts)
        med, sig, vmed, vsig = (a.reshape(k, e) for a in (med, sig, vmed, vsig))
        n, vn = n.reshape(k, e), vn.reshape(k, e)
        self._keep_last(state.active, med, sig, n, vmed, vsig, vn)
        return self._score(state, med, sig, n, vmed, vsig, vn)

    def _rolled(
        self, kernel: rolling_robust.RollingRobust, returns_line: FloatArray, volumes_line: FloatArray, k: int, r: int
    ) -> tuple[FloatArray, FloatArray, IntArray, FloatArray, FloatArray, IntArray]:  # fmt: skip
        """`_baselines` of a block's windows of its timelines, by the compiled kernel: batch j's
        returns are columns j + 2 .. j + R - 1 (its oldest slot's return and its current slot
        left out), its log volumes columns j + 1 .. j + R - 1."""
        e = len(returns_line)
        med, mad, n = np.empty(2 * k * e), np.empty(2 * k * e), np.empty(2 * k * e, np.int64)
        m = k * e
        kernel.center_scale(returns_line, k, 2, r - 1, med[:m], mad[:m], n[:m], self._carry[0])
        kernel.center_scale(volumes_line, k, 1, r - 1, med[m:], mad[m:], n[m:], self._carry[1])
        sig = np.maximum(MAD_TO_SIGMA * mad[:m], self.cfg.sigma_floor)
        vsig = np.maximum(MAD_TO_SIGMA * mad[m:], self.cfg.volume_sigma_floor)
        return med[:m], sig, n[:m], med[m:], vsig, n[m:]

    def _keep_last(
        self, active: BoolArray, med: FloatArray, sig: FloatArray, n: IntArray, vmed: FloatArray, vsig: FloatArray,
        vn: IntArray,
    ) -> None:  # fmt: skip
        """Leave the stored baselines as refreshing batch by batch would: each row's from the
        last batch it was active in. (The refresh cursor stays 0: refreshing every row each
        batch, `_refresh_slice` leaves it there.)"""
        k, e = active.shape
        pairs = (
            (self.ret_median, med), (self.ret_sigma, sig), (self.history, n), (self.vol_median, vmed),
            (self.vol_sigma, vsig), (self.vol_history, vn),
        )  # fmt: skip
        if k and active[-1].all():  # every row active at the last batch (a steady block's): its baselines, as views
            for stored, value in pairs:
                stored[:e] = value[-1]
            return
        seen = active.any(axis=0)
        if not seen.any():
            return
        rows = np.flatnonzero(seen)
        last = (k - 1 - np.argmax(active[::-1], axis=0))[rows]  # each row's last active batch
        for stored, value in pairs:
            stored[rows] = value[last, rows]

    def _score(
        self,
        state: RingState,
        ret_median: FloatArray,
        ret_sigma: FloatArray,
        history: IntArray,
        vol_median: FloatArray,
        vol_sigma: FloatArray,
        vol_history: IntArray,
    ) -> ScoreBlock:
        """Scores of `state`'s batches against the given baselines (all [batch, row])."""
        block = state.returns(self._return_slots)
        ready = history >= self.cfg.min_history_slots
        ready &= state.active
        vol_ready = vol_history >= self.cfg.min_history_slots
        vol_ready &= state.active
        with np.errstate(invalid="ignore", divide="ignore"):
            # All z horizons at once, as [batch, horizon, row] blocks. The best z is an exact max
            # either way; where every horizon is NaN it is NaN here (-inf one horizon at a time),
            # and both are "not finite", so price_z is 0 there too.
            log_r = np.log1p(block[:, self._z_rows])
            z = (log_r - self._k_col * ret_median[:, None]) / (ret_sigma[:, None] * self._sqrt_k_col)
            best = np.fmax.reduce(z, axis=1)
            price_z = np.where(ready & np.isfinite(best), best, 0.0)
            accel = log_r[:, 0] - log_r[:, -1] / 15.0  # 1 min and 15 min
            accel[np.isnan(accel)] = 0.0
            mean_slot = state.recent_volume(self._surge_slots) / self._surge_slots
            vol_ready &= mean_slot > 0.0  # no positive recent volume: unknown (NaN fails too)
            vz = (np.log1p(mean_slot) - vol_median) / vol_sigma
            volume_z = np.where(vol_ready & np.isfinite(vz), vz, 0.0)
            surge = mean_slot / np.expm1(vol_median)
            volume_surge = np.where(vol_ready & np.isfinite(surge), surge, 0.0)
        run_up = np.where(state.active, state.run_up(), 0.0)
        traded = state.traded_within(self._no_trade_slots)
        return ScoreBlock(price_z, accel, volume_z, volume_surge, block, run_up, traded)
