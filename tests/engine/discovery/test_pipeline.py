"""Discovery end to end: a pump enters the pool with its reasons journaled, at most once per bar;
hot symbols a filter rejects say why; listings and social posts raise heat; bad input is counted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.config.model import HotcoinConfig
from engine.config.sections.discovery import FiltersSection, ListingsSection, PoolSection
from engine.discovery import Discovery
from engine.discovery.heat import HeatFrame
from engine.discovery.listings import Announcement, parse_announcements
from engine.discovery.pipeline import _SOURCES, FigureTable, Members, _Minute, _tabulate
from engine.discovery.social.source import SocialPost, extract_cashtags
from engine.discovery.windows import RETURN_KEYS
from engine.domain.discovery import HeatComponents
from engine.domain.ticker import TickerBatch
from engine.journal.events import make_trace_id
from engine.runtime.recovery import rebuild
from tests.kit.discovery import TickerFeed, small_config
from tests.kit.domain import make_market
from tests.kit.events import RecordingSink

STOPS = ListingsSection().announcement_stop_words
SYMBOLS = ["BTC/USDT", "ETH/USDT", "PEPE/USDT", "USDC/USDT", "THIN/USDT"]


def setup(**sections: object) -> tuple[Discovery, RecordingSink, TickerFeed]:
    sink = RecordingSink()
    disc = Discovery(small_config(**sections), sink, run_id="r1")
    feed = TickerFeed(SYMBOLS, noise=0.0005)
    feed.rate["THIN/USDT"] = feed.qv24["THIN/USDT"] = 0.0  # no volume at all
    disc.on_markets(feed.markets(), feed.ts_ms)
    return disc, sink, feed


def run(disc: Discovery, feed: TickerFeed, n: int) -> None:
    for _ in range(n):
        disc.on_batch(feed.batch())


def pump(disc: Discovery, feed: TickerFeed, symbol: str, steps: int, step: float = 1.02) -> list[str]:
    entered: list[str] = []
    for _ in range(steps):
        feed.prices[symbol] *= step
        feed.rate[symbol] *= 1.5
        entered.extend(disc.on_batch(feed.batch()).entered)
    return entered


def test_a_calm_market_leaves_the_pool_empty_and_the_journal_quiet() -> None:
    disc, sink, feed = setup()
    run(disc, feed, 100)
    assert disc.snapshot().candidates == ()
    assert sink.events == []


def test_a_pump_enters_the_pool_with_its_reasons() -> None:
    disc, sink, feed = setup()
    run(disc, feed, 60)
    entered = pump(disc, feed, "PEPE/USDT", 6)
    assert entered == ["PEPE/USDT"]
    cand = disc.snapshot().get("PEPE/USDT")
    assert cand is not None
    assert cand.rank == 1 and cand.heat >= 50
    assert cand.components.momentum > 0.5
    assert cand.returns["5m"] > 0.05 and cand.sources == ("ticker",)
    assert cand.volume_surge > 1
    assert cand.coin_age_days is None  # present at the first market load, no known listing time
    events = [e for e in sink.events if e.symbol == "PEPE/USDT"]
    assert 1 <= len(events) <= 2  # on entry, and again if the 90 s pump crossed into a new bar
    ev = events[-1]
    assert ev.kind == "candidate_snapshot" and ev.payload["accepted"] is True
    assert ev.trace_id == cand.trace_id == make_trace_id("r1", "PEPE/USDT", ev.ts_ms - ev.ts_ms % 60_000)
    assert all(c["passed"] for c in ev.payload["filters"])
    assert set(ev.payload["components"]) == set(cand.components.as_dict())
    assert ev.payload["returns"]["5m"] > 0.05


def test_snapshot_events_at_most_once_per_symbol_per_bar_with_a_new_trace_each_bar() -> None:
    disc, sink, feed = setup(pool=PoolSection(size=5, min_heat=50.0, ttl_ms=600_000, bar_ms=60_000))
    run(disc, feed, 60)
    pump(disc, feed, "PEPE/USDT", 24, step=1.01)  # six minutes of batches, every 15 s
    events = [e for e in sink.events if e.symbol == "PEPE/USDT"]
    bars = [e.ts_ms // 60_000 for e in events]
    assert len(bars) == len(set(bars)) >= 5
    assert len({e.trace_id for e in events}) == len(events)
    assert disc.counters["candidate_snapshots"] == len(sink.events)


def test_a_warm_up_journals_nothing_and_its_pool_is_journaled_at_the_first_batch_after() -> None:
    """Warm-up batches (`journal=False`) build the pool and journal nothing; the first batch
    journaled after them, mid-bar, journals the pool it inherits (and hot rejects) under the
    traces the warm-up began, so a trace begun in the warm-up starts with its snapshot."""
    disc, sink, feed = setup()
    for _ in range(60):
        disc.on_batch(feed.batch(), journal=False)
    for _ in range(6):
        feed.prices["PEPE/USDT"] *= 1.02
        feed.rate["PEPE/USDT"] *= 1.5
        feed.prices["THIN/USDT"] *= 1.03
        disc.on_batch(feed.batch(), journal=False)
    while (feed.ts_ms + feed.step_ms) % 60_000 == 0:  # the next batch is mid-bar: no bar of its own
        disc.on_batch(feed.batch(), journal=False)
    cand = disc.snapshot().get("PEPE/USDT")
    assert cand is not None and sink.events == [] and disc.counters["candidate_snapshots"] == 0
    disc.on_batch(feed.batch())
    journaled = {e.symbol: e for e in sink.events}
    assert set(journaled) == {"PEPE/USDT", "THIN/USDT"}
    assert journaled["PEPE/USDT"].trace_id == cand.trace_id and journaled["PEPE/USDT"].payload["accepted"]
    assert journaled["THIN/USDT"].payload["accepted"] is False


def test_a_hot_symbol_rejected_by_a_filter_says_why_once_per_bar() -> None:
    disc, sink, feed = setup()
    run(disc, feed, 60)
    for _ in range(8):
        feed.prices["THIN/USDT"] *= 1.03
        disc.on_batch(feed.batch())
    assert "THIN/USDT" not in disc.snapshot().symbols
    events = [e for e in sink.events if e.symbol == "THIN/USDT"]
    assert 1 <= len(events) <= 3  # eight batches = two minutes and a bit
    why = events[0].payload
    assert why["accepted"] is False
    failed = [c for c in why["filters"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["min_quote_volume_24h"]
    assert failed[0]["threshold"] == FiltersSection().min_quote_volume_24h


def test_stablecoins_never_enter_even_when_they_jump() -> None:
    disc, sink, feed = setup()
    run(disc, feed, 60)
    pump(disc, feed, "USDC/USDT", 6)
    assert "USDC/USDT" not in disc.snapshot().symbols
    failed = [c["name"] for e in sink.events if e.symbol == "USDC/USDT" for c in e.payload["filters"] if not c["passed"]]
    assert "not_stablecoin" in failed


def test_a_member_that_fails_a_filter_leaves_at_once() -> None:
    disc, _, feed = setup()
    run(disc, feed, 60)
    pump(disc, feed, "PEPE/USDT", 6)
    feed.qv24["PEPE/USDT"] = 10.0  # liquidity gone (and a counter reset)
    cycle = disc.on_batch(feed.batch())
    assert ("PEPE/USDT", "filtered: min_quote_volume_24h") in cycle.left


def test_a_new_listing_gets_age_and_freshness() -> None:
    disc, sink, feed = setup()
    run(disc, feed, 60)
    feed.symbols.append("NEW/USDT")
    feed.prices["NEW/USDT"], feed.rate["NEW/USDT"], feed.qv24["NEW/USDT"] = 2.0, 1e6 / 86_400_000, 1e6
    events = disc.on_markets([*feed.markets()], feed.ts_ms)
    assert [(e.symbol, e.reason) for e in events] == [("NEW/USDT", "new_symbol")]
    cycle = disc.on_batch(feed.batch())
    cand = cycle.snapshot.get("NEW/USDT")
    assert cand is not None, "a fresh listing with 10% of the minimum volume qualifies"
    assert cand.components.listing_freshness > 0.99
    assert "listing" in cand.sources
    assert cand.coin_age_days is not None and cand.coin_age_days < 0.01
    ev = next(e for e in sink.events if e.symbol == "NEW/USDT" and e.kind == "candidate_snapshot")
    assert {c["name"]: c["passed"] for c in ev.payload["filters"]}["new_listing_liquidity"] is True


def test_unknown_symbols_are_refused_once_market_info_is_loaded() -> None:
    disc, _, feed = setup()
    feed.symbols.append("GHOST/USDT")
    feed.prices["GHOST/USDT"], feed.rate["GHOST/USDT"], feed.qv24["GHOST/USDT"] = 1.0, 0.0, 0.0
    run(disc, feed, 3)
    assert disc.windows.row_of("GHOST/USDT") is None
    assert disc.all_counters()["windows.unknown_symbol"] == 1
    disc.on_markets([*feed.markets()], feed.ts_ms)  # now listed: admitted from the next batch
    run(disc, feed, 1)
    assert disc.windows.row_of("GHOST/USDT") is not None


def test_posts_count_for_the_listed_coin_however_they_tag_it() -> None:
    """`$PEPEUSDT`, `symbols: ["pepe/usdt"]` and `＄ＰＥＰＥ` counted for no coin (looked up as
    "PEPEUSDT/USDT"...); `$100` must still count for none."""
    disc, _, feed = setup()
    run(disc, feed, 60)
    tagged = [("$PEPEUSDT moon", ()), ("moon", ("pepe/usdt",)), ("＄ＰＥＰＥ 起飞", ()), ("$PEPE/USDT", ()), ("$100 $NOPE", ())]
    posts = [SocialPost("x", str(i), feed.ts_ms - i * 1000, "kol", 50_000, text, extract_cashtags(text, extra)) for i, (text, extra) in enumerate(tagged)]
    assert disc.on_posts(posts, feed.ts_ms) == 4
    assert disc.all_counters()["social.unknown_symbol"] == 1
    assert set(disc.social.scores(feed.ts_ms)) == {"PEPE"}


def test_social_mentions_raise_heat() -> None:
    disc, _, feed = setup()
    run(disc, feed, 60)
    posts = [SocialPost("x", str(i), feed.ts_ms - i * 1000, "kol", 50_000, "$PEPE 起飞 moon", ("PEPE",)) for i in range(6)]
    assert disc.on_posts(posts, feed.ts_ms) == 6
    disc.on_batch(feed.batch())
    frame = disc.last_frame
    assert frame is not None
    row = disc.windows.row_of("PEPE/USDT")
    assert row is not None
    assert frame.parts["social_velocity"][row] > 0.5
    assert frame.parts["social_sentiment"][row] > 0.5


def test_an_announcement_dates_a_coin_and_makes_it_fresh() -> None:
    """A coin of unknown age (at the first market load) announced before its first ticker: the
    engine started after trading opened, and the announcement is the best date it has."""
    disc, _, feed = setup()
    announced = feed.ts_ms - 60_000  # a minute before the run's first batch
    run(disc, feed, 30)
    events = disc.on_announcements([Announcement("9", "Binance Will List Pepe (PEPE)", announced, ("PEPE",))], feed.ts_ms)
    assert [e.symbol for e in events] == ["PEPE/USDT"]
    cycle = disc.on_batch(feed.batch())
    assert "PEPE/USDT" in cycle.snapshot.symbols
    assert cycle.snapshot.get("PEPE/USDT").components.listing_freshness > 0.99  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "title",
    [
        "Binance Will List Pepe (PEPE)",  # a misread, or a relisting under the same ticker: the tickers say otherwise
        "Binance Will Add Pepe (PEPE) on Earn, Buy Crypto, Convert, Margin & Futures",  # not a spot listing at all
    ],
    ids=["will-list", "will-add-on-products"],
)
def test_an_announcement_after_a_coin_was_already_trading_does_not_make_it_new(title: str) -> None:
    """The auditor's MOVE: a coin trading before the run (of unknown age) announced while the
    run watches it. Binance announces a spot listing before trading opens, so a coin with
    tickers from before its announcement is an old one: no listing, no freshness heat."""
    disc, _, feed = setup()
    run(disc, feed, 60)
    anns = parse_announcements({"data": {"articles": [{"id": 9, "title": title, "releaseDate": feed.ts_ms}]}}, "USDT", STOPS)
    assert disc.on_announcements(anns, feed.ts_ms) == []
    cycle = disc.on_batch(feed.batch())
    assert "PEPE/USDT" not in cycle.snapshot.symbols
    assert disc.listings.listing_ms("PEPE/USDT") is None
    frame, row = disc.last_frame, disc.windows.row_of("PEPE/USDT")
    assert frame is not None and row is not None and frame.parts["listing_freshness"][row] == 0.0


def test_a_listing_is_journaled_and_a_restart_keeps_its_age() -> None:
    """The auditor's restart: a coin listed 20 minutes before a restart kept its heat only in
    the run that saw it list. Its `listing` event, read back by recovery, dates it in the next."""
    disc, sink, feed = setup()
    run(disc, feed, 60)
    feed.symbols.append("NEW/USDT")
    feed.prices["NEW/USDT"], feed.rate["NEW/USDT"], feed.qv24["NEW/USDT"] = 2.0, 1e6 / 86_400_000, 1e6
    listed_at = feed.ts_ms
    disc.on_markets([*feed.markets()], listed_at)
    run(disc, feed, 80)  # 20 minutes of 15 s batches
    listing = [e for e in sink.events if e.kind == "listing"]
    assert [(e.symbol, e.payload["listed_ms"], e.payload["reason"]) for e in listing] == [("NEW/USDT", listed_at, "new_symbol")]
    assert listing[0].seq < min(e.seq for e in sink.events if e.symbol == "NEW/USDT" and e.kind == "candidate_snapshot")
    state = rebuild(sink.events, 10_000.0)
    assert state.listings == {"NEW/USDT": listed_at}

    after, sink_after, _ = setup()  # a new process: its first market load is a baseline
    after.restore_listings(state.listings)
    after.on_markets([*feed.markets()], feed.ts_ms)
    run(after, feed, 30)
    cycle = after.on_batch(feed.batch())
    assert after.listings.listing_ms("NEW/USDT") == listed_at
    cand = cycle.snapshot.get("NEW/USDT")
    assert cand is not None and cand.components.listing_freshness > 0.98
    assert cand.coin_age_days == pytest.approx((cycle.ts_ms - listed_at) / 86_400_000)
    assert not [e for e in sink_after.events if e.kind == "listing"]  # no new listing: the same one, dated as before


def bad_batch(ts: int, **arrays: object) -> TickerBatch:
    n = 2
    cols: dict[str, object] = {
        "last": np.array([1.0, 2.0]),
        "quote_volume_24h": np.array([5e7, 5e7]),
    }
    cols.update(arrays)
    last = cols["last"]
    return TickerBatch(
        ts_ms=ts,
        symbols=("BTC/USDT", "ETH/USDT"),
        event_ms=np.full(n, ts, dtype=np.int64),
        last=last,  # type: ignore[arg-type]
        bid=np.full(n, np.nan),
        ask=np.full(n, np.nan),
        open_24h=np.full(n, np.nan),
        high_24h=np.full(n, np.nan),
        low_24h=np.full(n, np.nan),
        base_volume_24h=np.full(n, np.nan),
        quote_volume_24h=cols["quote_volume_24h"],  # type: ignore[arg-type]
        trade_count_24h=np.full(n, -1, dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("arrays", "counter"),
    [
        pytest.param({"last": np.array([np.nan, np.nan])}, "windows.missing_price", id="all-prices-missing"),
        pytest.param({"last": np.array([0.0, 2.0])}, "windows.nonpositive_price", id="zero-price"),
        pytest.param({"last": np.array([-1.0, 2.0])}, "windows.nonpositive_price", id="negative-price"),
        pytest.param({"quote_volume_24h": np.array([np.nan, -3.0])}, "windows.bad_volume", id="bad-volumes"),
    ],
)
def test_bad_input_is_counted_never_raised(arrays: dict[str, object], counter: str) -> None:
    disc, _, feed = setup()
    run(disc, feed, 30)
    cycle = disc.on_batch(bad_batch(feed.ts_ms + 1000, **arrays))
    assert cycle.accepted
    assert disc.all_counters()[counter] >= 1
    run(disc, feed, 2)  # and life goes on


def test_out_of_order_batches_are_rejected_and_counted() -> None:
    disc, _, feed = setup()
    run(disc, feed, 5)
    old = bad_batch(feed.ts_ms - 1)
    cycle = disc.on_batch(old)
    assert not cycle.accepted
    assert disc.all_counters()["windows.out_of_order_batch"] == 1


def test_discovery_config_is_part_of_the_whole_and_the_token_is_secret() -> None:
    from pydantic import SecretStr

    from engine.config.model import SECRET_KEYS

    cfg = HotcoinConfig(discovery={"social": {"x_bearer_token": SecretStr("abc")}})
    assert "discovery.social.x_bearer_token" in SECRET_KEYS
    assert cfg.redacted()["discovery"]["social"]["x_bearer_token"] == "***"
    assert make_market("A/USDT").symbol == "A/USDT"


def test_returns_without_history_are_unknown_not_zero() -> None:
    """A pump 7 minutes into the history: its 5 min return is known, its 15 and 60 min ones are
    not. The candidate keeps them NaN (heat stays a number) and the journal says null, not 0.0."""
    disc, sink, feed = setup()
    run(disc, feed, 24)  # 6 minutes of 15 s batches
    assert pump(disc, feed, "PEPE/USDT", 4, step=1.03) == ["PEPE/USDT"]
    cand = disc.snapshot().get("PEPE/USDT")
    assert cand is not None and 0.0 < cand.heat <= 100.0
    assert cand.returns["5m"] > 0.05
    assert np.isnan(cand.returns["15m"]) and np.isnan(cand.returns["60m"])
    ev = [e for e in sink.events if e.symbol == "PEPE/USDT"][-1]
    assert ev.payload["returns"]["5m"] > 0.05
    assert ev.payload["returns"]["15m"] is None and ev.payload["returns"]["60m"] is None
    assert ev.payload["run_up_60m"] > 0.05  # the hour's low is known: its completed slots


def test_a_candidate_carries_what_its_heat_frame_and_scores_say() -> None:
    """Candidates are built from one [row, figure] table per batch (`_tabulate`): each field is
    what the batch's `HeatFrame` and `AnomalyScores` give for its row, bit for bit."""
    disc, _, feed = setup()
    run(disc, feed, 24)
    built = 0
    for _ in range(8):
        feed.prices["PEPE/USDT"] *= 1.03
        feed.rate["PEPE/USDT"] *= 1.5
        snapshot = disc.on_batch(feed.batch()).snapshot
        frame, scores, w = disc.last_frame, disc.last_scores, disc.windows
        assert frame is not None and scores is not None
        for cand in snapshot:
            row = w.index[cand.symbol]
            listed = float(disc.ranker.listing_ms[row])
            assert cand.heat == float(frame.heat[row]) and cand.components == frame.components(row)
            assert cand.sources == frame.sources(row) and cand.price == float(w.last_price[row])
            assert repr(dict(cand.returns)) == repr({k: float(v[row]) for k, v in scores.returns.items()})
            assert cand.volume_surge == float(scores.volume_surge[row])
            assert cand.quote_volume_24h == float(w.quote_volume_24h[row])
            assert cand.coin_age_days == (None if listed != listed else max(0.0, (cand.ts_ms - listed) / 86_400_000))
            built += 1
    assert built >= 4


