"""The backtest report: the trades table on narrow terminals (what gives way, in what order),
the equity chart, and what it says of a position still open at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from engine.backtest.report import MAX_ROWS, exits_table, open_table, rounded, trades_table
from engine.backtest.runner import BacktestResult, ExitPart, OpenPosition, Trade
from engine.config import HotcoinConfig
from tests.engine.backtest.conftest import PUMPS, START
from tests.engine.backtest.conftest import T0 as CONF_T0

T0 = 1_617_321_600_000  # 2021-04-02 00:00 UTC
LONG = "signal_exit: momentum_fade, reversal, heat_decay"


def result_with_long_reasons(n: int = 5) -> BacktestResult:
    rules = ("momentum_fade", "reversal", "heat_decay")
    trades = [
        Trade(
            symbol="DENT/USDT", trace_id=f"{i:x}{'a' * 15}", opened_ms=T0 + i * 3_600_000,
            closed_ms=T0 + i * 3_600_000 + 125 * 60_000, quantity=12345.678, entry_price=0.0123, exit_price=0.0125,
            fees=0.01, pnl=-12.34 if i % 2 else 3.21, exit_reason="signal_exit", exit_rules=rules,
            exits=(ExitPart("signal_exit", rules, T0 + i * 3_600_000 + 125 * 60_000, 12345.678, -12.34 if i % 2 else 3.21, 0.01),),
        )
        for i in range(n)
    ]
    one = np.array([T0])
    return BacktestResult("r", T0, T0 + 86_400_000, 100.0, one, np.array([100.0]), np.array([0.0]), trades, [], {}, 1, 1, 1, 0.1, 1)


def rendered(result: BacktestResult, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(trades_table(result, width=width))
    return [line for line in console.export_text().splitlines() if "DENT/USDT" in line]


@pytest.mark.parametrize("width", [80, 100])
def test_the_exit_reason_gives_way_and_no_other_cell_is_cut(width: int) -> None:
    rows = rendered(result_with_long_reasons(), width)
    assert len(rows) == 5 and all(len(row) <= width for row in rows)
    for i, row in enumerate(rows):
        cells = row.split()
        assert cells[:4] == [f"04-02 0{i}:00"[:5], f"0{i}:00", "2h05", "DENT/USDT"]
        assert (cells[4], cells[5]) == (("-12.34", "-8.1") if i % 2 else ("+3.21", "+2.1"))  # pnl, %
        assert cells[-1] == f"{i:x}{'a' * 11}"  # the trace id's 12-character prefix, whole
        assert "…" in row and row.index("signal_exit") < row.index("…") < row.index(cells[-1])


def _open_positions() -> dict[str, OpenPosition]:
    held = (("DGB/USDT", 991.0, 0.102751, 0.10898, 6.07, 1.25), ("ETC/USDT", 3.102, 33.0185, 33.8759, -2.56, 0.0))
    return {
        symbol: OpenPosition(symbol, f"{i:x}{'b' * 15}", T0 + i * 60_000, qty, entry, mark, pnl, realised)
        for i, (symbol, qty, entry, mark, pnl, realised) in enumerate(held)
    }


@pytest.mark.parametrize("width", [80, 64, 50])
def test_narrow_tables_drop_columns_rather_than_cut_a_number(width: int) -> None:
    """Below ~79 columns the open-at-end table had rich cut every cell ("DGB/U… 991 0.102…"), and
    below ~66 the trades table cut the pnl ("+11.…"): now both drop columns, least read first,
    so a symbol, a figure or a trace id is read whole or not at all; only the exit reason (text)
    is cut."""
    result = result_with_long_reasons()
    result.open_positions = _open_positions()
    console = Console(width=width, record=True, color_system=None)
    console.print(trades_table(result, width=width))
    console.print(open_table(result, width=width))
    rows = [line.split() for line in console.export_text().splitlines() if "/USDT" in line]
    assert len(rows) == 5 + 2 and all(len(" ".join(row)) <= width for row in rows)
    assert not [cell for row in rows for cell in row if "…" in cell and any(c.isdigit() for c in cell)], rows
    trades, held = rows[:5], rows[5:]
    assert all("DENT/USDT" in row for row in trades)
    assert all(("-12.34" if i % 2 else "+3.21") in row for i, row in enumerate(trades))  # the pnl, whole
    assert all(row[-1] == f"{i:x}{'a' * 11}" for i, row in enumerate(trades))  # the trace's prefix
    tail = 2 if width < 60 else 3  # 50 columns: the trace id goes before a figure is cut
    assert [(row[2], *row[-tail:]) for row in held] == [
        ("DGB/USDT", "+1.25", "+6.07", *([f"0{'b' * 11}" if width < 90 else f"0{'b' * 15}"] * (tail - 2))),
        ("ETC/USDT", "+0.00", "-2.56", *([f"1{'b' * 11}" if width < 90 else f"1{'b' * 15}"] * (tail - 2))),
    ]


@pytest.mark.parametrize("width", [24, 30, 36, 40, 46, 52])
def test_below_fifty_columns_the_trace_and_time_go_before_a_number_or_a_symbol(width: int) -> None:
    """At 40 columns the trades table kept the 10-character trace id and cut the pnl to "-1…"
    and the pair to "EPS/U…" (the open table likewise), against docs/backtest.md: the trace id
    and the opening time now go first, and the exits table fits the same way (its reason cut).
    Whatever is shown of a pair or a figure is whole, down to 24 columns."""
    result = result_with_long_reasons()
    result.open_positions = _open_positions()
    console = Console(width=width, record=True, color_system=None)
    for table in (trades_table(result, width=width), open_table(result, width=width), exits_table(result, width=width)):
        console.print(table)
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines), lines
    cells = [cell for line in lines for cell in line.replace("│", " ").split()]
    assert not [c for c in cells if "…" in c and (any(ch.isdigit() for ch in c) or "/" in c)], lines
    trades = [line.split() for line in lines if "DENT/USDT" in line]
    assert [next(c for c in row if c[0] in "+-") for row in trades] == ["+3.21", "-12.34"] * 2 + ["+3.21"]
    held = [line.split() for line in lines if "DGB/USDT" in line or "ETC/USDT" in line]
    assert len(held) == 2 and ("+6.07" in held[0]) and ("-2.56" in held[1])
    assert any("-15.05" in line for line in lines), lines  # the exits table's pnl (3 x 3.21 - 2 x 12.34), whole


RULE_SETS = (("momentum_fade",), ("momentum_fade", "reversal"), ("momentum_fade", "heat_decay"), ("reversal",))


def result_with_rule_sets() -> BacktestResult:
    """One signal-exit trade per rule set of `RULE_SETS` (the rows of docs/backtest.md's example
    window), and a take-profit."""
    exits = [("signal_exit", rules) for rules in RULE_SETS] + [("take_profit", ())]
    trades = [
        Trade(
            symbol="DENT/USDT", trace_id=f"{i:x}{'c' * 15}", opened_ms=T0 + i * 3_600_000,
            closed_ms=T0 + i * 3_600_000 + 60_000 * (i + 1), quantity=100.0, entry_price=1.0, exit_price=1.1,
            fees=0.01, pnl=1.0 + i, exit_reason=reason, exit_rules=rules,
            exits=(ExitPart(reason, rules, T0 + i * 3_600_000 + 60_000 * (i + 1), 100.0, 1.0 + i, 0.01),),
        )
        for i, (reason, rules) in enumerate(exits)
    ]
    one = np.array([T0])
    return BacktestResult("r", T0, T0 + 86_400_000, 100.0, one, np.array([100.0]), np.array([0.0]), trades, [], {}, 1, 1, 1, 0.1, 1)


def exits_rows(result: BacktestResult, width: int) -> list[tuple[str, str]]:
    """The exits table as read at `width`: each row's reason (its wrapped lines joined) and pnl.
    A row's first line holds its figures; the lines under it with none continue its reason."""
    console = Console(width=width, record=True, color_system=None)
    console.print(exits_table(result, width=width))
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines), lines
    rows: list[tuple[list[str], str]] = []
    for line in lines:
        if not line.startswith("│"):  # the title, the header, a rule between rows, the edges
            continue
        reason, *figures = (cell.strip() for cell in line.strip("│").split("│"))
        if any(figures):
            rows.append(([reason], next(f for f in figures if f[:1] in "+-")))
        else:
            rows[-1][0].append(reason)
    return [(" ".join(reason), pnl) for reason, pnl in rows]


