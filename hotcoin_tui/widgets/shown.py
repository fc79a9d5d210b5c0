"""Whether a widget is on screen, as the focus must see it.

Textual's `Widget.focusable` checks the `visibility` style but not `display`, so a widget that
is hidden (by its own `display`, or inside a panel that is) can still be handed the focus, and
with it the keys, by Textual's auto-focus or by its blur moving the focus to a sibling.
"""

from __future__ import annotations

from textual.widget import Widget


def shown(widget: Widget) -> bool:
    """True when the widget and every container above it are displayed."""
    return all(node.display for node in widget.ancestors_with_self if isinstance(node, Widget))
