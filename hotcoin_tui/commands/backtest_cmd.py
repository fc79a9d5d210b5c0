"""`hotcoin collect`, `hotcoin backtest` and `hotcoin optimize`: history in, decisions out.

Thin commands: options in, one call into `engine.backtest`, output out. Imports stay inside
the commands so `hotcoin --help` stays fast. Exit codes: 0 done; 2 a problem the user can fix
(bad path, empty window, unknown symbol), with the fix in the message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hotcoin_tui.commands.options import ConfigOpt, JsonOpt, is_calendar_ms, journal_file

if TYPE_CHECKING:
    from engine.backtest.collect import CollectReport
    from engine.backtest.optimize import SearchInterrupted
    from engine.config import HotcoinConfig
    from ml.runtime import ScorerLoad

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Directory of {BASE}_{QUOTE}-1m.parquet candles (default: backtest.data_dir).")
]
FromOpt = Annotated[str | None, typer.Option("--from", help="Start: ISO time (UTC if no zone) or epoch ms.")]
ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        help="End, the last minute replayed: ISO time (UTC if no zone) or epoch ms. A date alone is its 00:00: "
        "--to 2021-04-12 for the whole of the 11th.",
    ),
]
TimeframeOpt = Annotated[
    str | None,
    typer.Option("--timeframe", help="Candle files to use (default: backtest.timeframe; the replay is minute-grained: 1m)."),
]


def register(app: typer.Typer) -> None:
    app.command("collect")(collect)
    app.command("backtest")(backtest)
    app.command("optimize")(optimize)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A problem the user can fix: one line on stderr, exit 2, no traceback."""
    from engine.errors import HotcoinError

    try:
        yield
    except HotcoinError as exc:
        typer.secho(f"hotcoin: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def parse_time(value: str | None, what: str) -> int | None:
    """`2021-04-16`, `2021-04-16T13:00`, `...+02:00` or epoch ms -> epoch ms (naive = UTC),
    between 1970 and 9999 (`is_calendar_ms`): a larger epoch was an OSError (errno 75) from
    the C library deep in the replay."""
    from engine.errors import ConfigError

    if value is None:
        return None
    if value.isdigit():
        ms = int(value)
    else:
        try:
            t = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"{what} {value!r} is not a time; use e.g. 2021-04-16T13:00 (UTC) or epoch ms") from exc
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        ms = int(t.timestamp() * 1000)
    if not is_calendar_ms(ms):
        raise ConfigError(f"{what} {value!r} is not a time between 1970 and 9999; use e.g. 2021-04-16T13:00 (UTC) or epoch ms")
    return ms


def _config(config: Path | None, overrides: dict[str, Any]) -> HotcoinConfig:
    from engine.config import load_config

    return load_config(config, cli=overrides).config


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line, as config overrides: an option left out keeps
    the config file's value (a `--timeframe` defaulting to "1m" overrode backtest.timeframe)."""
    return {key: value for key, value in options.items() if value is not None}


def _toml(path: Path | None) -> dict[str, Any]:
    """The config file's own settings (what `optimize` writes back, with the trading settings the
    environment set and the best parameters), read as the loader reads it (a byte-order mark
    and all): a `tomllib` of its own refused, after the search, a file the loader had taken."""
    from engine.config.loader import read_toml

    return {} if path is None else read_toml(path, what="config file")


def _data_dir(data: Path | None, cfg: HotcoinConfig) -> Path:
    from engine.errors import ConfigError

    found = data or cfg.backtest.data_dir
    if found is None:
        raise ConfigError("no candle directory: pass --data DIR or set backtest.data_dir")
    return found


