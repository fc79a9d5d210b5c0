"""A hot little market for trading-core tests and the decision-latency benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain import Candidate, Candle, HeatComponents, Market, TickerBatch
from engine.journal.events import make_trace_id
from engine.signals.bars import BarHistory
from tests.kit.domain import make_batch, make_market

MINUTE = 60_000
NOW = 1_618_531_200_000 + 120 * MINUTE + 1_000  # 1 s into a bar, 2 h after T0


def hot_bars(symbol: str, last_open_ms: int, price: float, *, bars: int = 61, rising: int = 5) -> list[Candle]:
    """Flat bars, then `rising` bars up 0.5 % each on three times the volume, a spike on the last:
    every default entry rule passes on it."""
    out = []
    start = last_open_ms - (bars - 1) * MINUTE
    for k in range(bars):
        up = max(0, k - (bars - 1 - rising))
        close = price * 1.005**up
        open_ = price * 1.005 ** max(0, up - 1)
        volume = 1000.0 if up == 0 else (5000.0 if k == bars - 1 else 3000.0)
        out.append(
            Candle(symbol, "1m", start + k * MINUTE, open_, max(open_, close) * 1.0005, min(open_, close) * 0.9995, close, volume)
        )
    return out


def feed_hot(history: BarHistory, symbols: Sequence[str], now_ms: int, price: float = 1.0) -> None:
    last_open = (now_ms // MINUTE) * MINUTE - MINUTE
    for s in symbols:
        for c in hot_bars(s, last_open, price):
            history.add(c)
    for c in hot_bars("BTC/USDT", last_open, 30_000.0, rising=0):
        history.add(c)


def symbols(n: int) -> list[str]:
    return [f"C{i:03d}/USDT" for i in range(n)]


def markets(names: Sequence[str]) -> dict[str, Market]:
    return {s: make_market(s, tick_size="0.0001", step_size="0.1", min_qty="0.1", min_notional="5") for s in names}


def candidates(names: Sequence[str], now_ms: int, *, heat: float = 85.0, price: float = 1.025) -> list[Candidate]:
    return [
        Candidate(
            trace_id=make_trace_id("test", s, now_ms),
            symbol=s,
            ts_ms=now_ms,
            heat=heat,
            components=HeatComponents(momentum=0.8, volume_surge=0.7),
            rank=i + 1,
            price=price,
            quote_volume_24h=5e7,
        )
        for i, s in enumerate(names)
    ]


def book(prices: dict[str, float], now_ms: int) -> TickerBatch:
    return make_batch(prices, ts_ms=now_ms)
