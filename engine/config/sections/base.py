"""The base every config section shares: frozen, unknown keys rejected."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Frozen (a running engine's config never changes under it) and strict about keys
    (a typo such as `max_concurent` is an error, not a silently ignored setting)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
