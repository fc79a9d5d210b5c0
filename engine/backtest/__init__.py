"""Backtesting: history in, the trading code's own decisions out.

    history   the Parquet candle store (one file per symbol and timeframe) and its index
    collect   `hotcoin collect`: download candles through the exchange gateway, resumably
    feed      `HistoryFeed`: the replayed market as the runtime's feed, outages made visible
    runner    `BacktestRunner`: the runtime's cycle over the history on a virtual clock
    metrics   return, Sharpe, Sortino, drawdown, win rate, profit factor, exposure
    report    trades table, equity curve, metrics; JSON
    optimize  `hotcoin optimize`: walk-forward optuna search over the real backtest
    api       one call per command
"""
