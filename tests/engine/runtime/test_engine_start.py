"""A stop, a SHUTDOWN command or the run's duration ends the engine's start too: the warm-up
and the wait for the market's first batch (a half-open ticker stream never delivers one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from engine.domain import TickerBatch
from engine.journal.reader import JournalReader
from engine.runtime.client import Command
from engine.runtime.feed import SimFeed
from tests.kit.engine import pump_rig
from tests.kit.waiting import eventually


class SilentFeed(SimFeed):
    """Warms up, then never delivers a batch: the ticker stream of a half-open socket."""

    async def next_batch(self) -> TickerBatch:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class HungWarmupFeed(SimFeed):
    """A warm-up that does not end."""

    async def warmup(self, step_ms: int) -> AsyncIterator[TickerBatch]:
        await asyncio.Event().wait()
        for past in ():
            yield past


def journaled(path: Path) -> list[str]:
    with JournalReader(path) as reader:
        return [e.kind for e in reader.events()]


async def test_stop_ends_the_wait_for_the_first_batch_and_journals_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with pump_rig(path, feed_type=SilentFeed) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.first_batch_wait_s() is not None, timeout=30)
        engine.stop()  # what SIGTERM and SIGINT do (`run_headless`)
        await asyncio.wait_for(task, 5)
        assert engine.core is None
        assert engine.first_batch_wait_s() is None
        await rig.journal.flush()
    # No run began: no `run_start`, and no `run_stop` without one.
    assert journaled(path) == []


async def test_the_duration_ends_the_wait_for_the_first_batch(tmp_path: Path) -> None:
    async with pump_rig(tmp_path / "j.sqlite", feed_type=SilentFeed) as rig:
        await asyncio.wait_for(rig.engine.run(duration_s=0.5), 30)
        assert rig.engine.core is None


async def test_a_shutdown_command_ends_the_wait_for_the_first_batch(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with pump_rig(path, feed_type=SilentFeed) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await eventually(lambda: engine.first_batch_wait_s() is not None, timeout=30)
        result = await asyncio.wait_for(engine.command(Command.SHUTDOWN, "test"), 5)
        assert result.accepted
        await asyncio.wait_for(task, 5)
        await rig.journal.flush()
    assert journaled(path) == []


async def test_stop_ends_a_warm_up_that_does_not_end(tmp_path: Path) -> None:
    async with pump_rig(tmp_path / "j.sqlite", feed_type=HungWarmupFeed) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        await asyncio.sleep(0.2)
        assert engine.first_batch_wait_s() is None  # warming up is not waiting on the market
        engine.stop()
        await asyncio.wait_for(task, 5)


async def test_commands_before_the_first_batch_still_run_after_run_start(tmp_path: Path) -> None:
    """Only SHUTDOWN is answered before the first batch; a pause waits for the first cycle
    and is journaled after `run_start`, at the market's time, as before."""
    path = tmp_path / "j.sqlite"
    async with pump_rig(path) as rig:
        engine = rig.engine
        task = asyncio.create_task(engine.run())
        assert (await asyncio.wait_for(engine.command(Command.PAUSE, "test"), 30)).accepted
        await eventually(lambda: engine.stats.cycles >= 2, timeout=30)
        await engine.command(Command.SHUTDOWN, "test")
        await asyncio.wait_for(task, 10)
        await rig.journal.flush()
    kinds = journaled(path)
    assert kinds.index("run_start") < kinds.index("command")
    assert kinds[-1] == "run_stop"
