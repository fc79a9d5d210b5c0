"""Risk limits as tables: daily loss pause, levels L1-L5, consecutive losses, daily reset."""

from __future__ import annotations

import pytest

from engine.config.sections.trading import RiskSettings
from engine.portfolio.risk import DAY_MS, RiskLevel, RiskManager

DAY0 = 18_733 * DAY_MS  # a UTC midnight


@pytest.mark.parametrize(
    ("equity", "level", "paused", "codes"),
    [
        pytest.param(100.0, RiskLevel.L1, False, [], id="flat"),
        pytest.param(98.6, RiskLevel.L1, False, [], id="small-loss"),
        pytest.param(98.5, RiskLevel.L2, False, ["risk_level"], id="L2-at-1.5pct"),
        pytest.param(97.0, RiskLevel.L3, False, ["risk_level"], id="L3-at-3pct-not-above-limit"),
        pytest.param(96.99, RiskLevel.L3, True, ["risk_level", "daily_loss_limit"], id="above-3pct-pauses"),
        pytest.param(95.0, RiskLevel.L4, True, ["risk_level", "daily_loss_limit"], id="L4"),
        pytest.param(92.0, RiskLevel.L5, True, ["risk_level", "daily_loss_limit"], id="L5-wants-blocked"),
        pytest.param(130.0, RiskLevel.L1, False, [], id="gain"),
    ],
)
def test_daily_drawdown_table(equity: float, level: RiskLevel, paused: bool, codes: list[str]) -> None:
    risk = RiskManager(RiskSettings())
    assert risk.update(DAY0 + 1000, 100.0) == []
    events = risk.update(DAY0 + 2000, equity)
    assert [e.code for e in events] == codes
    assert risk.level is level and risk.paused is paused
    assert risk.wants_blocked is (level is RiskLevel.L5)
    checks = {c["name"]: c["passed"] for c in risk.entry_checks(DAY0 + 2000)}
    assert checks["daily_loss"] is (not paused)
    assert checks["risk_level"] is level.allows_entries


def test_pause_holds_intraday_and_resets_at_utc_midnight() -> None:
    risk = RiskManager(RiskSettings())
    risk.update(DAY0 + 10 * 3_600_000, 100.0)  # start-of-day equity: the first mark of the day
    risk.update(DAY0 + 11 * 3_600_000, 96.0)
    assert risk.paused
    assert risk.update(DAY0 + 12 * 3_600_000, 100.0) == [] and risk.paused  # recovering does not unpause
    events = risk.update(DAY0 + DAY_MS, 100.0)  # 00:00 UTC next day
    assert [e.code for e in events] == ["daily_reset"]
    assert not risk.paused and risk.level is RiskLevel.L1 and risk.start_equity == 100.0


@pytest.mark.parametrize(
    ("pnls", "cooled"),
    [
        pytest.param([-1, -1], False, id="two-losses"),
        pytest.param([-1, -1, -1], True, id="three-losses"),
        pytest.param([-1, -1, 1, -1], False, id="a-win-resets"),
        pytest.param([-1, 0, -1, -1], False, id="breakeven-resets"),
    ],
)
def test_consecutive_loss_guard(pnls: list[float], cooled: bool) -> None:
    settings = RiskSettings()
    risk = RiskManager(settings)
    fired = []
    for i, pnl in enumerate(pnls):
        fired += risk.record_trade(pnl, DAY0 + i)
    assert bool(fired) is cooled
    end = DAY0 + len(pnls)
    blocked = not {c["name"]: c["passed"] for c in risk.entry_checks(end)}["loss_cooldown"]
    assert blocked is cooled
    if cooled:
        assert fired[0].code == "consecutive_losses"
        assert {c["name"]: c["passed"] for c in risk.entry_checks(end + settings.loss_cooldown_ms)}["loss_cooldown"]


def test_levels_must_rise() -> None:
    with pytest.raises(ValueError, match="rising"):
        RiskSettings(level_thresholds=(0.02, 0.01, 0.05, 0.08))
