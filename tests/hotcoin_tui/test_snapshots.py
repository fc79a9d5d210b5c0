"""Layout snapshots at 80x24 (one panel at a time) and 160x48 (every panel), on deterministic
fake data: fixed seed, virtual clock, no autoplay. Update deliberately with
`pytest tests/hotcoin_tui/test_snapshots.py --snapshot-update` and look at the SVGs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.pilot import Pilot

from engine.config.sections.tui import TuiSection
from engine.runtime.fake_client import FakeEngineClient
from hotcoin_tui.app import HotcoinApp
from tests.kit.waiting import eventually

SnapCompare = Callable[..., bool]
# Never "stale" in a snapshot, however slow the machine.
SETTINGS = TuiSection(stale_after_s=600, chart_refresh_s=0.2)


def make_app() -> tuple[HotcoinApp, FakeEngineClient]:
    fake = FakeEngineClient(seed=7, candidates=300, positions=6)
    return HotcoinApp(fake, SETTINGS), fake


def stepped(fake: FakeEngineClient, app: HotcoinApp, *keys: str, chart: bool = False) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Before the screenshot: one engine cycle applied, keys pressed, the chart drawn if shown."""

    async def run_before(pilot: Pilot[None]) -> None:
        snap = fake.step(3)
        await eventually(lambda: app.snapshot is not None and app.snapshot.seq == snap.seq)
        if chart:
            await eventually(lambda: app.main.chart.draws > 0)
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_main_80x24(snap_compare: SnapCompare) -> None:
    app, fake = make_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=stepped(fake, app))


def test_positions_80x24(snap_compare: SnapCompare) -> None:
    app, fake = make_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=stepped(fake, app, "o"))


def test_close_all_dialog_80x24(snap_compare: SnapCompare) -> None:
    app, fake = make_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=stepped(fake, app, "ctrl+x"))


def test_main_160x48(snap_compare: SnapCompare) -> None:
    app, fake = make_app()
    assert snap_compare(app, terminal_size=(160, 48), run_before=stepped(fake, app, chart=True))
