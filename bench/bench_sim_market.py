"""How fast the simulated market runs: build, advance per sim second, tickers(), book(), klines().

    .venv/bin/python -m bench.bench_sim_market

`book()` is one symbol (per order), `books()` the whole market (for ticker streams).
Budgets (the brief): advancing 300 symbols by 1 s of sim time well under 1 ms, 2,000 symbols
in a few ms; `tickers()` for 2,000 symbols in ~1 ms. `tickers()` is timed twice: right after
a minute boundary (it recomputes the 24 h high/low once per sim minute) and within a minute.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from engine.config.sections.sim import SimSection
from engine.sim.market import SimMarket

T0 = 1_618_531_200_000
SECOND = 1_000
MINUTE = 60_000


def per_call(fn: Callable[[], object], repeat: int) -> float:
    """Best-of-3 mean seconds per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def run(symbols: int, sim_seconds: int) -> None:
    start = time.perf_counter()
    market = SimMarket(SimSection(symbols=symbols), T0)
    built = time.perf_counter() - start
    market.advance_to(T0 + 59 * SECOND)  # listings and moves need not be due; pay warm-up once

    t = market.now_ms
    start = time.perf_counter()
    for _ in range(sim_seconds):
        t += SECOND
        market.advance_to(t)
    advance = (time.perf_counter() - start) / sim_seconds

    firsts = []
    for _ in range(15):  # median over minute boundaries: one sample is at the mercy of the OS
        market.advance_to((market.now_ms // MINUTE + 1) * MINUTE)
        start = time.perf_counter()
        market.tickers()
        firsts.append(time.perf_counter() - start)
    first_in_minute = statistics.median(firsts)
    tickers = per_call(market.tickers, 200)
    symbol = market.symbols[len(market.symbols) // 2]
    book = per_call(lambda: market.book(symbol), 2000)
    books = per_call(market.books, 200)
    klines = per_call(lambda: market.klines(symbol, "1m", limit=500), 50)
    klines_1h = per_call(lambda: market.klines(symbol, "1h", limit=24), 200)
    print(
        f"{symbols:>5} symbols: build {built * 1e3:7.1f} ms | advance 1 s {advance * 1e6:7.1f} us "
        f"| tickers {tickers * 1e6:7.1f} us (first in a minute, median {first_in_minute * 1e6:7.1f} us) "
        f"| book {book * 1e6:5.1f} us | books {books * 1e6:6.1f} us | klines 1m x500 {klines * 1e3:5.2f} ms | 1h x24 {klines_1h * 1e3:5.2f} ms "
        f"| rings {market.footprint() / 2**20:6.1f} MiB"
    )


def main() -> None:
    print(f"SimMarket, step_ms={SimSection().step_ms}, ring {SimSection().candle_ring_minutes} min")
    run(300, 3_600)
    run(2_000, 900)


if __name__ == "__main__":
    main()
