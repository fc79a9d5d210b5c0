"""What a backtest prints: trades table, equity curve (plotext) and metrics, or one JSON object.

Rendering only; the numbers come from `runner` and `metrics`. plotext is imported when a
curve is drawn, so `--json` never pays for it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.backtest.metrics import Metrics, by_exit_reason, exit_label
from engine.backtest.runner import BacktestResult, OpenPosition
from engine.timefmt import span

MAX_ROWS = 200  # trades shown in the terminal table; --json carries all of them


def iso(ts_ms: int, *, short: bool = False) -> str:
    return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000))


def as_json(result: BacktestResult, metrics: Metrics, journal: str | None) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "start_ms": result.start_ms,
        "end_ms": result.end_ms,
        "initial_equity": result.initial_equity,  # the capital profile's: what total_return and final_equity start from
        "cycles": result.cycles,
        "candles": result.candles,
        "symbols": result.symbols,
        "events": result.events,
        "journal": journal,
        "wall_s": round(result.wall_s, 3),
        "processes": result.processes,
        "adjusted": list(result.adjusted),
        "warnings": list(result.warnings),
        "metrics": metrics.as_dict(),
        "market": None if result.market is None else result.market.as_dict(),
        "exits": [e.as_dict() for e in by_exit_reason(result.trades)],
        "dust": result.dust.as_dict(),
        "open_positions": {s: _open_json(p) for s, p in result.open_positions.items()},
        "trades": [
            {
                "symbol": t.symbol,
                "trace_id": t.trace_id,
                "opened_ms": t.opened_ms,
                "closed_ms": t.closed_ms,
                "quantity": t.quantity,
                "entry_price": t.entry_price,
                "exit_price": t.exit_price,
                "fees": t.fees,
                "pnl": t.pnl,
                "return_pct": t.return_pct,
                "exit_reason": t.exit_reason,
                "exit_rules": list(t.exit_rules),
            }
            for t in result.trades
        ],
        "equity": {"ts_ms": result.equity_ts.tolist(), "equity": rounded(result.equity, 6)},
    }


def rounded(values: npt.NDArray[np.float64], ndigits: int) -> list[float]:
    """`[round(x, ndigits) for x in values]`, the same floats bit for bit, at array speed: the
    curve of a month is 40,320 minutes, and `round` one float at a time (exact decimal rounding)
    was ~30 ms of the command's end. Scaled by 10**ndigits, a value rounds half to even to an
    integer k, and k / 10**ndigits is the nearest float to k's decimal, as `round` returns. The
    scaling itself rounds, so a value whose scaled figure lies within its error of a half (or
    that is not finite, or too big for every integer to be a float) could round the other way:
    those few are left to `round` itself (`tests/engine/backtest/test_report.py` holds the two
    equal, halves and near-halves included)."""
    if not 0 <= ndigits <= 15:  # where 10**ndigits and the scaled integers are not all exact floats
        return [round(x, ndigits) for x in values.tolist()]
    scale = 10.0**ndigits
    with np.errstate(over="ignore", invalid="ignore"):  # an inf or a nan is doubtful: `round` takes it
        scaled = values * scale
        off_half = np.abs(scaled - np.floor(scaled) - 0.5)
        sure = (off_half > 4 * np.spacing(np.abs(scaled))) & (np.abs(scaled) < 2.0**52)
    out: list[float] = (np.rint(scaled) / scale).tolist()
    for i in np.flatnonzero(~sure).tolist():
        out[i] = round(float(values[i]), ndigits)
    return out


def _open_json(p: OpenPosition) -> dict[str, Any]:
    return {
        "trace_id": p.trace_id, "opened_ms": p.opened_ms, "quantity": p.quantity, "entry_price": p.entry_price,
        "mark_price": p.mark_price, "unrealised_pnl": p.unrealised_pnl, "realised_pnl": p.realised_pnl,
        "marked_at": "bid, before exit fee and slippage",
    }  # fmt: skip


# What the terminal tables give up until their rows fit the width (--json has all): the trace
# id cut to a prefix `hotcoin replay` takes, then whole columns, least read first, in this
# order; the trades and exits tables cut their exit reason (text) before they drop the rest.
# The trace id and the opening time go last but before any figure or symbol could be cut: a
# number is never cut (rich cuts every cell of a table too wide, and "+11.…" reads as another),
# and at 40 columns a 10-character trace id had left "-1…" for the pnl and "EPS/U…" for the pair.
_LAST_RESORT: tuple[tuple[str, ...], ...] = (("trace",), ("opened UTC",))
_TRADES_DROPPED: tuple[tuple[str, ...], ...] = (("qty",), ("entry", "exit"))
_TRADES_LAST: tuple[tuple[str, ...], ...] = (("held",), ("%",), ("reason",), *_LAST_RESORT)  # once the reason is cut
_OPEN_DROPPED: tuple[tuple[str, ...], ...] = (("qty",), ("entry", "mark"), *_LAST_RESORT, ("realised",))  # in "open at end" too
_EXITS_LAST: tuple[tuple[str, ...], ...] = (("median held",), ("fees",), ("fills",), ("win rate",), ("trades",))
_TRACE_SHORT = 12  # `hotcoin replay` takes any unique prefix of a trace id


def _trades_title(n: int) -> str:
    return f"trades ({n})" if n <= MAX_ROWS else f"trades (the last {MAX_ROWS} of {n}; --json has all)"


def _width(table: Any) -> int:
    """The columns `table` takes with every cell whole."""
    from rich.console import Console
    from rich.measure import Measurement

    measure = Console(width=10_000)
    return int(Measurement.get(measure, measure.options, table).maximum)


def _shorten_trace(columns: dict[str, list[str]]) -> None:
    columns["trace"] = [t[:_TRACE_SHORT] for t in columns["trace"]]


def _drop(columns: dict[str, list[str]], names: tuple[str, ...]) -> None:
    for name in names:
        del columns[name]


def _fitted(
    columns: dict[str, list[str]], build: Callable[[], Any], width: int, dropped: tuple[tuple[str, ...], ...]
) -> Any:
    """`build()`'s table, after as few narrowings as fit it into `width`: the trace id shortened
    (where there is one), then each of `dropped` in turn (`build` reads `columns`)."""
    steps = [partial(_shorten_trace, columns)] if "trace" in columns else []
    steps += [partial(_drop, columns, names) for names in dropped]
    table = build()
    for step in steps:
        if _width(table) <= width:
            break
        step()
        table = build()
    return table


def _cut_to_fit(
    columns: dict[str, list[str]], build: Callable[[], Any], width: int, texts: list[str], last: tuple[tuple[str, ...], ...]
) -> Any:
    """`build()`'s table once `columns["reason"]` (`texts`, whole) is cut with an ellipsis to
    the room the other columns leave, dropping each of `last` in turn while that is not enough:
    the reason gives the rest, every other cell is read whole or not at all."""
    table = build()
    for names in (*last, None):
        if _width(table) <= width:
            break
        if "reason" in columns:
            columns["reason"] = [""] * len(texts)
            room = max(len("reason"), width - _width(build()) + len("reason"))
            columns["reason"] = [r if len(r) <= room else r[: room - 1] + "…" for r in texts]
            table = build()
            if _width(table) <= width or names is None:
                break
            columns["reason"] = texts  # whole again: cut anew to the room the dropped column leaves
        if names is None:
            break
        _drop(columns, names)
        table = build()
    return table


def trades_table(result: BacktestResult, width: int = 120) -> Any:
    """The last `MAX_ROWS` trades as a rich table no wider than `width`: on a narrow terminal
    the trace id is cut to a prefix, then the quantity and prices are dropped, then the exit
    reason is cut with an ellipsis, then holding time, return, reason, trace id and opening
    time are dropped, rather than rich cutting every cell (a pnl of "+2…")."""
    from rich import box
    from rich.table import Table

    trades = result.trades if len(result.trades) <= MAX_ROWS else result.trades[-MAX_ROWS:]
    reasons = [exit_label(t) for t in trades]
    columns: dict[str, list[str]] = {
        "opened UTC": [iso(t.opened_ms, short=True) for t in trades],
        "held": [span(t.closed_ms - t.opened_ms) for t in trades],
        "symbol": [t.symbol for t in trades],
        "qty": [f"{t.quantity:.6g}" for t in trades],
        "entry": [f"{t.entry_price:.6g}" for t in trades],
        "exit": [f"{t.exit_price:.6g}" for t in trades],
        "pnl": [f"{t.pnl:+.2f}" for t in trades],
        "%": [f"{t.return_pct:+.1f}" for t in trades],
        "reason": reasons,
        "trace": [t.trace_id for t in trades],
    }

    def build() -> Any:
        table = Table(
            title=_trades_title(len(result.trades)), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
            collapse_padding=True,
        )  # fmt: skip
        for name in columns:
            table.add_column(name, justify="left" if name in ("opened UTC", "symbol", "reason", "trace") else "right", no_wrap=True)
        pnl = list(columns).index("pnl")
        for i, t in enumerate(trades):
            cells = [columns[name][i] for name in columns]
            cells[pnl] = f"[{'green' if t.pnl > 0 else 'red'}]{cells[pnl]}[/]"
            table.add_row(*cells)
        return table

    table = _fitted(columns, build, width, _TRADES_DROPPED)
    if _width(table) <= width:
        return table
    return _cut_to_fit(columns, build, width, reasons, _TRADES_LAST)


def metrics_table(result: BacktestResult, metrics: Metrics) -> Any:
    from rich.table import Table

    table = Table(title="metrics", title_justify="left", show_header=False)
    table.add_column("name")
    table.add_column("value", justify="right")
    rows = (
        ("window", f"{iso(result.start_ms)} -> {iso(result.end_ms)} UTC"),
        ("total return", f"{metrics.total_return:+.2%}"),
        ("final equity", f"{metrics.final_equity:.2f}"),
        ("Sharpe (ann.)", f"{metrics.sharpe:.2f}"),
        ("Sortino (ann.)", f"{metrics.sortino:.2f}"),
        ("max drawdown", f"{metrics.max_drawdown:.2%}"),
        ("win rate", "n/a (no closed trade)" if metrics.win_rate is None else f"{metrics.win_rate:.1%}"),
        ("profit factor", _profit_factor(metrics)),
        ("exposure", f"{metrics.exposure:.1%}"),
        ("trades", str(metrics.trades)),
        *_market_rows(result),
        ("open at end", _open_summary(result)),
        ("dust written off", _dust_summary(result)),
        ("replayed", f"{result.candles:,} candles, {result.symbols} pairs, {result.cycles:,} cycles in {result.wall_s:.2f} s"
                     + (" (discovery in a second process)" if result.processes > 1 else "")),
    )
    for k, v in rows:
        table.add_row(k, v)
    return table


def _profit_factor(metrics: Metrics) -> str:
    if metrics.profit_factor is None:
        return "n/a (no closed trade)"
    if metrics.no_losing_trade:
        return "inf (no losing trade)"
    return f"{metrics.profit_factor:.2f}"


def _open_summary(result: BacktestResult) -> str:
    """The positions held at the end and all they add to the return: the take-profit tiers
    they sold already (realised) beside what they hold (unrealised); with the trades' PnL that
    is the return. Unrealised alone left a tier's gain in no line of the report."""
    held = result.open_positions.values()
    if not held:
        return "none"
    unrealised = sum(p.unrealised_pnl for p in held)
    realised = sum(p.realised_pnl for p in held)
    return f"{len(held)}, realised {realised:+.2f}, unrealised {unrealised:+.2f} (table below)"


