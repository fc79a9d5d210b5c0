"""One writer per journal: an exclusive lock on `<journal>.lock`, held for as long as a run writes.

Two engines on one journal each recover the other's positions and trade them, and their seqs
collide until one dies. The attach socket does not prevent it: it lives in the data dir, and
two data dirs can name the same `--journal`. So a writer takes this lock *before* it reads the
journal for recovery, and gives it up only when it stops.

`fcntl.flock` rather than a pid file: the kernel drops the lock when its process ends, however
it ends (SIGKILL, power loss), so a stale `.lock` file never blocks a restart and is never
deleted (deleting it would let a third process lock a new file while the second holds the old).
The holder's pid is written into the file only to name it in the refusal. Readers (replay,
traces, report, doctor) never take the lock: SQLite's WAL lets them read beside the writer.

A lock file that cannot be made or written (read-only media, a full disk, a folder that is not
the user's) is a `JournalError` naming the file, the reason and the fix, one line from `hotcoin
run`: the same disk would fail the journal a moment later, and a raw `OSError` traceback said
neither which file nor what to do.

The lock is named after the file the journal *is*, not the path it was given by
(`Path.resolve`): a symlink to a running engine's journal (`--journal link.sqlite`) took
`link.sqlite.lock`, free, and the second engine recovered the first one's positions and
traded them until their seqs collided ("UNIQUE constraint failed: events.seq").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from engine.errors import JournalError, JournalInUseError


def lock_path(journal: Path) -> Path:
    """`<journal>.lock` beside the file the journal is: symlinks followed, `..` and relative
    parts gone, so every path that names one journal names one lock."""
    real = journal.expanduser().resolve()
    return real.with_name(real.name + ".lock")


@contextlib.contextmanager
def journal_lock(journal: Path) -> Iterator[Path]:
    """Hold the journal's writer lock for the `with` block; `JournalInUseError` if another holds it."""
    path = lock_path(journal)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # a folder we make is private; one that exists is left as is
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            real = path.with_name(path.name.removesuffix(".lock"))
            named = str(journal) if real == journal else f"{journal} (the file {real})"
            raise JournalInUseError(
                f"journal {named} is in use by another engine{_holder(fd)}; stop that engine first, "
                "or give this run its own journal (--journal PATH)"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            raise _unwritable(path, exc) from exc
        yield path
    finally:
        os.close(fd)


def is_held(journal: Path) -> bool:
    """Whether a writer (an engine, a backtest) holds `journal`'s lock now: tried with a shared
    lock that is let go at once, so asking takes nothing from anyone. A lock file that is not
    there, or cannot be opened, is held by no one."""
    try:
        fd = os.open(lock_path(journal), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _unwritable(path: Path, exc: OSError) -> JournalError:
    """The lock file could not be made or written: which file, why, and what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on that disk, or point --journal (journal.path, HOTCOIN_JOURNAL) at a disk with room"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "point --journal (journal.path, HOTCOIN_JOURNAL) at a file in a folder this user can write"
    else:
        fix = "check that disk and folder, or point --journal (journal.path, HOTCOIN_JOURNAL) elsewhere"
    return JournalError(f"cannot take the journal's writer lock {path}: {exc.strerror or exc}; {fix}")


def _holder(fd: int) -> str:
    """' (pid N)' from the lock file, or '' when it cannot say (an older writer, a torn write)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f" (pid {text})" if text.isdigit() else ""
