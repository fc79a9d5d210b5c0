"""Heat: one 0..100 number per symbol, built from components that replay can show.

    heat = 100 x min(1, sum_i weight_i x component_i),   every component in 0..1

Components (weights in `discovery.heat`):
- momentum: the larger of
    * sat(price_z, momentum_z_half) x min(1, best return / momentum_min_return), where
      sat(x, h) = x / (x + h) for x > 0, else 0, and best return is the largest 1/5/15 min return
      (the gate keeps a large z on a tiny move, a stablecoin twitching, from looking hot), and
    * min(1, run_up / runup_full): the rise from the 60 min low. Robust z-scores are slow on the
      very coins that pump (they are volatile, so +5% is "only" 2 sigma); the rise is not.
  and 0 for a symbol no fresh ticker reached for `anomaly.momentum_no_trade_ms` (a halted coin,
  one gone from the stream): its last rise would otherwise hold it hot for the hour the rise
  stays in the window, with nothing trading.
- volume_surge: sat(volume_z, volume_z_half), only while the 5 min return is not negative
  (heavy selling is not heat).
- listing_freshness: exp(-age_days / listing_tau_days) for coins with a known listing time.
- social_velocity: sat(mention-rate ratio, social_velocity_half), set by the social sources.
- social_sentiment: positive sentiment (0..1) of the recent mentions, only where mentioned.
- rank_acceleration: how far the symbol climbed in the market-wide ranking of the ticker part
  (weighted momentum + volume) since the start of the previous bar: 2 x (percentile then -
  percentile now), clipped to 0..1 (percentile 0 = top). The full ranking is taken once per
  bar; in between only the `RANK_TOP` highest scores are ranked (the rest score 0 here: a
  climb that ends outside the top 64 of the market is not heat), which keeps a 2,000-symbol
  batch from paying for a sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.config.sections.discovery import HeatSection
from engine.discovery import rolling_robust
from engine.discovery.anomaly import AnomalyScores, ScoreBlock
from engine.domain.discovery import HeatComponents
from engine.domain.ticker import FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]

DAY_MS = 86_400_000
RANK_TOP = 64
COMPONENTS: tuple[str, ...] = (
    "momentum",
    "volume_surge",
    "listing_freshness",
    "social_velocity",
    "social_sentiment",
    "rank_acceleration",
)


def saturate(x: FloatArray, half: float) -> FloatArray:
    """x / (x + half) for x > 0, else 0: 0.5 at `half`, approaching 1, never above."""
    pos = np.maximum(x, 0.0)
    out: FloatArray = pos / (pos + half)
    return out


@dataclass(frozen=True, slots=True)
class HeatFrame:
    """Heat and its components for rows [0, extent) at one batch."""

    ts_ms: int
    heat: FloatArray
    parts: dict[str, FloatArray]

    def components(self, row: int) -> HeatComponents:
        p = self.parts
        return HeatComponents(
            float(p["momentum"][row]),
            float(p["volume_surge"][row]),
            float(p["listing_freshness"][row]),
            float(p["social_velocity"][row]),
            float(p["social_sentiment"][row]),
            float(p["rank_acceleration"][row]),
        )

    def sources(self, row: int) -> tuple[str, ...]:
        out = []
        if self.parts["momentum"][row] > 0 or self.parts["volume_surge"][row] > 0:
            out.append("ticker")
        if self.parts["listing_freshness"][row] > 0:
            out.append("listing")
        if self.parts["social_velocity"][row] > 0:
            out.append("social")
        return tuple(out)


def count_higher(score: FloatArray) -> IntArray:
    """[batch, row] how many rows of the batch score strictly higher than the row.

    From one sort per batch: in sorted order, the rows scoring higher than a row are those
    after the last of its ties. Comparing every pair instead (`_count_higher_pairwise`) made
    [batch, row, row] temporaries, half a megabyte a block of 120 batches, whose allocation
    and first touch cost more in a block's pass than the counting: 3x this. NaN compares
    false with everything, but a sort puts it last, above every score: a block holding one
    is counted pair by pair (`test_anomaly_heat.py` holds the two equal). (Where the compiled
    kernel was built, `rank_block` counts in it, every pair of a batch's few dozen rows.)"""
    if np.isnan(score).any():
        return _count_higher_pairwise(score)
    k, e = score.shape
    at = np.argsort(score, axis=1)
    at += (np.arange(k) * e)[:, None]  # each sorted place's position in the flattened block
    ordered = score.take(at)
    # The first place past each sorted place's ties (e where none is): the smallest place
    # after it that opens a new value.
    past = np.full((k, e), e)
    np.copyto(past[:, :-1], np.arange(1, e), where=ordered[:, 1:] != ordered[:, :-1])  # -0.0 ties +0.0, as `>` has it
    np.minimum.accumulate(past[:, ::-1], axis=1, out=past[:, ::-1])
    out = np.empty((k, e), np.intp)
    out.put(at, e - past)
    return out


def _count_higher_pairwise(score: FloatArray) -> IntArray:
    """`count_higher` by comparing every pair, as a float32 matrix-vector product of the
    comparisons (exact: counts < 2**24)."""
    k, e = score.shape
    higher = score[:, None, :] > score[:, :, None]
    out: IntArray = (higher.reshape(k * e, e).astype(np.float32) @ np.ones(e, np.float32)).astype(np.intp)
    return out.reshape(k, e)


class HeatRanker:
    """Turns anomaly scores plus listing and social inputs into heat, vectorised over all rows."""

    def __init__(self, cfg: HeatSection, capacity: int, bar_ms: int) -> None:
        self.cfg = cfg
        self.bar_ms = bar_ms
        self.listing_ms = np.full(capacity, np.nan)  # epoch ms of the listing; NaN = unknown / old
        self.social_velocity = np.zeros(capacity)  # mention-rate ratio over baseline
        self.social_sentiment = np.zeros(capacity)  # -1..1
        self._pct_bar = np.full(capacity, np.nan)  # percentile at the start of this bar
        self._pct_prev_bar = np.full(capacity, np.nan)  # ... and of the previous bar
        self._bar = -1

    def reset_rows(self, rows: IntArray) -> None:
        self.listing_ms[rows] = np.nan
        self.social_velocity[rows] = 0.0
        self.social_sentiment[rows] = 0.0
        self._pct_bar[rows] = np.nan
        self._pct_prev_bar[rows] = np.nan

    def rank(self, scores: AnomalyScores, active: BoolArray, now_ms: int) -> HeatFrame:
        e = scores.extent
        ret = scores.returns
        parts = self._parts(
            scores.price_z, scores.volume_z, ret["1m"], ret["5m"], ret["15m"], scores.run_up, scores.traded,
            self.listing_ms[:e], self.social_velocity[:e], self.social_sentiment[:e], now_ms,
        )  # fmt: skip
        ticker = self._ticker(parts)
        parts["rank_acceleration"] = self._rank_acceleration(ticker, active[:e], now_ms)
        return HeatFrame(ts_ms=now_ms, heat=self._heat(ticker, parts, active[:e]), parts=parts)

    def rank_block(
        self, scores: ScoreBlock, active: BoolArray, listing_ms: FloatArray, social_velocity: FloatArray,
        social_sentiment: FloatArray, now_ms: IntArray, extents: IntArray,
    ) -> tuple[FloatArray, dict[str, FloatArray]]:  # fmt: skip
        """Heat and parts ([batch, row]) of a block of batches that each open a bar, rows [0, E)
        (a batch's rows from its extent up are free: inactive, their figures unused); listing
        and social inputs are each batch's. What `rank` gives batch by batch, as long as the
        market's active rows fit in the `RANK_TOP` ranked each batch (`blockable`)."""
        kernel = rolling_robust.load()
        if kernel is not None:
            return self._rank_block_native(
                kernel, scores, active, listing_ms, social_velocity, social_sentiment, now_ms, extents
            )
        r = scores.returns
        parts = self._parts(
            scores.price_z, scores.volume_z, r[:, 0], r[:, 1], r[:, 2], scores.run_up, scores.traded, listing_ms,
            social_velocity, social_sentiment, now_ms[:, None],
        )  # fmt: skip
        ticker = self._ticker(parts)
        parts["rank_acceleration"] = self._rank_block(ticker, active, now_ms, extents)
        return self._heat(ticker, parts, active), parts

    def _rank_block_native(
        self, kernel: rolling_robust.RollingRobust, scores: ScoreBlock, active: BoolArray, listing_ms: FloatArray,
        social_velocity: FloatArray, social_sentiment: FloatArray, now_ms: IntArray, extents: IntArray,
    ) -> tuple[FloatArray, dict[str, FloatArray]]:  # fmt: skip
        """`rank_block`'s figures, bit for bit, in one pass of compiled code (`heat_block`) but
        listing freshness's exp (numpy's: its vector exp and libm's may differ in the last bit):
        numpy's path makes some sixty calls on [batch, row] arrays a block."""
        cfg = self.cfg
        with np.errstate(invalid="ignore"):
            fresh = np.subtract(now_ms[:, None], listing_ms)  # as `_parts`: -max(age, 0) / tau, then exp
            np.maximum(fresh, 0.0, out=fresh)
            np.negative(fresh, out=fresh)
            np.divide(fresh, cfg.listing_tau_days * DAY_MS, out=fresh)
            np.exp(fresh, out=fresh)
        settings = np.array([
            cfg.momentum_z_half, cfg.momentum_min_return, cfg.runup_full, cfg.volume_z_half, cfg.social_velocity_half,
            cfg.w_momentum, cfg.w_volume_surge, cfg.w_listing_freshness, cfg.w_social_velocity, cfg.w_social_sentiment,
            cfg.w_rank_acceleration,
        ])  # fmt: skip
        e = active.shape[1]
        heat, parts, last = kernel.heat_block(
            (scores.price_z, scores.volume_z, scores.run_up, fresh, social_velocity, social_sentiment), scores.returns,
            scores.traded, active, extents, settings, (self._pct_prev_bar[:e], self._pct_bar[:e]),
        )  # fmt: skip
        if last >= 0:  # the stored percentiles: the last ranked batch's (rows from e up unranked)
            self._pct_prev_bar[e:] = np.nan
            self._pct_bar[e:] = np.nan
            self._bar = int(now_ms[last]) // self.bar_ms
        return heat, dict(zip(COMPONENTS, parts, strict=True))

    def blockable(self, extent: int, now_ms: int, last_ms: int | None) -> bool:
        """Whether a batch at `now_ms` (the previous one at `last_ms`) over `extent` rows can be
        ranked in a block: it opens a bar, and every row is among the `RANK_TOP` ranked."""
        return extent <= RANK_TOP and (last_ms is None or now_ms // self.bar_ms != last_ms // self.bar_ms)

    def blockable_run(self, extent: int, now_ms: IntArray, last_ms: int | None) -> bool:
        """`blockable` for each of consecutive batches at `now_ms`, the one before the first at
        `last_ms`: every one opens a bar."""
        bars = now_ms // self.bar_ms
        return (
            extent <= RANK_TOP
            and bool((bars[1:] != bars[:-1]).all())
            and (last_ms is None or int(bars[0]) != last_ms // self.bar_ms)
        )

    def _parts(
        self, price_z: FloatArray, volume_z: FloatArray, ret_1m: FloatArray, ret_5m: FloatArray, ret_15m: FloatArray,
        run_up: FloatArray, traded: BoolArray, listing_ms: FloatArray, social_velocity: FloatArray,
        social_sentiment: FloatArray, now_ms: int | IntArray,
    ) -> dict[str, FloatArray]:  # fmt: skip
        """Every component but rank acceleration, element-wise (one batch, or [batch, row])."""
        cfg = self.cfg
        best_ret = np.fmax(np.fmax(ret_1m, ret_5m), ret_15m)
        momentum = saturate(price_z, cfg.momentum_z_half)
        if cfg.momentum_min_return > 0:  # fmax/fmin: a NaN return (no history) gates to 0
            momentum *= np.fmin(np.fmax(best_ret / cfg.momentum_min_return, 0.0), 1.0)
        np.fmax(momentum, np.fmin(np.fmax(run_up / cfg.runup_full, 0.0), 1.0), out=momentum)
        momentum[~traded] = 0.0  # nothing traded lately: no move is happening (module doc)
        volume = saturate(volume_z, cfg.volume_z_half) * ~(ret_5m < 0.0)
        age_ms = now_ms - listing_ms
        fresh = np.exp(-np.maximum(age_ms, 0.0) / (cfg.listing_tau_days * DAY_MS))
        fresh[np.isnan(fresh)] = 0.0
        social_v = saturate(social_velocity, cfg.social_velocity_half)
        social_s = social_sentiment.clip(0.0, 1.0) * (social_v > 0)  # the method: np.clip's wrapper costs more
        return {
            "momentum": momentum,
            "volume_surge": volume,
            "listing_freshness": fresh,
            "social_velocity": social_v,
            "social_sentiment": social_s,
        }

    def _ticker(self, parts: dict[str, FloatArray]) -> FloatArray:
        """The ticker part of heat (weighted momentum + volume): what rank acceleration ranks."""
        out: FloatArray = self.cfg.w_momentum * parts["momentum"] + self.cfg.w_volume_surge * parts["volume_surge"]
        return out

    def _heat(self, ticker: FloatArray, parts: dict[str, FloatArray], active: BoolArray) -> FloatArray:
        cfg = self.cfg
        total = (  # summed left to right, as the weighted sum of all six always was
            ticker + cfg.w_listing_freshness * parts["listing_freshness"]
            + cfg.w_social_velocity * parts["social_velocity"] + cfg.w_social_sentiment * parts["social_sentiment"]
            + cfg.w_rank_acceleration * parts["rank_acceleration"]
        )  # fmt: skip
        heat: FloatArray = 100.0 * np.minimum(total, 1.0)
        heat[~active] = 0.0
        return heat

    def _rank_acceleration(self, ticker_score: FloatArray, active: BoolArray, now_ms: int) -> FloatArray:
        e = len(ticker_score)
        out: FloatArray = np.zeros(e)
        n = int(np.count_nonzero(active))
        if n == 0:
            return out
        score = np.where(active, ticker_score, -np.inf)
        bar = now_ms // self.bar_ms
        pct = None
        if bar != self._bar:
            # Percentile of every row (share of active rows scoring strictly higher), once a bar.
            ordered = np.sort(score)
            pct = (e - np.searchsorted(ordered, score, side="right")) / n
            self._pct_prev_bar[:] = self._pct_bar[:]
            self._pct_bar[:] = np.nan
            self._pct_bar[:e] = pct
            self._bar = bar
        k = min(RANK_TOP, e)
        top = np.argpartition(-score, k - 1)[:k] if k < e else np.arange(e)
        top = top[score[top] > 0.0]  # climbing among zeros is tie-breaking, not heat
        if len(top):
            # Every row scoring above a top row is a top row too, so ranking the top alone counts
            # the same rows as the full ranking: at a bar's first batch that one is reused.
            s = score[top]
            pct_now = pct[top] if pct is not None else (len(s) - np.searchsorted(np.sort(s), s, side="right")) / n
            climb = 2.0 * (self._pct_prev_bar[top] - pct_now)
            climb[np.isnan(climb)] = 0.0
            out[top] = climb.clip(0.0, 1.0)
        return out

    def _rank_block(self, ticker_score: FloatArray, active: BoolArray, now_ms: IntArray, extents: IntArray) -> FloatArray:
        """`_rank_acceleration` for a block of batches that each open a bar, every row ranked.

        A batch's percentiles (share of active rows scoring strictly higher) are counted by
        comparing every pair of its rows, for all batches at once; each batch's previous-bar
        percentiles are the batch before's (the stored ones for the first). A batch with no
        active row scores 0 and leaves the stored state alone, as `_rank_acceleration` does."""
        k, e = ticker_score.shape
        out: FloatArray = np.zeros((k, e))
        n = np.count_nonzero(active, axis=1)
        score = np.where(active, ticker_score, -np.inf)
        higher = count_higher(score)
        with np.errstate(invalid="ignore", divide="ignore"):
            pct = higher / n[:, None]
        pct[np.arange(e) >= extents[:, None]] = np.nan  # rows above a batch's extent are not ranked
        prev = np.full((k, e), np.nan)
        ranked = n > 0
        # Each ranked batch's previous bar is the ranked batch before it (the stored bar for the first).
        order = np.flatnonzero(ranked)
        if len(order):
            prev[order[0]] = self._pct_bar[:e]
            prev[order[1:]] = pct[order[:-1]]
        climb = 2.0 * (prev - pct)
        climb[np.isnan(climb)] = 0.0
        np.copyto(out, climb.clip(0.0, 1.0), where=(score > 0.0) & ranked[:, None])
        if len(order):
            self._pct_prev_bar[:] = np.nan
            self._pct_prev_bar[:e] = prev[order[-1]]
            self._pct_bar[:] = np.nan
            self._pct_bar[:e] = pct[order[-1]]
            self._bar = int(now_ms[ranked][-1]) // self.bar_ms
        return out
