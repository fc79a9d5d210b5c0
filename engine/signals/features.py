"""`features_hot`: the hot-coin features, one definition for live, backtest and training.

Inputs are candle matrices (`BarMatrix`, shape [bars, symbols]), the candidate info discovery
attaches to each symbol (`CandidateInfo`), and BTC closes for the market regime. The output
columns are `FEATURE_NAMES`, in that order; `feature_schema_hash()` fingerprints names, dtypes
and `FEATURE_VERSION` so a model trained on one schema is refused by a runtime on another.

Two paths share every formula:

- `features_hot` (batch): every bar at once, rolling sums by cumulative sums, for backtests and
  training datasets (O(bars x symbols)).
- `features_hot_latest` (incremental): only the latest bar, from the last `WINDOW` bars, for live.

The formulas are written once (`_assemble`) against a small reducer interface (`_Reducer`): the
batch reducer answers "sum of the last n values" for every bar, the latest reducer for the last
bar only. A parity test feeds the same history through both and compares bar by bar.

Bar t's features use bars up to and including t (closed bars only); a row without enough
history, or with a missing bar inside a window, is NaN rather than a guess.

A listing is the one history that is short by nature: the exchange has no bar before its first,
so a window reaching back before it is not missing data but a coin younger than the window.
For symbols the caller names as listings (`Listings`: discovery knows the listing and the bars
begin at it), a window feature whose window reaches before the first bar is computed over the
bars since listing instead (`since_listing`), once there are `Listings.min_bars` of them: the
return from the first bar's close, the volume mean, VWAP, ATR, volatility and high since then.
Before that, and across a missing bar after the first, they stay NaN. A gap or a late start is
not a listing and keeps its NaN.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine.domain import Candidate
from engine.domain.slots_init import direct_init
from engine.errors import MarketDataError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FEATURE_VERSION = 2  # 2: a listing's windows are cut at its first bar (`Listings`), where 1 left them NaN
RETURN_HORIZONS = (1, 3, 5, 15, 30, 60)
WINDOW = 61  # bars of history the latest path needs: a 60-bar return looks 60 bars back
_BLOCK = 256  # batch rolling sums restart their cumulative sum this often (precision, see _BatchReducer.sum)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{h}" for h in RETURN_HORIZONS),
    "vol_ratio_20",
    "vol_ratio_60",
    "vwap_dist_20",
    "vwap_dist_60",
    "bar_range",
    "atr_14",
    "range_atr",
    "upper_wick",
    "lower_wick",
    "close_pos",
    "volatility_20",
    "high_dist_60",
    "heat",
    "heat_momentum",
    "heat_volume_surge",
    "heat_listing_freshness",
    "heat_social_velocity",
    "heat_social_sentiment",
    "heat_rank_acceleration",
    "rank",
    "rank_change",
    "coin_age_days",
    "btc_ret_15",
    "btc_ret_60",
    "btc_vol_60",
)
FEATURE_DTYPES: tuple[str, ...] = ("float64",) * len(FEATURE_NAMES)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}


# Bars (t and those before it) each window feature's ordinary value needs; a listing with fewer
# bars than this gets the since-listing value. A return looks h bars back; the ATR and the
# volatility also need the close before their first bar.
_LISTING_NEEDS: dict[str, int] = {
    **{f"ret_{h}": h + 1 for h in RETURN_HORIZONS},
    "vol_ratio_20": 20,
    "vol_ratio_60": 60,
    "vwap_dist_20": 20,
    "vwap_dist_60": 60,
    "atr_14": 15,
    "range_atr": 15,
    "volatility_20": 21,
    "high_dist_60": 60,
}
# From this many bars since listing on, every window feature of a listing is its ordinary value:
# a model trained on no younger listing has never seen a since-listing one.
LISTING_ORDINARY_BARS = max(_LISTING_NEEDS.values())


def since_listing(feature: str, bars: float) -> bool:
    """Whether `feature` of a listing `bars` bars old (its first bar counted) is its since-listing
    value rather than its ordinary window value: what replay says beside the value."""
    return bars < _LISTING_NEEDS.get(feature, 0)


def feature_schema_hash() -> str:
    """sha256 of (version, names, dtypes): the ML runtime contract's feature fingerprint."""
    blob = json.dumps(
        {"version": FEATURE_VERSION, "features": list(zip(FEATURE_NAMES, FEATURE_DTYPES, strict=True))},
        separators=(",", ":"),
    ).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True, slots=True)
