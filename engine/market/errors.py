"""Every ccxt exception, mapped to what a caller may do about it, in one table.

ccxt raises its own exception tree (``ccxt.base.errors``); the engine decides by
`engine.errors.ErrorClass`: RETRYABLE (send it again later), NON_RETRYABLE (it will fail
again as sent) or UNKNOWN (the outcome is not known: reconcile before retrying).

The same exception can mean two things depending on the call. A timeout on a *read*
(fetch_order, fetch_balance) loses nothing: ask again. A timeout on *placing* an order
(create_order) may have reached the matching engine: the order may exist, so the answer
is UNKNOWN and the caller must look it up by its client order id before retrying. Hence
two columns: ``read`` (reads, cancels, streams) and ``place`` (create_order).

Lookup walks the exception's MRO and takes the first class with a row, so every ccxt
class has its own row (a test proves the table covers the whole ccxt tree) and a future
subclass falls back to its parent's row. Rows, in ccxt's tree order:

=========================  ==============  ==============  =====================================
ccxt class                 read            place           why
=========================  ==============  ==============  =====================================
BaseError                  unknown         unknown         root: nothing more is known
ExchangeError              unknown         unknown         generic reply (e.g. -1008/-1099 on
                                                           a non-binance.com host): not classified
AuthenticationError        non_retryable   non_retryable   bad key/signature (-1022, -2015):
                                                           fix the keys, retrying cannot help
PermissionDenied           non_retryable   non_retryable   key lacks the permission
AccountNotEnabled          non_retryable   non_retryable   account feature off
AccountSuspended           non_retryable   non_retryable   account frozen
ArgumentsRequired          non_retryable   non_retryable   our call was incomplete (a bug)
BadRequest                 non_retryable   non_retryable   malformed request; -1013 NOTIONAL lands
                                                           here, not under InvalidOrder
BadSymbol                  non_retryable   non_retryable   unknown symbol (-1121)
OperationRejected          non_retryable   non_retryable   refused as sent
NoChange                   non_retryable   non_retryable   nothing to change
MarginModeAlreadySet       non_retryable   non_retryable   (margin; not used on spot)
MarketClosed               non_retryable   non_retryable   market not trading; retry after status
                                                           changes, not on a timer
ManualInteractionNeeded    non_retryable   non_retryable   a human must act on the exchange
RestrictedLocation         non_retryable   non_retryable   geo-blocked
InsufficientFunds          non_retryable   non_retryable   -2010 balance; same order fails again
InvalidAddress             non_retryable   non_retryable   (withdrawals; not used)
AddressPending             non_retryable   non_retryable   (withdrawals; not used)
InvalidOrder               non_retryable   non_retryable   filter failure (-1013 LOT_SIZE, ...)
OrderNotFound              non_retryable   non_retryable   -2011/-2013: no such order; for a
                                                           lookup this *is* the answer
OrderNotCached             non_retryable   non_retryable   ccxt-side cache miss
OrderImmediatelyFillable   non_retryable   non_retryable   post-only would take
OrderNotFillable           non_retryable   non_retryable   cannot fill as sent
DuplicateOrderId           non_retryable   non_retryable   client id already used: the earlier
                                                           order exists; look it up, never resend
ContractUnavailable        non_retryable   non_retryable   (derivatives; not used)
NotSupported               non_retryable   non_retryable   ccxt cannot do this call
InvalidProxySettings       non_retryable   non_retryable   configuration error
ExchangeClosedByUser       non_retryable   non_retryable   we closed the client ourselves
OperationFailed            retryable       unknown         -1001 internal error (HTTP 500): a read
                                                           may be repeated; an order may exist
NetworkError               retryable       unknown         dropped connection: the request may
                                                           or may not have been processed
DDoSProtection             retryable       retryable       HTTP 429/418: rejected before matching;
                                                           wait the rate-limit backoff first (a
                                                           -2015 raised as this: codes, below)
RateLimitExceeded          retryable       retryable       -1003/-1015 with HTTP 400: rejected;
                                                           wait first (sibling of DDoSProtection)
ExchangeNotAvailable       retryable       unknown         5xx / connection refused; Binance says
                                                           a 5xx order's status is UNKNOWN
OnMaintenance              retryable       retryable       exchange in maintenance: rejected
InvalidNonce               retryable       retryable       -1021 timestamp outside recvWindow:
                                                           rejected; resync the clock, resend
ChecksumError              retryable       retryable       order-book checksum (streams): resubscribe
RequestTimeout             retryable       unknown         no reply in time (-1007 too): an order
                                                           may have been placed; reconcile first
BadResponse                retryable       unknown         unparseable reply: a read may be
                                                           repeated; an order may exist
NullResponse               retryable       unknown         empty reply: as BadResponse
CancelPending              retryable       unknown         a cancel still in flight
UnsubscribeError           retryable       retryable       stream unsubscribe failed: resubscribe
=========================  ==============  ==============  =====================================

**Binance codes first.** A few codes mean one thing whatever class ccxt picked, and are
classified by the code before the class is looked at:

=========  ==============  ===================================================================
code       class           why
=========  ==============  ===================================================================
-2015      non_retryable   key, IP or permission refused. ccxt raises it as DDoSProtection
                           once a private call has succeeded (a "temporary ban"), which would
                           start the rate-limit silence; it is no rate limit: the key cannot do
                           this (e.g. no trading permission) or our IP is not whitelisted
-2014      non_retryable   API-key format invalid
-1022      non_retryable   signature invalid (the secret does not match the key)
=========  ==============  ===================================================================

These become `engine.errors.ExchangeAuthError` with the fix in its message (`AUTH_FIX`), and
`is_rate_limit` says no for them. -1021 (timestamp outside recvWindow, InvalidNonce) stays
retryable: the gateway re-learns the exchange's clock and resends once (`CLOCK_SKEW_CODE`).

Anything that is not a ccxt exception (a parser ``AttributeError`` on a non-JSON 200, a
``KeyError`` from ccxt's WS-API auth bug) is UNKNOWN, except that the ccxt exception such
a bug swallowed (found in ``__context__``) is classified instead when there is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ccxt

from engine.errors import (
    ErrorClass,
    ExchangeAuthError,
    InsufficientBalanceError,
    NonRetryableOrderError,
    OrderError,
    RetryableOrderError,
    UnknownOrderError,
)

R = ErrorClass.RETRYABLE
N = ErrorClass.NON_RETRYABLE
U = ErrorClass.UNKNOWN


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One row of the map: a ccxt class and what a caller may do, for reads and for placing."""

    exc: type[BaseException]
    read: ErrorClass
    place: ErrorClass
    why: str


