"""Remote GPU boxes that run training jobs, one `[gpu.<profile>]` table each.

The trading box has no GPU; `hotcoin train --gpu <profile>` ships a job to the box named by the
profile. SSH settings beyond these (jump hosts, agent, keys) come from ~/.ssh/config as usual,
because the system `ssh` client is used.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config.sections.base import Section, UserPath


class GpuProfile(Section):
    transport: Literal["ssh", "local"] = Field(
        "ssh", description="`ssh` runs jobs on `host`; `local` runs the same steps on this machine."
    )
    host: str | None = Field(
        None, description="Host name or ~/.ssh/config alias of the GPU box (needed for transport ssh)."
    )
    user: str | None = Field(None, description="Login user; None leaves it to ~/.ssh/config or the local user.")
    port: int | None = Field(None, ge=1, le=65535, description="SSH port; None leaves it to ~/.ssh/config (22).")
    identity_file: UserPath | None = Field(None, description="Private key file; None uses the agent or ~/.ssh/config.")
    workdir: str = Field(
        "~/hotcoin_jobs", description="Folder on the box that holds shipped jobs and their outputs."
    )
    python: str = Field(
        "python3", description="Python interpreter on the box that has torch (e.g. /opt/venv/bin/python)."
    )
    env_setup: str = Field(
        "",
        description="Shell line run before every remote command, e.g. `. /opt/venv/bin/activate` "
        "or `module load cuda`; empty for none. It runs in a POSIX shell (/bin/sh: dash on "
        "Debian/Ubuntu), so write `.` rather than bash's `source`.",
    )
    ssh_options: list[str] = Field(
        default_factory=list,
        description="Extra arguments given to both ssh and scp, e.g. [\"-o\", \"ProxyJump=bastion\"] or [\"-F\", \"cfg\"].",
    )
    connect_timeout_s: int = Field(10, ge=1, description="SSH ConnectTimeout: how long to wait for the box.")
    keepalive_s: int = Field(
        5, ge=1, description="SSH ServerAliveInterval: a dead link is noticed after about 3x this."
    )
