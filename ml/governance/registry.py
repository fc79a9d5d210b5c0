"""A versioned folder of models, each with its contract and promotion decision.

    <root>/<task>_<interval>/.lock                 held while a registration runs
    <root>/<task>_<interval>/v0001/
        model.pt                                   the model file named in the contract
        runtime_contract_<task>_<interval>.json
        promotion_decision_<task>_<interval>.json
        metrics.json, job.json, ...                whatever else the trainer produced

Versions are never overwritten: a new registration is assembled in a staging folder and
renamed to the next free `vNNNN` (rename of a folder is atomic, so two registrations can't take
the same number and a reader never sees half a version; every file and both folders are fsynced
around the rename, so a power cut cannot leave a version whose files are empty). A model file is
stored once: a registration holds `<task>_<interval>/.lock` from its look for the same sha256
to its rename, so two registrations of one model at once make one version, not twins.

Loading verifies before handing out a path: the contract's and the decision's interval must be
the one asked for, the contract's feature schema hash the running feature code's, its regime
symbol the one the running features take the regime from, its `listing_min_bars` the one they
are computed with (where the model saw a listing young enough for it to matter), and the model
file's sha256 the contract's; otherwise `ModelRefused` says which one differs. The
libraries a caller names (those that read the model) are checked against the versions the
contract records: another major version is refused, another minor one is a warning.

A version that cannot be read (a missing or malformed contract or decision) is skipped, logged
and listed in `scan().skipped`, never fatal to the others: one damaged folder must not take an
intact production model out of the engine or block the next registration, whose number is still
past it.

The promotion decision must be the one made for the version's own model (`check_decision`): the
decision's verdict is what lets a score trade, so a production decision copied beside another
model would otherwise promote a model no gate ever passed.

A version whose model file is missing or no longer hashes to its contract (`model_file_problem`),
or whose decision is another model's, is repaired by registering the same model again: `add`
restores the file in place (and writes the decision made for this model), under the lock,
instead of calling the damaged version a duplicate, which left it damaged though the refusal's
advice was to re-register it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.signals.features import LISTING_ORDINARY_BARS
from ml.governance.contract import (
    DEFAULT_REGIME_SYMBOL,
    RuntimeContract,
    contract_filename,
    file_sha256,
    fsync_dir,
    fsync_file,
    library_versions,
    read_contract,
    write_contract,
)
from ml.governance.errors import ContractError, GovernanceError, ModelRefused, RegistryError
from ml.governance.names import model_folder
from ml.governance.promotion import (
    PromotionDecision,
    decision_filename,
    read_decision,
    write_decision,
)

_VERSION_RE = re.compile(r"^v(\d{4,})$")
_RELEASE_RE = re.compile(r"^(\d+)\.(\d+)")
log = logging.getLogger("hotcoin.registry")


@dataclass(frozen=True)
class ModelVersion:
    task: str
    interval: str
    version: int
    path: Path
    contract: RuntimeContract
    decision: PromotionDecision

    @property
    def model_path(self) -> Path:
        return self.path / self.contract.model_file

    @property
    def production(self) -> bool:
        return self.decision.verdict == "production"

    @property
    def name(self) -> str:
        return f"{self.task}_{self.interval}@v{self.version:04d}"


@dataclass(frozen=True)
class SkippedVersion:
    """A version folder that could not be read, and why (the error's one-line message)."""

    name: str  # e.g. hot_lgbm_1m@v0002
    reason: str


@dataclass(frozen=True)
class Listing:
    """Every version of one model: those that read back, oldest first, and those that did not."""

    versions: tuple[ModelVersion, ...]
    skipped: tuple[SkippedVersion, ...]


@dataclass(frozen=True)
class Registration:
    """What one `ModelRegistry.add` did: the version holding the model, the decision this call
    brought, and whether this call stored it. When it did not (the same model file was there),
    `version.decision` is the one on record and `decision` may differ from it: the gates may
    have changed since."""

    version: ModelVersion
    decision: PromotionDecision
    added: bool
    # What this call repaired in the version found (its model file missing, or bytes that no
    # longer hash to the contract, restored from this call's identical file; a decision made for
    # another model, replaced by this call's); None: nothing, the version was whole.
    repaired: str | None = None


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, task: str, interval: str) -> Path:
        return model_folder(self.root, task, interval)

    def register(
        self,
        *,
        model_path: Path,
        contract: RuntimeContract,
        decision: PromotionDecision,
        extra_files: Mapping[str, Path] | None = None,
    ) -> ModelVersion:
        """Store a model with its contract and decision as the next version. Registering the
        same model file again (same sha256) returns the existing version, its model file
        restored if it was missing or damaged (see `add`)."""
        return self.add(model_path=model_path, contract=contract, decision=decision, extra_files=extra_files).version

    def add(
        self,
        *,
        model_path: Path,
        contract: RuntimeContract,
        decision: PromotionDecision,
        extra_files: Mapping[str, Path] | None = None,
    ) -> Registration:
        """`register`, saying whether this call stored the model: a caller that reports what it
        registered must not call a version found under the same sha256 new (its decision, made
        under the gates of its day, is the one on record).

        A version found under the same sha256 is a duplicate only while it is whole: its model
        file present and hashing to the contract, its decision made for that model. If the file
        is not, this call's (which hashes to the contract: checked first) is copied back in its
        place, under the registry's lock, and the registration says what it repaired:
        re-registering is how a model refused for a missing or changed file is fixed, and the
        version keeps its number and its decision. A decision made for another model (copied
        there by hand, `check_decision`) is replaced by this call's, made for this model."""
        actual = file_sha256(model_path)
        if actual != contract.model_sha256:
            raise ContractError(
                f"model file {model_path} has sha256 {actual[:12]}… but its contract says "
                f"{contract.model_sha256[:12]}…; rebuild the contract from this file"
            )
        if decision.model_sha256 != contract.model_sha256 or (decision.task, decision.interval) != (
            contract.task,
            contract.interval,
        ):
            raise ContractError("the promotion decision was made for a different model than the contract describes")
        reserved = {contract.model_file, contract.filename, decision.filename}
        clash = sorted(reserved & set(extra_files or {}))
        if clash:
            raise ContractError(f"extra files {clash} would overwrite the model, contract or decision")
        folder = self._folder(contract.task, contract.interval)
        folder.mkdir(parents=True, exist_ok=True)
        fsync_dir(folder.parent)
        with _model_lock(folder):
            for existing in self.versions(contract.task, contract.interval):
                if existing.contract.model_sha256 == contract.model_sha256:
                    return self._repair(existing, model_path, decision)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
            try:
                _stage(staging, {contract.model_file: model_path, **(extra_files or {})}, contract, decision)
                version = self._claim(folder, staging)
                fsync_dir(folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return Registration(self._read(contract.task, contract.interval, version), decision, added=True)

    def _repair(self, existing: ModelVersion, model_path: Path, decision: PromotionDecision) -> Registration:
        """The registration of a model already on record as `existing`: nothing to do while the
        version is whole; otherwise its model file is restored from `model_path` (whose bytes
        hash to its contract) and a promotion decision made for another model is replaced by
        `decision`, made for this one. Called under the registry's lock."""
        problems: list[str] = []
        file_problem = model_file_problem(existing)
        if file_problem is not None:
            _restore_model(existing, model_path)
            problems.append(f"{file_problem}; restored from {model_path}")
        wrong_decision = decision_problem(existing)
        if wrong_decision is not None:
            write_decision(decision, existing.path)
            problems.append(f"{wrong_decision}; replaced by the decision made for it now ({decision.verdict})")
        if not problems:
            return Registration(existing, decision, added=False)
        repaired = "; ".join(problems)
        log.info("model registry: repaired %s: %s", existing.name, repaired)  # the caller says it (`repaired`)
        again = self._read(existing.task, existing.interval, existing.version)
        return Registration(again, decision, added=False, repaired=repaired)

    @staticmethod
    def _claim(folder: Path, staging: Path) -> int:
        while True:
            numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))]
            version = max(numbers, default=0) + 1
            try:
                os.rename(staging, folder / f"v{version:04d}")
            except OSError:
                if (folder / f"v{version:04d}").exists():
                    continue  # another registration took this number first
                raise
            return version

    def _read(self, task: str, interval: str, version: int) -> ModelVersion:
        path = self._folder(task, interval) / f"v{version:04d}"
        if not path.is_dir():
            raise RegistryError(f"{task}_{interval} has no version {version}; see `registry.versions()`")
        return ModelVersion(
            task=task,
            interval=interval,
            version=version,
            path=path,
            contract=read_contract(path / contract_filename(task, interval)),
            decision=read_decision(path / decision_filename(task, interval)),
        )

    def models(self) -> list[tuple[str, str]]:
        """(task, interval) of every model with at least one version."""
        out: list[tuple[str, str]] = []
        if not self.root.is_dir():
            return out
        for folder in sorted(self.root.iterdir()):
            task, _, interval = folder.name.rpartition("_")
            if folder.is_dir() and task and any(_VERSION_RE.match(p.name) for p in folder.iterdir()):
                out.append((task, interval))
        return out

    def scan(self, task: str, interval: str) -> Listing:
        """Every version, oldest first; an unreadable one is logged and listed as skipped."""
        folder = self._folder(task, interval)
        if not folder.is_dir():
            return Listing((), ())
        numbers = sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name)))
        versions: list[ModelVersion] = []
        skipped: list[SkippedVersion] = []
        for n in numbers:
            try:
                versions.append(self._read(task, interval, n))
            except (GovernanceError, OSError) as exc:
                bad = SkippedVersion(f"{task}_{interval}@v{n:04d}", str(exc))
                log.warning("model registry: skipping %s, it cannot be read: %s", bad.name, bad.reason)
                skipped.append(bad)
        return Listing(tuple(versions), tuple(skipped))

    def versions(self, task: str, interval: str) -> list[ModelVersion]:
        """The readable versions, oldest first (see `scan` for the skipped ones)."""
        return list(self.scan(task, interval).versions)

    def load(
        self,
        task: str,
        interval: str,
        *,
        feature_schema_hash: str,
        version: int | None = None,
        production_only: bool = False,
        features: FeatureSchema | None = None,
        listing_min_bars: int | None = None,
        regime_symbol: str = DEFAULT_REGIME_SYMBOL,
    ) -> ModelVersion:
        """The chosen version (default: the newest; with `production_only`, the newest production
        one), verified against the running feature code and its own file (see `verify`)."""
        if version is not None:
            chosen = self._read(task, interval, version)
        else:
            candidates = [v for v in self.versions(task, interval) if v.production or not production_only]
            if not candidates:
                kind = "production version" if production_only else "version"
                raise RegistryError(f"no {kind} of {task}_{interval} in {self.root}; train and register one first")
            chosen = candidates[-1]
        verify(
            chosen,
            feature_schema_hash=feature_schema_hash,
            features=features,
            listing_min_bars=listing_min_bars,
            regime_symbol=regime_symbol,
        )
        return chosen