def _dust_summary(result: BacktestResult) -> str:
    """The crumbs full exits could not sell, written off at their cost: a loss inside the
    trades' PnL, and coins the equity counts as 0 (as live), at their value at the last bid."""
    dust = result.dust
    if not dust.count:
        return "none"
    return f"{dust.pnl:+.2f} in {dust.count} trades; the coins, {dust.value:.2f} at the last bid, are not in equity"


def open_table(result: BacktestResult, width: int = 120) -> Any:
    """The positions still held at the end: in the final equity at the bid, before the exit fee
    and slippage a close would pay, and in no trade figure; each with what its take-profit tiers
    realised already, what it holds unrealised, and the trace that explains it. No wider than
    `width`, as the trades table: the trace id shortened, then the quantity, the entry and mark
    prices, the trace id and the opening time dropped, rather than rich cutting every cell
    ("DGB/U… 0.102…")."""
    from rich import box
    from rich.table import Table

    held = sorted(result.open_positions.values(), key=lambda p: p.opened_ms)
    columns: dict[str, list[str]] = {
        "opened UTC": [iso(p.opened_ms, short=True) for p in held],
        "symbol": [p.symbol for p in held],
        "qty": [f"{p.quantity:.6g}" for p in held],
        "entry": [f"{p.entry_price:.6g}" for p in held],
        "mark": [f"{p.mark_price:.6g}" for p in held],
        "realised": [f"[{'green' if p.realised_pnl > 0 else 'red'}]{p.realised_pnl:+.2f}[/]" for p in held],
        "unrealised": [f"[{'green' if p.unrealised_pnl > 0 else 'red'}]{p.unrealised_pnl:+.2f}[/]" for p in held],
        "trace": [p.trace_id for p in held],
    }

    def build() -> Any:
        table = Table(
            title="open at end (marked at the bid, before exit fee and slippage)", title_justify="left",
            box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
        )  # fmt: skip
        for name in columns:
            table.add_column(name, justify="left" if name in ("opened UTC", "symbol", "trace") else "right", no_wrap=True)
        for i in range(len(held)):
            table.add_row(*(columns[name][i] for name in columns))
        return table

    return _fitted(columns, build, width, _OPEN_DROPPED)