def test_members_are_journaled_as_emit_candidate_journals_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_emit_members` (inline) journals what `_emit_candidate` member by member journals."""

    def plain(self: Discovery, m: _Minute, members: Members, done: set[str]) -> int:
        emitted = 0
        for cand in members.build():
            if cand.symbol not in done:
                self._emit_candidate(m, cand.symbol, m.index[cand.symbol], cand.trace_id, cand.rank, True)
                done.add(cand.symbol)
                emitted += 1
        return emitted

    journals = []
    for emit_members in (Discovery._emit_members, plain):
        monkeypatch.setattr(Discovery, "_emit_members", emit_members)
        disc, sink, feed = setup()
        run(disc, feed, 24)
        pump(disc, feed, "PEPE/USDT", 4, step=1.03)
        pump(disc, feed, "ETH/USDT", 6, step=1.02)
        run(disc, feed, 8)
        journals.append((sink.events, dict(disc.counters)))
    assert journals[0][0] and journals[0] == journals[1]


@pytest.mark.parametrize(("qv", "surge"), [(5e6, 2.5), (np.nan, np.nan), (np.inf, -np.inf), (0.0, 0.0)])
def test_a_candidate_is_built_as_its_figures_say(qv: float, surge: float) -> None:
    """`Discovery._members` then `candidates` (figures unpacked by name, the returns as a
    literal, finiteness inline) build what the figures give the plain way: returns in
    `RETURN_KEYS` order, a volume that is not finite as 0.0, the bar's `make_trace_id`."""
    disc, _, _ = setup()
    now, listed = 1_617_235_230_000, 1_617_000_000_000.0
    figures = [61.5, 0.4, 0.3, 0.2, 0.0, 0.0, 0.1, 1.25, qv, listed, 0.01, np.nan, -0.02, 0.5, surge]
    stacked = np.array([[[0.0] * len(figures)], [figures]])  # [batch, row, figure]: the minute is batch 1
    table = FigureTable(tuple(stacked[..., f] for f in range(len(figures))))
    minute = _Minute(
        now, 1, ["PEPE/USDT"], {"PEPE/USDT": 0}, stacked[1, :, 0], np.zeros(1, np.int64), [0], [], lambda: table, 1,
        lambda: None,  # type: ignore[arg-type, return-value]
    )  # fmt: skip
    bar_start = now - now % 60_000
    disc._trace_bar = now // 60_000
    (cand,) = disc._members(minute, ["PEPE/USDT"], {"PEPE/USDT": 0}, bar_start).build()
    assert cand.trace_id == make_trace_id("r1", "PEPE/USDT", bar_start)
    assert (cand.symbol, cand.ts_ms, cand.heat, cand.rank, cand.price) == ("PEPE/USDT", now, 61.5, 1, 1.25)
    assert cand.components == HeatComponents(0.4, 0.3, 0.2, 0.0, 0.0, 0.1)
    assert repr(dict(cand.returns)) == repr(dict(zip(RETURN_KEYS, figures[10:14], strict=True)))
    assert cand.quote_volume_24h == (qv if np.isfinite(qv) else 0.0)
    assert cand.volume_surge == (surge if np.isfinite(surge) else 0.0)
    assert cand.coin_age_days == (now - listed) / 86_400_000 and cand.sources == ("ticker", "listing")


@pytest.mark.parametrize("bits", range(8))
def test_candidate_sources_match_the_heat_frame(bits: int) -> None:
    """`_SOURCES` by bits is `HeatFrame.sources`, for every mix of ticker, listing and social."""
    one = np.array([1.0 if bits & 1 else 0.0])
    parts = {name: np.zeros(1) for name in HeatComponents.__slots__}
    parts["volume_surge"] = one
    parts["listing_freshness"] = np.array([1.0 if bits & 2 else 0.0])
    parts["social_velocity"] = np.array([1.0 if bits & 4 else 0.0])
    assert _SOURCES[bits] == HeatFrame(0, np.zeros(1), parts).sources(0)


def test_a_figure_table_gives_the_cells_of_its_stacked_columns() -> None:
    """`FigureTable` (a block's columns, never stacked whole) gives what the stacked [batch, row,
    figure] table gives, bit for bit and dtype for dtype: one cell, a batch's rows, cells
    gathered across batches, none; over strided and sliced views, NaN, inf and -0.0; a
    batch's table made with `copy` keeps its figures when the arrays it was made of change."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(7, 40, 9))
    base[rng.random(base.shape) < 0.1] = np.nan
    base[0, 0, 0], base[1, 1, 1], base[2, 2, 2] = np.inf, -np.inf, -0.0
    columns = (base[:, :33, 0], base[:, 3:36, 4], np.ascontiguousarray(base[:, :33, 8]), base[:, :33, 2].astype(np.float32))
    stacked, table = np.stack(columns, axis=-1), FigureTable(columns)  # type: ignore[arg-type]  # float32 too
    cases: list[tuple[Any, Any]] = [(3, 5), (2, [0, 4, 4, 32]), ([0, 6, 6, 1], [32, 0, 5, 5]), (0, []), ([], [])]
    for cells in cases:
        got, want = table[cells], stacked[cells]
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
    live = [rng.normal(size=5) for _ in range(15)]
    parts = dict(zip(HeatComponents.__slots__, live[1:7], strict=True))
    made = _tabulate(live[0], parts, live[7], live[8], live[9], live[10:14], live[14], copy=True)
    want = np.stack(live, axis=-1)[None]
    for array in live:
        array[:] = 0.0
    assert made[0, [0, 2, 4]].tobytes() == want[0, [0, 2, 4]].tobytes()
