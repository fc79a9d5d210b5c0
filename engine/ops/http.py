"""`/health` (JSON) and `/metrics` (Prometheus text) on 127.0.0.1 by default.

The handlers only read: the latest snapshot and the metrics registry. A monitoring system
polling hard can never slow a decision beyond the event-loop time of serialising one snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import orjson
from aiohttp import web

from engine.errors import ConfigError
from engine.ops.metrics import EngineMetrics
from engine.runtime.snapshot import EngineSnapshot

SnapshotSource = Callable[[], EngineSnapshot | None]
QueueDepths = Callable[[], Mapping[str, int]]


def health_document(snap: EngineSnapshot | None, queues: Mapping[str, int]) -> dict[str, object]:
    """What /health returns: state, reasons, stream freshness, error rate, queue depths."""
    if snap is None:
        return {"state": "starting", "reasons": ["no cycle completed yet"], "queues": dict(queues)}
    st = snap.status
    return {
        "state": st.state,
        "reasons": list(st.reasons),
        "mode": str(st.mode),
        "paused": st.paused,
        "risk_level": st.risk_level,
        "order_errors_5m": st.order_error_rate,
        "run_id": st.run_id,
        "config_hash": st.config_hash,
        "model_version": st.model_version,
        "ts_ms": snap.ts_ms,
        "streams": [
            {
                **dataclasses.asdict(s),
                "age_s": None if s.last_message_ms is None else max(0.0, (snap.ts_ms - s.last_message_ms) / 1000),
            }
            for s in st.streams
        ],
        "positions": len(snap.positions),
        "pool_size": len(snap.candidates),
        "queues": dict(queues),
    }


class OpsServer:
    def __init__(self, metrics: EngineMetrics, snapshot: SnapshotSource, queues: QueueDepths, host: str, port: int) -> None:
        self._metrics, self._snapshot, self._queues = metrics, snapshot, queues
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:  # the port is taken (usually another engine) or the host is not ours
            await self.stop()
            raise ConfigError(
                f"ops.http_port={self._port}: cannot listen on {self._host}:{self._port} ({exc.strerror or exc}); "
                "another hotcoin engine may be running there. Stop it, pick a free port "
                "(HOTCOIN_OPS__HTTP_PORT=0 takes any), or pass --no-http"
            ) from exc
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _: web.Request) -> web.Response:
        doc = health_document(self._snapshot(), self._queues())
        status = 200 if doc["state"] in ("tradeable", "degraded", "starting") else 503
        return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        snap = self._snapshot()
        if snap is not None:
            self._metrics.update_from_snapshot(snap)
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")
