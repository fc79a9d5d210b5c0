"""The base every config section shares: frozen, unknown keys rejected, numbers finite."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Frozen (a running engine's config never changes under it), strict about keys (a typo
    such as `max_concurent` is an error, not a silently ignored setting) and about numbers:
    `nan` fails every comparison and `inf` passes every cap, so either would quietly switch off
    the rule or limit it was given to."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)
