from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config.sections.base import AssetCode, Secret, Section


class ExchangeSection(Section):
    name: Literal["sim", "binance"] = Field(
        "sim", description="`sim` runs on the built-in simulated market; `binance` on Binance spot."
    )
    endpoint: str | None = Field(
        None,
        description="Base URL of another Binance-compatible host (e.g. http://127.0.0.1:8765); "
        "None keeps ccxt's own Binance endpoints.",
    )
    quote_asset: AssetCode = Field(
        "USDT", description="Only markets quoted in this asset are traded (any case: `usdt` reads as USDT)."
    )
    api_key: Secret | None = Field(None, description="Binance API key (secrets file or env only).")
    api_secret: Secret | None = Field(None, description="Binance API secret (secrets file or env only).")
    recv_window_ms: int = Field(5000, ge=1000, le=60000, description="recvWindow sent on signed requests.")
    keepalive_ms: int = Field(
        10000, ge=1000, description="WebSocket ping interval; a half-open socket is detected in ~2x this."
    )
    request_timeout_ms: int = Field(10000, ge=500, description="REST request timeout.")
    enable_rate_limit: bool | None = Field(
        None, description="ccxt's client-side request pacing; None = on, except off for a loopback endpoint."
    )
    max_connection_age_s: float = Field(
        85_800.0,
        ge=1.0,
        description="Planned make-before-break reconnect of each stream after this age "
        "(Binance drops connections at 24 h; default 23 h 50 m).",
    )
    markets_refresh_s: float = Field(
        3600.0, ge=1.0, description="Reload market info (filters, status) this often; a failure retries in 5 min."
    )
    ticker_decoder: Literal["ccxt", "fast"] = Field(
        "ccxt",
        description="Full-market ticker stream reader: `ccxt` (ccxt.pro) or `fast` "
        "(raw WebSocket + orjson straight into arrays, several times cheaper).",
    )
    stale_stream_s: float = Field(
        30.0,
        ge=0.0,
        description="A market-data stream silent this long is treated as dropped and re-dialled "
        "(Binance pushes tickers every second); 0 turns the watchdog off.",
    )
    candle_cache_entries: int = Field(500, ge=1, description="Candle fetches kept in memory (LRU bound).")