def backtest(
    data: DataOpt = None,
    timeframe: TimeframeOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    journal: Annotated[
        Path | None, typer.Option(
            "--journal", "-j", callback=journal_file, help="Journal the decisions into this new file (`hotcoin replay` reads it); default: off."
        )
    ] = None,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Draw the equity curve.")] = True,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show the replay's progress on stderr: a bar on a terminal, plain lines elsewhere (default: when stderr "
            "is a terminal).",
        ),
    ] = None,
) -> None:
    """Replay candles through discovery, signals, risk, execution and exits on a virtual clock."""
    import asyncio

    try:
        with _user_errors():
            with loading_uncollected():
                single_threaded_blas()
                from engine.backtest.api import replay_progress, run_backtest
                from ml.runtime import load_scorer

                cfg = _config(config, _given({"backtest.timeframe": timeframe}))
                model = load_scorer(cfg)  # the same model, in the same mode, that `hotcoin run` would trade with
            _say_model(model)
            window = _data_dir(data, cfg), parse_time(start, "--from"), parse_time(end, "--to")
            show = sys.stderr.isatty() if progress is None else progress  # a month of 1m history takes a minute or more
            with replay_progress() if show else contextlib.nullcontext() as bar:
                result, metrics = asyncio.run(run_backtest(cfg, *window, journal, model=model, progress=bar))
    finally:
        gc.unfreeze()  # what `loading_uncollected` froze: a process that goes on (a test's) collects it again
    from engine.backtest import report

    if as_json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps(report.as_json(result, metrics, None if journal is None else str(journal))))
        sys.stdout.write("\n")
        return
    from rich.console import Console

    console = Console()
    console.print(report.trades_table(result, width=console.width))
    if chart and len(result.equity) > 1:
        from rich.text import Text

        chart_text = Text.from_ansi(report.equity_chart(result, width=min(120, console.width - 1)))
        console.print(chart_text, no_wrap=True, crop=True)
    console.print(report.metrics_table(result, metrics))
    if result.open_positions:
        console.print(report.open_table(result, width=console.width))
    if result.trades:
        console.print(report.exits_table(result, width=console.width))
    if result.adjusted:  # a setting a line: one cut in the middle reads as another value
        console.print("\n  ".join(("fitted to the minute replay (docs/backtest.md):", *result.adjusted)), style="dim", highlight=False)
    for warning in result.warnings:
        console.print(warning, style="yellow", highlight=False)
    if journal is not None:
        console.print(f"journal {journal}: explain a trade with `hotcoin replay <trace> --journal {journal}`")


@contextlib.contextmanager
def loading_uncollected() -> Iterator[None]:
    """No cyclic collection while a command loads its code, config and model, and what it loaded
    frozen out of the collector's walks afterwards (`gc.freeze`), as the replay freezes its heap
    (`replay_gc`); the collector as it was otherwise. What is made then (modules, classes,
    functions, the config) lives as long as the process, so every collection walks it and frees
    nothing: a backtest's start ran ~140 of them over its ~0.35 s of imports, ~30-45 ms in all
    (timed with `gc.callbacks`). Merely deferred, the first collection after it walked all of
    it at once (~30 ms). The caller unfreezes (`gc.unfreeze`) when its command ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def single_threaded_blas() -> None:
    """Load numpy with OpenBLAS on one thread (`OPENBLAS_NUM_THREADS`, read once, as the library
    loads), unless numpy is loaded already or the user set it: starting its pool of one thread
    per core cost ~25-45 ms of a backtest's start on a busy 2-core machine (numpy's import
    ~55 ms instead of ~80-120), and the replay has no product big enough for a second thread.
    Its only ones (the 0/1 counts in `engine.discovery.heat` and `anomaly`) are exact in any
    order. The variable is removed again: processes the command starts keep the user's setting."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


def _say_model(model: ScorerLoad) -> None:
    """The model status on stderr, always: a refused or unreadable model (red) leaves the
    replay on rules alone, which must not look like a run with the model; warnings in yellow."""
    color = typer.colors.RED if model.failed else None
    typer.secho(f"model: {model.status}", fg=color, err=True)
    for note in model.warnings:
        typer.secho(f"model: {note}", fg=typer.colors.YELLOW, err=True)


