"""Risk limits as tables: daily loss pause, levels L1-L5, consecutive losses, daily reset."""

from __future__ import annotations

import pytest

from engine.config.sections.trading import RiskSettings
from engine.portfolio.risk import DAY_MS, RiskDay, RiskLevel, RiskManager

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
    assert [e.code for e in risk.update(DAY0 + 1000, 100.0)] == ["day_start"]  # journaled, for a restart
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


def test_the_loss_cooldown_says_its_end_in_utc_and_keeps_the_number() -> None:
    """The detail is what the owner's alert and the events panel show: it said "until
    1618621860000 (epoch ms)". The end reads in UTC with the cool-down's length; the payload
    keeps `until_ms` for a restart's `RiskDay`."""
    risk = RiskManager(RiskSettings())
    now = 1_618_618_260_000  # 2021-04-17 00:11:00 UTC
    fired = [e for pnl in (-1, -1, -1) for e in risk.record_trade(pnl, now)]
    assert fired[0].detail == "3 losing trades in a row; no new entries until 2021-04-17 01:11:00 UTC (in 1h00)"
    assert fired[0].payload()["until_ms"] == 1_618_621_860_000
    day = RiskDay()
    day.see_event(now, fired[0].payload())
    assert day.cooldown_until_ms == 1_618_621_860_000


@pytest.mark.parametrize(
    "levels",
    [(0.02, 0.01, 0.05, 0.08), (0.01, 0.01, 0.01, 0.01), (0.015, 0.03, 0.03, 0.08), (0.0, 0.03, 0.05, 0.08)],
    ids=["falling", "all-equal", "two-equal", "zero"],
)
def test_levels_must_be_positive_and_strictly_rising(levels: tuple[float, float, float, float]) -> None:
    """Equal levels used to pass a check whose message says "rising": [0.01] * 4 went from L1
    straight to L5 (blocked) at a 1 % loss."""
    with pytest.raises(ValueError, match=r"must be positive and strictly rising \(L2 < L3 < L4 < L5\), got .*; give each level"):
        RiskSettings(level_thresholds=levels)


def _bad_day() -> tuple[RiskManager, RiskDay]:
    """A manager through a day with a 10 % drawdown (L5, loss limit) and three losing trades,
    and the `RiskDay` folded from what it journaled (closes before their risk events)."""
    risk, day = RiskManager(RiskSettings()), RiskDay()
    for ev in risk.update(DAY0 + 3_600_000, 100.0) + risk.update(DAY0 + 2 * 3_600_000, 90.0):
        day.see_event(DAY0 + 2 * 3_600_000, ev.payload())
    for k in range(3):
        day.see_close(-1.0)
        for ev in risk.record_trade(-1.0, DAY0 + (3 + k) * 3_600_000):
            day.see_event(DAY0 + (3 + k) * 3_600_000, ev.payload())
    return risk, day


def test_a_restart_the_same_day_keeps_the_days_limits() -> None:
    """A crash used to lift the loss limit and L5 for the rest of the day: the new manager
    re-marked its start-of-day equity at the already reduced equity."""
    before, day = _bad_day()
    after = RiskManager(RiskSettings())
    now = DAY0 + 5 * 3_600_000 + 1_800_000  # inside the losing streak's hour of cool-down
    after.restore(day, now)
    assert after.update(now, 90.0) == []  # no new day_start: the day is the one restored
    assert (after.start_equity, after.level, after.paused) == (100.0, RiskLevel.L5, True)
    assert after.cooldown_until_ms == before.cooldown_until_ms > now
    assert after.entry_checks(now) == before.entry_checks(now)
    assert day.l5_at_ms == DAY0 + 2 * 3_600_000


def test_a_restart_the_next_day_starts_a_new_day_and_keeps_the_streak() -> None:
    before, day = _bad_day()
    after = RiskManager(RiskSettings())
    now = DAY0 + DAY_MS + 60_000
    after.restore(day, now)
    assert [e.code for e in after.update(now, 90.0)] == ["day_start"]
    assert (after.start_equity, after.level, after.paused) == (90.0, RiskLevel.L1, False)
    assert after.cooldown_until_ms == before.cooldown_until_ms  # a cool-down runs across days


