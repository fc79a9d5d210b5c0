"""`load_scorer`: the registry's current model enters the engine only when its contract matches
the running feature code and its file, in the mode its promotion decision allows; a
research_only model only watches (same trades with it as without it)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config import HotcoinConfig
from engine.config.sections.ml import MlSection, PromotionGates
from engine.config.sections.paths import PathsSection
from engine.config.sections.trading import (
    CapitalProfile,
    CapitalSettings,
    SignalSettings,
    TradingSection,
)
from engine.domain import Candidate, Candle, HeatComponents
from engine.execution.paper import FillModel, PaperBroker
from engine.execution.router import OrderRouter
from engine.journal.events import make_trace_id
from engine.signals.features import FEATURE_DTYPES, FEATURE_NAMES, feature_schema_hash
from engine.signals.scorer import Scorer
from engine.trading import TradingCore
from ml.governance.contract import TrainingWindow, build_contract
from ml.governance.errors import ContractError, ModelRefused
from ml.governance.promotion import Evaluation, decide
from ml.governance.registry import ModelRegistry, ModelVersion
from ml.lgbm import LgbmParams, TrainRequest, TrainSettings, train_and_register
from ml.runtime import ScorerLoad, load_scorer
from ml.scorer import LgbmScorer
from tests.engine.signals import market_kit as mk
from tests.kit.events import RecordingSink
from tests.ml.synth import MINUTE, synth_frames, write_history

SMALL = TrainSettings(folds=2, stride=1, params=LgbmParams(rounds=15, min_data_in_leaf=50, num_threads=1))
LENIENT = PromotionGates(min_oos_lift=0.01, min_worst_fold_lift=0.01, max_fold_cv=100.0, min_oos_samples=1, min_folds=2)
STRICT = PromotionGates(min_oos_lift=50.0)
REPO = Path(__file__).parents[2]


def config_for(registry: Path, *, gates: PromotionGates = LENIENT, **signals: Any) -> HotcoinConfig:
    """The engine's config over `registry`, judging models by `gates` (by default those the
    production models in `registries` were registered under)."""
    return HotcoinConfig(
        ml=MlSection(registry_dir=registry, gates=gates),
        trading=TradingSection(
            signals=SignalSettings(**signals),
            capital=CapitalSettings(profile="t", profiles={"t": CapitalProfile(capital=1000.0, max_concurrent=5)}),
        ),
    )


def train_into(
    registry: Path, history: Path, gates: PromotionGates, seed: int, work: Path, signals: SignalSettings | None = None
) -> None:
    config = HotcoinConfig(ml=MlSection(registry_dir=registry, gates=gates), trading=TradingSection(signals=signals or SignalSettings()))
    settings = dataclasses.replace(SMALL, params=dataclasses.replace(SMALL.params, seed=seed))
    req = TrainRequest(history, work, "1m", settings=settings, write_dataset=False)
    train_and_register(config, ModelRegistry(registry), req, now_ms=1_700_000_000_000 + seed)


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """production: one production model; research: one research_only; both: v1 production, v2 research_only;
    listing10: one production model trained with `trading.signals.listing_min_bars = 10`; regime: one
    trained with `trading.signals.regime_symbol` S003/USDT."""
    root = tmp_path_factory.mktemp("ml")
    history = write_history(root / "hist", synth_frames(n_symbols=10, n_bars=1500, seed=5))
    out = {name: root / name for name in ("production", "research", "both", "listing10", "regime")}
    train_into(out["production"], history, LENIENT, 0, root / "w0")
    train_into(out["research"], history, STRICT, 1, root / "w1")
    train_into(out["both"], history, LENIENT, 0, root / "w2")
    train_into(out["both"], history, STRICT, 1, root / "w3")
    train_into(out["listing10"], history, LENIENT, 0, root / "w4", SignalSettings(listing_min_bars=10))
    train_into(out["regime"], history, LENIENT, 0, root / "w5", SignalSettings(regime_symbol="S003/USDT"))
    return out


def copy_registry(src: Path, tmp: Path) -> Path:
    dst = tmp / "models"
    shutil.copytree(src, dst)
    return dst


def test_no_model_runs_rules_only_and_says_so(tmp_path: Path) -> None:
    fresh = HotcoinConfig(paths=PathsSection(data_dir=tmp_path / "data"))  # <data_dir>/models not made yet
    (tmp_path / "empty").mkdir()
    for config in (fresh, config_for(tmp_path / "empty")):
        load = load_scorer(config)
        assert load.scorer is None and load.mode == "off" and load.model is None
        assert not load.failed  # no model is how a fresh install starts, not a failure
        assert "no hot_lgbm_1m model" in load.status and "rules alone" in load.status
        assert "hotcoin train --task hot_lgbm" in load.status


def test_a_registry_without_the_model_s_folder_loads_as_one_with_it_empty(tmp_path: Path) -> None:
    """`load_scorer` finds no folder for the model without the registry (`_registered`): the
    same load as where the registry reads an empty folder, and the same refusal of a name that
    cannot be a folder's."""
    (tmp_path / "bare").mkdir()
    (tmp_path / "empty" / "hot_lgbm_1m").mkdir(parents=True)
    bare, empty = load_scorer(config_for(tmp_path / "bare")), load_scorer(config_for(tmp_path / "empty"))
    assert dataclasses.replace(bare, status=bare.status.replace("bare", "empty")) == empty
    for interval in ("1x", "../1m"):
        refused = load_scorer(config_for(tmp_path / "bare"), interval=interval)
        with pytest.raises(ContractError) as scanned:
            ModelRegistry(tmp_path / "bare").scan("hot_lgbm", interval)
        assert refused == ScorerLoad(None, f"model registry {tmp_path / 'bare'} is unreadable ({scanned.value}); the engine runs on its rules alone", failed=True)


