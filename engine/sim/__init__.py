"""The simulated exchange: a market generator and a Binance-compatible server over it.

- `market`: `SimMarket`, hundreds of symbols generated from a seed, with scheduled pumps,
  dumps and listings whose ground truth is recorded (`scenario`, `universe`); and
  `open_market`, which picks it or the replay from the config.
- `parquet_source`: `ParquetMarket`, the same interface replaying real 1m candles.
- `base`, `rings`: what both share: filters, book, tickers and klines over 1m ring buffers.
- `matching`, `server`: the matching engine and the HTTP/WebSocket server serving either.
"""
