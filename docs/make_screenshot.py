"""Regenerate docs/screenshot.svg: the console at 120x36 on the fake engine (fixed seed,
virtual clock), after a few engine cycles with the chart drawn.

    .venv/bin/python docs/make_screenshot.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.config.sections.tui import TuiSection
from engine.runtime.fake_client import FakeEngineClient
from hotcoin_tui.app import HotcoinApp

OUT = Path(__file__).resolve().parent / "screenshot.svg"


async def main() -> None:
    fake = FakeEngineClient(seed=7, candidates=300, positions=6)
    app = HotcoinApp(fake, TuiSection(stale_after_s=600, chart_refresh_s=0.2))
    async with app.run_test(size=(120, 36)) as pilot:
        snap = fake.step(12)
        while app.snapshot is None or app.snapshot.seq != snap.seq or app.main.chart.draws == 0:
            await pilot.pause(0.05)
        await pilot.pause()
        OUT.write_text(app.export_screenshot(title="hotcoin tui --fake"))
    await fake.stop()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