def test_no_model_loads_without_importing_the_registry(tmp_path: Path) -> None:
    """A fresh install's start (and a backtest's) reads no registry: its modules stay unimported."""
    code = (
        "import sys; from pathlib import Path; from engine.config import HotcoinConfig;"
        "from engine.config.sections.paths import PathsSection; from ml.runtime import load_scorer;"
        "load = load_scorer(HotcoinConfig(paths=PathsSection(data_dir=Path(sys.argv[1]))));"
        "print(load.status.startswith('no hot_lgbm_1m model'), sorted(m for m in sys.modules if m.startswith('ml.governance.')))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.split() == ["True", "['ml.governance.errors',", "'ml.governance.names']"]


def test_a_configured_registry_dir_that_does_not_exist_is_a_failed_load(tmp_path: Path) -> None:
    """`ml.registry_dir` mistyped read as a fresh install: "no model", an info line in the
    engine's log, while the production model sat in the folder meant."""
    load = load_scorer(config_for(tmp_path / "modles"))
    assert load.scorer is None and load.mode == "off" and load.failed  # a warning in `hotcoin run`'s log
    assert load.status.startswith(f"model registry {tmp_path / 'modles'} (ml.registry_dir) does not exist; the engine runs")
    assert "fix ml.registry_dir" in load.status


def test_the_interval_follows_the_signal_timeframe(registries: dict[str, Path]) -> None:
    load = load_scorer(config_for(registries["production"], timeframe="5m"))
    assert load.scorer is None and "no hot_lgbm_5m model" in load.status


def test_production_model_loads_in_production_mode(registries: dict[str, Path]) -> None:
    load = load_scorer(config_for(registries["production"]))
    assert load.scorer is not None and load.mode == "production" == load.scorer.mode
    assert load.model == load.scorer.version and load.model.startswith("hot_lgbm_1m@v0001#")
    assert load.model_sha256 is not None and load.model.endswith(load.model_sha256[:8])
    assert "in production" in load.status and not load.failed and load.warnings == ()
    window = load_version(registries["production"]).contract.training_window
    assert load.training_window == (window.start_ms, window.end_ms)
    x = np.random.default_rng(0).normal(0, 0.01, (7, len(FEATURE_NAMES)))
    x[:, FEATURE_NAMES.index("heat")] = np.nan
    many = load.scorer.score_many(x)
    assert many.shape == (7,) and ((many > 0) & (many < 1)).all()
    assert load.scorer.score(x[3]) == pytest.approx(many[3])
    assert load.scorer.score_many(np.empty((0, len(FEATURE_NAMES)))).shape == (0,)
    with pytest.raises(ValueError, match="features"):
        load.scorer.score_many(np.zeros((2, 3)))


def test_research_only_model_runs_in_shadow_with_its_reasons(registries: dict[str, Path]) -> None:
    load = load_scorer(config_for(registries["research"]))
    assert load.scorer is not None and load.mode == "shadow" == load.scorer.mode
    assert "in shadow (research_only: median out-of-sample fold lift" in load.status and "never trading" in load.status


def test_newest_production_version_is_current(registries: dict[str, Path]) -> None:
    load = load_scorer(config_for(registries["both"]))
    assert load.mode == "production" and load.model is not None and load.model.startswith("hot_lgbm_1m@v0001#")


def test_tightened_gates_demote_a_production_model_to_shadow(registries: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    load = load_scorer(config_for(registries["production"], gates=STRICT))
    assert load.scorer is not None and load.mode == "shadow" == load.scorer.mode
    assert load.model is not None and load.model.startswith("hot_lgbm_1m@v0001#")
    assert "in shadow (research_only: registered as production, but under the current [ml.gates] median out-of-sample fold lift" in load.status
    assert "misses >= 50" in load.status
    assert "hot_lgbm_1m@v0001 was registered as production but misses the current [ml.gates]" in caplog.text
    loosened = PromotionGates(min_oos_lift=0.001, max_fold_cv=1000.0, min_oos_samples=1, min_folds=2)
    assert load_scorer(config_for(registries["research"], gates=loosened)).mode == "shadow"  # demotion only, never promotion


def load_version(root: Path) -> ModelVersion:
    return ModelRegistry(root).versions("hot_lgbm", "1m")[0]


CONTRACT = ("hot_lgbm_1m", "v0001", "runtime_contract_hot_lgbm_1m.json")


def test_the_default_threshold_is_the_one_calibrated_at_training(registries: dict[str, Path]) -> None:
    calibration = load_version(registries["production"]).contract.score_calibration
    assert calibration is not None and calibration.top_fraction == 0.1
    load = load_scorer(config_for(registries["production"]))
    assert f"gates entries at ml_min_score {calibration.min_score:.4g} (auto: calibrated at training" in load.status
    assert load.scorer is not None and load.scorer.calibrated_min_score == calibration.min_score
    assert load.warnings == ()


def test_a_threshold_above_every_out_of_sample_score_is_a_warning(registries: dict[str, Path]) -> None:
    calibration = load_version(registries["production"]).contract.score_calibration
    assert calibration is not None
    load = load_scorer(config_for(registries["production"], ml_min_score=1.0))
    assert "gates entries at ml_min_score 1 (trading.signals.ml_min_score)" in load.status
    (warning,) = load.warnings
    assert warning.startswith("ml_min_score 1 is above every out-of-sample score of hot_lgbm_1m@v0001 (highest ")
    assert f'it will skip every entry. Use ml_min_score = "auto" ({calibration.min_score:.4g})' in warning
    assert load_scorer(config_for(registries["production"], ml_min_score=calibration.oos_max)).warnings == ()
    assert load_scorer(config_for(registries["research"], ml_min_score=1.0)).warnings == ()  # shadow: no threshold


def test_an_older_model_without_a_calibrated_threshold_falls_back_with_a_warning(
    registries: dict[str, Path], tmp_path: Path
) -> None:
    root = copy_registry(registries["production"], tmp_path)
    path = root.joinpath(*CONTRACT)
    # A contract without a calibration reads as one registered before calibration did (a
    # version-1 contract itself also lacks listing_min_bars now, and is refused for that).
    _edit_json(path, score_calibration=None)
    load = load_scorer(config_for(root))
    assert load.scorer is not None and load.mode == "production" and load.scorer.calibrated_min_score is None
    assert "gates entries at ml_min_score 0.55 (auto, but the model records no calibrated threshold)" in load.status
    (warning,) = load.warnings
    assert warning.startswith("hot_lgbm_1m@v0001 records no calibrated entry threshold")
    assert "Retrain it (`hotcoin train --task hot_lgbm`) or set trading.signals.ml_min_score" in warning
    assert load_scorer(config_for(root, ml_min_score=0.2)).warnings == ()  # a number of one's own: no guess to warn of


@pytest.mark.parametrize(
    ("library", "trained", "refused"),
    [
        pytest.param("lightgbm", "1.0.0", True, id="lightgbm-major"),
        pytest.param("numpy", "1.26.4", True, id="numpy-major"),
        pytest.param("lightgbm", "{major}.99.0", False, id="lightgbm-minor"),
    ],
)
def test_library_versions_are_checked_at_load(
    registries: dict[str, Path], tmp_path: Path, library: str, trained: str, refused: bool
) -> None:
    import importlib.metadata

    root = copy_registry(registries["production"], tmp_path)
    path = root.joinpath(*CONTRACT)
    installed = importlib.metadata.version(library)
    versions = json.loads(path.read_text())["library_versions"]
    trained = trained.format(major=installed.split(".")[0])
    _edit_json(path, library_versions={**versions, library: trained})
    load = load_scorer(config_for(root))
    if refused:
        assert load.scorer is None and load.failed
        assert load.status.startswith(
            f"REFUSED hot_lgbm_1m@v0001 refused: trained with {library} {trained}, this is {library} {installed} "
            "(another major version)"
        )
    else:
        assert load.scorer is not None and load.mode == "production"
        assert load.warnings == (
            f"hot_lgbm_1m@v0001 was trained with {library} {trained}, this is {library} {installed} (another minor version)",
        )


def test_the_scorer_itself_refuses_another_major_library_version(registries: dict[str, Path], tmp_path: Path) -> None:
    """`LgbmScorer.load` defends itself as it does for hashes: a caller that skipped `verify`
    still cannot run a model trained with another major LightGBM."""
    root = copy_registry(registries["production"], tmp_path)
    path = root.joinpath(*CONTRACT)
    _edit_json(path, library_versions={**json.loads(path.read_text())["library_versions"], "lightgbm": "1.0.0"})
    with pytest.raises(ModelRefused, match="another major version") as refused:
        LgbmScorer.load(load_version(root), "production")
    assert refused.value.which == "library_versions"


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_contract_from_other_feature_code_is_refused(registries: dict[str, Path], tmp_path: Path) -> None:
    root = copy_registry(registries["production"], tmp_path)
    _edit_json(root / "hot_lgbm_1m" / "v0001" / "runtime_contract_hot_lgbm_1m.json", feature_schema_hash="ab" * 32)
    load = load_scorer(config_for(root))
    assert load.scorer is None and load.mode == "off"
    assert load.status.startswith("REFUSED hot_lgbm_1m@v0001 refused: feature_schema_hash differs")
    assert "retrain" in load.status and "rules alone" in load.status
    assert load.failed  # said as a warning in `hotcoin run`'s log and in red by `hotcoin backtest`
    assert load.model is not None and load.model.startswith("hot_lgbm_1m@v0001#")


def test_training_records_listing_min_bars_and_an_engine_running_with_it_loads(registries: dict[str, Path]) -> None:
    assert load_version(registries["production"]).contract.listing_min_bars == 15  # the config's default
    assert load_version(registries["listing10"]).contract.listing_min_bars == 10
    load = load_scorer(config_for(registries["listing10"], listing_min_bars=10))
    assert load.scorer is not None and load.mode == "production" and not load.failed


@pytest.mark.parametrize(("registry", "running"), [("production", 10), ("listing10", 15)])
def test_a_model_that_never_saw_a_listing_s_first_hour_loads_under_any_listing_min_bars(
    registries: dict[str, Path], registry: str, running: int
) -> None:
    """Its rows need the baseline's 61 closes, so it never saw a since-listing value and is put
    to no listing younger than 61 bars: the value it was trained under changes nothing it sees.
    (It was refused for it, yet trained under 15 or 30 its training rows are the same.)"""
    assert load_version(registries[registry]).contract.youngest_listing_bars == 61
    load = load_scorer(config_for(registries[registry], listing_min_bars=running))
    assert load.scorer is not None and load.mode == "production" and not load.failed
    assert load.scorer.youngest_listing_bars == 61


@pytest.mark.parametrize(("registry", "trained", "running"), [("production", 15, 10), ("listing10", 10, 15)])
def test_a_model_that_saw_a_listing_s_first_hour_under_another_listing_min_bars_is_refused(
    registries: dict[str, Path], tmp_path: Path, registry: str, trained: int, running: int
) -> None:
    """The feature schema is the same whatever `listing_min_bars` is, so the schema hash cannot
    tell; a new listing's window features from one value on are not, and a model trained on a
    listing's first hour would score it on values it never saw."""
    root = copy_registry(registries[registry], tmp_path)
    _edit_json(root.joinpath(*CONTRACT), youngest_listing_bars=5)  # as if its rows held a listing 5 bars old
    load = load_scorer(config_for(root, listing_min_bars=running))
    assert load.scorer is None and load.mode == "off" and load.failed  # a warning in `hotcoin run`, red in backtest
    assert load.status == (
        f"REFUSED hot_lgbm_1m@v0001 refused: trained with trading.signals.listing_min_bars = {trained} (it saw listings "
        f"from 5 bars old), this engine runs with {running}, so it would score a new listing's first hour on window features it never saw; set "
        f"trading.signals.listing_min_bars = {trained}, or retrain it under listing_min_bars = {running} (`hotcoin "
        "train --task hot_lgbm`); the engine runs on its rules alone"
    )
    assert load.model is not None and load.model.startswith("hot_lgbm_1m@v0001#")


def test_a_contract_from_before_listing_min_bars_was_recorded_is_refused(registries: dict[str, Path], tmp_path: Path) -> None:
    """Trained on today's features (FEATURE_VERSION 2, since-listing windows) by a hotcoin that
    did not yet record the value: which value it was cannot be told, so it is refused with the
    reason, not guessed. (An older model still is refused by its feature schema hash first.)"""
    root = copy_registry(registries["production"], tmp_path)
    path = root.joinpath(*CONTRACT)
    data = json.loads(path.read_text())
    del data["listing_min_bars"], data["regime_symbol"], data["youngest_listing_bars"]
    path.write_text(json.dumps({**data, "contract_version": 2}))
    load = load_scorer(config_for(root))
    assert load.scorer is None and load.failed
    assert load.status.startswith(
        "REFUSED hot_lgbm_1m@v0001 refused: its contract does not record the trading.signals.listing_min_bars its "
        "features were computed with (it was registered before hotcoin recorded it)"
    )
    assert "(listing_min_bars = 15) cannot be told; retrain it (`hotcoin train --task hot_lgbm`)" in load.status
    _edit_json(path, feature_schema_hash="ab" * 32)  # a model of the features before since-listing windows
    assert load_scorer(config_for(root)).status.startswith("REFUSED hot_lgbm_1m@v0001 refused: feature_schema_hash differs")


def test_training_records_the_regime_symbol_and_an_engine_on_another_refuses_the_model(registries: dict[str, Path]) -> None:
    """Training took the regime columns (btc_*) from BTC/USDT whatever the engine was set to, and
    an engine on another regime pair fed that pair into them without a word."""
    assert load_version(registries["production"]).contract.regime_symbol == "BTC/USDT"  # the config's default
    assert load_version(registries["regime"]).contract.regime_symbol == "S003/USDT"
    assert load_scorer(config_for(registries["regime"], regime_symbol="S003/USDT")).mode == "production"
    load = load_scorer(config_for(registries["production"], regime_symbol="ETH/USDT"))
    assert load.scorer is None and load.mode == "off" and load.failed
    assert load.status == (
        "REFUSED hot_lgbm_1m@v0001 refused: its regime features (btc_*) were computed from BTC/USDT, this engine takes "
        "them from ETH/USDT, so it would score on a market regime it never saw; set trading.signals.regime_symbol = "
        '"BTC/USDT", or retrain it under regime_symbol = "ETH/USDT" (`hotcoin train --task hot_lgbm`); the engine '
        "runs on its rules alone"
    )


def test_a_1m_model_copied_into_the_5m_folder_is_refused(registries: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "models"
    target = root / "hot_lgbm_5m" / "v0001"
    shutil.copytree(registries["production"] / "hot_lgbm_1m" / "v0001", target)
    for path in list(target.iterdir()):
        path.rename(target / path.name.replace("_1m.json", "_5m.json"))
    load = load_scorer(config_for(root, timeframe="5m"))
    assert load.scorer is None and load.mode == "off" and load.failed
    assert load.status.startswith(
        "REFUSED hot_lgbm_5m@v0001 refused: its contract is for 1m bars, this engine scores 5m bars "
        "(trading.signals.timeframe)"
    )


def test_a_newest_version_without_its_model_file_leaves_the_newest_intact_one_in_place(
    registries: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """v0001 production, v0002 research_only, the production model's file gone: the newest
    version that is whole runs (in shadow, as its decision allows), and the status names the
    one passed over, where the missing file used to take the model out of the engine."""
    root = copy_registry(registries["both"], tmp_path)
    (root / "hot_lgbm_1m" / "v0001" / "model.txt").unlink()
    load = load_scorer(config_for(root))
    assert load.scorer is not None and load.mode == "shadow" and not load.failed
    assert load.model is not None and load.model.startswith("hot_lgbm_1m@v0002#")
    assert (
        f"; skipped unreadable hot_lgbm_1m@v0001 (model file {root}/hot_lgbm_1m/v0001/model.txt is missing; register the "
        "same model again to restore it (the `hotcoin train` or `hotcoin jobs fetch` that made it))"
    ) in load.status
    assert load.skipped == (load.status.partition("; skipped unreadable ")[2],)
    assert "skipping hot_lgbm_1m@v0001" in caplog.text
    (root / "hot_lgbm_1m" / "v0002" / "model.txt").unlink()
    none = load_scorer(config_for(root))
    assert none.scorer is None and none.failed and "no hot_lgbm_1m model" in none.status


def test_a_version_whose_model_file_was_changed_is_passed_over_as_a_missing_one_is(
    registries: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupted production file refused the whole model (rules alone) where a deleted one
    let the older whole version run: both mean the registered bytes are gone, so both are
    skipped with a warning naming the version, its hashes and the fix."""
    root = copy_registry(registries["both"], tmp_path)
    model = root / "hot_lgbm_1m" / "v0001" / "model.txt"
    model.write_bytes(model.read_bytes() + b"\n")  # one byte more: still a loadable model, not the registered one
    load = load_scorer(config_for(root))
    assert load.scorer is not None and load.mode == "shadow" and not load.failed
    assert load.model is not None and load.model.startswith("hot_lgbm_1m@v0002#")
    contract = load_version(root).contract.model_sha256
    (skipped,) = load.skipped
    assert skipped.startswith(f"hot_lgbm_1m@v0001 (model file {model} was changed or corrupted: its sha256 is ")
    assert f"the contract's model_sha256 {contract[:16]}…; register the same model again to restore it" in skipped
    assert f"; skipped unreadable {skipped}" in load.status
    assert "skipping hot_lgbm_1m@v0001: model file" in caplog.text
    (root / "hot_lgbm_1m" / "v0002" / "model.txt").write_bytes(b"rot")
    none = load_scorer(config_for(root))
    assert none.scorer is None and none.failed and "no hot_lgbm_1m model" in none.status and len(none.skipped) == 2


def test_a_production_decision_copied_beside_a_research_only_model_is_refused(registries: dict[str, Path], tmp_path: Path) -> None:
    """v0001 production, v0002 research_only: v0001's decision file copied into v0002 made
    v0002, which missed the gates, trade in production."""
    root = copy_registry(registries["both"], tmp_path)
    decision = "promotion_decision_hot_lgbm_1m.json"
    shutil.copy(root / "hot_lgbm_1m" / "v0001" / decision, root / "hot_lgbm_1m" / "v0002" / decision)
    load = load_scorer(config_for(root))
    assert load.scorer is None and load.mode == "off" and load.failed
    assert load.status.startswith("REFUSED hot_lgbm_1m@v0002 refused: its promotion decision (promotion_decision_hot_lgbm_1m.json) was made for another model")
    first, second = (v.contract.model_sha256 for v in ModelRegistry(root).versions("hot_lgbm", "1m"))
    assert f"model_sha256 {first[:16]}…) than its contract describes (hot_lgbm_1m, model_sha256 {second[:16]}…)" in load.status


def test_a_model_of_another_format_is_refused(registries: dict[str, Path], tmp_path: Path) -> None:
    root = copy_registry(registries["production"], tmp_path)
    _edit_json(root / "hot_lgbm_1m" / "v0001" / "runtime_contract_hot_lgbm_1m.json", model_format="torch_state_dict")
    load = load_scorer(config_for(root))
    assert load.scorer is None and "is not 'lightgbm_text'" in load.status


def test_a_malformed_contract_is_reported_not_raised(registries: dict[str, Path], tmp_path: Path) -> None:
    root = copy_registry(registries["production"], tmp_path)
    (root / "hot_lgbm_1m" / "v0001" / "runtime_contract_hot_lgbm_1m.json").write_text("{not json")
    load = load_scorer(config_for(root))
    assert load.scorer is None and "unreadable" in load.status and "not valid JSON" in load.status
    assert load.failed


def test_an_unreadable_newer_version_leaves_production_in_place(registries: dict[str, Path], tmp_path: Path) -> None:
    root = copy_registry(registries["both"], tmp_path)
    (root / "hot_lgbm_1m" / "v0002" / "runtime_contract_hot_lgbm_1m.json").write_text("")
    load = load_scorer(config_for(root))
    assert load.mode == "production" and load.model is not None and load.model.startswith("hot_lgbm_1m@v0001#")
    assert "skipped unreadable hot_lgbm_1m@v0002 (runtime contract" in load.status


def _register_booster(root: Path, names: list[str], work: Path) -> None:
    """A LightGBM model trained on columns `names`, registered as production with a contract
    naming FEATURE_NAMES (as any caller of `ModelRegistry.register` may do)."""
    import lightgbm as lgb

    x = np.random.default_rng(0).normal(size=(400, len(names)))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, (x[:, 0] > 0).astype(float), feature_name=names),
        5,
    )
    model = work / "model.txt"
    booster.save_model(str(model))
    contract = dataclasses.replace(
        build_contract(
            task="hot_lgbm",
            interval="1m",
            model_path=model,
            feature_names=FEATURE_NAMES,
            feature_dtypes=FEATURE_DTYPES,
            feature_schema_hash=feature_schema_hash(),
            training_window=TrainingWindow(0, 1),
            label_definition="top decile",
            created_ms=1,
            listing_min_bars=SignalSettings().listing_min_bars,
        ),
        model_format="lightgbm_text",
    )
    decision = decide(
        task="hot_lgbm", interval="1m", evaluation=Evaluation((2.0, 2.0), 500, "b"), gates=LENIENT,
        model_sha256=contract.model_sha256, decided_ms=1,
    )
    ModelRegistry(root).register(model_path=model, contract=contract, decision=decision)


def test_a_model_trained_on_another_column_order_is_refused(tmp_path: Path) -> None:
    _register_booster(tmp_path / "models", list(reversed(FEATURE_NAMES)), tmp_path)
    load = load_scorer(config_for(tmp_path / "models"))
    assert load.scorer is None and load.mode == "off"
    assert load.status.startswith("REFUSED hot_lgbm_1m@v0001 refused: the model's own feature order differs")
    assert f"column 0: model {FEATURE_NAMES[-1]!r}, engine {FEATURE_NAMES[0]!r}" in load.status
    assert "rules alone" in load.status


def test_a_contract_whose_dtypes_were_edited_is_refused(registries: dict[str, Path], tmp_path: Path) -> None:
    root = copy_registry(registries["production"], tmp_path)
    path = root / "hot_lgbm_1m" / "v0001" / "runtime_contract_hot_lgbm_1m.json"
    _edit_json(path, feature_dtypes=["float32"] * len(FEATURE_NAMES))  # the schema hash left as it was
    load = load_scorer(config_for(root))
    assert load.scorer is None and "its contract's feature_dtypes are not the running feature code's" in load.status


# ----------------------------------------------------------------------------- in the trading core
MARKET = synth_frames(n_symbols=12, n_bars=200, seed=11, burst_rate=1 / 30)
WARM = 70
SIGNALS: dict[str, Any] = {"min_ret_5": 0.0, "min_vol_ratio_20": 0.8, "cooldown_ms": 5 * MINUTE}


REAL_PAIRS = ["BTC/USDT", "DOGE/USDT", "ETH/USDT", "XRP/USDT", "ADA/USDT", "NKN/USDT", "CTSI/USDT", "WRX/USDT", "FTM/USDT", "CHZ/USDT"]
REAL_START = 1_618_570_800_000  # 2021-04-16 11:00 UTC: DOGE's +44% hour is inside


def real_market(data: Path) -> dict[str, pd.DataFrame]:
    """200 real minutes of ten pairs, on their common grid (no gaps in this window)."""
    out = {}
    for pair in REAL_PAIRS:
        df = pd.read_parquet(data / f"{pair.replace('/', '_')}-1m.parquet")
        df = df[(df.timestamp_ms >= REAL_START) & (df.timestamp_ms < REAL_START + 200 * MINUTE)]
        assert len(df) == 200, f"{pair} has gaps in the test window"
        out[pair] = df.reset_index(drop=True)
    return out


async def trade(
    config: HotcoinConfig, scorer: Scorer | None, frames: dict[str, pd.DataFrame]
) -> tuple[list[dict[str, Any]], RecordingSink]:
    """Drive the core bar by bar over the candles, every symbol a hot candidate; return every
    order intent it produced and the journal."""
    names = [n for n in frames if n != "BTC/USDT"]
    sink = RecordingSink()
    core = TradingCore(config.trading, mk.markets(names), sink, scorer=scorer)
    broker = PaperBroker(FillModel.from_settings(config.trading.execution))
    router = OrderRouter(broker, sink)
    intents: list[dict[str, Any]] = []
    for t in range(len(frames["BTC/USDT"])):
        for name, df in frames.items():
            row = df.iloc[t]
            core.on_candle(
                Candle(name, "1m", int(row.timestamp_ms), row.open, row.high, row.low, row.close, row.volume)
            )
        if t < WARM:
            continue
        now = int(frames["BTC/USDT"].timestamp_ms.iloc[t]) + MINUTE + 1_000
        prices = {n: float(frames[n].close.iloc[t]) for n in names}
        batch = mk.book(prices, now)
        broker.update_book(batch)
        for update in await router.sync(now):
            core.on_order_update(update, now)
        candidates = [
            Candidate(
                trace_id=make_trace_id("ml", n, now), symbol=n, ts_ms=now, heat=85.0,
                components=HeatComponents(momentum=0.8), rank=i + 1, price=prices[n], quote_volume_24h=5e7,
            )
            for i, n in enumerate(names)
        ]
        step = core.step(batch, candidates, now)
        intents += [dataclasses.asdict(i) for i in step]
        for update in await router.send_all(step, now, core.causes):
            core.on_order_update(update, now)
    return intents, sink


def decisions(sink: RecordingSink) -> list[tuple[str | None, str, str]]:
    return [(e.symbol, e.payload["stage"], e.payload["decision"]) for e in sink.events if e.kind == "signal_snapshot"]


@pytest.mark.parametrize("market", ["generated", "real"])
async def test_shadow_model_never_changes_a_decision(
    registries: dict[str, Path], market: str, request: pytest.FixtureRequest
) -> None:
    """Same trades with and without a research_only model; its scores only go to model_shadow."""
    frames = MARKET if market == "generated" else real_market(request.getfixturevalue("shared_data"))
    config = config_for(registries["research"], **SIGNALS)
    load: ScorerLoad = load_scorer(config)
    assert load.scorer is not None and load.mode == "shadow"
    plain_intents, plain = await trade(config, None, frames)
    shadow_intents, shadow = await trade(config, load.scorer, frames)
    assert len(plain_intents) >= 4  # entries and exits happened: the comparison means something
    assert shadow_intents == plain_intents
    assert decisions(shadow) == decisions(plain)
    fills = [[e.payload for e in s.events if e.kind == "fill"] for s in (plain, shadow)]
    assert fills[0] == fills[1] and fills[0]
    shadows = [e for e in shadow.events if e.kind == "model_shadow"]
    entries = [e for e in shadow.events if e.kind == "signal_snapshot" and e.payload["stage"] == "entry"]
    assert len(shadows) == len(entries) > 0
    assert all(e.payload["model"] == load.model and 0 < e.payload["score"] < 1 for e in shadows)
    assert all(e.payload["ml_score"] is None and "ml_score" not in {c["name"] for c in e.payload["rules"]} for e in entries)
    assert not any(e.kind == "model_shadow" for e in plain.events)


async def test_a_production_model_under_the_default_threshold_trades(registries: dict[str, Path]) -> None:
    """The default ml_min_score ("auto") is the model's calibrated threshold: its entries pass on
    their score. A fixed 0.55 skipped every one, as this model's scores, probabilities of a
    top-10 % move, rarely reach it."""
    config = config_for(registries["production"], **SIGNALS)
    load = load_scorer(config)
    assert load.scorer is not None and load.mode == "production" and load.scorer.calibrated_min_score is not None
    intents, sink = await trade(config, load.scorer, MARKET)
    assert any(i["purpose"] == "entry" for i in intents), "no entry passed the calibrated threshold"
    rules = [r for e in sink.events if e.kind == "signal_snapshot" for r in e.payload["rules"] if r["name"] == "ml_score"]
    assert rules and {r["threshold"] for r in rules} == {load.scorer.calibrated_min_score}
    assert any(r["passed"] for r in rules) and not all(r["passed"] for r in rules)


async def test_production_model_score_enters_the_decision(registries: dict[str, Path]) -> None:
    """The contrast: a production model with an unreachable threshold blocks every entry."""
    config = config_for(registries["production"], ml_min_score=1.0, **SIGNALS)
    load = load_scorer(config)
    assert load.scorer is not None and load.mode == "production"
    intents, sink = await trade(config, load.scorer, MARKET)
    assert intents == []
    entries = [e.payload for e in sink.events if e.kind == "signal_snapshot" and e.payload["stage"] == "entry"]
    assert entries and all(p["model"] == load.model and p["ml_score"] is not None for p in entries)
    assert all(any(c["name"] == "ml_score" for c in p["rules"]) for p in entries)
    assert not any(e.kind == "model_shadow" for e in sink.events)
