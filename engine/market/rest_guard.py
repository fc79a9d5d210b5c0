"""Every REST call to the exchange goes through one `RestGuard`.

Two jobs, done once rather than in each method:
- **Rate limits**: after HTTP 429/418 Binance is counting our weight, and every further
  request lengthens the ban. So the guard stays silent until the `RateLimitBackoff` ends
  (60 -> 120 -> 240 -> 480 s, the server's Retry-After a floor): calls made meanwhile raise
  `RateLimitedError` at once, without a request. The silence is shown in `health` and
  announced as a `RATE_LIMITED` notice for the journal.
- **Classification**: any other failure is raised as the `engine.errors.OrderError`
  subclass of `engine.market.errors` (`placing=True` for create_order, where a timeout is
  UNKNOWN, not RETRYABLE), with the ccxt exception as its cause.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.errors import RateLimitedError
from engine.market.backoff import Clock, RateLimitBackoff
from engine.market.ccxt_client import retry_after_of
from engine.market.errors import RATE_LIMIT_ERRORS, to_order_error
from engine.market.gateway import REST_STREAM, GatewayNotice, NoticeKind, NoticeSink
from engine.market.stream import HealthState

T = TypeVar("T")


class RestGuard:
    """Runs REST calls under the shared rate-limit silence; `health` is the `rest` stream's."""

    def __init__(self, clock: Clock, rate: RateLimitBackoff, notify: NoticeSink | None = None) -> None:
        self._clock = clock
        self.rate = rate
        self._notify = notify
        self.health = HealthState(REST_STREAM)

    async def call(self, operation: str, call: Callable[[], Awaitable[T]], *, placing: bool = False) -> T:
        now = self._clock.now_ms()
        rate = self.rate
        if rate.until_ms > now:
            raise RateLimitedError(
                f"{operation}: rate-limited until {rate.until_ms} (nothing sent)", until_ms=rate.until_ms, sent=False
            )
        try:
            result = await call()
        except RATE_LIMIT_ERRORS as exc:
            retry_after = retry_after_of(exc)
            wait = rate.hit(now, retry_after)
            self.health.error(exc, now)
            self.health.rate_limited_until_ms = rate.until_ms
            if self._notify is not None:
                self._notify(
                    GatewayNotice(
                        NoticeKind.RATE_LIMITED, REST_STREAM, now, detail=str(exc)[:300], delay_s=wait,
                        until_ms=rate.until_ms, error_class="retryable",
                    )
                )
            raise RateLimitedError(
                f"{operation}: {type(exc).__name__}; silent for {wait:.0f} s",
                code=to_order_error(exc).code, until_ms=rate.until_ms, retry_after_s=retry_after,
            ) from exc
        except Exception as exc:
            self.health.error(exc, now)
            raise to_order_error(exc, placing=placing, operation=operation) from exc
        self.health.last_message_ms = self._clock.now_ms()
        self.health.connected = True
        if rate.strikes:
            rate.success()
            self.health.rate_limited_until_ms = 0
        return result
