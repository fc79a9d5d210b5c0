"""Discovery on whatever arrives: random garbage never raises, and a simulated market runs clean."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.sections.discovery import AnomalySection, WindowsSection
from engine.config.sections.sim import SimSection
from engine.discovery import Discovery
from engine.discovery.filters import FilterCode
from engine.domain.ticker import TickerBatch
from engine.sim.market import SimMarket
from tests.kit.discovery import small_config
from tests.kit.domain import T0
from tests.kit.events import RecordingSink

_values = st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-12, 1.0, 3.5, 1e12])
_symbols = st.sampled_from(["A/USDT", "B/USDT", "USDC/USDT", "BTCUP/USDT", "bad", "C/BTC", "/USDT", "D/USDT"])


@st.composite
def batches(draw: st.DrawFn) -> list[TickerBatch]:
    out = []
    ts = T0
    for _ in range(draw(st.integers(1, 12))):
        ts += draw(st.sampled_from([-5000, 0, 1000, 15_000, 3_600_000]))
        syms = tuple(draw(st.lists(_symbols, min_size=0, max_size=6)))
        n = len(syms)

        def col(n: int = n) -> np.ndarray:
            return np.array([draw(_values) for _ in range(n)], dtype=np.float64)

        out.append(
            TickerBatch(
                ts_ms=ts,
                symbols=syms,
                event_ms=np.full(n, ts, dtype=np.int64),
                last=col(),
                bid=col(),
                ask=col(),
                open_24h=col(),
                high_24h=col(),
                low_24h=col(),
                base_volume_24h=col(),
                quote_volume_24h=col(),
                trade_count_24h=np.full(n, -1, dtype=np.int64),
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(batches())
def test_garbage_batches_never_raise_and_journal_only_valid_events(seq: list[TickerBatch]) -> None:
    sink = RecordingSink()  # validates every event like the journal does
    disc = Discovery(small_config(anomaly=AnomalySection(min_history_slots=5, baseline_refresh_batches=1)), sink)
    for batch in seq:
        cycle = disc.on_batch(batch)
        for cand in cycle.snapshot:
            assert np.isfinite(cand.heat) and np.isfinite(cand.price) and cand.price > 0
    counters = disc.all_counters()
    assert all(v >= 0 for v in counters.values())


def test_an_hour_of_the_simulated_market_runs_clean() -> None:
    start = 1_700_006_400_000
    market = SimMarket(SimSection(symbols=80, pumps_per_day=200.0, listings_per_day=24.0), start)
    sink = RecordingSink()
    cfg = small_config(windows=WindowsSection(capacity=256, slot_ms=15_000, history_slots=256))
    disc = Discovery(cfg, sink)
    known: set[str] = set()
    t = start
    before = disc.windows.memory_bytes()
    while t < start + 3_600_000:
        t += 15_000
        market.advance_to(t)
        mk = market.markets()
        if {m.symbol for m in mk} != known:
            known = {m.symbol for m in mk}
            disc.on_markets(mk, t)
        cycle = disc.on_batch(market.tickers())
        assert cycle.accepted
        for cand in cycle.snapshot:
            row = disc.windows.row_of(cand.symbol)
            assert row is not None and disc.filters.static_code[row] == FilterCode.PASS
    assert disc.windows.memory_bytes() == before
    w = disc.windows
    for symbol, expected in (("USDC/USDT", FilterCode.STABLECOIN), ("BTCUP/USDT", FilterCode.LEVERAGED), ("BTC/USDT", FilterCode.PASS)):
        row = w.row_of(symbol)
        assert row is not None and disc.filters.static_code[row] == expected
    journaled = {e.symbol for e in sink.events if e.kind == "candidate_snapshot" and e.payload["accepted"]}
    assert not journaled & {"USDC/USDT", "BUSD/USDT", "TUSD/USDT", "BTCUP/USDT", "BTCDOWN/USDT"}
    counters = disc.all_counters()
    assert counters.get("windows.missing_price", 0) == 0
    assert counters["windows.batches"] == 240
