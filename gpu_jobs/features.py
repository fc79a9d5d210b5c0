"""The feature set training jobs use on the trading box: `features_hot` from
`engine.signals.features`, the one definition shared with live and backtest, so the contract's
schema hash is the running engine's."""

from __future__ import annotations

from gpu_jobs.datasets import Candles, FeatureSet, FloatArray


def hot_feature_set(listing_min_bars: int | None = None) -> FeatureSet:
    """features_hot over candles. Discovery's per-bar view (heat, rank, ...) is not in the
    candles, so those columns are NaN in training data (normalised to 0, like the model sees
    them at runtime when recorded unseen). A pair whose candles start after the others' is a
    listing, with the engine's since-listing windows from `listing_min_bars` bars on (the
    engine's `trading.signals.listing_min_bars`; None: its default). The value goes into the
    model's contract, and an engine running with another one refuses the model."""
    from engine.config.sections.trading import SignalSettings
    from engine.signals import features as hot

    least = SignalSettings().listing_min_bars if listing_min_bars is None else listing_min_bars

    def compute(c: Candles) -> FloatArray:
        bars = hot.BarMatrix(c.open, c.high, c.low, c.close, c.volume)
        listings = hot.Listings.after_start(c.close, least)
        return hot.features_hot(bars, hot.CandidateInfo.unknown(c.close.shape), c.btc_close, listings)

    return FeatureSet(
        name="features_hot",
        names=tuple(hot.FEATURE_NAMES),
        dtypes=tuple(hot.FEATURE_DTYPES),
        schema_hash=hot.feature_schema_hash(),
        compute=compute,
        listing_min_bars=least,
    )