@pytest.mark.parametrize("width", [80, 60, 40])
def test_exits_rows_are_told_apart_on_a_narrow_terminal(width: int) -> None:
    """Audit: at 80 columns the exits table cut its reason to the room left, and the rows for
    momentum_fade, momentum_fade + reversal and momentum_fade + heat_decay all read
    "signal_exit: mome…". The reason wraps instead: every row reads whole, with its figures."""
    rows = exits_rows(result_with_rule_sets(), width)
    expected = [(f"signal_exit: {', '.join(rules)}", f"+{1 + i:.2f}") for i, rules in enumerate(RULE_SETS)]
    assert sorted(rows) == sorted([*expected, ("take_profit", "+5.00")]), rows


def test_a_wide_exits_table_shows_every_column() -> None:
    console = Console(width=200, record=True, color_system=None)
    console.print(exits_table(result_with_long_reasons(), width=200))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "reason" in line)
    assert [c for c in ("trades", "fills", "win rate", "pnl", "fees", "median held") if c in header] == [
        "trades", "fills", "win rate", "pnl", "fees", "median held"
    ]
    assert LONG in text and "…" not in text


def test_a_wide_terminal_shows_every_column_whole() -> None:
    rows = rendered(result_with_long_reasons(), 200)
    assert all(LONG in row and "…" not in row and "12345.7" in row for row in rows)


