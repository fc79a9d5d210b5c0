"""`hotcoin train`: train a model and register it with its contract and promotion decision.

Trainers are looked up in `TRAINERS` by task name; the torch tasks run on a GPU box
(`--gpu <profile>`), `hot_lgbm` (LightGBM, `ml.lgbm`) runs right here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer

from hotcoin_tui.commands.options import ConfigOpt

if TYPE_CHECKING:
    from ml.governance.promotion import PromotionDecision
    from ml.governance.registry import Registration


@dataclass(frozen=True)
class TrainOptions:
    task: str
    config: Path | None
    gpu: str | None
    data: Path | None
    interval: str
    epochs: int | None
    seed: int
    symbols: tuple[str, ...]
    stride: int | None = None
    hyper: Mapping[str, float | int] = field(default_factory=dict)  # GPU tasks: `--set key=value`


def _train_on_gpu(opts: TrainOptions) -> None:
    import asyncio

    from engine.config import load_config
    from engine.errors import ConfigError
    from gpu_jobs.features import hot_feature_set
    from gpu_jobs.workflow import TrainRequest, train_on_gpu
    from hotcoin_tui.commands.jobs_cmd import JobView

    if not opts.gpu:
        raise ConfigError(f"task {opts.task} trains on a GPU box: pass --gpu <profile> (a [gpu.<profile>] table)")
    config = load_config(opts.config).config
    data = opts.data or config.paths.data_dir / "history"
    req = TrainRequest(
        task=opts.task,
        profile=opts.gpu,
        data_dir=data,
        interval=opts.interval,
        epochs=opts.epochs,
        seed=opts.seed,
        symbols=opts.symbols,
        hyper=opts.hyper,
    )
    view = JobView()
    try:
        with view:
            registration = asyncio.run(
                train_on_gpu(config, req, hot_feature_set(config.trading.signals.listing_min_bars), on_event=view.on_event)
            )
    except KeyboardInterrupt:
        # Ctrl-C stops this command, not the trainer: it runs detached on the box (on GPU time)
        # and a silent exit would leave the owner thinking it stopped too.
        note = view.interrupted_note(opts.gpu)
        if note is None:
            raise
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    say_torch_registration(registration)


def say_torch_registration(registration: Registration) -> None:
    """What a torch model's registration means, for `hotcoin train --gpu` and `hotcoin jobs
    fetch` alike: the version and its gates, whether it is new, and what the model is good for.

    The engine's signal path loads only `ml.runtime.TASK` (hot_lgbm): a torch model that passes
    every gate is registered as production, but nothing trades on it, and a green
    "(production)" read as if `hotcoin run` would."""
    from ml.runtime import TASK as ENGINE_TASK

    version = registration.version
    verdict = version.decision.verdict
    what = "registered" if registration.added else "identical model already registered as"
    typer.secho(f"{what} {version.name} ({verdict}) in {version.path}", fg=typer.colors.YELLOW)
    if registration.repaired is not None:
        say_repaired(version.name, registration.repaired)
    for gate in version.decision.gates:
        typer.echo(f"  {'pass' if gate.passed else 'FAIL'}  {gate.name}: {gate.reason}")
    typer.secho(
        f"  the engine does not load {version.task} models (`hotcoin run` and `hotcoin backtest` score with "
        f"{ENGINE_TASK} only): {_torch_use(version.task)}, and no trade depends on it",
        fg=typer.colors.YELLOW,
    )
    if not registration.added and registration.decision.verdict != verdict:
        _say_decisions_differ(registration.decision, verdict)


def say_repaired(name: str, repaired: str) -> None:
    """Registering a model already on record repairs its version when that was damaged (see
    `ModelRegistry.add`): say so, or "already registered" reads as if the damage were still there."""
    typer.secho(f"repaired {name}: {repaired}", fg=typer.colors.YELLOW)


def _torch_use(task: str) -> str:
    """What the owner can do with a registered torch model: score it offline where
    `gpu_jobs.inference` can (it refuses the others), otherwise read what training measured."""
    from gpu_jobs.inference import SCORABLE

    if task in SCORABLE:
        return "this one is for research, scored offline with gpu_jobs.inference.load_scorer"
    return (
        f"nothing in hotcoin runs a {task} model (gpu_jobs.inference scores {' and '.join(sorted(SCORABLE))} only); "
        "this one is a research record, its out-of-sample lift per fold in metrics.json beside it"
    )


class LgbmProgressView:
    """A rich progress bar per training stage (loading, each walk-forward fold, the final model)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.current: int | None = None

    def __enter__(self) -> LgbmProgressView:
        self.bar.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.stop()

    def stage(self, name: str, total: int) -> None:
        self.current = self.bar.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self.current is not None:
            self.bar.advance(self.current, n)  # type: ignore[arg-type]


@contextlib.contextmanager
def _artefacts_lock(out_dir: Path) -> Iterator[None]:
    """Hold `<out_dir>.lock` for one training run. Two runs at once would write their dataset,
    model and contract over each other in the one artefact folder, and the registry would then
    refuse a model whose sha256 no longer matches its contract. `flock`: released by the kernel
    when the run ends however it ends, so a killed run never blocks the next one."""
    import fcntl

    from engine.errors import HotcoinError

    lock = out_dir.with_name(out_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HotcoinError(
                f"another training run is using {out_dir}; wait for it to finish, then run this command again"
            ) from None
        yield


def _train_lgbm(opts: TrainOptions) -> None:
    """LightGBM on the hot-coin dataset, here and now (no GPU box): walk-forward report, then
    the model registered with its runtime contract and promotion decision."""
    import dataclasses
    import time

    from engine.config import load_config
    from engine.errors import ConfigError
    from ml.governance.registry import ModelRegistry
    from ml.lgbm import TASK, LgbmParams, TrainRequest, TrainSettings, train_and_register
    from ml.runtime import registry_root

    if opts.gpu:
        raise ConfigError(f"task {opts.task} trains here with LightGBM; drop --gpu")
    config = load_config(opts.config).config
    defaults = TrainSettings()
    settings = TrainSettings(
        stride=opts.stride or defaults.stride,
        params=dataclasses.replace(LgbmParams(), rounds=opts.epochs or LgbmParams().rounds, seed=opts.seed),
    )
    req = TrainRequest(
        data_dir=opts.data or config.paths.data_dir / "history",
        out_dir=config.paths.data_dir / "training" / f"{TASK}_{opts.interval}",
        interval=opts.interval,
        symbols=opts.symbols,
        settings=settings,
    )
    with _artefacts_lock(req.out_dir), LgbmProgressView() as view:
        out = train_and_register(config, ModelRegistry(registry_root(config)), req, now_ms=int(time.time() * 1000), progress=view)
    typer.echo(f"walk-forward, {settings.folds} folds, every {settings.stride}th bar; baseline = rise from the 60-bar low")
    typer.echo(f"{'fold':>4} {'test rows':>9} {'AUC':>6} {'base AUC':>8} {'prec@10%':>8} {'base':>6} {'lift':>6}")
    for f in out.report.folds:
        typer.echo(
            f"{f.index + 1:>4} {f.test_rows:>9} {f.auc:>6.3f} {f.baseline_auc:>8.3f} {f.precision:>8.3f} "
            f"{f.baseline_precision:>6.3f} {f.lift:>6.3f}"
        )
    verdict = out.version.decision.verdict
    what = "identical model already registered as" if out.reused else "registered"
    typer.secho(
        f"{what} {out.version.name} ({verdict}) in {out.version.path}; dataset and artefacts in {out.out_dir}",
        fg=typer.colors.GREEN if verdict == "production" else typer.colors.YELLOW,
    )
    if out.repaired is not None:
        say_repaired(out.version.name, out.repaired)
    for gate in out.version.decision.gates:
        typer.echo(f"  {'pass' if gate.passed else 'FAIL'}  {gate.name}: {gate.reason}")
    calibration = out.version.contract.score_calibration
    if calibration is not None:
        typer.echo(
            f"  entry threshold (trading.signals.ml_min_score = \"auto\"): {calibration.min_score:.4g}, the top "
            f"{calibration.top_fraction:.0%} of {calibration.oos_samples} out-of-sample scores (highest {calibration.oos_max:.4g})"
        )
    if out.reused and out.decision.verdict != verdict:
        _say_decisions_differ(out.decision, verdict)


def _say_decisions_differ(decision: PromotionDecision, registered: str) -> None:
    """The registry keeps the first decision for a model file; when today's gates judge the same
    model otherwise, say which one stands, or the gate lines above read as today's verdict."""
    from ml.runtime import TASK as ENGINE_TASK

    failed = "; ".join(g.reason for g in decision.gates if not g.passed) or "every gate passed"
    typer.secho(
        f"note: under the current [ml.gates] this model is {decision.verdict} ({failed}), but the identical model "
        f"was registered as {registered} and that decision stays on record",
        fg=typer.colors.YELLOW,
    )
    if decision.verdict == "research_only":
        if decision.task == ENGINE_TASK:  # a torch model's note says the engine never loads it
            typer.echo("  the engine judges production models by the current gates when it loads them: it runs this one in shadow")
    else:
        typer.echo("  a registered decision is never upgraded: retrain (e.g. another --seed) to register a new version")


TRAINERS: dict[str, Callable[[TrainOptions], None]] = {
    "lstm_hot": _train_on_gpu,
    "tft_heat": _train_on_gpu,
    "ppo_sizing": _train_on_gpu,
    "hot_lgbm": _train_lgbm,
}


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    task: Annotated[str, typer.Option("--task", help=f"What to train: {', '.join(TRAINERS)}.")],
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU profile (a gpu.<profile> table in config) to train on.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Folder of {BASE}_{QUOTE}-{interval}.parquet candles, the regime pair's (trading.signals.regime_symbol, BTC/USDT) among them (default <data_dir>/history).",
        ),
    ] = None,
    interval: Annotated[str, typer.Option("--interval", help="Candle interval: 1m, 5m, ...")] = "1m",
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Epochs (PPO: iterations, hot_lgbm: boosting rounds); default per task.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed + data + code = same job id.")] = 0,
    symbols: Annotated[str | None, typer.Option("--symbols", help="Comma-separated pairs, e.g. DOGE/USDT,WIN/USDT (default all).")] = None,
    stride: Annotated[
        int | None, typer.Option("--stride", min=1, help="hot_lgbm: train and judge on every Nth bar (default 5).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="GPU tasks: override a hyper-parameter, e.g. --set batch_size=256 (repeatable; a new job id). A wrong key lists the task's keys.",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Train a model (torch tasks on a GPU box over SSH, hot_lgbm here) and register it with its runtime contract and promotion decision. Re-running the same command resumes an interrupted job."""  # one line: the help keeps line breaks
    from engine.errors import ConfigError
    from gpu_jobs.datasets import DatasetError
    from gpu_jobs.errors import TrainingDataError
    from gpu_jobs.spec import SpecError

    runner = TRAINERS.get(task)
    if runner is None:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(TRAINERS)}")
    chosen = _chosen_symbols(symbols)
    hyper = _hyper(task, overrides or [], epochs)
    try:
        runner(TrainOptions(task, config, gpu, data, interval, epochs, seed, chosen, stride, hyper))
    except DatasetError as exc:  # its message says what to fix; a one-line error, not a traceback
        raise TrainingDataError(str(exc)) from exc
    except SpecError as exc:  # a --set value the job spec refuses (test_fraction=2): named, one line
        raise ConfigError(str(exc)) from exc


def _chosen_symbols(symbols: str | None) -> tuple[str, ...]:
    """`--symbols` as pairs; () (every symbol) only when it is left out. Given but naming no
    pair (`--symbols ""`, `--symbols "$S"` with S unset) it trained on every symbol without a
    word, where `collect` and `traces` refuse it: a slip, not a request for all of them."""
    if symbols is None:
        return ()
    chosen = tuple(s.strip() for s in symbols.split(",") if s.strip())
    if not chosen:
        raise typer.BadParameter(
            f"{symbols!r} names no pair; give e.g. DOGE/USDT,WIN/USDT, or leave --symbols out to train on every symbol",
            param_hint="'--symbols'",
        )
    return chosen


def _hyper(task: str, overrides: list[str], epochs: int | None) -> dict[str, float | int]:
    """`--set key=value` as the GPU task's hyper-parameter overrides, checked against the keys
    the task reads (`gpu_jobs.spec.TASK_DEFAULTS`) before any data is read. They go into the
    job spec, and so into the job id: a changed setting is a new job, never a resume of the
    old one's checkpoint."""
    from engine.errors import ConfigError
    from gpu_jobs.spec import TASK_DEFAULTS, SpecError, parse_overrides

    if not overrides:
        return {}
    if task not in TASK_DEFAULTS:
        raise ConfigError(
            f"--set sets a GPU task's hyper-parameters ({', '.join(TASK_DEFAULTS)}); {task} takes --epochs and --stride"
        )
    try:
        hyper = parse_overrides(task, overrides)
    except SpecError as exc:
        raise ConfigError(str(exc)) from exc
    if "epochs" in hyper and epochs is not None and hyper["epochs"] != epochs:
        raise ConfigError(f"--epochs {epochs} and --set epochs={hyper['epochs']} disagree; give the epochs once")
    return hyper
