"""Training data for the GPU jobs: candles in, aligned arrays out, sequences on the box.

Two halves, one module, because they share the on-disk layout:

- on the trading box, `load_candles` reads `{BASE}_{QUOTE}-{interval}.parquet` files onto one
  common time grid (a missing bar is NaN, never invented) and `write_dataset` stores the feature
  tensor computed by the feature code, the closes and the timestamps as plain `.npy` files
  (`np.save` bytes are deterministic, unlike `.npz` zip entries, so the packed job's hash only
  changes when the data does);
- on the GPU box, `Dataset.load` reads them back, and `window_index` / `gather_windows` cut
  fixed-length windows without copying the whole history per sample;
- on both, `check_enough_bars` says whether the closes are enough for the task's windows and
  folds: before the job is shipped, and again in the task.

Only numpy is imported at module level; pandas (and `engine`'s candle check) are needed only
to read Parquet locally.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from gpu_jobs.spec import JobSpec

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

_INTERVAL_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_FILE_RE = re.compile(r"^(?P<base>[A-Z0-9]+)_(?P<quote>[A-Z0-9]+)-(?P<interval>\w+)\.parquet$")
_FILES = ("close.npy", "features.npy", "meta.json", "timestamps.npy")
_COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")


class DatasetError(ValueError):
    """Candles or arrays that cannot make a dataset; the message says what to fix."""


def interval_ms(interval: str) -> int:
    match = re.fullmatch(r"([1-9][0-9]*)([smhd])", interval)
    if not match:
        raise DatasetError(f"interval {interval!r} is not valid; use forms like 1m, 5m, 1h")
    return int(match.group(1)) * _INTERVAL_MS[match.group(2)]


@dataclass(frozen=True)
class Candles:
    """OHLCV as [bars, symbols] float64 on one time grid; `btc_close` [bars]: the closes of
    `regime_symbol` (BTC/USDT unless the engine is set to another), for the regime features."""

    interval: str
    symbols: tuple[str, ...]
    timestamps: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    btc_close: FloatArray
    regime_symbol: str = "BTC/USDT"


def load_candles(
    data_dir: Path,
    interval: str,
    symbols: Sequence[str] | None = None,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    regime_symbol: str = "BTC/USDT",
    require_regime: bool = False,
) -> Candles:
    """Candles of `symbols` (e.g. "DOGE/USDT"; default every file of this interval with candles
    in the window), aligned on the union of their timestamps over [start_ms, end_ms), and the
    closes of `regime_symbol` for the regime features: the engine's `trading.signals.regime_symbol`,
    which the model's contract records (NaN throughout when the pair has no file here).

    `require_regime` (training: `hotcoin train`) makes a regime pair without candles in the
    window a `DatasetError` naming the file and the fix: the model would train with its regime
    features (btc_*) NaN throughout, while its contract says they came from `regime_symbol`, and
    the engine, which has that pair's bars, would feed it values it never saw.

    A file that cannot be read, repeats a timestamp or holds a candle off the interval's grid
    is a `DatasetError` naming the file and row: dropping or overwriting such rows would train
    on a market that never was (a symbol vanishing, a return computed across a pasted block)."""
    step = interval_ms(interval)
    available = _candle_files(data_dir, interval)
    chosen = _choose(symbols, available, data_dir, interval)
    files = {
        sym: _read_candle_file(available[sym], interval, step).window(start_ms, end_ms)
        for sym in sorted(set(chosen) | ({regime_symbol} & set(available)))
    }
    empty = [s for s in chosen if len(files[s].timestamps) == 0]
    if len(empty) == len(chosen):
        raise DatasetError(f"no {interval} candles of {chosen} inside the requested window")
    if empty and symbols:
        raise DatasetError(f"{empty} have no {interval} candles inside the requested window; drop them from the symbols or widen the window")
    chosen = [s for s in chosen if s not in empty]
    t0 = min(int(files[s].timestamps.min()) for s in chosen)
    t1 = max(int(files[s].timestamps.max()) for s in chosen)
    timestamps = np.arange(t0, t1 + step, step, dtype=np.int64)
    cols = {c: np.stack([files[s].on_grid(c, timestamps, step) for s in chosen], axis=1) for c in _COLUMNS[1:]}
    regime = files[regime_symbol].on_grid("close", timestamps, step) if regime_symbol in files else np.full(len(timestamps), np.nan)
    if require_regime and not np.isfinite(regime).any():
        raise _no_regime(regime_symbol, data_dir, interval, in_dir=regime_symbol in available)
    return Candles(interval, tuple(chosen), timestamps, btc_close=regime, regime_symbol=regime_symbol, **cols)


def _no_regime(regime_symbol: str, data_dir: Path, interval: str, *, in_dir: bool) -> DatasetError:
    """The error for training without the regime pair's candles (its file missing, or without a
    bar in the window): what is missing and the two fixes."""
    file = data_dir / f"{regime_symbol.replace('/', '_')}-{interval}.parquet"
    what = f"{file} has no candles in the window" if in_dir else f"no {file}"
    return DatasetError(
        f"{what}: the regime features (btc_*) come from trading.signals.regime_symbol = {regime_symbol}, and "
        f"without its candles the model would train on them empty while its contract names {regime_symbol}; "
        f"add {regime_symbol}'s {interval} candles to --data (covering the same time), or set "
        "trading.signals.regime_symbol to a pair in it (the engine then runs with that pair too)"
    )


def _candle_files(data_dir: Path, interval: str) -> dict[str, Path]:
    """{"DOGE/USDT": path} of every `DOGE_USDT-{interval}.parquet` in `data_dir`."""
    available: dict[str, Path] = {}
    for path in sorted(data_dir.glob(f"*-{interval}.parquet")) if data_dir.is_dir() else []:
        m = _FILE_RE.match(path.name)
        if m:
            available[f"{m['base']}/{m['quote']}"] = path
    if not available:
        raise DatasetError(
            f"no {interval} candles in {data_dir}; expected files like DOGE_USDT-{interval}.parquet "
            f"(columns {', '.join(_COLUMNS)})"
        )
    return available


def _choose(symbols: Sequence[str] | None, available: dict[str, Path], data_dir: Path, interval: str) -> list[str]:
    """The symbols asked for, each once and each with a file (a pair named twice would count
    twice in every bar's cross-section and in the top-10% label)."""
    chosen = list(symbols) if symbols else sorted(available)
    twice = sorted({s for s in chosen if chosen.count(s) > 1})
    if twice:
        raise DatasetError(f"symbols {twice} are given more than once; list each pair once")
    missing = [s for s in chosen if s not in available]
    if missing:
        raise DatasetError(f"no {interval} candles for {missing} in {data_dir}; have {sorted(available)}")
    return chosen


@dataclass(frozen=True)
class _CandleFile:
    """One file's candles: open times and the OHLCV columns by name, row for row."""

    timestamps: IntArray
    values: dict[str, FloatArray]

    def window(self, start_ms: int | None, end_ms: int | None) -> _CandleFile:
        keep = np.ones(len(self.timestamps), np.bool_)
        if start_ms is not None:
            keep &= self.timestamps >= start_ms
        if end_ms is not None:
            keep &= self.timestamps < end_ms
        return _CandleFile(self.timestamps[keep], {c: v[keep] for c, v in self.values.items()})

    def on_grid(self, column: str, timestamps: IntArray, step: int) -> FloatArray:
        """`column` placed on `timestamps` (a missing bar stays NaN); rows outside it are left out."""
        out = np.full(len(timestamps), np.nan)
        keep = (self.timestamps >= timestamps[0]) & (self.timestamps <= timestamps[-1])
        out[(self.timestamps[keep] - timestamps[0]) // step] = self.values[column][keep]
        return out


def _read_candle_file(path: Path, interval: str, step: int) -> _CandleFile:
    """One file's candles, every timestamp once and on the `interval` grid, every bar one an
    exchange could print (`candle_problem`, the check the backtest's reader makes: a file the
    backtest refuses must not train a model). Imported here, not at the top: this module also
    runs on the GPU box, which has no `engine`, and only the trading box reads candle files."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.domain.candle import candle_problem

    try:
        missing = [c for c in _COLUMNS if c not in pq.read_schema(path).names]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
        df = pd.read_parquet(path, columns=list(_COLUMNS))
        file = _CandleFile(df["timestamp_ms"].to_numpy(np.int64), {c: df[c].to_numpy(np.float64) for c in _COLUMNS[1:]})
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(
            f"{path} is not a readable candle file with columns {', '.join(_COLUMNS)} ({reason}); re-collect or remove it"
        ) from None
    _check_timestamps(path, file.timestamps, interval, step)
    found = candle_problem(*(file.values[c] for c in _COLUMNS[1:]))
    if found is not None:
        row, what = found
        raise DatasetError(f"{path}: {what} (row {row}); fix or remove the file")
    return file


def _check_timestamps(path: Path, ts: IntArray, interval: str, step: int) -> None:
    """A timestamp off the grid or seen twice is an error naming its row (0-based, file order)."""
    off = np.flatnonzero(ts % step != 0)
    if len(off):
        row = int(off[0])
        raise DatasetError(
            f"{path}: row {row} opens at {int(ts[row])} ms, not on the {interval} grid (a multiple of {step} ms); "
            f"{len(off)} rows are off it, fix or remove the file"
        )
    order = np.argsort(ts, kind="stable")
    repeats = order[1:][ts[order][1:] == ts[order][:-1]]  # stable: the later rows of each repeated time
    if len(repeats):
        row = int(repeats.min())
        first = int(np.flatnonzero(ts == ts[row])[0])
        raise DatasetError(
            f"{path}: row {row} repeats timestamp {int(ts[row])} of row {first} ({len(repeats)} repeated rows); "
            "each candle must appear once, fix or remove the file"
        )


@dataclass(frozen=True)
class FeatureSet:
    """A feature definition: names and dtypes in column order, its schema hash, the function
    computing [bars, symbols, features] from candles, and the `listing_min_bars` that function
    computes a listing's since-listing windows from (None: it has none). The last is not in the
    schema hash, yet changes the values: it travels with the dataset into the model's contract."""

    name: str
    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    schema_hash: str
    compute: Callable[[Candles], FloatArray]
    listing_min_bars: int | None = None


def write_dataset(candles: Candles, features: FeatureSet, out_dir: Path, *, name: str) -> dict[str, object]:
    """Compute the features and store the arrays in `out_dir`; returns the dataset's metadata
    (`gpu_jobs.spec.DatasetInfo` fields), including the sha256 of its files."""
    values = np.asarray(features.compute(candles))
    expected = (len(candles.timestamps), len(candles.symbols), len(features.names))
    if values.shape != expected:
        raise DatasetError(
            f"feature set {features.name} returned shape {values.shape}, expected {expected} "
            "([bars, symbols, features] in FEATURE_NAMES order)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "features.npy", values.astype(np.float32))
    np.save(out_dir / "close.npy", candles.close.astype(np.float64))
    np.save(out_dir / "timestamps.npy", candles.timestamps.astype(np.int64))
    meta: dict[str, object] = {
        "name": name,
        "interval": candles.interval,
        "symbols": list(candles.symbols),
        "start_ms": int(candles.timestamps[0]),
        "end_ms": int(candles.timestamps[-1]) + interval_ms(candles.interval),
        "n_bars": len(candles.timestamps),
        "feature_names": list(features.names),
        "feature_dtypes": list(features.dtypes),
        "feature_schema_hash": features.schema_hash,
        "listing_min_bars": features.listing_min_bars,
        "regime_symbol": candles.regime_symbol,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    meta["sha256"] = dataset_sha256(out_dir)
    return meta


def dataset_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in _FILES:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Dataset:
    """The arrays on the GPU box: features [T, S, F] float32, close [T, S], timestamps [T]."""

    features: F32Array
    close: FloatArray
    timestamps: IntArray
    symbols: tuple[str, ...]
    feature_names: tuple[str, ...]

    @classmethod
    def load(cls, folder: Path) -> Dataset:
        for name in _FILES:
            if not (folder / name).is_file():
                raise DatasetError(f"dataset file {folder / name} is missing; re-pack the job")
        meta = json.loads((folder / "meta.json").read_text())
        ds = cls(
            features=np.load(folder / "features.npy"),
            close=np.load(folder / "close.npy"),
            timestamps=np.load(folder / "timestamps.npy"),
            symbols=tuple(meta["symbols"]),
            feature_names=tuple(meta["feature_names"]),
        )
        t, s, f = ds.features.shape
        if ds.close.shape != (t, s) or ds.timestamps.shape != (t,) or f != len(ds.feature_names):
            raise DatasetError(f"dataset arrays in {folder} disagree in shape; re-pack the job")
        return ds

    @property
    def n_bars(self) -> int:
        return int(self.close.shape[0])


def window_index(close: FloatArray, seq_len: int, horizon: int) -> tuple[IntArray, IntArray]:
    """(t, s) of every window whose `seq_len` closes up to t and the `horizon` closes after it
    all exist. t is the window's last bar; neither window nor label spans a missing bar."""
    bad = ~np.isfinite(close)
    cbad = np.concatenate([np.zeros((1, close.shape[1]), np.int64), np.cumsum(bad, axis=0)])
    n = close.shape[0]
    t = np.arange(seq_len - 1, n - horizon)
    if len(t) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ok = cbad[t + horizon + 1] - cbad[t + 1 - seq_len] == 0  # no missing close in window + label
    ti, si = np.nonzero(ok)
    return t[ti].astype(np.int64), si.astype(np.int64)


def normalisation(features: F32Array, upto: int) -> tuple[F32Array, F32Array]:
    """Per-feature mean and std over bars [0, upto) (the training part only), NaN ignored.
    A feature never seen (all NaN) or constant gets mean 0 / std 1, so it maps to itself."""
    part = features[:upto].reshape(-1, features.shape[-1]).astype(np.float64)
    finite = np.isfinite(part)
    count = finite.sum(axis=0)
    safe = np.where(finite, part, 0.0)
    mean = np.where(count > 0, safe.sum(axis=0) / np.maximum(count, 1), 0.0)
    var = np.where(count > 1, ((safe - mean) ** 2 * finite).sum(axis=0) / np.maximum(count - 1, 1), 1.0)
    std = np.sqrt(var)
    std = np.where((std > 1e-12) & (count > 1), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def normalise(features: F32Array, mean: F32Array, std: F32Array, clip: float = 10.0) -> F32Array:
    """(x - mean) / std, clipped; NaN (no value, e.g. a warm-up bar) becomes 0 = the mean."""
    z = (features - mean) / std
    out: F32Array = np.clip(np.nan_to_num(z, nan=0.0, posinf=clip, neginf=-clip), -clip, clip).astype(np.float32)
    return out


def time_folds(t: IntArray, n_bars: int, test_fraction: float, folds: int, purge: int) -> tuple[npt.NDArray[np.bool_], list[npt.NDArray[np.bool_]]]:
    """Train mask (windows ending before the split, minus `purge` bars so no label reaches into
    the test period) and one mask per contiguous out-of-sample fold after the split."""
    split = int(n_bars * (1.0 - test_fraction))
    train = t < split - purge
    edges = np.linspace(split, n_bars, folds + 1).astype(np.int64)
    return train, [(t >= lo) & (t < hi) for lo, hi in itertools.pairwise(edges)]


_MORE_BARS = "use a longer history: more days of candles in --data, or pairs that go back further (--symbols)"


def check_enough_bars(spec: JobSpec, close: FloatArray) -> None:
    """A `DatasetError` when these closes [bars, symbols] cannot give the task a training set
    and a non-empty out-of-sample fold each. The trading box checks before it ships the job, so
    too short a history costs no upload and no GPU time. The fix named is one `hotcoin train`
    offers: more bars (folds and window lengths are task settings the command does not take)."""
    p = spec.params
    n_bars, test_fraction = int(close.shape[0]), float(p["test_fraction"])
    if spec.task == "ppo_sizing":
        rollout = int(p["rollout"])
        if int(n_bars * (1.0 - test_fraction)) - rollout - 1 < 1:
            raise DatasetError(f"not enough bars: {n_bars} bars are too few for rollouts of {rollout} bars; {_MORE_BARS}")
        return
    horizon = int(p["horizon"])
    t, _ = window_index(close, int(p["seq_len"]), horizon)
    train, folds = time_folds(t, n_bars, test_fraction, int(p["folds"]), horizon)
    if train.sum() == 0 or any(f.sum() == 0 for f in folds):
        raise DatasetError(
            f"not enough bars: {n_bars} bars give {int(train.sum())} training windows and out-of-sample fold "
            f"sizes {[int(f.sum()) for f in folds]}; {_MORE_BARS}"
        )
