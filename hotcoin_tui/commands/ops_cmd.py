"""`hotcoin report` (one UTC day from the journal) and `hotcoin doctor` (is this box fit to
trade unattended?).

Exit codes: report 0 done, 1 when `--send` could not deliver it to some channel (or there is
no channel to send it to), 2 no journal
or a bad date, 130 interrupted while sending; doctor 0 when nothing failed (warnings are
printed), 1 when a check failed, 2 when the config itself does not load.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from hotcoin_tui.commands.options import ConfigOpt, JournalOpt, JsonOpt

if TYPE_CHECKING:
    from engine.config import HotcoinConfig
    from engine.ops.check import Check
    from engine.ops.notify.base import Notification
    from engine.ops.notify.oneshot import Outcome
    from engine.ops.report import DailyReport


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("doctor")(doctor)


def parse_day(text: str, *, today: date | None = None) -> date:
    """`YYYY-MM-DD`, `today` or `yesterday` (UTC)."""
    today = today or datetime.now(UTC).date()
    word = text.strip().lower()
    if word == "today":
        return today
    if word == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(word)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date; use YYYY-MM-DD, today or yesterday", param_hint="--date") from None


def report(
    day: Annotated[str, typer.Option("--date", "-d", help="UTC day: YYYY-MM-DD, today (so far) or yesterday.")] = "today",
    journal: JournalOpt = None,
    config: ConfigOpt = None,
    send: Annotated[bool, typer.Option(
            "--send", help="Also send it to the configured Telegram / Feishu channels (exit 1 when some channel, or none is configured, does not get it)."
        )] = False,
    as_json: JsonOpt = False,
) -> None:
    """The daily report: PnL, trades, win rate, best/worst, exposure by cluster, time per engine state."""
    from engine.config import load_config
    from engine.ops.report import load_report, render_rich, report_notification

    chosen = parse_day(day)
    loaded = load_config(config)
    path = (journal or loaded.config.journal_path).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        typer.secho(f"hotcoin: journal {path} {what}; point --journal or HOTCOIN_JOURNAL at the journal file", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    now_ms = datetime.now(UTC).timestamp() * 1000
    notes: list[str] = []
    result = load_report(path, chosen, clusters=loaded.config.trading.risk.clusters, now_ms=int(now_ms), notes=notes)
    if result.end_ms <= result.start_ms:  # after the wall clock and after the journal's newest event
        typer.secho(
            f"hotcoin: {chosen.isoformat()} UTC has not started (now {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, and the "
            "journal has no event on it); choose today or an earlier day",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    if not as_json:
        from rich.console import Console

        Console(highlight=False).print(render_rich(result))
    for note in notes:  # what the report may lack: a damaged archive passed over, events not yet in the journal
        typer.secho(f"hotcoin: {note}", fg=typer.colors.YELLOW, err=True)
    outcomes = _send(loaded.config, report_notification(result), chosen) if send else None
    if as_json:  # after sending, so the one document says how the sending went
        typer.echo(_json(result, outcomes))
    if outcomes is not None:
        typer.echo(_sent_lines(outcomes, chosen), err=True)
        if not _delivered(outcomes):
            raise typer.Exit(1)


def _send(config: HotcoinConfig, notification: Notification, day: date) -> list[Outcome]:
    """Send the report to every configured channel: each channel's outcome; exit 130 when interrupted."""
    import asyncio

    from engine.ops.logs import configure_logging, secret_values
    from engine.ops.notify.oneshot import send_now

    # Retries are logged as they happen (redacted): a channel that is down can hold the
    # command for the whole retry schedule, and the owner should see why it waits.
    configure_logging(config.log_level, secrets=secret_values(config))
    try:
        return asyncio.run(send_now(config, notification))
    except KeyboardInterrupt:
        typer.echo(f"interrupted while sending: some channel may not have it; {_again(day)}", err=True)
        raise typer.Exit(130) from None


def _delivered(outcomes: list[Outcome]) -> bool:
    """Whether `--send` did what it was asked: some channel, and every channel, has the report.
    With no channel configured nothing was sent, and that exited 0: a cron job running
    `report --send` looked fine forever while no report ever left the box."""
    return bool(outcomes) and all(o.error is None for o in outcomes)


def _sent_lines(outcomes: list[Outcome], day: date) -> str:
    """One line for the channels that have it, one per channel that does not, with its error
    and how to send it again (the report itself is above, on stdout)."""
    if not outcomes:
        return "no notification channel configured (notify.telegram / notify.feishu); nothing sent"
    sent = [o.channel for o in outcomes if o.error is None]
    failed = [o for o in outcomes if o.error is not None]
    lines = [f"sent to {', '.join(sent)}"] if sent else []
    lines += [f"NOT sent to {o.channel} ({o.attempts} attempt{'s' * (o.attempts != 1)}): {o.error}" for o in failed]
    if failed:
        lines.append(f"fix the channel, then {_again(day)}")
    return "\n".join(lines)


def _again(day: date) -> str:
    return f"send it again: hotcoin report --send --date {day.isoformat()}"


def _json(r: DailyReport, outcomes: list[Outcome] | None = None) -> str:
    """The report as JSON; with `--send`, `send` says whether it was delivered (`_delivered`)
    and how each channel's sending ended (an empty list: no channel is configured)."""
    import dataclasses

    import orjson

    doc = dataclasses.asdict(r)
    doc["day"] = r.day.isoformat()
    doc["win_rate"] = r.win_rate
    if outcomes is not None:
        doc["send"] = {"delivered": _delivered(outcomes), "channels": [dataclasses.asdict(o) for o in outcomes]}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def doctor(config: ConfigOpt = None, journal: JournalOpt = None, as_json: JsonOpt = False) -> None:
    """Check config, the model, journal, disk, clock skew, key permissions and restrictions, reachability."""
    import asyncio

    from engine.config import load_config
    from engine.errors import ConfigError
    from engine.ops.check import Check, Status, worst
    from engine.ops.doctor import run_doctor

    try:
        loaded = load_config(config, cli={} if journal is None else {"journal.path": str(journal)})
    except ConfigError as exc:
        # With --json the failure is the one check in the array: a script reading stdout got
        # nothing, and could not tell a config that does not load from a doctor that crashed.
        if as_json:
            typer.echo(_checks_json([Check("config", Status.FAIL, str(exc))]))
        else:
            typer.secho(f"config: FAIL {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    from ml.runtime import load_scorer

    checks = asyncio.run(run_doctor(loaded, model_loader=load_scorer))  # the model the engine would load, loaded as it does
    if as_json:
        typer.echo(_checks_json(checks))
    else:
        _print_checks(checks)
    if worst(checks) is Status.FAIL:
        raise typer.Exit(1)


def _checks_json(checks: list[Check]) -> str:
    import orjson

    return orjson.dumps([{"name": c.name, "status": c.status.value, "detail": c.detail, "fix": c.fix} for c in checks], option=orjson.OPT_INDENT_2).decode()


def _print_checks(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("check")
    table.add_column("")
    table.add_column("detail", overflow="fold")
    for c in checks:
        detail = c.detail + (f"\n→ {c.fix}" if c.fix and c.status.value in ("warn", "fail") else "")
        table.add_row(c.name, f"[{_STYLE[c.status.value]}]{c.status.value.upper()}[/]", detail)
    Console(highlight=False).print(table)
