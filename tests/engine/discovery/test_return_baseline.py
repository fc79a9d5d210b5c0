"""The return baseline after an outage: a slot no fresh ticker reached holds a price carried
forward (a gap in the stream) or repeated (a replay's silent tickers), a return of exactly 0
that observes nothing. Counted as samples, an outage's zeros put every symbol's sigma at the
floor and scored ordinary minutes as pumps for the half hour after it."""

from __future__ import annotations

from engine.config.sections.discovery import AnomalySection, WindowsSection
from engine.discovery.anomaly import AnomalyDetector
from engine.discovery.windows import TickerWindows
from tests.kit.discovery import TickerFeed

SYMBOLS = [f"C{i:02d}/USDT" for i in range(12)]
FLOOR = AnomalySection().sigma_floor


def _setup() -> tuple[TickerWindows, AnomalyDetector, TickerFeed]:
    w = TickerWindows(WindowsSection(capacity=32, slot_ms=15_000, history_slots=256))
    a = AnomalyDetector(AnomalySection(baseline_refresh_batches=1, min_history_slots=20), w)
    feed = TickerFeed(SYMBOLS, noise=0.004)
    for _ in range(300):
        w.update(feed.batch())
        a.step()
    return w, a, feed


def _sigma_before_after(w: TickerWindows, a: AnomalyDetector, feed: TickerFeed) -> None:
    rows = w.active_rows
    for _ in range(8):  # two minutes after the outage
        w.update(feed.batch())
        a.step()
    sigma = a.ret_sigma[rows]
    assert (sigma > 4 * FLOOR).all(), sigma  # the noise is ~0.004 a slot, not the floor
    assert (a.history[rows] < 100).all()  # the outage's slots are no samples
    feed.prices["C00/USDT"] *= 1.004  # an ordinary slot for this coin
    w.update(feed.batch())
    scores = a.step()
    assert scores.price_z[w.row_of("C00/USDT")] < 4.0


def test_a_gap_in_the_stream_leaves_the_return_baseline_of_real_returns() -> None:
    w, a, feed = _setup()
    feed.ts_ms += 40 * 60_000  # no batches for 40 min: `_advance` carries the prices forward
    _sigma_before_after(w, a, feed)


def test_a_replayed_outage_of_repeated_tickers_leaves_the_return_baseline_of_real_returns() -> None:
    w, a, feed = _setup()
    feed.silent.update(SYMBOLS)
    frozen = dict(feed.prices)
    for _ in range(160):  # 40 min of the same tickers again (a replay's pairs without candles)
        feed.prices.update(frozen)
        w.update(feed.batch())
        a.step()
    feed.prices.update(frozen)
    feed.silent.clear()
    _sigma_before_after(w, a, feed)