class BarMatrix:
    """OHLCV as [bars, symbols] float64 matrices, oldest bar first; a missing bar is NaN."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        shape = self.close.shape
        if len(shape) != 2:
            raise MarketDataError(f"BarMatrix.close must be 2-D [bars, symbols], got shape {shape}")
        for name in ("open", "high", "low", "volume"):
            if getattr(self, name).shape != shape:
                raise MarketDataError(
                    f"BarMatrix.{name} has shape {getattr(self, name).shape}, expected {shape} like close"
                )

    @property
    def n_bars(self) -> int:
        return int(self.close.shape[0])

    def tail(self, n: int) -> BarMatrix:
        return BarMatrix(self.open[-n:], self.high[-n:], self.low[-n:], self.close[-n:], self.volume[-n:])

    def columns(self, cols: npt.NDArray[np.intp]) -> BarMatrix:
        return BarMatrix(self.open[:, cols], self.high[:, cols], self.low[:, cols], self.close[:, cols], self.volume[:, cols])


_INFO_FIELDS = (
    "heat",
    "momentum",
    "volume_surge",
    "listing_freshness",
    "social_velocity",
    "social_sentiment",
    "rank_acceleration",
    "rank",
    "rank_change",
    "coin_age_days",
)


@direct_init
@dataclass(frozen=True, slots=True)
class CandidateInfo:
    """Discovery's view per symbol: [bars, symbols] for the batch path, [symbols] for the latest.

    `rank_change` is previous rank minus current rank (positive = climbing); unknown is NaN.
    """

    heat: FloatArray
    momentum: FloatArray
    volume_surge: FloatArray
    listing_freshness: FloatArray
    social_velocity: FloatArray
    social_sentiment: FloatArray
    rank_acceleration: FloatArray
    rank: FloatArray
    rank_change: FloatArray
    coin_age_days: FloatArray

    @classmethod
    def from_candidates(
        cls, candidates: Sequence[Candidate | None], previous_ranks: Mapping[str, int] | None = None
    ) -> CandidateInfo:
        """Latest-bar info from candidates (one per symbol, in the column order of the bars);
        None for a symbol discovery has said nothing about (NaN, as `unknown`)."""
        prev = previous_ranks or {}
        n = len(candidates)
        cols = np.empty((len(_INFO_FIELDS), n), np.float64)
        for j, c in enumerate(candidates):
            cols[:, j] = _UNKNOWN_INFO if c is None else info_values(c, prev.get(c.symbol))
        return cls(*cols)

    @classmethod
    def unknown(cls, shape: tuple[int, ...]) -> CandidateInfo:
        """All-NaN info, for symbols discovery has said nothing about (e.g. a held coin that cooled)."""
        return cls(*(np.full(shape, np.nan) for _ in _INFO_FIELDS))

    def arrays(self) -> tuple[FloatArray, ...]:
        return tuple(getattr(self, name) for name in _INFO_FIELDS)


_UNKNOWN_INFO = (np.nan,) * len(_INFO_FIELDS)  # a symbol discovery has said nothing about


def info_values(c: Candidate, before: int | None) -> tuple[float, ...]:
    """`c`'s `_INFO_FIELDS`, in order (`CandidateInfo.from_candidates`' column of it); `before`:
    its rank at the latest earlier bar (None: unknown)."""
    comp = c.components
    return (
        c.heat,
        comp.momentum,
        comp.volume_surge,
        comp.listing_freshness,
        comp.social_velocity,
        comp.social_sentiment,
        comp.rank_acceleration,
        c.rank,
        np.nan if before is None else before - c.rank,
        np.nan if c.coin_age_days is None else c.coin_age_days,
    )


@dataclass(frozen=True, slots=True)
class Listings:
    """The symbols whose bars begin at their listing, for the since-listing windows (module doc).

    `first_row` is [symbols]: the row of each symbol's first bar in the bar matrices it comes
    with, NaN for a symbol whose bars do not begin at a listing there. The since-listing values
    are NaN until a listing has `min_bars` bars (`trading.signals.listing_min_bars`; 0: never,
    the windows stay NaN for a listing's first hour).
    """

    first_row: FloatArray
    min_bars: int

    @classmethod
    def in_window(
        cls, close: FloatArray, listed_ms: FloatArray, last_open_ms: int, tf_ms: int, min_bars: int
    ) -> Listings:
        """Listings in a [bars, symbols] window of closes ending with the bar opening at
        `last_open_ms` (the live and backtest path). `listed_ms` is [symbols]: when discovery
        dated each symbol's listing (NaN: not known as one, e.g. a coin already trading when the
        engine started). A symbol's first bar in the window is its listing when the window
        reaches before it and that bar opens no later than the bar after the one `listed_ms`
        falls in: discovery learns of a listing at a market-info refresh, after its first
        trade, and the core's first read of a symbol takes a whole window of its bars, so a
        listing's history begins at or before that date. A history that begins later began
        after the listing (a start after it, a gap): not a listing, its windows stay NaN."""
        first = (~np.isnan(close)).argmax(axis=0)  # 0 for a symbol without a bar: refused below
        return cls.at_rows(first, listed_ms, last_open_ms, close.shape[0], tf_ms, min_bars)

    @classmethod
    def at_rows(
        cls, first: npt.NDArray[np.intp], listed_ms: FloatArray, last_open_ms: int, n_bars: int, tf_ms: int, min_bars: int
    ) -> Listings:
        """`in_window` of a window of `n_bars` whose first bar each symbol has is at row `first`
        (0 where its first row is there, or no bar is): a store that computed the windows ahead
        (`FeaturesAhead.listing_features`) knows those rows without reading the window."""
        first_open = last_open_ms - (n_bars - 1 - first) * tf_ms
        with np.errstate(invalid="ignore"):
            listing_bar = np.floor(np.round(listed_ms) / tf_ms) * tf_ms  # NaN stays NaN, and compares False
            ok = (first > 0) & (first_open <= listing_bar + tf_ms)
        return cls(np.where(ok, first.astype(np.float64), np.nan), min_bars)

    @classmethod
    def after_start(cls, close: FloatArray, min_bars: int) -> Listings:
        """Listings in a history of [bars, symbols] closes (a training dataset's candles): a
        symbol whose first bar comes after the history's first row was listed there, the rule
        the backtest reads its candle store by (a file starting after the others' first candle)."""
        present = ~np.isnan(close)
        first = present.argmax(axis=0)
        return cls(np.where(first > 0, first.astype(np.float64), np.nan), min_bars)

    def ages(self, n_bars: int) -> FloatArray:
        """[symbols] bars since listing at the last of `n_bars` rows (its first bar counted);
        NaN for a symbol that is no listing here."""
        return n_bars - self.first_row

    def _rows(self, n_bars: int, symbols: int) -> FloatArray | None:
        """The first rows inside matrices of `n_bars` rows, or None when nothing is to do."""
        if self.first_row.shape != (symbols,):
            raise MarketDataError(f"Listings.first_row has shape {self.first_row.shape}, expected ({symbols},): one per symbol")
        if self.min_bars <= 0:
            return None
        with np.errstate(invalid="ignore"):
            first = np.where((self.first_row >= 0) & (self.first_row < n_bars), self.first_row, np.nan)
        return first if np.isfinite(first).any() else None


class _Reducer(Protocol):
    """Trailing-window reductions evaluated at every bar (batch) or at the last bar (latest)."""

    def at(self, x: FloatArray) -> FloatArray: ...

    def lag(self, x: FloatArray, h: int) -> FloatArray: ...

    def sum(self, x: FloatArray, n: int) -> FloatArray: ...

    def max(self, x: FloatArray, n: int) -> FloatArray: ...

    def total(self, x: FloatArray) -> FloatArray:
        """The sum of every value up to the bar (a NaN among them: NaN)."""
        ...

    def running_max(self, x: FloatArray) -> FloatArray:
        """The largest value up to the bar (a NaN among them: NaN)."""
        ...

    def returns(self, x: FloatArray, horizons: Sequence[int]) -> Iterable[FloatArray]:
        """`_ret(at(x), lag(x, h))` for each horizon h, in order."""
        ...


class _BatchReducer:
    """Every bar's value; windows that reach before the first bar, or hold a NaN, give NaN."""

    def at(self, x: FloatArray) -> FloatArray:
        return x

    def lag(self, x: FloatArray, h: int) -> FloatArray:
        out = np.full_like(x, np.nan)
        if h < x.shape[0]:
            out[h:] = x[:-h]
        return out

    def sum(self, x: FloatArray, n: int) -> FloatArray:
        """Rolling sums by cumulative sums restarted every `_BLOCK` bars: a cumulative sum over a
        month of volume is ~1e4 windows large, and its rounding error would show in the window
        sums; restarting keeps them within ~1e-13 of summing each window directly."""
        out = np.full_like(x, np.nan)
        rows = x.shape[0]
        if n > rows:
            return out
        missing = np.isnan(x)
        clean = np.where(missing, 0.0, x)
        for first in range(n - 1, rows, _BLOCK):
            last = min(rows, first + _BLOCK)
            csum = np.cumsum(clean[first - n + 1 : last], axis=0)
            cnan = np.cumsum(missing[first - n + 1 : last], axis=0)
            window = csum[n - 1 :].copy()
            window[1:] -= csum[:-n]
            holes = cnan[n - 1 :].copy()
            holes[1:] -= cnan[:-n]
            out[first:last] = np.where(holes > 0, np.nan, window)
        return out

    def max(self, x: FloatArray, n: int) -> FloatArray:
        out = np.full_like(x, np.nan)
        if n <= x.shape[0]:
            windows = np.lib.stride_tricks.sliding_window_view(x, n, axis=0)
            out[n - 1 :] = windows.max(axis=-1)
        return out

    def total(self, x: FloatArray) -> FloatArray:
        return np.cumsum(x, axis=0)

    def running_max(self, x: FloatArray) -> FloatArray:
        out: FloatArray = np.maximum.accumulate(x, axis=0)
        return out

    def returns(self, x: FloatArray, horizons: Sequence[int]) -> Iterator[FloatArray]:
        """One horizon at a time: a whole-history plane each, so never all at once."""
        return (_ret(x, self.lag(x, h)) for h in horizons)


class _LatestReducer:
    """The last bar's value only; windows longer than the history give NaN. Sums add each
    column as a lone one (`_pairwise_bars`): a symbol's features are its own, whoever is asked
    beside it."""

    def at(self, x: FloatArray) -> FloatArray:
        return np.asarray(x[-1], np.float64)

    def lag(self, x: FloatArray, h: int) -> FloatArray:
        return x[-1 - h] if h < x.shape[0] else np.full(x.shape[1:], np.nan)

    def sum(self, x: FloatArray, n: int) -> FloatArray:
        return _pairwise_bars(x[-n:]) if n <= x.shape[0] else np.full(x.shape[1:], np.nan)

    def max(self, x: FloatArray, n: int) -> FloatArray:
        return x[-n:].max(axis=0) if n <= x.shape[0] else np.full(x.shape[1:], np.nan)

    def total(self, x: FloatArray) -> FloatArray:
        return _pairwise_bars(x)

    def running_max(self, x: FloatArray) -> FloatArray:
        return np.asarray(x.max(axis=0), np.float64)

    def returns(self, x: FloatArray, horizons: Sequence[int]) -> FloatArray:
        """All horizons in one [horizons, ...] block (its rows are the returns): one gather and
        one division instead of one per horizon, the same numbers element for element."""
        lagged = (
            x[[-1 - h for h in horizons]] if max(horizons) < x.shape[0] else np.stack([self.lag(x, h) for h in horizons])
        )
        return _ret(self.at(x), lagged)


def _div(a: FloatArray, b: FloatArray) -> FloatArray:
    """a / b with NaN where b is zero (a zero-volume window has no VWAP, not an infinite one).

    Runs under the caller's `np.errstate` (entering `np.errstate` costs more than the division on
    the latest path's few-element arrays, and `_assemble` divides some twenty times a call)."""
    return a / np.where(b == 0, np.nan, b)  # dividing by NaN is NaN: one pass fewer than masking the quotient


def _ret(now: FloatArray, then: FloatArray) -> FloatArray:
    """The simple return from `then` to `now` (NaN where `then` is zero or missing)."""
    return _div(now, then) - 1.0


def _shift1(x: FloatArray) -> FloatArray:
    out = np.empty_like(x)  # empty + one NaN row: full_like's fill costs more than the copy on the latest path
    out[:1] = np.nan
    out[1:] = x[:-1]
    return out


def _std(r: _Reducer, x: FloatArray, n: int) -> FloatArray:
    mean = r.sum(x, n) / n
    var = r.sum(x * x, n) / n - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def _assemble(r: _Reducer, bars: BarMatrix, info: CandidateInfo, btc_close: FloatArray) -> Iterator[FloatArray]:
    """Every feature column, in FEATURE_NAMES order (yielded one by one, so the batch path holds
    one finished column at a time). The one place the formulas live. The regime columns come
    as one value per bar (shape [bars, 1], or [1] on the latest path) and the info columns are
    the info arrays themselves: the caller assigns each into its [symbols]-wide output row,
    which broadcasts the regime, and consumes the generator under `np.errstate` (0/0 and x/0
    are expected: see `_div`)."""
    o, h, lo, c, v = bars.open, bars.high, bars.low, bars.close, bars.volume
    prev_c = _shift1(c)
    ret1 = _ret(c, prev_c)
    typical = (h + lo + c) / 3.0
    true_range = np.fmax(h - lo, np.fmax(np.abs(h - prev_c), np.abs(lo - prev_c)))
    true_range = np.where(np.isnan(prev_c), np.nan, true_range)
    span = h - lo

    c_t, h_t, lo_t, o_t, v_t = r.at(c), r.at(h), r.at(lo), r.at(o), r.at(v)
    span_t = r.at(span)
    atr = r.sum(true_range, 14) / 14.0
    flat = span_t == 0
    safe_span = np.where(flat, 1.0, span_t)
    upper = np.where(flat, 0.0, (h_t - np.maximum(o_t, c_t)) / safe_span)
    lower = np.where(flat, 0.0, (np.minimum(o_t, c_t) - lo_t) / safe_span)
    close_pos = np.where(flat, 0.5, (c_t - lo_t) / safe_span)

    yield from r.returns(c, RETURN_HORIZONS)
    v20, v60 = r.sum(v, 20), r.sum(v, 60)
    yield _div(v_t, v20 / 20.0)
    yield _div(v_t, v60 / 60.0)
    yield _ret(c_t, _div(r.sum(typical * v, 20), v20))
    yield _ret(c_t, _div(r.sum(typical * v, 60), v60))
    yield _div(span_t, c_t)
    yield _div(atr, c_t)
    yield _div(span_t, atr)
    yield upper
    yield lower
    yield close_pos
    yield _std(r, ret1, 20)
    yield _ret(c_t, r.max(h, 60))
    yield from info.arrays()  # the callers checked: already the shape of a column
    btc = btc_close.reshape(-1, 1)
    btc_ret1 = _ret(btc, _shift1(btc))
    yield from r.returns(btc, (15, 60))
    yield _std(r, btc_ret1, 60)


# The rows `_latest_window` reads the returns' earlier closes from (take() with an index array
# is a third of a fancy index with a list).
_LAGS = np.array([WINDOW - 1 - h for h in RETURN_HORIZONS], np.intp)
_BTC_LAGS = np.array([WINDOW - 16, WINDOW - 61], np.intp)
_INFO_ROWS = slice(FEATURE_INDEX["heat"], FEATURE_INDEX["coin_age_days"] + 1)  # `_INFO_FIELDS`, in order
_REGIME_ROWS = slice(FEATURE_INDEX["btc_ret_15"], FEATURE_INDEX["btc_vol_60"] + 1)  # `_latest_regime`'s, in order

def _pairwise_bars(x: FloatArray) -> FloatArray:
    """The sums over the bars (axis -2) of a [..., bars, columns] block, every column added as
    numpy adds a lone column: eight running sums over the bars, element i in sum i mod 8,
    combined as ((0+1)+(2+3))+((4+5)+(6+7)), then the last bars (fewer than eight) one by one;
    fewer than eight bars, one by one. numpy adds several columns bar by bar instead, so a
    symbol's features would depend on which symbols were asked with it (a coin's entry on
    whether another was hot that minute); this way a column's bits are its own, and
    `features_hot_windows` can compute many windows side by side. For up to 128 bars (the latest
    path's windows); the test pins it against numpy's one-column sums."""
    n, width = x.shape[-2], x.shape[-1]
    if n < 8:
        return np.asarray(np.add.reduce(x, axis=-2), np.float64)  # one by one, one column or many
    whole = n - n % 8
    lanes = np.add.reduce(x[..., :whole, :].reshape(*x.shape[:-2], whole // 8, 8, width), axis=-3)  # [..., 8, cols]
    pairs = lanes[..., 0::2, :] + lanes[..., 1::2, :]
    # (0+1)+(2+3), (4+5)+(6+7), then the last bars: a running sum adds them in that order.
    last = np.concatenate((pairs[..., 0::2, :] + pairs[..., 1::2, :], x[..., whole:, :]), axis=-2)
    out: FloatArray = np.add.accumulate(last, axis=-2)[..., -1, :]
    return out


def _latest_window(bars: BarMatrix, info: CandidateInfo | None, btc_close: FloatArray | None, out: FloatArray) -> None:
    """`_assemble` over the latest reducer for exactly `WINDOW` bars (what the stage always
    reads), written into `out` ([features, symbols]). The live and backtest path asks this for
    one or two symbols at a time, where each numpy call costs a microsecond whatever its size:
    the same operations element for element, stacked into a few calls (the sums of one window
    length are one reduction over a [quantities, bars, symbols] block, the divisions of one
    kind one division), come to a third of `_assemble`'s calls with identical results
    (`tests/engine/signals/test_features.py` pins them equal). A block's sum adds each column as
    one symbol alone (`_pairwise_bars`). `btc_close` is [bars]
    (one regime for every symbol) or [bars, symbols] (`features_hot_windows`: each column its
    own bar), or None to leave the regime rows to the caller (`_latest_regime`); `info` None
    leaves the info rows NaN. Under the caller's `np.errstate`."""
    o, h, lo, c, v = bars.open, bars.high, bars.low, bars.close, bars.volume
    nan = np.nan
    c_t, h_t, lo_t, o_t, v_t = c[-1], h[-1], lo[-1], o[-1], v[-1]
    # Typical price x volume over the 60-bar window, volume beside it: one sum for both.
    b60 = np.empty((2, 60, c.shape[1]))
    b60[0] = v[-60:]
    tv = b60[1]
    np.add(h[-60:], lo[-60:], out=tv)
    tv += c[-60:]
    tv /= 3.0
    tv *= b60[0]
    # The last 20 bars' volume, typical x volume, bar-to-bar return and its square.
    b20 = np.empty((4, 20, c.shape[1]))
    b20[:2] = b60[:, -20:]
    prev = c[-21:-1]
    r1 = b20[2]
    np.divide(c[-20:], np.where(prev == 0, nan, prev), out=r1)
    r1 -= 1.0
    np.multiply(r1, r1, out=b20[3])
    s60, s20 = _pairwise_bars(b60), _pairwise_bars(b20)
    p14, h14, lo14 = prev[-14:], h[-14:], lo[-14:]
    hl = h14 - lo14
    true_range = np.fmax(hl, np.fmax(np.abs(h14 - p14), np.abs(lo14 - p14)))
    atr = _pairwise_bars(np.where(np.isnan(p14), nan, true_range)) / 14.0
    span_t = hl[-1]
    # vol_ratio_20, vol_ratio_60, vwap 20 and 60, bar_range, atr_14, range_atr: one `_div`.
    num = np.array((v_t, v_t, s20[1], s60[1], span_t, atr, span_t))
    den = np.array((s20[0] / 20.0, s60[0] / 60.0, s20[0], s60[0], c_t, c_t, atr))
    q = num / np.where(den == 0, nan, den)
    # Returns from each lag, the VWAPs and the 60-bar high to the last close: one `_ret`.
    then = np.empty((9, c.shape[1]))
    then[:6] = c.take(_LAGS, axis=0)
    then[6:8] = q[2:4]
    np.maximum.reduce(h[-60:], axis=0, out=then[8])
    rets = c_t / np.where(then == 0, nan, then) - 1.0
    flat = span_t == 0
    lo_oc = np.minimum(o_t, c_t)
    wick = np.array((h_t - np.maximum(o_t, c_t), lo_oc - lo_t, c_t - lo_t)) / np.where(flat, 1.0, span_t)
    out[:6] = rets[:6]
    out[6:8] = q[:2]
    out[8:10] = rets[6:8]
    out[10:13] = q[4:]
    out[13:16] = np.where(flat, np.array((0.0, 0.0, 0.5))[:, None], wick)
    mean = s20[2] / 20.0
    out[16] = np.sqrt(np.maximum(s20[3] / 20.0 - mean * mean, 0.0))
    out[17] = rets[8]
    out[_INFO_ROWS] = np.nan if info is None else info.arrays()
    if btc_close is not None:
        _latest_regime(btc_close, out[_REGIME_ROWS])


def _latest_regime(btc_close: FloatArray, out: FloatArray) -> None:
    """`_latest_window`'s regime rows ([3, symbols] `out`): BTC's 15- and 60-bar returns and
    its 60-bar volatility (a [bars, 1] column, broadcast over the symbols, or [bars, windows]).
    Each column's bits are its own (`_pairwise_bars`), so a store computes them for many bars
    at once and hands them to `features_hot_windows` (`regime_windows`)."""
    nan = np.nan
    btc = btc_close.reshape(WINDOW, -1)
    btc_prev = btc[-61:-1]
    br = np.empty((2, 60, btc.shape[1]))
    np.divide(btc[-60:], np.where(btc_prev == 0, nan, btc_prev), out=br[0])
    br[0] -= 1.0
    np.multiply(br[0], br[0], out=br[1])
    bs = _pairwise_bars(br) / 60.0
    lag = btc.take(_BTC_LAGS, axis=0)
    out[:2] = btc[-1] / np.where(lag == 0, nan, lag) - 1.0
    out[2] = np.sqrt(np.maximum(bs[1] - bs[0] * bs[0], 0.0))


def _since_listing(
    r: _Reducer, bars: BarMatrix, first: FloatArray, min_bars: int
) -> Iterator[tuple[int, FloatArray, BoolArray]]:
    """The since-listing window features of listing columns (`bars` cut to them, `first` their
    first rows): (feature index, value, whether it replaces the ordinary value) for each, NaN
    below `min_bars` bars or across a missing bar since the first. A window is cut to the bars
    that exist: a return looks back at most to the first bar's close, the volume mean and VWAP
    cover the bars since listing, the ATR and volatility the bar-to-bar moves since the first
    close. The first bar's open is left out on purpose: it is the opening auction's print (TKO
    opened at 0.10 and closed its first minute at 2.86), a price no order after the listing
    could get, and a return from it reads every listing as +100 % or +3,000 % "extended". The one
    place these formulas live, over the reducers `_assemble` uses; under its `np.errstate`."""
    h, lo, c, v = bars.high, bars.low, bars.close, bars.volume
    rows = np.arange(bars.n_bars, dtype=np.float64)[:, None]
    pre = rows < first  # before the listing: no such bars, so they add nothing (not NaN)
    moves = rows > first  # bars with a close before them: a return, a true range
    age = r.at(rows) - first + 1.0
    first_close = c[first.astype(np.intp), np.arange(first.shape[0])]
    prev_c = _shift1(c)
    ret1 = _ret(c, prev_c)
    true_range = np.fmax(h - lo, np.fmax(np.abs(h - prev_c), np.abs(lo - prev_c)))
    typical = (h + lo + c) / 3.0

    def since(x: FloatArray) -> FloatArray:
        return r.total(np.where(pre, 0.0, x))

    def since_first_close(x: FloatArray) -> FloatArray:
        return r.total(np.where(moves, x, 0.0))

    whole = (age >= max(min_bars, 1)) & (since(np.isnan(c).astype(np.float64)) == 0)
    c_t = r.at(c)
    volume = since(v)
    steps = age - 1.0
    atr = since_first_close(true_range) / steps
    mean = since_first_close(ret1) / steps
    since_close = _ret(c_t, first_close)
    vol_ratio = _div(r.at(v), volume / age)
    vwap_dist = _ret(c_t, _div(since(typical * v), volume))
    values = {
        **{f"ret_{horizon}": since_close for horizon in RETURN_HORIZONS},
        "vol_ratio_20": vol_ratio,
        "vol_ratio_60": vol_ratio,
        "vwap_dist_20": vwap_dist,
        "vwap_dist_60": vwap_dist,
        "atr_14": _div(atr, c_t),
        "range_atr": _div(r.at(h - lo), atr),
        "volatility_20": np.sqrt(np.maximum(since_first_close(ret1 * ret1) / steps - mean * mean, 0.0)),
        "high_dist_60": _ret(c_t, r.running_max(np.where(pre, -np.inf, h))),
    }
    for name, value in values.items():
        yield FEATURE_INDEX[name], np.where(whole, value, np.nan), age < _LISTING_NEEDS[name]


def _patch_listings(r: _Reducer, out: FloatArray, bars: BarMatrix, listings: Listings) -> None:
    """Write the since-listing values into `out` ([features, ..., symbols], either path's
    block) where they replace the ordinary ones; only the listing columns are computed."""
    first = listings._rows(bars.n_bars, bars.close.shape[1])
    if first is None:
        return
    cols = np.flatnonzero(np.isfinite(first))
    for k, value, use in _since_listing(r, bars.columns(cols), first[cols], listings.min_bars):
        out[k][..., cols] = np.where(use, value, out[k][..., cols])


def _check_inputs(bars: BarMatrix, btc_close: FloatArray) -> None:
    if btc_close.shape != (bars.n_bars,):
        raise MarketDataError(
            f"btc_close has shape {btc_close.shape}, expected ({bars.n_bars},): one BTC close per bar, "
            "aligned with the candle matrices (NaN where BTC has no bar)"
        )


def features_hot(
    bars: BarMatrix, info: CandidateInfo, btc_close: FloatArray, listings: Listings | None = None
) -> FloatArray:
    """Batch path: features for every bar and symbol, shape [bars, symbols, len(FEATURE_NAMES)].

    `info` arrays are [bars, symbols] (what discovery said at each bar); `listings` names the
    symbols whose bars begin at their listing (none: no since-listing values). The result is a view of
    a feature-major block (one contiguous [bars, symbols] plane per feature): building it
    feature by feature is ~10x faster than interleaving, and `out[..., k]` reads contiguously.
    """
    _check_inputs(bars, btc_close)
    if info.heat.shape != bars.close.shape:
        raise MarketDataError(f"CandidateInfo is {info.heat.shape}; the batch path needs {bars.close.shape}")
    planes = np.empty((len(FEATURE_NAMES), *bars.close.shape), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, column in enumerate(_assemble(_BatchReducer(), bars, info, btc_close)):
            planes[k] = column
        if listings is not None:
            _patch_listings(_BatchReducer(), planes, bars, listings)
    return np.moveaxis(planes, 0, -1)


def features_hot_latest(
    bars: BarMatrix, info: CandidateInfo, btc_close: FloatArray, listings: Listings | None = None
) -> FloatArray:
    """Incremental path: features of the last bar only, shape [symbols, len(FEATURE_NAMES)].

    Needs at most the last `WINDOW` bars; longer inputs are trimmed. `info` arrays are [symbols];
    `listings` rows count in the bars given.
    """
    _check_inputs(bars, btc_close)
    if bars.n_bars > WINDOW:
        if listings is not None:
            listings = Listings(listings.first_row - (bars.n_bars - WINDOW), listings.min_bars)
        bars, btc_close = bars.tail(WINDOW), btc_close[-WINDOW:]
    if info.heat.shape != bars.close.shape[1:]:
        raise MarketDataError(f"CandidateInfo is {info.heat.shape}; the latest path needs ({bars.close.shape[1]},)")
    if bars.n_bars == 0:
        raise MarketDataError("features_hot_latest needs at least one bar")
    columns = np.empty((len(FEATURE_NAMES), bars.close.shape[1]), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if bars.n_bars == WINDOW:
            _latest_window(bars, info, btc_close, columns)
        else:  # a history shorter than the window (a warm-up, a test)
            for k, column in enumerate(_assemble(_LatestReducer(), bars, info, btc_close)):
                columns[k] = column
        if listings is not None:
            _patch_listings(_LatestReducer(), columns, bars, listings)
    return np.ascontiguousarray(columns.T)


def features_hot_windows(bars: BarMatrix, regime: FloatArray, listings: Listings | None = None) -> FloatArray:
    """Many one-symbol windows at once: `bars` are [WINDOW, windows], each column a symbol's
    last `WINDOW` bars at any bar, and `regime` the regime's features beside each
    (`regime_windows` of its closes: [3, windows]). The result, [windows, features], holds in
    each row exactly what `features_hot_latest` gives that window alone, without info (the info
    columns NaN: `with_info` adds them), as it gives it beside any other symbols
    (`_pairwise_bars`); `listings` ([windows] first rows) as it gives that window with those
    listings. A backtest, which holds the bars ahead, computes a symbol's next minutes in one
    call this way instead of a call a minute, where each numpy call costs about as much for one
    window as for many."""
    windows = bars.close.shape[1]
    if bars.close.shape != (WINDOW, windows) or regime.shape != (3, windows):
        raise MarketDataError(f"features_hot_windows needs [{WINDOW}, windows] bars and [3, windows] regime, got {bars.close.shape}")
    columns = np.empty((len(FEATURE_NAMES), windows), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        _latest_window(bars, None, None, columns)
        columns[_REGIME_ROWS] = regime
        if listings is not None:
            _patch_listings(_LatestReducer(), columns, bars, listings)
    return np.ascontiguousarray(columns.T)


def regime_windows(btc_close: FloatArray) -> FloatArray:
    """The regime features ([3, windows]: btc_ret_15, btc_ret_60, btc_vol_60) of [WINDOW,
    windows] regime closes, each column what `features_hot_latest` gives beside that window: a
    store computes them once for many bars, where every symbol's block of windows computed its
    own (a third of a block's cost), and `features_hot_windows` takes them."""
    if btc_close.shape != (WINDOW, btc_close.shape[1]):
        raise MarketDataError(f"regime_windows needs [{WINDOW}, windows] closes, got {btc_close.shape}")
    out = np.empty((3, btc_close.shape[1]), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        _latest_regime(btc_close, out)
    return out


def with_info_values(row: FloatArray, info: Sequence[float] | None) -> list[float]:
    """One symbol's `with_info` row as the floats `tolist` gives of it, from its
    `features_hot_windows` row and its info (`info_values`; None: unknown, NaN): a held coin
    is asked every minute, a hot candidate every minute it stays hot, where the arrays of
    `CandidateInfo` and `with_info` cost more than the rules read of them
    (`SignalStage._block_rows`)."""
    values: list[float] = row.tolist()
    values[_INFO_ROWS] = _UNKNOWN_INFO if info is None else [float(v) for v in info]
    return values


def with_info(rows: Sequence[FloatArray], info: CandidateInfo) -> FloatArray:
    """`features_hot_latest` ([symbols, features]) from each symbol's `features_hot_windows` row
    and their info ([symbols] arrays)."""
    out = np.array(rows)
    out[:, _INFO_ROWS] = np.array(info.arrays()).T
    return out


def feature_dict(row: FloatArray) -> dict[str, float | None]:
    """One symbol's features by name, NaN as None (JSON has no NaN): the journal's view."""
    return feature_dicts(row.reshape(1, -1))[0]


def feature_dicts(matrix: FloatArray) -> list[dict[str, float | None]]:
    """`feature_dict` of every row of a [symbols, features] matrix, NaN -> None. The journal asks
    for one or two rows per call, every fresh candidate each minute: a Python test per value
    (NaN is the one float unequal to itself) costs half the numpy pass (isnan, boxing to object,
    masked assign) at that size; the floats are the same `tolist` gives."""
    return [dict(zip(FEATURE_NAMES, [None if v != v else v for v in row], strict=True)) for row in matrix.tolist()]