def test_the_daily_loss_check_reports_the_drawdown_that_tripped_it_and_since_when() -> None:
    """Prices that came back do not lift the pause, so the refusal must not read as if a 0.5 %
    drawdown had hit a 3 % limit: it reports the drawdown that tripped it, and since when;
    after a restart too (the `daily_loss_limit` event carries both)."""
    risk, day = RiskManager(RiskSettings()), RiskDay()
    for t, equity in ((DAY0 + 10 * 3_600_000, 100.0), (DAY0 + 11 * 3_600_000 + 5 * 60_000, 96.0)):
        for ev in risk.update(t, equity):
            day.see_event(t, ev.payload())
    now = DAY0 + 12 * 3_600_000
    risk.update(now, 99.5)
    expected = {
        "name": "daily_loss", "passed": False, "value": 0.04, "threshold": 0.03,
        "detail": "entries paused since 11:05 UTC until 00:00 UTC",
    }
    (check,) = [c for c in risk.entry_checks(now) if c["name"] == "daily_loss"]
    assert check == expected
    restored = RiskManager(RiskSettings())
    restored.restore(day, now)
    restored.update(now, 99.5)
    assert [c for c in restored.entry_checks(now) if c["name"] == "daily_loss"] == [expected]


HOUR_MS = 3_600_000


def _day_marked(capital: float | None, start: float, lost: float) -> RiskDay:
    """The `RiskDay` a run under `capital` journaled: its day marked at `start`, then `lost` traded away."""
    risk, day = RiskManager(RiskSettings(), capital), RiskDay()
    for t, equity in ((DAY0 + HOUR_MS, start), (DAY0 + 2 * HOUR_MS, start - lost)):
        for ev in risk.update(t, equity):
            day.see_event(t, ev.payload())
    return day


@pytest.mark.parametrize(("before", "after"), [(300.0, 100.0), (100.0, 300.0)], ids=["growth-to-starter", "starter-to-growth"])
def test_a_restart_under_another_capital_moves_the_days_start_not_its_pnl(before: float, after: float) -> None:
    """A switch of the capital profile mid-day is a deposit or withdrawal: cash is rebuilt from
    the new capital, and the start of day used to stay at the old one, so 300 -> 100 read as a
    200 loss (L5, blocked) and 100 -> 300 as a 200 gain with the loss limit 3 % of 100."""
    day = _day_marked(before, before, 1.0)
    assert day.capital == before  # the day_start journaled the capital it was marked under
    now = DAY0 + 3 * HOUR_MS
    risk = RiskManager(RiskSettings(), after)
    (moved,) = risk.restore(day, now)
    assert moved.payload() == {
        "code": "capital_change", "level": "L1", "value": after, "threshold": None, "capital": after, "tripped_drawdown": 0.0,
        "detail": f"capital {before:.2f} -> {after:.2f} (trading.capital changed): start-of-day equity "
                  f"{before:.2f} -> {after:.2f}, a deposit or withdrawal, not trading PnL",
    }  # fmt: skip
    equity = after - 1.0  # cash rebuilt from the new capital, less what trading lost
    assert risk.update(now, equity) == []
    assert (risk.start_equity - equity, risk.level, risk.paused) == (1.0, RiskLevel.L1, False)
    # The loss limit is a share of the new capital: 3 % of it trips it.
    assert [e.code for e in risk.update(now + 1, after * 0.969)] == ["risk_level", "daily_loss_limit"]
    # Folded back, the change is not made twice by a later restart under the same capital.
    day.see_event(now, moved.payload())
    again = RiskManager(RiskSettings(), after)
    assert again.restore(day, now) == [] and again.start_equity == after


