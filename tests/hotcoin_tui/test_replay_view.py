"""How `hotcoin replay` words a position closed in tiers: each step's PnL is its own fill's,
the position's total is said as such, and neither reads as the other."""

from __future__ import annotations

from rich.console import Console

from engine.journal.trace import summarise
from hotcoin_tui.replay_view import render_trace
from tests.kit.domain import T0
from tests.kit.events import RecordingSink, close_all_trace, opened_trace


def _sell(sink: RecordingSink, trace_id: str, n: int, qty: float, price: float, action: str, pnl: float, cause: int) -> int:
    cid, ts = f"hc-{trace_id}-x{n}", T0 + n * 60_000
    seq = sink.emit("order_attempt", ts_ms=ts, trace_id=trace_id, symbol="TOBB/USDT", cause=cause, payload={
        "client_order_id": cid, "side": "sell", "order_type": "market", "purpose": "take_profit", "quantity": str(qty),
    })  # fmt: skip
    seq = sink.emit("order_result", ts_ms=ts + 1, trace_id=trace_id, symbol="TOBB/USDT", cause=seq,
                    payload={"client_order_id": cid, "status": "filled", "error_class": None})  # fmt: skip
    seq = sink.emit("fill", ts_ms=ts + 2, trace_id=trace_id, symbol="TOBB/USDT", cause=seq,
                    payload={"client_order_id": cid, "side": "sell", "price": price, "quantity": qty, "fee_quote": 0.01})  # fmt: skip
    return sink.emit("position_update", ts_ms=ts + 3, trace_id=trace_id, symbol="TOBB/USDT", cause=seq, payload={
        "action": action, "quantity": 100.0 - qty if action == "partial_close" else 0.0, "entry_price": 0.3003,
        "realised_pnl": pnl, "position_trace_id": trace_id,
    })  # fmt: skip


def test_a_tiered_exit_says_each_fills_pnl_and_the_positions_total() -> None:
    sink = RecordingSink()
    opened = opened_trace(sink)
    tier = _sell(sink, opened.trace_id, 1, 50.0, 0.33, "partial_close", 1.2050, opened.seqs["opened"])
    _sell(sink, opened.trace_id, 2, 50.0, 0.35, "close", 2.3913, tier)
    console = Console(width=200, record=True, color_system=None)
    console.print(render_trace(summarise(opened.trace_id, sink.trace(opened.trace_id))))
    text = console.export_text()
    assert "partial_close  qty 50  entry 0.3003  this fill's realised PnL +1.2050\n" in text
    assert "close  qty 0  entry 0.3003  this fill's realised PnL +2.3913 (position so far +3.5963)" in text
    assert "exit by take_profit: realised PnL +3.5963 (all fills)" in text
    assert "close qty 0 this fill's pnl 2.3913" in text  # the event in the cause tree
    assert text.count("realised PnL +2.3913") == text.count("this fill's realised PnL +2.3913") == 1


def test_a_close_all_trace_says_its_pnl_is_only_its_own_fills() -> None:
    """Audit: a close-all trace said "realised PnL +1.0614 (all fills)" of a position that had
    also made +0.3886 at a take-profit in its own trace."""
    sink = RecordingSink()
    a, b = opened_trace(sink, symbol="AAA/USDT"), opened_trace(sink, symbol="BBB/USDT", ts_ms=T0 + 60_000)
    close_all = close_all_trace(sink, [a, b])
    console = Console(width=200, record=True, color_system=None)
    console.print(render_trace(summarise(close_all.trace_id, sink.trace(close_all.trace_id))))
    text = " ".join(console.export_text().split())
    assert "(the close-all's fills; replay each position's own trace for its whole trade)" in text
    assert "(all fills)" not in text


def test_a_raised_trailing_stop_is_in_the_tree_not_among_the_positions_fills() -> None:
    """A `trail` position update sells nothing: the cause tree says the stop it raised, and the
    Position steps, which say each fill's PnL, leave it out."""
    sink = RecordingSink()
    opened = opened_trace(sink)
    sink.emit("position_update", ts_ms=T0 + 30_000, trace_id=opened.trace_id, symbol="TOBB/USDT", cause=opened.seqs["opened"], payload={
        "action": "trail", "quantity": 100.0, "entry_price": 0.3003, "realised_pnl": 0.0, "position_trace_id": opened.trace_id,
        "trailing_high": 0.3204, "stop": 0.310788,
    })  # fmt: skip
    _sell(sink, opened.trace_id, 1, 100.0, 0.311, "close", 1.05, opened.seqs["opened"])
    summary = summarise(opened.trace_id, sink.trace(opened.trace_id))
    assert [p.action for p in summary.positions] == ["open", "close"]
    console = Console(width=200, record=True, color_system=None)
    console.print(render_trace(summary))
    text = console.export_text()
    assert "trailing stop raised to 0.310788 (peak 0.3204)" in text
    assert "trail  qty" not in text


def test_quantities_are_shown_as_journaled_and_a_dust_write_off_is_no_fill() -> None:
    """Audit: 5,994.999 coins held showed as "qty 5995" (more than were ever held, hiding the dust
    a buy's fee in coins leaves), and the dust's write-off read as a fill's realised PnL."""
    sink = RecordingSink()
    opened = opened_trace(sink)
    trace_id = opened.trace_id

    def update(n: int, cause: int, action: str, qty: float, pnl: float, **extra: str) -> int:
        return sink.emit("position_update", ts_ms=T0 + n * 60_000, trace_id=trace_id, symbol="TOBB/USDT", cause=cause, payload={
            "action": action, "quantity": qty, "entry_price": 0.3003, "realised_pnl": pnl, "position_trace_id": trace_id, **extra,
        })  # fmt: skip

    fill = sink.emit("fill", ts_ms=T0 + 60_000, trace_id=trace_id, symbol="TOBB/USDT", cause=opened.seqs["opened"],
                     payload={"client_order_id": "x", "side": "sell", "price": 0.33, "quantity": 2997.0, "fee_quote": 0.01})  # fmt: skip
    tier = update(1, fill, "partial_close", 5994.999, 2.8)
    update(2, tier, "close", 0.0, -0.0003, reason="dust")
    console = Console(width=200, record=True, color_system=None)
    console.print(render_trace(summarise(trace_id, sink.trace(trace_id))))
    text = console.export_text()
    assert "partial_close  qty 5,994.999  entry 0.3003  this fill's realised PnL +2.8000\n" in text
    assert "partial_close qty 5,994.999 this fill's pnl 2.8" in text  # the event in the cause tree
    assert "fill  sell 2,997 @ 0.33" in text
    assert "close  qty 0  entry 0.3003  dust written off (no fill), PnL -0.0003" in text
    assert "close qty 0 written off as dust, pnl -0.0003" in text