def collect(
    out: Annotated[Path, typer.Option("--out", "-o", help="Store directory (created if missing).")],
    symbols: Annotated[
        str | None, typer.Option("--symbols", help="Comma-separated pairs: DOGE/USDT or DOGEUSDT; default: the biggest movers.")
    ] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, help="Days of history (default: backtest.collect_days).")] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top", min=1,
            help="How many movers: the pairs with the widest range (high / low) over the last --days x 24 h, rolling "
            "(default: backtest.collect_top).",
        ),
    ] = None,
    timeframe: TimeframeOpt = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="A Binance-compatible host, e.g. http://127.0.0.1:8765 (the sim exchange).")
    ] = None,
    config: ConfigOpt = None,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Show each symbol's progress on stderr: a bar on a terminal, plain lines elsewhere (a log, a pipe).",
        ),
    ] = True,
) -> None:
    """Download candles (resumable, rate-limit aware) into the history store."""
    import asyncio

    from engine.backtest.api import run_collect
    from engine.backtest.collect import CollectReport

    wanted = None if symbols is None else [s.strip().upper() for s in symbols.split(",") if s.strip()]
    if wanted == []:  # an empty list is a slip, not a request for the biggest movers
        raise typer.BadParameter(
            f"{symbols!r} names no pair; give e.g. DOGE/USDT,BTC/USDT, or leave --symbols out for the biggest movers",
            param_hint="'--symbols'",
        )
    _check_store_dir(out)
    report = CollectReport([])
    tf = timeframe or "1m"
    try:
        with _user_errors(), _stop_signals_as_sigint() as caught:
            cfg = _config(config, _given({"exchange.endpoint": endpoint, "backtest.timeframe": timeframe}))
            tf = cfg.backtest.timeframe
            asyncio.run(run_collect(cfg, out, wanted, tf, days, top, progress, report))
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) takes no summary: what is kept is kept
            _say_stopped(out, report, tf, "interrupted")
        raise typer.Exit(128 + (caught[0] if caught else signal.SIGINT)) from None
    except typer.Exit:
        _say_stopped(out, report, tf, "stopped")
        raise
    typer.echo(
        f"collected {report.total:,} candles for {len(report.symbols)} symbol(s) into {out} "
        f"({report.requests} requests, {report.rate_limited} rate-limited, {report.failed} failed and retried, "
        f"waited {report.waited_s:.1f} s)"
    )


def _say_stopped(out: Path, report: CollectReport, timeframe: str, how: str) -> None:
    """After a collect that did not finish: what is stored per symbol and that re-running
    resumes (a Ctrl-C printed nothing; giving up after the retries printed only the error)."""
    from engine.backtest.api import stored_lines

    if not report.symbols:  # stopped before any download (a refusal): the error says it all
        return
    typer.secho(f"collect {how}; {out} keeps what was stored:", err=True)
    for line in stored_lines(out, report, timeframe):
        typer.secho(line, err=True)
    typer.secho("re-run the same command to resume: it downloads only what is missing", err=True)


def optimize(
    data: DataOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    config: ConfigOpt = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="Trials per fold (default: backtest.optimize_trials).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, help="Parallel processes (default: backtest.optimize_jobs).")] = None,
    folds: Annotated[int | None, typer.Option("--folds", min=1, help="Walk-forward folds (default: backtest.optimize_folds).")] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="optuna storage URL shared by machines, e.g. sqlite:///study.db.")
    ] = None,
    study: Annotated[str, typer.Option("--study", help="Study name prefix (one study per fold).")] = "hotcoin",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the best config is written (TOML).")] = Path("best.toml"),
    seed: Annotated[int, typer.Option("--seed", help="Sampler seed (with --storage, mixed with a random number per process).")] = 7,
    as_json: JsonOpt = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show each fold's trials on stderr (default: when stderr is a terminal)."),
    ] = None,
) -> None:
    """Search take-profit tiers, holding time, heat threshold and more, walk-forward, with optuna."""
    import sys

    from engine.backtest import optimize as opt
    from engine.backtest.api import RichOptimizeProgress
    from engine.errors import HotcoinError
    from ml.runtime import load_scorer

    with _user_errors():
        from engine.config import load_config

        loaded = load_config(config)
        cfg = loaded.config
        bt = cfg.backtest
        plan = opt.OptimizePlan(
            data_dir=_data_dir(data, cfg),
            start_ms=parse_time(start, "--from"),
            end_ms=parse_time(end, "--to"),
            trials=trials or bt.optimize_trials,
            jobs=jobs or bt.optimize_jobs,
            folds=folds or bt.optimize_folds,
            oos_fraction=bt.optimize_oos_fraction,
            storage=storage,
            study=study,
            seed=seed,
        )
        _check_writable(out)
        base = _toml(loaded.config_file)  # read now: nothing that can fail is left for after the search
        model = load_scorer(cfg)  # every trial trades with the model `hotcoin backtest` of best.toml would load
        _say_model(model)
        show = sys.stderr.isatty() if progress is None else progress  # a search runs for many minutes
        with _signals_as_ctrl_c() as caught:
            try:
                with RichOptimizeProgress() if show else contextlib.nullcontext() as bar:
                    result = opt.walk_forward(cfg, plan, progress=bar, model=model, stopped=lambda: bool(caught))
            except opt.SearchInterrupted as stop:
                _say_interrupted(stop, out, as_json)
                raise typer.Exit(128 + (caught[0] if caught else signal.SIGINT)) from None
        try:
            opt.write_best(result, out, base, opt.environment_settings(cfg, loaded.sources))
            failed = None
        except (OSError, HotcoinError) as exc:  # the search is done: its results are printed all the same
            failed = exc
    if as_json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps(opt.as_json(result, out)))
        sys.stdout.write("\n")
    else:
        from rich.console import Console

        Console().print(opt.folds_table(result))
        if failed is None:
            typer.echo(f"best parameters written to {out}")
        if result.warning is not None:
            typer.secho(f"warning: {result.warning}", fg=typer.colors.YELLOW)
    if failed is not None:
        why = failed.strerror if isinstance(failed, OSError) else str(failed)
        typer.secho(
            f"hotcoin: cannot write {out} ({why}); the best parameters are printed above: "
            "copy them into your config, or rerun with --out in a folder you can write",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)


