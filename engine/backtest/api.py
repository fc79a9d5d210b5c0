"""One call per command: build the pieces from config, run, hand back the result.

Kept apart from the commands so tests and benchmarks call exactly what `hotcoin backtest`
and `hotcoin collect` run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from engine.backtest.collect import Collector, CollectPlan, CollectReport, Progress
from engine.backtest.history import HistoryStore
from engine.backtest.runner import (
    MINUTE_MS,
    BacktestResult,
    BacktestRunner,
    ReplayProgress,
    utc_minute,
)
from engine.config import HotcoinConfig
from engine.signals.scorer import ModelLoad

if TYPE_CHECKING:
    from rich.progress import TaskID

    from engine.backtest.metrics import Metrics
    from engine.backtest.optimize import OptimizeProgress
    from engine.config.sections.exchange import ExchangeSection
    from engine.market.backoff import Clock
    from engine.market.ccxt_gateway import CcxtGateway


async def run_backtest(
    config: HotcoinConfig,
    data_dir: Path,
    start_ms: int | None = None,
    end_ms: int | None = None,
    journal_path: Path | None = None,
    *,
    run_id: str | None = None,
    model: ModelLoad | None = None,
    progress: Callable[[ReplayProgress], None] | None = None,
) -> tuple[BacktestResult, Metrics]:
    """A backtest, journaled to `journal_path` when given (flushed before returning), with the
    market's buy-and-hold figures beside it (`BacktestResult.market`)."""
    if journal_path is None:
        with replay_gc():
            runner = BacktestRunner(config, data_dir, run_id=run_id, model=model)
            result = await runner.run(start_ms, end_ms, progress=progress, benchmark=True)
    else:
        from engine.config.locations import make_folder
        from engine.journal.lock import journal_lock
        from engine.journal.writer import Journal

        make_folder(journal_path.parent, "the journal's folder", "point --journal at a file in a folder you can write in")
        with journal_lock(journal_path):  # a backtest into a running engine's journal would collide its seqs
            refuse_used_journal(journal_path)
            async with Journal.open(journal_path, config.journal, scratch=True) as journal:  # its own new file
                with replay_gc():
                    runner = BacktestRunner(config, data_dir, journal, run_id=run_id, model=model)
                    result = await runner.run(start_ms, end_ms, progress=progress, benchmark=True)
    return result, metrics_of(result)


# The replay's gen-0 threshold while it runs (`replay_gc`), the live engine's
# (`engine.runtime.headless.GC_THRESHOLD`): its minutes allocate many short-lived objects and
# few cycles, and the default 700 ran a collection every ~140 replayed minutes in each process.
REPLAY_GC_THRESHOLD = (50_000, 20, 100)


