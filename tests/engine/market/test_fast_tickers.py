"""The fast `!ticker@arr` decoder drops the rows it cannot trust and keeps the rest."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bench.bench_ticker_ingest import EVENT_MS, ticker_array
from engine.market.fast_tickers import TickerArrayDecoder

SYMBOLS = {"C0USDT": "C0/USDT", "C1USDT": "C1/USDT", "C2USDT": "C2/USDT"}


def decode(rows: list[Any]) -> tuple[tuple[str, ...], TickerArrayDecoder]:
    """The symbols decoded from `rows` at the rows' own time, and the decoder (its counters)."""
    decoder = TickerArrayDecoder(SYMBOLS)
    batch = decoder.decode(orjson.dumps(rows), EVENT_MS)
    assert batch is not None
    return batch.symbols, decoder


@pytest.mark.parametrize(
    "times",
    [
        pytest.param({"C": EVENT_MS * 1000}, id="C-in-microseconds"),
        pytest.param({"C": EVENT_MS // 1000}, id="C-in-seconds"),
        pytest.param({"C": EVENT_MS + 2 * 86_400_000}, id="C-two-days-ahead"),
        pytest.param({"C": EVENT_MS + 0.5}, id="C-a-float"),
        pytest.param({"C": str(EVENT_MS)}, id="C-a-string"),
        pytest.param({"C": True}, id="C-a-bool"),
        pytest.param({"C": 0, "E": None}, id="C-zero-and-E-null"),
        pytest.param({"C": None, "E": EVENT_MS * 1000}, id="E-in-microseconds"),
    ],
)
def test_a_row_with_an_implausible_event_time_is_dropped_and_counted(times: dict[str, Any]) -> None:
    rows = ticker_array(3)
    rows[1].update(times)
    symbols, decoder = decode(rows)
    assert symbols == ("C0/USDT", "C2/USDT")
    assert decoder.malformed_rows == 1


def test_a_row_without_C_or_E_is_dropped_not_the_message() -> None:
    rows = ticker_array(3)
    rows[1]["C"] = 0
    del rows[1]["E"]
    symbols, decoder = decode(rows)
    assert symbols == ("C0/USDT", "C2/USDT") and decoder.malformed_rows == 1


def test_event_times_near_the_local_clock_are_kept() -> None:
    rows = ticker_array(3)
    rows[0]["C"] = 0  # no close time: the event time stands in
    rows[2]["C"] = EVENT_MS - 3_600_000  # an hour behind: a PC clock in the wrong time zone
    decoder = TickerArrayDecoder(SYMBOLS)
    batch = decoder.decode(orjson.dumps(rows), EVENT_MS)
    assert batch is not None and decoder.malformed_rows == 0
    assert list(batch.event_ms) == [EVENT_MS, EVENT_MS - 1, EVENT_MS - 3_600_000]
