"""Validated, layered, frozen configuration. See `loader` for the layering rules."""

from engine.config.loader import LoadedConfig, deep_update, dotted_get, dotted_set, load_config
from engine.config.model import SECRET_KEYS, HotcoinConfig

__all__ = ["SECRET_KEYS", "HotcoinConfig", "LoadedConfig", "deep_update", "dotted_get", "dotted_set", "load_config"]
