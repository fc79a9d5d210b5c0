"""The base every config section shares: frozen, unknown keys rejected, numbers finite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr, ValidationInfo


class Section(BaseModel):
    """Frozen (a running engine's config never changes under it), strict about keys (a typo
    such as `max_concurent` is an error, not a silently ignored setting) and about numbers:
    `nan` fails every comparison and `inf` passes every cap, so either would quietly switch off
    the rule or limit it was given to."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


# A path setting with `~` expanded once, here: readers and writers then see the same path (an
# unexpanded `~/x` made `hotcoin run` create a literal ./~/x while the readers expanded it).
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]


def _secret_is_set(secret: SecretStr, info: ValidationInfo) -> SecretStr:
    """Refuse a secret that is blank, or padded with spaces or broken by a line break (a paste
    with them): an empty `api_key = ""` passed the live gate and doctor as a key, and failed
    only on the first signed request. Named by its key, never shown."""
    value = secret.get_secret_value()
    name = info.field_name or "the secret"
    if not value.strip():
        raise ValueError(
            f"{name} is empty: put the value in the secrets file (chmod 600) or the environment, "
            f"or remove {name} to leave it unset"
        )
    if value != value.strip() or "\n" in value or "\r" in value:
        raise ValueError(f"{name} starts or ends with spaces, or holds a line break: copy it again without them")
    return secret


# A secret setting (`SECRET_KEYS`): set means set to something.
Secret = Annotated[SecretStr, AfterValidator(_secret_is_set)]


def _asset_code(value: str) -> str:
    """An asset code as the exchange writes it: markets are matched on it exactly, so `usdt`
    (or ` USDT`) left the engine watching no market at all, with nothing naming the setting."""
    code = value.strip().upper()
    if not code.isalnum():
        raise ValueError(f"{value!r} is not an asset code: give letters and digits only, e.g. USDT")
    return code


# An asset code (`USDT`): blanks around it dropped, upper case, letters and digits.
AssetCode = Annotated[str, AfterValidator(_asset_code)]
