"""Pure helpers of the panels: number formats, chart scaling and marks, event text, keymap checks."""

from __future__ import annotations

import dataclasses
import math
import random
import re

import pytest
from rich.style import Style

from engine.domain import Candle, Fill, Side
from engine.errors import ConfigError
from engine.runtime.snapshot import CandidateRow, CloseAllProgress, StreamRow
from hotcoin_tui import keymap
from hotcoin_tui.widgets import fmt
from hotcoin_tui.widgets.candidate_pool import SORTS, row_cells, styled
from hotcoin_tui.widgets.engine_state import stream_text
from hotcoin_tui.widgets.events import clip, layout
from hotcoin_tui.widgets.kline_chart import (
    Y_AXIS_COLS,
    exit_returns,
    render_chart,
    scale_for,
    shade_falling,
)
from hotcoin_tui.widgets.mode_banner import banner_text
from tests.kit.domain import T0, make_candle, make_fill
from tests.kit.snapshots import make_snapshot


@pytest.mark.parametrize(("value", "shown"), [
    (0.00000141718, "0.0₅14172"),
    (0.000019032, "0.0₄19032"),
    (0.451433, "0.45143"),
    (70.914, "70.914"),
    (12345.6, "12346"),
    (0.0, "—"),
    (float("nan"), "—"),
], ids=["micro-5-zeros", "micro-4-zeros", "sub-one", "tens", "thousands", "zero", "nan"])  # fmt: skip
def test_price_is_short_and_never_scientific(value: float, shown: str) -> None:
    assert fmt.price(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(3.70835e8, "370.8M"), (4.01e10, "40.1B"), (1170.69, "1,170.7"), (9.18, "9.18")])
def test_quantity_is_compact(value: float, shown: str) -> None:
    assert fmt.quantity(value) == shown


def test_bar_fills_in_eighths_and_clamps() -> None:
    assert fmt.bar(0.5, 4) == "██  "
    assert fmt.bar(1.7, 3) == "███"
    assert fmt.bar(-1, 3) == "   "
    assert fmt.bar(1 / 16, 2) == "▏ "


def test_signs_carry_meaning_without_colour() -> None:
    assert fmt.pct(0.0123).plain == "+1.2%" and fmt.pct(-0.004).plain == "-0.4%"
    assert fmt.pnl(-12.5).plain == "-12.50"


@pytest.mark.parametrize(("top", "factor", "label"), [
    (1.4e-6, 1e6, " ×1e-6"), (0.0099, 1e3, " ×1e-3"), (0.5, 1.0, ""), (250.0, 1.0, ""),
], ids=["micro", "just-below-cent", "sub-one", "large"])  # fmt: skip
def test_micro_prices_are_rescaled(top: float, factor: float, label: str) -> None:
    scaled, text = scale_for(top)
    assert scaled == pytest.approx(factor) and text == label
    if label:
        assert 1 <= top * scaled < 10


def test_chart_has_candles_marks_and_scale_label() -> None:
    candles = [make_candle(open_ms=T0 + i * 60_000, close=1.4e-6 * (1 + i / 100), open=1.4e-6, high=1.6e-6, low=1.3e-6) for i in range(30)]
    fills = [
        make_fill(trade_id="b", ts_ms=T0 + 5 * 60_000 + 1, price=1.41e-6, side=Side.BUY),
        make_fill(trade_id="s", ts_ms=T0 + 20 * 60_000, price=1.55e-6, side=Side.SELL),
        make_fill(trade_id="old", ts_ms=T0 - 3_600_000, price=1.2e-6, side=Side.SELL),  # before the window
    ]
    out = render_chart(candles, fills, 60, 15, "DOGE 1m").plain
    assert "DOGE 1m ×1e-6" in out
    assert out.count("▲") == 1 and out.count("▼") == 1
    assert "e-0" not in out.replace("×1e-6", "")  # axis labels are rescaled, not scientific


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pause": "q"}, "key 'q' is bound to pause and quit (main screen)"),
        ({"filter": "ctrl+x"}, "key 'ctrl+x' is bound to close_all and filter (main screen)"),
        ({"quit": "p"}, "key 'p' is bound to pause and quit (main screen)"),
        ({"quit.confirm": "n"}, "key 'n' is bound to quit.confirm and quit.cancel (quit dialog)"),
        ({"pause": "escape", "replay.back": "b"}, "key 'escape' is bound to dialog.close and pause (close-all progress)"),
        ({"replay": "f9", "sort": "x,f9"}, "key 'f9' is bound to sort and replay (main screen)"),
    ],
)
def test_keymap_refuses_a_key_bound_twice_in_one_place(overrides: dict[str, str], message: str) -> None:
    """Audit: `pause = "q"` was accepted and quit could no longer be reached by its key; a
    remapped filter on ctrl+x did nothing (close-all won)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        keymap.validate(overrides)


def test_keymap_allows_one_key_in_different_places() -> None:
    """The same key on two screens that are never live together is fine (y, n on dialogs),
    and so is an app key in a dialog, which cuts the app's keys off (Y for quit, n for pause)."""
    assert keymap.validate({"quit.confirm": "Y", "replay.back": "escape,n"}) == {"quit.confirm": "Y", "replay.back": "escape,n"}
    assert keymap.validate({"quit": "Y", "pause": "n"}) == {"quit": "Y", "pause": "n"}


