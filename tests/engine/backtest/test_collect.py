"""`collect` through the real ccxt gateway against the simulated exchange on 127.0.0.1:
pages, resumes from the last stored candle, backs off on rate limits, retries transient
failures, picks movers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.backtest.api import collect_gateway
from engine.backtest.collect import Collector, CollectPlan, Progress
from engine.backtest.history import HistoryStore
from engine.config.sections.discovery import FiltersSection
from engine.config.sections.exchange import ExchangeSection
from engine.domain import Candle, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError, NonRetryableOrderError, RetryableOrderError
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.fake import FakeGateway, ManualClock
from engine.market.gateway import Gateway
from engine.sim.server import SimExchangeServer
from tests.kit.sim_exchange import T0, FakeMarketSource, running_sim_exchange

MIN = 60_000


class Recorder(Progress):
    def __init__(
        self, on_advance: Callable[[], None] | None = None, on_wait: Callable[[], None] | None = None
    ) -> None:
        self.started: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.waits: list[float] = []
        self.reasons: list[str] = []
        self.on_advance = on_advance
        self.on_wait = on_wait

    def start(self, symbol: str, total: int) -> None:
        self.started[symbol] = total
        self.done[symbol] = 0

    def advance(self, symbol: str, n: int) -> None:
        self.done[symbol] += n
        if self.on_advance is not None:
            self.on_advance()
            self.on_advance = None

    def waiting(self, seconds: float, reason: str) -> None:
        self.waits.append(seconds)
        self.reasons.append(reason)
        if self.on_wait is not None:
            self.on_wait()


@pytest.fixture
def source() -> FakeMarketSource:
    src = FakeMarketSource({"BTC/USDT": 60_000.0, "ETH/USDT": 2_400.0, "DOGE/USDT": 0.3, "XRP/USDT": 1.2})
    src.advance_to(T0 + 2 * 86_400_000 + 30_000)  # two days in, half-way through a minute
    return src


@pytest.fixture
async def sim(source: FakeMarketSource) -> AsyncIterator[SimExchangeServer]:
    async with running_sim_exchange(source, speed=1.0) as server:
        yield server


@pytest.fixture
async def gateway(sim: SimExchangeServer) -> AsyncIterator[tuple[CcxtGateway, ManualClock]]:
    clock = ManualClock(T0, auto=True, auto_max_s=3600.0)  # a rate-limit silence lasts minutes
    gw = CcxtGateway(ExchangeSection(endpoint=sim.base_url, stale_stream_s=0.0), clock=clock)
    yield gw, clock
    await gw.close()


@pytest.fixture
async def collect_gw(sim: SimExchangeServer) -> AsyncIterator[tuple[CcxtGateway, ManualClock]]:
    """The gateway as `hotcoin collect` builds it: its silence is the server's Retry-After."""
    clock = ManualClock(T0, auto=True, auto_max_s=3600.0)
    gw = collect_gateway(ExchangeSection(endpoint=sim.base_url, stale_stream_s=0.0), clock)
    yield gw, clock
    await gw.close()


def _collector(gw: Gateway, clock: ManualClock, root: Path, progress: Progress, **plan: object) -> Collector:
    p = CollectPlan(**{"timeframe": "1m", "days": 1, "top": 2, "page": 500, "max_backoff_s": 30.0, **plan})  # type: ignore[arg-type]
    return Collector(gw, HistoryStore(root), p, now_ms=clock.now_ms, sleep=clock.sleep, progress=progress)


async def test_collects_pages_then_resumes(
    gateway: tuple[CcxtGateway, ManualClock], source: FakeMarketSource, tmp_path: Path
) -> None:
    gw, clock = gateway
    progress = Recorder()
    report = await _collector(gw, clock, tmp_path, progress).run(["DOGE/USDT", "BTC/USDT"])
    assert report.written == {"DOGE/USDT": 1440, "BTC/USDT": 1440}  # a day of closed 1m candles, 3 pages each
    assert progress.done == progress.started == {"DOGE/USDT": 1440, "BTC/USDT": 1440}
    series = HistoryStore(tmp_path).read("DOGE/USDT", "1m")
    assert series.gaps() == []
    assert series.last_ms == T0 + 2 * 86_400_000 - MIN  # the running minute is not stored
    source.advance_to(T0 + 2 * 86_400_000 + 10 * MIN + 30_000)
    again = await _collector(gw, clock, tmp_path, Recorder()).run(["DOGE/USDT"])
    assert again.written == {"DOGE/USDT": 10}  # only what is new
    assert len(HistoryStore(tmp_path).read("DOGE/USDT", "1m")) == 1450


