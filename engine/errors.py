"""The engine's exception tree. Callers catch by level.

    HotcoinError
    ├── ConfigError              bad config: names the key, the file and the fix
    ├── JournalError
    │   ├── EventValidationError a malformed event (rejected and counted, never dropped silently)
    │   ├── JournalInUseError    another engine is writing this journal (its lock is held)
    │   ├── JournalDamagedError  the file or some of its events cannot be read back (corruption)
    │   ├── ArchiveWriteError    a rotation could not write its archive (that disk full or read-only)
    │   └── TraceNotFoundError   replay of an unknown or ambiguous trace id
    ├── MarketDataError          data no exchange could have sent (NaN, negative, unknown symbol)
    │   └── StoreWriteError      a candle store file could not be written (disk full, too large, read-only)
    └── OrderError               an order that failed; `error_class` says what a caller may do
        ├── RetryableOrderError      try again later (network, rate limit, timeout)
        ├── NonRetryableOrderError   will fail again as sent (filters, balance, unknown order)
        │   ├── InsufficientBalanceError  the account lacks what the order needs (-2010)
        │   ├── OrderNotSentError    failed in our process before any request left: never sent
        │   ├── ExchangeAuthError    the key, its permissions or our IP refused (-2015/-2014/-1022)
        │   └── ClockSkewError       our timestamps refused (-1021) even after a clock resync
        └── UnknownOrderError        outcome unknown: reconcile before retrying
"""

from __future__ import annotations

import enum
from pathlib import Path


class ErrorClass(enum.StrEnum):
    """How a failed exchange call may be handled. See `engine.market.errors` for the map."""

    RETRYABLE = "retryable"
    NON_RETRYABLE = "non_retryable"
    UNKNOWN = "unknown"


class HotcoinError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(HotcoinError):
    """Invalid configuration. The message names the key, the file and the fix."""


class JournalError(HotcoinError):
    """The journal could not do what was asked."""


class EventValidationError(JournalError):
    """An event that does not match the journal contract."""


class JournalInUseError(JournalError):
    """Another engine holds the journal's writer lock; two writers would trade the same positions."""


class JournalDamagedError(JournalError):
    """A journal that is an SQLite file but cannot be read back: a truncated or overwritten
    file, or event rows whose text or payload no longer decode. Told apart from "no journal"
    because the fix differs: keep the file and salvage it, rather than point at another.
    `reason` is what is wrong, short (SQLite's words), for a table cell."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class ArchiveWriteError(JournalError):
    """A rotation could not write its archive file: the archive folder's disk is full, read-only
    or failing. Its own class because nothing is lost and the journal goes on: the main file
    keeps every event of the range (the copy commits before the delete), and the rotation stays
    pending until that disk can take it. `archive` is the file it was writing, `first`..`last`
    the seqs it was moving, `reason` what SQLite or the file system said, `fix` the cause and
    the fix, named on the archive folder's disk."""

    def __init__(self, message: str, archive: Path, first: int, last: int, *, reason: str, fix: str) -> None:
        super().__init__(message)
        self.archive = archive
        self.first = first
        self.last = last
        self.reason = reason
        self.fix = fix


class TraceNotFoundError(JournalError):
    """No trace (or more than one) matches the id given; carries the nearest ids."""

    def __init__(self, message: str, nearest: list[str] | None = None) -> None:
        super().__init__(message)
        self.nearest = nearest or []


class MarketDataError(HotcoinError):
    """Market data that cannot be true; the caller counts and skips it."""


