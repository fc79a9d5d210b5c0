"""The ccxt -> ErrorClass table: complete over ccxt's tree, and right where it matters."""

from __future__ import annotations

import ccxt
import pytest
from ccxt.base import errors as ccxt_errors

from engine.errors import (
    ErrorClass,
    ExchangeAuthError,
    InsufficientBalanceError,
    RetryableOrderError,
    UnknownOrderError,
)
from engine.market.errors import (
    AUTH_FIX,
    ERROR_TABLE,
    classify,
    error_code,
    is_rate_limit,
    to_order_error,
)

R, N, U = ErrorClass.RETRYABLE, ErrorClass.NON_RETRYABLE, ErrorClass.UNKNOWN
ALL_CCXT = [getattr(ccxt_errors, name) for name in ccxt_errors.__all__ if name != "error_hierarchy"]


@pytest.mark.parametrize("klass", ALL_CCXT, ids=lambda k: k.__name__)
def test_every_ccxt_exception_has_its_own_row(klass: type[Exception]) -> None:
    assert klass in {row.exc for row in ERROR_TABLE}


def test_no_row_twice() -> None:
    assert len({row.exc for row in ERROR_TABLE}) == len(ERROR_TABLE)


@pytest.mark.parametrize("row", ERROR_TABLE, ids=lambda r: r.exc.__name__)
def test_classify_follows_the_table(row: object) -> None:
    exc = row.exc("binance boom")  # type: ignore[attr-defined]
    assert classify(exc) is row.read  # type: ignore[attr-defined]
    assert classify(exc, placing=True) is row.place  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "read", "place"),
    [
        (ccxt.RequestTimeout("t"), R, U),
        (ccxt.NetworkError("n"), R, U),
        (ccxt.ExchangeNotAvailable("503"), R, U),
        (ccxt.DDoSProtection("429"), R, R),
        (ccxt.RateLimitExceeded("-1003"), R, R),
        (ccxt.InvalidNonce("-1021"), R, R),
        (ccxt.InsufficientFunds("-2010"), N, N),
        (ccxt.InvalidOrder("-1013"), N, N),
        (ccxt.BadRequest("-1013 NOTIONAL"), N, N),
        (ccxt.BadSymbol("-1121"), N, N),
        (ccxt.AuthenticationError("-1022"), N, N),
        (ccxt.OrderNotFound("-2013"), N, N),
        (ccxt.ExchangeError("-1008"), U, U),
        (ValueError("not ccxt"), U, U),
    ],
    ids=[
        "timeout", "network", "5xx", "ddos", "ratelimit", "nonce", "funds", "invalid-order", "notional",
        "bad-symbol", "auth", "not-found", "generic", "foreign",
    ],
)
def test_the_rows_that_matter(exc: Exception, read: ErrorClass, place: ErrorClass) -> None:
    assert classify(exc) is read
    assert classify(exc, placing=True) is place


def test_a_future_subclass_falls_back_to_its_parent() -> None:
    class BrandNewTimeout(ccxt.RequestTimeout):  # type: ignore[misc]
        pass

    assert classify(BrandNewTimeout("x"), placing=True) is U


def test_a_ccxt_error_swallowed_by_a_bug_is_still_classified() -> None:
    # ccxt 4.5.90 raises KeyError('spot') when the WS-API refuses the user-data auth;
    # the AuthenticationError only survives in __context__.
    def subscribe() -> None:
        try:
            raise ccxt.AuthenticationError('binance {"code":-2015,"msg":"Invalid API-key"}')
        except ccxt.AuthenticationError:
            raise KeyError("spot")  # noqa: B904

    with pytest.raises(KeyError) as caught:
        subscribe()
    assert classify(caught.value) is N
    assert error_code(caught.value) == -2015


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('binance {"code":-2010,"msg":"Account has insufficient balance for requested action."}', -2010),
        ("binance 429 Too Many Requests ", 429),
        ("binance GET http://127.0.0.1/api/v3/account", None),
    ],
    ids=["json-code", "http-status", "none"],
)
def test_error_code(message: str, code: int | None) -> None:
    assert error_code(ccxt.ExchangeError(message)) == code


@pytest.mark.parametrize(
    ("exc", "placing", "expected"),
    [
        (ccxt.RequestTimeout("t"), True, UnknownOrderError),
        (ccxt.RequestTimeout("t"), False, RetryableOrderError),
        (ccxt.InsufficientFunds('binance {"code":-2010,"msg":"x"}'), True, InsufficientBalanceError),  # a NonRetryable
        (ccxt.ExchangeError("x"), False, UnknownOrderError),
    ],
    ids=["place-timeout", "read-timeout", "funds", "generic"],
)
def test_to_order_error(exc: Exception, placing: bool, expected: type[Exception]) -> None:
    err = to_order_error(exc, placing=placing, operation="create_order")
    assert type(err) is expected
    assert str(err).startswith(f"create_order: {type(exc).__name__}")
    if isinstance(exc, ccxt.InsufficientFunds):
        assert err.code == -2010


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.DDoSProtection('binance {"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'),
        ccxt.AuthenticationError('binance {"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'),
        ccxt.AuthenticationError('binance {"code":-2014,"msg":"API-key format invalid."}'),
        ccxt.AuthenticationError('binance {"code":-1022,"msg":"Signature for this request is not valid."}'),
    ],
    ids=["-2015-as-ddos", "-2015", "-2014", "-1022"],
)
def test_a_refused_key_is_classified_by_its_code_before_its_class(exc: Exception) -> None:
    # ccxt raises -2015 as DDoSProtection once a private call has worked: no rate limit to wait out.
    assert classify(exc) is N
    assert classify(exc, placing=True) is N
    assert not is_rate_limit(exc)
    err = to_order_error(exc, placing=True, operation="create_order")
    assert type(err) is ExchangeAuthError
    assert str(err).startswith(f"create_order: {AUTH_FIX} (the exchange said: binance")
    assert err.code == error_code(exc)


@pytest.mark.parametrize(
    "exc",
    [ccxt.DDoSProtection("binance 429 Too Many Requests "), ccxt.RateLimitExceeded('binance {"code":-1003}')],
    ids=["429", "-1003"],
)
def test_rate_limits_are_still_rate_limits(exc: Exception) -> None:
    assert is_rate_limit(exc)
    assert classify(exc, placing=True) is R
