"""`hotcoin train`: train a model and register it with its contract and promotion decision.

Trainers are looked up in `TRAINERS` by task name; the torch tasks run on a GPU box
(`--gpu <profile>`). A trainer that runs here (e.g. LightGBM) is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from hotcoin_tui.commands.options import ConfigOpt


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
    )
    with JobView() as view:
        version = asyncio.run(train_on_gpu(config, req, hot_feature_set(), on_event=view.on_event))
    verdict = version.decision.verdict
    typer.secho(
        f"registered {version.name} ({verdict}) in {version.path}",
        fg=typer.colors.GREEN if verdict == "production" else typer.colors.YELLOW,
    )
    for gate in version.decision.gates:
        typer.echo(f"  {'pass' if gate.passed else 'FAIL'}  {gate.name}: {gate.reason}")


TRAINERS: dict[str, Callable[[TrainOptions], None]] = {
    "lstm_hot": _train_on_gpu,
    "tft_heat": _train_on_gpu,
    "ppo_sizing": _train_on_gpu,
}


def train(
    task: Annotated[str, typer.Option("--task", help=f"What to train: {', '.join(TRAINERS)}.")],
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU profile (a gpu.<profile> table in config) to train on.")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Folder of {BASE}_{QUOTE}-{interval}.parquet candles (default <data_dir>/history).")
    ] = None,
    interval: Annotated[str, typer.Option("--interval", help="Candle interval: 1m, 5m, ...")] = "1m",
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (PPO: iterations); default per task.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed + data + code = same job id.")] = 0,
    symbols: Annotated[str, typer.Option("--symbols", help="Comma-separated pairs, e.g. DOGE/USDT,WIN/USDT (default all).")] = "",
    config: ConfigOpt = None,
) -> None:
    """Train a model (torch tasks on a GPU box over SSH) and register it with its runtime
    contract and promotion decision. Re-running the same command resumes an interrupted job."""
    from engine.errors import ConfigError

    runner = TRAINERS.get(task)
    if runner is None:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(TRAINERS)}")
    chosen = tuple(s.strip() for s in symbols.split(",") if s.strip())
    runner(TrainOptions(task, config, gpu, data, interval, epochs, seed, chosen))
