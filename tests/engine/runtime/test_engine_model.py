"""The model a loader hands the engine sits in the signal path in the mode governance gave it,
and shows in status and the journal; a shadow model never changes a decision."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.journal.reader import JournalReader
from tests.kit.engine import pump_rig
from tests.kit.models import Load, loaded
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
