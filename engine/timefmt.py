"""Times and spans of time as a reader wants them, one way everywhere (console panels, the
backtest report, replay): compact enough for a narrow table column."""

from __future__ import annotations

from datetime import UTC, datetime


def span(ms: float) -> str:
    """A span of time: 45s, 12m, 3h05, 2d04 (a negative span is 0s)."""
    s = int(max(0.0, ms)) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}"


def utc_second(ms: float) -> str:
    """A moment to the second: 2021-04-02 22:37:00 UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
