"""`hotcoin collect`: download candles into the history store through the exchange gateway.

Which symbols: a given list, or the pairs of the quote asset that moved most over the last
`days` days. Movers are found in two passes so a 2,000-symbol exchange costs a handful of
requests: the 24 h tickers pick the `4 x top` biggest absolute 24 h changes, then their daily
candles rank them by the range over `days` (max high / min low - 1).

Resumable: each symbol continues from its last stored candle (the store skips what it holds),
so an interrupted collect run re-run later fetches only what is missing. Only candles closed
by the exchange's clock are stored.

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

import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from engine.backtest.history import HistoryStore
from engine.domain import Candle, TickerBatch
from engine.domain.candle import timeframe_ms
from engine.errors import MarketDataError, RateLimitedError, RetryableOrderError
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
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.plan = plan
        self.now_ms = now_ms
        self.sleep = sleep
        self.progress = progress or Progress()
        self.report = CollectReport([])

    async def run(self, symbols: Sequence[str] | None = None) -> CollectReport:
        batch = await self._call(lambda: self.gateway.fetch_tickers())
        # The exchange's clock, not ours: candles are asked for up to the exchange's "now".
        now = int(batch.event_ms.max()) if len(batch.event_ms) else batch.ts_ms
        chosen = list(symbols) if symbols else await self.movers(batch)
        markets = await self._call(lambda: self.gateway.load_markets())
        chosen = _resolve(chosen, markets, self.plan.quote)
        for symbol in chosen:  # a stored file collect cannot add to stops the run before any download
            self.store.stored(symbol, self.plan.timeframe)
        self.report.symbols = chosen
        for symbol in chosen:
            self.report.written[symbol] = await self._symbol(symbol, now)
        return self.report

    async def movers(self, batch: TickerBatch) -> list[str]:
        """The `top` pairs of the quote asset with the largest range over the last `days` days."""
        p = self.plan
        suffix = f"/{p.quote}"
        changes = []
        for i, s in enumerate(batch.symbols):
            o, last = float(batch.open_24h[i]), float(batch.last[i])
            if s.endswith(suffix) and o > 0 and last > 0 and math.isfinite(o) and math.isfinite(last):
                changes.append((abs(last / o - 1.0), s))
        changes.sort(reverse=True)
        shortlist = [s for _, s in changes[: 4 * p.top]]
        ranges = []
        for s in shortlist:
            days = await self._call(lambda s=s: self.gateway.fetch_candles(s, "1d", None, p.days))  # type: ignore[misc]
            if days:
                hi, lo = max(c.high for c in days), min(c.low for c in days)
                ranges.append((hi / lo - 1.0 if lo > 0 else 0.0, s))
        ranges.sort(reverse=True)
        return sorted(s for _, s in ranges[: p.top])

    async def _symbol(self, symbol: str, now: int) -> int:
        p = self.plan
        tf = timeframe_ms(p.timeframe)
        last = self.store.last_ms(symbol, p.timeframe)
        since = (now - p.days * DAY_MS) // tf * tf if last is None else last + tf
        self.progress.start(symbol, max(0, (now - since) // tf))
        written = 0
        while since + tf <= now:
            page: list[Candle] = await self._call(
                lambda since=since: self.gateway.fetch_candles(symbol, p.timeframe, since, p.page)  # type: ignore[misc]
            )
            # closed by the exchange's clock too: a gateway whose clock runs ahead would call the running one closed
            closed = [c for c in page if c.closed and since <= c.open_ms and c.open_ms + tf <= now]
            if not closed:
                break
            written += self.store.append(symbol, p.timeframe, closed)
            self.progress.advance(symbol, len(closed))
            nxt = closed[-1].open_ms + tf
            if nxt <= since:
                break
            since = nxt
        return written

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
