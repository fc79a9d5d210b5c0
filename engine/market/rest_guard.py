"""Every REST call to the exchange goes through one `RestGuard`.

Three jobs, done once rather than in each method:
- **Rate limits**: after HTTP 429/418 Binance is counting our weight, and every further
  request lengthens the ban. So the guard stays silent until the `RateLimitBackoff` ends
  (60 -> 120 -> 240 -> 480 s, the server's Retry-After a floor): calls made meanwhile raise
  `RateLimitedError` at once, without a request. The silence is shown in `health` and
  announced as a `RATE_LIMITED` notice for the journal. A -2015 that ccxt raises as
  `DDoSProtection` is no rate limit (`engine.market.errors.is_rate_limit`): it starts no
  silence, or one key without trading permission would stop every read for minutes.
- **Classification**: any other failure is raised as the `engine.errors.OrderError`
  subclass of `engine.market.errors` (`placing=True` for create_order, where a timeout is
  UNKNOWN, not RETRYABLE), with the ccxt exception as its cause.
- **Faults a human must fix** (`ExchangeFault` in `health.fault`): a refused key
  (`ExchangeAuthError`) is recorded here, and clock skew by the gateway (`set_fault`), which
  owns the resync. A fault stands until the call it refused works again, and is announced
  once (an `EXCHANGE_FAULT` notice) when it appears, not at every refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.errors import ExchangeAuthError, RateLimitedError
from engine.market.backoff import Clock, RateLimitBackoff
from engine.market.ccxt_client import retry_after_of
from engine.market.errors import AUTH_FIX, is_rate_limit, to_order_error
from engine.market.gateway import REST_STREAM, ExchangeFault, GatewayNotice, NoticeKind, NoticeSink
from engine.market.stream import HealthState

T = TypeVar("T")

AUTH_FAULT = "exchange_auth"  # `ExchangeFault.code` (and the state reason) of a refused key


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
        except Exception as exc:
            self.health.error(exc, now)
            if is_rate_limit(exc):
                raise self._silence(operation, exc, now) from exc
            error = to_order_error(exc, placing=placing, operation=operation)
            if isinstance(error, ExchangeAuthError):
                detail = f"{AUTH_FIX} ({operation} refused with {error.code})"
                self.set_fault(ExchangeFault(AUTH_FAULT, detail, operation), now)
            raise error from exc
        self.health.last_message_ms = self._clock.now_ms()
        self.health.connected = True
        fault = self.health.fault
        if fault is not None and fault.operation == operation:
            self.health.fault = None
        if rate.strikes:
            rate.success()
            self.health.rate_limited_until_ms = 0
        return result

    def _silence(self, operation: str, exc: Exception, now: int) -> RateLimitedError:
        """Start (or lengthen) the rate-limit silence after `exc`; the error to raise."""
        rate = self.rate
        retry_after = retry_after_of(exc)
        wait = rate.hit(now, retry_after)
        self.health.rate_limited_until_ms = rate.until_ms
        if self._notify is not None:
            self._notify(
                GatewayNotice(
                    NoticeKind.RATE_LIMITED, REST_STREAM, now, detail=str(exc)[:300], delay_s=wait,
                    until_ms=rate.until_ms, error_class="retryable",
                )
            )
        return RateLimitedError(
            f"{operation}: {type(exc).__name__}; silent for {wait:.0f} s",
            code=to_order_error(exc).code, until_ms=rate.until_ms, retry_after_s=retry_after,
        )

    def set_fault(self, fault: ExchangeFault, now_ms: int) -> None:
        """Record `fault` in `health`; announced only when no fault of its kind stood already."""
        before = self.health.fault
        self.health.fault = fault
        if self._notify is not None and (before is None or before.code != fault.code):
            self._notify(GatewayNotice(NoticeKind.EXCHANGE_FAULT, REST_STREAM, now_ms, detail=fault.detail))
