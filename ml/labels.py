"""The hot-coin label: "this coin's forward 30-minute return is in the top 10% of the market".

A cross-sectional label, not an absolute one: in a market where everything rises 5% nothing is
singled out, and on a red day the coin that merely holds up is. That is the question the
engine asks at each bar (which of these candidates should I buy *now*), so the model is trained
and judged on it. Point in time: bar t's label uses closes t and t + horizon only, and is NaN
wherever either is missing or the cross-section is too thin to have a top decile.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

HORIZON_MINUTES = 30
TOP_FRACTION = 0.10
MIN_CROSS_SECTION = 5  # fewer valid symbols at a bar than this: no label (a "top 10%" of 3 coins means nothing)


def label_definition(horizon_minutes: int = HORIZON_MINUTES, top_fraction: float = TOP_FRACTION) -> str:
    """The words written into the runtime contract and the dataset schema."""
    return (
        f"1 when close[t + {horizon_minutes} min] / close[t] - 1 is among the top ceil({top_fraction:g} x n) "
        f"of the n symbols with a valid forward return at bar t (ties at the cut included; n >= "
        f"{MIN_CROSS_SECTION}), else 0; undefined (dropped) where either close is missing"
    )


def horizon_bars(interval_ms: int, horizon_minutes: int = HORIZON_MINUTES) -> int:
    """Bars spanning the horizon; the interval must divide it (a 7-minute bar has no 30-minute step)."""
    span = horizon_minutes * 60_000
    if interval_ms <= 0 or span % interval_ms:
        raise ValueError(
            f"a {horizon_minutes}-minute label needs an interval that divides it; {interval_ms} ms does not "
            "(use 1m, 3m, 5m, 15m or 30m candles)"
        )
    return span // interval_ms


def forward_return(close: FloatArray, horizon: int) -> FloatArray:
    """close[t + horizon] / close[t] - 1 for [bars, symbols] closes; NaN in the last `horizon`
    rows and wherever either close is missing (a gap is never bridged)."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least one bar, got {horizon}")
    out = np.full_like(close, np.nan)
    if horizon < close.shape[0]:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:-horizon] = np.where(close[:-horizon] > 0, close[horizon:] / close[:-horizon] - 1.0, np.nan)
    return out


def top_fraction_label(fwd: FloatArray, fraction: float = TOP_FRACTION) -> FloatArray:
    """1.0 for the top `fraction` of each row's valid values (at least one symbol), 0.0 for the
    rest, NaN where the value is NaN or the row has fewer than `MIN_CROSS_SECTION` valid values.

    Ties at the cut-off are all labelled 1 (a tie is not evidence either way), so a row can hold
    slightly more than its share of positives.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    out = np.full_like(fwd, np.nan)
    valid = ~np.isnan(fwd)
    counts = valid.sum(axis=1)
    ordered = np.sort(np.where(valid, fwd, -np.inf), axis=1)[:, ::-1]  # descending, NaN last
    for n in np.unique(counts):
        if n < MIN_CROSS_SECTION:
            continue
        rows = counts == n
        k = max(1, math.ceil(fraction * int(n)))
        cut = ordered[rows, k - 1 : k]
        block = fwd[rows]
        out[rows] = np.where(valid[rows], (block >= cut).astype(np.float64), np.nan)
    return out


def rise_from_low(close: FloatArray, bars: int = 61) -> FloatArray:
    """close[t] / min(close[t - bars + 1 .. t]) - 1: discovery's run-up momentum, from candles
    (61 closes: the low of the last 60 minutes, the same history `ret_60` needs).

    The baseline the model must beat. Discovery's heat itself is built from live tickers and
    social sources that candles do not hold, so the honest stand-in is its candle-computable
    momentum component (the rise from the 60-minute low), ranked the same way as the model.
    NaN until `bars` closes exist or where a close in the window is missing.
    """
    out = np.full_like(close, np.nan)
    if bars <= close.shape[0]:
        windows = np.lib.stride_tricks.sliding_window_view(close, bars, axis=0)
        low = windows.min(axis=-1)  # NaN propagates: a window with a gap has no low
        with np.errstate(divide="ignore", invalid="ignore"):
            out[bars - 1 :] = np.where(low > 0, close[bars - 1 :] / low - 1.0, np.nan)
    return out