ERROR_TABLE: tuple[ErrorRow, ...] = (
    ErrorRow(ccxt.BaseError, U, U, "root: nothing more is known"),
    ErrorRow(ccxt.ExchangeError, U, U, "generic exchange reply, not classified"),
    ErrorRow(ccxt.AuthenticationError, N, N, "bad key or signature"),
    ErrorRow(ccxt.PermissionDenied, N, N, "key lacks the permission"),
    ErrorRow(ccxt.AccountNotEnabled, N, N, "account feature off"),
    ErrorRow(ccxt.AccountSuspended, N, N, "account frozen"),
    ErrorRow(ccxt.ArgumentsRequired, N, N, "incomplete call"),
    ErrorRow(ccxt.BadRequest, N, N, "malformed request (incl. -1013 NOTIONAL)"),
    ErrorRow(ccxt.BadSymbol, N, N, "unknown symbol"),
    ErrorRow(ccxt.OperationRejected, N, N, "refused as sent"),
    ErrorRow(ccxt.NoChange, N, N, "nothing to change"),
    ErrorRow(ccxt.MarginModeAlreadySet, N, N, "margin only"),
    ErrorRow(ccxt.MarketClosed, N, N, "market not trading"),
    ErrorRow(ccxt.ManualInteractionNeeded, N, N, "a human must act"),
    ErrorRow(ccxt.RestrictedLocation, N, N, "geo-blocked"),
    ErrorRow(ccxt.InsufficientFunds, N, N, "balance too low"),
    ErrorRow(ccxt.InvalidAddress, N, N, "withdrawals only"),
    ErrorRow(ccxt.AddressPending, N, N, "withdrawals only"),
    ErrorRow(ccxt.InvalidOrder, N, N, "filter failure"),
    ErrorRow(ccxt.OrderNotFound, N, N, "no such order"),
    ErrorRow(ccxt.OrderNotCached, N, N, "ccxt cache miss"),
    ErrorRow(ccxt.OrderImmediatelyFillable, N, N, "post-only would take"),
    ErrorRow(ccxt.OrderNotFillable, N, N, "cannot fill as sent"),
    ErrorRow(ccxt.DuplicateOrderId, N, N, "client id already used: look the order up"),
    ErrorRow(ccxt.ContractUnavailable, N, N, "derivatives only"),
    ErrorRow(ccxt.NotSupported, N, N, "ccxt cannot do this"),
    ErrorRow(ccxt.InvalidProxySettings, N, N, "configuration error"),
    ErrorRow(ccxt.ExchangeClosedByUser, N, N, "closed by us"),
    ErrorRow(ccxt.OperationFailed, R, U, "internal error: an order may exist"),
    ErrorRow(ccxt.NetworkError, R, U, "dropped connection: an order may exist"),
    ErrorRow(ccxt.DDoSProtection, R, R, "HTTP 429/418: rejected; back off first"),
    ErrorRow(ccxt.RateLimitExceeded, R, R, "-1003/-1015: rejected; back off first"),
    ErrorRow(ccxt.ExchangeNotAvailable, R, U, "5xx or refused: a 5xx order's status is unknown"),
    ErrorRow(ccxt.OnMaintenance, R, R, "maintenance: rejected"),
    ErrorRow(ccxt.InvalidNonce, R, R, "timestamp outside recvWindow: rejected"),
    ErrorRow(ccxt.ChecksumError, R, R, "stream checksum: resubscribe"),
    ErrorRow(ccxt.RequestTimeout, R, U, "no reply in time: an order may exist"),
    ErrorRow(ccxt.BadResponse, R, U, "unparseable reply: an order may exist"),
    ErrorRow(ccxt.NullResponse, R, U, "empty reply: an order may exist"),
    ErrorRow(ccxt.CancelPending, R, U, "cancel in flight"),
    ErrorRow(ccxt.UnsubscribeError, R, R, "unsubscribe failed: resubscribe"),
)

