"""Market access: one async `Gateway` for everything the engine needs from an exchange.

- `gateway`: the interface and its small types (`Balance`, `StreamHealth`, `UserResync`, notices)
- `ccxt_gateway`: the live implementation over ccxt.pro Binance spot (`CcxtGateway`)
- `ccxt_client`: building the ccxt client (spot options, keep-alive, endpoint override)
- `endpoint`: checking an --endpoint URL, without importing ccxt (the CLI checks it up front)
- `exchange_clock`: the exchange's time, re-read when it moves; what signed requests are measured against
- `ccxt_stream`: a ccxt instance as one stream connection, kept armed by a pump
- `ccxt_parse`: ccxt's dicts -> domain values
- `rest_guard`: REST calls under the rate-limit silence, errors classified
- `known_orders`: what we last knew of orders and balances, for the re-check after a gap
- `stream`: reconnect / rate-limit / rotation / watchdog / gap re-check around one subscription
- `errors`: the ccxt exception -> `ErrorClass` table
- `backoff`: the clock and the two backoff schedules
- `candle_cache`: candle fetches reused within a bar
- `fast_tickers`: raw WebSocket + orjson decoder for the full-market ticker stream
- `fake`: `FakeGateway` and `ManualClock` for tests
"""

from engine.market.gateway import (
    Balance,
    ExchangeFault,
    Gateway,
    GatewayNotice,
    NoticeKind,
    StreamHealth,
    UserResync,
)

__all__ = ["Balance", "ExchangeFault", "Gateway", "GatewayNotice", "NoticeKind", "StreamHealth", "UserResync"]
