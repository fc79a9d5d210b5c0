"""`hotcoin collect`: download candles into the history store through the exchange gateway.

Which symbols: a given list, or the pairs of the quote asset that moved most over the last
`days` x 24 h, rolling (up to the exchange's now, not to a UTC midnight). Movers are found in
two passes so a 2,000-symbol exchange costs a handful of requests: the 24 h tickers pick the
`4 x top` biggest absolute 24 h changes, then one request each of their hourly candles ranks
them by the range over the window (max high / min low - 1; `mover_candles`).

Resumable: each symbol continues from its last stored candle (the store skips what it holds),
so an interrupted collect run re-run later fetches only what is missing. Only candles closed
by the exchange's clock are stored. Pages are kept in memory and written every
`flush_candles` candles or `flush_s` seconds, at the end and when the run stops (an error, a
Ctrl-C): appending each 1,000-candle page rewrote the whole file, so a long download was
quadratic (240 days: 104 s). A kill -9 loses at most what was not written yet, never the file.

`--days` is the window wanted, whatever is stored already: a file that starts after the
window's start is filled in backwards (`_backfill`), so a pair collected over a shorter span
is extended to the others' (the backtest's "listings" warning says to do exactly that). A
file that ends before the window's start is refused before any download, with the choices
(a `--days` that reaches it, or moving the file away): filling forward downloaded years of
history a `--days 1` did not ask for, and starting at the window instead would leave a hole
of years inside the file, which the replay reads as an exchange outage.

One writer per folder: the run holds the store's lock (`HistoryStore.lock`); a second collect
into the same folder is refused at once instead of racing on its files.

Rate-limit aware: a `RateLimitedError` (HTTP 429/418, DDoSProtection) waits until the
gateway's silence ends and at least the server's Retry-After, however long (a request sent
during a ban lengthens it), and at least an exponential backoff capped at `max_backoff_s`;
then it retries, up to `retries` times per request. A call the gateway refuses itself during
its silence (nothing sent) is waited out too, and counts neither as a request nor as a retry.
`hotcoin collect` builds its gateway with a silence of the Retry-After itself
(`RateLimitBackoff.trust_retry_after`), so a 429 that asks for 2 s costs about 2 s, not the
live engine's 60 -> 480 s; a 418 ban is waited out whole, however long.

A transient failure (a `RetryableOrderError`: a 5xx, a timeout, a dropped connection,
-1001/-1007) is retried after the same backoff, up to `retries` times per request: a download
of an hour should not die on one 502 (nothing is lost either way; the store keeps what came).
Anything else (`NonRetryableOrderError`, an unclassified reply) will fail again as sent, so it
stops the run at once with its message. Every wait is reported with its reason (`Progress`).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from engine.backtest.history import HistoryStore, afresh
from engine.config.sections.discovery import FiltersSection
from engine.discovery.filters import CandidateFilters, FilterCode
from engine.domain import Candle, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError, RateLimitedError, RetryableOrderError

if TYPE_CHECKING:  # the gateway comes from the command: a backtest, which imports this module too, never loads it
    from engine.market.gateway import Gateway

DAY_MS = 86_400_000
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


class Progress:
    """What collect reports as it goes; the CLI draws it with rich, tests record it."""

    def start(self, symbol: str, total: int) -> None:
        """A symbol begins; `total` candles expected."""

    def advance(self, symbol: str, n: int) -> None:
        """`n` more candles of `symbol` handled."""

    def finish(self, symbol: str) -> None:
        """`symbol` is done: the candles handled are all there were. Fewer than `start` said
        where the pair was listed inside the window, or the exchange has gaps; a bar left at
        its estimate never reached 100 %."""

    def waiting(self, seconds: float, reason: str) -> None:
        """Pausing `seconds` before a retry; `reason` says which request failed, how, and which retry."""


@dataclass
class CollectReport:
    symbols: list[str]
    written: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    rate_limited: int = 0
    failed: int = 0  # transient failures retried (5xx, timeouts), rate limits apart
    waited_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.written.values())


@dataclass(frozen=True, slots=True)
class CollectPlan:
    timeframe: str
    days: int
    top: int
    page: int = 1000
    retries: int = 8
    max_backoff_s: float = 30.0
    quote: str = "USDT"
    flush_candles: int = 50_000  # pages kept in memory before a write (and a backfill block's size)
    flush_s: float = 60.0  # ... or the seconds since the last write, whichever comes first


class Collector:
    def __init__(
        self,
        gateway: Gateway,
        store: HistoryStore,
        plan: CollectPlan,
        *,
        now_ms: Callable[[], int],
        sleep: Sleep,
        progress: Progress | None = None,
        filters: FiltersSection | None = None,
        report: CollectReport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.plan = plan
        self.now_ms = now_ms
        self.sleep = sleep
        self.progress = progress or Progress()
        self.filters = filters or FiltersSection()
        self.report = report or CollectReport([])  # the caller's own: what was stored when a run stops
        self.monotonic = monotonic

    async def run(self, symbols: Sequence[str] | None = None) -> CollectReport:
        with self.store.lock():  # one writer per folder, for the whole run
            return await self._run(symbols)

    async def _run(self, symbols: Sequence[str] | None) -> CollectReport:
        p = self.plan
        tf = timeframe_ms(p.timeframe)
        batch = await self._call(lambda: self.gateway.fetch_tickers())
        now = _exchange_now(batch)
        chosen = list(symbols) if symbols else await self.movers(batch)
        markets = await self._call(lambda: self.gateway.load_markets())
        chosen = _resolve(chosen, markets, p.quote)
        start = (now - p.days * DAY_MS) // tf * tf
        spans: dict[str, tuple[int, int] | None] = {}
        for symbol in chosen:  # a stored file collect cannot add to stops the run before any download
            series = self.store.stored(symbol, p.timeframe)
            spans[symbol] = None if series is None else (series.first_ms, series.last_ms)
        stale = [self._stale(s, span[1], start, now) for s, span in spans.items() if span and span[1] + tf < start]
        if stale:
            raise MarketDataError("; ".join(stale))
        self.report.symbols = chosen
        for symbol in chosen:
            self.report.written[symbol] = 0
            await self._symbol(symbol, now, start, spans[symbol])
        return self.report

    def _stale(self, symbol: str, last: int, start: int, now: int) -> str:
        """The refusal for a file that ends before the window starts: the choices, with the
        `--days` that reaches its end."""
        path = self.store.path(symbol, self.plan.timeframe)
        reach = math.ceil((now - last) / DAY_MS) + 1
        return (
            f"{path} ends at {_utc(last)}, before the {self.plan.days}-day window starts ({_utc(start)}): "
            f"collect with --days {reach} to fill it up to now, or {afresh(path, symbol)} from {_utc(start)} "
            "(storing only the window would leave a hole read as an exchange outage)"
        )

    async def movers(self, batch: TickerBatch) -> list[str]:
        """The `top` pairs of the quote asset with the largest range over the last `days` x 24 h
        (to the exchange's now, `mover_candles`), among those discovery may trade: the same
        static filters (`CandidateFilters`: quote, stablecoins, fiat, leveraged tokens,
        blacklist), so a USDC/USDT or BTCUP/USDT that discovery never considers is not what the
        download is spent on.

        The range was taken from the last `days` daily candles, the last of which is the
        running UTC day: a `--days 1` just after midnight ranked the pairs on a few minutes,
        and any `--days N` dropped up to a day of the window it names."""
        p = self.plan
        rules = CandidateFilters(self.filters, p.quote, 0)
        rules.note_bases(batch.symbols)
        changes = []
        for i, s in enumerate(batch.symbols):
            o, last = float(batch.open_24h[i]), float(batch.last[i])
            ok = o > 0 and last > 0 and math.isfinite(o) and math.isfinite(last)
            if ok and rules.classify(s) == FilterCode.PASS:
                changes.append((abs(last / o - 1.0), s))
        changes.sort(reverse=True)
        shortlist = [s for _, s in changes[: 4 * p.top]]
        tf, since, limit = mover_candles(p.days, _exchange_now(batch), p.page)
        ranges = []
        for s in shortlist:
            got = await self._call(lambda s=s: self.gateway.fetch_candles(s, tf, since, limit))  # type: ignore[misc]
            window = [c for c in got if c.open_ms >= since]
            if window:
                hi, lo = max(c.high for c in window), min(c.low for c in window)
                ranges.append((hi / lo - 1.0 if lo > 0 else 0.0, s))
        ranges.sort(reverse=True)
        return sorted(s for _, s in ranges[: p.top])

    async def _symbol(self, symbol: str, now: int, start: int, span: tuple[int, int] | None) -> None:
        """Forward from the stored end (or the window's start) to now, then backwards from the
        stored start to the window's start."""
        tf = timeframe_ms(self.plan.timeframe)
        since = start if span is None else span[1] + tf
        earlier = 0 if span is None else max(0, (span[0] - start) // tf)
        self.progress.start(symbol, max(0, (now - since) // tf) + earlier)
        await self._download(symbol, since, now, now, whole=False)
        if span is not None and span[0] > start:
            await self._backfill(symbol, start, span[0], now)
        self.progress.finish(symbol)

    async def _backfill(self, symbol: str, start: int, first: int, now: int) -> None:
        """Candles from `start` up to the stored `first`, in blocks of `flush_candles`, the
        latest first: each block is downloaded forward up to what is stored and written whole,
        so the file never has a hole (`HistoryStore.append` refuses one) and an interrupted
        backfill loses at most one block. A block with no candle means the pair was not listed
        yet: nothing earlier exists."""
        tf = timeframe_ms(self.plan.timeframe)
        end = first
        while end > start:
            block = max(start, end - self.plan.flush_candles * tf)
            if not await self._download(symbol, block, end, now, whole=True):
                break
            end = block

    async def _download(self, symbol: str, since: int, until: int, now: int, *, whole: bool) -> int:
        """Candles opening in [since, until), closed by `now`, in pages; written every
        `flush_candles` or `flush_s` and when the download ends or stops (`whole`: only at the
        end, for a backfill block, which joins the stored candles only once complete). Returns
        how many came from the exchange."""
        p = self.plan
        tf = timeframe_ms(p.timeframe)
        buffer: list[Candle] = []
        buffered_from, flushed_at, got = since, self.monotonic(), 0
        completed = False
        try:
            while since + tf <= now and since < until:
                page: list[Candle] = await self._call(
                    lambda since=since: self.gateway.fetch_candles(symbol, p.timeframe, since, p.page)  # type: ignore[misc]
                )
                # closed by the exchange's clock too: a gateway whose clock runs ahead would call the running one closed
                closed = [c for c in page if c.closed and since <= c.open_ms < until and c.open_ms + tf <= now]
                if not closed:
                    break
                buffer.extend(closed)
                got += len(closed)
                self.progress.advance(symbol, len(closed))
                nxt = closed[-1].open_ms + tf
                if nxt <= since:
                    break
                since = nxt
                due = len(buffer) >= p.flush_candles or self.monotonic() - flushed_at >= p.flush_s
                if due and not whole:
                    self._flush(symbol, buffer, buffered_from, None)
                    buffered_from, flushed_at = since, self.monotonic()
            completed = True
        finally:
            if completed or not whole:  # a part of a backfill block would leave a hole before the stored start
                self._flush(symbol, buffer, buffered_from, until if whole else None)
        return got

    def _flush(self, symbol: str, buffer: list[Candle], since: int, until: int | None) -> None:
        """Write what is buffered: the exchange's answer for [since, until)."""
        if buffer:
            n = self.store.append(symbol, self.plan.timeframe, buffer, since=since, until=until)
            self.report.written[symbol] = self.report.written.get(symbol, 0) + n
            buffer.clear()

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One request, retried after rate-limit answers (waiting out the silence) and after
        transient failures (after the backoff)."""
        attempt = 0
        while True:
            try:
                result = await call()
            except RateLimitedError as exc:
                if not exc.sent:  # the gateway's own refusal during its silence: no request, no retry
                    await self._wait(exc, attempt, str(exc))
                    continue
                self.report.requests += 1
                self.report.rate_limited += 1
                if attempt >= self.plan.retries:
                    raise
                await self._wait(exc, attempt, self._retry_reason(exc, attempt))
                attempt += 1
            except RetryableOrderError as exc:
                self.report.requests += 1
                self.report.failed += 1
                if attempt >= self.plan.retries:
                    raise
                await self._pause(self._backoff(attempt), self._retry_reason(exc, attempt))
                attempt += 1
            else:
                self.report.requests += 1
                return result

    def _backoff(self, attempt: int) -> float:
        return min(0.5 * 2.0**attempt, self.plan.max_backoff_s)

    def _retry_reason(self, exc: Exception, attempt: int) -> str:
        """The error, short, and the retry count: ccxt appends a 5xx's HTML page to its message
        (`... 502 Bad Gateway <html>...`), which says nothing the status does not."""
        text = " ".join(str(exc).split(" <", 1)[0].split()) or type(exc).__name__
        if len(text) > 240:
            text = text[:239] + "…"
        return f"{text} (retry {attempt + 1} of {self.plan.retries})"

    async def _wait(self, exc: RateLimitedError, attempt: int, reason: str) -> None:
        """Sleep until the ban ends: the gateway's silence and the server's Retry-After are
        floors (a retry sent early only lengthens a ban); `max_backoff_s` caps only the
        exponential backoff that spaces retries where the ban says less."""
        wait = max((exc.until_ms - self.now_ms()) / 1000, exc.retry_after_s or 0.0, self._backoff(attempt))
        await self._pause(wait, reason)

    async def _pause(self, seconds: float, reason: str) -> None:
        self.report.waited_s += seconds
        self.progress.waiting(seconds, reason)
        await self.sleep(seconds)


MOVER_TIMEFRAMES = ("1h", "4h", "1d")


def mover_candles(days: int, now: int, page: int) -> tuple[str, int, int]:
    """The candles that rank the movers over the last `days` x 24 h before `now` (the
    exchange's): (timeframe, first open time, how many), in one request per pair. The finest of
    `MOVER_TIMEFRAMES` whose candles from the one holding `now - days x 24 h` to the running
    one fit in a `page` (Binance's 1,000 hourly candles reach back 41 days, 4-hourly 166): the
    window is then covered whole, give or take that first candle's part before it, and the
    running candle counts as far as it goes. A window too long even for daily candles is cut to
    the last `page` days."""
    for tf in MOVER_TIMEFRAMES:
        step = timeframe_ms(tf)
        current = now // step * step
        count = (current - (now - days * DAY_MS) // step * step) // step + 1
        if count <= page:
            break
    count = min(count, page)
    return tf, current - (count - 1) * step, count


def _exchange_now(batch: TickerBatch) -> int:
    """The exchange's clock, not ours, from its tickers: candles are asked for up to its now."""
    return int(batch.event_ms.max()) if len(batch.event_ms) else batch.ts_ms


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _resolve(names: Sequence[str], markets: Collection[str], quote: str) -> list[str]:
    """The listed pairs `names` mean, typed as a trader types them (`traces -s` takes the same):
    doge/usdt, DOGE-USDT, DOGE_USDT or DOGEUSDT are DOGE/USDT. A name that is no listed pair is
    an error naming it, with the pair of the quote asset where the base alone was given."""
    chosen, unknown = [], []
    for name in names:
        s = name.strip().upper().replace("-", "/").replace("_", "/")
        joined = [m for m in markets if "/" not in s and m.replace("/", "") == s]
        if s in markets or len(joined) == 1:
            chosen.append(s if s in markets else joined[0])
        else:
            unknown.append(f"{name} (did you mean {s}/{quote}?)" if f"{s}/{quote}" in markets else name)
    if unknown:
        raise MarketDataError(
            f"unknown symbol(s) {', '.join(unknown)}: not listed on the exchange; check spelling (BASE/QUOTE, e.g. DOGE/USDT)"
        )
    return list(dict.fromkeys(chosen))  # DOGE/USDT and DOGEUSDT are one pair, downloaded once
