"""The feature set training jobs use on the trading box: `features_hot` from
`engine.signals.features`, the one definition shared with live and backtest, so the contract's
schema hash is the running engine's."""

from __future__ import annotations

from gpu_jobs.datasets import Candles, FeatureSet, FloatArray


def hot_feature_set() -> FeatureSet:
    """features_hot over candles. Discovery's per-bar view (heat, rank, ...) is not in the
    candles, so those columns are NaN in training data (normalised to 0, like the model sees
    them at runtime when recorded unseen)."""
    from engine.signals import features as hot

    def compute(c: Candles) -> FloatArray:
        bars = hot.BarMatrix(c.open, c.high, c.low, c.close, c.volume)
        return hot.features_hot(bars, hot.CandidateInfo.unknown(c.close.shape), c.btc_close)

    return FeatureSet(
        name="features_hot",
        names=tuple(hot.FEATURE_NAMES),
        dtypes=tuple(hot.FEATURE_DTYPES),
        schema_hash=hot.feature_schema_hash(),
        compute=compute,
    )
