"""Number formatting shared by the panels: compact, sign-explicit (readable without colour)."""

from __future__ import annotations

import math

from rich.text import Text

# The engine's event rows format prices and sizes the same way, so the helpers live there.
from engine.numfmt import price as price
from engine.numfmt import quantity as quantity

_BLOCKS = " ▏▎▍▌▋▊▉█"
NOT_AVAILABLE = "n/a"


def pct(value: float | None) -> Text:
    """A return as +1.2% / -0.4%, green or red; the sign carries the meaning under NO_COLOR.
    An unknown one (None, NaN) shows as n/a, never as a flat +0.0%."""
    if value is None or math.isnan(value):
        return Text(NOT_AVAILABLE, style="dim", justify="right")
    style = "green" if value > 0 else "red" if value < 0 else ""
    return Text(pct_text(value), style=style, justify="right")


def pct_text(value: float | None) -> str:
    """`pct`'s text: +1.2%, or n/a where the value is unknown."""
    return NOT_AVAILABLE if value is None or math.isnan(value) else f"{value * 100:+.1f}%"


def money(value: float, signed: bool = False) -> str:
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def pnl(value: float) -> Text:
    return Text(money(value, signed=True), style="green" if value > 0 else "red" if value < 0 else "", justify="right")


def age_days(days: float | None) -> str:
    if days is None:
        return "?"
    if days < 1:
        return f"{days * 24:.0f}h"
    if days < 365:
        return f"{days:.0f}d"
    return f"{days / 365:.1f}y"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fraction` (eighth-cell resolution)."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[part] if part else "")).ljust(width)