def test_a_cut_table_says_so_in_its_title() -> None:
    def title_and_rows(n: int) -> tuple[str, int]:
        console = Console(width=120, record=True, color_system=None)
        console.print(trades_table(result_with_long_reasons(n), width=120))
        lines = console.export_text().splitlines()
        return lines[0].strip(), sum("DENT/USDT" in line for line in lines)

    assert title_and_rows(5) == ("trades (5)", 5)
    assert title_and_rows(MAX_ROWS + 50) == (f"trades (the last {MAX_ROWS} of {MAX_ROWS + 50}; --json has all)", MAX_ROWS)


def test_the_equity_chart_keeps_the_peak_the_trough_and_the_last_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """A month of minutes on a 100-column chart: the plotted line reaches the curve's true
    maximum and minimum (one minute each) and ends at its last point, at its time."""
    import plotext as plt

    from engine.backtest.report import equity_chart

    n = 43_207  # 30 days and 7 minutes: not a multiple of the bucket size
    equity = 100.0 + np.sin(np.arange(n) / 900.0)
    equity[12_345], equity[30_001], equity[-1] = 112.73, 91.5, 104.2
    result = result_with_long_reasons(0)
    result.equity, result.equity_ts = equity, T0 + np.arange(n) * 60_000
    drawn: list[tuple[list[float], list[float]]] = []
    monkeypatch.setattr(plt, "plot", lambda xs, ys, **_: drawn.append((list(xs), list(ys))))
    equity_chart(result, width=100)
    ((xs, ys),) = drawn
    assert len(ys) <= 4 * 100 + 2
    assert (max(ys), min(ys)) == (112.73, 91.5)
    assert (xs[-1], ys[-1]) == ((n - 1) / 60.0, 104.2) and xs == sorted(xs)


