"""Prices and quantities as a reader wants them, one way everywhere (console panels and
dialogs, the engine's one-line event rows): five significant digits, never a float's noise
(`0.025599194000000002`) or scientific notation."""

from __future__ import annotations

import math

_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def price(value: float) -> str:
    """Five significant digits, never scientific notation. Micro prices use the subscript-zero
    form traders know (0.00000141718 -> 0.0₅14172), so columns stay narrow."""
    if value <= 0 or not math.isfinite(value):
        return "—"
    magnitude = math.floor(math.log10(value))
    if magnitude <= -5:
        digits = f"{value * 10 ** (4 - magnitude):.0f}"
        return f"0.0{str(-magnitude - 1).translate(_SUBSCRIPT)}{digits}"
    return f"{value:.{max(0, 4 - magnitude)}f}"


def quantity(value: float) -> str:
    """Compact size: 1,170.7 / 370.8M / 40.1B."""
    for limit, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
