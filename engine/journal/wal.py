"""What SQLite will leave out of a journal's -wal, found before it leaves it out.

The writer commits into `<journal>-wal`; SQLite copies the frames into the main file at each
checkpoint. On open it reads the -wal frame by frame (a 32-byte header, then frames of a 24-byte
header and one page) and keeps every transaction up to the first frame that does not read back:
its salts (the -wal generation's) must match the header's, and its checksum must continue the
previous frame's. Everything after that frame is ignored without a word, and gone for good once
the next checkpoint restarts the -wal. So one flipped byte in the middle of the file (a failing
disk), or a file cut short, dropped committed events silently: `journal check` said
"integrity ok" over the events left and the engine started on them.

`inspect` reads the frames the way SQLite does and tells the normal from the damage:

- frames of an older generation (other salts) after the end: SQLite restarts the -wal at its
  start after a checkpoint without shrinking the file. Normal.
- frames of this generation after the last commit that no commit follows: a transaction that was
  being written when the process died (kill -9 mid-write leaves a frame cut short, too), or one
  that was rolled back. Normal: they hold only what was never committed, which the writer's crash
  contract already gives up (`unfinished_frames`).
- frames of this generation after a frame that does not read back, which verify against the
  frame before them (every frame header stores the running checksum, so each can be checked
  against its predecessor's) and include a commit: transactions written in full after a damaged
  frame. Damage (`lost_commits`).
- a last frame of this generation cut short anywhere but where a crash stops a write: SQLite
  writes a frame's 24-byte header and its page with two separate writes, and a write that a kill
  or a power cut interrupts ends at a page of the OS page cache; a file ending anywhere else
  inside a frame was cut short (a copy or a disk that stopped midway). Damage: whatever followed
  the cut, committed or not, is not in the journal (`cut_inside_frame`).
- the -shm index left by a process that died (SQLite's wal-index: how many frames were committed
  when it last wrote) counting more committed frames of this generation than read back: the file
  was cut short. Damage. Only a -shm no connection opened since the crash still says so (the
  first connection rebuilds it from the -wal): the writer checks it first thing at open.
- a header that does not read back: SQLite ignores the whole file. Damage.

One case reads as damage without being any: a kill in the instant a transaction larger than
SQLite's page cache rewrites its checksums at commit (it rewrote a page it had already spilled)
leaves a break before its commit frame. That transaction was not committed yet; the kept copy of
the -wal then holds nothing lost.

Checksums are SQLite's (walChecksumBytes): pairs of 32-bit words folded as s0 += x0 + s1,
s1 += x1 + s0. That recurrence is linear, so a frame's checksum is a weighted sum of its words
plus the powers of its matrix times the seed; numpy computes every frame at once (a -wal of
1,000 frames in milliseconds, where a Python loop took 0.3 s).
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

WAL_HEADER = 32
FRAME_HEADER = 24
_MAGIC = (0x377F0682, 0x377F0683)  # the low bit: checksums over big-endian words
_VERSION = 3007000
_SHM_HEADER = 48  # one copy of the wal-index header; two copies lead the -shm
_BLOCK = 2048  # frames checksummed at a time: bounded memory on a large -wal
_MASK = 0xFFFFFFFF

U32 = npt.NDArray[np.uint32]


@dataclass(frozen=True, slots=True)
class WalCheck:
    """What SQLite reads back of a -wal, and what it leaves out. Frames are counted from 1."""

    path: Path
    size: int  # bytes in the file
    kept_frames: int  # frames SQLite reads back: through the last commit before the first bad frame
    kept_bytes: int  # the part of the file those are (header included; 0 when the header is bad)
    unfinished_frames: int  # this generation's frames after them that no later commit needs
    lost_frames: int  # frames of transactions written in full after a bad frame (through their last commit)
    lost_commits: int  # those transactions
    indexed_frames: int | None  # committed frames the -shm counts, when it is this generation's
    bad_header: bool  # SQLite ignores the whole file
    cut_inside_frame: bool  # the file ends inside a frame where no crash of a writer stops

    @property
    def damaged(self) -> bool:
        """Committed events SQLite will not read back are in the file, or were."""
        return (
            self.bad_header
            or self.lost_commits > 0
            or (self.indexed_frames or 0) > self.kept_frames
            or self.cut_inside_frame
        )

    def describe(self) -> str:
        """What is wrong, in one line (for a damaged -wal)."""
        if self.bad_header:
            return (
                f"{self.path}: its header does not read back, so SQLite ignores all {self.size:,} bytes of it: "
                "the events not yet copied into the main file are not in the journal"
            )
        if self.lost_commits:
            return (
                f"{self.path}: frame {self.kept_frames + 1} does not read back (a damaged disk or file) and SQLite "
                f"stops there: {self.lost_commits} transaction(s) written in full after it ({self.lost_frames} "
                "frames) are not in the journal"
            )
        if (self.indexed_frames or 0) > self.kept_frames:
            return (
                f"{self.path}: the -shm index counts {self.indexed_frames} committed frames but only {self.kept_frames} "
                "read back: the file was cut short, and the transactions after them are not in the journal"
            )
        return (
            f"{self.path}: it ends inside a frame, {self.size:,} bytes in, where no crash of the writer stops a "
            f"write: the file was cut short, and SQLite reads back only its first {self.kept_frames} frames; "
            "transactions written after them, if any were committed, are not in the journal"
        )


def wal_path(journal: Path) -> Path:
    return journal.with_name(journal.name + "-wal")


def inspect(journal: Path) -> WalCheck | None:
    """Read the journal's -wal (and its -shm header) as SQLite will; None without a -wal to read.

    The -shm is read first: a writer appending meanwhile only adds frames after what it counted.
    A writer restarting the -wal meanwhile (new salts in its header) is read again."""
    wal = wal_path(journal)
    for _ in range(3):
        shm = _shm_header(journal.with_name(journal.name + "-shm"))
        try:
            data = wal.read_bytes()
            again = _read_head(wal)
        except FileNotFoundError:
            return None
        if again == data[:WAL_HEADER]:
            break
    return _check(wal, data, shm) if data else None


def inspect_settled(journal: Path, wait_s: float = 0.05) -> WalCheck | None:
    """`inspect` for a reader that may run beside the engine: damage is read again after a
    moment, and only damage still there is reported (a large transaction's commit breaks the
    checksum chain for as long as it rewrites the checksums; see the module doc)."""
    found = inspect(journal)
    if found is None or not found.damaged:
        return found
    time.sleep(wait_s)
    return inspect(journal)


def keep_copy(check: WalCheck) -> Path:
    """Copy the -wal beside it as `<name>.damaged-N` (the first N free), private; returns its
    path. Raises OSError (a full disk) with nothing half-made left behind."""
    for n in range(1, 1000):
        target = check.path.with_name(f"{check.path.name}.damaged-{n}")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(check.path.read_bytes())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target
    raise FileExistsError(f"{check.path.name}.damaged-1..999 all exist beside it")


def _read_head(wal: Path) -> bytes:
    with wal.open("rb") as fh:
        return fh.read(WAL_HEADER)


def _check(wal: Path, data: bytes, shm: tuple[int, bytes] | None) -> WalCheck:
    size = len(data)
    header = _header(data)
    if header is None:
        ignored = size >= WAL_HEADER + FRAME_HEADER  # less: a -wal whose first write a crash cut short
        return WalCheck(wal, size, 0, 0, 0, 0, 0, None, ignored, False)
    page, big, seed = header
    salts = data[16:24]
    frame = FRAME_HEADER + page
    count = (size - WAL_HEADER) // frame
    heads = np.frombuffer(data, dtype=">u4", count=count * frame // 4, offset=WAL_HEADER).reshape(count, frame // 4)[:, :6]
    ours = (heads[:, 2] == struct.unpack(">I", salts[:4])[0]) & (heads[:, 3] == struct.unpack(">I", salts[4:])[0])
    good = ours & (heads[:, 0] != 0) & _chained(data, count, page, big, seed, heads)
    commits = heads[:, 1] != 0
    bad = np.flatnonzero(~good)
    first_bad = int(bad[0]) if bad.size else count
    kept_commits = np.flatnonzero(commits[:first_bad])
    kept = int(kept_commits[-1]) + 1 if kept_commits.size else 0
    lost = np.flatnonzero(good & commits)
    lost = lost[lost > first_bad]
    lost_frames = int(lost[-1]) + 1 - kept if lost.size else 0
    tail = data[WAL_HEADER + count * frame :]
    torn = len(tail) >= 16 and tail[8:16] == salts  # a frame of this generation cut short
    # where a crash leaves one: after the header's write, or at a page of the OS page cache
    cut = torn and len(tail) != FRAME_HEADER and size % mmap.PAGESIZE != 0
    unfinished = 0 if lost.size else int(np.count_nonzero(ours[kept:])) + int(torn)
    indexed = shm[0] if shm is not None and shm[1] == salts else None
    return WalCheck(wal, size, kept, WAL_HEADER + kept * frame, unfinished, lost_frames, int(lost.size), indexed, False, cut)


def _header(data: bytes) -> tuple[int, bool, tuple[int, int]] | None:
    """(page size, big-endian checksums, header checksum) of a -wal header SQLite accepts, else None."""
    if len(data) < WAL_HEADER:
        return None
    magic, version, page, _, _, _, c1, c2 = struct.unpack(">8I", data[:WAL_HEADER])
    if magic not in _MAGIC or version != _VERSION or page < 512 or page > 65536 or page & (page - 1):
        return None
    big = bool(magic & 1)
    if _checksum(data[:24], big, (0, 0)) != (c1, c2):
        return None
    return page, big, (c1, c2)


def _checksum(data: bytes, big: bool, seed: tuple[int, int]) -> tuple[int, int]:
    """SQLite's walChecksumBytes over `data` (a multiple of 8 bytes), word by word."""
    s0, s1 = seed
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1


