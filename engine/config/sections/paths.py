from __future__ import annotations

from pydantic import Field

from engine.config import locations
from engine.config.sections.base import Section, UserPath


class PathsSection(Section):
    data_dir: UserPath = Field(
        default_factory=locations.data_dir,
        description="Where the journal, history and models live (default: $XDG_DATA_HOME/hotcoin).",
    )
    secrets_file: UserPath = Field(
        default_factory=locations.default_secrets_file,
        description="TOML file holding API keys and tokens; must be mode 0600 (owner only).",
    )