_BY_CLASS: dict[type[BaseException], ErrorRow] = {row.exc: row for row in ERROR_TABLE}

# Rate-limit replies: the caller must wait out `engine.market.backoff.RateLimitBackoff` first
# (unless `is_auth_refusal`: see `is_rate_limit`).
RATE_LIMIT_ERRORS: tuple[type[BaseException], ...] = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)

# Codes that mean the key (its permissions, our IP, the signature) was refused, whatever the class.
AUTH_CODES = frozenset({-2015, -2014, -1022})
AUTH_FIX = "API key cannot trade or IP not whitelisted: fix the key's permissions / IP whitelist, then restart hotcoin"
CLOCK_SKEW_CODE = -1021  # "Timestamp for this request is outside of the recvWindow"

_JSON_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')
_HTTP_STATUS = re.compile(r"^\w+ (\d{3}) ")


def _ccxt_cause(exc: BaseException) -> BaseException:
    """The ccxt exception behind `exc`: itself, or one a ccxt bug swallowed into `__context__`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ccxt.BaseError):
            found: BaseException = seen
            return found
        seen = seen.__cause__ or seen.__context__
    return exc


def is_auth_refusal(exc: BaseException) -> bool:
    """Whether `exc` carries one of `AUTH_CODES`: the key was refused, whatever ccxt's class."""
    return error_code(exc) in AUTH_CODES


def is_rate_limit(exc: BaseException) -> bool:
    """Whether `exc` is a 429/418 or -1003/-1015 to wait out; a -2015 that ccxt raised as
    DDoSProtection is not (see the module docstring)."""
    return isinstance(exc, RATE_LIMIT_ERRORS) and not is_auth_refusal(exc)


def classify(exc: BaseException, *, placing: bool = False) -> ErrorClass:
    """What a caller may do after `exc`; `placing` for create_order (see the module tables:
    the codes first, then the class)."""
    if is_auth_refusal(exc):
        return ErrorClass.NON_RETRYABLE
    cause = _ccxt_cause(exc)
    for klass in type(cause).__mro__:
        row = _BY_CLASS.get(klass)
        if row is not None:
            return row.place if placing else row.read
    return ErrorClass.UNKNOWN


def error_code(exc: BaseException) -> int | None:
    """The Binance error code (`{"code":-2010,...}`), else the HTTP status, else None.

    Taken from what `engine.market.ccxt_client.EndpointBinance` attached to the exception,
    else from ccxt's message text.
    """
    cause = _ccxt_cause(exc)
    for attr in ("exchange_code", "http_status"):
        value = getattr(cause, attr, None)
        if isinstance(value, int) and (attr == "exchange_code" or value >= 400):
            return value
    text = str(cause)
    match = _JSON_CODE.search(text) or _HTTP_STATUS.match(text)
    return int(match.group(1)) if match else None


_CLASS_TO_ERROR: dict[ErrorClass, type[OrderError]] = {
    ErrorClass.RETRYABLE: RetryableOrderError,
    ErrorClass.NON_RETRYABLE: NonRetryableOrderError,
    ErrorClass.UNKNOWN: UnknownOrderError,
}


def to_order_error(exc: BaseException, *, placing: bool = False, operation: str = "") -> OrderError:
    """The `engine.errors.OrderError` subclass for `exc`, carrying the exchange code and, as
    its `reason`, the exchange's own message when the reply had one.

    The caller raises it `from exc`, so the ccxt exception stays in the traceback.
    """
    cause = _ccxt_cause(exc)
    kind = classify(exc, placing=placing)
    prefix = f"{operation}: " if operation else ""
    message = f"{prefix}{type(cause).__name__}: {cause}"
    said = getattr(cause, "exchange_msg", None)  # the reply's "msg", kept by `EndpointBinance`
    reason = said if isinstance(said, str) else None
    if isinstance(cause, ccxt.InsufficientFunds):
        return InsufficientBalanceError(message, code=error_code(exc), reason=reason)
    if is_auth_refusal(exc):
        return ExchangeAuthError(f"{prefix}{AUTH_FIX} (the exchange said: {cause})", code=error_code(exc), reason=reason)
    return _CLASS_TO_ERROR[kind](message, code=error_code(exc), reason=reason)