def test_keymap_validation_names_unknown_ids_and_normalises() -> None:
    assert keymap.validate({"pause": " p , f9 "}) == {"pause": "p,f9"}
    with pytest.raises(ConfigError, match="unknown binding id"):
        keymap.validate({"close-all": "ctrl+k"})
    ids = keymap.known_ids()
    assert len(ids) == len(set(ids)), "each id listed once (pause and resume share theirs)"
    assert {"close_all", "close_all.confirm", "pause", "quit", "replay", "interval", "filter"} <= set(ids)


def test_exit_returns_use_the_average_entry() -> None:
    fills = [
        make_fill(trade_id="b1", side=Side.BUY, price=1.0, quantity=100, ts_ms=T0),
        make_fill(trade_id="b2", side=Side.BUY, price=2.0, quantity=100, ts_ms=T0 + 1),
        make_fill(trade_id="s1", side=Side.SELL, price=1.8, quantity=100, ts_ms=T0 + 2),  # avg 1.5
        make_fill(trade_id="s2", side=Side.SELL, price=1.2, quantity=100, ts_ms=T0 + 3),
        make_fill(trade_id="s3", side=Side.SELL, price=9.9, quantity=5, ts_ms=T0 + 4),  # nothing left to sell
    ]
    assert exit_returns(fills) == {"s1": pytest.approx(0.2), "s2": pytest.approx(-0.2)}


def test_chart_labels_exits_with_their_return() -> None:
    candles = [make_candle(open_ms=T0 + i * 60_000, close=1.0 + i / 100, open=1.0, high=1.5, low=0.9) for i in range(30)]
    fills = [
        make_fill(trade_id="b", ts_ms=T0 + 2 * 60_000, price=1.0, side=Side.BUY),
        make_fill(trade_id="s", ts_ms=T0 + 25 * 60_000, price=1.1, side=Side.SELL),
    ]
    assert "+10.0%" in render_chart(candles, fills, 70, 15, "X 1m").plain


@pytest.mark.parametrize("height", [24, 14, 10])
def test_an_exit_label_never_hides_the_entry_mark_on_its_row(height: int) -> None:
    """Bought, then sold 5% higher three bars later while the chart spans 1.0 to 2.6: both
    fall on one price row, and the exit's "+5.0% " label was drawn over the entry's ▲."""
    candles = []
    for i in range(68):
        p = 1.0 if i < 40 else 1.0 + 0.06 * (i - 40)
        candles.append(make_candle(open_ms=T0 + i * 60_000, open=p, high=p * 1.005, low=p * 0.995, close=p * 1.004))
    fills = [
        make_fill(trade_id="b", side=Side.BUY, price=1.00, quantity=10, ts_ms=T0 + 40 * 60_000 + 5000),
        make_fill(trade_id="s", side=Side.SELL, price=1.05, quantity=10, ts_ms=T0 + 43 * 60_000 + 5000),
    ]
    out = render_chart(candles, fills, 80, height, "ABC 1m").plain
    assert out.count("▲") == 1 and out.count("▼") == 1
    assert "+5.0%" in out  # moved beside the exit, not dropped


@pytest.mark.parametrize(("text", "width", "shown"), [
    ("heat 78", 7, "heat 78"),
    ("heat 78 rank 1 accepted", 7, "heat…"),  # never "heat 7…"
    ("heat 78 rank 1 accepted", 15, "heat 78 rank 1…"),
    ("buy 60063.0 @ 0.0041820447", 13, "buy 60063.0…"),
    ("0.004182044750787608", 8, "0.00418…"),  # one long word: cut, visibly
    ("币安人生 up", 5, "币安…"),  # double-width characters count as two cells
], ids=["fits", "word-boundary", "keeps-whole-words", "space-at-the-cut", "one-word", "wide-chars"])  # fmt: skip
def test_event_text_is_cut_visibly_at_a_word(text: str, width: int, shown: str) -> None:
    assert clip(text, width) == shown


def test_a_narrow_events_panel_gives_the_time_columns_room_to_what() -> None:
    assert layout(36) == (False, 13)  # the events panel at 120x40
    assert layout(76) == (True, 43)  # at 80x24 (full width) and 160x48


