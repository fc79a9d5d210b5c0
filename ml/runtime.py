"""`load_scorer`: the engine's single way to get a model into the signal path.

It picks the registry's current model for the configured task and interval (the newest version
that earned `production`; if none has, the newest version, which then only watches), verifies
that its contract matches the running engine (interval, feature schema, the
`trading.signals.regime_symbol` its regime features came from and the
`trading.signals.listing_min_bars` its features were computed with) and that its file hashes to
the contract, and returns the scorer in the mode its promotion decision allows:

- `production` -> mode `production`: its score enters the entry decision (`ml_score` rule);
- `research_only` -> mode `shadow`: scored and journaled as `model_shadow`, never deciding.

The decision is the one recorded at registration, judged again by today's `[ml.gates]`: a
production model that no longer passes them runs as research_only (logged, and said in the
status), so tightening the gates takes effect at the next start, not at the next retraining.

Anything else (no registry, no version, a refused or unreadable model) returns no scorer and a
one-line status saying why and that the engine runs on its rules alone: a model problem must
never stop trading on rules, and must never be silent (`failed` marks a model that was there and
could not be installed, or a registry the config names, `ml.registry_dir`, that is not there: a
mistyped path is a model lost, not a fresh install). A version folder that cannot be read, or
whose model file is missing or no longer hashes to its contract (changed or corrupted), is
passed over with a warning naming it and the fix (the current model is chosen among the others,
so an older whole version runs rather than none) and named in the status and in `skipped`. A
missing and a damaged file are one case: either way the bytes the contract describes are not
there, and either way registering the same model again restores them (`ModelRegistry.add`).

A production model's entry threshold is `trading.signals.ml_min_score`; "auto" (the default)
takes the one calibrated at training from its out-of-sample scores. `warnings` says when the
threshold in force is above every out-of-sample score the model gave (it would block every
entry), when an older model records no calibrated threshold, and when it was trained with
another minor version of LightGBM or numpy.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import HotcoinConfig
from engine.config.sections.ml import PromotionGates
from engine.config.sections.trading import (
    UNCALIBRATED_ML_MIN_SCORE,
    MlMinScore,
    SignalSettings,
    ml_min_score_in_force,
)
from engine.signals.features import FEATURE_DTYPES, FEATURE_NAMES, feature_schema_hash
from engine.signals.scorer import ScorerMode
from ml.governance.errors import GovernanceError, ModelRefused
from ml.governance.names import model_folder
from ml.scorer import LIBRARIES, LgbmScorer, model_label

# The registry and its contract and promotion modules are imported by the functions that read
# versions: where the registry holds no folder for the model (a fresh install, a backtest box)
# `load_scorer` finds none without them, ~5-8 ms of every command's start (`_registered`).
if TYPE_CHECKING:
    from ml.governance.promotion import GateResult
    from ml.governance.registry import Listing, ModelVersion, SkippedVersion

TASK = "hot_lgbm"
log = logging.getLogger("hotcoin.ml")
_RULES_ONLY = "the engine runs on its rules alone"


@dataclass(frozen=True)
class ScorerLoad:
    """What the runtime installs (`scorer`, None for no model) and what status shows (`status`)."""

    scorer: LgbmScorer | None
    status: str
    model: str | None = None  # e.g. hot_lgbm_1m@v0003#1a2b3c4d
    model_sha256: str | None = None
    mode: ScorerMode = "off"
    failed: bool = False  # a model (or the registry) was there and could not be used
    warnings: tuple[str, ...] = ()  # about the installed model: say them as loudly as a failure
    training_window: tuple[int, int] | None = None  # the installed model's first and last training bar
    skipped: tuple[str, ...] = ()  # versions passed over, each "name (why)": unreadable, or a missing or damaged model file


def registry_root(config: HotcoinConfig) -> Path:
    return config.ml.registry_dir or (config.paths.data_dir / "models")


def _under_gates(version: ModelVersion, gates: PromotionGates) -> ModelVersion:
    """`version` with its decision judged by today's gates (`recheck`); a demotion is logged."""
    from ml.governance.promotion import recheck

    decision = recheck(version.decision, gates)
    if decision == version.decision:
        return version
    log.warning(
        "%s was registered as production but misses the current [ml.gates] (%s); it runs as research_only (shadow)",
        version.name,
        "; ".join(g.reason for g in decision.gates if not g.passed),
    )
    return dataclasses.replace(version, decision=decision)


REPAIR = "register the same model again to restore it (the `hotcoin train` or `hotcoin jobs fetch` that made it)"


def with_whole_model_files(listing: Listing) -> Listing:
    """`listing` less the versions whose model file is missing or does not hash to its contract
    (`model_file_problem`), which join its skipped ones, each logged as a warning naming it and
    the fix. The current version is chosen after this, not before: a newest version whose file
    was deleted, never copied or corrupted would otherwise be chosen, refused, and take the model
    out of the engine while an older version is whole. A missing and a corrupted file are
    treated alike (skipped, an older version falls back in): both mean the registered bytes are
    gone, and both are repaired the same way."""
    from ml.governance.registry import Listing, SkippedVersion, model_file_problem

    damaged = [(v, problem) for v in listing.versions if (problem := model_file_problem(v)) is not None]
    if not damaged:
        return listing
    skipped = tuple(SkippedVersion(v.name, f"{problem}; {REPAIR}") for v, problem in damaged)
    for bad in skipped:
        log.warning("model registry: skipping %s: %s", bad.name, bad.reason)
    bad_versions = {v.version for v, _ in damaged}
    return Listing(tuple(v for v in listing.versions if v.version not in bad_versions), listing.skipped + skipped)


