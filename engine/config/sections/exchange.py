from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from engine.config.sections.base import Section


class ExchangeSection(Section):
    name: Literal["sim", "binance"] = Field(
        "sim", description="`sim` runs on the built-in simulated market; `binance` on Binance spot."
    )
    endpoint: str | None = Field(
        None,
        description="Base URL of another Binance-compatible host (e.g. http://127.0.0.1:8765); "
        "None keeps ccxt's own Binance endpoints.",
    )
    quote_asset: str = Field("USDT", description="Only markets quoted in this asset are traded.")
    api_key: SecretStr | None = Field(None, description="Binance API key (secrets file or env only).")
    api_secret: SecretStr | None = Field(None, description="Binance API secret (secrets file or env only).")
    recv_window_ms: int = Field(5000, ge=1000, le=60000, description="recvWindow sent on signed requests.")
    keepalive_ms: int = Field(
        10000, ge=1000, description="WebSocket ping interval; a half-open socket is detected in ~2x this."
    )
    request_timeout_ms: int = Field(10000, ge=500, description="REST request timeout.")
