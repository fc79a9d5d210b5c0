"""The volume baseline reads a slot with no positive volume as unknown, never as a sample of 0.

Two ways the windows end up holding empty slots that are no real volume: a first day, whose
departures are guessed at the average rate, estimates below zero after a busy day (clipped to
nothing), and an outage drains the 24 h figure while nothing trades. Counted as log1p(0) = 0,
those slots made the median log volume 0 and the MAD 0, so an ordinary minute scored
log1p(volume) / sigma_floor, some 40-60 sigma, and heat took a volume surge that was not there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.config.sections.discovery import AnomalySection, WindowsSection
from engine.discovery.anomaly import AnomalyDetector
from engine.discovery.windows import TickerWindows, log_volume
from tests.kit.discovery import TickerFeed
from tests.kit.domain import T0, make_batch

MIN = 60_000


def test_log_volume_is_unknown_where_a_slot_holds_no_positive_volume() -> None:
    logs = log_volume(np.array([[0.0, np.nan, 5.0, 1e-9]]))
    assert np.isnan(logs[0, :2]).all()
    assert logs[0, 2] == np.log1p(5.0) and logs[0, 3] > 0.0


def test_a_first_day_after_a_busy_day_scores_no_fake_volume_surge() -> None:
    """Yesterday's volume traded in two minutes of three: today, at a tenth of the rate, those
    minutes estimate below zero (clipped to nothing) and the rest at ~1.1e6. The volume z of the
    minutes that do show volume is near 0 against a baseline of the minutes that showed volume."""
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=MIN, history_slots=64, volume_bucket_ms=MIN))
    a = AnomalyDetector(AnomalySection(baseline_refresh_batches=1, min_history_slots=5), w)
    yesterday = np.where(np.arange(1440) % 3 < 2, 1.5e6, 0.0)  # 1.44e9 a day
    minutes = np.concatenate([yesterday, np.full(200, 1e5)])
    cum = np.concatenate([[0.0], np.cumsum(minutes)])
    worst = 0.0
    for m in range(1, 200):
        qv = cum[1440 + m] - cum[m]
        w.update(make_batch({"A/USDT": 1.0 + 1e-4 * (m % 2)}, ts_ms=T0 + m * MIN, quote_volume_24h={"A/USDT": qv}))
        scores = a.step()
        if m > 70:  # a full ring of today
            worst = max(worst, abs(float(scores.volume_z[0])))
    assert worst < 4.0  # was ~55 (log1p(1.1e6) / sigma_floor) against a median of zeros
    assert a.vol_history[0] < 30  # two slots in three are unknown, not zeros


def test_after_an_outage_volume_scores_only_once_enough_slots_show_volume() -> None:
    """Nothing trades for longer than the ring (the 24 h figure drains): every slot is empty. When
    trading resumes at its usual rate, the volume z is 0 (too little known history) until
    `min_history_slots` slots show volume, and then ordinary: never the log volume over the
    sigma floor."""
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=15_000, history_slots=256))
    cfg = AnomalySection(baseline_refresh_batches=1, min_history_slots=20)
    a = AnomalyDetector(cfg, w)
    feed = TickerFeed(["A/USDT", "B/USDT"], noise=0.002)
    for _ in range(80):
        w.update(feed.batch())
        a.step()
    usual = dict(feed.rate)
    feed.rate = dict.fromkeys(feed.rate, 0.0)
    for _ in range(300):
        w.update(feed.batch())
        a.step()
    feed.rate = usual
    zs = []
    for _ in range(60):
        w.update(feed.batch())
        zs.append(float(a.step().volume_z[0]))
    assert zs[: cfg.min_history_slots] == [0.0] * cfg.min_history_slots  # not enough known slots yet
    assert max(abs(z) for z in zs) < 4.0  # was ~60 right after the outage


def _outage_run(
    w: TickerWindows, a: AnomalyDetector, minutes: np.ndarray, outage: range
) -> tuple[list[int], list[float]]:
    """Batch m (at the start of minute m) shows the 24 h figure of minutes m-1440 .. m-1, which
    drains by each departing minute, and the event time of the last minute that traded: a ticker
    that did not change through `outage`. (Known slots in the ring, volume z) after each batch
    from the outage on."""
    cum = np.concatenate([[0.0], np.cumsum(minutes)])
    event = T0
    known, zs = [], []
    for m in range(1441, len(minutes)):
        if minutes[m - 1] > 0:
            event = T0 + m * MIN
        qv = cum[m] - cum[m - 1440]
        batch = make_batch({"A/USDT": 1.0 + 1e-4 * (m % 2)}, ts_ms=T0 + m * MIN, quote_volume_24h={"A/USDT": qv})
        w.update(dataclasses.replace(batch, event_ms=np.array([event])))
        if m >= outage.start:
            zs.append(float(a.step().volume_z[0]))
            known.append(int(np.count_nonzero(np.isfinite(log_volume(w.volume_ring[0])))))
    return known, zs


def test_an_outage_adds_no_volume_and_the_score_waits_for_known_slots() -> None:
    """The exchange prints nothing for 100 minutes (more than the ring): the 24 h figure falls by
    each minute leaving the window, which the day ring only knows as its 5-minute bucket's
    average, so the diff plus that guess is positive about half the time. The tickers did not
    change (their event time stands still): no slot of the outage holds volume, and after it the
    volume z is 0 until `min_history_slots` minutes have shown volume again."""
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=MIN, history_slots=64, volume_bucket_ms=5 * MIN))
    cfg = AnomalySection(baseline_refresh_batches=1, min_history_slots=5)
    a = AnomalyDetector(cfg, w)
    pattern = np.array([3e6, 0.4e6, 1.2e6, 2.5e6, 0.6e6, 1.8e6, 0.9e6])  # 7 minutes: out of step with the buckets
    minutes = np.resize(pattern, 1440 + 1500 + 100 + 30)  # a day before, a day of estimates, the outage, after
    outage = range(1440 + 1500 + 1, 1440 + 1500 + 101)  # batches showing an outage minute
    minutes[outage.start - 1 : outage.stop - 1] = 0.0
    known, zs = _outage_run(w, a, minutes, outage)
    during = len(outage)
    assert known[during - 1] == 0  # the ring holds only outage minutes: all unknown (was 30-40 known)
    after = zs[during : during + 1 + cfg.min_history_slots]  # the first batch after spans the outage: unknown too
    assert after == [0.0] * len(after)
    assert any(zs[during:])  # then scores again, against the minutes that showed volume
