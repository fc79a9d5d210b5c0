"""`python -m gpu_jobs <command> <job folder>` on the GPU box. Answers are one JSON object on
stdout (except `tail`, which streams the log), so the trading box can parse them.

    check              the environment report (exit 3 when torch or numpy is missing)
    start JOB          start (or resume) the trainer detached; no-op when running or done
    run JOB            the trainer itself (what `start` runs in the background)
    status JOB         the job's status ('crashed' when the trainer died mid-run)
    tail JOB           the log from --offset, --follow until the job is over
    cancel JOB         stop the trainer
    list JOBS_ROOT     every job's status
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gpu_jobs import remote


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_jobs")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check")
    for name in ("start", "run", "status", "cancel"):
        sub.add_parser(name).add_argument("job", type=Path)
    tail = sub.add_parser("tail")
    tail.add_argument("job", type=Path)
    tail.add_argument("--offset", type=int, default=0)
    tail.add_argument("--follow", action="store_true")
    sub.add_parser("list").add_argument("jobs_root", type=Path)
    args = parser.parse_args(argv)

    if args.command == "check":
        report = remote.environment()
        _emit(report)
        return 0 if report["ok"] else remote.EXIT_ENV
    if args.command == "list":
        _emit(remote.list_jobs(args.jobs_root))
        return 0
    job = remote.JobDir(args.job.resolve())
    if not job.spec.is_file():
        error = f"no job {job.job_id} on this box (nothing at {job.root})"
        if args.command == "tail":  # stdout is the log stream: the error goes to stderr
            sys.stderr.write(error + "\n")
        else:
            _emit({"error": error})
        return remote.EXIT_USAGE
    if args.command == "start":
        rc, answer = remote.start(job)
        _emit(answer)
        return rc
    if args.command == "run":
        from gpu_jobs.training import run

        return run(job)
    if args.command == "status":
        _emit(remote.effective_status(job))
        return 0
    if args.command == "cancel":
        _emit(remote.cancel(job))
        return 0
    return remote.tail(job, args.offset, args.follow)


if __name__ == "__main__":
    sys.exit(main())
