"""The trading box's side of a job: ship it, start it, follow its log, fetch what it made.

Every step is idempotent, so a step that fails half-way is simply repeated: shipping a job the
box already has is a no-op (the job id is the pack's content hash), starting a running or
finished job re-reports it, and following resumes the log from the last byte received. When the
SSH link drops while following, the client re-attaches with exponential backoff; the job itself
runs detached on the box and never notices.

Progress is reported as `JobEvent`s to a callback (the CLI renders them with rich; tests
assert on them), never printed from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_jobs import boxshell
from gpu_jobs.errors import (
    ConnectionLost,
    GpuJobError,
    JobFailedError,
    RemoteEnvironmentError,
    TransportError,
    WorkdirFullError,
)
from gpu_jobs.pack import PackedJob
from gpu_jobs.transport.base import CommandResult, Transport

# States in which following the log ends ("shipped": the job was never started).
FOLLOW_ENDS = frozenset({"done", "failed", "cancelled", "crashed", "shipped"})
FETCHED_FILES = ("out/model.pt", "out/metrics.json", "job.json", "train.log", "status.json")
EXIT_USAGE = 2  # gpu_jobs.remote.EXIT_USAGE: no such job (these mirror the box's exit codes)
EXIT_ENV = 3  # gpu_jobs.remote.EXIT_ENV
EXIT_NOT_FOUND = 127  # the shell could not find the profile's python
EXIT_SETUP = 125  # the profile's env_setup failed (`_python_command` exits with it)
NEARLY_FULL_MB = 1  # a job that crashed where less space than this (MB) is free crashed for lack of it
_PROGRESS = re.compile(r"^epoch (\d+)/(\d+) loss=(\S+) samples=(\d+) samples_per_s=(\S+)")
_JOB_ID = re.compile(r"^[a-z][a-z0-9_]*-[0-9a-f]{16}$")
# The hyper-parameters that bound each task's memory on the box (`hotcoin train --set`).
MEMORY_LEVERS = {"lstm_hot": ("batch_size",), "tft_heat": ("batch_size",), "ppo_sizing": ("minibatch", "envs")}


@dataclass(frozen=True)
class JobEvent:
    """kind: shipped | ship_skipped | started | log | progress | reattaching | reattached | fetched"""

    kind: str
    job_id: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


EventSink = Callable[[JobEvent], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try re-attaching after the link drops: `attempts` in a row without any
    progress, waiting `first_delay_s`, doubling up to `max_delay_s`."""

    attempts: int = 8
    first_delay_s: float = 0.5
    max_delay_s: float = 15.0


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise GpuJobError(f"{job_id!r} is not a job id; ids look like lstm_hot-0123456789abcdef (see `hotcoin jobs list`)")
    return job_id


