"""Building the ccxt.pro Binance client: spot-only options, keep-alive, endpoint override.

Two things ccxt does not do on its own, done here once:

- **Endpoint override** (`exchange.endpoint`, `hotcoin --endpoint URL`): every string under
  ccxt's `urls['api']` (REST public/private, sapi/fapi/dapi/..., ws spot, ws-api spot and
  the rest) is rewritten to the given host, keeping its path, so no forgotten key can reach
  real Binance: a call we did not plan for fails visibly with a 404 from the other host.
  With no endpoint the URLs are ccxt's own.
- **Spot error codes on another host**: ccxt applies its spot-only code table (-1008, -2026,
  ...) only when the URL starts with `https://api.binance.com/`; `EndpointBinance` applies it
  for the overridden host too. It also keeps the server's `Retry-After` on the
  `DDoSProtection` a 429/418 raises (`retry_after_of`), and the Binance code, message and HTTP
  status on every exception (`exchange_code`, `exchange_msg`, `http_status`), which ccxt
  otherwise drops or buries in the reply's JSON.

Options always set (we trade spot only): `fetchMarkets` spot only (one exchangeInfo call,
no sapi/fapi/dapi), no currencies or margin lookups, `watchTickers` on `!ticker@arr` (the
channel with bid/ask, and cheaper to parse than miniTicker), no `quoteOrderQty` rewrite of
market orders, no warning for `fetch_open_orders()` without a symbol, our recvWindow, and
`streaming.keepAlive` so a half-open socket fails in ~2 x keepalive instead of ~6 minutes.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.pro

from engine.config.sections.exchange import ExchangeSection
from engine.loopback import is_loopback_host
from engine.market.backoff import parse_retry_after
from engine.market.endpoint import endpoint_parts


class EndpointBinance(ccxt.pro.binance):  # type: ignore[misc]
    """ccxt.pro binance that maps spot error codes on an overridden host and keeps Retry-After."""

    hotcoin_endpoint: str | None = None
    # HTTP requests this client has sent (or tried to), so a caller can tell an error raised
    # before its request left (nothing sent: `OrderNotSentError`) from one after.
    requests_sent: int = 0

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        """ccxt's one door to HTTP, counted (`requests_sent`) before the request is made."""
        self.requests_sent += 1
        return await super().fetch(url, method, headers, body)

    def client(self, url: str) -> Any:
        """ccxt's WebSocket client for `url`, every future of which has its exception retrieved
        once it fails (`_retrieved`).

        ccxt creates futures nobody awaits: the user-data subscription parks one under
        `authenticate:signature:spot` for concurrent callers, and a dial that fails rejects every
        future of the client at once. Each such future then logged asyncio's "Future exception
        was never retrieved" with a traceback when collected: at x300 with the exchange down,
        one per redial, some 240 in 40 s, burying our one line per state change. The failure
        itself still reaches whoever awaits the future (the stream, which logs it once); ccxt
        does the same for its own connection future and for the losers of its races."""
        client = super().client(url)
        if "future" not in vars(client):
            make = client.future

            def future(message_hash: str) -> Any:
                handed = make(message_hash)
                handed.remove_done_callback(_retrieved)  # one callback per future, however often it is handed out
                handed.add_done_callback(_retrieved)
                return handed

            client.future = future
        return client

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict[str, Any]:
        if self.hotcoin_endpoint and url is not None and url.startswith(self.hotcoin_endpoint):
            spot = self.exceptions.get("spot", {})
            return dict(spot.get(exactOrBroad, {}))
        return dict(super().get_exceptions_by_url(url, exactOrBroad))

    def handle_errors(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: dict[str, str],
        body: str,
        response: object,
        requestHeaders: object,
        requestBody: object,
    ) -> Any:
        try:
            return super().handle_errors(
                code, reason, url, method, headers, body, response, requestHeaders, requestBody
            )
        except ccxt.BaseError as exc:
            # ccxt matches some replies by message text and drops the code; keep it.
            exc.http_status = code
            body_code = response.get("code") if isinstance(response, dict) else None
            if isinstance(body_code, int | str) and str(body_code).lstrip("-").isdigit():
                exc.exchange_code = int(body_code)
            body_msg = response.get("msg") if isinstance(response, dict) else None
            if isinstance(body_msg, str) and body_msg:
                exc.exchange_msg = body_msg
            if isinstance(exc, ccxt.DDoSProtection):
                lowered = {k.lower(): v for k, v in (headers or {}).items()}
                exc.retry_after_s = parse_retry_after(lowered.get("retry-after"))
            raise


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a settled ccxt future's exception as retrieved (`EndpointBinance.client`)."""
    if not future.cancelled():
        future.exception()


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After seconds `EndpointBinance` attached to a 429/418, if the server sent one."""
    value = getattr(exc, "retry_after_s", None)
    return float(value) if isinstance(value, int | float) else None


def rewrite_urls(tree: Any, endpoint: str) -> Any:
    """`tree` (ccxt's `urls['api']`) with every URL moved to `endpoint`'s host, paths kept.

    `wss://x/ws` becomes `ws://host/ws` for an http endpoint and `wss://host/ws` for https;
    a path prefix on the endpoint (`http://h/binance`) goes in front of every path.
    """
    scheme, netloc, prefix = endpoint_parts(endpoint)
    ws_scheme = "wss" if scheme == "https" else "ws"

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, str):
            old = urlsplit(value)
            new_scheme = ws_scheme if old.scheme in ("ws", "wss") else scheme
            return f"{new_scheme}://{netloc}{prefix}{old.path}"
        return value

    return move(tree)


def is_loopback(endpoint: str) -> bool:
    return is_loopback_host(urlsplit(endpoint).hostname or "")


def client_config(section: ExchangeSection, endpoint: str | None = None) -> dict[str, Any]:
    """The ccxt constructor config for `section`; `endpoint` overrides `section.endpoint`."""
    endpoint = endpoint or section.endpoint
    rate_limit = section.enable_rate_limit
    if rate_limit is None:
        rate_limit = not (endpoint is not None and is_loopback(endpoint))
    config: dict[str, Any] = {
        "enableRateLimit": rate_limit,
        "timeout": section.request_timeout_ms,
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "watchTickers": {"name": "ticker"},
            "recvWindow": section.recv_window_ms,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
            "createOrder": {"quoteOrderQty": False},
        },
        "streaming": {"keepAlive": section.keepalive_ms},
    }
    if section.api_key is not None and section.api_secret is not None:
        config["apiKey"] = section.api_key.get_secret_value()
        config["secret"] = section.api_secret.get_secret_value()
    return config


def build_client(section: ExchangeSection, endpoint: str | None = None) -> EndpointBinance:
    """A fresh, unconnected ccxt.pro client for `section` (the caller closes it)."""
    endpoint = endpoint or section.endpoint
    client = EndpointBinance(client_config(section, endpoint))
    if endpoint is not None:
        client.urls["api"] = rewrite_urls(client.urls["api"], endpoint)
        scheme, netloc, prefix = endpoint_parts(endpoint)
        client.hotcoin_endpoint = f"{scheme}://{netloc}{prefix}/"
        if scheme == "http":
            client.timeout_on_exit = 0  # the 250 ms close grace is for TLS; plain HTTP needs none
    return client
