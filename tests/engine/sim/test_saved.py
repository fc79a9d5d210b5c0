"""A generated market saved and read back goes on exactly as the one that never stopped; a
file it cannot trust (other settings, other code, damaged) is refused with the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config.sections.sim import SimSection
from engine.sim import saved
from engine.sim.market import SimMarket
from engine.sim.saved import NotResumable, load_market, save_market, saved_market_path, saved_time
from engine.sim.scenario import HOUR_MS, MINUTE_MS
from tests.engine.sim.test_market import T0, assert_same_batch

# Busy: listings and moves fall inside the hours stepped, so the plan's state is resumed too;
# 5 s steps keep two hours quick.
SETTINGS = SimSection(
    symbols=40, seed=5, step_ms=5_000, history_minutes=60, pumps_per_day=200, dumps_per_day=50, listings_per_day=24
)


def test_a_resumed_market_steps_as_the_one_that_never_stopped(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite.market"
    stopped = T0 + 17 * MINUTE_MS + 5_000
    uninterrupted = SimMarket(SETTINGS, T0)
    uninterrupted.advance_to(stopped)
    save_market(uninterrupted, path)
    listed = len(uninterrupted.symbols)
    assert saved_time(path, SETTINGS) == stopped
    resumed = load_market(path, SETTINGS)
    for later in (stopped + 40_000, stopped + 2 * HOUR_MS + 15_000):
        uninterrupted.advance_to(later)
        resumed.advance_to(later)
        assert_same_batch(resumed.tickers(), uninterrupted.tickers())
    assert len(resumed.symbols) > listed  # a coin listed after the save, in both
    assert resumed.ground_truth == uninterrupted.ground_truth
    for symbol in (resumed.symbols[0], resumed.symbols[-1]):
        assert resumed.klines(symbol, "1m") == uninterrupted.klines(symbol, "1m")
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_market_for_other_settings_is_not_resumed(tmp_path: Path) -> None:
    path = tmp_path / "m"
    save_market(SimMarket(SETTINGS, T0), path)
    other = SETTINGS.model_copy(update={"symbols": 41})
    with pytest.raises(NotResumable, match=r"the sim settings changed \(sim.symbols=40 then, 41 now\)"):
        load_market(path, other)
    # The pace and accounts of `hotcoin sim-exchange` do not shape the path.
    assert saved_time(path, SETTINGS.model_copy(update={"speed": 60.0, "start_balance_usdt": 5.0})) == T0


def test_a_market_saved_by_other_code_is_not_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m"
    save_market(SimMarket(SETTINGS, T0), path)
    monkeypatch.setattr(saved, "_fingerprint", lambda: "0123456789abcdef")
    with pytest.raises(NotResumable, match="another version of hotcoin saved it"):
        saved_time(path, SETTINGS)


def test_a_file_that_is_not_a_saved_market_says_so(tmp_path: Path) -> None:
    """Audit: JSON lines exported over the market file read as "another version of hotcoin
    saved it": its first line is a JSON object, but no saved market's header."""
    path = tmp_path / "journal.sqlite.market"
    path.write_bytes(b'{"seq":1,"ts_ms":0,"kind":"run_start","payload":{}}\n{"seq":2}\n')
    for read in (saved_time, load_market):
        with pytest.raises(NotResumable, match=r"^it is not a saved market"):
            read(path, SETTINGS)


def _torn(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _headless(data: bytes) -> bytes:
    return data[data.index(b"\n") + 1 :]


@pytest.mark.parametrize(
    ("damage", "why"),
    [(_torn, "its data does not load"), (_headless, "it is not a saved market")],
    ids=["torn", "no-header"],
)
def test_a_damaged_file_is_not_resumed(tmp_path: Path, damage: Callable[[bytes], bytes], why: str) -> None:
    path = tmp_path / "m"
    save_market(SimMarket(SETTINGS, T0), path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(NotResumable, match=why):
        load_market(path, SETTINGS)


def test_the_market_is_kept_beside_its_journal() -> None:
    assert saved_market_path(Path("/data/journal.sqlite")) == Path("/data/journal.sqlite.market")
