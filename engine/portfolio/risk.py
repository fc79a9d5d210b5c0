"""Portfolio risk limits and the risk level L1-L5.

Per UTC day (the day rolls over at 00:00 UTC, read from `now_ms`, never the wall clock):
- drawdown = (start-of-day equity - equity now) / start-of-day equity, equity at current prices;
- the level is the highest band the drawdown reached today (levels do not fall back intraday):
  L1 normal; L2 halves new sizes; L3 and L4 stop new entries; L5 also asks the state machine
  for `blocked` (`wants_blocked`); bands come from `level_thresholds`;
- a drawdown above `daily_loss_limit` pauses new entries until the next day and raises a
  `risk_event`; the entry check reports the drawdown that tripped it and since when, not the
  drawdown of the moment (prices may have come back since: the pause holds all the same).
Across days: `max_consecutive_losses` losing trades in a row raise an alert and start a
cool-down of `loss_cooldown_ms` without new entries; a winning trade resets the count.

All of it survives a restart: the start-of-day equity is journaled (`day_start` at a run's
first mark, `daily_reset` at midnight) with every limit that fires, and `RiskDay` folds those
events and the closed trades back into what `restore` installs. Without it a crash (and the
service's restart) lifted the daily loss limit and L5 for the rest of the day.

A restart under another capital (`trading.capital`, the profile switched mid-day) is a deposit
or withdrawal, not trading: cash is rebuilt from the new capital, so `restore` moves the
start-of-day equity by the same difference (journaled as `capital_change`) and the day's PnL
stays what trading made, with the loss limit a share of the new equity. The start of day
therefore journals the capital it was marked under; one journaled without it (an older
hotcoin) is taken as marked under the capital of the restart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config.sections.trading import RiskSettings
from engine.journal.events import check
from engine.timefmt import span, utc_second

DAY_MS = 86_400_000


class RiskLevel(enum.IntEnum):
    L1 = 1
    L2 = 2
    L3 = 3
    L4 = 4
    L5 = 5

    @property
    def allows_entries(self) -> bool:
        return self <= RiskLevel.L2

    @property
    def size_multiplier(self) -> float:
        return 0.5 if self is RiskLevel.L2 else 1.0


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """A limit that fired, in the shape of a `risk_event`."""

    code: str
    level: str
    detail: str
    value: float | None = None
    threshold: float | None = None
    until_ms: int | None = None  # a cool-down's end
    capital: float | None = None  # day_start, daily_reset, capital_change: the capital their equity is based on
    tripped: float | None = None  # capital_change: the pause's drawdown re-judged against the new start (0: lifted)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "level": self.level, "detail": self.detail, "value": self.value, "threshold": self.threshold}
        if self.until_ms is not None:
            out["until_ms"] = self.until_ms
        if self.capital is not None:
            out["capital"] = self.capital
        if self.tripped is not None:
            out["tripped_drawdown"] = self.tripped
        return out


@dataclass(slots=True)
class RiskDay:
    """The risk manager's state as the journal has it: fold the `risk_event`s and the closing
    `position_update`s in seq order (`see_event`, `see_close`), then `RiskManager.restore`."""

    day: int | None = None
    start_equity: float = 0.0
    level: RiskLevel = RiskLevel.L1
    paused: bool = False
    paused_at_ms: int = 0  # when the daily loss limit tripped, and the drawdown that tripped it
    tripped_drawdown: float = 0.0
    consecutive_losses: int = 0
    cooldown_until_ms: int = 0
    l5_at_ms: int | None = None  # when L5 was last reached: the state machine's cool-down runs from it
    capital: float | None = None  # the capital `start_equity` was marked under (None: not journaled)

    def see_event(self, ts_ms: int, payload: Mapping[str, Any]) -> None:
        code = payload.get("code")
        if code in ("day_start", "daily_reset"):
            self.day, self.start_equity = ts_ms // DAY_MS, float(payload.get("value") or 0.0)
            self.level, self.paused, self.paused_at_ms, self.tripped_drawdown = RiskLevel.L1, False, 0, 0.0
            self.capital = _capital(payload)
        elif code == "capital_change" and self.day == ts_ms // DAY_MS:
            self.start_equity, self.capital = float(payload.get("value") or 0.0), _capital(payload)
            if "tripped_drawdown" in payload:  # the level and pause re-judged with it (older ones kept both)
                self.level = RiskLevel[str(payload["level"])]
                self.tripped_drawdown = float(payload["tripped_drawdown"] or 0.0)
                self.paused = self.tripped_drawdown > 0
                self.paused_at_ms = self.paused_at_ms if self.paused else 0
        elif code == "risk_level" and self.day == ts_ms // DAY_MS:
            self.level = max(self.level, RiskLevel[str(payload["level"])])
            if self.level is RiskLevel.L5:
                self.l5_at_ms = ts_ms
        elif code == "daily_loss_limit" and self.day == ts_ms // DAY_MS:
            self.paused, self.paused_at_ms, self.tripped_drawdown = True, ts_ms, float(payload.get("value") or 0.0)
        elif code == "consecutive_losses":
            self.consecutive_losses = 0
            self.cooldown_until_ms = int(payload.get("until_ms") or 0)

    def see_close(self, pnl: float) -> None:
        """A position closed with `pnl` (what `record_trade` was told; its cool-down event follows)."""
        self.consecutive_losses = 0 if pnl >= 0 else self.consecutive_losses + 1


def _capital(payload: Mapping[str, Any]) -> float | None:
    capital = payload.get("capital")
    return None if capital is None else float(capital)


class RiskManager:
    def __init__(self, settings: RiskSettings, capital: float | None = None) -> None:
        self.settings = settings
        self.capital = capital  # what cash started from (`trading.capital`); None: not known
        self.day: int | None = None
        self.start_equity = 0.0
        self.drawdown = 0.0
        self.level = RiskLevel.L1
        self.paused = False
        self.paused_at_ms = 0  # when the daily loss limit tripped, and the drawdown that tripped it
        self.tripped_drawdown = 0.0
        self.consecutive_losses = 0
        self.cooldown_until_ms = 0
        # What the last `update` left (day, equity, start equity, drawdown, level, pause,
        # settings): the same again fires nothing and changes nothing (see `update`).
        self._settled: tuple[object, ...] | None = None

    @property
    def wants_blocked(self) -> bool:
        """L5: the state machine should move the engine to `blocked` (its own cool-down applies)."""
        return self.level is RiskLevel.L5

    def _level_for(self, drawdown: float) -> RiskLevel:
        level = RiskLevel.L1
        for i, threshold in enumerate(self.settings.level_thresholds):
            if drawdown >= threshold:
                level = RiskLevel(i + 2)
        return level

    def restore(self, day: RiskDay, now_ms: int) -> list[RiskEvent]:
        """Take over the journal's risk state after a restart, before the first mark: the day's
        start equity, level and pause only when it is still that day; the losing streak and its
        cool-down whatever the day (they run across days). Returns the `capital_change` to
        journal when the day was marked under another capital (see the module doc): without
        it a switch from 300 to 100 read as a 200 loss (L5, blocked) and one from 100 to 300
        as a 200 gain, with the loss limit 3 % of the old capital."""
        self.consecutive_losses = day.consecutive_losses
        self.cooldown_until_ms = day.cooldown_until_ms
        if day.day is None or day.day != now_ms // DAY_MS:
            return []
        self.day, self.start_equity, self.level, self.paused = day.day, day.start_equity, day.level, day.paused
        self.paused_at_ms, self.tripped_drawdown = day.paused_at_ms, day.tripped_drawdown
        if day.capital is None or self.capital is None or day.capital == self.capital:
            return []
        self.start_equity = day.start_equity + self.capital - day.capital
        detail = (
            f"capital {day.capital:.2f} -> {self.capital:.2f} (trading.capital changed): start-of-day equity "
            f"{day.start_equity:.2f} -> {self.start_equity:.2f}, a deposit or withdrawal, not trading PnL"
        )
        detail += self._rejudge(day.start_equity)
        tripped = self.tripped_drawdown if self.paused else 0.0
        return [RiskEvent("capital_change", self.level.name, detail, self.start_equity, capital=self.capital, tripped=tripped)]

    def _rejudge(self, old_start: float) -> str:
        """The level and the pause the day reached, as shares of the moved start: the same loss is
        a smaller share after a deposit (a 7.93 loss tripped 3 % of 100 and is 2.64 % of 300) and a
        larger one after a withdrawal. The level is re-judged from the least loss that reached it
        (its threshold), the pause from the loss that tripped it; the next mark raises either
        again if today's loss calls for it. What changed is said in the event's detail."""
        if self.start_equity <= 0 or old_start <= 0:
            return ""
        scale = old_start / self.start_equity
        said: list[str] = []
        if self.level > RiskLevel.L1:
            level = self._level_for(self.settings.level_thresholds[self.level - 2] * scale)
            if level is not self.level:
                said.append(f"level {self.level.name} -> {level.name}")
                self.level = level
        if self.paused:
            self.tripped_drawdown *= scale
            if self.tripped_drawdown <= self.settings.daily_loss_limit:
                said.append(
                    f"entries no longer paused (the loss that tripped the limit is {self.tripped_drawdown:.2%} "
                    f"of the new start, under {self.settings.daily_loss_limit:.2%})"
                )
                self.paused, self.paused_at_ms, self.tripped_drawdown = False, 0, 0.0
        return f"; {', '.join(said)}" if said else ""

    def update(self, now_ms: int, equity: float) -> list[RiskEvent]:
        """Mark the day to `equity` (valued at current prices); returns the limits that fired.

        The same day, equity, start equity, drawdown, level, pause and settings as the last call left
        (nothing held: every minute of a quiet market) fire nothing: the drawdown is the one
        already taken, its level no higher than the one in force, and a drawdown over the
        loss limit already paused. Such a call returns at once; anything that moved one of
        them (a restore, a new start equity, a resume) goes the whole way."""
        day = now_ms // DAY_MS
        if (day, equity, self.start_equity, self.drawdown, self.level, self.paused, self.settings) == self._settled:
            return []
        events = self._update(now_ms, day, equity)
        self._settled = (day, equity, self.start_equity, self.drawdown, self.level, self.paused, self.settings)
        return events

    def _update(self, now_ms: int, day: int, equity: float) -> list[RiskEvent]:
        events: list[RiskEvent] = []
        if day != self.day:
            had_day = self.day is not None
            self.day, self.start_equity, self.level, self.paused = day, equity, RiskLevel.L1, False
            self.paused_at_ms, self.tripped_drawdown = 0, 0.0
            # Journaled either way: a restart later today restores this start-of-day equity.
            if had_day:
                detail = f"new UTC day; start-of-day equity {equity:.2f}"
                events.append(RiskEvent("daily_reset", self.level.name, detail, equity, capital=self.capital))
            else:
                detail = f"start-of-day equity {equity:.2f} (first mark of the run)"
                events.append(RiskEvent("day_start", self.level.name, detail, equity, capital=self.capital))
        if self.start_equity <= 0:
            return events
        self.drawdown = (self.start_equity - equity) / self.start_equity
        level = self._level_for(self.drawdown)
        if level > self.level:
            self.level = level
            detail = f"daily drawdown {self.drawdown:.2%} reached {level.name}"
            if level is RiskLevel.L5:
                detail += "; asking the state machine for blocked"
            events.append(RiskEvent("risk_level", level.name, detail, self.drawdown, self.settings.level_thresholds[level - 2]))
        limit = self.settings.daily_loss_limit
        if not self.paused and self.drawdown > limit:
            self.paused, self.paused_at_ms, self.tripped_drawdown = True, now_ms, self.drawdown
            events.append(
                RiskEvent(
                    "daily_loss_limit",
                    self.level.name,
                    f"daily loss {self.drawdown:.2%} > {limit:.2%} of start-of-day equity {self.start_equity:.2f}; "
                    "new entries paused until 00:00 UTC",
                    self.drawdown,
                    limit,
                )
            )
        return events

    def record_trade(self, pnl: float, now_ms: int) -> list[RiskEvent]:
        """A position closed with `pnl` (fees included). The cool-down's end is said in UTC with
        how long it lasts, for the owner's alert and the events panel, which show the detail as
        it is (a raw epoch ms said nothing to a reader); `until_ms` keeps the number for machines
        (a restart's `RiskDay`)."""
        if pnl >= 0:
            self.consecutive_losses = 0
            return []
        self.consecutive_losses += 1
        limit = self.settings.max_consecutive_losses
        if self.consecutive_losses < limit:
            return []
        self.cooldown_until_ms = now_ms + self.settings.loss_cooldown_ms
        self.consecutive_losses = 0
        return [
            RiskEvent(
                "consecutive_losses",
                self.level.name,
                f"{limit} losing trades in a row; no new entries until {utc_second(self.cooldown_until_ms)} "
                f"(in {span(self.settings.loss_cooldown_ms)})",
                float(limit),
                float(limit),
                until_ms=self.cooldown_until_ms,
            )
        ]

    def entry_checks(self, now_ms: int) -> list[dict[str, Any]]:
        return [
            self._daily_loss_check(),
            check("risk_level", self.level.allows_entries, self.level.name, "L2"),
            check("loss_cooldown", now_ms >= self.cooldown_until_ms, now_ms, self.cooldown_until_ms),
        ]

    def _daily_loss_check(self) -> dict[str, Any]:
        """While paused: the drawdown that tripped the limit and since when (the pause holds
        until the day ends, however far prices came back); else today's drawdown now."""
        limit = self.settings.daily_loss_limit
        if not self.paused:
            return check("daily_loss", True, round(self.drawdown, 6), limit)
        minute = self.paused_at_ms % DAY_MS // 60_000
        since = f"entries paused since {minute // 60:02d}:{minute % 60:02d} UTC until 00:00 UTC"
        return {**check("daily_loss", False, round(self.tripped_drawdown, 6), limit), "detail": since}
