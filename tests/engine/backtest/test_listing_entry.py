"""A listing that pumps in its first hour is traded there: its windows since listing pass the
entry rules in a backtest (the runtime's own cycle, on the store's bars read in place), where
`listing_min_bars = 0` keeps the old behaviour of refusing it for an hour."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.backtest.runner import MINUTE_MS, BacktestResult, BacktestRunner
from engine.config import HotcoinConfig
from tests.engine.backtest.conftest import LISTING_AT, PUMPS, START, T0, minute_config, write_store
from tests.kit.events import RecordingSink

LISTED = T0 + LISTING_AT * MINUTE_MS
END = LISTED + 90 * MINUTE_MS


@pytest.fixture(scope="module")
def listing_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NEW/USDT pumps 20 minutes after its first candle (+35 % in 25 minutes)."""
    return write_store(tmp_path_factory.mktemp("listing"), pumps={**PUMPS, "NEW/USDT": LISTING_AT + 20})


def replay(config: HotcoinConfig, store: Path) -> tuple[BacktestResult, RecordingSink]:
    sink = RecordingSink()
    return asyncio.run(BacktestRunner(config, store, sink, run_id="bt").run(START, END)), sink


def test_a_listing_pumping_in_its_first_hour_is_entered_then(listing_store: Path) -> None:
    result, sink = replay(minute_config(), listing_store)
    opened = [t.opened_ms for t in result.trades if t.symbol == "NEW/USDT"]
    assert opened and LISTED + 20 * MINUTE_MS < opened[0] < LISTED + 60 * MINUTE_MS
    entry = next(
        e for e in sink.events
        if e.kind == "signal_snapshot" and e.symbol == "NEW/USDT" and e.payload["decision"] == "enter"
    )  # fmt: skip
    rules = {r["name"]: r for r in entry.payload["rules"]}
    age = (entry.payload["bar_ms"] - LISTED) // MINUTE_MS + 1
    assert rules["not_extended_60"]["detail"] == f"since listing, {age} bars"


def test_listing_min_bars_zero_refuses_the_listing_for_its_first_hour(listing_store: Path) -> None:
    result, _ = replay(minute_config(trading={"signals": {"listing_min_bars": 0}}), listing_store)
    assert not [t for t in result.trades if t.symbol == "NEW/USDT" and t.opened_ms < LISTED + 60 * MINUTE_MS]


def test_a_replay_starting_after_a_listing_knows_the_coin_s_age(listing_store: Path) -> None:
    """The data's listing time reaches discovery before its first market load: a replay whose
    first minute comes after NEW/USDT's first candle scores it as a coin minutes old, not one
    of unknown age (listing freshness 0), as a replay started before the listing does."""
    start = LISTED + 20 * MINUTE_MS
    config = minute_config(backtest={"initial_history_minutes": 1440, "warmup_minutes": 10})
    sink = RecordingSink()
    asyncio.run(BacktestRunner(config, listing_store, sink, run_id="bt").run(start, LISTED + 60 * MINUTE_MS))
    snaps = [e for e in sink.events if e.kind == "candidate_snapshot" and e.symbol == "NEW/USDT"]
    assert snaps
    for e in snaps:
        assert e.payload["coin_age_days"] == round((e.ts_ms - LISTED) / 86_400_000, 4)
        assert e.payload["components"]["listing_freshness"] > 0.0


def test_a_listing_after_the_replay_s_start_is_known_only_when_it_happens(listing_store: Path) -> None:
    """Point in time: the data's listing times given to discovery up front are only those up to
    its first market load; a later one lists as the replay reaches it (a `listing` event)."""
    _, sink = replay(minute_config(), listing_store)
    events = [e for e in sink.events if e.kind == "listing" and e.symbol == "NEW/USDT"]
    assert len(events) == 1 and events[0].payload["listed_ms"] >= LISTED and events[0].ts_ms >= LISTED
    before = [e for e in sink.events if e.symbol == "NEW/USDT" and e.ts_ms < LISTED]
    assert not before
