"""Fast path for the full-market ticker stream: raw WebSocket, orjson, straight into arrays.

ccxt.pro spends ~40 ms of CPU on one 2,000-symbol `!ticker@arr` message (it builds a
unified dict per symbol, with ISO dates and Precise arithmetic), and we then turn those
dicts back into columns. Here the message is parsed once by orjson and the nine columns we
use are converted by numpy in one call: several times cheaper (see
`bench/bench_ticker_ingest.py`). Selected with `exchange.ticker_decoder = "fast"`; it sits
behind the same `Gateway.watch_tickers()` and the same `ResilientStream`, so freshness,
reconnects, keep-alive and rotation behave exactly as on the ccxt path.

Failures are raised as ccxt exceptions (`NetworkError` for a drop or missed pong,
`DDoSProtection` for a 429/418 handshake, `ExchangeError` for a refused subscription) so
`engine.market.errors` and the stream treat both paths alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import ccxt
import numpy as np
import orjson

from engine.domain import TickerBatch
from engine.errors import MarketDataError
from engine.market.backoff import Clock, parse_retry_after
from engine.market.exchange_clock import exchange_shift_ms

_FLOAT_KEYS = ("c", "b", "a", "o", "h", "l", "v", "q")  # last bid ask open high low base-vol quote-vol
_NUMBER_TYPES = {str, int, float}  # what a float key may hold; bool and None are not numbers here
SUBSCRIBE_ID = 1
EVENT_WINDOW_MS = 86_400_000
"""How far a row's event time may sit from the local clock before the row counts as malformed.

