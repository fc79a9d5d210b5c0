"""Replay latency on a journal of millions of events.

    .venv/bin/python -m bench.bench_replay [--events 5000000] [--path /tmp/hotcoin-bench/replay-5m.sqlite]
                                           [--samples 2000] [--cli-runs 15] [--rebuild]

Builds (once; reused while the file is there) a journal with the same schema as `Journal`
writes, by bulk inserts in big transactions and indexes built afterwards, with the trace shapes
of a live run: per one-second cycle 12 candidates, 3 stopped by a discovery filter (1 event),
8 by a signal rule (2 events), 1 entered (candidate, signal, ML shadow, risk, order, result,
fill, position: 8 events) whose take-profit exit (4 events) lands 300 cycles later, so an
entered trace spans far-apart parts of the file. Then measures:

  (a) in process, reader open: `reader.trace(id)` + `summarise` for random traces (p50/p99),
      the same by an 8-character prefix, and a cold `JournalReader(path)` + trace + summarise;
  (b) the whole `hotcoin replay <id> --journal F` process, Python start-up included.

The file is in the OS page cache after the build or a previous run (a warm cache). Target for
(a): <= 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import orjson

from engine.journal.events import check, make_trace_id
from engine.journal.reader import JournalReader
from engine.journal.schema import DDL, INSERT_EVENT, PRAGMAS, indexes
from engine.journal.trace import summarise

BUILD_MARK = "bench_replay_build_v1"
T0 = 1_700_000_000_000
EXIT_DELAY_CYCLES = 300


def _payloads() -> dict[str, list[str]]:
    ok = [check("min_quote_volume_24h", True, 5.2e7, 1e6), check("max_spread_bps", True, 8.0, 30.0), check("not_blacklisted", True, True, True)]
    bad = [check("min_quote_volume_24h", False, 4.0e5, 1e6), *ok[1:]]
    rules = [check("heat_min", True, 82.4, 60.0), check("ret_5m_min", True, 0.041, 0.02), check("volume_surge_min", True, 4.1, 3.0)]
    feats = {"ret_1m": 0.006, "ret_5m": 0.041, "ret_15m": 0.066, "volume_surge": 4.1, "rsi_14": 68.2}

    def cand(i: int, filters: list[dict[str, object]], accepted: bool) -> str:
        return orjson.dumps({
            "heat": 60.0 + i % 40, "components": {"momentum": 0.8, "volume_surge": 0.7, "listing_freshness": 0.0, "social_velocity": 0.1},
            "rank": i % 20 + 1, "price": 0.3 + i * 1e-4, "filters": filters, "accepted": accepted, "quote_volume_24h": 5.2e7,
            "returns": {"1m": 0.006, "5m": 0.041, "15m": 0.066, "60m": 0.12}, "sources": ["ticker"],
        }).decode()  # fmt: skip

    def skip(i: int) -> dict[str, object]:
        failed = check("volume_surge_min", False, 1.0 + i / 10, 3.0)
        return {"decision": "skip", "reason": "rule volume_surge_min failed", "features": feats, "ml_score": 0.41, "rules": [*rules[:2], failed]}

    def dumps(obj: object) -> str:
        return orjson.dumps(obj).decode()

    return {
        "cand_ok": [cand(i, ok, True) for i in range(32)],
        "cand_bad": [cand(i, bad, False) for i in range(32)],
        "sig_skip": [dumps(skip(i)) for i in range(16)],
        "sig_enter": [dumps({"decision": "enter", "reason": "all rules passed", "rules": rules, "features": feats, "ml_score": 0.71})],
        "shadow": [dumps({"model": "hot_lgbm@abc123", "score": 0.66})],
        "risk": [dumps({"approved": True, "checks": [check("max_concurrent_positions", True, 1, 3), check("daily_loss_pct", True, -0.4, -3.0)]})],
    }


def build(path: Path, total: int) -> None:
    """Bulk-write `total` events (and their traces rows) with the journal's schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    for stmt in DDL[:3]:  # tables; indexes after the bulk load
        conn.execute(stmt)
    p = _payloads()
    seq = 0
    events: list[tuple[object, ...]] = []
    traces: list[tuple[object, ...]] = []
    exits: deque[tuple[int, str, str, int]] = deque()  # (due cycle, trace id, symbol, cause seq)
    cycle = 0
    t0 = time.perf_counter()

    def emit(ts: int, tid: str, cause: int | None, kind: str, sym: str, payload: str) -> int:
        nonlocal seq
        seq += 1
        events.append((seq, ts, tid, cause, kind, sym, payload, 1))
        return seq

    while seq < total:
        ts = T0 + cycle * 1000
        for k in range(12):
            n = cycle * 12 + k
            tid = make_trace_id("bench-replay", n)
            sym = f"C{n % 400:03d}/USDT"
            if k < 3:
                c = emit(ts, tid, None, "candidate_snapshot", sym, p["cand_bad"][n % 32])
                traces.append((c, tid, ts, sym, "rejected"))
                continue
            c = emit(ts, tid, None, "candidate_snapshot", sym, p["cand_ok"][n % 32])
            if k < 11:
                emit(ts + 2, tid, c, "signal_snapshot", sym, p["sig_skip"][n % 16])
                traces.append((c, tid, ts, sym, "rejected"))
                continue
            s = emit(ts + 2, tid, c, "signal_snapshot", sym, p["sig_enter"][0])
            emit(ts + 2, tid, s, "model_shadow", sym, p["shadow"][0])
            r = emit(ts + 3, tid, s, "risk_check", sym, p["risk"][0])
            coid = f"hc-{tid}-e1"
            o = emit(ts + 4, tid, r, "order_attempt", sym, orjson.dumps({"client_order_id": coid, "side": "buy", "order_type": "market", "purpose": "entry", "quantity": "166"}).decode())
            o = emit(ts + 40, tid, o, "order_result", sym, orjson.dumps({"client_order_id": coid, "status": "filled", "error_class": None}).decode())
            f = emit(ts + 41, tid, o, "fill", sym, orjson.dumps({"client_order_id": coid, "side": "buy", "price": 0.3003, "quantity": 166.0, "fee_quote": 0.0498}).decode())
            pos = emit(ts + 42, tid, f, "position_update", sym, orjson.dumps({"action": "open", "quantity": 166.0, "entry_price": 0.3003, "realised_pnl": 0.0}).decode())
            traces.append((c, tid, ts, sym, "entered"))
            exits.append((cycle + EXIT_DELAY_CYCLES, tid, sym, pos))
        while exits and exits[0][0] <= cycle:
            _, tid, sym, pos = exits.popleft()
            coid = f"hc-{tid}-x1"
            o = emit(ts + 500, tid, pos, "order_attempt", sym, orjson.dumps({"client_order_id": coid, "side": "sell", "order_type": "market", "purpose": "take_profit", "quantity": "166"}).decode())
            o = emit(ts + 530, tid, o, "order_result", sym, orjson.dumps({"client_order_id": coid, "status": "filled", "error_class": None}).decode())
            f = emit(ts + 531, tid, o, "fill", sym, orjson.dumps({"client_order_id": coid, "side": "sell", "price": 0.3304, "quantity": 166.0, "fee_quote": 0.0548}).decode())
            emit(ts + 532, tid, f, "position_update", sym, orjson.dumps({"action": "close", "quantity": 0.0, "entry_price": 0.3003, "realised_pnl": 4.892}).decode())
        cycle += 1
        if len(events) >= 500_000:
            _flush(conn, events, traces)
            print(f"  built {seq:,} events ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    _flush(conn, events, traces)
    t_rows = time.perf_counter() - t0
    for stmt in indexes():
        conn.execute(stmt)
    conn.execute("INSERT INTO meta VALUES (?, ?)", (BUILD_MARK, str(seq)))
    conn.commit()
    for pragma in PRAGMAS:  # leave it as the writer would: WAL
        conn.execute(pragma)
    conn.close()
    print(f"built {seq:,} events, {cycle * 12:,} traces in {time.perf_counter() - t0:.0f} s "
          f"(rows {t_rows:.0f} s, indexes {time.perf_counter() - t0 - t_rows:.0f} s); {path.stat().st_size / 1e9:.2f} GB")  # fmt: skip


def _flush(conn: sqlite3.Connection, events: list[tuple[object, ...]], traces: list[tuple[object, ...]]) -> None:
    conn.executemany(INSERT_EVENT, events)
    conn.executemany("INSERT INTO traces (first_seq, trace_id, ts_ms, symbol, outcome) VALUES (?, ?, ?, ?, ?)", traces)
    conn.commit()
    events.clear()
    traces.clear()


def is_built(path: Path, total: int) -> bool:
    if not path.is_file():
        return False
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (BUILD_MARK,)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None and int(row[0]) >= total


def sample_traces(path: Path, n: int, outcome: str, seed: int = 7) -> list[str]:
    """Random traces with this outcome, spread over the whole file."""
    rng = random.Random(seed)
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        hi = conn.execute("SELECT MAX(first_seq) FROM traces").fetchone()[0]
        sql = "SELECT trace_id FROM traces WHERE first_seq >= ? AND outcome = ? ORDER BY first_seq LIMIT 1"
        picked = [conn.execute(sql, (rng.randint(1, hi), outcome)).fetchone() for _ in range(n)]
    return [row[0] for row in picked if row]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, ms: list[float]) -> None:
    print(f"{name:<44} p50 {pct(ms, 0.5):7.2f} ms   p99 {pct(ms, 0.99):7.2f} ms   max {max(ms):7.2f} ms   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description="replay latency on a journal of millions of events")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--path", type=Path, default=Path("/tmp/hotcoin-bench/replay-5m.sqlite"))
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--cli-runs", type=int, default=15)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    path: Path = args.path
    if args.rebuild or not is_built(path, args.events):
        build(path, args.events)
    else:
        print(f"reusing {path} ({path.stat().st_size / 1e9:.2f} GB); --rebuild to make it again")
    rejected = sample_traces(path, args.samples // 2, "rejected")
    entered = sample_traces(path, args.samples // 2, "entered")
    ids = [t for pair in zip(rejected, entered, strict=False) for t in pair]
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        total = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        n_traces = conn.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
    print(f"journal: {total:,} events, {n_traces:,} traces; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with JournalReader(path) as reader:
        full: dict[str, list[float]] = {"rejected": [], "entered": []}
        prefix, events_per = [], []
        for tid in ids:
            t = time.perf_counter()
            evs = reader.trace(tid)
            s = summarise(tid, evs)
            full[s.verdict.outcome].append((time.perf_counter() - t) * 1000)
            events_per.append(len(evs))
        for tid in ids:
            t = time.perf_counter()
            evs = reader.trace(tid[:10])
            summarise(evs[0].trace_id or tid, evs)
            prefix.append((time.perf_counter() - t) * 1000)
    cold = []
    for tid in ids[:200]:
        t = time.perf_counter()
        with JournalReader(path) as fresh:
            summarise(tid, fresh.trace(tid))
        cold.append((time.perf_counter() - t) * 1000)
    print(f"events per sampled trace: mean {statistics.mean(events_per):.1f}, max {max(events_per)} (reader kept open unless said)")
    report("(a) trace(id) + summarise, rejected traces", full["rejected"])
    report("(a) trace(id) + summarise, entered traces", full["entered"])
    report("(a) both kinds", full["rejected"] + full["entered"])
    report("(a) trace(10-char prefix) + summarise", prefix)
    report("(a) open reader + trace(id) + summarise", cold)
    runs = []
    for tid in ids[: args.cli_runs]:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hotcoin_tui.cli", "replay", tid, "--journal", str(path)], capture_output=True, check=False)
        runs.append((time.perf_counter() - t) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"hotcoin replay failed: {done.stderr.decode()[-2000:]}")
    only_journal = []
    minimal = (
        "import sys, typer; from hotcoin_tui.commands import journal_cmd; app = typer.Typer(); "
        "journal_cmd.register(app); app(sys.argv[1:])"
    )
    for tid in ids[: args.cli_runs]:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", minimal, "replay", tid, "--journal", str(path)], capture_output=True, check=True)
        only_journal.append((time.perf_counter() - t) * 1000)
    bare = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append((time.perf_counter() - t) * 1000)
    report("(b) `hotcoin replay ID --journal F` process", runs)
    report("    same, typer app with only the journal commands", only_journal)
    report("    for scale: `python -c pass`", bare)


if __name__ == "__main__":
    main()
