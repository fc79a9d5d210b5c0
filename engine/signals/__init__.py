"""Signals: hot-coin features, entry/exit rules, the ML scorer slot, once per bar per symbol."""
