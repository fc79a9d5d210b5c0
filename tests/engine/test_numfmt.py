"""Prices and sizes at the edges the console meets: a price that rounds up to the next power
of ten, and sizes too small for `%g` to write out."""

from __future__ import annotations

import pytest

from engine.numfmt import price, quantity


@pytest.mark.parametrize(("value", "shown"), [
    (0.00009995 * 1.0005, "0.00010000"),  # a paper entry at ask 0.00009995 + 5 bps: was 0.0₄100000 (0.00001)
    (9.99996e-06, "0.0₄10000"),  # was 0.0₅100000
    (9.99996e-07, "0.0₅10000"),
    (9.99996, "10.000"),  # was 10.0000: six digits
    (0.00000141718, "0.0₅14172"),
], ids=["carry-to-1e-4", "carry-to-1e-5", "carry-to-1e-6", "carry-to-ten", "micro"])  # fmt: skip
def test_a_price_rounding_up_to_the_next_power_of_ten_keeps_its_magnitude(value: float, shown: str) -> None:
    assert price(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (0.00006, "0.00006"),  # BTC bought by a 6 USDT minimum order: was 6e-05
    (0.0000123, "0.0000123"),
    (12.5, "12.5"),
    (99.99996, "100"),
    (0.0, "0"),
    (float("inf"), "—"),  # was infB
], ids=["tiny", "tinier", "tens", "rounds-to-100", "zero", "inf"])  # fmt: skip
def test_a_small_quantity_is_written_out(value: float, shown: str) -> None:
    assert quantity(value) == shown
