"""`hotcoin jobs ...`: look after training jobs on a GPU box: list, status, logs (optionally
following, with re-attach), cancel, fetch (and register) the results."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from hotcoin_tui.commands.help_format import command_group
from hotcoin_tui.commands.options import ConfigOpt, JsonOpt

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from gpu_jobs.client import JobClient, JobEvent

app = command_group(help="Training jobs on GPU boxes: list, status, logs, cancel, fetch.", no_args_is_help=True)


def register(hotcoin: typer.Typer) -> None:
    """Add the `jobs` group to the `hotcoin` app."""
    hotcoin.add_typer(app, name="jobs")

GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU profile (a gpu.<profile> table in config).")]
JobArg = Annotated[str, typer.Argument(help="Job id, e.g. lstm_hot-0123456789abcdef (see `hotcoin jobs list`).")]
T = TypeVar("T")


class JobView:
    """Renders job events: log lines as they come, an epoch progress bar, re-attach notices;
    remembers how far the job got, for `interrupted_note`."""

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
        self.job_id: str | None = None  # set once the job is on the box
        self.running = False  # the box said its trainer is starting or running
        self.done = False  # the box said it is done, or it was fetched

    def __enter__(self) -> JobView:
        self.progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def on_event(self, event: JobEvent) -> None:
        self.job_id = event.job_id
        if event.kind == "started":
            state = event.data.get("status", {}).get("state")
            self.running, self.done = state in ("starting", "running"), state == "done"
        elif event.kind == "fetched":
            self.done = True
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

    def interrupted_note(self, gpu: str) -> str | None:
        """What an owner who stopped `hotcoin train` with Ctrl-C must know: the trainer runs
        detached on the box and does not stop with this command, so say so and name the
        commands that follow or stop it. None when no job reached the box."""
        job, on = self.job_id, f"--gpu {gpu}"
        if job is None:
            return None
        if self.done:
            return f"job {job} is done on {gpu}; `hotcoin jobs fetch {job} {on}` fetches and registers its model"
        where = f"keeps running on {gpu}" if self.running else f"is on {gpu} and may have started"
        return (
            f"job {job} {where}; follow with `hotcoin jobs logs {job} {on} -f` (then `hotcoin jobs fetch {job} {on}` "
            f"registers its model), stop with `hotcoin jobs cancel {job} {on}`"
        )


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


# Columns as shown, and the order they go in when the terminal is too narrow: the job id never
# goes (status, logs, cancel and fetch need it whole), nor the state; `task` first, as the id
# starts with it.
LIST_COLUMNS = ("job", "task", "state", "epoch", "device", "shipped (UTC)", "updated (UTC)")
NARROW_DROPS = ("task", "device", "shipped (UTC)", "epoch", "updated (UTC)")


def _list_cells(job: Mapping[str, Any]) -> dict[str, str]:
    return {
        "job": str(job.get("job_id")),
        "task": str(job.get("task", "")),
        "state": str(job.get("state")),
        "epoch": f"{job.get('epoch', '-')}/{job.get('epochs', '-')}",
        "device": str(job.get("device", "")),
        "shipped (UTC)": utc(job.get("shipped_ms")).removesuffix(" UTC"),
        "updated (UTC)": utc(job.get("updated_ms")).removesuffix(" UTC"),
    }


def jobs_table(jobs: Sequence[Mapping[str, Any]], title: str, console: Console) -> Table | None:
    """The jobs as a table that fits `console` with every job id whole: rich shortens a column
    that does not fit with an ellipsis, and a shortened id is of no use to the other commands,
    so columns are left out (see `NARROW_DROPS`) until the ids fit. None when not even the ids
    and states fit in a table."""
    from rich.measure import Measurement
    from rich.table import Table

    rows = [_list_cells(job) for job in jobs]
    id_width = max((len(row["job"]) for row in rows), default=0)
    shown = list(LIST_COLUMNS)
    left_out: list[str] = []
    for drop in (*NARROW_DROPS, None):
        caption = f"left out at this width: {', '.join(left_out)} (see --json)" if left_out else None
        table = Table(title=title, caption=caption)
        for col in shown:
            table.add_column(col, no_wrap=col == "job", min_width=id_width if col == "job" else None)
        for row in rows:
            table.add_row(*(row[col] for col in shown))
        if Measurement.get(console, console.options.update_width(10_000), table).minimum <= console.width:
            return table
        if drop is not None:
            shown.remove(drop)
            left_out.append(drop)
    return None


@app.command("list")
def list_jobs(gpu: GpuOpt, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every job on the box with its state, epoch and times (UTC), newest first."""
    import orjson
    from rich.console import Console

    jobs = _run(_client(config, gpu).list_jobs())
    if as_json:
        typer.echo(orjson.dumps(jobs, option=orjson.OPT_INDENT_2).decode())
        return
    console = Console()
    table = jobs_table(jobs, f"jobs on {gpu}", console)
    if table is not None:
        console.print(table)
        return
    for job in jobs:  # too narrow for a table: one job a line, its id whole
        typer.echo(f"{job.get('job_id')}  {job.get('state')}")


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
    from hotcoin_tui.commands.train_cmd import say_torch_registration
    from ml.governance.registry import ModelRegistry

    cfg = load_config(config).config
    client = _client(config, gpu)
    state = _run(client.status(job)).get("state")
    if state != "done":
        raise JobFailedError(f"{job} is {state}, not done; nothing to fetch yet (see `hotcoin jobs logs {job}`)", state=str(state))
    folder = _run(client.fetch(job, jobs_dir(cfg) / "fetched"))
    typer.echo(f"fetched {folder}")
    if register:
        say_torch_registration(register_fetched(folder, ModelRegistry(registry_dir(cfg)), cfg.ml.gates, now_ms=wall_ms()))
