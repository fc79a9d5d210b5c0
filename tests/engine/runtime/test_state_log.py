"""A state change reaches `hotcoin run`'s log with its reasons. It was only journaled: the owner
watching the log over SSH was never told that entries had stopped, or why."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.kit.engine import pump_rig
from tests.kit.waiting import eventually


async def test_a_state_change_is_logged_with_its_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with pump_rig(tmp_path / "journal.sqlite") as rig:
        engine = rig.engine
        run = asyncio.create_task(engine.run())
        try:
            await eventually(lambda: engine.core is not None)
        finally:
            engine.stop()
            await run
        now = engine._now + 1000
        with caplog.at_level(logging.INFO, logger="hotcoin.engine"):
            monkeypatch.setattr(engine.feed, "data_age_s", lambda now_ms: 400.0)
            await engine.cycle.step_state(now)
            monkeypatch.setattr(engine.feed, "data_age_s", lambda now_ms: 1.0)
            for i in range(1, 7):
                await engine.cycle.step_state(now + i * 1000)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("engine ")]
    assert said[0] == ("WARNING", "engine tradeable -> blocked: data_stale: market data stale (400 vs 300)")
    assert said[1:] == [("INFO", "engine blocked -> tradeable: healthy again")]
