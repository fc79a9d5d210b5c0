"""How well discovery finds pumps and listings early: on the simulated market and on real candles.

(a) Simulated market (`engine.sim.market.SimMarket`): tickers once every `--sim-step` seconds
    for `--sim-hours`; an injected pump is *detected* when its symbol is in the pool's top 10
    between its start and its peak; the delay is from the pump's start.
(b) Real Binance 1m candles (../shared/data/binance, April 2021, 34 pairs): one TickerBatch per
    minute (at each candle's close), with rolling 24 h figures computed from the candles
    (quote volume = volume x typical price). A labelled major pump (events.csv, kind=major,
    timeframe=1m) is *flagged* when its pair is in the pool's top 10 between its low and its
    peak; the delay is measured from `onset_ms` (the open of the first candle closing 5% above
    the low, whose close is known one minute later, so the earliest possible delay is +1 min).
    Listings (EPS, TKO, BTG) are scored from their first candle. "Calm" pairs (no major
    episode) show the false-alarm side: pool entries on them. Precision-ish: the share of all
    pool entries that fall inside a labelled move (major or minor, from 30 min before its low
    to its peak) or within a day of a listing.

The detector never sees the labels: they are read only to score what it did.

    .venv/bin/python -m bench.bench_discovery_quality            # both parts
    .venv/bin/python -m bench.bench_discovery_quality --skip-sim
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from engine.config.sections.discovery import (
    AnomalySection,
    DiscoverySection,
    PoolSection,
    WindowsSection,
)
from engine.discovery.pipeline import Discovery
from engine.domain.market import Market, MarketFilters
from engine.domain.ticker import TickerBatch

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance"
MIN = 60_000
DAY_MIN = 1440
TOP = 10


@dataclass
class Flags:
    """Per symbol: times (batch ts) when it was in the pool's top 10, and pool entry times."""

    top: dict[str, list[int]]
    entries: dict[str, list[int]]


def _market(symbol: str) -> Market:
    base, quote = symbol.split("/")
    return Market(symbol, f"{base}{quote}", base, quote, MarketFilters(Decimal("0.00000001"), Decimal("0.01")))


def minute_config() -> DiscoverySection:
    """Discovery fed one batch a minute: one slot per batch, every baseline refreshed each batch."""
    return DiscoverySection(
        windows=WindowsSection(slot_ms=MIN, history_slots=256, capacity=64, volume_bucket_ms=MIN),
        anomaly=AnomalySection(baseline_refresh_batches=1),
        pool=PoolSection(bar_ms=MIN),
    )


def _record(flags: Flags, disc_cycle_entered: tuple[str, ...], snapshot_symbols: tuple[str, ...], ts: int) -> None:
    for s in snapshot_symbols[:TOP]:
        flags.top[s].append(ts)
    for s in disc_cycle_entered:
        flags.entries[s].append(ts)