@contextlib.contextmanager
def replay_gc() -> Iterator[None]:
    """While a backtest runs: what is alive at its start (code, config, the index) frozen out
    of the collector's walks, and collections rarer (`REPLAY_GC_THRESHOLD`); both as before
    afterwards. The discovery process forks with them. Collections took ~0.1 s of each
    process's ~3.5 s CPU on the shared month (timed with `gc.callbacks`), nearly all of it
    walking objects that live for the whole run; now ~5 ms. Nothing is collected first (a full
    collection of the imported heap costs more than it saves): garbage frozen with the rest is
    unfrozen when the backtest ends, for the collector to find."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*REPLAY_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def refuse_used_journal(path: Path) -> None:
    """A backtest journals into a new file, never beside other events. Appended to an engine's
    journal, its replayed trades were booked as the engine's cash and positions at the next
    restart (and listed among its traces); appended to another backtest's, two runs over their
    own windows interleave in time and may share trace ids (`make_trace_id` is derived from
    the run id). So any journal holding events is refused, whoever wrote them."""
    from engine.errors import JournalError
    from engine.journal.files import list_archives
    from engine.journal.reader import JournalReader

    used = bool(list_archives(path))
    if not used and path.is_file() and path.stat().st_size > 0:
        with JournalReader(path) as reader:
            used = reader.last_ts_ms() is not None
    if used:
        raise JournalError(
            f"journal {path} already holds events: a backtest journals into a file of its own (in an engine's "
            "journal its trades would be booked as the engine's money at its next restart, and beside another "
            "backtest the two runs' traces mix); give --journal a path that does not exist yet"
        )


def metrics_of(result: BacktestResult) -> Metrics:
    # imported once the replay is done: nothing before the discovery process forks needs it
    from engine.backtest.metrics import compute

    return compute(result.initial_equity, result.equity, result.exposure, [t.pnl for t in result.trades], MINUTE_MS)


class LogProgress(Progress):
    """Without the bar (`--no-progress`, a cron job's log), each wait still gets a line on
    stderr: how long and why. A silent pause of minutes is indistinguishable from a hang."""

    def waiting(self, seconds: float, reason: str) -> None:
        print(f"collect: waiting {seconds:.1f} s: {reason}", file=sys.stderr, flush=True)


class LogCollectProgress(LogProgress):
    """Collect's progress as plain lines on stderr, where rich's bar would draw nothing until
    the end (a `--progress` into a log file, a pipe, a cron job): a line when a symbol starts,
    one each time it passes another tenth of its candles, one when it is done, and each wait
    (`LogProgress`). The replay's `LogReplayProgress` does the same for `backtest`."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def __enter__(self) -> LogCollectProgress:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def start(self, symbol: str, total: int) -> None:
        self.total[symbol], self.done[symbol] = total, 0
        print(f"collect {symbol}: {total:,} candles to download", file=sys.stderr, flush=True)

    def advance(self, symbol: str, n: int) -> None:
        total, before = self.total[symbol], self.done[symbol]
        done = self.done[symbol] = before + n
        if done < total and 10 * done // total > 10 * before // total:  # another tenth; the end has its own line
            print(f"collect {symbol}: {done:,} of {total:,} candles ({done / total:.0%})", file=sys.stderr, flush=True)

    def finish(self, symbol: str) -> None:
        print(f"collect {symbol}: done, {self.done[symbol]:,} candles", file=sys.stderr, flush=True)


class RichProgress(Progress):
    """A rich progress bar on stderr: one task per symbol, a line for each wait and its reason."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True),
        )  # fmt: skip
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.stop()

    def start(self, symbol: str, total: int) -> None:
        self.tasks[symbol] = self.bar.add_task(symbol, total=total)

    def advance(self, symbol: str, n: int) -> None:
        self.bar.advance(self.tasks[symbol], n)

    def finish(self, symbol: str) -> None:
        """The bar's total becomes what was done, so it ends at 100 %: the estimate counts
        every minute of the window, a pair listed inside it (or an exchange gap) has fewer."""
        task = self.tasks[symbol]
        done = next(t.completed for t in self.bar.tasks if t.id == task)
        self.bar.update(task, total=done)

    def waiting(self, seconds: float, reason: str) -> None:
        self.bar.console.print(f"waiting {seconds:.1f} s: {reason}")


def collect_progress() -> RichProgress | LogCollectProgress:
    """Collect's progress on stderr: the bar where stderr is an interactive terminal (as rich
    tells it, `replay_progress`), plain lines elsewhere: the bar drew nothing into a log until
    the run ended."""
    from rich.console import Console

    return RichProgress() if Console(stderr=True).is_interactive else LogCollectProgress()


class RichReplayProgress:
    """The replay's progress bar, on stderr (stdout stays the report, or clean JSON with
    `--json`): the replayed time, share done, elapsed and remaining wall time, trades so far.
    Transient: it leaves the screen when the report is printed."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[trades]} trades"),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self.task = self.bar.add_task("loading candles, warming up", total=1.0, trades=0)

    def __enter__(self) -> RichReplayProgress:
        self.bar.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.stop()

    def __call__(self, p: ReplayProgress) -> None:
        self.bar.update(self.task, completed=p.fraction, description=f"replay {utc_minute(p.now_ms)}", trades=p.trades)


