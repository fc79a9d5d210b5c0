"""Hot-coin features, datasets and labels, LightGBM training and model governance.

Shares `engine.signals.features` (the one definition of `features_hot`) with the engine.
"""