def _shell_path(path: str) -> str:
    """Quote a remote path for the shell, keeping a leading ~ meaning the remote home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class JobClient:
    def __init__(
        self,
        transport: Transport,
        *,
        workdir: str,
        python: str,
        env_setup: str = "",
        on_event: EventSink | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.transport = transport
        self.workdir = workdir
        self.python = python
        self.env_setup = env_setup.strip()
        self.on_event = on_event or (lambda event: None)
        self.retry = retry or RetryPolicy()
        self._root: str | None = None

    # -- plumbing -------------------------------------------------------------------------------

    async def root(self) -> str:
        """The workdir as an absolute path on the box (created if needed, 0700 as every folder
        made under the transport's umask 077). Its `jobs` and `incoming` folders, hotcoin's own,
        are made private too where an earlier version left them open to all (a failed chmod, a
        folder someone else owns, is no reason to stop: they were usable before)."""
        if self._root is None:
            w = _shell_path(self.workdir)
            res = await self.transport.run(
                f"mkdir -p {w}/jobs {w}/incoming && {{ chmod 700 {w}/jobs {w}/incoming 2>/dev/null; cd {w}; }} && pwd"
            )
            if res.rc != 0:
                if boxshell.is_no_space(res.stderr):
                    raise await self._workdir_full(self.workdir)
                raise GpuJobError(
                    f"cannot use workdir {self.workdir} on {self.transport.describe()}: {res.stderr.strip()}; "
                    "set the profile's workdir to a folder the login user can write"
                )
            self._root = res.stdout.strip().splitlines()[-1]
        return self._root

    async def job_dir(self, job_id: str) -> str:
        return f"{await self.root()}/jobs/{check_job_id(job_id)}"

    def _python_command(self, code: str, *args: str) -> str:
        """`python -m gpu_jobs args` run from the job's code folder; `code` is shell-ready
        (already quoted, or a variable reference). A failing `env_setup` exits `EXIT_SETUP`: its
        own status (127 for a `source` that /bin/sh lacks) would read as a missing python. The
        braces, closed on their own line, cover an `env_setup` of several `;`-separated steps.
        No bytecode is written (the trainer inherits that): a `.pyc` cut short by a full disk
        would make every later command on the job die with "marshal data too short"."""
        argv = " ".join(shlex.quote(a) for a in args)
        return f"{self._setup()}cd {code} && PYTHONPATH={code} PYTHONDONTWRITEBYTECODE=1 exec {shlex.quote(self.python)} -B -m gpu_jobs {argv}"

    def _setup(self) -> str:
        return f"{{ {self.env_setup}\n}} || exit {EXIT_SETUP}; " if self.env_setup else ""

    async def _checked(self, res: CommandResult, what: str) -> Any:
        """`_answer`, but a failure for lack of space on the box is `WorkdirFullError`."""
        if res.rc != 0 and boxshell.is_no_space(res.stderr):
            raise await self._workdir_full()
        return self._answer(res, what)

    async def _free_kib(self, path: str) -> int | None:
        """The free space in `path` on the box now, in KiB (None when the box does not say)."""
        try:
            return boxshell.free_kib((await self.transport.run(boxshell.df_script(path))).stdout)
        except TransportError:
            return None

    async def _free_mb(self, path: str) -> int | None:
        """The free space in `path` on the box now, in whole MB (None when the box does not say)."""
        kib = await self._free_kib(path)
        return None if kib is None else kib // 1024

    async def _workdir_full(
        self, where: str | None = None, mb: int | None = None, *, job: PackedJob | None = None
    ) -> WorkdirFullError:
        """The error for a full workdir, with the free space (`mb`, else measured now) and, for a
        `job` being shipped, the space it needs there: the pack and its unpacked files side by
        side while it unpacks. Without that figure the owner frees a few MB, runs the command
        again, and finds the box full once more."""
        path = where or self._root or self.workdir
        if mb is None:
            mb = await self._free_mb(path)
        free = f"{mb} MB free" if mb is not None else "no space left"
        need = ""
        if job is not None:
            pack = job.path.stat().st_size
            need = (
                f"; this job needs {_size(pack + job.unpacked_bytes)} there: its {_size(pack)} pack "
                f"and {_size(job.unpacked_bytes)} unpacked"
            )
        return WorkdirFullError(
            f"the GPU box's workdir {path} is full ({free} on {self.transport.describe()}{need}); "
            "free space there and run the same command"
        )

    async def _copy_failed_for_space(self, job: PackedJob, root: str, exc: TransportError) -> WorkdirFullError | None:
        """The full-workdir error for a copy of `job` that failed for lack of space, None when
        it failed otherwise. The copy's own message cannot tell: OpenSSH 9's scp goes over SFTP,
        whose protocol has no "disk full", and the box's ENOSPC arrives as a bare "scp: write
        remote ...: Failure". So the box's free space decides (measured after the partial copy
        was removed): less than the pack is a full workdir. A box that cannot be asked (the
        link is gone) leaves the copy's own error."""
        kib = await self._free_kib(root)
        if boxshell.is_no_space(str(exc)) or (kib is not None and kib * 1024 < job.path.stat().st_size):
            return await self._workdir_full(root, None if kib is None else kib // 1024, job=job)
        return None

    async def _job_python(self, job_id: str, *args: str) -> CommandResult:
        jobdir = await self.job_dir(job_id)
        missing = json.dumps({"error": f"no job {job_id} in {jobdir}"})
        guard = f"if [ ! -f {shlex.quote(jobdir)}/job.json ]; then echo {shlex.quote(missing)}; exit {EXIT_USAGE}; fi; "
        return await self.transport.run(guard + self._python_command(shlex.quote(f"{jobdir}/code"), *args, jobdir))

    def _answer(self, res: CommandResult, what: str) -> Any:
        if res.rc == EXIT_SETUP:
            raise RemoteEnvironmentError(
                f"the profile's env_setup {self.env_setup!r} failed on {self.transport.describe()} "
                f"({res.stderr.strip() or 'no message'}); fix it: it runs in a POSIX shell (/bin/sh, dash on "
                "Debian/Ubuntu), so activate a venv with `. /opt/venv/bin/activate`, not `source`"
            )
        if res.rc == EXIT_NOT_FOUND:
            raise RemoteEnvironmentError(
                f"{self.transport.describe()} has no python {self.python!r} ({res.stderr.strip()}); "
                "set the profile's `python` to the interpreter with torch, e.g. /opt/venv/bin/python"
            )
        if res.rc == EXIT_ENV:
            report = _json_or_none(res.stdout) or {}
            raise RemoteEnvironmentError(
                f"{self.transport.describe()} cannot train with python {self.python!r}: "
                f"{report.get('error', res.stderr.strip())}. "
                f"Fix: {report.get('fix', 'install torch there')}"
            )
        data = _json_or_none(res.stdout)
        if res.rc == EXIT_USAGE and isinstance(data, dict) and "error" in data:
            raise GpuJobError(f"{what} on {self.transport.describe()}: {data['error']}; see `hotcoin jobs list`")
        if res.rc != 0 or data is None:
            detail = boxshell.brief(res.stderr.strip() or res.stdout.strip())
            raise GpuJobError(f"{what} on {self.transport.describe()} failed (exit {res.rc}): {detail}")
        return data

    def _emit(self, kind: str, job_id: str, message: str, **data: Any) -> None:
        self.on_event(JobEvent(kind, job_id, message, data))

    # -- steps ----------------------------------------------------------------------------------

    async def check_python(self) -> None:
        """Fail now, before a dataset is sent, when the profile's python (after `env_setup`)
        is missing or lacks torch or numpy."""
        command = f"{self._setup()}exec {shlex.quote(self.python)} -B -c {shlex.quote(boxshell.PRECHECK)}"
        await self._checked(await self.transport.run(command), "checking the profile's python")

    async def ship(self, packed: PackedJob) -> bool:
        """Copy and unpack the job on the box; False (and nothing sent) if it is already there.
        Each ship copies to and unpacks in its own names, so two at once (two `hotcoin train`
        runs of one job) cannot unpack over each other: the second to finish finds the job
        there and is done too."""
        root = await self.root()
        jobdir = await self.job_dir(packed.job_id)
        q = shlex.quote
        if (await self.transport.run(f"{boxshell.sweep_script(root)}; test -f {q(jobdir)}/.unpacked")).rc == 0:
            self._emit("ship_skipped", packed.job_id, "already on the box; not shipped again")
            return False
        await self.check_python()
        token = secrets.token_hex(6)
        incoming = f"{root}/incoming/{packed.job_id}.{token}.tar.gz"
        try:
            await self.transport.put(packed.path, incoming)
        except TransportError as exc:
            with contextlib.suppress(TransportError):  # a lost link: the sweep of a later ship removes it
                await self.transport.run(f"rm -f {q(incoming)}")  # what a copy cut short left there
            full = await self._copy_failed_for_space(packed, root, exc)
            if full is not None:
                raise full from exc
            raise
        script = boxshell.unpack_script(incoming=incoming, staging=f"{jobdir}.tmp-{token}", jobdir=jobdir, sha256=packed.sha256)
        res = await self.transport.run(script)
        where = self.transport.describe()
        if res.rc == boxshell.UNPACK_ALREADY:
            self._emit("ship_skipped", packed.job_id, "already unpacked by another ship; not shipped again")
            return False
        if res.rc == boxshell.UNPACK_BAD_SHA:
            raise TransportError(
                f"the copy of {packed.job_id} on {where} does not match its sha256 (damaged on the way; it was "
                "removed); run the same command to ship it again"
            )
        if res.rc != 0:
            if boxshell.is_no_space(res.stderr):
                raise await self._workdir_full(job=packed)
            raise TransportError(
                f"unpacking {packed.job_id} on {where} failed: {boxshell.brief(res.stderr) or f'exit {res.rc}'} "
                "(the partial copy was removed)"
            )
        self._emit("shipped", packed.job_id, f"shipped {packed.path.stat().st_size} bytes", bytes=packed.path.stat().st_size)
        return True

    async def start(self, job_id: str) -> dict[str, Any]:
        """Start (or resume from its checkpoint) the trainer; re-reports a running/done job."""
        answer: dict[str, Any] = await self._checked(await self._job_python(job_id, "start"), "starting the job")
        started, pid, state = bool(answer.get("started")), answer.get("pid"), answer.get("state")
        if not started:
            message = f"job is {state}"
        elif pid is None:  # the trainer has not recorded it (yet, or ever: it died first)
            message = f"trainer started (state {state}, no pid recorded)"
        else:
            message = f"trainer started (pid {pid})"
        self._emit("started", job_id, message, status=answer)
        return answer

    async def status(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._checked(await self._job_python(job_id, "status"), "reading the job status")
        return data

    async def cancel(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._checked(await self._job_python(job_id, "cancel"), "cancelling the job")
        return data

    async def list_jobs(self) -> list[dict[str, Any]]:
        """Every job on the box, newest first (by when it was shipped; a box with older job code
        does not say, and its jobs go by their last update)."""
        root = await self.root()
        q = shlex.quote
        newest = f"$(ls -td {q(root)}/jobs/*/code 2>/dev/null | head -n 1)"
        command = (
            f'd="{newest}"; if [ -z "$d" ]; then echo "[]"; else '
            + self._python_command('"$d"', "list", f"{root}/jobs")
            + "; fi"
        )
        data: list[dict[str, Any]] = await self._checked(await self.transport.run(command), "listing jobs")
        return sorted(data, key=lambda j: (j.get("shipped_ms") or 0, j.get("updated_ms") or 0), reverse=True)

    async def logs(self, job_id: str, offset: int = 0) -> str:
        """The job's log from byte `offset`; through `_job_python`'s guard, so an unknown job is
        "no job ...", not the shell failing to `cd` into its code folder."""
        res = await self._job_python(job_id, "tail", "--offset", str(offset))
        if res.rc != 0:
            await self._checked(res, "reading the log")
        return res.stdout

    async def follow(self, job_id: str, offset: int = 0) -> dict[str, Any]:
        """Stream the log (as `log`/`progress` events) until the job is over; re-attach from the
        last byte received whenever the link drops. Returns the final status."""
        jobdir = await self.job_dir(job_id)
        await self.status(job_id)  # an unknown job is an error now, not an endless wait
        pos, pending = offset, b""
        failures, delay = 0, self.retry.first_delay_s
        lost = False

        def on_chunk(chunk: bytes) -> None:
            nonlocal pos, pending, failures, delay, lost
            if lost:
                lost = False
                self._emit("reattached", job_id, f"re-attached; log resumes at byte {pos}", offset=pos)
            failures, delay = 0, self.retry.first_delay_s
            pos += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(job_id, line.decode(errors="replace"))

        while True:
            code = shlex.quote(f"{jobdir}/code")
            command = self._python_command(code, "tail", jobdir, "--offset", str(pos), "--follow")
            rc = await self.transport.stream(command, on_chunk)
            if rc == 0 and lost:
                lost = False
                self._emit("reattached", job_id, f"re-attached; log resumes at byte {pos}", offset=pos)
            if rc == 0:
                try:
                    status = await self.status(job_id)
                except TransportError:
                    status = {"state": "unknown"}
                if status.get("state") in FOLLOW_ENDS:
                    if pending:
                        self._line(job_id, pending.decode(errors="replace"))
                    return status
            elif rc in (EXIT_NOT_FOUND, EXIT_ENV, EXIT_SETUP):
                self._answer(CommandResult(rc, "", ""), "following the log")
            elif rc == EXIT_USAGE:
                raise GpuJobError(f"no job {job_id} on {self.transport.describe()}; see `hotcoin jobs list`")
            failures += 1
            if failures > self.retry.attempts:
                raise ConnectionLost(
                    f"lost {self.transport.describe()} and {self.retry.attempts} re-attach attempts failed; "
                    f"the job keeps running there. Follow it again with `hotcoin jobs logs {job_id} --follow`"
                )
            lost = True
            self._emit(
                "reattaching",
                job_id,
                f"{'log stream ended early' if rc == 0 else f'connection lost (exit {rc})'}; "
                f"re-attaching in {delay:.1f}s (attempt {failures}/{self.retry.attempts})",
                attempt=failures,
                delay_s=delay,
                offset=pos,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry.max_delay_s)

    def _line(self, job_id: str, line: str) -> None:
        self._emit("log", job_id, line)
        m = _PROGRESS.match(line)
        if m:
            self._emit(
                "progress",
                job_id,
                line,
                epoch=int(m[1]),
                epochs=int(m[2]),
                loss=float(m[3]),
                samples=int(m[4]),
                samples_per_s=float(m[5]),
            )

    async def fetch(self, job_id: str, dest: Path) -> Path:
        """Copy the model, metrics, spec, log and status into `dest/<job_id>/`. The copy goes to a
        temporary folder renamed into place once every file is there: a copy cut short must not
        leave a truncated model.pt where registration (or `hotcoin jobs fetch`) would take it."""
        jobdir = await self.job_dir(job_id)
        folder = dest / job_id
        await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
        partial = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f".{job_id}.partial-", dir=dest))
        try:
            await self.transport.get([f"{jobdir}/{name}" for name in FETCHED_FILES], partial)
            await asyncio.to_thread(_replace_folder, partial, folder)
        finally:
            await asyncio.to_thread(shutil.rmtree, partial, ignore_errors=True)
        self._emit("fetched", job_id, f"fetched into {folder}", path=str(folder))
        return folder

    async def run(self, packed: PackedJob, dest: Path) -> Path:
        """Ship, start, follow to the end and fetch; the fetched folder. Following starts where
        the latest attempt's log does (`log_offset`, which the box records at each start): a
        rerun of a failed job must not replay the old run's lines as if they were this one's."""
        await self.ship(packed)
        answer = await self.start(packed.job_id)
        status = await self.follow(packed.job_id, offset=_log_offset(answer))
        state = str(status.get("state"))
        if state == "failed" and boxshell.is_no_space(str(status.get("message", ""))):
            raise await self._workdir_full()
        if state == "crashed":
            # A trainer that hit a full disk may not have been able to record why (its status
            # write fails too): "crashed, run again to resume" would burn the box's time on
            # the same crash. No free space is the likely cause and has its own fix.
            root = await self.root()
            mb = await self._free_mb(root)
            if mb is not None and mb < NEARLY_FULL_MB:
                raise await self._workdir_full(root, mb)
        if state != "done":
            raise JobFailedError(ended_message(packed.job_id, status, packed.spec.params), state=state)
        return await self.fetch(packed.job_id, dest)


def ended_message(job_id: str, status: Mapping[str, Any], params: Mapping[str, float | int] | None = None) -> str:
    """Why a followed job did not end `done` (the box's message, when it gave one), and what to
    do: resume, start over (cancelled or crashed before an epoch finished), train with less
    memory (it ran out: running the same job again would fail the same way; `params`, the job's
    hyper-parameters, give the figures) or read the log."""
    state, message = str(status.get("state")), str(status.get("message") or "")
    if state == "failed" and boxshell.is_out_of_memory(message):
        hint = _memory_hint(job_id, params or {})
    elif state not in ("crashed", "cancelled"):
        hint = f"see `hotcoin jobs logs {job_id}`"
    elif status.get("checkpoint", True):  # a box with older job code does not say: assume one
        hint = "run the same command again to resume from the last checkpoint"
    else:
        hint = "run the same command again to train it from the start"
    said = f": {message}" if message else ""
    return f"job {job_id} ended {state}{said}; {hint}"


def _memory_hint(job_id: str, params: Mapping[str, float | int]) -> str:
    """The settings that bound a job's memory, as the `--set` that halves each (the job's own
    value given, when known). Every task holds its whole feature tensor on the device too, so
    fewer pairs also help."""
    task = job_id.rsplit("-", 1)[0]
    levers = []
    for key in MEMORY_LEVERS.get(task, ("batch_size",)):
        now = params.get(key)
        if isinstance(now, int) and now > 1:
            levers.append(f"`--set {key}={now // 2}` (this job used {now})")
        else:
            levers.append(f"`--set {key}=<smaller>`")
    return f"the box ran out of memory: run the same command with {' or '.join(levers)}, or with fewer pairs in --symbols"


def _log_offset(status: Mapping[str, Any]) -> int:
    """Where the latest attempt's lines start in the job's log (0: a box with older job code,
    which does not record it)."""
    offset = status.get("log_offset")
    return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset > 0 else 0


def _size(size: int) -> str:
    """Bytes for a message about space on the box: KB below 1 MB, else MB or GB, one decimal."""
    if size < 2**20:
        return f"{-(-size // 2**10)} KB"
    if size < 2**30:
        return f"{size / 2**20:.1f} MB"
    return f"{size / 2**30:.1f} GB"


def _replace_folder(new: Path, folder: Path) -> None:
    """Put `new` where `folder` is (a re-fetch replaces the earlier copy). The old copy is first
    moved aside, atomically: two fetches of one job at once (two `hotcoin train` runs of it)
    cannot both delete it, and when the other one's copy lands first, that copy of the same
    finished job stays."""
    aside = folder.with_name(f".{folder.name}.old-{secrets.token_hex(4)}")
    with contextlib.suppress(FileNotFoundError):
        folder.rename(aside)
    try:
        new.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _json_or_none(text: str) -> Any:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
