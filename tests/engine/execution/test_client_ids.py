"""Client order ids: derived, idempotent, within Binance's 36-char alphabet."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain import OrderPurpose
from engine.errors import NonRetryableOrderError
from engine.execution.client_ids import ALLOWED, client_order_id, is_ours, parse_client_order_id


@given(trace=st.text(min_size=1, max_size=80), purpose=st.sampled_from(list(OrderPurpose)), leg=st.integers(1, 999_999))
def test_any_trace_gives_a_valid_stable_id(trace: str, purpose: OrderPurpose, leg: int) -> None:
    cid = client_order_id(trace, purpose, leg)
    assert len(cid) <= 36 and ALLOWED.match(cid)
    assert cid == client_order_id(trace, purpose, leg)
    parsed = parse_client_order_id(cid)
    assert parsed is not None and parsed[1:] == (purpose, leg)


def test_journal_trace_ids_are_kept_readable() -> None:
    assert client_order_id("0123456789abcdef", OrderPurpose.ENTRY, 1) == "hc-0123456789abcdef-e1"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(("t" * 16, OrderPurpose.ENTRY, 1), ("t" * 16, OrderPurpose.ENTRY, 2), id="leg"),
        pytest.param(("0123456789abcdef", OrderPurpose.STOP_LOSS, 1), ("0123456789abcdef", OrderPurpose.TAKE_PROFIT, 1), id="purpose"),
        pytest.param(("0123456789abcdef", OrderPurpose.ENTRY, 1), ("0123456789abcdee", OrderPurpose.ENTRY, 1), id="trace"),
    ],
)
def test_different_intents_get_different_ids(a: tuple[str, OrderPurpose, int], b: tuple[str, OrderPurpose, int]) -> None:
    assert client_order_id(*a) != client_order_id(*b)


@pytest.mark.parametrize("leg", [pytest.param(0, id="zero"), pytest.param(1_000_000, id="too-big")])
def test_bad_leg_is_refused(leg: int) -> None:
    with pytest.raises(NonRetryableOrderError, match="leg"):
        client_order_id("0123456789abcdef", OrderPurpose.ENTRY, leg)


@pytest.mark.parametrize("cid", ["x-TKT5PX2F123", "hc-0123-e1", "hc-0123456789abcdef-q1", ""])
def test_foreign_ids_are_not_ours(cid: str) -> None:
    assert not is_ours(cid)
