"""Building the ccxt client: every URL moved, spot options, spot codes and Retry-After kept."""

from __future__ import annotations

import ccxt
import orjson
import pytest
from pydantic import SecretStr

from engine.config.sections.exchange import ExchangeSection
from engine.errors import ConfigError
from engine.market.ccxt_client import (
    build_client,
    client_config,
    is_loopback,
    retry_after_of,
    rewrite_urls,
)
from engine.market.errors import to_order_error


def _strings(tree: object) -> list[str]:
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _strings(v)]
    return [tree] if isinstance(tree, str) else []


async def test_endpoint_rewrites_every_url_keeping_paths() -> None:
    client = build_client(ExchangeSection(endpoint="http://127.0.0.1:8765"))
    try:
        urls = client.urls["api"]
        strings = _strings(urls)
        assert len(strings) > 20
        assert all(s.startswith(("http://127.0.0.1:8765/", "ws://127.0.0.1:8765/")) for s in strings)
        assert urls["public"] == "http://127.0.0.1:8765/api/v3"
        assert urls["private"] == "http://127.0.0.1:8765/api/v3"
        assert urls["ws"]["spot"] == "ws://127.0.0.1:8765/ws"
        assert urls["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:8765/ws-api/v3"
        assert urls["sapi"] == "http://127.0.0.1:8765/sapi/v1"
    finally:
        await client.close()


def test_https_endpoint_gives_wss_and_prefix_goes_in_front() -> None:
    tree = {"public": "https://api.binance.com/api/v3", "ws": {"spot": "wss://stream.binance.com:9443/ws"}}
    moved = rewrite_urls(tree, "https://example.test/binance/")
    assert moved == {"public": "https://example.test/binance/api/v3", "ws": {"spot": "wss://example.test/binance/ws"}}


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8765", "ftp://h", "http://"], ids=["no-scheme", "ftp", "no-host"])
def test_a_bad_endpoint_is_a_config_error_naming_the_key(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"exchange\.endpoint"):
        rewrite_urls({}, endpoint)


async def test_no_endpoint_leaves_ccxt_urls_alone() -> None:
    client = build_client(ExchangeSection())
    try:
        assert client.urls["api"]["public"] == "https://api.binance.com/api/v3"
        assert client.hotcoin_endpoint is None
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("endpoint", "setting", "expected"),
    [
        ("http://127.0.0.1:1", None, False),
        ("http://localhost:1", None, False),
        ("https://testnet.example", None, True),
        (None, None, True),
        ("http://127.0.0.1:1", True, True),
    ],
    ids=["loopback", "localhost", "remote", "binance", "forced-on"],
)
def test_rate_limiter_default_is_off_only_for_loopback(endpoint: str | None, setting: bool | None, expected: bool) -> None:
    section = ExchangeSection(endpoint=endpoint, enable_rate_limit=setting)
    assert client_config(section)["enableRateLimit"] is expected


def test_spot_only_options_keepalive_and_keys() -> None:
    section = ExchangeSection(
        keepalive_ms=2500, recv_window_ms=5000, api_key=SecretStr("k"), api_secret=SecretStr("s")
    )
    config = client_config(section)
    options = config["options"]
    assert options["fetchMarkets"] == {"types": ["spot"]}
    assert options["fetchCurrencies"] is False
    assert options["fetchMargins"] is False
    assert options["watchTickers"] == {"name": "ticker"}
    assert options["createOrder"]["quoteOrderQty"] is False
    assert options["recvWindow"] == 5000
    assert config["streaming"] == {"keepAlive": 2500}
    assert (config["apiKey"], config["secret"]) == ("k", "s")
    assert is_loopback("http://[::1]:80")


async def test_spot_error_codes_apply_on_the_overridden_host() -> None:
    client = build_client(ExchangeSection(endpoint="http://127.0.0.1:9"))
    body = orjson.dumps({"code": -1008, "msg": "Server is currently overloaded with other requests."}).decode()
    try:
        with pytest.raises(ccxt.OperationFailed):
            client.handle_errors(
                400, "Bad Request", "http://127.0.0.1:9/api/v3/order", "POST", {}, body, orjson.loads(body), {}, None
            )
    finally:
        await client.close()


async def test_retry_after_of_a_429_is_kept_on_the_exception() -> None:
    client = build_client(ExchangeSection(endpoint="http://127.0.0.1:9"))
    try:
        with pytest.raises(ccxt.DDoSProtection) as caught:
            client.handle_errors(
                429, "Too Many Requests", "http://127.0.0.1:9/api/v3/account", "GET",
                {"Retry-After": "42"}, "", None, {}, None,
            )
        assert retry_after_of(caught.value) == 42.0
        assert retry_after_of(ccxt.DDoSProtection("no header")) is None
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("code", "msg", "klass"),
    [(-1013, "Market is closed.", ccxt.MarketClosed), (-1121, "Invalid symbol.", ccxt.BadSymbol)],
    ids=["trading-halt", "delisted"],
)
async def test_the_exchange_words_reach_the_order_error_as_its_reason(code: int, msg: str, klass: type[Exception]) -> None:
    """A halted or delisted coin's exit said only "still open" on the console: the reply's
    own words, not ccxt's text (`binance {"code":...}` or the exchange id in front), are what
    the operator reads."""
    client = build_client(ExchangeSection(endpoint="http://127.0.0.1:9"))
    body = orjson.dumps({"code": code, "msg": msg}).decode()
    try:
        with pytest.raises(klass) as caught:
            client.handle_errors(
                400, "Bad Request", "http://127.0.0.1:9/api/v3/order", "POST", {}, body, orjson.loads(body), {}, None
            )
        err = to_order_error(caught.value, placing=True, operation="create_order")
        assert (err.reason, err.code) == (msg, code)
        assert str(err).startswith(f"create_order: {klass.__name__}: binance")  # the journal's text is as before
    finally:
        await client.close()


def test_an_order_error_without_the_exchange_words_reads_as_its_message() -> None:
    assert to_order_error(ccxt.RequestTimeout("binance POST timed out"), placing=True).reason == (
        "RequestTimeout: binance POST timed out"
    )


def test_a_sim_gateway_without_endpoint_is_refused_rather_than_reaching_binance() -> None:
    from engine.market.ccxt_gateway import CcxtGateway

    with pytest.raises(ConfigError, match=r"exchange\.endpoint is unset"):
        CcxtGateway(ExchangeSection(name="sim"))
