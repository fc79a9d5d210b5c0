"""The model a loader hands the engine sits in the signal path in the mode governance gave it,
and shows in status and the journal; a shadow model never changes a decision."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import HotcoinConfig
from engine.journal.reader import JournalReader
from engine.ops.notify import Severity, notification_for
from engine.runtime.session import RunOptions, open_session
from tests.kit.engine import pump_rig, quiet_config
from tests.kit.models import MODEL, Load, loaded, register_unloadable
from tests.kit.waiting import eventually


async def _fills(tmp_path: Path, load: Load | None) -> tuple[list[str], list[str], str | None]:
    path = tmp_path / f"{load.mode if load else 'none'}.sqlite"
    async with pump_rig(path, model=load) as rig:
        task = asyncio.create_task(rig.engine.run())
        await eventually(lambda: rig.engine.stats.cycles > 500, timeout=60)
        label = rig.engine.hub.latest.status.model_version if rig.engine.hub.latest else None
        rig.engine.stop()
        await asyncio.wait_for(task, 10)
    with JournalReader(path) as reader:
        fills = [f"{e.symbol} {e.payload['side']} {e.payload['quantity']}" for e in reader.events(kinds=["fill"])]
        models = [str(e.payload.get("model")) for e in reader.events(kinds=["signal_snapshot", "model_shadow"])]
    return fills, models, label


async def test_shadow_model_watches_and_never_decides(tmp_path: Path) -> None:
    plain, _, none_label = await _fills(tmp_path, None)
    shadow = loaded("shadow")
    watched, models, label = await _fills(tmp_path, shadow)
    assert plain, "the scripted pump should have been traded"
    assert watched == plain
    assert none_label is None
    assert label == "hot_lgbm_1m@v0007#deadbeef (shadow)"
    assert set(models) == {"hot_lgbm_1m@v0007#deadbeef"}


async def test_production_model_decides(tmp_path: Path) -> None:
    production = loaded("production")
    fills, _, label = await _fills(tmp_path, production)
    assert fills == []  # a score of 0 fails the ml_score rule on every entry
    assert label == "hot_lgbm_1m@v0007#deadbeef (production)"


async def test_a_refused_model_is_said_in_the_engine_started_message(tmp_path: Path) -> None:
    """A tampered model left the engine on its rules alone and only the log said so: the owner's
    "Engine started" message read as any other start. `run_start` now journals whether the
    model failed and its warnings, and the message says them, as a warning."""
    refused = Load(None, f"REFUSED {MODEL} refused: model_sha256 differs; the engine runs on its rules alone", MODEL, "off", failed=True)
    path = tmp_path / "j.sqlite"
    async with pump_rig(path, model=refused) as rig:
        task = asyncio.create_task(rig.engine.run())
        await eventually(lambda: rig.engine.stats.cycles > 2, timeout=60)
        rig.engine.stop()
        await asyncio.wait_for(task, 10)
    with JournalReader(path) as reader:
        [start] = list(reader.events(kinds=["run_start"]))
    assert (start.payload["model_failed"], start.payload["model_warnings"]) == (True, [])
    note = notification_for("run_start", start.payload)
    assert note is not None
    assert note.severity is Severity.WARNING
    assert note.text == f"run test-run (SIM)\nmodel: {refused.status}"


async def model_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, loader: Callable[[HotcoinConfig], Any], **settings: Any
) -> list[logging.LogRecord]:
    """What a demo session opened with `loader` (and `settings`) logs about its model."""
    config = quiet_config(**{"journal.path": str(tmp_path / "j.sqlite"), "paths.data_dir": str(tmp_path / "data"), **settings})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000, model_loader=loader)
    with caplog.at_level(logging.INFO, logger="hotcoin.session"):
        async with open_session(config, options):
            pass
    return [r for r in caplog.records if r.getMessage().startswith("model: ")]


@pytest.mark.parametrize(
    ("load", "levels"),
    [
        pytest.param(Load(None, "no hot_lgbm_1m model in x; the engine runs on its rules alone", None, "off"), ["INFO"], id="none"),
        pytest.param(
            Load(None, f"REFUSED {MODEL} refused: model_sha256 differs; rules alone", MODEL, "off", failed=True),
            ["WARNING"],
            id="refused",
        ),
        pytest.param(
            Load(None, "model registry x is unreadable; rules alone", None, "off", failed=True), ["WARNING"], id="unreadable"
        ),
        pytest.param(
            Load(loaded("production").scorer, f"{MODEL} in production", MODEL, "production", warnings=("above every score",)),
            ["INFO", "WARNING"],
            id="warned",
        ),
    ],
)
async def test_a_model_that_could_not_be_loaded_is_a_warning_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, load: Load, levels: list[str]
) -> None:
    """A refused or unreadable model leaves `hotcoin run` on rules alone: that is a warning, not
    an info line among the start-up chatter; so is any warning about the model installed."""
    said = [(r.levelname, r.getMessage()) for r in await model_lines(tmp_path, caplog, lambda _c: load)]
    assert said == [(lvl, f"model: {msg}") for lvl, msg in zip(levels, [load.status, *load.warnings], strict=True)]


async def test_a_model_trained_under_another_listing_min_bars_is_refused_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`hotcoin run`'s own loader on a registry whose model was trained with listing_min_bars 15,
    in an engine configured with 10: refused, said as a warning with both values and the fixes."""
    from ml.runtime import load_scorer

    register_unloadable(tmp_path / "models", tmp_path, listing_min_bars=15)
    settings = {"ml.registry_dir": str(tmp_path / "models"), "trading.signals.listing_min_bars": 10}
    (said,) = await model_lines(tmp_path, caplog, load_scorer, **settings)
    assert said.levelname == "WARNING"
    assert said.getMessage().startswith(
        "model: REFUSED hot_lgbm_1m@v0001 refused: trained with trading.signals.listing_min_bars = 15, this engine runs "
        "with 10, so it would score a new listing's first hour on window features it never saw; set "
        "trading.signals.listing_min_bars = 15, or retrain it under listing_min_bars = 10"
    )


async def test_a_configured_registry_dir_that_does_not_exist_is_a_warning_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mistyped `ml.registry_dir` was said as "no model" at info among the start-up chatter,
    the production model in the folder meant never loaded."""
    from ml.runtime import load_scorer

    (said,) = await model_lines(tmp_path, caplog, load_scorer, **{"ml.registry_dir": str(tmp_path / "modles")})
    assert said.levelname == "WARNING"
    assert said.getMessage().startswith(f"model: model registry {tmp_path / 'modles'} (ml.registry_dir) does not exist")
