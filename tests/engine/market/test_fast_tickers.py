"""The fast `!ticker@arr` decoder drops the rows it cannot trust and keeps the rest."""

from __future__ import annotations

from typing import Any

import numpy as np
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


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"n": None}, id="n-null"),
        pytest.param({"n": "5"}, id="n-a-string"),
        pytest.param({"n": 5.5}, id="n-a-float"),
        pytest.param({"c": None}, id="c-null"),
        pytest.param({"c": True}, id="c-true"),
        pytest.param({"q": False}, id="q-false"),
        pytest.param({"b": [1]}, id="b-a-list"),
        pytest.param({"h": "1.2.3"}, id="h-not-a-number"),
    ],
)
def test_a_row_with_a_bad_value_is_dropped_and_counted_not_the_message(fields: dict[str, Any]) -> None:
    rows = ticker_array(3)
    rows[1].update(fields)
    symbols, decoder = decode(rows)
    assert symbols == ("C0/USDT", "C2/USDT")
    assert decoder.malformed_rows == 1


@pytest.mark.parametrize("element", ["garbage", None, [1, 2], 7], ids=["string", "null", "list", "number"])
def test_an_element_that_is_not_an_object_is_a_malformed_row(element: Any) -> None:
    symbols, decoder = decode([*ticker_array(2), element])
    assert symbols == ("C0/USDT", "C1/USDT")
    assert (decoder.malformed_rows, decoder.unknown_ids) == (1, 0)


def test_an_id_that_is_not_a_string_is_skipped() -> None:
    rows = ticker_array(3)
    rows[1]["s"] = ["C1USDT"]
    symbols, decoder = decode(rows)
    assert symbols == ("C0/USDT", "C2/USDT") and decoder.unknown_ids == 1


def test_numbers_and_nan_strings_are_values() -> None:
    rows = ticker_array(2)
    rows[0]["c"], rows[0]["v"], rows[1]["b"] = 1.5, 10, "NaN"
    decoder = TickerArrayDecoder(SYMBOLS)
    batch = decoder.decode(orjson.dumps(rows), EVENT_MS)
    assert batch is not None and decoder.malformed_rows == 0
    assert (batch.last[0], batch.base_volume_24h[0]) == (1.5, 10.0)
    assert np.isnan(batch.bid[1])
