"""Repeated failures logged once per change of state: the first, a new kind, a summary every few
wall minutes, the recovery; a wall clock of our own, so no waiting."""

from __future__ import annotations

import logging

import pytest

from engine.market.gateway import GatewayNotice, NoticeKind
from engine.runtime.quiet_log import NoticeLog, RepeatedFailure, failure_kind

log = logging.getLogger("hotcoin.test_quiet_log")


class Wall:
    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        return self.s


def klines(symbol: str, since: int) -> str:
    return f"RetryableOrderError: fetch_candles: ExchangeNotAvailable: binance GET http://127.0.0.1:1/api/v3/klines?symbol={symbol}&startTime={since}"


def test_a_failure_for_another_symbol_or_time_is_the_same_kind_and_a_timeout_is_not() -> None:
    assert failure_kind(klines("BTCUSDT", 1)) == failure_kind(klines("ETHUSDT", 60_000))
    assert failure_kind(klines("BTCUSDT", 1)) != failure_kind("RetryableOrderError: fetch_candles: RequestTimeout: 10000 ms")


def test_a_run_of_failures_logs_its_first_a_new_kind_a_summary_per_period_and_its_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    wall = Wall()
    quiet = RepeatedFailure(log, "market data: candle fetch", summary_s=300, wall=wall)
    for i in range(200):  # 200 symbols x 2 bars failing alike over 10 wall s
        wall.s = i * 0.05
        quiet.failed(klines(f"S{i % 100}USDT", i))
    quiet.failed("RetryableOrderError: fetch_candles: RequestTimeout: 10000 ms")  # a new kind: said
    for i in range(100):
        wall.s = 10 + i * 5  # past 300 s: one summary
        quiet.failed(klines("BTCUSDT", i))
    quiet.ok()
    quiet.ok()  # nothing more to say
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0].startswith("market data: candle fetch failed: RetryableOrderError: fetch_candles: ExchangeNotAvailable")
    assert "RequestTimeout" in lines[1]
    assert lines[2].startswith("market data: candle fetch still failing: ") and "BTCUSDT" in lines[2]
    assert lines[3] == "market data: candle fetch works again after 505 wall s of failures (301 in all)"


def test_a_failure_long_after_the_last_starts_a_new_run_saying_what_went_unlogged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    wall = Wall()
    quiet = RepeatedFailure(log, "broker sync", summary_s=300, wall=wall)
    quiet.failed("fetch_open_orders: 503")
    quiet.failed("fetch_open_orders: 503")
    wall.s = 1000.0
    quiet.failed("fetch_open_orders: 503")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["broker sync failed: fetch_open_orders: 503", "broker sync failed: fetch_open_orders: 503 (1 earlier like it not logged)"]


def test_a_streams_outage_is_its_drop_its_new_kinds_of_failure_and_its_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    wall = Wall()
    notices = NoticeLog(log, summary_s=300, wall=wall)

    def reconnect(stream: str, detail: str) -> GatewayNotice:
        return GatewayNotice(NoticeKind.RECONNECT, stream, 0, detail=detail, delay_s=0.5)

    notices(reconnect("tickers", "NetworkError: closing code 1001"))
    for i in range(50):
        wall.s = i * 0.1
        notices(reconnect("tickers", "NetworkError: Cannot connect to host 127.0.0.1:18301"))
        notices(reconnect("orders", "NetworkError: Cannot connect to host 127.0.0.1:18301"))
    wall.s = 400.0
    notices(reconnect("tickers", "NetworkError: Cannot connect to host 127.0.0.1:18301"))  # a summary is due
    notices(GatewayNotice(NoticeKind.RECOVERED, "tickers", 0, detail="live again after 20 s down, 52 reconnect(s)", down_ms=20_000, attempts=52))
    notices(GatewayNotice(NoticeKind.RECOVERED, "orders", 0, detail="live again after 20 s down, 50 reconnect(s)", down_ms=20_000, attempts=50))
    notices(GatewayNotice(NoticeKind.MARKETS_REFRESHED, "rest", 0, detail="40 markets"))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines] == [
        "exchange tickers down",
        "exchange tickers still down, now",
        "exchange orders down",
        "exchange tickers still down",
        "exchange tickers back",
        "exchange orders back",
        "exchange markets_refreshed on rest",
    ], lines
    assert "52 redial(s) so far" in lines[3]
    assert lines[4] == "exchange tickers back: live again after 20 s down, 52 reconnect(s)"
    assert lines[5].endswith(", 49 of them not logged")
