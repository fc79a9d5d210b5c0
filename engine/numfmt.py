"""Prices and quantities as a reader wants them, one way everywhere (console panels and
dialogs, the engine's one-line event rows): five significant digits, never a float's noise
(`0.025599194000000002`) or scientific notation."""

from __future__ import annotations

import math
from decimal import Decimal

_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def price(value: float) -> str:
    """Five significant digits, never scientific notation. Micro prices use the subscript-zero
    form traders know (0.00000141718 -> 0.0₅14172), so columns stay narrow."""
    if value <= 0 or not math.isfinite(value):
        return "—"
    # The magnitude after rounding to five digits: 0.0000999996 rounds to 0.00010000. Taken
    # before, it read as 0.0₄100000 (0.00001, ten times too small, with six digits).
    mantissa, exponent = f"{value:.4e}".split("e")
    magnitude = int(exponent)
    if magnitude <= -5:
        return f"0.0{str(-magnitude - 1).translate(_SUBSCRIPT)}{mantissa.replace('.', '')}"
    return f"{value:.{max(0, 4 - magnitude)}f}"


def quantity(value: float) -> str:
    """Compact size: 1,170.7 / 370.8M / 40.1B, and four significant digits below 100 written
    out (0.00006 BTC, what a minimum order buys, not 6e-05)."""
    if not math.isfinite(value):
        return "—"
    for limit, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return format(Decimal(f"{value:.4g}"), "f")