@contextlib.contextmanager
def _signals_as_ctrl_c() -> Iterator[list[int]]:
    """SIGTERM (`kill`, a service stop) and SIGHUP (an SSH session that closed) raise as Ctrl-C
    while the search runs, and the signals caught, Ctrl-C's too, are listed: for the exit
    status (128 + the signal), and for the search to stop at its next round where Python
    dropped the KeyboardInterrupt (raised inside a garbage collector's callback, it is only
    printed). Left to their default, SIGTERM and SIGHUP ended the parent at once: its worker
    processes ran on for good, the trials it had asked stayed RUNNING in --storage, and its
    temporary study folder stayed behind."""
    caught: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        caught.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _stop_signals_as_sigint() -> Iterator[list[int]]:
    """SIGTERM (`kill`, a service stop) and SIGHUP (an SSH session that closed) stop an asyncio
    command as Ctrl-C does, and the ones caught are listed, for the exit status (128 + the
    signal). Left to their default they ended `hotcoin collect` at once, silently (exit -15 or
    -1), losing the candles downloaded but not written yet.

    Each is turned into a SIGINT rather than raising KeyboardInterrupt where it lands (as
    `_signals_as_ctrl_c` does for the search, which runs no event loop): `asyncio.run` answers
    a first SIGINT by cancelling its task, which stops at its next `await`, so a store write
    under way (synchronous) is never torn and the download's `finally` writes what it holds;
    a second signal is a second Ctrl-C and stops at once."""
    caught: list[int] = []

    def as_sigint(signum: int, frame: object) -> None:
        caught.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, as_sigint) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say_interrupted(stop: SearchInterrupted, out: Path, as_json: bool) -> None:
    """An interrupted search's finished folds (their table, as a whole search prints it, unless
    --json: a partial document is not the search's) and what is kept (`interrupted_lines`). A
    closed terminal (SIGHUP) cannot be written to: the search was stopped cleanly all the same."""
    from engine.backtest import optimize as opt

    with contextlib.suppress(OSError):
        if stop.result.folds and not as_json:
            from rich.console import Console

            Console().print(opt.folds_table(stop.result))
        for line in opt.interrupted_lines(stop, out):
            typer.secho(f"hotcoin: {line}", fg=typer.colors.YELLOW, err=True)


def _check_store_dir(out: Path) -> None:
    """Refuse a `collect --out` that is not a folder it can write before downloading rather
    than after (a file there crashed the first write). Nothing is made here: the store makes
    its folder as the collect starts (`HistoryStore.lock`), so a collect refused for its
    config or its endpoint leaves no empty folder behind."""
    from engine.config.locations import folder_problem

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(
            f"{out} is a file; --out takes the store folder (e.g. {out.parent / 'candles'})", param_hint="'--out'"
        )
    problem = folder_problem(out)
    if problem is not None:
        raise typer.BadParameter(f"{out} {problem}; pick a folder you can write", param_hint="'--out'")


def _check_writable(out: Path) -> None:
    """Refuse an `--out` that cannot be written before a search of many minutes rather than after
    it; its folder is made, as `journal export --out` and `--journal` do."""
    import os

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {out} ({exc.strerror}); pick a file in a folder you can write", param_hint="'--out'"
        ) from exc
    if out.is_dir() or not os.access(out if out.exists() else out.parent, os.W_OK):
        raise typer.BadParameter(
            f"cannot write {out} (a folder, or not writable); pick a file in a folder you can write", param_hint="'--out'"
        )
