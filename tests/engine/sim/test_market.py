"""The generated market: deterministic, realistic enough to test discovery on, and bounded."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from engine.config.model import HotcoinConfig
from engine.config.sections.sim import SimSection
from engine.domain import MarketStatus, TickerBatch
from engine.errors import ConfigError, MarketDataError
from engine.sim.base import _mul_div, bid_ask, bid_ask_ticks, tick_counts
from engine.sim.base import on_tick as tick_round
from engine.sim.market import SimMarket, open_market
from engine.sim.rings import WINDOW_MINUTES
from engine.sim.scenario import DAY_MS, HOUR_MS, MINUTE_MS
from engine.sim.server.codec import exchange_info

T0 = 1_618_531_200_000  # 2021-04-16 00:00 UTC


def make(**overrides: Any) -> SimMarket:
    fields: dict[str, Any] = {"symbols": 30, "seed": 11}
    fields.update(overrides)
    return SimMarket(SimSection(**fields), T0)


def assert_same_batch(a: TickerBatch, b: TickerBatch) -> None:
    assert a.symbols == b.symbols
    for name in (
        "last",
        "bid",
        "ask",
        "open_24h",
        "high_24h",
        "low_24h",
        "base_volume_24h",
        "quote_volume_24h",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.trade_count_24h, b.trade_count_24h)


def on_tick(price: float, tick: Decimal) -> bool:
    return Decimal(repr(price)) % tick == 0


# -- config -----------------------------------------------------------------------------------


def test_section_is_part_of_the_config_with_documented_fields() -> None:
    assert HotcoinConfig().sim == SimSection()
    undocumented = [name for name, f in SimSection.model_fields.items() if not f.description]
    assert undocumented == []


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"step_ms": 7000}, "must divide 60000"),
        ({"pump_size_min": 2.0, "pump_size_max": 1.0}, "pump_size_min"),
        ({"history_minutes": 2000}, "candle_ring_minutes"),
        ({"symbols": 2001}, "less than or equal"),
        ({"speed": 5000}, "less than or equal"),
    ],
    ids=["step", "size-range", "history-vs-ring", "too-many-symbols", "speed"],
)
def test_section_rejects_bad_settings(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        SimSection(**fields)


# -- determinism --------------------------------------------------------------------------------


def test_same_seed_same_market_different_seed_different_market() -> None:
    a, b, c = make(), make(), make(seed=12)
    for m in (a, b, c):
        m.advance_to(T0 + 20 * MINUTE_MS)
    assert_same_batch(a.tickers(), b.tickers())
    assert a.klines("BTC/USDT", "1m") == b.klines("BTC/USDT", "1m")
    assert a.ground_truth == b.ground_truth
    assert a.listings == b.listings
    assert a.symbols != c.symbols
    assert not np.array_equal(a.tickers().last[:3], c.tickers().last[:3])
    assert a.ground_truth != c.ground_truth


def test_one_big_advance_equals_many_small_ones() -> None:
    settings = {"pumps_per_day": 200, "listings_per_day": 24}
    one, many = make(**settings), make(**settings)
    end = T0 + 75 * MINUTE_MS + 17_500
    assert any(T0 < x.listed_ms < end for x in one.listings)
    assert any(e.start_ms < end for e in one.ground_truth)
    one.advance_to(end)
    rng = np.random.default_rng(0)
    t = T0
    while t < end:
        t = min(end, t + int(rng.integers(1, 400_000)))
        many.advance_to(t)
        many.tickers()  # reading must not disturb the state
    assert one.now_ms == many.now_ms == end
    assert_same_batch(one.tickers(), many.tickers())
    for symbol in one.symbols[::7]:
        assert one.klines(symbol, "1m", limit=1000) == many.klines(symbol, "1m", limit=1000)
        assert one.book(symbol) == many.book(symbol)


def test_time_cannot_go_back() -> None:
    m = make()
    m.advance_to(T0 + 5_000)
    m.advance_to(T0 + 5_000)  # same time: nothing to do
    with pytest.raises(MarketDataError, match="cannot go back"):
        m.advance_to(T0 + 4_000)


# -- the universe -------------------------------------------------------------------------------


def test_universe_has_majors_stables_leveraged_tokens_and_a_wide_price_range() -> None:
    m = make(symbols=300)
    assert {"BTC/USDT", "ETH/USDT", "BNB/USDT", "USDC/USDT", "BTCUP/USDT", "BTCDOWN/USDT"} <= set(
        m.symbols
    )
    assert len(m.symbols) == len(set(m.symbols)) == 300
    batch = m.tickers()
    assert batch.last.min() < 1e-3 and batch.last.max() > 5e4
    usdc = m.last_price("USDC/USDT")
    assert abs(usdc - 1.0) < 0.01


def test_returns_are_fat_tailed_and_move_with_btc_before_and_after_the_start() -> None:
    m = make(symbols=60, step_ms=5000)
    m.advance_to(T0 + 3 * HOUR_MS)

    def returns(symbol: str) -> tuple[np.ndarray, np.ndarray]:
        candles = m.klines(symbol, "1m", limit=1500)
        r = np.diff(np.log([c.close for c in candles]))
        live = np.array([c.open_ms >= T0 for c in candles[1:]])
        return r[~live], r[live]

    btc, btc_live = returns("BTC/USDT")
    kurtosis, corr, drift = [], [], []
    for symbol in m.symbols[10:60]:
        r, r_live = returns(symbol)
        z = (r - r.mean()) / r.std()
        kurtosis.append(float((z**4).mean() - 3))
        corr.append(float(np.corrcoef(r, btc)[0, 1]))
        drift.append(float(r_live.std() / r.std()))
    assert np.median(kurtosis) > 2  # a normal walk would give ~0
    assert 0.2 < np.median(corr) < 0.9
    assert 0.6 < np.median(drift) < 1.6  # the live path behaves like the generated history
    assert np.corrcoef(returns("BTCDOWN/USDT")[0], btc)[0, 1] < -0.9
    assert np.corrcoef(returns("ETH/USDT")[0], btc)[0, 1] > 0.7
    assert np.corrcoef(returns("BTCUP/USDT")[1], btc_live)[0, 1] > 0.9
    assert abs(m.last_price("USDC/USDT") - 1.0) < 0.002


def test_unknown_symbol_and_bad_requests_are_named() -> None:
    m = make()
    with pytest.raises(MarketDataError, match="NOPE/USDT"):
        m.last_price("NOPE/USDT")
    with pytest.raises(MarketDataError, match="NOPE/USDT"):
        m.klines("NOPE/USDT", "1m")
    with pytest.raises(MarketDataError, match="unknown timeframe"):
        m.klines("BTC/USDT", "7m")
    with pytest.raises(MarketDataError, match="limit"):
        m.klines("BTC/USDT", "1m", limit=0)


def test_filters_are_binance_like_and_prices_sit_on_ticks() -> None:
    m = make(symbols=60)
    m.advance_to(T0 + 3 * MINUTE_MS)
    batch = m.tickers()
    books = m.books()
    for market, i in zip(m.markets(), range(len(batch)), strict=True):
        f = market.filters
        assert market.symbol == batch.symbols[i] and market.status is MarketStatus.TRADING
        assert f.min_notional == 5 and f.min_qty == f.step_size
        # MARKET_LOT_SIZE: about 1 M USDT per market order at listing, never over LOT_SIZE
        assert f.market_max_qty <= f.max_qty and f.market_max_qty * Decimal(repr(float(batch.last[i]))) <= Decimal(2_000_000)
        assert (f.bid_multiplier_down, f.bid_multiplier_up, f.avg_price_mins) == (Decimal("0.2"), Decimal(5), 5)
        last = float(batch.last[i])
        assert Decimal(10) ** -5 <= f.tick_size / Decimal(repr(last)) <= Decimal(10) ** -3, (
            market.symbol
        )
        assert Decimal("0.001") <= f.step_size * Decimal(repr(last)) or f.step_size == 1
        bid, bid_qty, ask, ask_qty = m.book(market.symbol)
        assert (bid, bid_qty, ask, ask_qty) == tuple(float(col[i]) for col in books)
        assert (bid, ask) == (batch.bid[i], batch.ask[i])
        assert bid < ask and bid <= last <= ask
        for price in (last, bid, ask, float(batch.bid[i]), float(batch.ask[i])):
            assert on_tick(price, f.tick_size), (market.symbol, price, f.tick_size)
        for qty in (bid_qty, ask_qty):
            assert (
                market.check_order(Decimal(repr(qty)), Decimal(repr(bid))) in (None,)
                or qty * bid < 5
            )
        for candle in m.klines(market.symbol, "1m", limit=5):
            for price in (candle.open, candle.high, candle.low, candle.close):
                assert on_tick(price, f.tick_size)


# -- klines and the rolling 24 h stats ----------------------------------------------------------


def test_no_tick_is_finer_than_binances_so_every_served_tick_can_be_traded_on() -> None:
    """37 of 300 generated coins are priced under 1e-4: their ticks (1e-4 of the price) were
    finer than 1e-8 and served as tickSize "0.00000000", on which ccxt refuses every LIMIT.
    They trade on 1e-8, as on Binance, in the process and on the wire alike."""
    m = make(symbols=300)
    m.advance_to(T0 + 3 * MINUTE_MS)
    batch = m.tickers()
    cheap = [(mk, float(last)) for mk, last in zip(m.markets(), batch.last, strict=True) if last < 1e-4]
    assert len(cheap) >= 10  # the case is there
    for market, last in cheap:
        assert market.filters.tick_size == market.filters.min_price == Decimal("1e-8"), market.symbol
        assert on_tick(last, market.filters.tick_size), (market.symbol, last)
    served = {
        s["symbol"]: next(f["tickSize"] for f in s["filters"] if f["filterType"] == "PRICE_FILTER")
        for s in exchange_info(m.markets(), T0)["symbols"]
    }
    assert Decimal(min(served.values(), key=Decimal)) == Decimal("0.00000001")
    assert all(Decimal(served[mk.market_id]) == mk.filters.tick_size for mk in m.markets())


def test_history_is_there_from_the_start() -> None:
    m = make()
    candles = m.klines("ETH/USDT", "1m", limit=1500)
    assert len(candles) == 1441  # 1440 warm-up minutes and the running one
    assert candles[-1].open_ms == T0 and not candles[-1].closed
    assert all(c.closed for c in candles[:-1])
    assert [c.open_ms for c in candles] == list(range(T0 - 1440 * MINUTE_MS, T0 + 1, MINUTE_MS))
    for c in candles:
        c.validate()


def test_24h_stats_agree_with_the_1m_klines() -> None:
    m = make(listings_per_day=24)
    m.advance_to(T0 + 95 * MINUTE_MS + 30_000)
    batch = m.tickers()
    for i in range(0, len(batch), 3):
        candles = m.klines(batch.symbols[i], "1m", limit=WINDOW_MINUTES)
        assert candles[-1].open_ms == (m.now_ms // MINUTE_MS) * MINUTE_MS
        assert batch.open_24h[i] == candles[0].open
        assert batch.high_24h[i] == max(c.high for c in candles)
        assert batch.low_24h[i] == min(c.low for c in candles)
        assert batch.base_volume_24h[i] == pytest.approx(sum(c.volume for c in candles), rel=1e-9)
        assert batch.last[i] == candles[-1].close
    assert (batch.trade_count_24h > 0).all()
    assert (batch.quote_volume_24h > 0).all()


def test_higher_timeframes_aggregate_the_1m_candles() -> None:
    m = make()
    m.advance_to(T0 + 40 * MINUTE_MS)
    ones = m.klines("BNB/USDT", "1m", limit=1500)
    fives = m.klines("BNB/USDT", "5m", limit=1000)
    assert [c.open_ms % (5 * MINUTE_MS) for c in fives] == [0] * len(fives)
    assert [c.closed for c in fives] == [True] * (len(fives) - 1) + [False]
    for five in fives[-4:]:
        inside = [c for c in ones if five.open_ms <= c.open_ms < five.open_ms + 5 * MINUTE_MS]
        assert five.open == inside[0].open and five.close == inside[-1].close
        assert five.high == max(c.high for c in inside) and five.low == min(c.low for c in inside)
        assert five.volume == pytest.approx(sum(c.volume for c in inside), rel=1e-12)
    hours = m.klines("BNB/USDT", "1h")
    assert hours[0].open_ms >= ones[0].open_ms  # no hour shown short of its start
    assert hours[-1].open_ms == T0 and not hours[-1].closed


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"limit": 3}, [-2, -1, 0]),
        ({"start_ms": T0 - 10 * MINUTE_MS, "limit": 2}, [-10, -9]),
        ({"end_ms": T0 - 5 * MINUTE_MS, "limit": 2}, [-6, -5]),
        ({"start_ms": T0 - 3 * MINUTE_MS, "end_ms": T0 - 2 * MINUTE_MS}, [-3, -2]),
    ],
    ids=["last-n", "from-start", "up-to-end", "between"],
)
def test_klines_window_follows_binance(kwargs: dict[str, int], expected: list[int]) -> None:
    m = make()
    m.advance_to(T0 + 30_000)
    got = [(c.open_ms - T0) // MINUTE_MS for c in m.klines("BTC/USDT", "1m", **kwargs)]
    assert got == expected  # in minutes from T0, whose minute is the running one


# -- scheduled moves ----------------------------------------------------------------------------


def test_pumps_and_dumps_move_price_by_their_size_on_a_volume_surge() -> None:
    m = make(symbols=40, pumps_per_day=100, dumps_per_day=100, step_ms=5000)
    # The plan and the noise are separate streams: without moves, the same noise (a twin).
    twin = make(symbols=40, pumps_per_day=0, dumps_per_day=0, step_ms=5000)
    horizon = T0 + 3 * HOUR_MS
    moves = [e for e in m.ground_truth if e.end_ms <= horizon]
    assert {e.kind for e in moves} == {"pump", "dump"}
    m.advance_to(horizon)
    twin.advance_to(horizon)
    errors = []
    for e in moves:
        assert e.start_ms < e.peak_ms < e.end_ms and (e.size > 0) == (e.kind == "pump")
        assert 10 <= (e.peak_ms - e.start_ms) / MINUTE_MS <= 60
        candles = {c.open_ms: c for c in m.klines(e.symbol, "1m", limit=1000)}
        calm = {c.open_ms: c for c in twin.klines(e.symbol, "1m", limit=1000)}
        before, at_peak = (
            candles[e.start_ms - MINUTE_MS].close,
            candles[e.peak_ms - MINUTE_MS].close,
        )
        errors.append(math.log(at_peak / before) - math.log1p(e.size))
        ramp = range(e.start_ms, e.peak_ms, MINUTE_MS)
        surge = sum(candles[t].volume * candles[t].close for t in ramp) / sum(
            calm[t].volume * calm[t].close for t in ramp
        )
        assert surge > 3.0, e
        # Against the same noise without it, the move adds exactly its size (to ticks and a sub-step).
        calm_return = math.log(
            calm[e.peak_ms - MINUTE_MS].close / calm[e.start_ms - MINUTE_MS].close
        )
        assert math.log(at_peak / before) - calm_return == pytest.approx(
            math.log1p(e.size), abs=0.02
        )
    assert len(errors) >= 5
    assert max(abs(x) for x in errors) < 0.2
    assert float(np.median(np.abs(errors))) < 0.05


def test_moves_never_overlap_on_one_symbol_and_skip_majors() -> None:
    m = make(symbols=40, pumps_per_day=300, dumps_per_day=100)
    by_symbol: dict[str, list[tuple[int, int]]] = {}
    for e in m.ground_truth:
        by_symbol.setdefault(e.symbol, []).append((e.start_ms, e.end_ms))
    assert not {"BTC/USDT", "ETH/USDT", "USDC/USDT", "BTCUP/USDT"} & set(by_symbol)
    for spans in by_symbol.values():
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_a_listing_is_absent_before_its_time_and_opens_with_a_wick() -> None:
    m = make(listings_per_day=24, listing_wick_max=10.0)
    listing = m.listings[0]
    assert listing.listed_ms > T0 and listing.listed_ms % HOUR_MS == 0
    m.advance_to(listing.listed_ms - 1_000)
    assert listing.symbol not in m.symbols
    assert listing.symbol not in {mk.symbol for mk in m.markets()}
    assert listing.symbol not in m.tickers().symbols
    with pytest.raises(MarketDataError, match="not listed yet"):
        m.last_price(listing.symbol)
    m.advance_to(listing.listed_ms + 10 * MINUTE_MS)
    assert listing.symbol in m.symbols and listing.symbol in {mk.symbol for mk in m.markets()}
    candles = m.klines(listing.symbol, "1m")
    first = candles[0]
    assert first.open_ms == listing.listed_ms
    assert first.open == pytest.approx(listing.open_price, rel=1e-3)
    assert 1.5 * first.open <= first.high <= 10.0 * first.open * 1.001
    batch = m.tickers()
    i = batch.symbols.index(listing.symbol)
    assert batch.open_24h[i] == first.open and batch.high_24h[i] == max(c.high for c in candles)
    listed_quote = first.volume * first.close
    typical = float(np.median(batch.quote_volume_24h)) / WINDOW_MINUTES
    assert listed_quote > 5 * typical


def test_ground_truth_looks_a_day_ahead() -> None:
    m = make(pumps_per_day=24, step_ms=60_000)
    assert max(e.start_ms for e in m.ground_truth) > T0 + DAY_MS
    m.advance_to(T0 + DAY_MS + HOUR_MS)
    assert max(e.start_ms for e in m.ground_truth) > T0 + 2 * DAY_MS


# -- memory and dispatch ------------------------------------------------------------------------


def test_memory_stays_flat_over_a_long_run_and_the_stats_stay_exact() -> None:
    m = make(symbols=20, step_ms=60_000, listings_per_day=4, pumps_per_day=50)
    m.advance_to(T0 + HOUR_MS)
    before = m.footprint()
    m.advance_to(T0 + 2 * DAY_MS + 7 * MINUTE_MS)
    assert m.footprint() == before  # listings fit the spare columns; the rings never grow with time
    assert len(m.klines("BTC/USDT", "1m", limit=10_000)) == SimSection().candle_ring_minutes
    assert len(m._active) < 10
    batch = m.tickers()
    assert len(batch) > 20
    for i, symbol in enumerate(batch.symbols):  # after the rings wrapped, against brute force
        day = m.klines(symbol, "1m", limit=WINDOW_MINUTES)
        assert batch.high_24h[i] == max(c.high for c in day)
        assert batch.low_24h[i] == min(c.low for c in day)
        assert batch.quote_volume_24h[i] > 0


def test_sim_market_refuses_a_replay_config() -> None:
    with pytest.raises(ConfigError, match="open_market"):
        SimMarket(SimSection(data_dir=Path("/somewhere")), T0)


def test_open_market_generates_without_a_data_dir() -> None:
    assert isinstance(open_market(SimSection(symbols=5), T0), SimMarket)


@pytest.mark.parametrize("exp", [-8, -4, -1, 0, 2])
def test_a_tapes_quotes_from_ticks_are_the_markets_bit_for_bit(exp: int) -> None:
    """`bid_ask_ticks` (in place, from `tick_counts`) equals `bid_ask` on `on_tick`'s prices:
    prices from below one tick to ~10**7, quote volumes across the spread's floor and cap; the
    same into arrays given (`out`, as a replay tape's day tables)."""
    rng = np.random.default_rng(exp + 10)
    mul, div = _mul_div(exp)
    shape = (500, 7)
    prices = 10.0 ** rng.uniform(exp - 1, 7, shape)
    quote_volume = np.concatenate([10.0 ** rng.uniform(-1, 12, (499, 7)), np.zeros((1, 7))])
    muls, divs = np.full(7, mul), np.full(7, div)
    ticks = tick_counts(prices, muls, divs)
    np.testing.assert_array_equal(ticks * muls / divs, tick_round(prices, muls, divs))
    into = np.full(shape, np.nan)  # a tape's reused array: whatever it held
    assert tick_counts(prices, muls, divs, out=into) is into and into.tobytes() == ticks.tobytes()
    want = bid_ask(tick_round(prices, muls, divs), muls, divs, quote_volume)
    sides = (np.full(shape, np.nan), np.full(shape, np.nan))
    for got in (bid_ask_ticks(ticks, muls, divs, quote_volume), bid_ask_ticks(ticks, muls, divs, quote_volume, out=sides)):
        for w, g in zip(want, got, strict=True):
            assert w.tobytes() == g.tobytes()
    assert all(g is side for g, side in zip(got, sides, strict=True))