def test_a_position_open_at_the_end_is_reported_with_what_it_adds_to_the_return(
    config: HotcoinConfig, store: Path
) -> None:
    """A window that ends after PUMP's entry and first take-profit tier: no closed trade, so win
    rate and profit factor are n/a (JSON null), not 0; the position is reported with its entry,
    its mark, the unrealised PnL the total return holds beside the tier's realised PnL (entry
    fees included, before exit fee and slippage) and its trace, in text and JSON."""
    import asyncio

    from engine.backtest.api import metrics_of
    from engine.backtest.report import as_json, metrics_table, open_table
    from engine.backtest.runner import MINUTE_MS, BacktestRunner

    end = CONF_T0 + (PUMPS["PUMP/USDT"] + 15) * MINUTE_MS
    result = asyncio.run(BacktestRunner(config, store, run_id="open").run(START, end))
    assert result.trades == [] and set(result.open_positions) == {"PUMP/USDT"}
    pump = result.open_positions["PUMP/USDT"]
    buy, tier = result.fills
    assert (buy.side.value, tier.side.value, buy.symbol) == ("buy", "sell", "PUMP/USDT")
    assert (pump.trace_id, pump.entry_price) == (buy.trace_id, buy.price)
    bought = buy.quantity - buy.fee_base  # the buy's fee was taken in coins, as on Binance
    assert buy.fee_base > 0 and pump.quantity == pytest.approx(bought - tier.quantity)
    fees_held = buy.fee_quote * pump.quantity / bought
    assert pump.unrealised_pnl == pytest.approx((pump.mark_price - buy.price) * pump.quantity - fees_held)
    assert pump.realised_pnl > 0
    assert pump.unrealised_pnl + pump.realised_pnl == pytest.approx(result.final_equity - result.initial_equity)
    metrics = metrics_of(result)
    doc = as_json(result, metrics, None)
    assert (doc["metrics"]["win_rate"], doc["metrics"]["profit_factor"]) == (None, None)
    assert doc["open_positions"]["PUMP/USDT"] == {
        "trace_id": buy.trace_id, "opened_ms": pump.opened_ms, "quantity": pump.quantity, "entry_price": buy.price,
        "mark_price": pump.mark_price, "unrealised_pnl": pump.unrealised_pnl, "realised_pnl": pump.realised_pnl,
        "marked_at": "bid, before exit fee and slippage",
    }  # fmt: skip
    # The terminal showed the unrealised PnL alone: the tier's realised gain was in the JSON
    # only, and the trades (none) and the open position did not add up to the return.
    console = Console(width=120, record=True, color_system=None)
    console.print(metrics_table(result, metrics))
    console.print(open_table(result, width=120))
    text = console.export_text()
    assert text.count("n/a (no closed trade)") == 2 and "0.0%" not in text
    assert f"1, realised {pump.realised_pnl:+.2f}, unrealised {pump.unrealised_pnl:+.2f}" in text
    assert "marked at the bid, before exit fee and slippage" in text
    (row,) = [line for line in text.splitlines() if "PUMP/USDT" in line]
    assert row.split()[3:] == [  # after the date, time and symbol
        f"{pump.quantity:.6g}", f"{buy.price:.6g}", f"{pump.mark_price:.6g}", f"{pump.realised_pnl:+.2f}",
        f"{pump.unrealised_pnl:+.2f}", buy.trace_id,
    ]  # fmt: skip