def _current(versions: tuple[ModelVersion, ...]) -> ModelVersion | None:
    production = [v for v in versions if v.production]
    pool = production or versions
    return pool[-1] if pool else None


def _skipped_note(skipped: tuple[SkippedVersion, ...]) -> str:
    """"; skipped unreadable hot_lgbm_1m@v0002 (...)": appended to the status so a damaged
    version is seen wherever the model status is (log, journal, status bar), not only in a log."""
    if not skipped:
        return ""
    return "; skipped unreadable " + ", ".join(f"{s.name} ({s.reason})" for s in skipped)


def load_scorer(config: HotcoinConfig, *, task: str = TASK, interval: str | None = None) -> ScorerLoad:
    """The scorer for `task` on the signal timeframe (default `trading.signals.timeframe`).

    A version whose model file is missing or damaged is skipped (`with_whole_model_files`), an
    older whole one loads in its place; an `ml.registry_dir` that does not exist is a failed
    load (the runtime logs it as a warning), the default `<data_dir>/models` not yet made is a
    fresh install's "no model"."""
    interval = interval or config.trading.signals.timeframe
    root = registry_root(config)
    if config.ml.registry_dir is not None and not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        return ScorerLoad(
            None,
            f"model registry {root} (ml.registry_dir) {what}; {_RULES_ONLY} (fix ml.registry_dir, or remove it to use "
            f"{config.paths.data_dir / 'models'})",
            failed=True,
        )
    try:
        versions, passed_over = _registered(root, task, interval)
    except (GovernanceError, OSError) as exc:
        return ScorerLoad(None, f"model registry {root} is unreadable ({exc}); {_RULES_ONLY}", failed=True)
    chosen = _current(tuple(_under_gates(v, config.ml.gates) for v in versions))
    if chosen is None:
        load = ScorerLoad(
            None,
            f"no {task}_{interval} model in {root}; {_RULES_ONLY} (train one with `hotcoin train --task {task}`)",
            failed=bool(passed_over),  # there were models, none readable
        )
    else:
        load = _load(chosen, config.trading.signals)
    skipped = tuple(f"{s.name} ({s.reason})" for s in passed_over)
    return dataclasses.replace(load, status=load.status + _skipped_note(passed_over), skipped=skipped)


def _registered(root: Path, task: str, interval: str) -> tuple[tuple[ModelVersion, ...], tuple[SkippedVersion, ...]]:
    """The registry's whole versions of `task` on `interval`, oldest first, and those passed
    over (`with_whole_model_files`). A registry without the model's folder has none, as
    `ModelRegistry.scan` says of it, found without importing the registry (names checked all
    the same: a bad one raises `ContractError` either way)."""
    if not model_folder(root, task, interval).is_dir():
        return (), ()
    from ml.governance.registry import ModelRegistry

    listing = with_whole_model_files(ModelRegistry(root).scan(task, interval))
    return listing.versions, listing.skipped


def _load(chosen: ModelVersion, signals: SignalSettings) -> ScorerLoad:
    """`chosen` verified against the running features (computed from `signals`' regime symbol
    and listing_min_bars) and loaded in the mode its decision allows, or the reason it was not."""
    label = model_label(chosen)
    sha = chosen.contract.model_sha256
    mode: ScorerMode = "production" if chosen.production else "shadow"
    try:
        scorer, notes = _verified_scorer(chosen, signals, mode)
    except ModelRefused as exc:
        return ScorerLoad(None, f"REFUSED {exc}; {_RULES_ONLY}", label, sha, failed=True)
    except (GovernanceError, OSError, ValueError) as exc:  # e.g. a missing contract, an unreadable file
        return ScorerLoad(None, f"{label} could not be loaded ({exc}); {_RULES_ONLY}", label, sha, failed=True)
    if mode == "production":
        threshold, source, warned = _threshold(chosen, signals.ml_min_score)
        status = f"{label} in production: its score gates entries at ml_min_score {threshold:.4g} ({source})"
        notes += warned
    else:
        why = "; ".join(chosen.decision.reasons)
        status = f"{label} in shadow (research_only: {why}): scored and journaled, never trading"
    window = chosen.contract.training_window
    return ScorerLoad(scorer, status, label, sha, mode, warnings=notes, training_window=(window.start_ms, window.end_ms))


