"""A halted coin leaves the pool: a market whose status is not TRADING fails a filter
(`market_trading`), and a symbol no fresh ticker reached for `momentum_no_trade_ms` scores no
momentum. Before, a coin halted after a pump kept its rise from the 60 min low as heat and
stayed rank 1 for the hour that rise took to leave the window."""

from __future__ import annotations

import dataclasses

from engine.discovery import Discovery
from engine.domain.market import MarketStatus
from tests.kit.discovery import pumped_pepe

NO_TRADE_MS = 300_000  # discovery.anomaly.momentum_no_trade_ms, by default


def heat(d: Discovery, symbol: str) -> float:
    row = d.windows.row_of(symbol)
    assert row is not None
    return float(d.last_frame.heat[row])


def test_a_market_not_trading_leaves_the_pool_at_once() -> None:
    d, f = pumped_pepe()
    halted = [dataclasses.replace(m, status=MarketStatus.BREAK) if m.symbol == "PEPE/USDT" else m for m in f.markets()]
    d.on_markets(halted, f.ts_ms)
    cycle = d.on_batch(f.batch())
    assert ("PEPE/USDT", "filtered: market_trading") in cycle.left
    assert "PEPE/USDT" not in d.pool
    checks = {c["name"]: c for c in d.filters.explain("PEPE/USDT", 5e7, None)}
    assert checks["market_trading"] == {"name": "market_trading", "passed": False, "value": "BREAK", "threshold": "TRADING"}
    d.on_markets(f.markets(), f.ts_ms)  # trading again: a candidate again
    assert d.filters.explain("PEPE/USDT", 5e7, None)[5]["passed"] is True


def test_a_symbol_no_fresh_ticker_reaches_loses_its_momentum() -> None:
    d, f = pumped_pepe()
    f.silent.add("PEPE/USDT")  # halted: the same ticker again, same price, same event time
    frozen = f.prices["PEPE/USDT"]
    slots = NO_TRADE_MS // d.cfg.windows.slot_ms
    for _ in range(slots + 1):
        f.prices["PEPE/USDT"] = frozen
        d.on_batch(f.batch())
    row = d.windows.row_of("PEPE/USDT")
    assert d.last_frame.parts["momentum"][row] == 0.0
    assert heat(d, "PEPE/USDT") < d.cfg.pool.min_heat
    f.silent.clear()  # trading resumes: momentum counts again
    f.prices["PEPE/USDT"] = frozen * 1.05
    d.on_batch(f.batch())
    assert d.last_frame.parts["momentum"][row] > 0.0
