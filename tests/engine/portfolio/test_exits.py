"""Exit policy as a table: stop, trailing, max hold, signal, take-profit tiers."""

from __future__ import annotations

from typing import Any

import pytest

from engine.config.sections.trading import ExitSettings, TakeProfitTier
from engine.domain import OrderPurpose
from engine.portfolio.exits import ExitPolicy
from engine.portfolio.positions import Holding
from tests.kit.domain import T0, make_position

HOUR = 3_600_000
POLICY = ExitPolicy(ExitSettings())  # stop 4 %, trail 3 % armed at +4 %, TP 5 % (half) and 10 % (rest), 4 h


def holding(**kw: Any) -> Holding:
    fields: dict[str, Any] = {"entry_price": 1.0, "quantity": 100.0, "trailing_high": kw.pop("peak", 1.0)}
    pos = make_position(**(fields | kw))
    return Holding(pos, initial_qty=100.0)


CASES = [
    pytest.param({}, 1.01, 0, False, None, None, id="nothing"),
    pytest.param({}, 0.96, 0, False, OrderPurpose.STOP_LOSS, 100.0, id="stop-at-4pct"),
    pytest.param({}, 0.9601, 0, False, None, None, id="just-above-stop"),
    pytest.param({"stop_price": 1.0}, 0.999, 0, False, OrderPurpose.STOP_LOSS, 100.0, id="breakeven-stop"),
    pytest.param({"peak": 1.08, "tp_tiers_hit": (0,)}, 1.047, 0, False, OrderPurpose.TRAILING_STOP, 100.0, id="trailing-3pct-off-peak"),
    pytest.param({"peak": 1.03}, 1.0, 0, False, None, None, id="trailing-not-armed"),
    pytest.param({}, 1.01, 4 * HOUR, False, OrderPurpose.MAX_HOLD, 100.0, id="max-hold"),
    pytest.param({}, 1.01, 4 * HOUR - 1, False, None, None, id="just-under-max-hold"),
    pytest.param({}, 1.01, 0, True, OrderPurpose.SIGNAL_EXIT, 100.0, id="exit-on-signal"),
    pytest.param({}, 1.05, 0, False, OrderPurpose.TAKE_PROFIT, 50.0, id="tp1-sells-half"),
    pytest.param({"tp_tiers_hit": (0,), "quantity": 50.0}, 1.07, 0, False, None, None, id="between-tiers"),
    pytest.param({"tp_tiers_hit": (0,), "quantity": 50.0, "peak": 1.10}, 1.10, 0, False, OrderPurpose.TAKE_PROFIT, 50.0, id="tp2-sells-rest"),
    pytest.param({}, 0.95, 5 * HOUR, True, OrderPurpose.STOP_LOSS, 100.0, id="stop-wins-over-others"),
]


@pytest.mark.parametrize(("kw", "bid", "held_ms", "signal", "purpose", "qty"), CASES)
def test_exit_table(kw: dict[str, object], bid: float, held_ms: int, signal: bool, purpose: OrderPurpose | None, qty: float | None) -> None:
    decision = POLICY.evaluate(holding(**kw), bid, T0 + held_ms, signal_exit=("momentum_fade",) if signal else ())
    if purpose is None:
        assert decision is None
    else:
        assert decision is not None and decision.purpose is purpose and decision.quantity == qty
        assert decision.reason
        assert all(set(c) == {"name", "passed", "value", "threshold"} for c in decision.checks)


def test_a_time_exit_says_how_long_it_held_as_a_span() -> None:
    """Replay said "held 600000 ms >= 600000 ms"; every other span it shows reads 10m."""
    decision = POLICY.evaluate(holding(), 1.01, T0 + 4 * HOUR + 90_000)
    assert decision is not None and decision.purpose is OrderPurpose.MAX_HOLD
    assert decision.reason == "held 4h01 >= 4h00"
    hold = next(c for c in decision.checks if c["name"] == "max_hold")
    assert hold["value"] == 4 * HOUR + 90_000 and hold["threshold"] == 4 * HOUR  # the journal keeps the ms


def test_signal_exit_can_be_switched_off() -> None:
    policy = ExitPolicy(ExitSettings(exit_on_signal=False))
    assert policy.evaluate(holding(), 1.01, T0, signal_exit=("momentum_fade",)) is None


def test_a_signal_exit_names_the_rules_that_fired() -> None:
    decision = POLICY.evaluate(holding(), 1.01, T0, signal_exit=("momentum_fade", "reversal"))
    assert decision is not None and decision.purpose is OrderPurpose.SIGNAL_EXIT
    assert decision.signal_rules == ("momentum_fade", "reversal")
    assert decision.reason == "exit rules fired: momentum_fade, reversal"
    stop = POLICY.evaluate(holding(), 0.95, T0, signal_exit=("momentum_fade",))
    assert stop is not None and stop.purpose is OrderPurpose.STOP_LOSS and stop.signal_rules == ()
    signal_check = next(c for c in decision.checks if c["name"] == "signal_exit")
    assert signal_check["value"] is True  # the journal's check value stays a flag


