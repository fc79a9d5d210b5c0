"""The runtime contract: everything a model needs from the code that feeds it.

A model is only as good as the agreement between the features it was trained on and the
features the engine computes today. The contract writes that agreement down next to the model
(`runtime_contract_{task}_{interval}.json`): feature names in order with their dtypes, the hash
of the feature code's schema, the sha256 of the model file, the library versions it was trained
with, the training window, the label definition and, for a scoring model, where its scores stand
out of sample (`ScoreCalibration`: the entry threshold `trading.signals.ml_min_score = "auto"`
uses), the `listing_min_bars` its features were computed with, the `regime_symbol` behind its
regime features and the `youngest_listing_bars` it saw. The registry checks names, hashes,
interval, library versions, `regime_symbol` and `listing_min_bars` before loading.

`listing_min_bars` is a setting of the feature code, not part of its schema: from that many bars
after a new listing on, `features_hot` computes the window features (ret_60, vwap_dist_60, ...)
over the bars since listing (`trading.signals.listing_min_bars`). The schema hash is the same
for every value, yet a model trained at 15 on listings' first hour and run at 10 scores a
listing's bars 10-14 on values it never saw, so the value is recorded here and, unless the model
saw no listing that young (`youngest_listing_bars`), must equal the running engine's. None: features
without since-listing windows (any feature set but `features_hot`), or a contract older than
version 3.

`regime_symbol` is the pair whose closes fed the regime columns (btc_ret_15, btc_ret_60,
btc_vol_60) at training; like `listing_min_bars` it is a setting, not part of the schema
(`trading.signals.regime_symbol`), and a model fed another pair's regime scores on values it never
saw, so it must equal the running engine's. A contract older than version 4 does not record it:
it reads as BTC/USDT, the pair training was hard-wired to before it was recorded.

`youngest_listing_bars` is the youngest listing, in bars since its first bar (counted), among the
rows the model was trained on, at most `engine.signals.features.LISTING_ORDINARY_BARS` (61): from
that age on every window feature of a listing is its ordinary value, so 61 also records "none
younger", which is what hot_lgbm records today (its rows need the baseline's 61 closes). The
signal stage does not put a listing younger than that to a production model, and
`listing_min_bars` only matters for a model that saw younger ones. None: not recorded (a
contract older than version 4, or a trainer that does not count them, the GPU jobs'): whether
the model saw a listing's first hour cannot be told.

Version 2 added `score_calibration`, version 3 `listing_min_bars`, version 4 `regime_symbol` and
`youngest_listing_bars`; an older contract still reads, without them.

Feature names, dtypes and the schema hash are arguments, not imports: the caller passes those of
`engine.signals.features` (`FEATURE_NAMES`, `feature_schema_hash()`) or of any explicit list.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ml.governance.errors import ContractError
from ml.governance.names import check_task_interval

CONTRACT_VERSION = 4
# 1: before `score_calibration`; 2: before `listing_min_bars`; 3: before `regime_symbol` and `youngest_listing_bars`
READABLE_VERSIONS = (1, 2, 3, 4)
DEFAULT_REGIME_SYMBOL = "BTC/USDT"  # what a contract before version 4 was trained on (training hard-wired it)
_DTYPES = frozenset({"float32", "float64", "int32", "int64", "bool"})


def contract_filename(task: str, interval: str) -> str:
    check_task_interval(task, interval)
    return f"runtime_contract_{task}_{interval}.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def schema_hash(names: Sequence[str], dtypes: Sequence[str]) -> str:
    """Hash of an explicit feature list (names, order and dtypes). Feature code that has its
    own `feature_schema_hash()` passes that instead; this is for lists defined elsewhere."""
    text = "\n".join(f"{n}:{d}" for n, d in zip(names, dtypes, strict=True))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions by distribution name, read from metadata (nothing is imported)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@dataclass(frozen=True)
class TrainingWindow:
    start_ms: int
    end_ms: int
    symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ContractError(
                f"training window ends ({self.end_ms}) before it starts ({self.start_ms}); "
                "pass the first and last bar times of the training data"
            )


@dataclass(frozen=True)
class ScoreCalibration:
    """Where a model's out-of-sample scores stand, recorded at training.

    A classifier's score is a probability of its label, not a confidence on a fixed scale: a
    model of "in the market's top 10 % next" scores around 0.1 and rarely above 0.5, so a fixed
    threshold such as 0.55 blocks everything. `min_score` is the score that lets through the
    `top_fraction` of out-of-sample rows (the share the label calls positive); `oos_max` is the
    highest out-of-sample score, so a threshold above it can be flagged before it blocks every
    entry."""

    min_score: float
    top_fraction: float
    oos_max: float
    oos_samples: int

    def __post_init__(self) -> None:
        if not 0.0 < self.top_fraction < 1.0:
            raise ContractError(f"score calibration top_fraction {self.top_fraction} is not in (0, 1)")
        if self.oos_samples < 1:
            raise ContractError("score calibration needs at least one out-of-sample score")
        if not 0.0 <= self.min_score <= self.oos_max <= 1.0:
            raise ContractError(
                f"score calibration min_score {self.min_score} and oos_max {self.oos_max} must satisfy "
                "0 <= min_score <= oos_max <= 1; recalibrate from the model's out-of-sample scores"
            )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScoreCalibration:
        return cls(
            min_score=float(data["min_score"]),
            top_fraction=float(data["top_fraction"]),
            oos_max=float(data["oos_max"]),
            oos_samples=int(data["oos_samples"]),
        )


@dataclass(frozen=True)
class RuntimeContract:
    task: str
    interval: str
    feature_names: tuple[str, ...]
    feature_dtypes: tuple[str, ...]
    feature_schema_hash: str
    model_file: str
    model_sha256: str
    library_versions: Mapping[str, str]
    training_window: TrainingWindow
    label_definition: str
    created_ms: int
    job_id: str | None = None
    model_format: str = "torch_state_dict"
    extra: Mapping[str, Any] = field(default_factory=dict)
    score_calibration: ScoreCalibration | None = None  # None: a model that is not scored, or one from version 1
    listing_min_bars: int | None = None  # None: features without since-listing windows, or a contract before version 3
    regime_symbol: str = DEFAULT_REGIME_SYMBOL  # the pair behind the regime features (module doc)
    youngest_listing_bars: int | None = None  # bars since listing, >= 1; None: not recorded (module doc)
    contract_version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        check_task_interval(self.task, self.interval)
        if not self.feature_names:
            raise ContractError("a contract needs at least one feature name")
        if len(self.feature_names) != len(self.feature_dtypes):
            raise ContractError(
                f"{len(self.feature_names)} feature names but {len(self.feature_dtypes)} dtypes; "
                "give one dtype per feature, in the same order"
            )
        dupes = sorted({n for n in self.feature_names if self.feature_names.count(n) > 1})
        if dupes:
            raise ContractError(f"duplicate feature names {dupes}; each feature must appear once")
        bad = sorted(set(self.feature_dtypes) - _DTYPES)
        if bad:
            raise ContractError(f"unknown feature dtypes {bad}; use one of {sorted(_DTYPES)}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.model_sha256):
            raise ContractError(f"model_sha256 {self.model_sha256!r} is not a sha256 hex digest")
        if not self.feature_schema_hash:
            raise ContractError("feature_schema_hash is empty; pass the feature code's schema hash")
        if not self.label_definition.strip():
            raise ContractError("label_definition is empty; say what the model was trained to predict")
        if self.listing_min_bars is not None and (
            isinstance(self.listing_min_bars, bool) or not isinstance(self.listing_min_bars, int) or self.listing_min_bars < 0
        ):
            raise ContractError(
                f"listing_min_bars {self.listing_min_bars!r} is not a whole number of bars >= 0; record the "
                "trading.signals.listing_min_bars the features were computed with (null: none)"
            )
        if not isinstance(self.regime_symbol, str) or "/" not in self.regime_symbol:
            raise ContractError(
                f"regime_symbol {self.regime_symbol!r} is not a pair like BTC/USDT; record the "
                "trading.signals.regime_symbol whose closes fed the regime features"
            )
        youngest = self.youngest_listing_bars
        if youngest is not None and (isinstance(youngest, bool) or not isinstance(youngest, int) or youngest < 1):
            raise ContractError(
                f"youngest_listing_bars {youngest!r} is not a whole number of bars >= 1; record the youngest listing "
                "age among the training rows (null: not counted)"
            )

    @property
    def filename(self) -> str:
        return contract_filename(self.task, self.interval)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["feature_names"] = list(self.feature_names)
        data["feature_dtypes"] = list(self.feature_dtypes)
        data["library_versions"] = dict(self.library_versions)
        data["training_window"]["symbols"] = list(self.training_window.symbols)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuntimeContract:
        try:
            version = int(data["contract_version"])
            if version not in READABLE_VERSIONS:
                raise ContractError(
                    f"contract version {version} is not supported (this code reads "
                    f"{', '.join(map(str, READABLE_VERSIONS))}); retrain or upgrade hotcoin"
                )
            window = data["training_window"]
            calibration = None if version < 2 else data["score_calibration"]
            listing_min_bars = None if version < 3 else data["listing_min_bars"]
            regime_symbol = DEFAULT_REGIME_SYMBOL if version < 4 else data["regime_symbol"]
            youngest_listing_bars = None if version < 4 else data["youngest_listing_bars"]
            return cls(
                task=str(data["task"]),
                interval=str(data["interval"]),
                feature_names=tuple(str(n) for n in data["feature_names"]),
                feature_dtypes=tuple(str(d) for d in data["feature_dtypes"]),
                feature_schema_hash=str(data["feature_schema_hash"]),
                model_file=str(data["model_file"]),
                model_sha256=str(data["model_sha256"]),
                library_versions={str(k): str(v) for k, v in data["library_versions"].items()},
                training_window=TrainingWindow(
                    int(window["start_ms"]), int(window["end_ms"]), tuple(str(s) for s in window["symbols"])
                ),
                label_definition=str(data["label_definition"]),
                created_ms=int(data["created_ms"]),
                job_id=None if data.get("job_id") is None else str(data["job_id"]),
                model_format=str(data["model_format"]),
                extra=dict(data.get("extra", {})),
                score_calibration=None if calibration is None else ScoreCalibration.from_json(calibration),
                listing_min_bars=listing_min_bars,
                regime_symbol=regime_symbol,
                youngest_listing_bars=youngest_listing_bars,
                contract_version=version,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ContractError(f"malformed runtime contract: {type(exc).__name__}: {exc}") from None


def build_contract(
    *,
    task: str,
    interval: str,
    model_path: Path,
    feature_names: Sequence[str],
    feature_dtypes: Sequence[str],
    feature_schema_hash: str,
    training_window: TrainingWindow,
    label_definition: str,
    created_ms: int,
    libraries: Mapping[str, str] | None = None,
    job_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    score_calibration: ScoreCalibration | None = None,
    listing_min_bars: int | None = None,
    regime_symbol: str = DEFAULT_REGIME_SYMBOL,
    youngest_listing_bars: int | None = None,
) -> RuntimeContract:
    """A contract for the model file at `model_path` (its sha256 is computed here).
    `libraries` are the versions the model was trained with (e.g. reported by the GPU box);
    by default those installed here. `listing_min_bars`: the one its features were computed
    with, for `features_hot` (None for a feature set without since-listing windows);
    `regime_symbol` the pair whose closes fed its regime features; `youngest_listing_bars` the
    youngest listing among its training rows (module doc; None: not counted)."""
    if not model_path.is_file():
        raise ContractError(f"model file {model_path} does not exist; fetch the job's artefacts first")
    return RuntimeContract(
        task=task,
        interval=interval,
        feature_names=tuple(feature_names),
        feature_dtypes=tuple(feature_dtypes),
        feature_schema_hash=feature_schema_hash,
        model_file=model_path.name,
        model_sha256=file_sha256(model_path),
        library_versions=dict(libraries) if libraries is not None else library_versions(["numpy", "torch"]),
        training_window=training_window,
        label_definition=label_definition,
        created_ms=created_ms,
        job_id=job_id,
        extra=dict(extra or {}),
        score_calibration=score_calibration,
        listing_min_bars=listing_min_bars,
        regime_symbol=regime_symbol,
        youngest_listing_bars=youngest_listing_bars,
    )


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk. A rename is only as durable as what it renames: without
    this, a power cut after the rename can leave the new name pointing at an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it, a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write, fsync, rename, fsync the folder: a reader never sees half a file, and after a
    crash the name holds either the old content or the whole new one, never an empty file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_contract(contract: RuntimeContract, folder: Path) -> Path:
    path = folder / contract.filename
    write_json_atomic(path, contract.to_json())
    return path


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A registry file's JSON object; missing, malformed or not an object is a `ContractError`
    naming `what` it is and the fix."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContractError(f"{what} {path} is missing; re-register the model") from None
    except json.JSONDecodeError as exc:
        raise ContractError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{what} {path} is not a JSON object")
    return data


def read_contract(path: Path) -> RuntimeContract:
    return RuntimeContract.from_json(read_json_object(path, "runtime contract"))