def _verified_scorer(version: ModelVersion, signals: SignalSettings, mode: ScorerMode) -> tuple[LgbmScorer, tuple[str, ...]]:
    """`version` verified against the running features and libraries (`verify`) and loaded
    (`LgbmScorer.load`: its format and its booster's own columns), with `verify`'s warnings;
    raises what refuses it. One function, so `hotcoin models` judges each version as the
    engine judges the one it loads."""
    from ml.governance.registry import FeatureSchema, verify

    notes = verify(
        version,
        feature_schema_hash=feature_schema_hash(),
        features=FeatureSchema(FEATURE_NAMES, FEATURE_DTYPES),
        libraries=LIBRARIES,
        listing_min_bars=signals.listing_min_bars,
        regime_symbol=signals.regime_symbol,
    )
    return LgbmScorer.load(version, mode), notes


def _threshold(chosen: ModelVersion, setting: MlMinScore) -> tuple[float, str, tuple[str, ...]]:
    """The `ml_score` threshold in force for a production model, where it comes from, and the
    warnings it calls for: one above every out-of-sample score blocks every entry, which is
    the one way a production model stops all trading, so it must be said before it happens."""
    calibration = chosen.contract.score_calibration
    threshold = ml_min_score_in_force(setting, None if calibration is None else calibration.min_score)
    if setting != "auto":
        source = "trading.signals.ml_min_score"
    elif calibration is not None:
        source = f"auto: calibrated at training, the top {calibration.top_fraction:.0%} of its out-of-sample scores"
    else:
        source = "auto, but the model records no calibrated threshold"
    if calibration is None:
        if setting != "auto":
            return threshold, source, ()
        return threshold, source, (
            f"{chosen.name} records no calibrated entry threshold (registered before hotcoin calibrated them), so "
            f"ml_min_score falls back to {UNCALIBRATED_ML_MIN_SCORE:g}, which its scores may never reach: every entry "
            "would then be skipped. Retrain it (`hotcoin train --task hot_lgbm`) or set trading.signals.ml_min_score "
            "to a number on its scale",
        )
    if threshold <= calibration.oos_max:
        return threshold, source, ()
    return threshold, source, (
        f"ml_min_score {threshold:.4g} is above every out-of-sample score of {chosen.name} (highest "
        f"{calibration.oos_max:.4g} of {calibration.oos_samples}): it will skip every entry. Use ml_min_score = "
        f'"auto" ({calibration.min_score:.4g}) or a number below {calibration.oos_max:.4g}',
    )


@dataclass(frozen=True)
class VersionReport:
    """One registered version as `hotcoin models` shows it."""

    name: str  # e.g. hot_lgbm_1m@v0002
    version: int
    path: Path
    verdict: str  # the registered decision's: production, research_only; "unreadable" for a folder that cannot be read
    verdict_now: str | None  # the decision judged by today's [ml.gates] (`recheck`); None: unreadable
    gates: tuple[GateResult, ...]  # the decision's figures as stored (value, threshold, passed)
    decided_ms: int | None
    problem: str | None  # why it would be refused by this engine (its files, its contract); None: it verifies
    loaded: bool  # the engine would load this one now


@dataclass(frozen=True)
class Inventory:
    """Every version of the engine's model (`task` on `interval`) in the registry at `root`, and
    what the engine's own loader (`load_scorer`) makes of them now."""

    task: str
    interval: str
    root: Path
    registry_exists: bool
    versions: tuple[VersionReport, ...]
    load: ScorerLoad
    others: tuple[str, ...]  # the registry's other models (e.g. lstm_hot_1m), which the engine does not load


def inventory(config: HotcoinConfig, *, task: str = TASK, interval: str | None = None) -> Inventory:
    """What `hotcoin models` lists. Each version is verified and loaded as the engine would load
    it (`_verified_scorer`: its model file against the contract, its decision against the
    model, the contract against the running feature code and libraries, the file as a LightGBM
    model of these columns), and the one the engine would load is the one `load_scorer` loads:
    the listing cannot disagree with `hotcoin run`."""
    from ml.governance.promotion import recheck
    from ml.governance.registry import ModelRegistry

    interval = interval or config.trading.signals.timeframe
    root = registry_root(config)
    load = load_scorer(config, task=task, interval=interval)
    if not root.is_dir():
        return Inventory(task, interval, root, False, (), load, ())
    registry = ModelRegistry(root)
    listing = registry.scan(task, interval)
    rows: list[VersionReport] = []
    for v in listing.versions:
        try:
            _verified_scorer(v, config.trading.signals, "shadow")
            problem = None
        except (GovernanceError, OSError, ValueError) as exc:
            problem = str(exc)
        loaded = load.scorer is not None and load.model == model_label(v)
        now = recheck(v.decision, config.ml.gates).verdict
        rows.append(
            VersionReport(v.name, v.version, v.path, v.decision.verdict, now, v.decision.gates, v.decision.decided_ms, problem, loaded)
        )
    for s in listing.skipped:
        number = int(s.name.rpartition("@v")[2])
        folder = root / f"{task}_{interval}" / f"v{number:04d}"
        rows.append(VersionReport(s.name, number, folder, "unreadable", None, (), None, s.reason, False))
    others = tuple(f"{t}_{i}" for t, i in registry.models() if (t, i) != (task, interval))
    return Inventory(task, interval, root, True, tuple(sorted(rows, key=lambda r: r.version)), load, others)
