"""The engine's candidate rows (what the console's pool shows): an unknown return stays unknown."""

from __future__ import annotations

from types import SimpleNamespace

from engine.runtime.engine import Engine
from tests.kit.domain import make_candidate


def test_an_unknown_return_reaches_the_console_as_none_not_zero() -> None:
    """Six minutes into a symbol's history its 1 h return is NaN (unknown); the row says None
    (the pool shows n/a) where it used to say 0.0, a flat hour that never was."""
    nan = float("nan")
    cand = make_candidate(returns={"1m": 0.02, "5m": 0.117, "15m": nan, "60m": nan})
    engine = SimpleNamespace(core=SimpleNamespace(book={}), tap=SimpleNamespace(last_signal={}))
    cycle = SimpleNamespace(snapshot=SimpleNamespace(candidates=(cand,)))
    (row,) = Engine._candidate_rows(engine, cycle)  # type: ignore[arg-type]
    assert (row.ret_1m, row.ret_5m, row.ret_1h) == (0.02, 0.117, None)