# ----------------------------------------------------------------------------- real candles
def load_real() -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    files = sorted(DATA.glob("*_USDT-1m.parquet"))
    frames = {f.name.split("-")[0].replace("_", "/"): pd.read_parquet(f) for f in files}
    start = min(int(df.timestamp_ms.iloc[0]) for df in frames.values())
    end = max(int(df.timestamp_ms.iloc[-1]) for df in frames.values())
    grid = np.arange(start, end + MIN, MIN, dtype=np.int64)
    pairs = sorted(frames)
    cols: dict[str, np.ndarray] = {k: np.full((len(grid), len(pairs)), np.nan) for k in ("o", "h", "l", "c", "qv")}
    for j, p in enumerate(pairs):
        df = frames[p]
        idx = ((df.timestamp_ms.to_numpy() - start) // MIN).astype(np.int64)
        cols["o"][idx, j] = df.open.to_numpy()
        cols["h"][idx, j] = df.high.to_numpy()
        cols["l"][idx, j] = df.low.to_numpy()
        cols["c"][idx, j] = df.close.to_numpy()
        cols["qv"][idx, j] = df.volume.to_numpy() * (df.high.to_numpy() + df.low.to_numpy() + df.close.to_numpy()) / 3
    return pairs, grid, cols


def rolling_24h(pairs: list[str], cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    qv = np.nan_to_num(cols["qv"])
    cs = np.cumsum(qv, axis=0)
    lag = np.vstack([np.zeros((DAY_MIN, len(pairs))), cs[:-DAY_MIN]])
    out = {"qv24": cs - lag}
    out["h24"] = pd.DataFrame(cols["h"]).rolling(DAY_MIN, min_periods=1).max().to_numpy()
    out["l24"] = pd.DataFrame(cols["l"]).rolling(DAY_MIN, min_periods=1).min().to_numpy()
    opens = pd.DataFrame(cols["o"]).ffill()
    out["o24"] = opens.shift(DAY_MIN - 1).fillna(opens.bfill()).to_numpy()
    return out


def run_real(cfg: DiscoverySection) -> tuple[Flags, list[str], float]:
    pairs, grid, cols = load_real()
    roll = rolling_24h(pairs, cols)
    disc = Discovery(cfg)
    flags = Flags(defaultdict(list), defaultdict(list))
    listed: set[str] = set()
    t0 = time.perf_counter()
    present = ~np.isnan(cols["c"])
    started = np.maximum.accumulate(present, axis=0)
    for i, m in enumerate(grid):
        row = present[i]
        if not row.any():
            continue  # exchange-wide outage: no batch
        ts = int(m) + MIN  # the candle's close
        now_listed = {pairs[j] for j in np.flatnonzero(started[i])}
        if now_listed != listed:
            listed = now_listed
            disc.on_markets([_market(p) for p in sorted(listed)], ts)
        js = np.flatnonzero(row)
        n = len(js)
        close = cols["c"][i, js]
        batch = TickerBatch(
            ts_ms=ts,
            symbols=tuple(pairs[j] for j in js),
            event_ms=np.full(n, ts, dtype=np.int64),
            last=close,
            bid=close,
            ask=close,
            open_24h=roll["o24"][i, js],
            high_24h=roll["h24"][i, js],
            low_24h=roll["l24"][i, js],
            base_volume_24h=roll["qv24"][i, js] / close,
            quote_volume_24h=roll["qv24"][i, js],
            trade_count_24h=np.full(n, -1, dtype=np.int64),
        )
        cycle = disc.on_batch(batch)
        _record(flags, cycle.entered, cycle.snapshot.symbols, ts)
    return flags, pairs, time.perf_counter() - t0


def first_flag(times: list[int], lo: int, hi: int) -> int | None:
    arr = np.asarray(times, dtype=np.int64)
    hit = arr[(arr >= lo) & (arr <= hi)]
    return int(hit[0]) if len(hit) else None


def score_real(flags: Flags, pairs: list[str]) -> None:
    ev = pd.read_csv(DATA / "events.csv")
    ev = ev[ev.timeframe == "1m"]
    majors = ev[ev.kind == "major"]
    print(f"\n(b) real 1m candles: {len(pairs)} pairs, {len(majors)} major pumps (>= +30% within 60 min)")
    delays = []
    rows = []
    for e in majors.itertuples():
        f = first_flag(flags.top.get(e.pair, []), int(e.low_ms), int(e.peak_ms))
        d = None if f is None else (f - int(e.onset_ms)) / MIN
        delays.append(d)
        rows.append((e.pair, pd.Timestamp(int(e.onset_ms), unit="ms"), e.rise_pct, d))
    flagged = [d for d in delays if d is not None]
    within5 = [d for d in flagged if d <= 5]
    print(f"  flagged (top {TOP}) between low and peak: {len(flagged)}/{len(delays)} = {len(flagged) / len(delays):.0%}")
    print(f"  flagged within 5 min of onset:           {len(within5)}/{len(delays)} = {len(within5) / len(delays):.0%}")
    if flagged:
        print(f"  delay from onset, min: median {np.median(flagged):+.0f}, p90 {np.percentile(flagged, 90):+.0f}, max {max(flagged):+.0f}")
    late = [r for r in rows if r[3] is None or r[3] > 5]
    for pair, onset, rise, d in late:
        print(f"    late/missed: {pair:11s} onset {onset:%m-%d %H:%M} +{rise:.0f}%  delay {'missed' if d is None else f'{d:+.0f} min'}")
    print("  listings (delay from the first candle):")
    for e in ev[ev.kind == "listing"].itertuples():
        f = first_flag(flags.top.get(e.pair, []), int(e.listing_ms), int(e.listing_ms) + DAY_MIN * MIN)
        print(f"    {e.pair:10s} {'missed' if f is None else f'flagged after {(f - int(e.listing_ms)) / MIN:.0f} min'}")
    # false-alarm side
    calm = sorted(set(pairs) - set(majors.pair))
    days = (max(max(v) for v in flags.top.values()) - min(min(v) for v in flags.top.values())) / 86_400_000 if flags.top else 0
    calm_entries = sum(len(flags.entries.get(p, [])) for p in calm)
    total_entries = sum(len(v) for v in flags.entries.values())
    moves = ev[ev.kind.isin(["major", "minor"])]
    spans = defaultdict(list)
    for e in moves.itertuples():
        spans[e.pair].append((int(e.low_ms) - 30 * MIN, int(e.peak_ms)))
    for e in ev[ev.kind == "listing"].itertuples():
        spans[e.pair].append((int(e.listing_ms), int(e.listing_ms) + DAY_MIN * MIN))
    explained = sum(1 for p, ts_list in flags.entries.items() for t in ts_list if any(lo <= t <= hi for lo, hi in spans.get(p, [])))
    print(f"  pool entries: {total_entries} in {days:.1f} days ({total_entries / max(days, 1e-9):.1f}/day over {len(pairs)} pairs)")
    print(f"  entries on the {len(calm)} calm pairs: {calm_entries} ({calm_entries / max(days, 1e-9) / len(calm):.2f} per pair-day)")
    print(f"  precision-ish: entries inside a labelled move or listing day: {explained}/{total_entries} = {explained / max(total_entries, 1):.0%}")


# ----------------------------------------------------------------------------- simulated market
def run_sim(hours: float, step_s: int, symbols: int) -> None:
    from engine.config.sections.sim import SimSection
    from engine.sim.market import SimMarket

    start = 1_700_006_400_000
    settings = SimSection(symbols=symbols)
    market = SimMarket(settings, start)
    slot_ms = 15_000 if step_s <= 15 else MIN
    cfg = DiscoverySection(
        windows=WindowsSection(slot_ms=slot_ms, history_slots=256 if slot_ms == MIN else 300),
        anomaly=AnomalySection(baseline_refresh_batches=max(1, slot_ms // (step_s * 1000))),
    )
    disc = Discovery(cfg)
    flags = Flags(defaultdict(list), defaultdict(list))
    end = start + int(hours * 3_600_000)
    t = start
    known: set[str] = set()
    qv_at_start: dict[tuple[str, int], float] = {}
    t0 = time.perf_counter()
    while t < end:
        t += step_s * 1000
        market.advance_to(t)
        mk = market.markets()
        names = {m.symbol for m in mk}
        if names != known:
            known = names
            disc.on_markets(mk, t)
        cycle = disc.on_batch(market.tickers())
        _record(flags, cycle.entered, cycle.snapshot.symbols, t)
        for p in market.ground_truth:  # liquidity when the pump starts (for the split below)
            row = disc.windows.row_of(p.symbol)
            if p.start_ms <= t and (p.symbol, p.start_ms) not in qv_at_start and row is not None:
                qv_at_start[(p.symbol, p.start_ms)] = float(disc.windows.quote_volume_24h[row])
    elapsed = time.perf_counter() - t0
    warm = start + 3_600_000  # the first hour builds the baselines
    pumps = [p for p in market.ground_truth if p.kind == "pump" and warm <= p.start_ms and p.peak_ms <= end]
    delays = []
    for p in pumps:
        f = first_flag(flags.top.get(p.symbol, []), p.start_ms, p.peak_ms)
        delays.append(None if f is None else (f - p.start_ms) / MIN)
    got = [d for d in delays if d is not None]
    min_qv = cfg.filters.min_quote_volume_24h
    liquid = [d for p, d in zip(pumps, delays, strict=True) if qv_at_start.get((p.symbol, p.start_ms), 0.0) >= min_qv]
    print(f"(a) simulated market: {symbols} symbols, {hours:g} h, a batch every {step_s} s ({elapsed:.1f} s to run)")
    if pumps:
        print(f"  injected pumps (after the first hour): {len(pumps)}; detected in top {TOP} before the peak: {len(got)}/{len(pumps)} = {len(got) / len(pumps):.0%}")
        hit = [d for d in liquid if d is not None]
        print(f"  of them on symbols passing the {min_qv:,.0f} USDT 24 h volume filter: {len(hit)}/{len(liquid)}")
    if got:
        print(f"  delay from pump start, min: median {np.median(got):.1f}, p90 {np.percentile(got, 90):.1f}, max {max(got):.1f}")
    lst = [x for x in market.listings if warm <= x.listed_ms <= end - 30 * MIN]  # 30 min to be seen
    for x in lst:
        f = first_flag(flags.top.get(x.symbol, []), x.listed_ms, end)
        print(f"  listing {x.symbol}: {'missed' if f is None else f'flagged after {(f - x.listed_ms) / MIN:.1f} min'}")
    pump_syms = {p.symbol for p in market.ground_truth}
    spurious = sum(len(v) for s, v in flags.entries.items() if s not in pump_syms and s not in {x.symbol for x in market.listings})
    total = sum(len(v) for v in flags.entries.values())
    print(f"  pool entries: {total}; on symbols with no scheduled move or listing: {spurious}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--sim-hours", type=float, default=8.0)
    ap.add_argument("--sim-step", type=int, default=15, help="seconds between ticker batches in the sim")
    ap.add_argument("--sim-symbols", type=int, default=300)
    args = ap.parse_args()
    if not args.skip_sim:
        run_sim(args.sim_hours, args.sim_step, args.sim_symbols)
    if not args.skip_real:
        if not (DATA / "events.csv").is_file():
            print(f"(b) skipped: {DATA} not present")
            return
        flags, pairs, elapsed = run_real(minute_config())
        print(f"\n(b) ran {sum(1 for _ in pairs)} pairs x 28 days of minutes in {elapsed:.1f} s")
        score_real(flags, pairs)


if __name__ == "__main__":
    main()