def exits_table(result: BacktestResult, width: int = 120) -> Any:
    """The closed trades' PnL split by the exit that realised it (`metrics.by_exit_reason`):
    trades it sold from, its fills, win rate, P&L, fees, median time held. No wider than
    `width`: the reason wraps onto more lines, then median time, fees, fills and win rate are
    dropped while it would have to break a word, rather than rich cutting a figure.

    The reason wraps where the trades table cuts it: an exits row *is* its reason, and signal
    exits differ only in the rules after "signal_exit: ". Cut at 80 columns, the rows for
    momentum_fade, momentum_fade + reversal and momentum_fade + heat_decay all read
    "signal_exit: mome…". Lines between the rows then say which lines are one row's."""
    from rich.table import Table

    split = by_exit_reason(result.trades)
    reasons = [e.reason for e in split]
    columns: dict[str, list[str]] = {
        "reason": reasons,
        "trades": [str(e.trades) for e in split],
        "fills": [str(e.fills) for e in split],
        "win rate": [f"{e.win_rate:.0%}" for e in split],
        "pnl": [f"{e.pnl:+.2f}" for e in split],
        "fees": [f"{e.fees:.2f}" for e in split],
        "median held": [span(e.median_hold_ms) for e in split],
    }
    room: int | None = None  # the reason's width; None: as wide as its longest

    def build() -> Any:
        wraps = room is not None and any(len(r) > room for r in reasons)
        table = Table(title="exits (each fill's PnL to the exit that sold it)", title_justify="left", show_lines=wraps)
        for name in columns:
            if name == "reason":
                table.add_column(name, overflow="fold", max_width=room)
            else:
                table.add_column(name, justify="right", no_wrap=True)
        for i, e in enumerate(split):
            cells = [columns[name][i] for name in columns]
            if "pnl" in columns:
                at = list(columns).index("pnl")
                cells[at] = f"[{'green' if e.pnl > 0 else 'red'}]{cells[at]}[/]"
            table.add_row(*cells)
        return table

    longest_word = max((len(word) for r in reasons for word in r.split()), default=0)
    table = build()
    for names in (*_EXITS_LAST, None):
        if _width(table) <= width:
            break
        room = len("reason")  # the reason as narrow as its header: the other columns' width is the rest
        room = max(len("reason"), width - _width(build()) + len("reason"))
        table = build()
        if room >= longest_word or names is None:  # whole words, or nothing else left to give
            break
        room = None
        _drop(columns, names)
        table = build()
    return table


