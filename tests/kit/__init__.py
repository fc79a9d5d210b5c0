"""Test kit: stub factories for domain objects and events, fakes, and `eventually`.

One module per area (`kit.domain`, `kit.events`, ...); import what you need from there.
"""