It catches times in the wrong unit (seconds, microseconds) and garbage, which would otherwise
become the engine's clock. It is wide on purpose: a PC clock kept in local time is off by
whole hours, and the simulated exchange runs at up to x1000, where every wall second of
network or backlog delay is 1,000 exchange seconds. A row that is merely early cannot move
the engine's clock either: `GatewayFeed` ignores event times far ahead of the receive time.
"""


class TickerArrayDecoder:
    """Binance `!ticker@arr` payloads -> `TickerBatch`; symbol ids mapped to ccxt symbols.

    Ids not in the loaded markets (a listing newer than our market info) are skipped and
    counted in `unknown_ids`; the periodic market refresh brings them in. Malformed rows are
    dropped and counted in `malformed_rows`, never the whole message: an element that is not
    an object, a price or volume that is not a number or numeric string (a bool or null
    included), a trade count `n` that is not an int, or an event time that is not an int
    within `window_ms` of the local clock.
    """

    def __init__(self, symbols_by_id: Mapping[str, str], *, window_ms: int = EVENT_WINDOW_MS) -> None:
        self._symbols = dict(symbols_by_id)
        self._window_ms = window_ms
        self.unknown_ids = 0
        self.malformed_rows = 0

    def set_symbols(self, symbols_by_id: Mapping[str, str]) -> None:
        """Adopt a refreshed market list (new listings start decoding from the next message)."""
        self._symbols = dict(symbols_by_id)

    def decode(self, raw: bytes | str, ts_ms: int) -> TickerBatch | None:
        """The batch in one stream message; None for a subscription ack."""
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MarketDataError(f"ticker stream sent invalid JSON: {exc}") from None
        if isinstance(payload, dict):
            if "error" in payload:
                raise ccxt.ExchangeError(f"ticker subscription refused: {orjson.dumps(payload).decode()}")
            if payload.get("e") != "24hrTicker":
                return None
            payload = [payload]
        if not isinstance(payload, list):
            raise MarketDataError(f"ticker stream sent a {type(payload).__name__}, expected a list")
        return self.from_array(payload, ts_ms)

    def from_array(self, rows: list[Any], ts_ms: int) -> TickerBatch:
        # One bad row must not cost the other 1,999: every check drops and counts rows, and
        # each is one cheap pass over a normal message, filtering only when a row fails.
        known = self._known_rows(rows)
        known = self._with_valid_times_and_counts(known, ts_ms)
        known, table = self._float_table(known)
        n = len(known)
        columns = table.T
        return TickerBatch(
            ts_ms=ts_ms,
            symbols=tuple(self._symbols[r["s"]] for r in known),
            event_ms=np.fromiter((r.get("C") or r["E"] for r in known), np.int64, n),
            last=columns[0].copy(),
            bid=columns[1].copy(),
            ask=columns[2].copy(),
            open_24h=columns[3].copy(),
            high_24h=columns[4].copy(),
            low_24h=columns[5].copy(),
            base_volume_24h=columns[6].copy(),
            quote_volume_24h=columns[7].copy(),
            trade_count_24h=np.fromiter((r.get("n", -1) for r in known), np.int64, n),
        )

    def _known_rows(self, rows: list[Any]) -> list[dict[str, Any]]:
        """The JSON objects with a loaded symbol id. Anything else in the array (a string, a
        null, a list) is malformed rather than an error that would drop the connection."""
        objects = [r for r in rows if type(r) is dict]
        self.malformed_rows += len(rows) - len(objects)
        symbols = self._symbols
        try:
            known = [r for r in objects if r.get("s") in symbols]
        except TypeError:  # an id that is a list or an object cannot be a loaded one
            known = [r for r in objects if isinstance(r.get("s"), str) and r["s"] in symbols]
        self.unknown_ids += len(objects) - len(known)
        return known

    def _with_valid_times_and_counts(self, rows: list[dict[str, Any]], ts_ms: int) -> list[dict[str, Any]]:
        """The rows whose event time (`C`, else `E`) is an int within the window of `ts_ms`
        and whose trade count `n`, if any, is an int; the rest counted as malformed.

        One far-future time would otherwise become the batch's time and stop the engine's
        clock (every later batch stamped `last + 1`).
        """
        lo, hi = ts_ms - self._window_ms, ts_ms + self._window_ms
        times = [r.get("C") or r.get("E") for r in rows]
        counts = [r.get("n", -1) for r in rows]
        ok = [type(t) is int and lo <= t <= hi for t in times]  # a bool is not an int here
        if all(ok) and all(type(c) is int for c in counts):
            return rows
        good = [r for r, fine, c in zip(rows, ok, counts, strict=True) if fine and type(c) is int]
        self.malformed_rows += len(rows) - len(good)
        return good

    def _float_table(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray[Any, Any]]:
        """The rows whose eight values are all numbers or numeric strings, and their table.

        numpy alone would read `true` as 1.0 and `null` as NaN, so the value types are
        checked first (one C-speed pass); a failure drops only the rows that do not parse.
        """
        try:
            values = [r[k] for r in rows for k in _FLOAT_KEYS]
            if set(map(type, values)) <= _NUMBER_TYPES:
                return rows, np.array(values, dtype=np.float64).reshape(len(rows), len(_FLOAT_KEYS))
        except (KeyError, ValueError):
            pass
        good = [r for r in rows if _parses(r)]
        self.malformed_rows += len(rows) - len(good)
        values = [float(r[k]) for r in good for k in _FLOAT_KEYS]
        return good, np.array(values, dtype=np.float64).reshape(len(good), len(_FLOAT_KEYS))


def _parses(row: Mapping[str, Any]) -> bool:
    """Every float key present and a number or a string that reads as one (not a bool or null)."""
    try:
        values = [row[k] for k in _FLOAT_KEYS]
    except KeyError:
        return False
    if not all(type(v) in _NUMBER_TYPES for v in values):
        return False
    try:
        for value in values:
            float(value)
    except ValueError:
        return False
    return True


class FastTickerConnection:
    """One raw WebSocket subscribed to `!ticker@arr`; `next()` returns the next batch."""

    def __init__(
        self,
        url: str,
        symbols_by_id: Mapping[str, str],
        *,
        clock: Clock,
        keepalive_s: float,
        timeout_s: float,
    ) -> None:
        self.url = url
        self.decoder = TickerArrayDecoder(symbols_by_id)
        self._clock = clock
        self._keepalive_s = keepalive_s
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        session = self._session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                self.url,
                heartbeat=self._keepalive_s,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=self._timeout_s),
            )
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            if exc.status in (418, 429):
                err = ccxt.DDoSProtection(f"fast tickers handshake {exc.status}")
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                err.retry_after_s = parse_retry_after(retry_after)
                raise err from exc
            raise ccxt.ExchangeNotAvailable(f"fast tickers handshake {exc.status}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.close()
            raise ccxt.NetworkError(f"fast tickers connect {self.url}: {exc!r}") from exc
        await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": ["!ticker@arr"], "id": SUBSCRIBE_ID}).decode())
        self._ws = ws
        return ws

    async def next(self) -> TickerBatch:
        ws = self._ws or await self._open()
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                # Decoded on the exchange's own times (its event window), then moved onto our clock.
                now, shift = self._clock.now_ms(), exchange_shift_ms(self._clock)
                batch = self.decoder.decode(msg.data, now - shift)
                if batch is not None:
                    return replace(batch, ts_ms=now, event_ms=batch.event_ms + shift) if shift else batch
                continue
            if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            reason = msg.extra if msg.type is aiohttp.WSMsgType.CLOSE else ws.exception()
            raise ccxt.NetworkError(f"fast tickers connection closed (code {ws.close_code}): {reason!r}")

    async def close(self) -> None:
        ws, session = self._ws, self._session
        self._ws, self._session = None, None
        if ws is not None:
            await ws.close()
        if session is not None:
            await session.close()
