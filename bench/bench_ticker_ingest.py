"""Cost of ingesting one full-market `!ticker@arr` message into a `TickerBatch`.

    .venv/bin/python -m bench.bench_ticker_ingest [--symbols 2000] [--repeat 30] [--live SECONDS]

Three measurements on the same generated message (exact Binance shape, no network):
  (a) ccxt.pro's own parsing: the raw message, orjson-decoded as ccxt's client does, fed
      to a binance instance's `handle_message` (markets loaded offline);
  (b) our conversion of ccxt's resulting ticker dicts into a `TickerBatch`;
  (c) the fast path: raw bytes -> orjson -> numpy columns -> `TickerBatch`.
It prints the median (and best) of each and the ratio (a + b) / c. (a) includes the
orjson decode of the frame, as ccxt's client does it before `handle_message`.

`--live SECONDS` adds an end-to-end run: `hotcoin sim-exchange` in a child process on
127.0.0.1 pushing `!ticker@arr` for `--symbols` symbols every `--push-interval` s, read
through `CcxtGateway.watch_tickers()` with each decoder; it reports batches/s and this
process's CPU (the server's is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

Json = dict[str, Any]
DAY_MS = 86_400_000
EVENT_MS = 1_700_000_000_000  # the generated message's event time, and the clock it is decoded at


def exchange_info_symbols(n: int, seed: int = 1) -> list[Json]:
    """`n` exchangeInfo symbol entries (spot, TRADING, USDT quoted) with Binance's filters."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        tick = rnd.choice(["0.00000001", "0.00000100", "0.00010000", "0.01000000"])
        out.append(
            {
                "symbol": f"C{i}USDT",
                "status": "TRADING",
                "baseAsset": f"C{i}",
                "baseAssetPrecision": 8,
                "quoteAsset": "USDT",
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "permissions": ["SPOT"],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": "0.10000000", "maxQty": "90000000.00000000", "stepSize": "0.10000000"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000", "maxNotional": "9000000.00000000"},
                ],
            }
        )
    return out