def test_tiers_must_rise() -> None:
    with pytest.raises(ValueError, match="rising"):
        ExitSettings(take_profit=(TakeProfitTier(gain=0.1, fraction=0.5), TakeProfitTier(gain=0.05, fraction=1.0)))


@pytest.mark.parametrize(
    ("kw", "stop"),
    [
        pytest.param({}, 0.96, id="stop-loss-before-it-moves"),  # Position.stop_price is None here
        pytest.param({"stop_price": 1.0}, 1.0, id="moved-to-breakeven"),
        pytest.param({"peak": 1.03}, 0.96, id="trail-not-armed"),
        pytest.param({"peak": 1.10, "tp_tiers_hit": (0,)}, 1.10 * 0.97, id="trail-armed-above-the-stop"),
        pytest.param({"peak": 1.05, "stop_price": 1.04}, 1.04, id="stop-above-the-trail"),
    ],
)
def test_the_stop_in_force_is_where_the_position_sells(kw: dict[str, Any], stop: float) -> None:
    """What a position row shows as its stop: a bid at it sells, a bid just above it does not."""
    h = holding(**kw)
    assert POLICY.stop_in_force(h) == pytest.approx(stop)
    assert POLICY.evaluate(h, stop * 0.9999, T0) is not None
    assert POLICY.evaluate(h, stop * 1.0001, T0) is None


@pytest.mark.parametrize(
    ("kw", "purpose", "stop"),
    [
        pytest.param({"peak": 1.049}, OrderPurpose.TRAILING_STOP, 1.049 * 0.97, id="trail-above-the-stop"),
        pytest.param({"peak": 1.05, "stop_price": 1.04}, OrderPurpose.STOP_LOSS, 1.04, id="stop-above-the-trail"),
    ],
)
def test_a_gap_under_both_stops_sells_as_the_stop_in_force(kw: dict[str, Any], purpose: OrderPurpose, stop: float) -> None:
    """A bid that gaps under the stop loss and the armed trailing stop at once is journaled as
    the stop in force, the one a position row showed, at its price (it read `stop_loss` at the
    original 0.96 under a trail of 1.0175 shown as the stop)."""
    h = holding(**kw)
    assert POLICY.stop_in_force(h) == pytest.approx(stop)
    decision = POLICY.evaluate(h, 0.90, T0)
    said = "trail" if purpose is OrderPurpose.TRAILING_STOP else "stop"
    assert decision is not None and decision.purpose is purpose
    assert decision.reason.startswith(f"bid 0.9 <= {said} {stop:.8g}")


def _every_check(policy: ExitPolicy, h: Holding, bid: float, now_ms: int, signal_exit: tuple[str, ...]) -> object:
    """`evaluate` as it was written before it looked for nothing due first: every check built,
    then the decision read off them."""
    s, pos = policy.settings, h.position
    stop, trail, held_ms = policy.stop_price(h), policy.trail_price(h), now_ms - pos.opened_ms
    checks = [
        {"name": "stop_loss", "passed": bid > stop, "value": bid, "threshold": stop},
        {"name": "trailing_stop", "passed": trail is None or bid > trail, "value": bid, "threshold": trail},
        {"name": "max_hold", "passed": held_ms < s.max_hold_ms, "value": held_ms, "threshold": s.max_hold_ms},
        {"name": "signal_exit", "passed": not (s.exit_on_signal and signal_exit), "value": bool(signal_exit), "threshold": s.exit_on_signal},
    ]
    return policy._decide(h, bid, stop, trail, held_ms, checks, signal_exit)


@pytest.mark.parametrize("on_signal", [True, False])
def test_nothing_due_is_told_before_any_check_is_built(on_signal: bool) -> None:
    """`evaluate` answers None without its checks where none fires and no tier is due: every
    answer (a NaN bid included) is what building the checks first gives."""
    policy = ExitPolicy(ExitSettings(exit_on_signal=on_signal))
    bids = [0.9, 0.96, 0.9601, 0.999, 1.0, 1.03, 1.047, 1.05, 1.07, 1.1, 1.2, float("nan")]
    positions: list[dict[str, Any]] = [
        {}, {"stop_price": 1.0}, {"peak": 1.08}, {"peak": 1.08, "tp_tiers_hit": (0,), "quantity": 50.0},
        {"tp_tiers_hit": (0, 1), "quantity": 10.0}, {"peak": 1.2, "stop_price": 1.0},
    ]  # fmt: skip
    decided: set[OrderPurpose | None] = set()
    for kw in positions:
        h = holding(**kw)
        for bid in bids:
            for held_ms in (0, 4 * HOUR - 1, 4 * HOUR):
                for signal in ((), ("momentum_fade",)):
                    got = policy.evaluate(h, bid, T0 + held_ms, signal_exit=signal)
                    assert got == _every_check(policy, h, bid, T0 + held_ms, signal), (kw, bid, held_ms, signal)
                    decided.add(None if got is None else got.purpose)
    fired = {OrderPurpose.STOP_LOSS, OrderPurpose.TRAILING_STOP, OrderPurpose.MAX_HOLD, OrderPurpose.TAKE_PROFIT}
    assert decided == {None, *fired, *([OrderPurpose.SIGNAL_EXIT] if on_signal else [])}
