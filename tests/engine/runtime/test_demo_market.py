"""The demo's simulated market: quoted in the asset discovery trades, and any `sim.symbols`
(1..2000) runs, with or without room for the scripted pump."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.config.sections.sim import SimSection
from engine.runtime.session import DEMO_PUMP_AFTER_MS, RunOptions, open_session, script_demo_pump
from engine.sim.market import SimMarket
from tests.kit.engine import quiet_config

START_MS = 1_700_000_000_000


def market(**settings: object) -> SimMarket:
    return SimMarket(SimSection.model_validate({"history_minutes": 60, **settings}), START_MS)


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"symbols": 1}, "has no alt coin"),
        ({"symbols": 5, "pumps_per_day": 0}, "has no alt coin"),
        ({"symbols": 20}, "has a move planned then"),  # 10 alt coins, 24 random pumps a day
    ],
    ids=["one-symbol", "majors-only", "alts-all-busy"],
)
def test_no_free_alt_coin_skips_the_scripted_pump_with_a_log_line(
    settings: dict[str, object], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hotcoin.session"):
        assert script_demo_pump(market(**settings), START_MS + DEMO_PUMP_AFTER_MS) is None
    assert any(why in r.getMessage() and "no scripted pump" in r.getMessage() for r in caplog.records)


def test_a_free_alt_coin_gets_the_scripted_pump() -> None:
    event = script_demo_pump(market(symbols=40, pumps_per_day=0), START_MS + DEMO_PUMP_AFTER_MS)
    assert event is not None and event.symbol.endswith("/USDT")


async def demo_symbols(tmp_path: Path, **overrides: object) -> tuple[str, ...]:
    config = quiet_config(**{"journal.path": str(tmp_path / "j.sqlite"), "paths.data_dir": str(tmp_path / "data"), **overrides})
    options = RunOptions(demo=True, http=False, attach_socket=False, lockstep_ms=5_000)
    async with open_session(config, options) as session:
        assert session.engine.order_stream is None  # paper fills are made in the cycle: no stream to listen to
        batch = await session.engine.feed.next_batch()
    return tuple(batch.symbols)


async def test_a_demo_with_only_majors_runs_without_the_pump(tmp_path: Path) -> None:
    assert await demo_symbols(tmp_path, **{"sim.symbols": 5}) == ("BTC/USDT", "ETH/USDT", "BNB/USDT", "USDC/USDT", "BUSD/USDT")


async def test_the_demo_market_is_quoted_in_the_asset_discovery_trades(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`sim.quote_asset` alone quoted the demo in BUSD while discovery kept to USDT: no coin
    passed the quote filter and the demo never traded. Like the backtest, the demo's market
    follows exchange.quote_asset, and says so."""
    with caplog.at_level(logging.WARNING, logger="hotcoin.session"):
        symbols = await demo_symbols(tmp_path, **{"sim.quote_asset": "BUSD"})
    assert symbols and all(s.endswith("/USDT") for s in symbols)
    assert any("sim.quote_asset=BUSD" in r.getMessage() for r in caplog.records)
    fdusd = await demo_symbols(tmp_path / "fdusd", **{"exchange.quote_asset": "FDUSD"})
    assert fdusd and all(s.endswith("/FDUSD") for s in fdusd)
