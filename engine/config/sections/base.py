"""The base every config section shares: frozen, unknown keys rejected, numbers finite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Section(BaseModel):
    """Frozen (a running engine's config never changes under it), strict about keys (a typo
    such as `max_concurent` is an error, not a silently ignored setting) and about numbers:
    `nan` fails every comparison and `inf` passes every cap, so either would quietly switch off
    the rule or limit it was given to."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


# A path setting with `~` expanded once, here: readers and writers then see the same path (an
# unexpanded `~/x` made `hotcoin run` create a literal ./~/x while the readers expanded it).
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]
