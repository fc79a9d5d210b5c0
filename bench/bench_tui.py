"""What one engine snapshot costs the console, and what one chart redraw costs.

Headless (`App.run_test`) on the fake engine with 500 candidates and 20 positions. For each of
N refreshes the fake advances one cycle (not timed), then:

- apply: `MainScreen.apply(snapshot)`, run by the `SnapshotArrived` handler: every panel
  diffs the snapshot against its rows and touches only changed cells (CPU ms, so other
  processes on a shared machine do not inflate it);
- apply+paint: CPU time of the process from the apply until the screen has been repainted
  (`pilot.pause()`), i.e. the event-loop time one refresh takes away from everything else.

Start: a fresh interpreter importing the app, starting it headless and painting the first
snapshot (wall ms, interpreter start included).

Chart: `KlineChart.draw()` (plotext build, ANSI to rich Text, widget update; CPU ms) at the
chart's on-screen size, for an ordinary and a micro-priced symbol; plus the bare plotext build.
Run at 160x48 (every panel on screen) and at 80x24 (one panel) with the pool capped at
500 rows (all) and at the default 200.

    .venv/bin/python -m bench.bench_tui [--refreshes 40]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time

from engine.config.sections.tui import TuiSection
from engine.runtime.fake_client import FakeEngineClient
from engine.runtime.snapshot import EngineSnapshot
from hotcoin_tui.app import HotcoinApp
from hotcoin_tui.widgets.kline_chart import render_chart


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):6.1f} ms  p95 {p95:6.1f} ms"


async def refreshes(size: tuple[int, int], rows: int, count: int) -> tuple[list[float], list[float]]:
    """The app receives each snapshot through its own worker and message, as in production;
    `MainScreen.apply` is wrapped to time the widget updates alone."""
    fake = FakeEngineClient(seed=11, candidates=500, positions=20)
    app = HotcoinApp(fake, TuiSection(candidate_rows=rows, stale_after_s=600, chart_refresh_s=60, refresh_hz=30))
    apply_ms: list[float] = []
    paint_ms: list[float] = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        main = app.main
        unwrapped = main.apply

        def timed_apply(snapshot: EngineSnapshot) -> None:
            t0 = time.process_time()
            unwrapped(snapshot)
            apply_ms.append((time.process_time() - t0) * 1000)

        main.apply = timed_apply  # type: ignore[method-assign]
        for _ in range(count + 3):
            snap = fake.step()
            cpu0 = time.process_time()
            while app.snapshot is None or app.snapshot.seq != snap.seq:  # noqa: ASYNC110 (a spin, not a wait)
                await asyncio.sleep(0)
            await pilot.pause()
            paint_ms.append((time.process_time() - cpu0) * 1000)
    await fake.stop()
    return apply_ms[3:], paint_ms[3:]  # the first refreshes add rows; measure the steady state


async def chart_draws(count: int) -> dict[str, list[float]]:
    fake = FakeEngineClient(seed=11, candidates=500, positions=20)
    app = HotcoinApp(fake, TuiSection(stale_after_s=600, chart_refresh_s=60))
    out: dict[str, list[float]] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        chart = app.main.chart
        snap = fake.step()
        normal = next(c for c in snap.candidates if c.price > 0.1)
        micro = next(c for c in snap.candidates if c.price < 1e-5)
        width, height = chart.content_size
        for label, row in (("chart draw, normal price", normal), ("chart draw, micro price", micro)):
            candles = await fake.candles(row.symbol, "1m", chart.wanted_candles)
            fills = await fake.fills(row.symbol)
            chart.select(row.symbol)
            chart._candles, chart._fills = candles, fills
            times = []
            for _ in range(count):
                t0 = time.process_time()
                chart.draw()
                times.append((time.process_time() - t0) * 1000)
                await pilot.pause()
            out[f"{label} {width}x{height}"] = times
            bare = []
            for _ in range(count):
                t0 = time.process_time()
                render_chart(candles, fills, width, height, row.symbol)
                bare.append((time.process_time() - t0) * 1000)
            out[f"{label}: chart render only (plotext, marks), {len(candles)} candles"] = bare
    await fake.stop()
    return out


FIRST_FRAME = """
import asyncio
from engine.runtime.fake_client import FakeEngineClient
from hotcoin_tui.app import HotcoinApp
async def main():
    fake = FakeEngineClient(candidates=300, positions=6)
    app = HotcoinApp(fake)
    async with app.run_test(size=(120, 36)) as pilot:
        while app.snapshots_applied == 0:
            await pilot.pause(0.005)
        await pilot.pause()
    await fake.stop()
asyncio.run(main())
"""


def first_frame_ms(runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU time of a fresh interpreter: imports, app start, first snapshot painted."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", FIRST_FRAME], check=True)
        wall.append((time.perf_counter() - t0) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return wall, cpu


async def main(count: int) -> None:
    wall, cpu = first_frame_ms(5)
    print(f"start to first frame (fresh process, headless 120x36): {summary(wall)} wall; {summary(cpu)} CPU")
    print(f"hotcoin tui: {count} refreshes per case, 500 candidates, 20 positions")
    for size, rows in (((160, 48), 500), ((160, 48), 200), ((80, 24), 500), ((80, 24), 200)):
        apply_ms, paint_ms = await refreshes(size, rows, count)
        where = f"{size[0]}x{size[1]} rows={rows}"
        print(f"{where:<20} apply       {summary(apply_ms)} (CPU)")
        print(f"{'':<20} apply+paint {summary(paint_ms)} (CPU)")
    for label, times in (await chart_draws(max(5, count // 2))).items():
        print(f"{label:<56} {summary(times)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refreshes", type=int, default=40)
    asyncio.run(main(parser.parse_args().refreshes))