class StoreWriteError(MarketDataError):
    """A file of the candle store could not be written: its disk is full, the file would grow
    past the file system's or the user's size limit (EFBIG), the folder turned read-only. The
    OS error surfaced from pyarrow deep inside `hotcoin collect` as a 69-line traceback that
    did not say which file; as a `HotcoinError` every caller prints it as one line and stops
    cleanly (collect then says what is stored). `path` is the store file (not the temporary
    one the write went through, which is removed: the file keeps what it held), `reason` the
    OS's words."""

    def __init__(self, message: str, path: Path, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class OrderError(HotcoinError):
    """An order that failed. Subclasses fix `error_class`."""

    error_class: ErrorClass = ErrorClass.UNKNOWN

    def __init__(self, message: str, *, code: int | str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        # What went wrong in the exchange's own words ("Market is closed."), short enough for a
        # status line in an emergency; the message itself when the exchange said nothing more.
        self.reason = reason or message


class RetryableOrderError(OrderError):
    error_class = ErrorClass.RETRYABLE


class NonRetryableOrderError(OrderError):
    error_class = ErrorClass.NON_RETRYABLE


class InsufficientBalanceError(NonRetryableOrderError):
    """The exchange refused the order because the account does not hold what it needs
    (Binance -2010 "insufficient balance"). Its own class because the cure differs from other
    refusals: for an exit, the coins the engine thinks it holds are not all there (sold outside
    the engine, or never bought), and only learning the real balance ends the refusals."""


class OrderNotSentError(NonRetryableOrderError):
    """An order that failed in our own process before any request for it left (ccxt's local
    checks: an AssertionError on a market whose tick it cannot round to, say). The exchange
    never saw it, so its outcome is known, and sent again it fails the same way. Its own class
    because such an error is no ccxt exception and was taken for an unknown outcome: journaled
    "unknown", looked up, and later "rejected: its create never reached the exchange"."""


class ExchangeAuthError(NonRetryableOrderError):
    """The exchange refused our API key for this call: Binance -2015 (key, IP or permission for
    the action), -2014 (key format) or -1022 (signature). No retry and no wait mends it: the owner
    must fix the key's permissions or the IP whitelist. Its own class because ccxt raises -2015
    as `DDoSProtection` once a private call has succeeded, which read as a rate limit: every
    REST call silenced for minutes and the console saying "rate limited"."""


class ClockSkewError(NonRetryableOrderError):
    """The exchange refused our request's timestamp (-1021, outside recvWindow) again after the
    gateway had re-learned the exchange's clock and resent it. Nothing was placed (the check runs
    before matching), but sending it again fails the same way until the system clock is synced:
    so not retryable (an exit backs off instead of being resent every tick). `skew_ms`: the
    exchange's clock minus ours, as measured."""

    def __init__(self, message: str, *, code: int | str | None = None, skew_ms: int | None = None) -> None:
        super().__init__(message, code=code)
        self.skew_ms = skew_ms


# Refusals the engine treats as a fault a human must fix (the runtime blocks under the fault's own
# reason), not as order errors to count: counting them said "order errors in window" instead.
FAULT_ERRORS: tuple[type[OrderError], ...] = (ExchangeAuthError, ClockSkewError)


class UnknownOrderError(OrderError):
    error_class = ErrorClass.UNKNOWN


# Binance's answer to a lookup (GET /order) of an order it does not know: "Order does not exist."
ORDER_DOES_NOT_EXIST = -2013


def is_order_unknown(exc: OrderError) -> bool:
    """Whether `exc` is the exchange's "Order does not exist" (-2013) to a lookup: for an order
    we had seen resting, it means the exchange lost it (a restarted simulated exchange, an order
    Binance purged), unlike a 429 or a timeout, which says nothing of the order."""
    return exc.code is not None and str(exc.code) == str(ORDER_DOES_NOT_EXIST)


class RateLimitedError(RetryableOrderError):
    """The exchange rate-limited or banned us (HTTP 429/418); nothing is sent before `until_ms`.

    Here, not beside the ccxt map in `engine.market.errors`, so code that only handles it (the
    collector) does not import ccxt (0.6 s) with it.

    `retry_after_s` is the server's Retry-After when it sent one (a floor on the wait).
    `sent` is False for a call refused here during the silence: no request went out, so a
    caller that counts requests or retries does not count it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | str | None = None,
        until_ms: int,
        retry_after_s: float | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(message, code=code)
        self.until_ms = until_ms
        self.retry_after_s = retry_after_s
        self.sent = sent