def test_a_deposit_re_judges_the_level_and_the_pause_the_day_reached() -> None:
    """Re-check: a 7.93 loss paused entries at 7.93 % of 100 (L4); after a restart under 300 it
    is 2.64 % of the new start, yet entries stayed paused until midnight, quoting 7.79 %."""
    day = _day_marked(100.0, 100.0, 7.93)
    assert (day.level, day.paused) == (RiskLevel.L4, True)
    now = DAY0 + 3 * HOUR_MS
    risk = RiskManager(RiskSettings(), 300.0)
    (moved,) = risk.restore(day, now)
    assert (risk.level, risk.paused, moved.level, moved.payload()["tripped_drawdown"]) == (RiskLevel.L2, False, "L2", 0.0)
    assert moved.detail.endswith(
        "; level L4 -> L2, entries no longer paused (the loss that tripped the limit is 2.64% of the new start, under 3.00%)"
    )
    assert risk.update(now, 292.07) == []
    assert all(c["passed"] for c in risk.entry_checks(now))
    day.see_event(now, moved.payload())  # a later restart under 300 keeps the re-judged state
    again = RiskManager(RiskSettings(), 300.0)
    assert again.restore(day, now) == [] and (again.level, again.paused) == (RiskLevel.L2, False)


def test_a_withdrawal_makes_the_days_loss_a_larger_share() -> None:
    day = _day_marked(300.0, 300.0, 7.0)  # 2.33 %: L2, not paused
    now = DAY0 + 3 * HOUR_MS
    risk = RiskManager(RiskSettings(), 100.0)
    (moved,) = risk.restore(day, now)
    assert (risk.level, risk.paused, moved.payload()["tripped_drawdown"]) == (RiskLevel.L3, False, 0.0)
    assert [e.code for e in risk.update(now, 93.0)] == ["risk_level", "daily_loss_limit"]  # 7 % of 100
    assert (risk.level, risk.paused) == (RiskLevel.L4, True)


def test_a_day_journaled_without_its_capital_is_taken_as_marked_under_todays() -> None:
    """An older hotcoin journaled no capital: nothing is known to have changed, nothing moves."""
    risk = RiskManager(RiskSettings(), 100.0)
    assert risk.restore(_day_marked(None, 300.0, 1.0), DAY0 + 3 * HOUR_MS) == []
    assert risk.start_equity == 300.0


def test_a_restart_under_another_capital_the_next_day_starts_that_day_at_its_equity() -> None:
    risk = RiskManager(RiskSettings(), 100.0)
    now = DAY0 + DAY_MS
    assert risk.restore(_day_marked(300.0, 300.0, 1.0), now) == []
    (start,) = risk.update(now, 99.0)
    assert (start.code, start.capital, risk.start_equity) == ("day_start", 100.0, 99.0)


def test_an_update_like_the_last_returns_at_once_as_the_whole_one_would() -> None:
    """`update` returns at once when nothing it reads moved since the last call: a walk of
    equities (repeats, a flat run, drops through every level and the loss limit, new days, a
    restore in between) on a manager beside one whose shortcut is always missed answers the
    same events and leaves the same state."""
    import random

    rng = random.Random(3)
    fast, whole = RiskManager(RiskSettings(), 100.0), RiskManager(RiskSettings(), 100.0)
    equity, now = 100.0, DAY0
    for i in range(3000):
        now += 60_000 * rng.choice([1, 1, 1, 60, 600])
        if rng.random() < 0.3:
            equity = rng.choice([equity, 100.0, 98.5, 97.0, 96.99, 95.0, 92.0, 130.0, equity * 0.999])
        if i % 500 == 499:  # a restart's restore in between moves what the shortcut reads
            day = RiskDay(now // DAY_MS, 99.0, RiskLevel.L2, False, 0, 0.0)
            assert fast.restore(day, now) == whole.restore(day, now)
        whole._settled = None
        assert fast.update(now, equity) == whole.update(now, equity)
        state = ("day", "start_equity", "drawdown", "level", "paused", "paused_at_ms", "tripped_drawdown")
        assert [getattr(fast, a) for a in state] == [getattr(whole, a) for a in state]