@dataclass(frozen=True)
class FeatureSchema:
    """The feature names and dtypes, in column order, that the running code feeds a model."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]


def _verify_features(model: ModelVersion, features: FeatureSchema) -> None:
    contract = model.contract
    for what, theirs, ours in (
        ("feature_names", contract.feature_names, features.names),
        ("feature_dtypes", contract.feature_dtypes, features.dtypes),
    ):
        if tuple(theirs) != tuple(ours):
            raise ModelRefused(
                f"{model.name} refused: its contract's {what} are not the running feature code's, though its "
                f"feature_schema_hash says they are; the contract was edited or built wrongly, retrain the model",
                which=what,
                expected=",".join(ours),
                actual=",".join(theirs),
            )


def model_file_problem(model: ModelVersion) -> str | None:
    """What is wrong with `model`'s model file (missing, unreadable, or bytes that do not hash
    to its contract's model_sha256), or None when it is the file that was registered."""
    path = model.model_path
    if not path.is_file():
        return f"model file {path} is missing"
    try:
        actual = file_sha256(path)
    except OSError as exc:
        return f"model file {path} cannot be read ({exc})"
    expected = model.contract.model_sha256
    if actual != expected:
        return (
            f"model file {path} was changed or corrupted: its sha256 is {actual[:16]}…, the contract's "
            f"model_sha256 {expected[:16]}…"
        )
    return None