def _chained(data: bytes, count: int, page: int, big: bool, seed: tuple[int, int], heads: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """Per frame: whether its stored checksum continues the one stored in the frame before it
    (the header's, for the first). SQLite checks a frame against the running checksum; up to
    the first bad frame the two are the same, and after it this still tells a frame written
    in sequence from one that was not."""
    if not count:
        return np.zeros(0, dtype=np.bool_)
    frame = FRAME_HEADER + page
    pairs = (8 + page) // 8
    w0, w1, p_n, q_n, r_n, t_n = _weights(pairs)
    stored = heads[:, 4:6].astype(np.uint32)
    seeds = np.empty_like(stored)
    seeds[0] = seed
    seeds[1:] = stored[:-1]
    out = np.empty(count, dtype=np.bool_)
    order = ">u4" if big else "<u4"
    for lo in range(0, count, _BLOCK):
        hi = min(lo + _BLOCK, count)
        raw = np.frombuffer(data, dtype=np.uint8, count=(hi - lo) * frame, offset=WAL_HEADER + lo * frame).reshape(hi - lo, frame)
        words = np.concatenate((raw[:, :8], raw[:, FRAME_HEADER:]), axis=1).view(order).astype(np.uint32)
        x0, x1 = words[:, 0::2], words[:, 1::2]
        a, b = seeds[lo:hi, 0], seeds[lo:hi, 1]
        with np.errstate(over="ignore"):
            s0 = (x0 * w0[0]).sum(axis=1, dtype=np.uint32) + (x1 * w1[0]).sum(axis=1, dtype=np.uint32) + p_n * a + q_n * b
            s1 = (x0 * w0[1]).sum(axis=1, dtype=np.uint32) + (x1 * w1[1]).sum(axis=1, dtype=np.uint32) + r_n * a + t_n * b
        out[lo:hi] = (s0 == stored[lo:hi, 0]) & (s1 == stored[lo:hi, 1])
    return out


@functools.lru_cache(maxsize=4)
def _weights(pairs: int) -> tuple[tuple[U32, U32], tuple[U32, U32], np.uint32, np.uint32, np.uint32, np.uint32]:
    """The weights of each word pair in a checksum over `pairs` pairs, and the seed's.

    One pair folds the state (s0, s1) as M·(s0, s1) + (x0, x0 + x1), with M = [[1, 1], [1, 2]];
    after n pairs the state is M^n·seed + the sum over pairs k of M^(n-1-k)·(x0_k, x0_k + x1_k),
    all modulo 2^32. So with M^j = [[p, q], [r, t]]: s0 weighs x0_k by p + q and x1_k by q,
    s1 weighs x0_k by r + t and x1_k by t, each at j = n-1-k."""
    powers = []
    p, q, r, t = 1, 0, 0, 1
    for _ in range(pairs + 1):
        powers.append((p, q, r, t))
        p, q, r, t = (p + q) & _MASK, (p + 2 * q) & _MASK, (r + t) & _MASK, (r + 2 * t) & _MASK
    at = np.array(powers[pairs - 1 :: -1] if pairs else [], dtype=np.uint64).reshape(pairs, 4)
    p_, q_, r_, t_ = (at[:, i] for i in range(4))

    def u32(x: npt.NDArray[np.uint64]) -> U32:
        return (x & _MASK).astype(np.uint32)

    n = powers[pairs]
    return (
        (u32(p_ + q_), u32(r_ + t_)),
        (u32(q_), u32(t_)),
        np.uint32(n[0]),
        np.uint32(n[1]),
        np.uint32(n[2]),
        np.uint32(n[3]),
    )


def _shm_header(shm: Path) -> tuple[int, bytes] | None:
    """(committed frames, salts) from the -shm's wal-index header, when both its copies agree
    and its checksum holds; else None (no -shm, or one SQLite would rebuild anyway)."""
    try:
        with shm.open("rb") as fh:
            head = fh.read(2 * _SHM_HEADER)
    except OSError:
        return None
    if len(head) < 2 * _SHM_HEADER or head[:_SHM_HEADER] != head[_SHM_HEADER:]:
        return None
    native = "<" if sys.byteorder == "little" else ">"
    version, _, _, is_init, _, _, frames = struct.unpack(f"{native}IIIBBHI", head[:20])
    if version != _VERSION or not is_init:
        return None
    if _checksum(head[:40], native == ">", (0, 0)) != struct.unpack(f"{native}II", head[40:48]):
        return None
    return frames, head[32:40]