def _market_rows(result: BacktestResult) -> tuple[tuple[str, str], ...]:
    """Buy and hold over the same window, for scale (`engine.backtest.benchmark`)."""
    market = result.market
    if market is None or not market.pairs:
        return ()
    rows = [("market (hold all)", f"{market.mean:+.2%} (equal weights, {market.pairs} pairs)")]
    ref = market.reference_change
    if ref is not None:
        rows.append((f"market ({market.reference})", f"{ref:+.2%}"))
    return tuple(rows)


def chart_points(equity: np.ndarray, points: int) -> np.ndarray:
    """The indices of `equity` a chart of about `points` points draws: the first and last, and
    each bucket's lowest and highest in their order, so the line passes through every peak and
    trough. Every Nth point (what this replaced) missed them: a month's chart topped at 111.2
    with equity reaching 112.73, showed a smaller drawdown than the metrics, and stopped up to
    N minutes before the end."""
    n = len(equity)
    if n <= points:
        return np.arange(n)
    edges = np.linspace(0, n, max(1, points // 2) + 1).astype(np.int64)
    picked = {0, n - 1}
    for a, b in itertools.pairwise(edges.tolist()):
        picked.update((a + int(np.argmin(equity[a:b])), a + int(np.argmax(equity[a:b]))))
    return np.array(sorted(picked), np.int64)


def equity_chart(result: BacktestResult, width: int = 100, height: int = 18) -> str:
    """The equity curve as terminal text (at most about `4 * width` points: `chart_points`)."""
    import plotext as plt

    at = chart_points(result.equity, 4 * width)
    xs = (at / 60.0).tolist()
    ys = result.equity[at].tolist()
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.title("equity")
    plt.xlabel("hours")
    if ys:
        plt.plot(xs, ys, marker="braille")
    out: str = plt.build()
    return out