def _restore_model(model: ModelVersion, source: Path) -> None:
    """Put `source` (the registered model's bytes) back as `model`'s model file: copied beside
    it, flushed, checked against the contract (the source may have changed since it was
    hashed) and renamed over the damaged one, so a reader sees the old file or the whole new
    one, never half of it."""
    target = model.model_path
    tmp = target.with_name(f".{target.name}.restore")
    try:
        shutil.copyfile(source, tmp)
        fsync_file(tmp)
        actual = file_sha256(tmp)
        if actual != model.contract.model_sha256:
            raise ContractError(
                f"model file {source} changed while it was registered (sha256 {actual[:12]}…, contract "
                f"{model.contract.model_sha256[:12]}…); run the registration again"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(model.path)


@contextlib.contextmanager
def _model_lock(folder: Path) -> Iterator[None]:
    """Hold `<folder>/.lock` from the duplicate check to the rename. The rename alone keeps two
    registrations off one number, not off one model: two processes registering the same fetched
    job at once (two `hotcoin train` runs of it, or `train` beside `jobs fetch`) would both find
    no version with its sha256 and store it twice. `flock`: the kernel releases it when the
    process ends however it ends, so a killed registration never blocks the next one."""
    with (folder / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _stage(staging: Path, files: Mapping[str, Path], contract: RuntimeContract, decision: PromotionDecision) -> None:
    """Copy the files and write contract and decision into `staging`, all flushed to disk
    before the caller renames the folder into place."""
    for name, src in files.items():
        shutil.copyfile(src, staging / name)
        fsync_file(staging / name)
    write_contract(contract, staging)
    write_decision(decision, staging)
    fsync_dir(staging)


def check_libraries(
    model: ModelVersion, names: Sequence[str], installed: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The `names` libraries installed here (default: read from metadata) against the versions
    the contract records: `ModelRefused` on another major version (a model format, or numbers,
    that may no longer mean the same), one warning per other minor version; a library the
    contract does not record, or records as "absent", is not compared."""
    here = dict(installed) if installed is not None else library_versions(names)
    notes: list[str] = []
    for name in names:
        trained, now = model.contract.library_versions.get(name), here.get(name, "absent")
        if trained is None or trained == "absent" or trained == now:
            continue
        was, found = _RELEASE_RE.match(trained), _RELEASE_RE.match(now)
        if was is None or found is None:
            notes.append(f"{model.name} was trained with {name} {trained}, this is {name} {now}: versions not comparable")
        elif was.group(1) != found.group(1):
            raise ModelRefused(
                f"{model.name} refused: trained with {name} {trained}, this is {name} {now} (another major "
                f"version); install {name} {was.group(1)}.x or retrain the model",
                which="library_versions",
                expected=f"{name} {trained}",
                actual=f"{name} {now}",
            )
        elif was.group(2) != found.group(2):
            notes.append(f"{model.name} was trained with {name} {trained}, this is {name} {now} (another minor version)")
    return tuple(notes)


def check_interval(model: ModelVersion) -> None:
    """`ModelRefused` unless the contract and the decision were made for the interval the model
    was asked for (`model.interval`, its registry folder). Registration files a model under its
    contract's interval; a version copied by hand under another one would otherwise load and
    score, say, 5m bars with a model that learned 1m returns and windows."""
    for what, theirs in (("contract", model.contract.interval), ("promotion decision", model.decision.interval)):
        if theirs != model.interval:
            raise ModelRefused(
                f"{model.name} refused: its {what} is for {theirs} bars, this engine scores {model.interval} bars "
                f"(trading.signals.timeframe); registration never files it under {model.task}_{model.interval}, so it "
                f'was copied there by hand. Set trading.signals.timeframe = "{theirs}" to use it, or train one on '
                f"{model.interval} candles (`hotcoin train --task {model.task} --interval {model.interval}`)",
                which="interval",
                expected=theirs,
                actual=model.interval,
            )


def decision_problem(model: ModelVersion) -> str | None:
    """How `model`'s promotion decision disagrees with its contract (another model_sha256, task
    or interval), or None when it was made for this model."""
    contract, decision = model.contract, model.decision
    if decision.model_sha256 == contract.model_sha256 and (decision.task, decision.interval) == (
        contract.task,
        contract.interval,
    ):
        return None
    return (
        f"its promotion decision was made for {decision.task}_{decision.interval} model_sha256 "
        f"{decision.model_sha256[:16]}…, its contract is {contract.task}_{contract.interval} model_sha256 "
        f"{contract.model_sha256[:16]}…"
    )


def check_decision(model: ModelVersion) -> None:
    """`ModelRefused` unless the promotion decision beside the model was made for it: the same
    model_sha256, task and interval as its contract. The decision's verdict is what lets a
    score trade (production) or keeps it watching (research_only), and nothing else ties the
    file to the model: a production decision copied into a research_only version's folder
    made that model trade, though no gate ever passed it. Registration refuses such a pair
    (`add`), so a mismatch on disk was made by hand."""
    if decision_problem(model) is None:
        return
    contract, decision = model.contract, model.decision
    raise ModelRefused(
        f"{model.name} refused: its promotion decision ({decision.filename}) was made for another model "
        f"({decision.task}_{decision.interval}, model_sha256 {decision.model_sha256[:16]}…) than its contract "
        f"describes ({contract.task}_{contract.interval}, model_sha256 {contract.model_sha256[:16]}…), so its "
        f"verdict ({decision.verdict}) is not this model's; it was copied or edited by hand. Put back the "
        f"version's own decision file, or register the same model again (the `hotcoin train` or `hotcoin jobs "
        f"fetch` that made it), which replaces it with a decision made for this model",
        which="decision_model_sha256",
        expected=contract.model_sha256,
        actual=decision.model_sha256,
    )


def check_regime_symbol(model: ModelVersion, running: str) -> None:
    """`ModelRefused` unless the model's regime features (btc_ret_15, btc_ret_60, btc_vol_60)
    came from the pair the engine takes them from (`trading.signals.regime_symbol`). Like
    `listing_min_bars` it is a setting, not part of the schema hash: an engine on ETH/USDT would
    feed ETH's returns and volatility into columns a model learned as BTC's. A contract before
    version 4 records none and reads as BTC/USDT, which training was hard-wired to then."""
    trained = model.contract.regime_symbol
    if trained == running:
        return
    raise ModelRefused(
        f"{model.name} refused: its regime features (btc_*) were computed from {trained}, this engine takes them "
        f"from {running}, so it would score on a market regime it never saw; set trading.signals.regime_symbol = "
        f'"{trained}", or retrain it under regime_symbol = "{running}" (`hotcoin train --task {model.task}`)',
        which="regime_symbol",
        expected=trained,
        actual=running,
    )


def check_listing_min_bars(model: ModelVersion, running: int | None) -> None:
    """`ModelRefused` unless the model was trained on features computed with the `running`
    listing_min_bars, or never saw a listing young enough for the value to matter. It is not in
    the feature schema hash (the columns are the same whatever its value), but it decides from
    which bar a new listing's window features have values: a model trained at 15 on listings'
    first hour and run at 10 would score a listing's bars 10-14 on values it never saw. A model
    whose youngest training listing was `LISTING_ORDINARY_BARS` old (hot_lgbm's: its rows need 61
    closes) saw no since-listing value under any setting, and the signal stage asks it about no
    younger listing, so the value is moot for it: training under 15 or 30 gives the same rows. A
    contract that records neither the value nor the youngest listing, scored on since-listing
    features, cannot be told apart from one trained under another value, so it is refused."""
    trained = model.contract.listing_min_bars
    youngest = model.contract.youngest_listing_bars
    if trained == running or (youngest is not None and youngest >= LISTING_ORDINARY_BARS):
        return
    retrain = f"`hotcoin train --task {model.task}`"
    if trained is None:
        message = (
            f"{model.name} refused: its contract does not record the trading.signals.listing_min_bars its features "
            f"were computed with (it was registered before hotcoin recorded it), so whether it saw a new listing's "
            f"window features as this engine computes them (listing_min_bars = {running}) cannot be told; retrain "
            f"it ({retrain})"
        )
    elif running is None:
        message = (
            f"{model.name} refused: it was trained on features with since-listing windows (listing_min_bars = "
            f"{trained}), the features it would score have none; compute them with listing_min_bars = {trained}"
        )
    else:
        saw = "" if youngest is None else f" (it saw listings from {youngest} bars old)"
        message = (
            f"{model.name} refused: trained with trading.signals.listing_min_bars = {trained}{saw}, this engine runs "
            f"with {running}, so it would score a new listing's first hour on window features it never saw; set "
            f"trading.signals.listing_min_bars = {trained}, or retrain it under listing_min_bars = {running} ({retrain})"
        )
    raise ModelRefused(
        message,
        which="listing_min_bars",
        expected="none" if trained is None else str(trained),
        actual="none" if running is None else str(running),
    )


def verify(
    model: ModelVersion,
    *,
    feature_schema_hash: str,
    features: FeatureSchema | None = None,
    libraries: Sequence[str] = (),
    listing_min_bars: int | None = None,
    regime_symbol: str = DEFAULT_REGIME_SYMBOL,
) -> tuple[str, ...]:
    """Raise `ModelRefused` naming what differs; return the warnings (another minor version of
    one of `libraries`, see `check_libraries`) when everything that must match does.

    The interval asked for is `model.interval` (the registry folder it was read from): a model
    copied into another interval's folder would score bars of another length than it learned.
    With `features` (the running code's names and dtypes, the inputs of its schema hash), the
    contract's own names and dtypes must be those too: equal hashes alone would let a contract
    whose names were edited after training, hash untouched, through. `regime_symbol` is the pair
    the running features take btc_ret_15/60 and btc_vol_60 from (`trading.signals.regime_symbol`):
    the contract's must be the same. `listing_min_bars` is the one the running features are
    computed with (`trading.signals.listing_min_bars`; None: a feature set without since-listing
    windows): see `check_listing_min_bars`. The promotion decision must be the one made for this
    model (`check_decision`)."""
    check_interval(model)
    check_decision(model)
    if features is not None:
        _verify_features(model, features)
    expected = model.contract.feature_schema_hash
    if expected != feature_schema_hash:
        raise ModelRefused(
            f"{model.name} refused: feature_schema_hash differs (contract {expected}, running feature "
            f"code {feature_schema_hash}); the features changed since training, so retrain the model",
            which="feature_schema_hash",
            expected=expected,
            actual=feature_schema_hash,
        )
    check_regime_symbol(model, regime_symbol)
    check_listing_min_bars(model, listing_min_bars)
    if not model.model_path.is_file():
        raise ModelRefused(
            f"{model.name} refused: model file {model.model_path} is missing",
            which="model_sha256",
            expected=model.contract.model_sha256,
            actual="missing",
        )
    actual = file_sha256(model.model_path)
    if actual != model.contract.model_sha256:
        raise ModelRefused(
            f"{model.name} refused: model_sha256 differs (contract {model.contract.model_sha256[:16]}…, "
            f"file {actual[:16]}…); the model file was changed or corrupted, re-register it",
            which="model_sha256",
            expected=model.contract.model_sha256,
            actual=actual,
        )
    return check_libraries(model, libraries)
