"""What a backtest prints: trades table, equity curve (plotext) and metrics, or one JSON object.

Rendering only; the numbers come from `runner` and `metrics`. plotext is imported when a
curve is drawn, so `--json` never pays for it.
"""

from __future__ import annotations

import time
from typing import Any

from engine.backtest.metrics import Metrics
from engine.backtest.runner import BacktestResult

MAX_ROWS = 200  # trades shown in the terminal table; --json carries all of them


def iso(ts_ms: int, *, short: bool = False) -> str:
    return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000))


def as_json(result: BacktestResult, metrics: Metrics, journal: str | None) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "start_ms": result.start_ms,
        "end_ms": result.end_ms,
        "cycles": result.cycles,
        "candles": result.candles,
        "symbols": result.symbols,
        "events": result.events,
        "journal": journal,
        "wall_s": round(result.wall_s, 3),
        "metrics": metrics.as_dict(),
        "open_positions": result.open_positions,
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
            }
            for t in result.trades
        ],
        "equity": {"ts_ms": result.equity_ts.tolist(), "equity": [round(x, 6) for x in result.equity.tolist()]},
    }


def trades_table(result: BacktestResult) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=f"trades ({len(result.trades)})", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name, justify in (
        ("opened UTC", "left"), ("held", "right"), ("symbol", "left"), ("qty", "right"), ("entry", "right"),
        ("exit", "right"), ("pnl", "right"), ("%", "right"), ("exit", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("trace", no_wrap=True, min_width=16)
    rows = result.trades if len(result.trades) <= MAX_ROWS else result.trades[-MAX_ROWS:]
    for t in rows:
        colour = "green" if t.pnl > 0 else "red"
        table.add_row(
            iso(t.opened_ms, short=True), f"{(t.closed_ms - t.opened_ms) // 60_000}m", t.symbol, f"{t.quantity:.6g}",
            f"{t.entry_price:.6g}", f"{t.exit_price:.6g}", f"[{colour}]{t.pnl:+.2f}[/]", f"{t.return_pct:+.1f}",
            t.exit_reason, t.trace_id,
        )  # fmt: skip
    return table


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
        ("win rate", f"{metrics.win_rate:.1%}"),
        ("profit factor", f"{metrics.profit_factor:.2f}"),
        ("exposure", f"{metrics.exposure:.1%}"),
        ("trades", str(metrics.trades)),
        ("open at end", ", ".join(sorted(result.open_positions)) or "none"),
        ("replayed", f"{result.candles:,} candles, {result.symbols} pairs, {result.cycles:,} cycles in {result.wall_s:.2f} s"),
    )
    for k, v in rows:
        table.add_row(k, v)
    return table


def equity_chart(result: BacktestResult, width: int = 100, height: int = 18) -> str:
    """The equity curve as terminal text (downsampled to at most `4 * width` points)."""
    import plotext as plt

    n = len(result.equity)
    step = max(1, n // (4 * width))
    xs = [i / 60.0 for i in range(0, n, step)]
    ys = result.equity[::step].tolist()
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.title("equity")
    plt.xlabel("hours")
    if ys:
        plt.plot(xs, ys, marker="braille")
    out: str = plt.build()
    return out
