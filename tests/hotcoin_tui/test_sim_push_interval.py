"""`hotcoin sim-exchange`'s market pushes fit its speed. At x300 the old 1 s default left an
engine's data 300 exchange seconds old before each push, past the 300 s block: the engine
flipped between tradeable and blocked twice a minute on the defaults."""

from __future__ import annotations

import pytest

from hotcoin_tui.commands.sim_cmd import PUSH_EXCHANGE_S, push_interval


@pytest.mark.parametrize(("speed", "wall_s"), [(1.0, 1.0), (30.0, 1.0), (60.0, 0.5), (300.0, 0.1), (1000.0, 0.03)])
def test_the_default_push_is_at_most_30_exchange_seconds(speed: float, wall_s: float) -> None:
    assert push_interval(None, speed) == pytest.approx(wall_s)
    assert push_interval(None, speed) * speed <= PUSH_EXCHANGE_S


def test_a_push_interval_too_long_for_the_speed_is_served_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert push_interval(1.0, 300.0) == 1.0
    err = capsys.readouterr().err
    assert "pushes every 300 exchange seconds" in err and "--push-interval 0.1 or less" in err
    assert push_interval(0.1, 300.0) == 0.1 and capsys.readouterr().err == ""
