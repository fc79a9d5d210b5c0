"""The hot-coin dataset: `features_hot` rows, the top-decile label, the baseline, on one grid.

Candles come in as [bars, symbols] matrices (`gpu_jobs.datasets.load_candles` reads the
`{BASE}_{QUOTE}-{interval}.parquet` history); the features are computed by
`engine.signals.features.features_hot`, the same function the engine runs live, so a model
trained here sees what it will see in production. Discovery's per-bar view (heat, rank, ...)
is not in the candles: those columns are NaN here, as they are at runtime for a symbol
discovery said nothing about; a model trained on this data simply does not use them.
Listings are in the candles, though: a pair whose first candle comes after the others' first
is a listing there (`Listings.after_start`, the backtest's rule for its store), and gets the
since-listing window features the engine computes for a listing it knows of, from the same
`trading.signals.listing_min_bars` (the schema records it, and so does the model's runtime
contract). A row is only kept with its baseline, which needs 61 closes, so no listing's first
60 bars is ever trained or judged on: `youngest_listing_bars` counts the youngest listing the
rows hold, the contract records it, and the signal stage asks a production model about no
younger listing (the rules decide alone there). The regime columns (btc_*) come from the
candles' `regime_symbol`, the engine's `trading.signals.regime_symbol`, recorded alike.

The long (one row per bar and symbol) table goes to Parquet with its schema in the file's
metadata (feature names, dtypes, schema hash, label definition), and reading it back refuses a
file written by different feature code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.config.sections.trading import SignalSettings
from engine.signals.features import (
    FEATURE_DTYPES,
    FEATURE_NAMES,
    FEATURE_VERSION,
    LISTING_ORDINARY_BARS,
    BarMatrix,
    CandidateInfo,
    Listings,
    feature_schema_hash,
    features_hot,
)
from gpu_jobs.datasets import Candles, DatasetError, interval_ms
from ml.labels import (
    HORIZON_MINUTES,
    MIN_CROSS_SECTION,
    TOP_FRACTION,
    forward_return,
    horizon_bars,
    label_definition,
    rise_from_low,
    top_fraction_label,
)

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SCHEMA_KEY = b"hotcoin.dataset"
BASELINE = "rise_from_60_bar_low"
BASELINE_DEFINITION = (
    "close[t] / min(close[t-60..t]) - 1, discovery's run-up momentum component computed from candles "
    "(heat itself needs live tickers and social data that candles do not hold), ranked per bar like the model"
)


@dataclass(frozen=True)
class Table:
    """Long rows: features [n, F] float32, label, forward return, baseline score, bar and symbol index."""

    x: F32Array
    y: FloatArray
    forward: FloatArray
    baseline: FloatArray
    bar: IntArray
    symbol: IntArray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class HotDataset:
    """Features, labels and the baseline on a [bars, symbols] grid (feature planes as float32:
    LightGBM bins them anyway, and it halves the memory of a month of 1m bars)."""

    interval: str
    symbols: tuple[str, ...]
    timestamps: IntArray
    features: F32Array  # [bars, symbols, F]
    forward: FloatArray  # [bars, symbols]
    label: FloatArray  # [bars, symbols], 1 / 0 / NaN
    baseline: FloatArray  # [bars, symbols]
    horizon: int
    listing_min_bars: int = SignalSettings().listing_min_bars
    regime_symbol: str = SignalSettings().regime_symbol
    listing_first_row: FloatArray | None = None  # [symbols]: a listing's first bar row, NaN for a pair that is none

    @property
    def n_bars(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def usable(self) -> BoolArray:
        """Rows with a label and a baseline score: the only ones trained or judged on, so the model
        and the baseline are compared on exactly the same rows."""
        return np.asarray(~np.isnan(self.label) & ~np.isnan(self.baseline))

    def table(self, bars: BoolArray) -> Table:
        """The usable rows of the selected bars (a [bars] mask), in time order."""
        if bars.shape != (self.n_bars,):
            raise DatasetError(f"bar mask has shape {bars.shape}, expected ({self.n_bars},)")
        keep = self.usable & bars[:, None]
        bar, sym = np.nonzero(keep)
        return Table(
            x=self.features[bar, sym],
            y=self.label[bar, sym],
            forward=self.forward[bar, sym],
            baseline=self.baseline[bar, sym],
            bar=bar.astype(np.int64),
            symbol=sym.astype(np.int64),
        )

    def youngest_listing_bars(self, table: Table) -> int:
        """The youngest listing among `table`'s rows, in bars since its first (counted), at most
        `LISTING_ORDINARY_BARS`: from that age on a listing's features are ordinary ones, so a
        table without a younger listing row (or without a listing) says that many."""
        if self.listing_first_row is None or len(table) == 0:
            return LISTING_ORDINARY_BARS
        ages = table.bar - self.listing_first_row[table.symbol] + 1  # NaN for a pair that is no listing
        young = ages[ages < LISTING_ORDINARY_BARS]
        return int(young.min()) if young.size else LISTING_ORDINARY_BARS

    def schema(self) -> dict[str, Any]:
        return {
            "feature_names": list(FEATURE_NAMES),
            "feature_dtypes": list(FEATURE_DTYPES),
            "feature_version": FEATURE_VERSION,
            "feature_schema_hash": feature_schema_hash(),
            "label": "label",
            "label_definition": label_definition(top_fraction=TOP_FRACTION),
            "horizon_bars": self.horizon,
            "listing_min_bars": self.listing_min_bars,
            "regime_symbol": self.regime_symbol,
            "interval": self.interval,
            "baseline": BASELINE,
            "baseline_definition": BASELINE_DEFINITION,
            "symbols": list(self.symbols),
        }


def label_horizon(interval: str, horizon_minutes: int = HORIZON_MINUTES) -> int:
    """Bars in the label's horizon on `interval` candles. Cheap, so callers check it before
    reading any candle: an interval that cannot make the label is a `DatasetError` saying
    which intervals can, not a traceback after the load."""
    step = interval_ms(interval)
    try:
        return horizon_bars(step, horizon_minutes)
    except ValueError as exc:
        raise DatasetError(f"{interval} candles cannot make the hot-coin label: {exc}") from None


def build_dataset(
    candles: Candles,
    *,
    horizon_minutes: int = HORIZON_MINUTES,
    top_fraction: float = TOP_FRACTION,
    listing_min_bars: int = SignalSettings().listing_min_bars,
) -> HotDataset:
    """Features, forward returns, labels and the baseline of every bar and symbol;
    `listing_min_bars` as the engine that will score with the model runs with."""
    horizon = label_horizon(candles.interval, horizon_minutes)
    if candles.close.shape[0] <= 60:
        raise DatasetError(f"{candles.close.shape[0]} bars are too few: features need 61 bars of history")
    if len(candles.symbols) < MIN_CROSS_SECTION:
        # Said here: further on it reads "0 training rows without both classes".
        raise DatasetError(
            f"{len(candles.symbols)} symbol(s): the label ranks a bar's symbols against each other and needs at "
            f"least {MIN_CROSS_SECTION}; train on more symbols (--symbols)"
        )
    bars = BarMatrix(candles.open, candles.high, candles.low, candles.close, candles.volume)
    listings = Listings.after_start(candles.close, listing_min_bars)
    x = features_hot(bars, CandidateInfo.unknown(candles.close.shape), candles.btc_close, listings).astype(np.float32)
    fwd = forward_return(candles.close, horizon)
    return HotDataset(
        interval=candles.interval,
        symbols=candles.symbols,
        timestamps=candles.timestamps,
        features=x,
        forward=fwd,
        label=top_fraction_label(fwd, top_fraction),
        baseline=rise_from_low(candles.close),
        horizon=horizon,
        listing_min_bars=listing_min_bars,
        regime_symbol=candles.regime_symbol,
        listing_first_row=listings.first_row,
    )


def stride_mask(n_bars: int, stride: int) -> BoolArray:
    """Every `stride`-th bar: the subsample a small machine trains on (neighbouring 1m rows are
    near-duplicates, so this costs little information)."""
    if stride < 1:
        raise DatasetError(f"stride must be at least 1, got {stride}")
    return np.asarray(np.arange(n_bars) % stride == 0)


def write_parquet(ds: HotDataset, path: Path, bars: BoolArray | None = None) -> int:
    """Write the usable rows (of the selected bars) as Parquet, schema in the file metadata and
    in `<name>.schema.json` beside it; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = ds.table(np.ones(ds.n_bars, np.bool_) if bars is None else bars)
    columns: dict[str, Any] = {
        "timestamp_ms": pa.array(ds.timestamps[t.bar], pa.int64()),
        "symbol": pa.array([ds.symbols[j] for j in t.symbol], pa.string()),
    }
    for k, name in enumerate(FEATURE_NAMES):
        columns[name] = pa.array(t.x[:, k].astype(np.float64), pa.float64())
    columns["forward_return"] = pa.array(t.forward, pa.float64())
    columns["baseline"] = pa.array(t.baseline, pa.float64())
    columns["label"] = pa.array(t.y.astype(np.int8), pa.int8())
    schema = ds.schema()
    table = pa.table(columns).replace_schema_metadata({SCHEMA_KEY: json.dumps(schema).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    path.with_suffix(".schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    return len(t)


def read_parquet(path: Path) -> tuple[Any, dict[str, Any]]:
    """(pandas DataFrame, schema) of a dataset file; refuses one built by other feature code."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DatasetError(f"dataset {path} does not exist; build it with `hotcoin train --task hot_lgbm`") from None
    raw = (table.schema.metadata or {}).get(SCHEMA_KEY)
    if raw is None:
        raise DatasetError(f"{path} has no hotcoin dataset schema in its metadata; it was not written by ml.dataset")
    schema: dict[str, Any] = json.loads(raw)
    if schema.get("feature_schema_hash") != feature_schema_hash():
        raise DatasetError(
            f"{path} was built with feature schema {str(schema.get('feature_schema_hash'))[:12]}, the running "
            f"feature code is {feature_schema_hash()[:12]}; rebuild the dataset"
        )
    return table.to_pandas(), schema
