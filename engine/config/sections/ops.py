from __future__ import annotations

from pydantic import Field

from engine.config.sections.base import Section


class OpsSection(Section):
    http_enabled: bool = Field(True, description="Serve /health and /metrics (off: `hotcoin run --no-http`).")
    http_host: str = Field(
        "127.0.0.1",
        description="Address of the health/metrics listener; loopback unless you mean otherwise "
        "(any other address is warned about at start and by `hotcoin doctor`).",
    )
    http_port: int = Field(9464, ge=0, le=65535, description="Port of the health/metrics listener (0: any free port).")
    health_max_snapshot_age_s: float = Field(
        30.0,
        gt=0,
        description="/health answers 503 when the newest snapshot is older than this (wall seconds; a "
        "simulated market at --speed X allows X times as much of its own clock): the engine loop has "
        "stopped publishing.",
    )