def test_each_exit_is_credited_with_its_own_fills_and_the_dust_is_reported(store: Path) -> None:
    """Tiers at +5 % (half) and +500 % (never reached): PUMP sells half at the tier, then a
    trailing stop sells the rest; ALT's rest goes on a signal exit; both leave crumbs written off.
    The exits split credited each trade's whole PnL to its last exit (the tier's gain went to
    the trailing stop and the signal exit, and the write-offs hid inside them): each exit now
    shows what its own fills realised, worked out here from the fills, and the write-offs are a
    line of the report and of the JSON, with what the coins were worth at the end."""
    import asyncio

    import pyarrow.parquet as pq

    from engine.backtest.api import metrics_of
    from engine.backtest.metrics import by_exit_reason
    from engine.backtest.report import as_json, metrics_table
    from engine.backtest.runner import BacktestRunner
    from tests.engine.backtest.conftest import minute_config

    tiers = [{"gain": 0.05, "fraction": 0.5}, {"gain": 5.0, "fraction": 1.0}]
    config = minute_config(trading={"exits": {"take_profit": tiers}})
    result = asyncio.run(BacktestRunner(config, store, run_id="tiers").run(START))
    by_symbol = {t.symbol: t for t in result.trades}
    assert {s: t.exit_reason for s, t in by_symbol.items()} == {"PUMP/USDT": "trailing_stop", "ALT/USDT": "signal_exit"}

    def realised(trace: str) -> tuple[list[float], float, float]:
        """Each sell's PnL as the book charges it, and the crumbs left: coins, and their cost."""
        buy, *sells = [f for f in result.fills if f.trace_id == trace]
        bought = buy.quantity - buy.fee_base  # the fee taken in coins
        pnls = [(s.price - buy.price) * s.quantity - s.fee_quote - buy.fee_quote * s.quantity / bought for s in sells]
        left = bought - sum(s.quantity for s in sells)
        return pnls, left, -(buy.price * left) - buy.fee_quote * left / bought

    pump, alt = (realised(by_symbol[s].trace_id) for s in ("PUMP/USDT", "ALT/USDT"))
    split = {e.reason: e for e in by_exit_reason(result.trades)}
    assert {r: (e.trades, e.fills) for r, e in split.items()} == {
        "take_profit": (2, 2), "trailing_stop": (1, 1), "signal_exit: momentum_fade": (1, 1), "dust": (2, 2),
    }  # fmt: skip
    assert split["take_profit"].pnl == pytest.approx(pump[0][0] + alt[0][0])
    assert split["trailing_stop"].pnl == pytest.approx(pump[0][1])
    assert split["signal_exit: momentum_fade"].pnl == pytest.approx(alt[0][1])
    assert split["dust"].pnl == pytest.approx(pump[2] + alt[2])
    assert sum(e.pnl for e in split.values()) == pytest.approx(sum(t.pnl for t in result.trades))
    assert sum(e.fees for e in split.values()) == pytest.approx(sum(t.fees for t in result.trades))

    last_close = {
        s: pq.read_table(store / f"{s.replace('/', '_')}-1m.parquet").column("close").to_numpy()[-1] for s in by_symbol
    }
    worth = pump[1] * last_close["PUMP/USDT"] + alt[1] * last_close["ALT/USDT"]
    dust = result.dust
    assert (dust.count, dust.pnl) == (2, pytest.approx(pump[2] + alt[2]))
    assert dust.value == pytest.approx(worth, rel=0.01)  # at the bid, a spread below the close
    metrics = metrics_of(result)
    doc = as_json(result, metrics, None)
    assert doc["dust"] == {"pnl": dust.pnl, "count": 2, "value_at_last_bid": dust.value, "in_equity": False}
    assert {e["reason"]: e["pnl"] for e in doc["exits"]} == {r: e.pnl for r, e in split.items()}
    console = Console(width=160, record=True, color_system=None)
    console.print(metrics_table(result, metrics))
    (line,) = [x for x in console.export_text().splitlines() if "dust written off" in x]
    assert f"{dust.pnl:+.2f} in 2 trades; the coins, {dust.value:.2f} at the last bid, are not in equity" in line


def test_the_metrics_table_says_when_no_trade_lost() -> None:
    """An infinite profit factor printed as "inf": it reads as a figure; the table says why."""
    from engine.backtest.metrics import compute
    from engine.backtest.report import metrics_table

    metrics = compute(100.0, np.array([101.0]), np.zeros(1), [1.0], 60_000)
    console = Console(width=120, record=True, color_system=None)
    console.print(metrics_table(result_with_long_reasons(1), metrics))
    assert "inf (no losing trade)" in console.export_text()


@pytest.mark.parametrize("ndigits", [0, 1, 3, 6, 9, 15, 16])
def test_rounded_is_round_bit_for_bit(ndigits: int) -> None:
    """The JSON's equity curve is rounded as an array (`rounded`): each float is the one `round`
    gives, sign of zero included, over every magnitude, at halves and a float either side of
    them (where scaling could tip the rounding), and at inf, nan and floats too big to scale."""
    rng = np.random.default_rng(ndigits)
    halves = (np.arange(-5000, 5000) + 0.5) / 10.0**ndigits
    values = np.concatenate([
        rng.uniform(-1e3, 1e3, 20_000), np.exp(rng.uniform(-30, 40, 20_000)) * rng.choice([-1.0, 1.0], 20_000),
        halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf), 58.73195580998163 + np.arange(-2e-6, 2e-6, 1e-9),
        [0.0, -0.0, -1e-300, np.inf, -np.inf, np.nan, 1e300, 5e-324, 2.0**52, 2.0**53 + 2],
    ])  # fmt: skip
    expected = [round(x, ndigits) for x in values.tolist()]
    got = rounded(values, ndigits)
    assert [x.hex() for x in got] == [x.hex() for x in expected]


def test_a_result_is_not_spelled_out_by_its_repr() -> None:
    """`asyncio.run` reprs the task that returns a backtest's result when it restores its SIGINT
    handler: a repr spelling out a month's curve and trades cost ~30 ms of every command's end."""
    result = result_with_long_reasons(500)
    assert len(repr(result)) < 100