async def test_rate_limits_are_waited_out(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    gw, clock = gateway
    await gw.load_markets()
    sim.faults.rate_limit(2)  # the next two REST calls answer 429
    progress = Recorder()
    report = await _collector(gw, clock, tmp_path, progress).run(["XRP/USDT"])
    assert report.rate_limited == 2 == sim.faults.injected["rate_limited"]  # only answers count, no local refusal
    assert report.written == {"XRP/USDT": 1440}
    assert progress.waits == [60.0, 120.0]  # the gateway's silences, whole, though max_backoff_s is 30


async def test_a_ban_longer_than_the_backoff_cap_is_waited_out(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    """Retry-After is a floor: a 600 s ban is one 600 s wait, not retries every 30 s that the
    gateway refuses itself until the retries run out."""
    gw, clock = gateway
    await gw.load_markets()
    sim.faults.update({"retry_after_s": 600, "rate_limit_burst": 1})
    progress = Recorder()
    report = await _collector(gw, clock, tmp_path, progress).run(["XRP/USDT"])
    assert report.written == {"XRP/USDT": 1440}
    assert progress.waits == [600.0] and report.waited_s == 600.0
    assert report.rate_limited == 1 == sim.faults.injected["rate_limited"]


async def test_collect_waits_the_retry_after_of_a_429_burst_not_the_engines_silence(
    collect_gw: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    """Four 429s asking for 2 s each used to cost 60 + 120 + 240 + 480 s (the live engine's
    silence); collect now waits what the server asked, or its own capped backoff if longer."""
    gw, clock = collect_gw
    await gw.load_markets()
    sim.faults.update({"rate_limit_burst": 4, "retry_after_s": 2})
    progress = Recorder()
    report = await _collector(gw, clock, tmp_path, progress).run(["XRP/USDT"])
    assert report.written == {"XRP/USDT": 1440}
    assert progress.waits == [2.0, 2.0, 2.0, 4.0] and report.waited_s == 10.0  # Retry-After, then the backoff
    assert report.rate_limited == 4 == sim.faults.injected["rate_limited"]
    assert all("DDoSProtection" in r for r in progress.reasons)
    assert [r[-14:] for r in progress.reasons] == [f"(retry {i} of 8)" for i in (1, 2, 3, 4)]


async def test_collect_waits_out_a_418_ban_whole(
    collect_gw: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    """Trusting Retry-After shortens nothing the server asked for: a 600 s ban is one 600 s
    wait (longer than max_backoff_s), with no request sent before its end."""
    gw, clock = collect_gw
    await gw.load_markets()
    sim.faults.ban(600)

    def ban_ends() -> None:  # the sim's ban runs on wall time; the wait runs on the manual clock
        sim.faults.banned_until_ms = 0

    progress = Recorder(on_wait=ban_ends)
    report = await _collector(gw, clock, tmp_path, progress).run(["XRP/USDT"])
    assert report.written == {"XRP/USDT": 1440}
    assert progress.waits == [600.0] and sim.faults.injected["banned"] == 1
    assert "DDoSProtection" in progress.reasons[0]


async def test_a_refusal_with_nothing_sent_is_waited_out_uncounted(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    """A collect run that starts inside the gateway's silence waits for its end; the gateway's
    own refusals (nothing sent) are neither requests nor retries, so even `retries=0` gets through."""
    from engine.errors import RateLimitedError

    gw, clock = gateway
    await gw.load_markets()
    sim.faults.update({"retry_after_s": 300, "rate_limit_burst": 1})
    with pytest.raises(RateLimitedError):
        await gw.fetch_tickers()  # the silence starts before collect does
    clock.advance(100)
    progress = Recorder()
    report = await _collector(gw, clock, tmp_path, progress, retries=0).run(["XRP/USDT"])
    assert report.written == {"XRP/USDT": 1440}
    assert progress.waits == [200.0]  # what was left of the silence
    assert report.rate_limited == 0 and report.requests == 5  # tickers, markets, three pages: all sent


async def test_gives_up_after_the_retries(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    from engine.errors import RateLimitedError

    gw, clock = gateway
    await gw.load_markets()
    sim.faults.rate_limit(50)
    with pytest.raises(RateLimitedError):
        await _collector(gw, clock, tmp_path, Recorder(), retries=2).run(["XRP/USDT"])


async def test_a_transient_server_error_mid_download_is_retried(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    """One 502 after the first page stored used to end the run (exit 2): now the page is asked
    for again after the backoff, and the wait says what failed."""
    gw, clock = gateway
    progress = Recorder(on_advance=lambda: sim.faults.fail_with_5xx(1, [502]))
    report = await _collector(gw, clock, tmp_path, progress).run(["XRP/USDT"])
    assert report.written == {"XRP/USDT": 1440} and sim.faults.injected["server_error"] == 1
    assert HistoryStore(tmp_path).read("XRP/USDT", "1m").gaps() == []
    assert progress.waits == [0.5] and report.failed == 1 and report.rate_limited == 0
    assert progress.reasons[0].startswith("fetch_candles: ExchangeNotAvailable")
    assert "502" in progress.reasons[0] and progress.reasons[0].endswith("(retry 1 of 8)")
    assert "<html" not in progress.reasons[0]  # the status says it; the page does not


async def test_a_server_error_on_the_first_call_is_retried(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    """A 500 on a fresh gateway strikes the market load under the first call: retried too."""
    gw, clock = gateway
    sim.faults.fail_with_5xx(1, [500])
    progress = Recorder()
    report = await _collector(gw, clock, tmp_path, progress).run(["XRP/USDT"])
    assert report.written == {"XRP/USDT": 1440}
    assert progress.waits == [0.5] and "500" in progress.reasons[0]


async def test_a_server_error_that_lasts_gives_up_after_the_retries(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    gw, clock = gateway
    await gw.load_markets()
    sim.faults.fail_with_5xx(50, [503])
    progress = Recorder()
    with pytest.raises(RetryableOrderError, match="ExchangeNotAvailable"):
        await _collector(gw, clock, tmp_path, progress, retries=2).run(["XRP/USDT"])
    assert progress.waits == [0.5, 1.0] and sim.faults.injected["server_error"] == 3
    assert [r[-14:] for r in progress.reasons] == ["(retry 1 of 2)", "(retry 2 of 2)"]


async def test_a_non_retryable_error_stops_at_once(tmp_path: Path) -> None:
    gw = FakeGateway()
    gw.fail_next("fetch_tickers", NonRetryableOrderError("fetch_tickers: BadRequest: -1100 illegal characters"))
    progress = Recorder()
    with pytest.raises(NonRetryableOrderError, match="-1100 illegal characters"):
        await _collector(gw, gw.clock, tmp_path, progress).run(["XRP/USDT"])
    assert gw.calls == ["fetch_tickers"] and progress.waits == []


async def test_movers_and_unknown_symbols(gateway: tuple[CcxtGateway, ManualClock], tmp_path: Path) -> None:
    gw, clock = gateway
    report = await _collector(gw, clock, tmp_path, Recorder(), days=1).run()
    assert len(report.symbols) == 2 and all(s.endswith("/USDT") for s in report.symbols)
    assert HistoryStore(tmp_path).symbols("1m") == report.symbols
    with pytest.raises(MarketDataError, match="NOPE/USDT"):
        await _collector(gw, clock, tmp_path, Recorder()).run(["NOPE/USDT"])


async def test_a_stored_file_collect_cannot_add_to_stops_it_before_any_download(
    gateway: tuple[CcxtGateway, ManualClock], tmp_path: Path
) -> None:
    """A store file without its volume column used to end `collect` with pyarrow's "Target
    schema's field names are not matching" after a page was downloaded; now the run stops
    first, names the file and says to move it away or delete it."""
    gw, clock = gateway
    bad = tmp_path / "BTC_USDT-1m.parquet"
    pq.write_table(pa.table({"timestamp_ms": [T0], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}), bad)
    before = bad.read_bytes()
    collector = _collector(gw, clock, tmp_path, Recorder())
    with pytest.raises(MarketDataError, match=rf"^{bad}: cannot read columns .*; move it out of {tmp_path} or delete it"):
        await collector.run(["DOGE/USDT", "BTC/USDT"])
    assert collector.report.requests == 2  # tickers and markets: no candles asked for
    assert bad.read_bytes() == before and HistoryStore(tmp_path).symbols("1m") == ["BTC/USDT"]


async def test_symbols_are_taken_as_traders_type_them(gateway: tuple[CcxtGateway, ManualClock], tmp_path: Path) -> None:
    """DOGEUSDT used to be an "unknown symbol" although `traces -s` takes it; now it, doge-usdt
    and DOGE_USDT are DOGE/USDT (downloaded once), and a bare base is refused with the pair."""
    gw, clock = gateway
    report = await _collector(gw, clock, tmp_path, Recorder()).run(["DOGEUSDT", "doge-usdt", "XRP_USDT"])
    assert report.symbols == ["DOGE/USDT", "XRP/USDT"] and report.written == {"DOGE/USDT": 1440, "XRP/USDT": 1440}
    with pytest.raises(MarketDataError, match=r"unknown symbol\(s\) DOGE \(did you mean DOGE/USDT\?\), NOPEUSDT: not listed"):
        await _collector(gw, clock, tmp_path, Recorder()).run(["DOGE", "NOPEUSDT"])


async def test_a_second_collect_into_the_same_folder_is_refused_at_once(
    gateway: tuple[CcxtGateway, ManualClock], tmp_path: Path
) -> None:
    """Two collects into one folder used the same temporary file and no lock: one died with a
    FileNotFoundError traceback, the other could leave a 2,000-candle hole. The run now holds
    the folder's lock; a second one is refused before any request, naming folder and holder."""
    import os

    gw, clock = gateway
    collector = _collector(gw, clock, tmp_path, Recorder())
    held = rf"^{tmp_path} is being written by another `hotcoin collect` \(process {os.getpid()}\)"
    with HistoryStore(tmp_path).lock(), pytest.raises(MarketDataError, match=held):  # another collect, running
        await collector.run(["DOGE/USDT"])
    assert collector.report.requests == 0 and HistoryStore(tmp_path).symbols("1m") == []
    report = await _collector(gw, clock, tmp_path, Recorder()).run(["DOGE/USDT"])  # the lock went with its holder
    assert report.written == {"DOGE/USDT": 1440}


class CountingStore(HistoryStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: list[int] = []

    def append(self, symbol: str, timeframe: str, candles: list[Candle], *, since: int | None = None, until: int | None = None) -> int:
        self.writes.append(len(candles))
        return super().append(symbol, timeframe, candles, since=since, until=until)


@pytest.mark.parametrize(("flush", "writes"), [(50_000, 1), (600, 2)], ids=["at-the-end", "every-600"])
async def test_pages_are_written_in_batches_not_one_file_rewrite_each(
    gateway: tuple[CcxtGateway, ManualClock], tmp_path: Path, flush: int, writes: int
) -> None:
    """Each 1,000-candle page rewrote the whole file: quadratic (240 days took 104 s). Pages are
    now kept and written every `flush_candles` (or `flush_s`) and at the end."""
    gw, clock = gateway
    store = CountingStore(tmp_path)
    p = CollectPlan("1m", 1, 2, page=500, flush_candles=flush)
    report = await Collector(gw, store, p, now_ms=clock.now_ms, sleep=clock.sleep, progress=Recorder()).run(["DOGE/USDT"])
    assert report.written == {"DOGE/USDT": 1440} and len(store.writes) == writes and sum(store.writes) == 1440
    assert store.writes[0] >= min(flush, 1440)  # three pages of 500 (the first one short), written once or twice
    assert store.read("DOGE/USDT", "1m").gaps() == []


async def test_a_run_that_stops_mid_download_keeps_what_came_and_resumes(
    gateway: tuple[CcxtGateway, ManualClock], sim: SimExchangeServer, tmp_path: Path
) -> None:
    """Buffered pages are written when the run stops (here: a server error past the retries),
    so stopping loses nothing downloaded, and a re-run goes on from there without a hole."""
    gw, clock = gateway
    progress = Recorder(on_advance=lambda: sim.faults.fail_with_5xx(50, [503]))
    collector = _collector(gw, clock, tmp_path, progress, retries=0)
    with pytest.raises(RetryableOrderError):
        await collector.run(["DOGE/USDT"])
    kept = collector.report.written["DOGE/USDT"]
    assert 0 < kept < 1440 and len(HistoryStore(tmp_path).read("DOGE/USDT", "1m")) == kept  # the first page
    sim.faults.reset()
    report = await _collector(gw, clock, tmp_path, Recorder()).run(["DOGE/USDT"])
    assert report.written == {"DOGE/USDT": 1440 - kept}
    series = HistoryStore(tmp_path).read("DOGE/USDT", "1m")
    assert len(series) == 1440 and series.gaps() == []


async def test_more_days_than_stored_fills_in_the_earlier_part(
    gateway: tuple[CcxtGateway, ManualClock], tmp_path: Path
) -> None:
    """`--days` was ignored for a stored symbol (it resumed from its last candle only), so the
    backtest's advice for a pair that starts late ("collect it over the others' span") did
    nothing. The earlier part is now downloaded, in blocks, latest first, into the same file."""
    gw, clock = gateway
    await _collector(gw, clock, tmp_path, Recorder(), days=1).run(["DOGE/USDT"])
    store = CountingStore(tmp_path)
    p = CollectPlan("1m", 2, 2, page=500, flush_candles=600)
    progress = Recorder()
    report = await Collector(gw, store, p, now_ms=clock.now_ms, sleep=clock.sleep, progress=progress).run(["DOGE/USDT"])
    assert report.written == {"DOGE/USDT": 1440} and progress.started == progress.done == {"DOGE/USDT": 1440}
    assert store.writes == [600, 600, 240]
    series = store.read("DOGE/USDT", "1m")
    assert series.first_ms == T0 and series.last_ms == T0 + 2 * 86_400_000 - MIN
    assert len(series) == 2880 and series.gaps() == []


async def test_a_backfill_stops_where_the_pair_was_not_listed_yet(tmp_path: Path) -> None:
    gw = FakeGateway(clock=ManualClock(T0 + 3 * 86_400_000))
    gw.push_tickers(_batch(["NEW/USDT"], [1.0], T0 + 3 * 86_400_000))
    gw.markets = {"NEW/USDT": None}  # type: ignore[dict-item]
    listed = T0 + 2 * 86_400_000  # a day before "now"
    gw.push_candles([Candle("NEW/USDT", "1m", listed + i * MIN, 1.0, 1.0, 1.0, 1.0, 1.0, True) for i in range(1440)])
    store = HistoryStore(tmp_path)
    store.append("NEW/USDT", "1m", [Candle("NEW/USDT", "1m", listed + i * MIN, 1.0, 1.0, 1.0, 1.0, 1.0, True) for i in range(720, 1440)])
    p = CollectPlan("1m", 3, 2, page=500, flush_candles=600)
    collector = Collector(gw, store, p, now_ms=gw.clock.now_ms, sleep=gw.clock.sleep)
    report = await collector.run(["NEW/USDT"])
    assert report.written == {"NEW/USDT": 720}
    assert store.read("NEW/USDT", "1m").first_ms == listed and store.read("NEW/USDT", "1m").gaps() == []
    assert gw.calls.count("fetch_candles") == 4  # two blocks to the listing, one that finds nothing earlier, no more


async def test_a_file_that_ends_before_the_window_is_refused_with_the_choices(
    gateway: tuple[CcxtGateway, ManualClock], tmp_path: Path
) -> None:
    """An old file with `--days 1` downloaded years to fill forward; storing only the window
    would leave years missing inside the file, read as an outage. It is refused before any
    download, with the --days that reaches it and the move-away fix."""
    gw, clock = gateway
    store = HistoryStore(tmp_path)
    store.append("BTC/USDT", "1m", [Candle("BTC/USDT", "1m", T0 + i * MIN, 1.0, 1.0, 1.0, 1.0, 1.0, True) for i in range(10)])
    before = store.path("BTC/USDT", "1m").read_bytes()
    collector = _collector(gw, clock, tmp_path, Recorder(), days=1)
    path = store.path("BTC/USDT", "1m")
    with pytest.raises(
        MarketDataError,
        match=rf"^{path} ends at 2021-04-16 00:09 UTC, before the 1-day window starts \(2021-04-17 00:00 UTC\): "
        rf"collect with --days 3 to fill it up to now, or move it out of {tmp_path} or delete it",
    ):
        await collector.run(["DOGE/USDT", "BTC/USDT"])
    assert collector.report.requests == 2 and path.read_bytes() == before and store.symbols("1m") == ["BTC/USDT"]
    report = await _collector(gw, clock, tmp_path, Recorder(), days=3).run(["BTC/USDT"])  # the first choice works
    series = store.read("BTC/USDT", "1m")
    assert report.written == {"BTC/USDT": 4310} and series.gaps() == []  # up to now, and back to the 3 days' start
    assert series.first_ms == T0 - 86_400_000 and series.last_ms == T0 + 2 * 86_400_000 - MIN


def _batch(symbols: list[str], change: list[float], ts: int) -> TickerBatch:
    n = len(symbols)
    last = np.ones(n)
    nan = np.full(n, np.nan)
    return TickerBatch(
        ts, tuple(symbols), np.full(n, ts, np.int64), last, nan.copy(), nan.copy(), last / (1 + np.array(change)),
        nan.copy(), nan.copy(), nan.copy(), nan.copy(), np.full(n, -1, np.int64),
    )  # fmt: skip


async def test_movers_skip_what_discovery_never_trades(tmp_path: Path) -> None:
    """Movers were filtered on the quote only, so a de-pegging stablecoin, a fiat pair, a
    leveraged token or a blacklisted coin could take the download; they now go through
    discovery's own static filters (`CandidateFilters`)."""
    symbols = ["USDC/USDT", "EUR/USDT", "BTCUP/USDT", "PEPE/USDT", "DOGE/BTC", "BTC/USDT", "DOGE/USDT", "XRP/USDT"]
    gw = FakeGateway(clock=ManualClock(T0))
    for i, s in enumerate(symbols):
        gw.push_candles([Candle(s, "1h", T0 - 86_400_000, 1.0, 1.0 + (10 - i) / 10, 1.0, 1.0, 1.0, True)])
    p = CollectPlan("1m", 1, 2)
    collector = Collector(
        gw, HistoryStore(tmp_path), p, now_ms=gw.clock.now_ms, sleep=gw.clock.sleep, filters=FiltersSection(blacklist=("PEPE",))
    )
    assert await collector.movers(_batch(symbols, [0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.2, 0.01], T0)) == ["BTC/USDT", "DOGE/USDT"]


class Spikes(FakeMarketSource):
    """The flat market of `FakeMarketSource`, with a pair's high at `spikes[symbol][1]` during
    the minute that opens at `spikes[symbol][0]`, in every timeframe's candle holding it."""

    def __init__(self, spikes: dict[str, tuple[int, float]], now: int) -> None:
        super().__init__({s: 1.0 for s in spikes})
        self.spikes = spikes
        self.asked: list[tuple[str, int | None, int]] = []
        self.advance_to(now)

    def klines(
        self, symbol: str, timeframe: str, *, start_ms: int | None = None, end_ms: int | None = None, limit: int = 500
    ) -> list[Candle]:
        import dataclasses

        self.asked.append((timeframe, start_ms, limit))
        tf = timeframe_ms(timeframe)
        at, high = self.spikes.get(symbol, (-1, 1.0))
        return [
            dataclasses.replace(c, high=high) if c.open_ms <= at < min(c.open_ms + tf, self.now_ms) else c
            for c in super().klines(symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit)
        ]


async def test_movers_rank_the_last_days_times_24_hours_not_the_running_utc_day(tmp_path: Path) -> None:
    """Movers were ranked on the last `days` daily candles, the last one the running UTC day:
    with --days 1 five minutes after midnight, a pair that doubled 12 hours ago ranked below
    one that rose 10% in those five minutes. They are now ranked on the last days x 24 h,
    rolling (hourly candles, one request per pair); a move 30 hours ago is outside it."""
    now = T0 + 2 * 86_400_000 + 5 * MIN + 30_000  # 00:05:30 UTC
    source = Spikes(
        {
            "PUMP/USDT": (now - 12 * 60 * MIN, 2.0),  # +100% yesterday afternoon, inside the 24 h
            "LATE/USDT": (T0 + 2 * 86_400_000 + MIN, 1.1),  # +10% since midnight
            "OLD/USDT": (now - 30 * 60 * MIN, 4.0),  # +300% 30 h ago: before the window
            "FLAT/USDT": (-1, 1.0),
        },
        now,
    )
    async with running_sim_exchange(source, speed=1.0) as sim:
        clock = ManualClock(now, auto=True, auto_max_s=3600.0)
        gw = collect_gateway(ExchangeSection(endpoint=sim.base_url, stale_stream_s=0.0), clock)
        try:
            collector = _collector(gw, clock, tmp_path, Recorder(), days=1, top=1, page=1000)
            batch = await gw.fetch_tickers()
            assert await collector.movers(batch) == ["PUMP/USDT"]  # not LATE (the day so far), nor OLD (30 h ago)
            assert collector.report.requests == 4  # one request of candles per pair
            hourly = T0 + 86_400_000  # the hour that holds now - 24 h, then each up to the running one
            assert {a for a in source.asked if a[0] != "1m"} == {("1h", hourly, 25)}
        finally:
            await gw.close()


@pytest.mark.parametrize(
    ("days", "page", "expected"),
    [(1, 1000, ("1h", 25)), (41, 1000, ("1h", 985)), (42, 1000, ("4h", 253)), (167, 1000, ("1d", 168)),
     (2000, 1000, ("1d", 1000)), (3, 50, ("4h", 19))],
    ids=["a-day", "41-days-hourly", "42-days-4-hourly", "167-days-daily", "cut-to-a-page", "small-page"],
)  # fmt: skip
def test_movers_window_is_one_page_of_the_finest_candles_that_cover_it(days: int, page: int, expected: tuple[str, int]) -> None:
    """One request per pair whatever `--days`: the finest candles whose page reaches back over
    the whole window, from the candle holding its start to the running one."""
    from engine.backtest.collect import mover_candles

    now = T0 + 2 * 86_400_000 + 5 * MIN + 30_000
    tf, since, count = mover_candles(days, now, page)
    assert (tf, count) == expected
    step = timeframe_ms(tf)
    assert since % step == 0 and since + (count - 1) * step == now // step * step  # up to the running candle
    assert since <= now - days * 86_400_000 < since + step or count == page  # from the one holding the start


async def test_the_bar_of_a_pair_listed_inside_the_window_ends_at_100_percent(tmp_path: Path) -> None:
    """The bar's total counts every minute of the window; a pair listed inside it (here: a
    day into a 3-day window, resumed) has fewer, and its bar stopped at a third. When a symbol
    is done its total is now what was done."""
    from engine.backtest.api import RichProgress

    gw = FakeGateway(clock=ManualClock(T0 + 3 * 86_400_000))
    gw.push_tickers(_batch(["NEW/USDT"], [1.0], T0 + 3 * 86_400_000))
    gw.markets = {"NEW/USDT": None}  # type: ignore[dict-item]
    listed = T0 + 2 * 86_400_000
    gw.push_candles([Candle("NEW/USDT", "1m", listed + i * MIN, 1.0, 1.0, 1.0, 1.0, 1.0, True) for i in range(1440)])
    store = HistoryStore(tmp_path)
    store.append("NEW/USDT", "1m", [Candle("NEW/USDT", "1m", listed + i * MIN, 1.0, 1.0, 1.0, 1.0, 1.0, True) for i in range(720, 1440)])
    with RichProgress() as bar:
        p = CollectPlan("1m", 3, 2, page=500, flush_candles=600)
        report = await Collector(gw, store, p, now_ms=gw.clock.now_ms, sleep=gw.clock.sleep, progress=bar).run(["NEW/USDT"])
    [task] = bar.bar.tasks
    assert report.written == {"NEW/USDT": 720} and task.completed == task.total == 720 and task.finished
