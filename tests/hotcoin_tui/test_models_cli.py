"""`hotcoin models`: each registered version of the engine's model, its verdict and decision
figures, whether it verifies, and the one the engine would load now (by the engine's loader)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from hotcoin_tui.cli import app
from ml.governance.registry import ModelRegistry
from tests.kit.models import register_booster, register_unloadable


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """v0001: production on record but not a LightGBM model (refused); v0002: a real,
    loadable production model."""
    root = tmp_path / "models"
    (tmp_path / "w1").mkdir()
    register_unloadable(root, tmp_path / "w1")
    register_booster(root, tmp_path / "w2", feature="vol_ratio_20", cut=3.0, spread=3.0)
    return root


def _env(tmp_path: Path, registry: Path | None, **more: str) -> dict[str, str]:
    env = {"HOTCOIN_PATHS__DATA_DIR": str(tmp_path / "data"), "COLUMNS": "250", **more}
    if registry is not None:
        env["HOTCOIN_ML__REGISTRY_DIR"] = str(registry)
    return env


def _listing(tmp_path: Path, registry: Path | None, **more: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["models", "--json"], env=_env(tmp_path, registry, **more))
    return result.exit_code, orjson.loads(result.stdout)


def test_models_lists_every_version_and_the_one_the_engine_loads(tmp_path: Path, registry: Path) -> None:
    code, doc = _listing(tmp_path, registry)
    assert code == 0
    assert (doc["model"], doc["registry"], doc["registry_exists"]) == ("hot_lgbm_1m", str(registry), True)
    v1, v2 = doc["versions"]
    assert (v1["name"], v1["verdict"], v1["verifies"], v1["loaded"]) == ("hot_lgbm_1m@v0001", "production", False, False)
    assert v1["problem"].startswith("hot_lgbm_1m@v0001 refused: model format")
    assert (v2["name"], v2["verdict"], v2["verdict_now"], v2["verifies"], v2["loaded"]) == (
        "hot_lgbm_1m@v0002", "production", "production", True, True,
    )
    assert v2["problem"] is None and v2["path"] == str(registry / "hot_lgbm_1m" / "v0002")
    lift = {g["name"]: g for g in v2["gates"]}["oos_median_lift"]
    assert (lift["value"], lift["threshold"], lift["comparator"], lift["passed"]) == (2.0, 1.1, ">=", True)
    assert doc["engine"]["mode"] == "production" and doc["engine"]["model"].startswith("hot_lgbm_1m@v0002#")
    assert not doc["engine"]["failed"] and doc["other_models"] == []

    text = CliRunner().invoke(app, ["models"], env=_env(tmp_path, registry))
    assert text.exit_code == 0, text.output
    assert "v0001: hot_lgbm_1m@v0001 refused: model format" in text.output and "no (below)" in text.output
    assert "loads (production)" in text.output and "lift 2, worst 2, cv 0, samples 5,000, folds 3" in text.output
    assert "engine: hot_lgbm_1m@v0002#" in text.output


def test_models_says_what_today_s_gates_and_a_damaged_file_change(tmp_path: Path, registry: Path) -> None:
    code, doc = _listing(tmp_path, registry, HOTCOIN_ML__GATES__MIN_OOS_LIFT="50")
    assert code == 0 and doc["versions"][1]["verdict_now"] == "research_only" and doc["engine"]["mode"] == "shadow"
    model = registry / "hot_lgbm_1m" / "v0002" / "model.txt"
    model.write_bytes(model.read_bytes() + b"\n")
    (tmp_path / "models" / "hot_lgbm_1m" / "v0003").mkdir()  # a version folder without its files
    code, doc = _listing(tmp_path, registry)
    assert code == 0
    _, v2, v3 = doc["versions"]
    assert not v2["verifies"] and "model_sha256 differs" in v2["problem"] and not v2["loaded"]
    assert (v3["name"], v3["verdict"], v3["verifies"]) == ("hot_lgbm_1m@v0003", "unreadable", False)
    assert doc["engine"]["model"] is None and doc["engine"]["failed"]  # v0002 passed over, v0001 refused
    assert "hot_lgbm_1m@v0002 (model file" in doc["engine"]["status"].partition("; skipped unreadable ")[2]


def test_models_names_a_registry_that_is_not_there(tmp_path: Path) -> None:
    typo = tmp_path / "modles"
    code, doc = _listing(tmp_path, typo)
    assert code == 2 and doc["registry_exists"] is False and doc["versions"] == []
    assert doc["message"] == f"no model registry at {typo} (ml.registry_dir); fix ml.registry_dir, or remove it to use <data_dir>/models"
    assert doc["engine"]["failed"]
    text = CliRunner().invoke(app, ["models"], env=_env(tmp_path, typo))
    assert text.exit_code == 2 and f"hotcoin: no model registry at {typo} (ml.registry_dir)" in text.output
    fresh = CliRunner().invoke(app, ["models"], env=_env(tmp_path, None))
    assert fresh.exit_code == 0  # a fresh install: nothing trained yet is no fault
    assert f"no model registry at {tmp_path / 'data' / 'models'} (the default, <data_dir>/models); train one" in fresh.output


def test_models_of_an_empty_registry_and_of_other_tasks(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    text = CliRunner().invoke(app, ["models"], env=_env(tmp_path, root))
    assert text.exit_code == 0 and f"no hot_lgbm_1m versions in {root}" in text.output
    register_unloadable(root, tmp_path)
    code, doc = _listing(tmp_path, root, HOTCOIN_TRADING__SIGNALS__TIMEFRAME="5m")
    assert code == 0 and doc["model"] == "hot_lgbm_5m" and doc["versions"] == [] and doc["other_models"] == ["hot_lgbm_1m"]
    assert ModelRegistry(root).models() == [("hot_lgbm", "1m")]
