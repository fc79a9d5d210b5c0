"""`AnomalyDetector.refresh` scales returns and log volumes in one `robust_center_scale` call;
its baselines must be bit for bit those of scaling each on its own (the two-call form below)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config.sections.discovery import AnomalySection, WindowsSection
from engine.discovery.anomaly import MAD_TO_SIGMA, AnomalyDetector, robust_center_scale
from engine.discovery.windows import TickerWindows
from tests.kit.discovery import TickerFeed


def reference_baselines(w: TickerWindows, cfg: AnomalySection, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-array form: returns and log volumes scaled separately."""
    r, head = w.history_slots, w.head
    with np.errstate(invalid="ignore", divide="ignore"):
        lp = np.log(w.price_ring[rows])
    d = np.empty_like(lp)
    np.subtract(lp[:, 1:], lp[:, :-1], out=d[:, 1:])
    np.subtract(lp[:, :1], lp[:, -1:], out=d[:, :1])
    d[~w.traded_ring[rows]] = np.nan  # a return into a slot no fresh ticker reached is unknown
    d[:, head] = np.nan
    d[:, (head + 1) % r] = np.nan
    med, mad, n = robust_center_scale(d)
    vol = w.volume_ring[rows]
    lv = np.where(vol > 0.0, np.log1p(vol), np.nan)  # a slot with no positive volume is unknown
    lv[:, head] = np.nan
    vmed, vmad, vn = robust_center_scale(lv)
    return (
        med,
        np.maximum(MAD_TO_SIGMA * mad, cfg.sigma_floor),
        n,
        vmed,
        np.maximum(MAD_TO_SIGMA * vmad, cfg.volume_sigma_floor),
        vn,
    )


@pytest.mark.parametrize("batches", [3, 40, 600], ids=["short-history", "partial-ring", "wrapped-ring"])
def test_refresh_equals_scaling_each_array_alone(batches: int) -> None:
    cfg = AnomalySection(baseline_refresh_batches=1)
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=15_000, history_slots=256))
    a = AnomalyDetector(cfg, w)
    feed = TickerFeed(["CALM/USDT", "HOT/USDT", "SLOW/USDT"], noise=0.004)
    for i in range(batches):
        if i % 7 == 3:
            feed.rate["SLOW/USDT"] = 0.0  # idle slots: zero volume, flat price
        w.update(feed.batch())
        a.step()
    rows = w.active_rows
    expected = reference_baselines(w, cfg, rows)
    for how in ("step, through a slice of rows", "rows by index"):
        if how == "rows by index":
            a.reset_rows(rows)
            a.refresh(rows)
        got = (a.ret_median[rows], a.ret_sigma[rows], a.history[rows], a.vol_median[rows], a.vol_sigma[rows],
               a.vol_history[rows])  # fmt: skip
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.tobytes() == theirs.tobytes(), how


def test_rows_with_a_hole_are_refreshed_by_index() -> None:
    """A released row in the middle: the active rows are no slice, so they are refreshed by
    index, to the reference's baselines; the free row's stays unset."""
    cfg = AnomalySection(baseline_refresh_batches=1)
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=15_000, history_slots=256))
    a = AnomalyDetector(cfg, w)
    feed = TickerFeed(["A/USDT", "B/USDT", "C/USDT"], noise=0.004)
    for _ in range(30):
        w.update(feed.batch())
    w._release(np.array([1]))
    a.reset_rows(np.array([1]))
    a.step()
    rows = w.active_rows
    assert rows.tolist() == [0, 2]
    assert np.isnan(a.ret_median[1]) and a.history[1] == 0
    for mine, theirs in zip((a.ret_median[rows], a.history[rows]), reference_baselines(w, cfg, rows)[0:3:2], strict=True):
        assert mine.tobytes() == theirs.tobytes()



def test_a_batch_adding_a_row_refreshes_every_row() -> None:
    """With baselines refreshed every batch, the batch in which a symbol first appears scores
    every other symbol on that batch's baselines too, not on the batch before's (the refresh
    cursor used to sit past the old rows, so only the new row was refreshed)."""
    cfg = AnomalySection(baseline_refresh_batches=1)
    w = TickerWindows(WindowsSection(capacity=16, slot_ms=15_000, history_slots=256))
    a = AnomalyDetector(cfg, w)
    feed = TickerFeed(["A/USDT", "B/USDT"], noise=0.004)
    for _ in range(40):
        w.update(feed.batch())
        a.step()
    feed.symbols.append("C/USDT")
    feed.prices["C/USDT"], feed.rate["C/USDT"], feed.qv24["C/USDT"] = 5.0, feed.rate["A/USDT"], feed.qv24["A/USDT"]
    upd = w.update(feed.batch())
    assert upd is not None and upd.new_rows.tolist() == [2]
    a.reset_rows(upd.new_rows)
    a.step()
    rows = w.active_rows
    got = (a.ret_median[rows], a.ret_sigma[rows], a.history[rows], a.vol_median[rows], a.vol_sigma[rows],
           a.vol_history[rows])  # fmt: skip
    for mine, theirs in zip(got, reference_baselines(w, cfg, rows), strict=True):
        assert mine.tobytes() == theirs.tobytes()
