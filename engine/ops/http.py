"""`/health` (JSON) and `/metrics` (Prometheus text) on 127.0.0.1 by default.

The handlers only read: the latest snapshot and the metrics registry. A monitoring system
polling hard can never slow a decision beyond the event-loop time of serialising one snapshot.

Ages are measured against the clock batches are stamped with, now (`now_ms`), never against the
snapshot's own time: a snapshot stops changing exactly when the feed or the loop stops, so ages
taken from it would stay young forever. /health answers 503 when the engine is blocked or
halted, when a reason says the data is stale, or when the newest snapshot is older than
`max_snapshot_age_s`; 200 otherwise (tradeable, degraded for another reason, starting).

Before the first cycle there is no snapshot to age: /health answers "starting" (200) through the
warm-up, then 503 with reason "no cycle since start (N s)" once the engine has waited for the
market's first batch longer than `max_snapshot_age_s` wall seconds (`Engine.first_batch_wait_s`;
a half-open ticker stream never delivers one, and "starting" forever hid a dead engine from
the probe). The warm-up does not count: one REST call per symbol, each bounded by its timeout,
can outlast the allowance at a healthy start, and a probe must not restart an engine that is
warming up into another warm-up. The no-snapshot answer shows the feed's streams too.

The notification channels are shown too (`notify`: each one's queue, counters, and `ok: false`
with the last error while its deliveries fail), and never make /health 503: the probe answers
"should this engine be restarted?", and a restart cannot mend Telegram, only stop trading and
send "Engine stopped" into the same dead channel. Alert on `hotcoin_notify_failing_attempts`.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence

import orjson
from aiohttp import web

from engine.errors import ConfigError
from engine.loopback import is_loopback_host
from engine.ops.listen import listening_socket
from engine.ops.metrics import EngineMetrics
from engine.ops.notify.dispatcher import ChannelReport
from engine.runtime.snapshot import EngineSnapshot, StreamRow

SnapshotSource = Callable[[], EngineSnapshot | None]
QueueDepths = Callable[[], Mapping[str, int]]
NotifySource = Callable[[], Mapping[str, ChannelReport]]
Clock = Callable[[], int]
WaitSource = Callable[[], float | None]  # wall seconds waited for the first batch; None: warming up
StreamSource = Callable[[int], Sequence[StreamRow]]

log = logging.getLogger("hotcoin.ops.http")

HEALTHY_STATES = ("tradeable", "degraded", "starting")
STALE_REASON = "data_stale"
NO_CYCLE_REASON = "no cycle since start"


def wall_ms() -> int:
    """The system clock in epoch ms (a live feed stamps its batches with it)."""
    return int(time.time() * 1000)


NOT_LOOPBACK = "/health and /metrics listen on {host}, not loopback"
NOT_LOOPBACK_FIX = "set ops.http_host = 127.0.0.1 unless a firewall guards the port"


def _age_s(now_ms: int, then_ms: int | None) -> float | None:
    return None if then_ms is None else max(0.0, (now_ms - then_ms) / 1000)


def _channels(notify: Mapping[str, ChannelReport]) -> dict[str, dict[str, object]]:
    return {name: {"ok": r.ok, **dataclasses.asdict(r)} for name, r in notify.items()}


def _streams(rows: Sequence[StreamRow], now_ms: int) -> list[dict[str, object]]:
    return [{**dataclasses.asdict(s), "age_s": _age_s(now_ms, s.last_message_ms)} for s in rows]


def health_document(
    snap: EngineSnapshot | None,
    queues: Mapping[str, int],
    now_ms: int,
    notify: Mapping[str, ChannelReport] | None = None,
    *,
    waiting_s: float | None = None,
    max_wait_s: float | None = None,
    streams: Sequence[StreamRow] = (),
) -> dict[str, object]:
    """What /health returns: state, reasons, snapshot and stream ages at `now_ms`, error rate,
    queue depths, notification channels. With no snapshot yet: `waiting_s`, the wall seconds
    waited for the first batch (None: still warming up), is reason `NO_CYCLE_REASON` once over
    `max_wait_s`, and `streams` says what the feed's connections are doing meanwhile."""
    channels = _channels(notify or {})
    if snap is None:
        if waiting_s is None:
            reason = "no cycle completed yet (warming up)"
        elif max_wait_s is not None and waiting_s > max_wait_s:
            reason = f"{NO_CYCLE_REASON} ({waiting_s:.0f} s)"
        else:
            reason = "no cycle completed yet"
        return {
            "state": "starting",
            "reasons": [reason],
            "waiting_s": waiting_s,
            "streams": _streams(streams, now_ms),
            "queues": dict(queues),
            "notify": channels,
        }
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
        "snapshot_age_s": _age_s(now_ms, snap.ts_ms),
        "streams": _streams(st.streams, now_ms),
        "positions": len(snap.positions),
        "pool_size": len(snap.candidates),
        "queues": dict(queues),
        "notify": channels,
    }


