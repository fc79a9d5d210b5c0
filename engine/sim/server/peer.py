"""One WebSocket client of the simulated exchange, with its own writer.

Every peer owns a bounded outbound queue drained by its own task, so one slow client never
delays the others (the server serialises a payload once and hands the same bytes to every
peer). WebSocket faults act here, frame by frame: latency, duplicates, reordering and the
half-open mode. When a client falls so far behind that its queue is full, the oldest
queued message is dropped and counted in `dropped` (Binance instead disconnects such
clients; counting keeps the benchmark honest about what was delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import WSCloseCode, WSMsgType, web

from engine.sim.server.faults import FaultController

QUEUE_LIMIT = 256


class WsPeer:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, faults: FaultController) -> None:
        self.ws = ws
        self._transport = request.transport
        self._faults = faults
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_LIMIT)
        self._writer = asyncio.create_task(self._write_loop(), name="sim-ws-writer")
        self.sent = 0
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def send(self, data: bytes) -> None:
        """Queue one text frame; never blocks the caller."""
        if self.ws.closed:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((time.monotonic(), data))

    async def answer_ping(self, payload: bytes) -> None:
        """Pong, unless the connection is playing half-open."""
        if not self._faults.plan.ws_half_open:
            await self.ws.pong(payload)

    async def close(self, *, abrupt: bool = False) -> None:
        """Close with 1001 (going away), or abort the TCP connection without a close frame."""
        if abrupt:
            if self._transport is not None:
                self._transport.abort()
        elif not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"sim: connection dropped")
        await self.stop_writer()

    async def stop_writer(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _write_loop(self) -> None:
        held: bytes | None = None
        try:
            while True:
                queued_at, data = await self._queue.get()
                plan = self._faults.plan
                if plan.ws_half_open:
                    continue
                delay = queued_at + plan.latency_ms / 1000.0 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                rng = self._faults.rng
                if held is None and plan.ws_reorder_rate > 0 and rng.random() < plan.ws_reorder_rate:
                    held = data  # goes out after the next message
                    continue
                await self._write(data)
                if plan.ws_duplicate_rate > 0 and rng.random() < plan.ws_duplicate_rate:
                    await self._write(data)
                if held is not None:
                    await self._write(held)
                    held = None
        except (ConnectionError, RuntimeError):
            return  # the socket went away under us; the reader side cleans up

    async def _write(self, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("websocket closed")
        await self.ws.send_frame(data, WSMsgType.TEXT)
        self.sent += 1