def test_panel_strip_shows_remapped_focus_keys() -> None:
    keys = keymap.panel_keys({"focus.positions": "f2"})
    assert keys == {"candidates": "c", "positions": "f2", "chart": "k", "events": "e", "state": "t"}


def test_without_colour_falling_candles_are_shaded_and_rising_ones_solid() -> None:
    rising = [make_candle(open_ms=T0 + 120_000 * i, open=1.0, close=1.2, high=1.3, low=0.9) for i in range(6)]
    falling = [make_candle(open_ms=T0 + 120_000 * i + 60_000, open=1.2, close=1.0, high=1.3, low=0.9) for i in range(6)]
    coloured = render_chart(sorted(rising + falling, key=lambda c: c.open_ms), [], 40, 12, "T")
    assert "▒" not in coloured.plain  # with colour: plotext's solid bodies, red or green
    mono = shade_falling(coloured)
    assert mono.plain.count("▒") > 0 and mono.plain.count("█") > 0
    for span in mono.spans:  # the glyph now says what the stripped colour said
        assert isinstance(span.style, Style) and span.style.color is not None
        body = mono.plain[span.start : span.end]
        assert ("█" not in body) if span.style.color.number == 1 else ("▒" not in body)


@pytest.mark.parametrize("name", ["ws", "sim-market", "history-replay"])
def test_a_stream_name_never_runs_into_its_status(name: str) -> None:
    text = stream_text(StreamRow(name, "connected", T0 - 2_000, "detail"), T0).plain
    assert text.startswith(f"{name} ") and f"{name}connected" not in text
    assert "connected" in text and "2s ago" in text


def test_an_unknown_return_shows_as_na_and_sorts_last() -> None:
    """A candidate minutes into its history has no 1 h return: n/a, never a flat +0.0%."""
    known = CandidateRow("A/USDT", "t", 70.0, 1, 1.0, 0.01, 0.05, -0.02, 1.0, None, ("ticker",), "")
    unknown = dataclasses.replace(known, symbol="B/USDT", ret_1h=None)
    nan = dataclasses.replace(known, symbol="C/USDT", ret_5m=float("nan"))
    assert row_cells(unknown)[2:5] == ("+1.0%", "+5.0%", "n/a")
    assert fmt.pct(None).plain == fmt.pct(float("nan")).plain == "n/a"
    assert fmt.pct(0.0).plain == "+0.0%"
    assert str(styled(4, row_cells(unknown)[4], unknown)) == "n/a"
    assert row_cells(nan)[3] == "n/a"
    by_1h = next(s for s in SORTS if s.name == "1h")
    assert sorted([unknown, known], key=by_1h.key, reverse=True) == [known, unknown]


HALTED = "OLRP/USDT: exit refused: Market is closed. (-1013), retrying in 30 s"


@pytest.mark.parametrize(("errors", "remaining", "said"), [
    ((HALTED,), 1, f"CLOSING ALL 1/2 left  {HALTED}  eq"),
    ((HALTED, "DOGE/USDT: exit refused: Invalid symbol. (-1121), retrying in 60 s"), 2, f"CLOSING ALL 2/2 left  {HALTED} (+1 more)  eq"),
    (("DOGE/USDT: still open", HALTED), 2, f"CLOSING ALL 2/2 left  {HALTED}  eq"),
    (("DOGE/USDT: still open",), 1, "CLOSING ALL 1/2 left  eq"),
], ids=["refused", "two-refused", "one-refused-one-in-flight", "in-flight"])  # fmt: skip
def test_the_banner_says_why_a_close_all_is_stuck(errors: tuple[str, ...], remaining: int, said: str) -> None:
    """With the dialog hidden, the banner said "CLOSING ALL 1/2 left" for as long as the
    exchange refused the sell: now it says the refusal (an exit in flight is no reason)."""
    snap = make_snapshot(close_all=CloseAllProgress(1, 2, remaining, errors))
    assert said in banner_text(snap, 1.0, False, None).plain


LABEL = re.compile(r"[+-]\d+\.\d%")


def pon_like() -> tuple[list[Candle], list[Fill]]:
    """The audited PON/USDT 1m chart: a coin bought on its way up, then two take-profit sells
    one bar apart just above the entry, on the same price row: `++10.0% ▼` and one ▼."""
    candles, p = [], 0.0240
    for i in range(160):
        p = p * 1.012 if i < 20 else p * 1.004 if i < 40 else p
        candles.append(make_candle(open_ms=T0 + i * 60_000, open=p / 1.01, high=p * 1.003, low=p / 1.012, close=p))
    fills = [
        make_fill(trade_id="b", side=Side.BUY, price=0.0250, quantity=100, ts_ms=T0 + 6 * 60_000 + 5_000),
        make_fill(trade_id="s1", side=Side.SELL, price=0.0275, quantity=40, ts_ms=T0 + 8 * 60_000 + 5_000),
        make_fill(trade_id="s2", side=Side.SELL, price=0.0275, quantity=30, ts_ms=T0 + 9 * 60_000 + 5_000),
        make_fill(trade_id="s3", side=Side.SELL, price=0.0300, quantity=30, ts_ms=T0 + 11 * 60_000 + 5_000),
    ]
    return candles, fills


