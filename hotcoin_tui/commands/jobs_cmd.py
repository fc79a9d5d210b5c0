"""`hotcoin jobs ...`: look after training jobs on a GPU box: list, status, logs (optionally
following, with re-attach), cancel, fetch (and register) the results."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from hotcoin_tui.commands.help_format import command_group
from hotcoin_tui.commands.options import ConfigOpt, JsonOpt

if TYPE_CHECKING:
    from gpu_jobs.client import JobClient, JobEvent

app = command_group(help="Training jobs on GPU boxes: list, status, logs, cancel, fetch.", no_args_is_help=True)

GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU profile (a gpu.<profile> table in config).")]
JobArg = Annotated[str, typer.Argument(help="Job id, e.g. lstm_hot-0123456789abcdef (see `hotcoin jobs list`).")]
T = TypeVar("T")


class JobView:
    """Renders job events: log lines as they come, an epoch progress bar, re-attach notices."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("epoch {task.completed}/{task.total}"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        self.bar: Any = None

    def __enter__(self) -> JobView:
        self.progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def on_event(self, event: JobEvent) -> None:
        console = self.progress.console
        if event.kind == "log":
            console.print(event.message, style="dim", markup=False, highlight=False)
        elif event.kind == "progress":
            d = event.data
            detail = f"loss {d['loss']:.4f}  {d['samples_per_s']:.0f} samples/s"
            if self.bar is None:
                self.bar = self.progress.add_task(event.job_id, total=d["epochs"], detail=detail)
            self.progress.update(self.bar, completed=d["epoch"], total=d["epochs"], detail=detail)
        elif event.kind in ("reattaching", "reattached"):
            console.print(event.message, style="yellow", markup=False)
        else:
            console.print(f"{event.job_id}: {event.message}", markup=False, highlight=False)


def _client(config_file: Path | None, gpu: str, view: JobView | None = None) -> JobClient:
    from engine.config import load_config
    from gpu_jobs.profiles import make_client

    return make_client(load_config(config_file).config, gpu, on_event=view.on_event if view else None)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def utc(ms: object) -> str:
    """A status timestamp (epoch ms) as UTC for people; '-' when the box did not record it."""
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_lines(job: Mapping[str, Any]) -> list[str]:
    """One job's status as aligned `name  value` lines, times in UTC."""
    epoch = f"{job.get('epoch') if job.get('epoch') is not None else '-'}/{job.get('epochs', '-')}"
    rows = [
        ("job", job.get("job_id")),
        ("state", job.get("state")),
        ("epoch", epoch),
        ("device", job.get("device") or "-"),
        ("started", utc(job.get("started_ms"))),
        ("updated", utc(job.get("updated_ms"))),
        ("finished", utc(job.get("finished_ms"))),
        ("message", job.get("message") or "-"),
    ]
    return [f"{name:<9}{value}" for name, value in rows]


@app.command("list")
def list_jobs(gpu: GpuOpt, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every job on the box with its state, epoch and times (UTC), newest first."""
    import orjson
    from rich.console import Console
    from rich.table import Table

    jobs = _run(_client(config, gpu).list_jobs())
    if as_json:
        typer.echo(orjson.dumps(jobs, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"jobs on {gpu}")
    for col in ("job", "task", "state", "epoch", "device", "shipped (UTC)", "updated (UTC)"):
        table.add_column(col)
    for job in jobs:
        epoch = f"{job.get('epoch', '-')}/{job.get('epochs', '-')}"
        times = (utc(job.get("shipped_ms")), utc(job.get("updated_ms")))
        table.add_row(
            str(job.get("job_id")), str(job.get("task", "")), str(job.get("state")), epoch, str(job.get("device", "")),
            *(t.removesuffix(" UTC") for t in times),
        )  # fmt: skip
    Console().print(table)


@app.command("status")
def status(job: JobArg, gpu: GpuOpt, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One job's state, epoch and times in UTC ('crashed' means it died mid-run: `hotcoin train` again resumes)."""
    import orjson

    answer = _run(_client(config, gpu).status(job))
    if as_json:
        typer.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo("\n".join(status_lines(answer)))


@app.command("logs")
def logs(
    job: JobArg,
    gpu: GpuOpt,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends (re-attaches).")] = False,
    config: ConfigOpt = None,
) -> None:
    """The job's training log."""
    if not follow:
        typer.echo(_run(_client(config, gpu).logs(job)), nl=False)
        return
    with JobView() as view:
        final = _run(_client(config, gpu, view).follow(job))
    typer.echo(f"{job}: {final.get('state')}")


@app.command("cancel")
def cancel(job: JobArg, gpu: GpuOpt, config: ConfigOpt = None) -> None:
    """Stop a running job (its last epoch checkpoint is kept)."""
    answer = _run(_client(config, gpu).cancel(job))
    typer.echo(f"{job}: {'cancel sent' if answer.get('cancel_sent') else 'not running'} (state {answer.get('state')})")


@app.command("fetch")
def fetch(
    job: JobArg,
    gpu: GpuOpt,
    register: Annotated[bool, typer.Option("--register/--no-register", help="Register the model after fetching.")] = True,
    config: ConfigOpt = None,
) -> None:
    """Copy a finished job's model and metrics here, and register it with contract and decision."""
    from engine.config import load_config
    from gpu_jobs.errors import JobFailedError
    from gpu_jobs.register import register_fetched, registry_dir
    from gpu_jobs.workflow import jobs_dir, wall_ms
    from ml.governance.registry import ModelRegistry

    cfg = load_config(config).config
    client = _client(config, gpu)
    state = _run(client.status(job)).get("state")
    if state != "done":
        raise JobFailedError(f"{job} is {state}, not done; nothing to fetch yet (see `hotcoin jobs logs {job}`)", state=str(state))
    folder = _run(client.fetch(job, jobs_dir(cfg) / "fetched"))
    typer.echo(f"fetched {folder}")
    if register:
        version = register_fetched(folder, ModelRegistry(registry_dir(cfg)), cfg.ml.gates, now_ms=wall_ms())
        typer.echo(f"registered {version.name} ({version.decision.verdict}) in {version.path}")