class LogReplayProgress:
    """The replay's progress as plain lines on stderr, where rich's bar would draw nothing: a
    `--progress` into a log file or a pipe (a transient bar on a console that is no terminal
    is silent, and a forced progress that prints nothing reads as a hang). A line at the start
    and at each progress report (`PROGRESS_EVERY` replayed minutes); stdout is left alone."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __enter__(self) -> LogReplayProgress:
        print("replay: loading candles, warming up", file=sys.stderr, flush=True)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def __call__(self, p: ReplayProgress) -> None:
        print(
            f"replay {utc_minute(p.now_ms)}: {p.fraction:.0%} done, {p.trades} trades, {time.monotonic() - self.t0:.0f} s",
            file=sys.stderr, flush=True,
        )  # fmt: skip


def replay_progress() -> RichReplayProgress | LogReplayProgress:
    """The replay's progress on stderr: the bar where stderr is an interactive terminal (as rich
    tells it: TTY_COMPATIBLE, TTY_INTERACTIVE and FORCE_COLOR count), plain lines elsewhere."""
    from rich.console import Console

    return RichReplayProgress() if Console(stderr=True).is_interactive else LogReplayProgress()


class RichOptimizeProgress:
    """The search's progress on stderr, one bar per fold: trials finished of those asked, the
    best in-sample return so far, elapsed and remaining time; then the fold's out-of-sample
    backtest. Transient, like the replay's: the folds table replaces it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("trials"),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[best]}"),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self.tasks: dict[int, TaskID] = {}

    def __enter__(self) -> RichOptimizeProgress:
        self.bar.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.stop()

    def __call__(self, p: OptimizeProgress) -> None:
        task = self.tasks.get(p.fold)
        if task is None:
            task = self.tasks[p.fold] = self.bar.add_task("", total=p.trials, best="")
        stage = "out-of-sample backtest" if p.out_of_sample else "in sample"
        best = "" if p.best is None else f"best in sample {p.best:+.2%}"
        self.bar.update(task, completed=p.done, description=f"fold {p.fold}/{p.folds} {stage}", best=best)


def collect_gateway(section: ExchangeSection, clock: Clock | None = None) -> CcxtGateway:
    """The ccxt gateway `hotcoin collect` downloads through: its rate-limit silence is the
    server's Retry-After, not the live engine's 60 -> 480 s (`RateLimitBackoff.trust_retry_after`)."""
    from engine.market.backoff import RateLimitBackoff
    from engine.market.ccxt_gateway import CcxtGateway

    return CcxtGateway(section, clock=clock, rate_limit=RateLimitBackoff(trust_retry_after=True))


def stored_lines(out: Path, report: CollectReport, timeframe: str) -> list[str]:
    """What the store holds for each symbol of a collect run that stopped (Ctrl-C, a failure
    after the retries): its range and count, and how many this run added, so a stop says what
    is kept and that re-running resumes, instead of exiting silently or with the last error alone."""
    from engine.errors import MarketDataError
    from engine.timefmt import utc_second

    store = HistoryStore(out)
    lines = []
    for symbol in report.symbols:
        added = report.written.get(symbol, 0)
        try:
            series = store.read(symbol, timeframe) if store.path(symbol, timeframe).exists() else None
        except MarketDataError as exc:
            lines.append(f"  {symbol}: {exc}")
            continue
        held = "nothing" if series is None else (
            f"{len(series):,} candles, {utc_second(series.first_ms)} to {utc_second(series.last_ms)}"
        )  # fmt: skip
        lines.append(f"  {symbol}: {held} ({added:,} added by this run)")
    return lines


async def run_collect(
    config: HotcoinConfig,
    out: Path,
    symbols: list[str] | None,
    timeframe: str,
    days: int | None,
    top: int | None,
    progress: bool,
    report: CollectReport | None = None,
) -> CollectReport:
    """`hotcoin collect` through the ccxt gateway (`exchange.endpoint` picks the host). `report`,
    the caller's, is filled as the run goes: what it holds when the run stops (`stored_lines`)."""
    bt = config.backtest
    plan = CollectPlan(
        timeframe=timeframe,
        days=days or bt.collect_days,
        top=top or bt.collect_top,
        page=bt.collect_page,
        retries=bt.collect_retries,
        max_backoff_s=bt.collect_max_backoff_s,
        quote=config.exchange.quote_asset,
    )
    gateway = collect_gateway(config.exchange)
    try:
        bar = collect_progress() if progress else None
        collector = Collector(
            gateway, HistoryStore(out), plan, now_ms=lambda: time.time_ns() // 1_000_000, sleep=asyncio.sleep,
            progress=bar or LogProgress(), filters=config.discovery.filters, report=report,
        )  # fmt: skip
        if bar is None:
            return await collector.run(symbols)
        with bar:
            return await collector.run(symbols)
    finally:
        await gateway.close()