def ticker_array(n: int, event_ms: int = EVENT_MS, seed: int = 2) -> list[Json]:
    """A `!ticker@arr` payload of `n` 24hrTicker rows, field for field as Binance sends them."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        p = rnd.uniform(0.0001, 1000)
        rows.append(
            {
                "e": "24hrTicker",
                "E": event_ms,
                "s": f"C{i}USDT",
                "p": f"{p * 0.01:.8f}",
                "P": "1.010",
                "w": f"{p * 0.995:.8f}",
                "x": f"{p * 0.99:.8f}",
                "c": f"{p:.8f}",
                "Q": "12.30000000",
                "b": f"{p * 0.999:.8f}",
                "B": "100.00000000",
                "a": f"{p * 1.001:.8f}",
                "A": "80.00000000",
                "o": f"{p * 0.99:.8f}",
                "h": f"{p * 1.05:.8f}",
                "l": f"{p * 0.95:.8f}",
                "v": f"{rnd.uniform(1e3, 1e8):.8f}",
                "q": f"{rnd.uniform(1e4, 1e9):.8f}",
                "O": event_ms - DAY_MS,
                "C": event_ms - 1,
                "F": 1000,
                "L": 1000 + i,
                "n": 1 + i,
            }
        )
    return rows


def offline_binance(symbols: list[Json]) -> Any:
    """A ccxt.pro binance instance with `symbols` loaded, no network; the caller closes it."""
    import ccxt.pro

    ex = ccxt.pro.binance({"options": {"watchTickers": {"name": "ticker"}}})
    ex.options["crossMarginPairsData"] = []
    ex.options["isolatedMarginPairsData"] = []
    ex.set_markets([ex.parse_market(s) for s in symbols])
    return ex


def _timed_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, best) of `repeat` runs in ms; the best is the figure least disturbed by a busy box."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), min(samples)


async def run(n: int, repeat: int) -> dict[str, float]:
    from engine.market.ccxt_parse import tickers_to_batch
    from engine.market.fast_tickers import TickerArrayDecoder

    symbols = exchange_info_symbols(n)
    raw = orjson.dumps(ticker_array(n))
    ex = offline_binance(symbols)
    try:
        client = ex.client("wss://stream.binance.com:9443/ws/0")
        captured: dict[str, Any] = {}

        def ccxt_parse() -> None:
            ex.tickers = {}
            ex.handle_message(client, orjson.loads(raw))
            captured["tickers"] = dict(ex.tickers)

        a, a_best = _timed_ms(ccxt_parse, repeat)
        b, b_best = _timed_ms(lambda: tickers_to_batch(captured["tickers"], 0), repeat)
        decoder = TickerArrayDecoder({s["symbol"]: f"{s['baseAsset']}/USDT" for s in symbols})
        c, c_best = _timed_ms(lambda: decoder.decode(raw, EVENT_MS), repeat)
        assert len(captured["tickers"]) == n and len(decoder.decode(raw, EVENT_MS) or ()) == n
    finally:
        await ex.close()
    return {
        "bytes": float(len(raw)), "a": a, "b": b, "c": c, "ratio": (a + b) / c,
        "a_best": a_best, "b_best": b_best, "c_best": c_best, "ratio_best": (a_best + b_best) / c_best,
    }


async def live(seconds: float, n: int, push_interval: float) -> dict[str, dict[str, float]]:
    import sys

    from engine.config.sections.exchange import ExchangeSection
    from engine.market.ccxt_gateway import CcxtGateway

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from hotcoin_tui.cli import main; main()", "sim-exchange",
        "--symbols", str(n), "--push-interval", str(push_interval),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    results: dict[str, dict[str, float]] = {}
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"sim-exchange did not print its URL (got {url!r})")
        for decoder in ("ccxt", "fast"):
            gateway = CcxtGateway(ExchangeSection(endpoint=url, ticker_decoder=decoder))
            try:
                for _ in range(3):
                    await gateway.watch_tickers()
                batches = rows = 0
                wall0, cpu0 = time.perf_counter(), time.process_time()
                while time.perf_counter() - wall0 < seconds:
                    rows += len(await gateway.watch_tickers())
                    batches += 1
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            finally:
                await gateway.close()
            results[decoder] = {
                "batches_per_s": batches / wall, "rows_per_batch": rows / max(1, batches),
                "cpu_pct": 100 * cpu / wall, "cpu_ms_per_batch": 1000 * cpu / max(1, batches),
            }
    finally:
        proc.terminate()
        await proc.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--live", type=float, default=0.0, help="seconds per decoder against the sim (0: skip)")
    parser.add_argument("--push-interval", type=float, default=0.2, help="sim push interval for --live")
    args = parser.parse_args()
    r = asyncio.run(run(args.symbols, args.repeat))
    print(f"!ticker@arr, {args.symbols} symbols, {r['bytes'] / 1024:.0f} KiB; {args.repeat} runs: median (best)")
    print(f"  (a) ccxt handle_message          {r['a']:8.2f} ms ({r['a_best']:.2f})")
    print(f"  (b) ccxt dicts -> TickerBatch     {r['b']:8.2f} ms ({r['b_best']:.2f})")
    print(f"  (c) fast path orjson -> arrays    {r['c']:8.2f} ms ({r['c_best']:.2f})")
    print(f"  (a+b)/(c) = {r['ratio']:.1f}x ({r['ratio_best']:.1f}x)")
    if args.live > 0:
        runs = asyncio.run(live(args.live, args.symbols, args.push_interval))
        print(f"live, sim pushing every {args.push_interval} s, {args.live:g} s per decoder (client CPU only):")
        for decoder, m in runs.items():
            print(
                f"  {decoder:5s} {m['batches_per_s']:5.1f} batches/s of {m['rows_per_batch']:.0f} rows, "
                f"{m['cpu_pct']:5.1f}% of a core, {m['cpu_ms_per_batch']:.1f} ms CPU per batch"
            )


if __name__ == "__main__":
    main()