def round_trips(seed: int) -> tuple[list[Candle], list[Fill]]:
    """A random walk with a buy and one to three sells every few bars: marks crowd each other
    on few rows, the case where labels used to eat marks."""
    rng = random.Random(seed)
    candles, fills, p = [], [], 1.0
    for i in range(160):
        q = p * math.exp(rng.gauss(0, 0.01))
        candles.append(make_candle(open_ms=T0 + i * 60_000, open=p, close=q, high=max(p, q) * 1.004, low=min(p, q) / 1.004))
        p = q
    bar = 2
    while bar < 150:
        fills.append(make_fill(trade_id=f"b{bar}", side=Side.BUY, price=candles[bar].low, quantity=90, ts_ms=candles[bar].open_ms + 1))
        for k in range(rng.randint(1, 3)):
            bar += rng.randint(1, 2)
            c = candles[bar]
            price = c.low + (c.high - c.low) * rng.random()
            fills.append(make_fill(trade_id=f"s{bar}", side=Side.SELL, price=price, quantity=30, ts_ms=c.open_ms + 1 + k))
        bar += rng.randint(1, 3)
    return candles, fills


CROWDED = {"pon": pon_like(), **{f"walk{seed}": round_trips(seed) for seed in range(3)}}


@pytest.mark.parametrize("case", sorted(CROWDED))
def test_every_fill_keeps_its_mark_and_every_label_is_whole(case: str) -> None:
    """Audit: plotext draws a text over a marker whatever the call order, so two exits close
    together showed one ▼ under `++10.0%`; in 562 of 1,248 renders a mark vanished once the
    labels were drawn. Each fill in the window (one a bar, so each has a column of its own)
    keeps its ▲ or ▼, and a label shown is one exit's return, whole, beside a ▼."""
    candles, fills = CROWDED[case]
    returns = {f"{r:+.1%}" for r in exit_returns(fills).values()}
    labelled = 0
    for width in (40, 52, 64, 78, 96, 120, 160):
        for height in (8, 12, 16, 24):
            window = candles[: width - Y_AXIS_COLS]  # one candle a column, as the chart asks for
            inside = [f for f in fills if window[0].open_ms <= f.ts_ms < window[-1].close_ms]
            out = render_chart(window, fills, width, height, "PON 1m").plain
            size = f"{width}x{height}"
            assert out.count("▲") == sum(f.side is Side.BUY for f in inside), size
            assert out.count("▼") == sum(f.side is Side.SELL for f in inside), size
            for line in out.splitlines():
                for found in LABEL.finditer(line):
                    label, before, after = found.group(), line[: found.start()], line[found.end() :]
                    assert label in returns, size
                    assert before.endswith("▼ ") or after.startswith(" ▼"), f"{size}: {line!r}"
                    assert not re.search(r"[\d.%+-]$", before) and not re.match(r"[\d.%+-]", after), f"{size}: {line!r}"
                    labelled += 1
    assert labelled > 0  # the labels are there where there is room, not all left out


def test_a_mark_sits_on_its_candle() -> None:
    """The marks are placed by plotext's own data-to-cell mapping: a fill at the one tall
    candle's high is in that candle's column, on its top cell."""
    candles = [make_candle(open_ms=T0 + i * 60_000, close=1.5, open=1.5, high=1.501, low=1.499) for i in range(40)]
    candles[17] = make_candle(open_ms=T0 + 17 * 60_000, open=1.1, close=1.9, high=2.0, low=1.0)
    fills = [make_fill(trade_id="b", side=Side.BUY, price=2.0, ts_ms=T0 + 17 * 60_000 + 1)]
    lines = render_chart(candles, fills, 60, 20, "T").plain.splitlines()
    row = next(i for i, line in enumerate(lines) if "▲" in line)
    col = lines[row].index("▲")
    assert lines[row + 1][col] in "│█"  # the candle goes on below the mark
    assert lines[row - 1][col] in " ─"  # and not above it
    assert {line[col] for line in lines[row + 1 : row + 5]} <= set("│█")  # the tall candle's column
    assert all(line[col - 1] == line[col + 1] == " " for line in lines[row : row + 5])  # alone up there


def test_a_chart_too_small_for_labels_still_marks_its_fills() -> None:
    candles, fills = pon_like()
    out = render_chart(candles[:12], fills, 20, 5, "T").plain
    assert out.count("▲") == 1 and out.count("▼") == 3