def health_status(doc: Mapping[str, object], max_snapshot_age_s: float) -> int:
    """The HTTP status a probe acts on: 503 for a bad state, stale data, a stalled loop or a
    start that never saw the market."""
    if doc["state"] not in HEALTHY_STATES:
        return 503
    reasons = doc.get("reasons")
    if isinstance(reasons, list) and any(str(r).startswith((STALE_REASON, NO_CYCLE_REASON)) for r in reasons):
        return 503
    age = doc.get("snapshot_age_s")
    return 503 if isinstance(age, float) and age > max_snapshot_age_s else 200


def bind_ops_port(host: str, port: int) -> socket.socket:
    """The /health and /metrics port, bound; a taken port (usually another engine) or a host
    that is not ours is a `ConfigError` that says how to get past it."""
    try:
        return listening_socket(host, port)
    except OSError as exc:
        raise ConfigError(
            f"ops.http_port={port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "another hotcoin engine may be running there. Stop it, pick a free port "
            "(HOTCOIN_OPS__HTTP_PORT=0 takes any), or pass --no-http"
        ) from exc


class OpsServer:
    def __init__(
        self,
        metrics: EngineMetrics,
        snapshot: SnapshotSource,
        queues: QueueDepths,
        host: str,
        port: int,
        *,
        max_snapshot_age_s: float = 30.0,
        now_ms: Clock = wall_ms,
        clock_speed: float = 1.0,
        first_batch_wait: WaitSource | None = None,
        streams: StreamSource | None = None,
    ) -> None:
        """`first_batch_wait`: the engine's wait for its first batch (`Engine.first_batch_wait_s`);
        without it the wait counts from `start()`. `streams`: the feed's streams at a time, shown
        while there is no snapshot (a snapshot carries its own)."""
        self._metrics, self._snapshot, self._queues = metrics, snapshot, queues
        self._host, self._port = host, port
        # Ages are read on `now_ms`, the feed's clock; a simulated one runs `clock_speed` times
        # the wall's, and the allowance is for a stalled loop in wall seconds (30 s of a x60
        # sim's clock would be half a second: one slow cycle read as a dead engine).
        self._max_age_s = max_snapshot_age_s * max(1.0, clock_speed)
        self._max_wait_s = max_snapshot_age_s  # the first batch's wait is read on the wall clock
        self._now_ms = now_ms
        self._first_batch_wait = first_batch_wait or self._since_start
        self._streams = streams
        self._started: float | None = None
        self._notify: NotifySource = dict
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, listener: socket.socket | None = None) -> None:
        """Serve on `listener`, the port the session bound before it opened any file
        (`bind_ops_port`); without one, on host:port bound here."""
        sock = listener if listener is not None else bind_ops_port(self._host, self._port)
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            await self.stop()
            sock.close()
            raise
        self.port = int(self._runner.addresses[0][1])
        self._started = time.monotonic()
        if not is_loopback_host(self._host):
            # `hotcoin doctor` says so too, but nobody runs it before every start: say it where it happens.
            log.warning("%s; %s", NOT_LOOPBACK.format(host=self._host), NOT_LOOPBACK_FIX, extra={"port": self.port})

    def watch_notifications(self, channels: NotifySource) -> None:
        """Show the notification channels on /health and /metrics from now on (they open after
        the server, which must already hold its port). Once per server."""
        self._notify = channels
        self._metrics.count_notifications(channels)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _since_start(self) -> float | None:
        return None if self._started is None else time.monotonic() - self._started

    async def _health(self, _: web.Request) -> web.Response:
        snap, now = self._snapshot(), self._now_ms()
        if snap is not None:
            doc = health_document(snap, self._queues(), now, self._notify())
        else:
            streams = () if self._streams is None else self._streams(now)
            waiting = self._first_batch_wait()
            doc = health_document(
                None, self._queues(), now, self._notify(), waiting_s=waiting, max_wait_s=self._max_wait_s, streams=streams
            )
        status = health_status(doc, self._max_age_s)
        return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        snap = self._snapshot()
        if snap is not None:
            self._metrics.update_from_snapshot(snap, self._now_ms())
        self._metrics.set_queue_depths(self._queues())
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")
